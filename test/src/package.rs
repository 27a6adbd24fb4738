//! The Debian package under test: built once per build of the binaries
//! (`scripts/package.sh --profile dev --no-build`, under a lock, cached in
//! the target directory), installed with apt and purged again, and a fresh
//! Debian 12 root made with debootstrap to install it into.

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};

use crate::bins::bin;

/// The package's name.
pub const PACKAGE: &str = "crio-rs";

/// The workspace's root directory.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("test/ has a parent")
        .to_path_buf()
}

/// Where the tests keep their packages and the debootstrap cache.
pub fn cache_dir() -> PathBuf {
    bin("crio")
        .parent()
        .and_then(Path::parent)
        .expect("target/debug has a parent")
        .join("package-test")
}

/// Runs `cmd`, failing with its output unless it succeeds.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?}: {}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// The newest modification among the package's inputs: the binaries, the
/// script, the packaging files and the crate holding cargo-deb's metadata.
fn inputs_modified() -> SystemTime {
    let root = workspace();
    let mut paths: Vec<PathBuf> = ["crio", "crioctl", "containerd-shim-crio-v2"]
        .iter()
        .map(|b| bin(b))
        .collect();
    paths.push(root.join("scripts/package.sh"));
    paths.push(root.join("crio-daemon/Cargo.toml"));
    for dir in ["packaging/debian", "packaging/systemd", "packaging/cni"] {
        for entry in std::fs::read_dir(root.join(dir))
            .into_iter()
            .flatten()
            .flatten()
        {
            paths.push(entry.path());
        }
    }
    paths
        .iter()
        .map(|p| modified(p))
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// The .deb of version `version` (e.g. `0.1.0-1`), built from the debug
/// binaries unless one newer than all its inputs is there already.
pub fn deb(version: &str) -> Result<PathBuf> {
    let dir = cache_dir().join(version);
    std::fs::create_dir_all(&dir)?;
    // One build at a time: the tests run in parallel and share the staging
    // directory.
    let lock = File::create(cache_dir().join("build.lock"))?;
    lock.lock()?;
    let deb = dir.join(format!("{PACKAGE}_{version}_amd64.deb"));
    if modified(&deb) > inputs_modified() {
        return Ok(deb);
    }
    let target = cache_dir()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    run(Command::new("bash")
        .arg(workspace().join("scripts/package.sh"))
        .args(["--profile", "dev", "--no-build", "--deb-version", version])
        .arg("--out")
        .arg(&dir)
        .env("CARGO_TARGET_DIR", target)
        .current_dir(workspace()))?;
    if !deb.is_file() {
        bail!("package.sh did not make {}", deb.display());
    }
    Ok(deb)
}

/// The paths of the regular files and links a .deb holds (`/usr/bin/crio`…).
pub fn files_of(deb: &Path) -> Result<Vec<PathBuf>> {
    let out = run(Command::new("dpkg-deb").arg("-c").arg(deb))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('d'))
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| PathBuf::from(p.trim_start_matches('.')))
        .collect())
}

/// `apt-get` as the tests run it: no questions, no recommends, waiting
/// for another apt run's lock rather than failing.
pub fn apt_get(args: &[&str]) -> Command {
    let mut cmd = Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive")
        .args(["-y", "-q", "-o", "DPkg::Lock::Timeout=300"])
        .args(args);
    cmd
}

/// Purges the package from the host when dropped, after stopping any
/// daemon still running from it: the host test's clean-up, also when it
/// fails.
pub struct HostInstall;

impl HostInstall {
    /// Installs `deb` on the host with apt; the maintainer scripts' output.
    pub fn install(&self, deb: &Path) -> Result<String> {
        let out = run(apt_get(&["install", "--no-install-recommends"]).arg(deb))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for HostInstall {
    fn drop(&mut self) {
        let _ = Command::new("start-stop-daemon")
            .args(["--stop", "--quiet", "--oknodo", "--exec", "/usr/bin/crio"])
            .args(["--retry", "TERM/10/KILL/5"])
            .status();
        let _ = apt_get(&["purge", PACKAGE]).output();
    }
}

/// A lock held while a test runs something as the host's `/usr/bin/crio`
/// (the package installed on the host, or a stand-in for it): such tests
/// would see each other's processes, so they take turns.
pub fn host_crio_lock() -> Result<File> {
    std::fs::create_dir_all(cache_dir())?;
    let lock = File::create(cache_dir().join("host-crio.lock"))?;
    lock.lock()?;
    Ok(lock)
}

/// Pids of the processes running a program of the package: the daemon,
/// the client or a shim (also one whose file an upgrade replaced).
pub fn package_processes() -> Vec<i32> {
    let ours = [
        "/usr/bin/crio",
        "/usr/bin/crioctl",
        "/usr/libexec/crio/containerd-shim-crio-v2",
    ];
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| {
                let exe = exe.display().to_string();
                let exe = exe.trim_end_matches(" (deleted)");
                ours.contains(&exe)
            })
        })
        .collect()
}

/// A fresh Debian 12 root (debootstrap's minbase from the mirror apt uses
/// here) with /proc mounted, for `chroot`; unmounted and removed on drop.
/// The bootstrapped tree is cached as a tarball beside the packages.
pub struct DebianRoot {
    dir: Option<tempfile::TempDir>,
}

/// The Debian mirror of this machine's apt sources.
fn mirror() -> String {
    std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("URIs:"))
        .and_then(|uris| uris.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "http://deb.debian.org/debian".into())
}

impl DebianRoot {
    /// Unpacks the cached bookworm root, or bootstraps (and caches) one.
    pub fn create() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("crio-test-deb-")
            .tempdir()?;
        // The root's `/`: others than root (apt's sandbox user) cross it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let root = Self { dir: Some(dir) };
        let cache = cache_dir().join("bookworm-minbase.tar");
        if cache.is_file() {
            run(Command::new("tar")
                .arg("-xpf")
                .arg(&cache)
                .arg("-C")
                .arg(root.path()))?;
        } else {
            run(Command::new("debootstrap")
                .args(["--variant=minbase", "bookworm"])
                .arg(root.path())
                .arg(mirror()))?;
            std::fs::create_dir_all(cache_dir())?;
            let partial = cache.with_extension("partial");
            run(Command::new("tar")
                .arg("-cpf")
                .arg(&partial)
                .arg("-C")
                .arg(root.path())
                .arg("."))?;
            std::fs::rename(&partial, &cache)?;
        }
        std::fs::copy("/etc/resolv.conf", root.path().join("etc/resolv.conf"))?;
        nix::mount::mount(
            Some("proc"),
            &root.path().join("proc"),
            Some("proc"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .context("mount /proc in the Debian root")?;
        Ok(root)
    }

    /// The root directory.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("root kept until dropped").path()
    }

    /// `args` run inside the root, with a PATH of its own.
    pub fn chroot(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("chroot");
        cmd.arg(self.path())
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("LANG", "C.UTF-8");
        cmd
    }
}

impl Drop for DebianRoot {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        crate::daemon::unmount_below(dir.path());
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if mounts.contains(&dir.path().display().to_string()) {
            // Never remove a tree that still has the host's /proc in it.
            eprintln!(
                "DebianRoot: mounts remain under {}: kept",
                dir.path().display()
            );
            let _ = dir.keep();
        }
    }
}
