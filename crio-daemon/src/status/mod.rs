//! The status API CRI-O serves over HTTP/1.1 on the CRI socket, beside
//! gRPC: `/info`, `/config`, `/containers/{id}`, `/pause/{id}` and
//! `/unpause/{id}` (see the README), and the client behind `crio status`.

pub mod client;

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use tokio::net::UnixStream;

use crate::cri::State;
use crate::error::Error;

/// CRI-O's `/info` answer.
#[derive(Debug, Serialize)]
struct Info<'a> {
    storage_driver: &'a str,
    /// A separate image store (none: images live under the root).
    storage_image: &'a str,
    storage_root: String,
    /// crio-rs's addition: the volatile state directory.
    storage_runroot: String,
    cgroup_driver: &'a str,
    default_id_mappings: IdMappings,
}

/// The user and group ID mappings containers get by default.
#[derive(Debug, Serialize)]
struct IdMappings {
    uids: Vec<IdMap>,
    gids: Vec<IdMap>,
}

/// One ID range.
#[derive(Debug, Serialize)]
struct IdMap {
    container_id: u32,
    host_id: u32,
    size: u32,
}

/// CRI-O's `/containers/{id}` answer.
#[derive(Debug, Serialize)]
struct ContainerInfo {
    name: String,
    pid: u32,
    image: String,
    image_ref: String,
    created_time: i64,
    labels: std::collections::HashMap<String, String>,
    annotations: std::collections::HashMap<String, String>,
    crio_annotations: serde_json::Value,
    log_path: String,
    root: String,
    sandbox: String,
    ip_addresses: Vec<String>,
}

/// The `/info` document of a configuration: no user namespace by
/// default, so the whole ID range maps to itself.
fn info(config: &crio_config::Config) -> Info<'_> {
    let identity = || {
        vec![IdMap {
            container_id: 0,
            host_id: 0,
            size: u32::MAX,
        }]
    };
    Info {
        storage_driver: &config.storage_driver,
        storage_image: "",
        storage_root: config.root.display().to_string(),
        storage_runroot: config.runroot.display().to_string(),
        cgroup_driver: &config.runtime.cgroup_manager,
        default_id_mappings: IdMappings {
            uids: identity(),
            gids: identity(),
        },
    }
}

/// What the daemon knows of container `id` (an ID or unique prefix); reads
/// its bundle's spec, so it runs off the executor.
fn container_info(st: &State, id: &str) -> Result<ContainerInfo, Error> {
    let record = st.containers.observe(id)?;
    let (pid, spec) = st.containers.verbose_info(&record);
    let ip_addresses = st
        .pods
        .get(&record.pod_id)
        .map(|p| p.ips)
        .unwrap_or_default();
    Ok(ContainerInfo {
        name: record.name.clone(),
        pid,
        image: record.image_ref.clone(),
        image_ref: record.image_id.clone(),
        created_time: record.created_at,
        labels: record.config.labels.clone(),
        annotations: record.config.annotations.clone(),
        crio_annotations: spec
            .get("annotations")
            .cloned()
            .unwrap_or_else(|| serde_json::json!({})),
        log_path: record.log_path.clone(),
        root: st.containers.rootfs_dir(&record.id).display().to_string(),
        sandbox: record.pod_id.to_string(),
        ip_addresses,
    })
}

/// Serves HTTP/1.1 status requests on one connection until the client
/// closes it.
pub async fn serve(state: Arc<State>, stream: UnixStream) {
    let service = hyper::service::service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(answer(state, req).await) }
    });
    let io = hyper_util::rt::TokioIo::new(stream);
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .await
    {
        tracing::debug!("status API connection: {e}");
    }
}

/// Routes one request.
async fn answer(state: Arc<State>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let id_of = |prefix: &str| path.strip_prefix(prefix).map(str::to_string);
    let known = path == "/info" || path == "/config" || path.starts_with("/containers/");
    let pause = id_of("/pause/").map(|id| (id, true));
    let pause = pause.or_else(|| id_of("/unpause/").map(|id| (id, false)));
    if !known && pause.is_none() {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            format!("no such endpoint: {path}\n"),
        );
    }
    if req.method() != Method::GET {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            format!("{path} answers GET only\n"),
        );
    }
    if let Some((id, paused)) = pause {
        return match state.containers.set_paused(&id, paused).await {
            Ok(()) => reply(StatusCode::OK, "text/plain", "OK\n".into()),
            Err(e) => failure(e),
        };
    }
    match path.as_str() {
        "/info" => json(&info(&state.config)),
        "/config" => reply(
            StatusCode::OK,
            "application/toml",
            crio_config::render(&state.effective_config()),
        ),
        _ => {
            let id = id_of("/containers/").unwrap_or_default();
            let found = tokio::task::spawn_blocking(move || container_info(&state, &id)).await;
            match found {
                Ok(Ok(info)) => json(&info),
                Ok(Err(e)) => failure(e),
                Err(e) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    format!("{e}\n"),
                ),
            }
        }
    }
}

/// The answer to a request that failed with `e`: 404 for an unknown
/// container, 500 (as CRI-O answers) for anything else.
fn failure(e: Error) -> Response<Full<Bytes>> {
    let status = match e {
        Error::NotFound { .. } => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    reply(status, "text/plain", format!("{e}\n"))
}

/// A 200 answer of `value` as indented JSON.
fn json(value: &impl Serialize) -> Response<Full<Bytes>> {
    match serde_json::to_string_pretty(value) {
        Ok(mut body) => {
            body.push('\n');
            reply(StatusCode::OK, "application/json", body)
        }
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            format!("{e}\n"),
        ),
    }
}

/// An answer with `body` of `content_type`.
fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_names_the_storage_and_cgroup_driver() {
        let mut config = crio_config::Config {
            root: "/var/lib/x".into(),
            ..Default::default()
        };
        config.runtime.cgroup_manager = "cgroupfs".into();
        let v = serde_json::to_value(info(&config)).unwrap();
        assert_eq!(v["storage_driver"], "overlay");
        assert_eq!(v["storage_root"], "/var/lib/x");
        assert_eq!(v["cgroup_driver"], "cgroupfs");
        assert_eq!(v["default_id_mappings"]["uids"][0]["size"], u32::MAX);
        assert_eq!(v["default_id_mappings"]["gids"][0]["host_id"], 0);
    }
}
