//! User namespaces (`NamespaceOption.userns_options`, Kubernetes
//! `hostUsers: false`): which requests are allowed, whether this host can
//! run them, and the idmapped mounts that make the pod's files and the
//! containers' filesystems usable by the mapped root without a chown.
//!
//! The OCI runtime only joins the pod's user namespace (runc 1.1 has no
//! idmapped mounts): the daemon idmaps the rootfs, the volumes and the
//! pod's files itself and hands the runtime paths that already are.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use crio_api::cri::{IdMapping, NamespaceMode, NamespaceOption, PodSandboxConfig, UserNamespace};
use crio_network::userns::IdMap;
use crio_storage::mount::Overlay;

use crate::error::{Error, Result};

const FIELD: &str = "config.linux.security_context.namespace_options";

/// The ID map of a pod in POD mode (None in NODE mode), after the checks
/// the CRI asks for; each refusal names the field.
pub fn pod_map(config: &PodSandboxConfig) -> Result<Option<IdMap>> {
    let ns = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default();
    let Some(map) = requested_map(&ns, FIELD)? else {
        return Ok(None);
    };
    for (name, mode) in [("network", ns.network), ("ipc", ns.ipc), ("pid", ns.pid)] {
        if mode == NamespaceMode::Node as i32 {
            return Err(Error::field(
                &format!("{FIELD}.{name}"),
                "a pod in a user namespace cannot use the node's namespace",
            ));
        }
    }
    Ok(Some(map))
}

/// Refuses a pod in a user namespace whose runtime handler cannot run it
/// here (its `user_namespaces` feature was not probed true at start).
pub fn check_handler(
    config: &PodSandboxConfig,
    handler: &str,
    features: Option<&crio_api::cri::RuntimeHandlerFeatures>,
) -> Result<()> {
    if pod_map(config)?.is_some() && !features.is_some_and(|f| f.user_namespaces) {
        return Err(Error::Precondition(format!(
            "{FIELD}.userns_options: runtime handler {handler:?} cannot run pods in a user \
             namespace on this host (the daemon's start-up log says why)"
        )));
    }
    Ok(())
}

/// Refuses a container whose `userns_options` differ from its pod's: its
/// containers share the pod's user namespace, as its other namespaces.
pub fn check_container(ns: Option<&NamespaceOption>, pod: Option<IdMap>) -> Result<()> {
    let field = "config.linux.security_context.namespace_options";
    let Some(ns) = ns.filter(|n| n.userns_options.is_some()) else {
        return Ok(());
    };
    if requested_map(ns, field)? != pod {
        return Err(Error::field(
            &format!("{field}.userns_options"),
            "must be the pod's user namespace options",
        ));
    }
    Ok(())
}

/// The mapping `ns` asks for under `field`; None for NODE or no options.
fn requested_map(ns: &NamespaceOption, field: &str) -> Result<Option<IdMap>> {
    let field = format!("{field}.userns_options");
    let Some(user) = &ns.userns_options else {
        return Ok(None);
    };
    match NamespaceMode::try_from(user.mode) {
        Ok(NamespaceMode::Node) if user.uids.is_empty() && user.gids.is_empty() => Ok(None),
        Ok(NamespaceMode::Node) => Err(Error::field(
            &format!("{field}.uids"),
            "mappings are only for mode POD",
        )),
        Ok(NamespaceMode::Pod) => pod_mode_map(user, &field).map(Some),
        _ => Err(Error::field(
            &format!("{field}.mode"),
            "only NODE and POD are supported for user namespaces",
        )),
    }
}

fn pod_mode_map(user: &UserNamespace, field: &str) -> Result<IdMap> {
    let one = |list: &[IdMapping], name: &str| match list {
        [m] => Ok(*m),
        _ => Err(Error::field(
            &format!("{field}.{name}"),
            format!("exactly one mapping is supported, got {}", list.len()),
        )),
    };
    let (uid, gid) = (one(&user.uids, "uids")?, one(&user.gids, "gids")?);
    if uid.container_id != 0 || uid.length == 0 {
        return Err(Error::field(
            &format!("{field}.uids[0].container_id"),
            "container ID 0 must be mapped",
        ));
    }
    if uid.host_id.checked_add(uid.length - 1).is_none() {
        return Err(Error::field(
            &format!("{field}.uids[0].length"),
            "the mapping runs past the last ID",
        ));
    }
    if gid != uid {
        return Err(Error::field(
            &format!("{field}.gids"),
            "must be the same mapping as uids",
        ));
    }
    Ok(IdMap {
        container_id: uid.container_id,
        host_id: uid.host_id,
        length: uid.length,
    })
}

