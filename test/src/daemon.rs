//! A real `crio` per test, in its own directory: root, runroot, socket,
//! CNI configuration directory and config files. Dropping it stops the
//! daemon, unmounts whatever is left under its directory and removes it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use crio_api::client::{CriClient, connect};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::bins::bin;

/// Where Debian installs the CNI plugins.
pub const CNI_PLUGIN_DIR: &str = "/usr/lib/cni";

static VOLATILE_ON_TMPFS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// From now on, daemons (crio-rs and the reference containerd) started by
/// this process keep their volatile state on a tmpfs, as on a node where
/// /run is one: runroot, runtime root and namespaces for crio-rs, `state`
/// for containerd. Tests leave everything on the disk; the benchmark asks.
pub fn keep_volatile_state_on_tmpfs() {
    VOLATILE_ON_TMPFS.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Mounts a tmpfs on each of `dirs` when [`keep_volatile_state_on_tmpfs`]
/// was asked for (unmounted by [`tear_down`] with the rest).
pub fn volatile_tmpfs(dirs: &[PathBuf]) -> Result<()> {
    if VOLATILE_ON_TMPFS.load(std::sync::atomic::Ordering::Relaxed) {
        for d in dirs {
            std::fs::create_dir_all(d)?;
            nix::mount::mount(
                Some("tmpfs"),
                d,
                Some("tmpfs"),
                nix::mount::MsFlags::empty(),
                Some("mode=755"),
            )
            .with_context(|| format!("mount a tmpfs on {}", d.display()))?;
        }
    }
    Ok(())
}

/// A daemon under test.
pub struct TestDaemon {
    dir: tempfile::TempDir,
    child: Option<Child>,
    extra_args: Vec<String>,
    binary: Option<PathBuf>,
    envs: Vec<(String, String)>,
}

impl TestDaemon {
    /// Starts a daemon with the test defaults.
    pub fn start() -> Result<Self> {
        Self::start_with("", &[])
    }

    /// Starts a daemon whose crio.conf gets `extra_toml` appended and whose
    /// command line gets `args`.
    pub fn start_with(extra_toml: &str, args: &[&str]) -> Result<Self> {
        Self::start_with_files(extra_toml, args, &[])
    }

    /// Like [`TestDaemon::start_with`], after writing `files` (path relative
    /// to the daemon's directory, content) into the daemon's directory;
    /// `{dir}` in `extra_toml` and in the contents stands for that directory.
    pub fn start_with_files(
        extra_toml: &str,
        args: &[&str],
        files: &[(&str, &str)],
    ) -> Result<Self> {
        let mut daemon = Self::prepare_with_files(extra_toml, args, files)?;
        daemon.spawn()?;
        Ok(daemon)
    }

    /// Like [`TestDaemon::start_with_files`] without starting the daemon:
    /// [`TestDaemon::spawn`] does (after [`TestDaemon::set_env`], say).
    pub fn prepare_with_files(
        extra_toml: &str,
        args: &[&str],
        files: &[(&str, &str)],
    ) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("crio-test-").tempdir()?;
        let d = dir.path();
        // Searchable as a node's /run and /var/lib are: a user namespace's
        // mapped root reaches its rootfs below.
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o711))?;
        let here = d.display().to_string();
        for (rel, content) in files {
            let path = d.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, content.replace("{dir}", &here))?;
        }
        let extra_toml = extra_toml.replace("{dir}", &here);
        for sub in ["root", "run", "net.d", "conf.d", "ns", "logs"] {
            std::fs::create_dir_all(d.join(sub))?;
        }
        volatile_tmpfs(&[d.join("run"), d.join("runc"), d.join("ns")])?;
        let config = format!(
            "[crio]\nroot = \"{root}\"\nrunroot = \"{run}\"\nlog_dir = \"{logs}\"\n\
             version_file = \"{run}/version\"\nclean_shutdown_file = \"{root}/clean.shutdown\"\n\
             [crio.api]\nlisten = \"{sock}\"\n\
             [crio.runtime]\nnamespaces_dir = \"{ns}\"\nlog_level = \"debug\"\n\
             [crio.network]\nnetwork_dir = \"{net}\"\nplugin_dirs = [\"{CNI_PLUGIN_DIR}\"]\n\
             [crio.runtime.runtimes.runc]\nruntime_root = \"{d}/runc\"\n{extra_toml}\n",
            root = d.join("root").display(),
            run = d.join("run").display(),
            logs = d.join("logs").display(),
            sock = d.join("crio.sock").display(),
            ns = d.join("ns").display(),
            net = d.join("net.d").display(),
            d = d.display(),
        );
        std::fs::write(d.join("crio.conf"), config)?;
        Ok(Self {
            dir,
            child: None,
            extra_args: args.iter().map(|s| s.to_string()).collect(),
            binary: None,
            envs: Vec::new(),
        })
    }

    /// Sets an environment variable of the daemon from the next `spawn` on.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.envs.push((key.into(), value.into()));
    }

    /// Runs `binary` instead of the workspace's `crio` from the next
    /// `spawn` on (an upgrade in place).
    pub fn set_binary(&mut self, binary: PathBuf) {
        self.binary = Some(binary);
    }

    /// Starts the daemon process again (after a stop or kill).
    pub fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let child = Command::new(self.binary.clone().unwrap_or_else(|| bin("crio")))
            .args(self.base_args())
            .args(&self.extra_args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn crio")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                bail!("crio exited during start-up with {status}:\n{}", self.log());
            }
            if std::os::unix::net::UnixStream::connect(self.socket()).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("crio did not open its socket in time:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `--config` and `--config-dir` of this daemon, for other `crio` runs.
    pub fn base_args(&self) -> Vec<String> {
        vec![
            "--config".into(),
            self.path("crio.conf").display().to_string(),
            "--config-dir".into(),
            self.path("conf.d").display().to_string(),
        ]
    }

    /// A path inside the daemon's directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The CRI socket.
    pub fn socket(&self) -> PathBuf {
        self.path("crio.sock")
    }

    /// The socket as a CRI endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// The CNI configuration directory the daemon watches.
    pub fn cni_dir(&self) -> PathBuf {
        self.path("net.d")
    }

    fn log_path(&self) -> PathBuf {
        self.path("crio.log")
    }

    /// Everything the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The daemon's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A CRI client on the daemon's socket.
    pub async fn client(&self) -> Result<CriClient> {
        connect(&self.endpoint(), Duration::from_secs(30))
            .await
            .map_err(|e| anyhow::anyhow!(e))
    }

    /// Runs `crioctl` against this daemon.
    pub fn crioctl(&self, args: &[&str]) -> Result<Output> {
        Command::new(bin("crioctl"))
            .arg("--runtime-endpoint")
            .arg(self.endpoint())
            .args(args)
            .output()
            .context("run crioctl")
    }

    /// Sends `signal` and waits for the daemon to exit.
    pub fn signal_and_wait(&mut self, signal: Signal) -> Result<ExitStatus> {
        let mut child = self.child.take().context("daemon not running")?;
        kill(Pid::from_raw(child.id() as i32), signal)?;
        wait_timeout(&mut child, Duration::from_secs(10))
    }
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> Result<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let status = child.wait()?;
            bail!("process did not exit within {timeout:?}; killed ({status})");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Pids of the pod shims of the daemon whose directory is `dir`.
pub fn shims_of(dir: &Path) -> Vec<i32> {
    processes_mentioning(&dir.display().to_string())
        .into_iter()
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("containerd-shim-crio-v2"))
        })
        .collect()
}

