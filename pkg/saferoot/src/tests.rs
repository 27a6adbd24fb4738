use super::*;
use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};

use proptest::prelude::*;

/// A temp dir holding `root/` (the tree) and, beside it, `secret` and
/// `outside/`, which nothing may reach through the tree.
struct World {
    tmp: tempfile::TempDir,
}

impl World {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("root")).unwrap();
        fs::create_dir(tmp.path().join("outside")).unwrap();
        fs::write(tmp.path().join("secret"), b"host").unwrap();
        fs::write(tmp.path().join("outside/secret"), b"host").unwrap();
        Self { tmp }
    }

    fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }

    fn tree(&self, scope: Scope) -> Tree {
        Tree::open(&self.root(), scope).unwrap()
    }

    /// Inodes of everything outside the tree.
    fn outside_inodes(&self) -> HashSet<u64> {
        let mut out = HashSet::new();
        for p in ["", "secret", "outside", "outside/secret"] {
            out.insert(fs::metadata(self.tmp.path().join(p)).unwrap().ino());
        }
        out.insert(fs::metadata("/").unwrap().ino());
        out
    }

    /// The names in the temp dir and in `outside/`.
    fn outside_listing(&self) -> Vec<String> {
        let mut names = Vec::new();
        for d in ["", "outside"] {
            for e in fs::read_dir(self.tmp.path().join(d)).unwrap() {
                names.push(format!("{d}/{}", e.unwrap().file_name().to_string_lossy()));
            }
        }
        names.sort();
        names
    }
}

#[test]
fn links_in_a_rootfs_resolve_inside_it() {
    let w = World::new();
    let root = w.root();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/real"), b"inside").unwrap();
    symlink("/etc/real", root.join("etc/passwd")).unwrap();
    symlink("../../../../secret", root.join("etc/group")).unwrap();
    let tree = w.tree(Scope::InRoot);
    assert_eq!(
        tree.read_regular(Path::new("/etc/passwd"), 100).unwrap(),
        Some(b"inside".to_vec())
    );
    // `..` above the top stays at the top: the tree has no /secret.
    assert_eq!(
        tree.read_regular(Path::new("/etc/group"), 100).unwrap(),
        None
    );
    fs::write(root.join("secret"), b"own").unwrap();
    assert_eq!(
        tree.read_regular(Path::new("/etc/group"), 100).unwrap(),
        Some(b"own".to_vec())
    );
}

#[test]
fn a_chain_longer_than_the_kernels_limit_fails_inside() {
    let w = World::new();
    let root = w.root();
    // l0 -> l1 -> ... -> l41 -> ../secret: past 40 links the old string
    // resolver handed "../secret" to the kernel from the host's view.
    for i in 0..42 {
        symlink(format!("l{}", i + 1), root.join(format!("l{i}"))).unwrap();
    }
    symlink("../secret", root.join("l42")).unwrap();
    let tree = w.tree(Scope::InRoot);
    let err = tree.read_regular(Path::new("/l0"), 100).unwrap_err();
    assert!(err.to_string().contains("l0"), "{err}");
    assert!(
        tree.mkdir_all(Path::new("/l0/made"), Mode::from_bits_truncate(0o755))
            .is_err()
    );
    assert!(!w.tmp.path().join("made").exists());
}

