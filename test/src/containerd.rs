//! The reference runtime for benchmarks: Debian's containerd with its CRI
//! plugin, in a temp root, state and socket of its own, the same runc and
//! CNI plugins, and the test registry through a hosts.toml (no fallback to
//! the internet). `restrict_oom_score_adj` is on: this host lacks
//! CAP_SYS_RESOURCE.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::daemon::tear_down;

/// A running containerd.
pub struct Containerd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    env: Vec<(String, String)>,
}

impl Containerd {
    /// Starts containerd with `conflist` as its only CNI network and
    /// `registry` (host:port, plain HTTP) as the home of `pause_image`.
    pub fn start(registry: &str, pause_image: &str, conflist: &str) -> Result<Self> {
        Self::start_with_env(registry, pause_image, conflist, &[])
    }

    /// Like `start`, with extra environment for containerd and the shims it
    /// starts (`{dir}` in a value is replaced by containerd's directory).
    pub fn start_with_env(
        registry: &str,
        pause_image: &str,
        conflist: &str,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("crio-bench-containerd-")
            .tempdir()?;
        let d = dir.path().display().to_string();
        std::fs::create_dir_all(dir.path().join("net.d"))?;
        crate::daemon::volatile_tmpfs(&[dir.path().join("state")])?;
        std::fs::write(
            dir.path().join("net.d/10-bench.conflist"),
            conflist.replace("{dir}", &d),
        )?;
        let hosts = dir.path().join("certs.d").join(registry);
        std::fs::create_dir_all(&hosts)?;
        std::fs::write(
            hosts.join("hosts.toml"),
            format!(
                "server = \"http://{registry}\"\n[host.\"http://{registry}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
            ),
        )?;
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause_image}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{d}/certs.d"
"#
        );
        std::fs::write(dir.path().join("config.toml"), config)?;
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.replace("{dir}", &d)))
            .collect();
        let mut c = Self {
            dir,
            child: None,
            env,
        };
        c.spawn()?;
        Ok(c)
    }

    /// Starts (or restarts) the containerd process and waits for its socket.
    pub fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("containerd.log"))?;
        let child = Command::new("containerd")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("--config")
            .arg(self.path("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start containerd (scripts/install-deps.sh installs it)")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(self.path("containerd.sock")).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "containerd did not open its socket:\n{}",
                    std::fs::read_to_string(self.path("containerd.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// A path in containerd's directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Runs `ctr` against this containerd.
    pub fn ctr(&self, args: &[&str]) -> Result<std::process::Output> {
        Command::new("ctr")
            .arg("--address")
            .arg(self.path("containerd.sock"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("run ctr")
    }

    /// The CRI endpoint.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.path("containerd.sock").display())
    }

    /// The daemon's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `signal` and waits for the process to end.
    pub fn signal_and_wait(&mut self, signal: Signal) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            kill(Pid::from_raw(child.id() as i32), signal)?;
            child.wait()?;
        }
        Ok(())
    }

    /// The directory containerd works in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.signal_and_wait(Signal::SIGTERM);
        // Containers of a foreign shim (its runtime root is here), shims,
        // mounts.
        tear_down(self.dir.path(), &[]);
    }
}