/// The user namespace of `pod` (pinned under `namespaces_dir`), when it
/// has one.
pub fn of_pod(pod: &crate::pod::PodRecord, namespaces_dir: &Path) -> Option<crio_spec::UserNs> {
    use crio_network::netns::{Kind, pin_path};
    if !pod.kinds().contains(&Kind::User) {
        return None;
    }
    let map = pod_map(&pod.config).ok().flatten()?;
    Some(crio_spec::UserNs {
        path: pin_path(namespaces_dir, Kind::User, &pod.id),
        host_id: map.host_id,
        length: map.length,
    })
}

/// The pinned user namespace, opened (its descriptor is what idmapped
/// mounts take).
pub fn open(pinned: &Path) -> Result<OwnedFd> {
    std::fs::File::open(pinned)
        .map(OwnedFd::from)
        .map_err(|e| Error::Internal(format!("open user namespace {}: {e}", pinned.display())))
}

/// The refusal for a mount the kernel or its filesystem cannot idmap.
pub fn cannot_idmap(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Precondition(format!(
        "{what} ({}) cannot be idmapped for the pod's user namespace: {e}",
        path.display()
    ))
}

/// Where a user-namespaced pod's files are seen idmapped, below its
/// directory.
pub fn pod_files_dir(pod_dir: &Path) -> PathBuf {
    pod_dir.join(IDMAPPED)
}

/// Makes the pod's files (hostname, hosts, resolv.conf) and its /dev/shm
/// usable by the mapped root: an idmapped copy of the pod's directory at
/// [`pod_files_dir`], and the shm tmpfs idmapped in place. (The runtime
/// opens bind mount sources as the host's root; only the rootfs must be
/// reachable by path from inside, see [`exposed_rootfs`].)
pub fn idmap_pod_files(pod_dir: &Path, shm: Option<&Path>, pinned: &Path) -> Result<()> {
    let userns = open(pinned)?;
    let files = pod_files_dir(pod_dir);
    std::fs::create_dir_all(&files).map_err(Error::internal)?;
    crio_storage::idmap::bind_idmapped(pod_dir, &files, &userns, false)
        .map_err(|e| cannot_idmap("the pod's files", pod_dir, e))?;
    if let Some(shm) = shm {
        crio_storage::idmap::remount_idmapped(shm, &userns)
            .map_err(|e| cannot_idmap("the pod's /dev/shm", shm, e))?;
    }
    Ok(())
}

/// Removes the idmapped copy of a pod's files (nothing when there is none).
pub fn release_pod_files(pod_dir: &Path) {
    let _ = crio_storage::mount::unmount(&pod_files_dir(pod_dir));
}

/// Below the runroot: where the rootfs of a user-namespaced container is
/// reachable by path from inside its user namespace (runc's init, already
/// mapped, mounts it); the daemon's own directories are root's alone.
const EXPOSED: &str = "userns";

/// Where the rootfs of the container of bundle `RUNROOT/containers/ID` is
/// seen by its mapped root: `RUNROOT/userns/ID/rootfs`.
pub fn exposed_rootfs(bundle: &Path) -> PathBuf {
    let id = bundle.file_name().unwrap_or_default();
    let runroot = bundle.parent().and_then(Path::parent).unwrap_or(bundle);
    runroot.join(EXPOSED).join(id).join("rootfs")
}

/// Binds `rootfs` at [`exposed_rootfs`]: `RUNROOT/userns` searchable
/// (0711), the container's directory searchable by root and the mapped
/// group `gid` alone (0710), so no local user reaches the rootfs (whose
/// set-uid files are the mapped root's).
fn expose_rootfs(rootfs: &Path, bundle: &Path, gid: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let target = exposed_rootfs(bundle);
    let dir = target.parent().unwrap_or(&target);
    let exposed = dir.parent().unwrap_or(dir);
    crio_storage::dirs::ensure(exposed, crio_storage::dirs::TRAVERSABLE)
        .map_err(|e| Error::Internal(format!("create {}: {e}", exposed.display())))?;
    reachable(exposed).map_err(Error::Precondition)?;
    crio_storage::dirs::ensure(dir, crio_storage::dirs::PRIVATE)
        .and_then(|()| {
            nix::unistd::chown(dir, None, Some(nix::unistd::Gid::from_raw(gid)))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o710))?;
            std::fs::create_dir_all(&target)
        })
        .map_err(|e| Error::Internal(format!("create {}: {e}", target.display())))?;
    nix::mount::mount(
        Some(rootfs),
        &target,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| Error::Internal(format!("bind the rootfs at {}: {e}", target.display())))
}

