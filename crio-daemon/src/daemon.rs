//! Start-up and serving: configuration, directories, the CRI socket, and a
//! graceful stop on SIGTERM/SIGINT that never touches containers.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use crio_api::cri::image_service_server::ImageServiceServer;
use crio_api::cri::runtime_service_server::RuntimeServiceServer;
use tokio::signal::unix::{SignalKind, signal};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::cli::Cli;
use crate::cri::{self, State};
use crate::handlers::Handlers;
use crate::pod::{Pods, Sandboxes};
use crate::shim::{PodShims, ShimConfig, Shims};

/// How long a stop waits for in-flight calls and open connections.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(cli: Cli) -> ExitCode {
    let loaded = match cli.load_config() {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("crio: invalid configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("crio: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = init_logs(&runtime, &loaded.config) {
        eprintln!("crio: {e}");
        return ExitCode::FAILURE;
    }
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let result = runtime.block_on(serve(loaded, Arc::new(cli)));
    crate::telemetry::shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The log (`log_level`, `log_format`, `log_filter`) and, when enabled,
/// the OpenTelemetry layer, whose gRPC channel needs the runtime.
fn init_logs(runtime: &tokio::runtime::Runtime, config: &crio_config::Config) -> Result<()> {
    let rt = &config.runtime;
    let filter = (!rt.log_filter.is_empty())
        .then(|| regex::Regex::new(&rt.log_filter))
        .transpose()
        .context("crio.runtime.log_filter")?;
    let _entered = runtime.enter();
    let otel = crate::telemetry::layer(&config.tracing)
        .map_err(anyhow::Error::msg)
        .context("crio.tracing")?;
    crate::logging::init(
        &rt.log_level,
        crate::logging::LogFormat::named(&rt.log_format),
        filter,
        otel,
    );
    Ok(())
}

/// The systemd cgroup driver needs systemd as init (`systemd_dir` is
/// `/run/systemd/system`, there when it is): refused early, naming the key.
fn check_cgroup_manager(manager: &str, systemd_dir: &Path) -> Result<()> {
    if manager == "systemd" && !systemd_dir.is_dir() {
        anyhow::bail!(
            "crio.runtime.cgroup_manager = \"systemd\" needs systemd running as init ({} is missing); use \"cgroupfs\"",
            systemd_dir.display()
        );
    }
    Ok(())
}

/// Prepares the host side (runtime binaries, shim, directories), then serves
/// the CRI until a stop signal arrives.
async fn serve(loaded: crio_config::Loaded, cli: Arc<Cli>) -> Result<()> {
    let signals = stop_signals();
    let hangups = crate::reload::hangups();
    let started = loaded.config.clone();
    let (config, missing, rebooted) = prepare_host(loaded)?;
    let listen = config.api.listen.clone();
    let listener = crate::socket::bind(&listen).await?;
    start_metrics(&config).await?;
    let state = open_state(config, missing).await?;
    if rebooted {
        state.sandboxes.wipe().await;
    }
    let rt = &state.config.runtime;
    state
        .apparmor
        .ensure(&rt.apparmor_profile, &state.config.runroot)
        .await;
    let streaming = start_streaming(&state).await?;
    let _ = state.streaming.set(streaming);
    if let Some(hup) = hangups {
        tokio::spawn(crate::reload::on_sighup(hup, state.clone(), cli, started));
    }
    let clean_shutdown_file = state.config.clean_shutdown_file.clone();
    tracing::info!(socket = %listen.display(), version = env!("CARGO_PKG_VERSION"), "crio-rs serving the CRI");
    let notifier = crate::notify::Notifier::from_env().map(Arc::new);
    if let Some(n) = &notifier {
        tokio::spawn(crate::notify::announce_ready(listen.clone(), n.clone()));
    }
    let result = run_server(state, listener, signals, notifier).await;
    let _ = std::fs::remove_file(&listen);
    result?;
    mark_clean_stop(&clean_shutdown_file);
    tracing::info!("stopped; containers keep running");
    Ok(())
}

/// The effective configuration (runtime paths resolved, checked) with the
/// handlers whose runtime binary is missing (and why), the security modules
/// logged, the directories made, the start marked; and whether this is the
/// first start since boot.
fn prepare_host(
    loaded: crio_config::Loaded,
) -> Result<(crio_config::Config, BTreeMap<String, String>, bool)> {
    let mut config = loaded.config;
    let path_env = std::env::var("PATH").unwrap_or_default();
    let platform = crio_config::host_platform();
    let missing =
        crio_config::resolve_runtimes(&mut config, &loaded.origins, &path_env, &platform)?;
    check_cgroup_manager(
        &config.runtime.cgroup_manager,
        Path::new("/run/systemd/system"),
    )?;
    // A seccomp_profile that is not a profile stops the start before the
    // socket opens (the container store reads it again for its defaults).
    crio_spec::seccomp::Profile::configured(&config.runtime.seccomp_profile)?;
    let lsm = crate::container::host_lsm(&config).report(config.runtime.selinux);
    tracing::info!(apparmor = %lsm["apparmor"], selinux = %lsm["selinux"], "security modules");
    for dir in [&config.root, &config.runroot] {
        create_private_dir(dir)?;
    }
    let rebooted = mark_start(&config);
    Ok((config, missing, rebooted))
}

/// The runtime handlers, each probed (off the executor: runtimes run)
/// and those of `missing` unusable for the reason given.
async fn probe_handlers(
    config: &crio_config::Config,
    missing: BTreeMap<String, String>,
) -> Result<Arc<Handlers>> {
    let config = config.clone();
    let probed = tokio::task::spawn_blocking(move || crate::handlers::probed(&config, &missing))
        .await
        .context("probe the runtime handlers")?;
    Ok(Arc::new(probed))
}

/// The pods' shims, each of its pod's runtime handler.
async fn start_shims(config: &crio_config::Config, handlers: Arc<Handlers>) -> Result<Arc<Shims>> {
    let shim = ShimConfig {
        handlers,
        systemd_cgroup: config.runtime.cgroup_manager == "systemd",
        log_format: crate::logging::LogFormat::named(&config.runtime.log_format).name(),
        start_timeout: crate::shim::START_TIMEOUT,
    };
    Ok(Arc::new(Shims::start(shim, &config.runroot).await?))
}

/// Opens the stores and wires the daemon's parts together: shims first,
/// then pods (which start shims), images, containers (which run in pods'
/// shims), and the pod operations over both.
async fn open_state(
    config: crio_config::Config,
    missing: BTreeMap<String, String>,
) -> Result<Arc<State>> {
    let images = Arc::new(crate::images::Images::open(&config).context("image store")?);
    let handlers = probe_handlers(&config, missing).await?;
    let started = start_shims(&config, handlers.clone()).await?;
    let shim_events = started.take_events();
    let shims: Arc<dyn PodShims> = started;
    let pods =
        Arc::new(Pods::open(&config, shims.clone(), handlers.clone()).context("pod records")?);
    pods.recover_pending().await;
    let checked = pods.clone();
    tokio::spawn(async move { checked.check_networks().await });
    let with = crate::container::Collaborators {
        pods: pods.clone(),
        images: images.clone(),
        shims: shims.clone(),
        rootfs: Arc::new(crate::container::Overlays),
    };
    let containers =
        Arc::new(crate::container::Containers::open(&config, with).context("container records")?);
    if let Some(queue) = shim_events {
        tokio::spawn(containers.clone().follow_shim_events(queue));
    }
    tokio::spawn(containers.clone().watch());
    let sandboxes = Sandboxes::new(
        pods.clone(),
        containers.clone(),
        shims,
        config.runtime.drop_infra_ctr,
    );
    Ok(Arc::new(State {
        handlers,
        config,
        images,
        pods,
        containers,
        sandboxes,
        cpu_rates: Default::default(),
        streaming: Default::default(),
        reloaded: Default::default(),
        apparmor: Default::default(),
    }))
}

/// Serves the CRI on `listener` until it fails or a stop signal arrives;
/// in-flight calls get [`SHUTDOWN_GRACE`] to finish.
async fn run_server(
    state: Arc<State>,
    listener: tokio::net::UnixListener,
    signals: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
    notifier: Option<Arc<crate::notify::Notifier>>,
) -> Result<()> {
    let api = &state.config.api;
    let (send_max, recv_max) = (
        usize::try_from(api.grpc_max_send_msg_size).unwrap_or(usize::MAX),
        usize::try_from(api.grpc_max_recv_msg_size).unwrap_or(usize::MAX),
    );
    let events = state.containers.clone();
    let (grpc_tx, grpc_rx) = tokio::sync::mpsc::channel(64);
    let status_state = state.clone();
    let accept = tokio::spawn(crate::socket::accept_loop(
        listener,
        grpc_tx,
        move |stream| crate::status::serve(status_state.clone(), stream),
    ));
    let incoming = ReceiverStream::new(grpc_rx).map(Ok::<_, std::io::Error>);
    let (runtime_api, image_api) = cri::services(state);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(
        tonic::transport::Server::builder()
            .layer(crate::telemetry::RpcLayer)
            .add_service(
                RuntimeServiceServer::new(runtime_api)
                    .max_encoding_message_size(send_max)
                    .max_decoding_message_size(recv_max),
            )
            .add_service(
                ImageServiceServer::new(image_api)
                    .max_encoding_message_size(send_max)
                    .max_decoding_message_size(recv_max),
            )
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop_rx.await;
            }),
    );
    let result = tokio::select! {
        done = &mut server => done,
        () = stop_signal(signals) => {
            if let Some(n) = &notifier {
                n.send("STOPPING=1");
            }
            // Event streams end, or they would hold the stop up.
            events.close_events();
            let _ = stop_tx.send(());
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
                Ok(done) => done,
                Err(_) => {
                    tracing::warn!("in-flight calls still running after {SHUTDOWN_GRACE:?}: exiting anyway");
                    server.abort();
                    Ok(Ok(()))
                }
            }
        }
    };
    accept.abort();
    result.context("CRI server task")?.context("CRI server")?;
    Ok(())
}

