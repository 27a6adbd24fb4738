//! Output a container process controls cannot fill the node: ExecSync's
//! output stops at the cap the daemon reads (per stream) in the runtime
//! state directory, and `log_size_max` bounds a container's CRI log file,
//! across a ReopenContainerLog too.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crio_api::cri::{ExecSyncRequest, NamespaceMode, ReopenContainerLogRequest};
use crio_contract::EXEC_SYNC_OUTPUT_MAX;
use crio_test::containers::{Setup, container, create, remove_pod, run_pod, setup_with_files};
use crio_test::pods::pod_config;

const POD: i32 = NamespaceMode::Pod as i32;

/// Watches, every few milliseconds until dropped, the largest size any
/// file that `pick` chooses in `dir` reaches.
struct LargestFile {
    stop: Arc<AtomicBool>,
    largest: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LargestFile {
    fn watch(dir: PathBuf, pick: fn(&Path) -> bool) -> Self {
        let (stop, largest) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let (s, l) = (stop.clone(), largest.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    if pick(&entry.path())
                        && let Ok(meta) = entry.metadata()
                    {
                        l.fetch_max(meta.len(), Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Self {
            stop,
            largest,
            thread: Some(thread),
        }
    }

    fn largest(&self) -> u64 {
        self.largest.load(Ordering::Relaxed)
    }
}

impl Drop for LargestFile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_sync_output_stops_at_the_cap_and_the_exec_still_completes() {
    let Setup {
        world,
        mut client,
        images,
        _registry,
    } = setup_with_files(&[]).await;
    let pod_id = run_pod(&mut client, pod_config("loud", POD, POD)).await;
    let id = create(
        &mut client,
        &pod_id,
        container("target", &images.busybox.reference, &["sleep", "600"]),
    )
    .await
    .unwrap();
    crio_test::containers::start_container(&mut client, id.clone()).await;

    // 40 MiB on each stream, then a pause so the files are seen at their
    // largest before the daemon reads and removes them.
    let bundle = world.daemon.path("run/containers").join(&id);
    let watch = LargestFile::watch(bundle, |p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("exec-"))
    });
    let script = "head -c 41943040 /dev/zero; head -c 41943040 /dev/zero >&2; sleep 1; exit 7";
    let r = client
        .runtime
        .exec_sync(ExecSyncRequest {
            container_id: id.clone(),
            cmd: ["sh", "-c", script].map(String::from).to_vec(),
            timeout: 120,
        })
        .await
        .unwrap()
        .into_inner();
    let largest = watch.largest();
    drop(watch);
    assert_eq!(r.exit_code, 7);
    let cap = EXEC_SYNC_OUTPUT_MAX as usize;
    assert_eq!((r.stdout.len(), r.stderr.len()), (cap, cap));
    assert!(r.stdout.iter().chain(&r.stderr).all(|b| *b == 0));
    assert!(largest > 0, "the output files were never seen");
    assert!(
        largest <= EXEC_SYNC_OUTPUT_MAX,
        "an output file in the runroot reached {largest} bytes"
    );
    assert!(
        world.daemon.log().contains("ExecSync output of container"),
        "the daemon did not say the output was cut:\n{}",
        world.daemon.log()
    );

    // Output under the cap comes back whole.
    let r = client
        .runtime
        .exec_sync(ExecSyncRequest {
            container_id: id.clone(),
            cmd: ["sh", "-c", "echo small; echo err >&2"]
                .map(String::from)
                .to_vec(),
            timeout: 10,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (&r.stdout[..], &r.stderr[..]),
        (&b"small\n"[..], &b"err\n"[..])
    );
    remove_pod(&mut client, &pod_id).await;
}

/// The lines `prefix-0` .. `prefix-{n-1}`, each padded to about 100 bytes.
fn burst(prefix: &str, n: u32) -> String {
    format!(
        "i=0; while [ $i -lt {n} ]; do echo {prefix}-$i-{pad}; i=$((i+1)); done",
        pad = "x".repeat(80)
    )
}

async fn wait_for_log(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} never reached {}: {text}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn log_size_max_keeps_the_log_file_under_it_across_a_reopen() {
    const LIMIT: u64 = 16384;
    let dropin = format!("[crio.runtime]\nlog_size_max = {LIMIT}\n");
    let Setup {
        world,
        mut client,
        images,
        _registry,
    } = setup_with_files(&[("conf.d/50-log-size.conf", &dropin)]).await;
    let logs = world.daemon.path("podlogs");
    let mut pod = pod_config("chatty", POD, POD);
    pod.log_directory = logs.display().to_string();
    let pod_id = run_pod(&mut client, pod).await;

    // 2000 lines of ~130 bytes each in the log (about 260 KB), a wait for a
    // signal, as much again and a last line.
    let script = format!(
        "{}; until [ -e /tmp/go ]; do sleep 0.05; done; {}; echo the-end; sleep 600",
        burst("a", 2000),
        burst("b", 2000)
    );
    let watch = LargestFile::watch(logs.clone(), |p| p.extension().is_some_and(|e| e == "log"));
    let id = create(
        &mut client,
        &pod_id,
        container("writer", &images.busybox.reference, &["sh", "-c", &script]),
    )
    .await
    .unwrap();
    crio_test::containers::start_container(&mut client, id.clone()).await;
    let log = logs.join("writer.log");
    // The writer keeps going past the limit: the file starts over.
    let text = wait_for_log(&log, "a-1999-").await;
    assert!(!text.contains(" a-0-"), "the log was never cut: {text}");
    for line in text.lines() {
        let fields: Vec<&str> = line.splitn(4, ' ').collect();
        assert!(
            fields.len() == 4 && fields[1] == "stdout" && fields[2] == "F",
            "not a whole CRI log line: {line:?}"
        );
    }

    // The kubelet rotates: rename, then ReopenContainerLog; the limit holds
    // for the new file.
    std::fs::rename(&log, logs.join("writer.log.1")).unwrap();
    client
        .runtime
        .reopen_container_log(ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    client
        .runtime
        .exec_sync(ExecSyncRequest {
            container_id: id.clone(),
            cmd: ["touch", "/tmp/go"].map(String::from).to_vec(),
            timeout: 10,
        })
        .await
        .unwrap();
    let text = wait_for_log(&log, "the-end").await;
    assert!(
        !text.contains(" b-0-"),
        "the reopened log was never cut: {text}"
    );
    let largest = watch.largest();
    drop(watch);
    for f in [&log, &logs.join("writer.log.1")] {
        let len = std::fs::metadata(f).unwrap().len();
        assert!(len <= LIMIT, "{} is {len} bytes", f.display());
    }
    assert!(largest <= LIMIT, "a log file reached {largest} bytes");
    remove_pod(&mut client, &pod_id).await;
}