/// Pids of processes whose command line mentions `needle`, and their children.
pub fn processes_mentioning(needle: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let all: Vec<(i32, i32, String)> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid = stat
                .rsplit(')')
                .next()?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            Some((pid, ppid, String::from_utf8_lossy(&cmd).into_owned()))
        })
        .collect();
    let parents: Vec<i32> = all
        .iter()
        .filter(|(_, _, c)| c.contains(needle))
        .map(|(p, _, _)| *p)
        .collect();
    let children = all
        .iter()
        .filter(|(p, pp, _)| parents.contains(pp) && !parents.contains(p))
        .map(|(p, _, _)| *p);
    children.chain(parents.iter().copied()).collect()
}

/// What a failed test may leave under `dir`: containers of the runtime
/// root `dir/runc` (deleted by the runtime, with their cgroups), processes
/// mentioning `dir` (shims), mounts below `dir`, then the (empty) cgroups
/// `parents`, listed children first.
pub fn tear_down(dir: &Path, parents: &[String]) {
    let runc_root = dir.join("runc");
    for entry in std::fs::read_dir(&runc_root)
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = Command::new("runc")
            .arg("--root")
            .arg(&runc_root)
            .args(["delete", "--force"])
            .arg(entry.file_name())
            .output();
    }
    for pid in processes_mentioning(&dir.display().to_string()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    unmount_below(dir);
    // A killed process leaves its cgroups once it is gone, a moment after
    // the signal (an orphan's reaper here can be slow): until then they
    // cannot be removed, so removal is retried for a while.
    let deadline = Instant::now() + Duration::from_secs(10);
    for parent in parents {
        // Children first (a pod's shim has a leaf below its parent).
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|c| c.path().join(parent.trim_start_matches('/')))
            .flat_map(|d| cgroup_tree(&d))
            .collect();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        while dirs.iter().any(|d| {
            std::fs::remove_dir(d).is_err_and(|e| e.kind() != std::io::ErrorKind::NotFound)
        }) && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Cgroup directory `dir` and every directory below it.
fn cgroup_tree(dir: &Path) -> Vec<PathBuf> {
    let mut tree = vec![dir.to_path_buf()];
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            tree.extend(cgroup_tree(&entry.path()));
        }
    }
    tree
}

/// Unmounts every mount at or below `dir`, deepest first.
pub fn unmount_below(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            if wait_timeout(&mut child, Duration::from_secs(10)).is_err() {
                eprintln!("crio did not stop on SIGTERM");
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "--- crio log ({}) ---\n{}",
                self.dir.path().display(),
                self.log()
            );
        }
        tear_down(self.dir.path(), &[crate::pods::test_cgroup_parent()]);
    }
}