/// CRI-O's markers: the version file (in volatile storage, so a reboot
/// removes it) and the clean-shutdown file, removed while running, so its
/// absence at start means the last stop was not clean. True when the
/// version file was missing while pods are recorded: the first start since
/// a reboot that left pods to wipe.
fn mark_start(config: &crio_config::Config) -> bool {
    let clean = &config.clean_shutdown_file;
    if !clean.as_os_str().is_empty() {
        if clean.exists() {
            let _ = std::fs::remove_file(clean);
        } else if config.root.join("pods").exists() || config.root.join("images").exists() {
            tracing::warn!(
                "the last stop was not clean ({} missing): records are checked as they load",
                clean.display()
            );
        }
    }
    let rebooted = !config.version_file.as_os_str().is_empty() && !config.version_file.exists();
    for file in [&config.version_file, &config.version_file_persist] {
        if file.as_os_str().is_empty() {
            continue;
        }
        if let Some(dir) = file.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) = std::fs::write(file, env!("CARGO_PKG_VERSION")) {
            tracing::warn!("write {}: {e}", file.display());
        }
    }
    let pods = config.root.join("pods");
    let recorded = std::fs::read_dir(&pods).is_ok_and(|mut d| d.next().is_some());
    if rebooted {
        tracing::info!(
            "no version file in volatile storage: first start since boot{}",
            if recorded {
                ", the pods left are removed"
            } else {
                ""
            }
        );
    }
    rebooted && recorded
}

