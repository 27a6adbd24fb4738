//! OpenTelemetry traces: one pod start sent with the kubelet's
//! `traceparent` arrives at a real OTLP/gRPC receiver as one trace under
//! that parent, the daemon's RPC and step spans with the shim's runc spans
//! below them; with sampling at 0 nothing is sent.

use std::collections::HashMap;
use std::time::Duration;

use crio_api::client::CriClient;
use crio_api::cri::{
    CreateContainerRequest, NamespaceMode, RunPodSandboxRequest, StartContainerRequest,
};
use crio_test::containers::{Setup, container, remove_pod, setup_with_files};
use crio_test::otlp::{Received, Receiver};
use crio_test::pods::pod_config;
use nix::sys::signal::Signal;

const POD: i32 = NamespaceMode::Pod as i32;
/// The kubelet's span: the parent of the daemon's RPC spans.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

fn traced<T>(message: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    let parent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    req.metadata_mut()
        .insert("traceparent", parent.parse().unwrap());
    req
}

async fn daemon_tracing_to(receiver: &Receiver, rate: u32) -> Setup {
    let conf = format!(
        "[crio.tracing]\nenable_tracing = true\ntracing_endpoint = \"{}\"\n\
         tracing_sampling_rate_per_million = {rate}\n",
        receiver.endpoint()
    );
    setup_with_files(&[("conf.d/50-tracing.conf", &conf)]).await
}

/// RunPodSandbox, CreateContainer and StartContainer, each with the
/// kubelet's traceparent; the pod's ID.
async fn start_pod_traced(client: &mut CriClient, image: &str, name: &str) -> String {
    let config = pod_config(name, POD, POD);
    let pod = client
        .runtime
        .run_pod_sandbox(traced(RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        }))
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let id = client
        .runtime
        .create_container(traced(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(container("sleeper", image, &["sleep", "60"])),
            sandbox_config: Some(config),
        }))
        .await
        .unwrap()
        .into_inner()
        .container_id;
    client
        .runtime
        .start_container(traced(StartContainerRequest { container_id: id }))
        .await
        .unwrap();
    pod
}

/// The first span of the trace named `name`.
fn named<'a>(spans: &'a [Received], name: &str) -> &'a Received {
    spans
        .iter()
        .find(|s| s.span.name == name)
        .unwrap_or_else(|| panic!("no span {name:?} in {:#?}", names(spans)))
}

fn names(spans: &[Received]) -> Vec<String> {
    spans
        .iter()
        .map(|s| format!("{}:{}", s.service, s.span.name))
        .collect()
}

/// Whether a span named `name` descends from `ancestor`.
fn has_under(spans: &[Received], name: &str, ancestor: &Received) -> bool {
    spans
        .iter()
        .any(|s| s.span.name == name && descends(spans, s, ancestor))
}

