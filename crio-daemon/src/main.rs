//! `crio`: the crio-rs CRI daemon.
#![deny(unsafe_code)]

fn main() -> std::process::ExitCode {
    crio_daemon::cli::main()
}
