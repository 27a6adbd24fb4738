//! Unit tests of the pod operations.

use super::*;

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