#[test]
fn special_and_large_files_are_refused_without_blocking() {
    let w = World::new();
    let root = w.root();
    nix::unistd::mkfifo(&root.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
    fs::create_dir(root.join("dir")).unwrap();
    fs::write(root.join("big"), vec![b'x'; 101]).unwrap();
    let tree = w.tree(Scope::InRoot);
    for (name, want) in [
        ("fifo", "not a regular file"),
        ("dir", "not a regular file"),
    ] {
        let err = tree.read_regular(Path::new(name), 100).unwrap_err();
        assert!(err.to_string().contains(want), "{name}: {err}");
    }
    let err = tree.read_regular(Path::new("big"), 100).unwrap_err();
    assert!(matches!(err, Error::TooLarge { limit: 100, .. }), "{err}");
    assert_eq!(
        tree.read_regular(Path::new("big"), 101)
            .unwrap()
            .unwrap()
            .len(),
        101
    );
}

#[test]
fn beneath_follows_no_link() {
    let w = World::new();
    let root = w.root();
    fs::create_dir(root.join("d")).unwrap();
    symlink("d", root.join("inner")).unwrap();
    let tree = w.tree(Scope::Beneath);
    assert!(tree.dir(Path::new("d")).is_ok());
    assert!(tree.dir(Path::new("inner")).is_err());
    assert!(tree.dir(Path::new("d/../..")).is_err());
}

#[test]
fn mkdir_all_makes_missing_parts_through_inner_links() {
    let w = World::new();
    let root = w.root();
    fs::create_dir(root.join("var")).unwrap();
    symlink("/var", root.join("data")).unwrap();
    symlink("/../outside", root.join("up")).unwrap();
    let tree = w.tree(Scope::InRoot);
    let mode = Mode::from_bits_truncate(0o755);
    tree.mkdir_all(Path::new("/data/lib/x"), mode).unwrap();
    assert!(root.join("var/lib/x").is_dir());
    // A link to nothing is not made into a directory.
    let err = tree.mkdir_all(Path::new("/up/made"), mode).unwrap_err();
    assert!(err.to_string().contains("up"), "{err}");
    fs::create_dir(root.join("outside")).unwrap();
    tree.mkdir_all(Path::new("/up/made"), mode).unwrap();
    assert!(root.join("outside/made").is_dir());
    assert!(!w.tmp.path().join("outside/made").exists());
}

#[test]
fn remove_all_at_does_not_follow_links() {
    let w = World::new();
    let root = w.root();
    fs::create_dir_all(root.join("gone/sub")).unwrap();
    fs::write(root.join("gone/sub/f"), b"x").unwrap();
    symlink(w.tmp.path().join("outside"), root.join("gone/link")).unwrap();
    let tree = w.tree(Scope::Beneath);
    remove_all_at(tree.top(), OsStr::new("gone")).unwrap();
    assert!(!root.join("gone").exists());
    assert!(w.tmp.path().join("outside/secret").exists());
    remove_all_at(tree.top(), OsStr::new("gone")).unwrap();
}

/// One node of a random tree: a directory, a file, or a link to a target
/// made of names, `..` and the names of things outside.
#[derive(Debug, Clone)]
enum Node {
    Dir,
    File,
    Link(String),
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a"),
        Just("b"),
        Just("c"),
        Just("secret"),
        Just("outside")
    ]
    .prop_map(str::to_string)
}

fn link_target() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        prop::collection::vec(prop_oneof![name(), Just("..".to_string())], 0..6),
    )
        .prop_map(|(absolute, parts)| {
            let joined = parts.join("/");
            if absolute || joined.is_empty() {
                format!("/{joined}")
            } else {
                joined
            }
        })
}

fn node() -> impl Strategy<Value = Node> {
    prop_oneof![
        Just(Node::Dir),
        Just(Node::File),
        link_target().prop_map(Node::Link),
    ]
}

/// Paths of up to three names, made in order: later entries under a name
/// that is not a directory are skipped.
fn tree_spec() -> impl Strategy<Value = Vec<(Vec<String>, Node)>> {
    prop::collection::vec((prop::collection::vec(name(), 1..4), node()), 1..24)
}

fn build(root: &Path, spec: &[(Vec<String>, Node)]) {
    for (parts, node) in spec {
        let path = parts.iter().fold(root.to_path_buf(), |p, n| p.join(n));
        let parent_ok = fs::symlink_metadata(path.parent().unwrap())
            .map(|m| m.is_dir())
            .unwrap_or(false);
        if !parent_ok || fs::symlink_metadata(&path).is_ok() {
            continue;
        }
        match node {
            Node::Dir => fs::create_dir(&path).unwrap(),
            Node::File => fs::write(&path, b"in").unwrap(),
            Node::Link(t) => symlink(t, &path).unwrap(),
        }
    }
    // A chain past the kernel's limit, reachable from the random links.
    for i in 0..45 {
        let _ = symlink(format!("chain{}", i + 1), root.join(format!("chain{i}")));
    }
    let _ = symlink("../../outside/secret", root.join("chain45"));
}

fn query() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        prop::collection::vec(
            prop_oneof![name(), Just("..".to_string()), Just("chain0".to_string())],
            0..6,
        ),
    )
        .prop_map(|(absolute, parts)| {
            let joined = parts.join("/");
            if absolute {
                format!("/{joined}")
            } else {
                joined
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn resolution_never_leaves_the_root(
        spec in tree_spec(),
        queries in prop::collection::vec(query(), 1..8),
    ) {
        let w = World::new();
        build(&w.root(), &spec);
        let outside = w.outside_inodes();
        let before = w.outside_listing();
        for scope in [Scope::InRoot, Scope::Beneath] {
            let tree = w.tree(scope);
            for q in &queries {
                if let Ok(fd) = tree.open_at(Path::new(q), OFlag::O_PATH, Mode::empty()) {
                    let ino = fstat(&fd).unwrap().st_ino;
                    prop_assert!(!outside.contains(&ino), "{q:?} ({scope:?}) reached outside");
                }
                if let Ok(Some(data)) = tree.read_regular(Path::new(q), 16) {
                    prop_assert_eq!(data, b"in".to_vec());
                }
                let _ = tree.mkdir_all(&Path::new(q).join("made"), Mode::from_bits_truncate(0o755));
            }
        }
        prop_assert_eq!(w.outside_listing(), before);
    }
}
