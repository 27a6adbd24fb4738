//! The `crio` command line: CRI-O's flag names, which override the files.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use toml::{Table, Value};

use crate::logging::LogFormat;

/// crio-rs: a Kubernetes container runtime (CRI) daemon.
#[derive(Debug, Parser)]
#[command(name = "crio", version, about)]
pub struct Cli {
    /// Main configuration file.
    #[arg(short = 'c', long, global = true, default_value = crio_config::DEFAULT_CONFIG_FILE)]
    pub config: PathBuf,
    /// Directory of drop-in configuration files, read in lexical order.
    #[arg(short = 'd', long, global = true, default_value = crio_config::DEFAULT_CONFIG_DIR)]
    pub config_dir: PathBuf,
    /// Persistent state directory (crio.root).
    #[arg(short = 'r', long, global = true)]
    pub root: Option<PathBuf>,
    /// Volatile state directory (crio.runroot).
    #[arg(long, global = true)]
    pub runroot: Option<PathBuf>,
    /// Path of the CRI socket (crio.api.listen).
    #[arg(long, global = true)]
    pub listen: Option<PathBuf>,
    /// Log level: trace, debug, info, warn, error, fatal, panic.
    #[arg(short = 'l', long, global = true)]
    pub log_level: Option<String>,
    /// Log format (crio.runtime.log_format).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Runtime handler used when a pod names none.
    #[arg(long, global = true)]
    pub default_runtime: Option<String>,
    /// CNI configuration directory (crio.network.network_dir).
    #[arg(long, global = true)]
    pub cni_config_dir: Option<PathBuf>,
    /// CNI plugin directory; repeat for several (crio.network.plugin_dirs).
    #[arg(long, global = true)]
    pub cni_plugin_dir: Vec<PathBuf>,
    /// CNI network to use (crio.network.cni_default_network).
    #[arg(long, global = true)]
    pub cni_default_network: Option<String>,
    /// containers-registries.conf file.
    #[arg(long, global = true)]
    pub registries_conf: Option<PathBuf>,
    /// containers-policy.json file.
    #[arg(long, global = true)]
    pub signature_policy: Option<PathBuf>,
    /// Image of the infra container.
    #[arg(long, global = true)]
    pub pause_image: Option<String>,
    /// Address of the streaming server.
    #[arg(long, global = true)]
    pub stream_address: Option<String>,
    /// Port of the streaming server.
    #[arg(long, global = true)]
    pub stream_port: Option<String>,
    /// cgroupfs or systemd.
    #[arg(long, global = true)]
    pub cgroup_manager: Option<String>,
    /// Serve Prometheus metrics.
    #[arg(long, global = true)]
    pub enable_metrics: bool,
    /// Port of the metrics server.
    #[arg(long, global = true)]
    pub metrics_port: Option<u16>,
    /// What to do instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the effective configuration (or the defaults) as commented TOML.
    Config {
        /// Print the built-in defaults, ignoring files and flags.
        #[arg(long)]
        default: bool,
    },
    /// Internal: connect to a port in a pod's network namespace and relay
    /// stdin and stdout to it (run by the daemon for port-forward).
    #[command(hide = true)]
    PortForward {
        /// The pinned network namespace (none: the host's).
        #[arg(long)]
        netns: Option<PathBuf>,
        /// The port on the pod's loopback.
        #[arg(long)]
        port: u16,
    },
    /// Ask a running daemon what it runs, over its socket's status API.
    Status {
        /// The daemon's socket (default: --listen, else crio.api.listen's
        /// default).
        #[arg(short = 's', long)]
        socket: Option<PathBuf>,
        /// What to ask.
        #[command(subcommand)]
        what: StatusCommand,
    },
    /// Print a shell completion script (bash, zsh, fish, ...).
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a manual page in roff: crio(8), or crio.conf(5).
    Man {
        /// Which page.
        #[arg(value_enum, default_value = "crio")]
        page: crate::docs::Page,
    },
    /// Print the AppArmor profile crio-default, as the daemon loads it
    /// where AppArmor is enabled (for packagers and operators).
    ApparmorProfile,
    /// Print version information.
    Version {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The questions `crio status` asks.
#[derive(Debug, Subcommand)]
pub enum StatusCommand {
    /// Storage driver and root, cgroup driver, default ID mappings (JSON).
    Info,
    /// The daemon's effective configuration (TOML).
    Config,
    /// One container: its pod, image, root, log path, pid, IPs (JSON).
    Containers {
        /// The container's ID or a unique prefix of it.
        #[arg(short = 'i', long)]
        id: String,
    },
}

impl StatusCommand {
    /// The status API path answering it.
    pub fn path(&self) -> String {
        match self {
            StatusCommand::Info => "/info".into(),
            StatusCommand::Config => "/config".into(),
            StatusCommand::Containers { id } => format!("/containers/{id}"),
        }
    }
}

impl Cli {
    /// The flags that were given, as a table shaped like crio.conf, so they
    /// merge over the files like one more drop-in.
    pub fn overrides(&self) -> Table {
        let mut t = Table::new();
        let path = |p: &PathBuf| Value::String(p.display().to_string());
        let mut set = |table: &str, key: &str, value: Value| {
            let mut node = &mut t;
            for part in table.split('.') {
                node = node
                    .entry(part)
                    .or_insert_with(|| Value::Table(Table::new()))
                    .as_table_mut()
                    .expect("override tables are tables");
            }
            node.insert(key.to_string(), value);
        };
        if let Some(v) = &self.root {
            set("crio", "root", path(v));
        }
        if let Some(v) = &self.runroot {
            set("crio", "runroot", path(v));
        }
        if let Some(v) = &self.listen {
            set("crio.api", "listen", path(v));
        }
        if let Some(v) = &self.stream_address {
            set("crio.api", "stream_address", Value::String(v.clone()));
        }
        if let Some(v) = &self.stream_port {
            set("crio.api", "stream_port", Value::String(v.clone()));
        }
        if let Some(v) = &self.log_level {
            set("crio.runtime", "log_level", Value::String(v.clone()));
        }
        if let Some(v) = self.log_format {
            set("crio.runtime", "log_format", Value::String(v.name().into()));
        }
        if let Some(v) = &self.default_runtime {
            set("crio.runtime", "default_runtime", Value::String(v.clone()));
        }
        if let Some(v) = &self.cgroup_manager {
            set("crio.runtime", "cgroup_manager", Value::String(v.clone()));
        }
        if let Some(v) = &self.cni_config_dir {
            set("crio.network", "network_dir", path(v));
        }
        if !self.cni_plugin_dir.is_empty() {
            let dirs = self.cni_plugin_dir.iter().map(path).collect();
            set("crio.network", "plugin_dirs", Value::Array(dirs));
        }
        if let Some(v) = &self.cni_default_network {
            set(
                "crio.network",
                "cni_default_network",
                Value::String(v.clone()),
            );
        }
        if let Some(v) = &self.registries_conf {
            set("crio.image", "registries_conf", path(v));
        }
        if let Some(v) = &self.signature_policy {
            set("crio.image", "signature_policy", path(v));
        }
        if let Some(v) = &self.pause_image {
            set("crio.image", "pause_image", Value::String(v.clone()));
        }
        if self.enable_metrics {
            set("crio.metrics", "enable_metrics", Value::Boolean(true));
        }
        if let Some(v) = self.metrics_port {
            set("crio.metrics", "metrics_port", Value::Integer(v.into()));
        }
        t
    }

    /// Loads the files and applies the flags. The main file may be missing
    /// only when it is the default path.
    pub fn load_config(&self) -> Result<crio_config::Loaded, crio_config::ConfigError> {
        let required = self.config != std::path::Path::new(crio_config::DEFAULT_CONFIG_FILE);
        crio_config::load(
            &self.config,
            required,
            &self.config_dir,
            Some(self.overrides()),
        )
    }
}

/// Entry point of the `crio` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Version { json }) => {
            let info = crate::version::Info::current();
            if *json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&info).unwrap_or_default()
                );
            } else {
                print!("{}", info.text());
            }
            ExitCode::SUCCESS
        }
        Some(Command::Config { default: true }) => {
            print!("{}", crio_config::render(&crio_config::Config::default()));
            ExitCode::SUCCESS
        }
        Some(Command::Config { default: false }) => match cli.load_config() {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    eprintln!("warning: {w}");
                }
                print!("{}", crio_config::render(&loaded.config));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("crio: invalid configuration: {e}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Status { socket, what }) => {
            let default = crio_config::Config::default().api.listen;
            let socket = socket.as_ref().or(cli.listen.as_ref()).unwrap_or(&default);
            crate::status::client::run(socket, &what.path())
        }
        Some(Command::Completion { shell }) => {
            print!("{}", crate::docs::completion(*shell));
            ExitCode::SUCCESS
        }
        Some(Command::Man { page }) => {
            print!("{}", crate::docs::man(*page));
            ExitCode::SUCCESS
        }
        Some(Command::ApparmorProfile) => {
            print!("{}", crate::apparmor::profile());
            ExitCode::SUCCESS
        }
        Some(Command::PortForward { netns, port }) => {
            crate::streaming::helper_main(netns.as_ref(), *port)
        }
        None => crate::daemon::run(cli),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_files() {
        let tmp = tempfile::tempdir().unwrap();
        let conf = tmp.path().join("crio.conf");
        std::fs::write(
            &conf,
            "[crio]\nroot = \"/file/root\"\nrunroot = \"/file/run\"\n[crio.network]\nplugin_dirs = [\"/file/cni\"]\n",
        )
        .unwrap();
        let cli = Cli::parse_from([
            "crio",
            "--config",
            conf.to_str().unwrap(),
            "--config-dir",
            tmp.path().join("none").to_str().unwrap(),
            "--root",
            "/flag/root",
            "--cni-plugin-dir",
            "/a",
            "--cni-plugin-dir",
            "/b",
            "--metrics-port",
            "9191",
            "--enable-metrics",
            "--log-level",
            "debug",
        ]);
        let loaded = cli.load_config().unwrap();
        let c = &loaded.config;
        assert_eq!(c.root, PathBuf::from("/flag/root"));
        assert_eq!(c.runroot, PathBuf::from("/file/run"));
        assert_eq!(
            c.network.plugin_dirs,
            [PathBuf::from("/a"), PathBuf::from("/b")]
        );
        assert_eq!(c.metrics.metrics_port, 9191);
        assert!(c.metrics.enable_metrics);
        assert_eq!(c.runtime.log_level, "debug");
        assert_eq!(loaded.origin("crio.root"), "command line");
        assert_eq!(loaded.origin("crio.runroot"), conf.display().to_string());
    }

    #[test]
    fn bad_flag_value_is_reported_as_command_line() {
        let cli = Cli::parse_from(["crio", "--config", "/nonexistent/crio.conf"]);
        assert!(
            cli.load_config()
                .unwrap_err()
                .reason
                .contains("cannot read")
        );

        let cli = Cli::parse_from(["crio", "--cgroup-manager", "cgmanager"]);
        let none = std::path::Path::new("/nonexistent");
        let err = crio_config::load(none, false, none, Some(cli.overrides())).unwrap_err();
        assert_eq!(err.source_name, "command line");
        assert_eq!(err.key, "crio.runtime.cgroup_manager");
    }

    #[test]
    fn subcommands_parse_with_global_flags() {
        let cli = Cli::parse_from(["crio", "config", "--root", "/r"]);
        assert!(matches!(
            cli.command,
            Some(Command::Config { default: false })
        ));
        assert_eq!(cli.root, Some(PathBuf::from("/r")));
        let cli = Cli::parse_from([
            "crio",
            "status",
            "--socket",
            "/s",
            "containers",
            "--id",
            "ab",
        ]);
        let Some(Command::Status { socket, what }) = cli.command else {
            panic!("not status: {:?}", cli.command);
        };
        assert_eq!(socket, Some(PathBuf::from("/s")));
        assert_eq!(what.path(), "/containers/ab");
        let cli = Cli::parse_from(["crio", "version", "--json"]);
        assert!(matches!(cli.command, Some(Command::Version { json: true })));
    }
}