/// Whether every directory from `/` to `dir` can be searched by others,
/// as a mapped root must to reach what is below.
fn reachable(dir: &Path) -> std::result::Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    for d in dir.ancestors() {
        let mode = std::fs::metadata(d)
            .map_err(|e| format!("{}: {e}", d.display()))?
            .permissions()
            .mode();
        if mode & 0o001 == 0 {
            return Err(format!(
                "{} (mode {:o}) cannot be searched by a user namespace's mapped root",
                d.display(),
                mode & 0o7777
            ));
        }
    }
    Ok(())
}

/// A container's filesystems seen through its pod's user namespace.
/// Overlay cannot be idmapped itself, but may sit on idmapped lower layers
/// (Linux 5.19): each image layer gets an idmapped copy under the bundle's
/// `idmapped/` directory, and the container's own fresh upper directory
/// belongs to its mapped root (no file of the image or of a volume is
/// chowned). Bind mounts get idmapped copies there too.
pub struct Idmapper {
    userns: OwnedFd,
    copies: PathBuf,
    host_id: u32,
}

impl Idmapper {
    /// For the container whose rootfs is mounted at `rootfs` (in its
    /// bundle), in the user namespace `userns`.
    pub fn new(rootfs: &Path, userns: &crio_spec::UserNs) -> Result<Self> {
        let bundle = rootfs.parent().unwrap_or(rootfs);
        Ok(Self {
            userns: open(&userns.path)?,
            copies: bundle.join(IDMAPPED),
            host_id: userns.host_id,
        })
    }

    /// An idmapped copy of `source` at `idmapped/NAME`; the error names
    /// `what` could not be idmapped.
    fn copy(&self, name: &str, source: &Path, what: &str, recursive: bool) -> Result<PathBuf> {
        let target = self.copies.join(name);
        let meta = std::fs::metadata(source)
            .map_err(|e| Error::Missing(format!("{what} {}: {e}", source.display())))?;
        let made = if meta.is_dir() {
            std::fs::create_dir_all(&target)
        } else {
            std::fs::create_dir_all(&self.copies)
                .and_then(|()| std::fs::File::create(&target).map(drop))
        };
        made.map_err(|e| Error::Internal(format!("create {}: {e}", target.display())))?;
        crio_storage::idmap::bind_idmapped(source, &target, &self.userns, recursive)
            .map_err(|e| cannot_idmap(what, source, e))?;
        Ok(target)
    }

    /// The rootfs overlay: idmapped copies of `lowers`, and `upper` (fresh,
    /// empty) given to the mapped root.
    pub fn overlay(&self, lowers: &[PathBuf], upper: PathBuf, work: PathBuf) -> Result<Overlay> {
        let mut copies = Vec::with_capacity(lowers.len());
        for (i, layer) in lowers.iter().enumerate() {
            copies.push(self.copy(&format!("layer-{i}"), layer, "an image layer", false)?);
        }
        let (uid, gid) = (
            nix::unistd::Uid::from_raw(self.host_id),
            nix::unistd::Gid::from_raw(self.host_id),
        );
        nix::unistd::chown(&upper, Some(uid), Some(gid)).map_err(|e| {
            Error::Internal(format!("give {} to the mapped root: {e}", upper.display()))
        })?;
        Ok(Overlay {
            lowers: copies,
            upper: Some((upper, work)),
        })
    }

    /// Files made on the calling thread until the guard is dropped belong
    /// to the mapped root (the image's VOLUME directories).
    pub fn as_mapped_root(&self) -> MappedRoot {
        nix::unistd::setfsuid(nix::unistd::Uid::from_raw(self.host_id));
        nix::unistd::setfsgid(nix::unistd::Gid::from_raw(self.host_id));
        MappedRoot
    }

    /// Gives each of `config`'s bind mounts an idmapped copy, which
    /// `config` then names as its host path, and exposes `rootfs` (see
    /// [`exposed_rootfs`]). A mount that cannot be idmapped is refused,
    /// naming it.
    pub fn finish(&self, config: &mut crio_api::cri::ContainerConfig, rootfs: &Path) -> Result<()> {
        for (i, m) in config.mounts.iter_mut().enumerate() {
            let source = PathBuf::from(&m.host_path);
            let what = format!("config.mounts[{i}].host_path");
            let target = self.copy(&format!("mount-{i}"), &source, &what, true)?;
            m.host_path = target.display().to_string();
        }
        let bundle = self.copies.parent().unwrap_or(&self.copies);
        expose_rootfs(rootfs, bundle, self.host_id)
    }
}

