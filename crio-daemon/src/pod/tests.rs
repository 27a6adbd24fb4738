//! Unit tests of the pod operations, against fake shims: pods on the
//! host's namespaces (nothing to pin, no CNI), so no root is needed.

use crio_api::Code;
use crio_api::cri::{NamespaceMode, PodSandboxMetadata};

use super::*;
use crate::shim::TaskError;
use crate::testing::{World, pod_config};

fn code(e: crate::error::Error) -> Code {
    tonic::Status::from(e).code()
}

/// A pod whose containers share its PID namespace (it gets an infra
/// container).
fn sharing_pid(name: &str) -> crio_api::cri::PodSandboxConfig {
    let mut config = pod_config(name);
    let linux = config.linux.get_or_insert_with(Default::default);
    let sc = linux.security_context.get_or_insert_with(Default::default);
    let ns = sc.namespace_options.get_or_insert_with(Default::default);
    ns.pid = NamespaceMode::Pod as i32;
    config
}

#[test]
fn names_and_ids() {
    let md = PodSandboxMetadata {
        name: "web".into(),
        uid: "u1".into(),
        namespace: "default".into(),
        attempt: 2,
    };
    assert_eq!(pod_name(&md), "k8s_web_default_u1_2");
    let (a, b) = (new_id(), new_id());
    assert_eq!(a.len(), 64);
    assert_ne!(a, b);
}

#[tokio::test]
async fn a_pod_gets_its_files_and_its_shim() {
    let w = World::new();
    let id = w.pod("web").await;
    let pod = w.pods.get(&id).unwrap();
    assert_eq!(pod.state, PodState::Ready);
    for file in ["hostname", "resolv.conf", "hosts"] {
        assert!(w.pods.run_dir(&pod.id).join(file).is_file(), "{file}");
    }
    assert_eq!(w.shims.calls(), [format!("ensure {id}")]);
    // A retry gets the same pod; another request for the name is refused.
    assert_eq!(w.pod("web").await, id);
    let mut other = pod_config("web");
    other.hostname = "elsewhere".into();
    let e = w.pods.run(other, String::new()).await.unwrap_err();
    assert_eq!(code(e), Code::AlreadyExists);
}

#[tokio::test]
async fn a_pod_whose_shim_fails_is_rolled_back() {
    let w = World::new();
    w.shims
        .fail_next("ensure", TaskError::Failed("exec format error".into()));
    let e = w.pods.run(pod_config("web"), String::new()).await;
    let e = tonic::Status::from(e.unwrap_err());
    assert_eq!(e.code(), Code::Unavailable);
    assert!(e.message().starts_with("pod shim: "), "{e:?}");
    assert!(w.pods.list().is_empty());
    let pods_dir = w.dir.path().join("run/pods");
    assert_eq!(std::fs::read_dir(&pods_dir).unwrap().count(), 0);
    let pending = w.dir.path().join("root/pods-pending");
    assert_eq!(std::fs::read_dir(&pending).unwrap().count(), 0);
    assert!(w.shims.calls().iter().any(|c| c.starts_with("shutdown ")));
    // The name is free again.
    let id = w.pod("web").await;
    assert!(w.pods.get(&id).is_some());
}

#[tokio::test]
async fn stop_and_remove_take_the_containers_first_and_the_shim_last() {
    let w = World::new();
    let config = sharing_pid("web");
    let id = w.sandboxes.run(config, String::new()).await.unwrap();
    let infra = w.containers.infra_of(&id).expect("an infra container");
    let app = w.containers.create(&id, w.container("app")).await.unwrap();
    w.containers.start(&app).await.unwrap();

    w.sandboxes.stop(&id).await.unwrap();
    let kills = w.shims.calls_of(&["kill"]);
    assert_eq!(
        kills,
        [format!("kill {app} 15"), format!("kill {} 15", infra.id)]
    );
    assert_eq!(w.pods.get(&id).unwrap().state, PodState::NotReady);
    w.sandboxes.stop(&id).await.unwrap();

    w.sandboxes.remove(&id).await.unwrap();
    let order = w.shims.calls_of(&["delete", "shutdown"]);
    assert_eq!(
        order,
        [
            format!("delete {app}"),
            format!("delete {}", infra.id),
            format!("shutdown {id}")
        ]
    );
    assert!(w.pods.get(&id).is_none());
    assert!(w.containers.get(&app).is_none() && w.containers.infra_of(&id).is_none());
    w.sandboxes.remove(&id).await.unwrap();
}

#[tokio::test]
async fn a_pod_whose_infra_container_fails_is_removed() {
    let w = World::new();
    let config = sharing_pid("web");
    w.shims.fail_next(
        "start",
        TaskError::Failed("pause: permission denied".into()),
    );
    let e = w.sandboxes.run(config, String::new()).await.unwrap_err();
    let e = tonic::Status::from(e);
    assert_eq!(e.code(), Code::Unknown);
    assert_eq!(e.message(), "start task: pause: permission denied");
    assert!(w.pods.list().is_empty(), "the pod is removed");
    assert!(w.shims.calls().iter().any(|c| c.starts_with("delete ")));
    assert!(w.shims.calls().iter().any(|c| c.starts_with("shutdown ")));
}
