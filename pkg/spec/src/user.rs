//! Users and groups inside the image: `User` strings (`name`, `uid`,
//! `name:group`, `uid:gid`) resolved against the rootfs's /etc/passwd and
//! /etc/group, read without following links out of the rootfs.

use std::path::Path;

use crio_saferoot::{Error, Tree};

/// Reads `path` of the image (/etc/passwd, /etc/group) from its rootfs
/// `tree`: a regular file of at most `limit` bytes resolved inside the tree;
/// "" when it does not exist. A FIFO, device or link loop there is an error.
pub fn read_image_file(tree: &Tree, path: &str, limit: u64) -> Result<String, Error> {
    Ok(tree
        .read_regular(Path::new(path), limit)?
        .map(|data| String::from_utf8_lossy(&data).into_owned())
        .unwrap_or_default())
}

/// Why a `User` does not resolve against the image's files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// An /etc/passwd entry with a uid or gid that is not a number.
    #[error("/etc/passwd: bad {what} for {user:?}")]
    BadEntry {
        /// `uid` or `gid`.
        what: &'static str,
        /// The user looked up.
        user: String,
    },
    /// A user name the image's /etc/passwd does not have.
    #[error("user {0:?} not found in the image's /etc/passwd")]
    NoUser(String),
    /// A group name the image's /etc/group does not have.
    #[error("group {0:?} not found in the image's /etc/group")]
    NoGroup(String),
}

/// A resolved user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Groups from /etc/group that list the user.
    pub groups: Vec<u32>,
    /// Home directory, if known.
    pub home: Option<String>,
}

/// Resolves `user` (`name`, `uid`, with an optional `:group`) given the
/// contents of /etc/passwd and /etc/group; `Err` names what is missing.
pub fn resolve(user: &str, passwd: &str, group: &str) -> Result<Resolved, UserError> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| {
            f.len() >= 4
                && (f[0] == user_part || (user_part.parse::<u32>().is_ok() && f[2] == user_part))
        });
    let bad = |what| UserError::BadEntry {
        what,
        user: user_part.to_string(),
    };
    let (uid, mut gid, name, home) = match (&entry, user_part.parse::<u32>()) {
        (Some(f), _) => (
            f[2].parse::<u32>().map_err(|_| bad("uid"))?,
            f[3].parse::<u32>().map_err(|_| bad("gid"))?,
            Some(f[0].to_string()),
            f.get(5).map(|h| h.to_string()),
        ),
        (None, Ok(uid)) => (uid, 0, None, None),
        (None, Err(_)) => return Err(UserError::NoUser(user_part.to_string())),
    };
    if let Some(g) = group_part {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| UserError::NoGroup(g.to_string()))?,
        };
    }
    let groups = match &name {
        Some(n) => group
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .filter(|f| f.len() >= 4 && f[3].split(',').any(|m| m == n))
            .filter_map(|f| f[2].parse().ok())
            .collect(),
        None => Vec::new(),
    };
    Ok(Resolved {
        uid,
        gid,
        groups,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/sh\ntester:x:1000:1000:t:/home/tester:/bin/sh\n";
    const GROUP: &str = "root:x:0:\ntester:x:1000:\naudio:x:29:tester,other\nvideo:x:44:other\n";

    #[test]
    fn users_and_groups() {
        let r = resolve("tester", PASSWD, GROUP).unwrap();
        assert_eq!((r.uid, r.gid, r.groups.as_slice()), (1000, 1000, &[29][..]));
        assert_eq!(r.home.as_deref(), Some("/home/tester"));
        assert_eq!(resolve("1000", PASSWD, GROUP).unwrap().groups, [29]);
        let r = resolve("4242:44", PASSWD, GROUP).unwrap();
        assert_eq!((r.uid, r.gid), (4242, 44));
        assert_eq!(resolve("tester:video", PASSWD, GROUP).unwrap().gid, 44);
        assert_eq!(resolve("", PASSWD, GROUP).unwrap().uid, 0);
        assert!(
            resolve("nobody", PASSWD, GROUP)
                .unwrap_err()
                .to_string()
                .contains("\"nobody\"")
        );
        assert!(
            resolve("tester:nogroup", PASSWD, GROUP)
                .unwrap_err()
                .to_string()
                .contains("\"nogroup\"")
        );
    }

    #[test]
    fn image_files_are_read_inside_the_rootfs_only() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(tmp.path().join("passwd"), PASSWD).unwrap();
        std::os::unix::fs::symlink("../../passwd", root.join("etc/passwd")).unwrap();
        nix::unistd::mkfifo(&root.join("etc/group"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let tree = Tree::open(&root, crio_saferoot::Scope::InRoot).unwrap();
        assert_eq!(read_image_file(&tree, "/etc/passwd", 1 << 20).unwrap(), "");
        let err = read_image_file(&tree, "/etc/group", 1 << 20).unwrap_err();
        assert!(
            err.to_string().contains("/etc/group: not a regular file"),
            "{err}"
        );
        std::fs::write(root.join("passwd"), PASSWD).unwrap();
        assert_eq!(
            read_image_file(&tree, "/etc/passwd", 1 << 20).unwrap(),
            PASSWD
        );
    }
}