/// While it lives, the calling thread makes files as the mapped root.
pub struct MappedRoot;

impl Drop for MappedRoot {
    fn drop(&mut self) {
        nix::unistd::setfsuid(nix::unistd::Uid::from_raw(0));
        nix::unistd::setfsgid(nix::unistd::Gid::from_raw(0));
    }
}

/// The directory of a bundle or a pod holding its idmapped copies.
const IDMAPPED: &str = "idmapped";

/// Unmounts a container's exposed rootfs and idmapped copies (nothing
/// when it has none); its rootfs is unmounted before.
pub fn release_container(bundle: &Path) {
    let exposed = exposed_rootfs(bundle);
    let _ = crio_storage::mount::unmount(&exposed);
    if let Some(dir) = exposed.parent() {
        let _ = std::fs::remove_dir(&exposed);
        let _ = std::fs::remove_dir(dir);
    }
    let copies = bundle.join(IDMAPPED);
    for entry in std::fs::read_dir(&copies).into_iter().flatten().flatten() {
        let _ = crio_storage::mount::unmount(&entry.path());
    }
}

/// Whether the runtime can join a user namespace: its `features` answer
/// lists it. Idmapped mounts are the daemon's (see [`probe_host`]).
pub fn runtime_supports(features: &serde_json::Value) -> bool {
    features["linux"]["namespaces"]
        .as_array()
        .is_some_and(|n| n.iter().any(|x| x == "user"))
}