/// Whether `child` descends from `ancestor` through spans of the trace.
fn descends(spans: &[Received], child: &Received, ancestor: &Received) -> bool {
    let by_id: HashMap<String, &Received> = spans.iter().map(|s| (s.span_id(), s)).collect();
    let mut at = child.parent_id();
    while let Some(s) = by_id.get(&at) {
        if s.span_id() == ancestor.span_id() {
            return true;
        }
        at = s.parent_id();
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn one_pod_start_is_one_trace_from_the_callers_span_down_to_runc() {
    let receiver = Receiver::start().await.unwrap();
    let mut setup = daemon_tracing_to(&receiver, 1_000_000).await;
    let image = setup.images.busybox.reference.clone();
    let pod = start_pod_traced(&mut setup.client, &image, "traced").await;

    let wanted = [
        "RunPodSandbox",
        "CreateContainer",
        "StartContainer",
        "runc create",
        "runc start",
    ];
    let ours = |spans: &[Received]| -> Vec<Received> {
        let ours = spans.iter().filter(|s| s.trace_id() == TRACE_ID);
        ours.cloned().collect()
    };
    let all = receiver
        .wait_for(Duration::from_secs(30), |spans| {
            let trace = ours(spans);
            wanted
                .iter()
                .all(|w| trace.iter().any(|s| s.span.name == *w))
        })
        .await
        .unwrap();
    let trace = ours(&all);
    if let Some(path) = std::env::var_os("CRIO_TEST_TRACE_JSON") {
        let json: Vec<_> = trace.iter().map(Received::to_json).collect();
        std::fs::write(path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    }

    // The three RPCs hang from the kubelet's span, every other span from
    // one of ours: one tree under that parent.
    for rpc in ["RunPodSandbox", "CreateContainer", "StartContainer"] {
        let span = named(&trace, rpc);
        assert_eq!(span.parent_id(), PARENT_ID, "{rpc}");
        assert_eq!(span.service, "crio");
    }
    let ids: Vec<String> = trace.iter().map(Received::span_id).collect();
    for s in &trace {
        assert!(
            s.parent_id() == PARENT_ID || ids.contains(&s.parent_id()),
            "{} has a parent outside the trace: {:#?}",
            s.span.name,
            names(&trace)
        );
    }

    // The daemon's steps, under their RPC.
    let run = named(&trace, "RunPodSandbox");
    for step in [
        "namespaces",
        "network",
        "CNI ADD bridge",
        "pod shim",
        "files",
    ] {
        assert!(has_under(&trace, step, run), "{step}: {:#?}", names(&trace));
    }
    let create = named(&trace, "CreateContainer");
    for step in ["rootfs", "spec", "pod shim", "task create", "record"] {
        assert!(
            has_under(&trace, step, create),
            "{step}: {:#?}",
            names(&trace)
        );
    }

    // The shim's spans, exported under its own service, below the call
    // that reached it.
    let runc_create = named(&trace, "runc create");
    assert_eq!(runc_create.service, "containerd-shim-crio-v2");
    let shim_create = by_id(&trace, &runc_create.parent_id()).expect("runc create's parent");
    assert_eq!(shim_create.span.name, "shim create");
    assert_eq!(shim_create.service, "containerd-shim-crio-v2");
    assert!(descends(&trace, runc_create, named(&trace, "task create")));
    let runc_start = named(&trace, "runc start");
    assert_eq!(runc_start.service, "containerd-shim-crio-v2");
    assert!(descends(
        &trace,
        runc_start,
        named(&trace, "StartContainer")
    ));
    for s in &trace {
        assert!(s.span.start_time_unix_nano <= s.span.end_time_unix_nano);
    }

    // The container's exit, reported by the shim under the start's trace.
    remove_pod(&mut setup.client, &pod).await;
    let all = receiver
        .wait_for(Duration::from_secs(30), |spans| {
            ours(spans).iter().any(|s| s.span.name == "exit reported")
        })
        .await
        .unwrap();
    let trace = ours(&all);
    let exit = named(&trace, "exit reported");
    assert_eq!(exit.service, "containerd-shim-crio-v2");
    assert!(descends(&trace, exit, named(&trace, "StartContainer")));
}

/// The span with ID `id`.
fn by_id<'a>(spans: &'a [Received], id: &str) -> Option<&'a Received> {
    spans.iter().find(|s| s.span_id() == id)
}

#[tokio::test(flavor = "multi_thread")]
async fn sampling_at_zero_sends_nothing() {
    let receiver = Receiver::start().await.unwrap();
    let mut setup = daemon_tracing_to(&receiver, 0).await;
    let image = setup.images.busybox.reference.clone();
    let pod = start_pod_traced(&mut setup.client, &image, "untraced").await;
    remove_pod(&mut setup.client, &pod).await;
    // A stop exports whatever is buffered.
    let status = setup.world.daemon.signal_and_wait(Signal::SIGTERM).unwrap();
    assert!(status.success(), "{}", setup.world.daemon.log());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(names(&receiver.spans()), Vec::<String>::new());
}