fn mark_clean_stop(file: &Path) {
    if file.as_os_str().is_empty() {
        return;
    }
    if let Some(dir) = file.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = crio_storage::atomic::write(file, b"") {
        tracing::warn!("write {}: {e}", file.display());
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    crio_storage::dirs::ensure(dir, crio_storage::dirs::TRAVERSABLE)
        .with_context(|| format!("create {}", dir.display()))
}

/// SIGTERM and SIGINT, caught from the moment this is called (before the
/// socket answers anything, so a stop right after a first call is never
/// the default, abrupt one).
fn stop_signals() -> Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)> {
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => Some((term, int)),
        _ => {
            tracing::error!("cannot install signal handlers; stop the daemon with SIGKILL");
            None
        }
    }
}

/// Resolves on the first SIGTERM or SIGINT of `signals`.
async fn stop_signal(signals: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>) {
    let Some((mut term, mut int)) = signals else {
        return std::future::pending().await;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!("{name} received: finishing in-flight calls");
}

/// The process's metrics with the configured collectors, served when
/// `enable_metrics` is set.
async fn start_metrics(config: &crio_config::Config) -> Result<()> {
    let metrics = &config.metrics;
    for name in crate::metrics::init(&metrics.metrics_collectors) {
        tracing::warn!("crio.metrics.metrics_collectors: {name:?} is no collector: ignored");
    }
    crate::metrics::global().set_default_runtime(&config.runtime.default_runtime);
    if metrics.enable_metrics {
        crate::metrics::serve(metrics).await?;
    }
    Ok(())
}

/// `stream_idle_timeout`: empty is CRI-O's default, never "forever".
fn stream_idle_timeout(text: &str) -> Result<std::time::Duration> {
    match text {
        "" => Ok(crio_streaming::ServerConfig::default().idle_timeout),
        text => crio_config::parse_duration(text)
            .map_err(anyhow::Error::msg)
            .context("stream_idle_timeout"),
    }
}

/// Starts the streaming server on `stream_address:stream_port`.
async fn start_streaming(state: &Arc<State>) -> Result<crio_streaming::Server> {
    let api = &state.config.api;
    let port: u16 = api
        .stream_port
        .parse()
        .with_context(|| format!("stream_port {:?} is not a port", api.stream_port))?;
    let ip: std::net::IpAddr = api.stream_address.parse().with_context(|| {
        format!(
            "stream_address {:?} is not an IP address",
            api.stream_address
        )
    })?;
    let defaults = crio_streaming::ServerConfig::default();
    let idle = stream_idle_timeout(&api.stream_idle_timeout)?;
    let tls = api
        .stream_enable_tls
        .then(|| crio_streaming::tls::TlsFiles {
            cert: api.stream_tls_cert.clone(),
            key: api.stream_tls_key.clone(),
            ca: (!api.stream_tls_ca.as_os_str().is_empty()).then(|| api.stream_tls_ca.clone()),
        });
    let config = crio_streaming::ServerConfig {
        addr: std::net::SocketAddr::new(ip, port),
        idle_timeout: idle,
        tls,
        ..defaults
    };
    let backend = crate::streaming::StreamBackend::new(Arc::downgrade(state));
    let server = crio_streaming::Server::start(config, backend)
        .await
        .context("start the streaming server")?;
    tracing::info!(address = %server.local_addr(), "streaming server listening");
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_stream_idle_timeout_is_four_hours() {
        let hours = |h: u64| std::time::Duration::from_secs(h * 3600);
        assert_eq!(stream_idle_timeout("").unwrap(), hours(4));
        assert_eq!(stream_idle_timeout("1h").unwrap(), hours(1));
        assert!(stream_idle_timeout("soon").is_err());
    }

    #[test]
    fn systemd_driver_needs_systemd() {
        let tmp = std::env::temp_dir().join(format!("crio-systemd-{}", std::process::id()));
        let err = check_cgroup_manager("systemd", &tmp)
            .unwrap_err()
            .to_string();
        assert!(err.contains("crio.runtime.cgroup_manager") && err.contains("missing"));
        assert!(check_cgroup_manager("cgroupfs", &tmp).is_ok());
        std::fs::create_dir_all(&tmp).unwrap();
        assert!(check_cgroup_manager("systemd", &tmp).is_ok());
        std::fs::remove_dir(&tmp).unwrap();
    }
}