/// Whether this host can run user-namespaced pods: a user namespace can
/// be made, and overlay (under `root`), bind mounts and tmpfs (under
/// `runroot`) can be idmapped. Blocking; the error names what failed.
pub fn probe_host(root: &Path, runroot: &Path) -> std::result::Result<(), String> {
    let holder = crio_network::userns::Holder::spawn(
        IdMap {
            container_id: 0,
            host_id: 100_000,
            length: 65_536,
        },
        nix::sched::CloneFlags::empty(),
    )
    .map_err(|e| format!("create a user namespace: {e}"))?;
    let userns = holder
        .user_ns()
        .map_err(|e| format!("open a user namespace: {e}"))?;
    reachable(runroot)?;
    let name = format!(".userns-probe-{}", std::process::id());
    let (on_root, on_runroot) = (root.join(&name), runroot.join(&name));
    let result = probe_in(&userns, &on_root, &on_runroot);
    for dir in [&on_root, &on_runroot] {
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

/// Idmaps a bind mount of `on_runroot` and a tmpfs below it, and mounts
/// an overlay on idmapped layers below `on_root`; each made for the probe
/// and unmounted after it.
fn probe_in(
    userns: &OwnedFd,
    on_root: &Path,
    on_runroot: &Path,
) -> std::result::Result<(), String> {
    let idmap = |what: &str, path: &Path| {
        crio_storage::idmap::idmapped_clone(path, userns, false)
            .map(drop)
            .map_err(|e| format!("idmap a {what} mount: {e}"))
    };
    let tmpfs = on_runroot.join("tmpfs");
    let made: std::io::Result<()> = ["lower", "rw/upper", "rw/work", "l", "merged"]
        .iter()
        .map(|d| on_root.join(d))
        .chain([tmpfs.clone()])
        .try_for_each(std::fs::create_dir_all);
    made.map_err(|e| format!("probe directories: {e}"))?;
    idmap("bind", on_runroot)?;
    let result = probe_overlay(userns, on_root);
    for d in ["merged", "l"] {
        let _ = crio_storage::mount::unmount(&on_root.join(d));
    }
    result?;
    nix::mount::mount(
        Some("tmpfs"),
        &tmpfs,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=64k"),
    )
    .map_err(|e| format!("mount a tmpfs: {e}"))?;
    let result = idmap("tmpfs", &tmpfs);
    let _ = crio_storage::mount::unmount(&tmpfs);
    result
}

/// An overlay at `dir/merged` on an idmapped copy (`l`) of `dir/lower`,
/// as a user-namespaced container's rootfs is made.
fn probe_overlay(userns: &OwnedFd, dir: &Path) -> std::result::Result<(), String> {
    crio_storage::idmap::bind_idmapped(&dir.join("lower"), &dir.join("l"), userns, false)
        .map_err(|e| format!("idmap a layer: {e}"))?;
    Overlay {
        lowers: vec![dir.join("l")],
        upper: Some((dir.join("rw/upper"), dir.join("rw/work"))),
    }
    .mount(&dir.join("merged"))
    .map_err(|e| format!("mount an overlay on idmapped layers: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crio_api::cri::{LinuxPodSandboxConfig, LinuxSandboxSecurityContext};

    fn mapping(container_id: u32) -> IdMapping {
        IdMapping {
            host_id: 100_000,
            container_id,
            length: 65_536,
        }
    }

    fn pod(user: UserNamespace, network: NamespaceMode) -> PodSandboxConfig {
        PodSandboxConfig {
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: network as i32,
                        userns_options: Some(user),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn refused(user: UserNamespace, network: NamespaceMode) -> String {
        match pod_map(&pod(user, network)) {
            Err(Error::InvalidField { field, .. }) => field,
            other => panic!("not refused: {other:?}"),
        }
    }

    fn user(mode: NamespaceMode, uids: Vec<IdMapping>, gids: Vec<IdMapping>) -> UserNamespace {
        UserNamespace {
            mode: mode as i32,
            uids,
            gids,
        }
    }

    #[test]
    fn pod_mode_gives_the_map() {
        let ok = user(NamespaceMode::Pod, vec![mapping(0)], vec![mapping(0)]);
        let map = pod_map(&pod(ok, NamespaceMode::Pod)).unwrap().unwrap();
        assert_eq!((map.host_id, map.length), (100_000, 65_536));
        let node = user(NamespaceMode::Node, vec![], vec![]);
        assert_eq!(pod_map(&pod(node, NamespaceMode::Node)).unwrap(), None);
        assert_eq!(pod_map(&PodSandboxConfig::default()).unwrap(), None);
    }

    #[test]
    fn refusals_name_the_field() {
        let two = vec![mapping(0), mapping(70_000)];
        let cases = [
            (
                user(NamespaceMode::Pod, two.clone(), two),
                "userns_options.uids",
            ),
            (
                user(NamespaceMode::Pod, vec![mapping(1)], vec![mapping(1)]),
                "userns_options.uids[0].container_id",
            ),
            (
                user(NamespaceMode::Container, vec![], vec![]),
                "userns_options.mode",
            ),
            (
                user(NamespaceMode::Target, vec![], vec![]),
                "userns_options.mode",
            ),
            (
                user(
                    NamespaceMode::Pod,
                    vec![mapping(0)],
                    vec![IdMapping {
                        host_id: 300_000,
                        ..mapping(0)
                    }],
                ),
                "userns_options.gids",
            ),
        ];
        for (shape, field) in cases {
            assert_eq!(
                refused(shape, NamespaceMode::Pod),
                format!("{FIELD}.{field}")
            );
        }
        let ok = user(NamespaceMode::Pod, vec![mapping(0)], vec![mapping(0)]);
        assert_eq!(refused(ok, NamespaceMode::Node), format!("{FIELD}.network"));
    }

    #[test]
    fn containers_share_the_pods_namespace() {
        let map = IdMap {
            container_id: 0,
            host_id: 100_000,
            length: 65_536,
        };
        let same = NamespaceOption {
            userns_options: Some(user(NamespaceMode::Pod, vec![mapping(0)], vec![mapping(0)])),
            ..Default::default()
        };
        assert!(check_container(Some(&same), Some(map)).is_ok());
        assert!(check_container(None, Some(map)).is_ok());
        assert!(check_container(Some(&same), None).is_err());
    }

    #[test]
    fn a_handler_without_the_feature_is_refused() {
        use crio_api::cri::RuntimeHandlerFeatures;
        let ok = user(NamespaceMode::Pod, vec![mapping(0)], vec![mapping(0)]);
        let config = pod(ok, NamespaceMode::Pod);
        let able = RuntimeHandlerFeatures {
            user_namespaces: true,
            ..Default::default()
        };
        assert!(check_handler(&config, "runc", Some(&able)).is_ok());
        let unable = RuntimeHandlerFeatures::default();
        let refused = check_handler(&config, "crun", Some(&unable));
        assert!(matches!(refused, Err(Error::Precondition(m)) if m.contains("\"crun\"")));
        assert!(check_handler(&config, "none", None).is_err());
        assert!(check_handler(&PodSandboxConfig::default(), "crun", None).is_ok());
    }

    #[test]
    fn runtime_features_list_user_namespaces() {
        let features = |text: &str| serde_json::from_str(text).unwrap();
        assert!(runtime_supports(&features(
            r#"{"linux":{"namespaces":["mount","user"]}}"#
        )));
        assert!(!runtime_supports(&features(
            r#"{"linux":{"namespaces":["mount"]}}"#
        )));
        assert!(!runtime_supports(&serde_json::Value::Null));
    }
}
