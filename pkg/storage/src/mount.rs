//! Overlay mounts of image layers.

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// The kernel's limit on mount option data (one page).
const MAX_OPTIONS: usize = 4095;

/// An overlay mount of `lowers` (topmost first) with an optional writable
/// `upper`/`work` pair at `target`. Without an upper dir the mount is
/// read-only.
#[derive(Debug, Clone)]
pub struct Overlay {
    /// Lower directories, topmost first.
    pub lowers: Vec<PathBuf>,
    /// Upper and work directory.
    pub upper: Option<(PathBuf, PathBuf)>,
}

impl Overlay {
    /// The mount option string.
    pub fn options(&self) -> io::Result<String> {
        if self.lowers.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "overlay needs at least one lower dir",
            ));
        }
        let lowers: Vec<String> = self
            .lowers
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        if lowers.iter().any(|l| l.contains([':', ','])) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "layer path contains ':' or ','",
            ));
        }
        let mut options = format!("lowerdir={}", lowers.join(":"));
        if let Some((upper, work)) = &self.upper {
            options += &format!(",upperdir={},workdir={}", upper.display(), work.display());
        }
        if options.len() > MAX_OPTIONS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} layers make overlay options of {} bytes; the kernel takes {MAX_OPTIONS}",
                    self.lowers.len(),
                    options.len()
                ),
            ));
        }
        Ok(options)
    }

    /// Mounts at `target`.
    pub fn mount(&self, target: &Path) -> io::Result<()> {
        let options = self.options()?;
        let flags = if self.upper.is_some() {
            MsFlags::empty()
        } else {
            MsFlags::MS_RDONLY
        };
        // With one lower and no upper, overlay refuses: a read-only bind does the job.
        if self.upper.is_none() && self.lowers.len() == 1 {
            mount(
                Some(&self.lowers[0]),
                target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )?;
            return mount(
                None::<&str>,
                target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .map_err(io::Error::from);
        }
        mount(
            Some("overlay"),
            target,
            Some("overlay"),
            flags,
            Some(options.as_str()),
        )
        .map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("mount overlay at {}: {e}", target.display()),
            )
        })
    }
}

/// Unmounts `target`; not mounted is not an error.
pub fn unmount(target: &Path) -> io::Result<()> {
    match umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_and_limits() {
        let o = Overlay {
            lowers: vec!["/l/A".into(), "/l/B".into()],
            upper: Some(("/u".into(), "/w".into())),
        };
        assert_eq!(
            o.options().unwrap(),
            "lowerdir=/l/A:/l/B,upperdir=/u,workdir=/w"
        );
        let many = Overlay {
            lowers: (0..200)
                .map(|i| PathBuf::from(format!("/var/lib/crio/layers/l/{i:026}")))
                .collect(),
            upper: None,
        };
        assert!(
            many.options()
                .unwrap_err()
                .to_string()
                .contains("200 layers")
        );
        let bad = Overlay {
            lowers: vec!["/a:b".into()],
            upper: None,
        };
        assert!(bad.options().is_err());
        assert!(
            Overlay {
                lowers: vec![],
                upper: None
            }
            .options()
            .is_err()
        );
    }
}
