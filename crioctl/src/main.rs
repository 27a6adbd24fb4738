//! `crioctl`: the crio-rs client CLI.
#![deny(unsafe_code)]

fn main() -> std::process::ExitCode {
    crioctl::main()
}
