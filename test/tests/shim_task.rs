//! The pod shim over ttrpc with real runc and a busybox rootfs, no daemon:
//! exit codes, signals, exec with and without a terminal, pids, stats,
//! pause/resume, update, the CRI log file and its reopening, attach, OOM,
//! and exits recorded while nobody listens to events.

use std::path::Path;
use std::time::{Duration, Instant};

use crio_api::task::protobuf::Message;
use crio_api::task::protobuf::well_known_types::any::Any;
use crio_api::task::{self, Status};
use crio_attach::{channel, read_frame, write_frame};
use crio_test::shim::{ShimWorld, ctx};
use tokio::net::UnixStream;

const LOG: &str = "io.kubernetes.cri-o.LogPath";

async fn eventually<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `(stream, tag, text)` of each line of a CRI log file.
fn log_lines(path: &Path) -> Vec<(String, String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut p = l.splitn(4, ' ');
            let _time = p.next();
            let stream = p.next().unwrap_or_default().to_string();
            let tag = p.next().unwrap_or_default().to_string();
            (stream, tag, p.next().unwrap_or_default().to_string())
        })
        .collect()
}

async fn kill(w: &ShimWorld, id: &str, signal: u32) {
    let req = task::KillRequest {
        id: id.into(),
        signal,
        ..Default::default()
    };
    w.client.kill(ctx(), &req).await.unwrap();
}

async fn pids(w: &ShimWorld, id: &str) -> Vec<u32> {
    let req = task::PidsRequest {
        id: id.into(),
        ..Default::default()
    };
    let resp = w.client.pids(ctx(), &req).await.unwrap();
    resp.processes.iter().map(|p| p.pid).collect()
}

/// Reads attach frames until `want` appears in the output; returns all of it.
async fn read_until(stream: &mut UnixStream, want: &str) -> String {
    let mut seen = String::new();
    let read = async {
        while !seen.contains(want) {
            let (ch, data) = read_frame(stream).await.expect("attach frame");
            if ch == channel::STDOUT || ch == channel::STDERR {
                seen.push_str(&String::from_utf8_lossy(&data));
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(15), read)
        .await
        .is_err()
    {
        panic!("{want:?} not seen on attach; got {seen:?}");
    }
    seen
}

#[tokio::test]
async fn exit_code_log_lines_events_and_exit_file() {
    let w = ShimWorld::start("pod-exit").await.unwrap();
    let log = w.path("logs/c1.log");
    let log_s = log.display().to_string();
    let bundle = w
        .bundle(
            "c1",
            &[
                "sh",
                "-c",
                "printf 'one\\ntwo\\npart'; printf 'err\\n' >&2; exit 3",
            ],
            &[(LOG, &log_s)],
            |_| {},
        )
        .unwrap();
    let pid = w.create("c1", &bundle, false).await.unwrap();
    assert!(pid > 0);
    assert_eq!(w.status("c1").await.unwrap(), Status::CREATED);
    w.start_task("c1", "").await.unwrap();
    assert_eq!(w.wait("c1", "").await.unwrap(), 3);
    assert_eq!(w.status("c1").await.unwrap(), Status::STOPPED);
    let exit = std::fs::read_to_string(bundle.join("exit")).unwrap();
    assert!(exit.starts_with("3 "), "exit file: {exit:?}");

    let lines = log_lines(&log);
    let of = |stream: &str| -> Vec<(String, String)> {
        lines
            .iter()
            .filter(|l| l.0 == stream)
            .map(|l| (l.1.clone(), l.2.clone()))
            .collect()
    };
    let pair = |t: &str, x: &str| (t.to_string(), x.to_string());
    assert_eq!(
        of("stdout"),
        vec![pair("F", "one"), pair("F", "two"), pair("P", "part")]
    );
    assert_eq!(of("stderr"), vec![pair("F", "err")]);
    assert_eq!(lines.len(), 4, "{lines:?}");

    let events = eventually("the exit event", async || {
        let e = w.events();
        e.iter().any(|e| e.topic == "/tasks/exit").then_some(e)
    })
    .await;
    assert!(
        events
            .iter()
            .any(|e| e.topic == "/tasks/start" && e.container_id == "c1")
    );
    let exit_event = events.iter().find(|e| e.topic == "/tasks/exit").unwrap();
    assert_eq!(
        (exit_event.container_id.as_str(), exit_event.exit_status),
        ("c1", Some(3))
    );
    assert_eq!(w.delete("c1").await.unwrap(), 3);
    let err = w.status("c1").await.unwrap_err().to_string();
    assert!(err.contains("not found"), "{err}");
}

/// runc containers are started through runc's exec FIFO (no `runc start`):
/// runc then reports them running, a process that exits at once has still
/// started, and one whose process died while it was only created fails to
/// start, saying so.
#[tokio::test]
async fn start_releases_runcs_exec_fifo_or_says_the_process_is_gone() {
    let w = ShimWorld::start("pod-fifo").await.unwrap();
    let bundle = w.bundle("up", &["sleep", "600"], &[], |_| {}).unwrap();
    w.create("up", &bundle, false).await.unwrap();
    let fifo = w.path("runc/up/exec.fifo");
    assert!(fifo.exists(), "runc keeps a created container at its FIFO");
    w.start_task("up", "").await.unwrap();
    assert!(!fifo.exists());
    let state = std::process::Command::new("runc")
        .arg("--root")
        .arg(w.path("runc"))
        .args(["state", "up"])
        .output()
        .unwrap();
    let state = String::from_utf8_lossy(&state.stdout);
    assert!(state.contains(r#""status": "running""#), "{state}");
    kill(&w, "up", 9).await;
    assert_eq!(w.wait("up", "").await.unwrap(), 137);
    w.delete("up").await.unwrap();

    // A process that exits at once still started: its start succeeds.
    for i in 0..10 {
        let id = format!("quick{i}");
        let bundle = w.bundle(&id, &["true"], &[], |_| {}).unwrap();
        w.create(&id, &bundle, false).await.unwrap();
        w.start_task(&id, "").await.unwrap();
        assert_eq!(w.wait(&id, "").await.unwrap(), 0);
        w.delete(&id).await.unwrap();
    }

    let bundle = w.bundle("gone", &["sleep", "600"], &[], |_| {}).unwrap();
    w.create("gone", &bundle, false).await.unwrap();
    kill(&w, "gone", 9).await;
    w.wait("gone", "").await.unwrap();
    let err = w.start_task("gone", "").await.unwrap_err().to_string();
    assert!(err.contains("exited before it started"), "{err}");
    w.delete("gone").await.unwrap();
}

#[tokio::test]
async fn kill_delivers_sigterm_and_sigkill() {
    let w = ShimWorld::start("pod-kill").await.unwrap();
    let trap = "trap 'exit 42' TERM; while :; do sleep 0.1; done";
    let b1 = w.bundle("term", &["sh", "-c", trap], &[], |_| {}).unwrap();
    let b2 = w
        .bundle("sigkill", &["sleep", "1000"], &[], |_| {})
        .unwrap();
    w.create("term", &b1, false).await.unwrap();
    w.create("sigkill", &b2, false).await.unwrap();
    w.start_task("term", "").await.unwrap();
    w.start_task("sigkill", "").await.unwrap();
    // The trap is set once the shell runs its first sleep.
    eventually("the shell's child", async || {
        (pids(&w, "term").await.len() >= 2).then_some(())
    })
    .await;
    kill(&w, "term", 15).await;
    assert_eq!(w.wait("term", "").await.unwrap(), 42);
    kill(&w, "sigkill", 9).await;
    assert_eq!(w.wait("sigkill", "").await.unwrap(), 137);
    // Killing an exited container is not an error.
    kill(&w, "sigkill", 9).await;
    w.delete("term").await.unwrap();
    w.delete("sigkill").await.unwrap();
}

fn process_spec(args: &[&str], terminal: bool) -> Any {
    let spec = serde_json::json!({
        "terminal": terminal,
        "user": {"uid": 0, "gid": 0},
        "args": args,
        "env": ["PATH=/bin:/usr/bin", "TERM=xterm"],
        "cwd": "/",
    });
    let mut any = Any::new();
    any.type_url = "types.containerd.io/opencontainers/runtime-spec/1/Process".into();
    any.value = serde_json::to_vec(&spec).unwrap();
    any
}

#[tokio::test]
async fn exec_with_pipes_and_with_a_terminal() {
    let w = ShimWorld::start("pod-exec").await.unwrap();
    let b = w.bundle("box", &["sleep", "1000"], &[], |_| {}).unwrap();
    w.create("box", &b, false).await.unwrap();
    w.start_task("box", "").await.unwrap();

    let (out, err) = (w.path("exec.out"), w.path("exec.err"));
    let req = task::ExecProcessRequest {
        id: "box".into(),
        exec_id: "e1".into(),
        stdout: out.display().to_string(),
        stderr: err.display().to_string(),
        spec: Some(process_spec(
            &["sh", "-c", "echo out; echo err >&2; exit 5"],
            false,
        ))
        .into(),
        ..Default::default()
    };
    w.client.exec(ctx(), &req).await.unwrap();
    w.start_task("box", "e1").await.unwrap();
    assert_eq!(w.wait("box", "e1").await.unwrap(), 5);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "out\n");
    assert_eq!(std::fs::read_to_string(&err).unwrap(), "err\n");
    let dup = w.client.exec(ctx(), &req).await.unwrap_err().to_string();
    assert!(dup.contains("exists"), "{dup}");

    // A terminal exec driven through its attach socket.
    let req = task::ExecProcessRequest {
        id: "box".into(),
        exec_id: "tty1".into(),
        terminal: true,
        stdin: "attach".into(),
        spec: Some(process_spec(&["sh"], true)).into(),
        ..Default::default()
    };
    w.client.exec(ctx(), &req).await.unwrap();
    let socket = crio_attach::attach_path(&w.socket_dir(), "box", "tty1");
    let mut s = UnixStream::connect(&socket).await.unwrap();
    w.start_task("box", "tty1").await.unwrap();
    let mut size = Vec::new();
    size.extend_from_slice(&100u16.to_be_bytes());
    size.extend_from_slice(&30u16.to_be_bytes());
    write_frame(&mut s, channel::RESIZE, &size).await.unwrap();
    write_frame(&mut s, channel::STDIN, b"stty size; tty; echo X$((1+1))Y\n")
        .await
        .unwrap();
    let seen = read_until(&mut s, "X2Y").await;
    assert!(seen.contains("30 100"), "terminal size not seen: {seen:?}");
    assert!(seen.contains("/dev/pts/"), "not a terminal: {seen:?}");
    // Resize through the task API too.
    let resize = task::ResizePtyRequest {
        id: "box".into(),
        exec_id: "tty1".into(),
        width: 90,
        height: 20,
        ..Default::default()
    };
    w.client.resize_pty(ctx(), &resize).await.unwrap();
    write_frame(&mut s, channel::STDIN, b"stty size; exit 7\n")
        .await
        .unwrap();
    let seen = read_until(&mut s, "20 90").await;
    assert!(seen.contains("20 90"));
    assert_eq!(w.wait("box", "tty1").await.unwrap(), 7);
    // The last frame on the attach socket is the exit code.
    let exit = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let (ch, data) = read_frame(&mut s).await.unwrap();
            if ch == channel::EXIT {
                return i32::from_be_bytes(data[..4].try_into().unwrap());
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(exit, 7);
    for exec_id in ["e1", "tty1"] {
        let del = task::DeleteRequest {
            id: "box".into(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        w.client.delete(ctx(), &del).await.unwrap();
    }
    kill(&w, "box", 9).await;
    w.wait("box", "").await.unwrap();
    w.delete("box").await.unwrap();
}

#[tokio::test]
async fn pids_stats_pause_resume_and_update() {
    let w = ShimWorld::start("pod-res").await.unwrap();
    let b = w
        .bundle("res", &["sh", "-c", "sleep 1000 & wait"], &[], |_| {})
        .unwrap();
    let init = w.create("res", &b, false).await.unwrap();
    w.start_task("res", "").await.unwrap();
    let all = eventually("two processes", async || {
        let p = pids(&w, "res").await;
        (p.len() >= 2).then_some(p)
    })
    .await;
    assert!(all.contains(&init), "{all:?} lacks the init {init}");

    let stats = w
        .client
        .stats(
            ctx(),
            &task::StatsRequest {
                id: "res".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(stats.stats.type_url, "io.containerd.cgroups.v1.Metrics");
    let m = task::cgroups::metrics::Metrics::parse_from_bytes(&stats.stats.value).unwrap();
    assert!(m.memory.usage.usage > 0, "memory usage: {:?}", m.memory);
    assert!(m.pids.current >= 2, "pids: {:?}", m.pids);

    let freezer = Path::new("/sys/fs/cgroup/freezer")
        .join(
            w.memory_cgroup("res")
                .strip_prefix("/sys/fs/cgroup/memory")
                .unwrap(),
        )
        .join("freezer.state");
    w.client
        .pause(
            ctx(),
            &task::PauseRequest {
                id: "res".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(w.status("res").await.unwrap(), Status::PAUSED);
    if freezer.exists() {
        let state = std::fs::read_to_string(&freezer).unwrap();
        assert_eq!(state.trim(), "FROZEN");
    }
    w.client
        .resume(
            ctx(),
            &task::ResumeRequest {
                id: "res".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(w.status("res").await.unwrap(), Status::RUNNING);
    if freezer.exists() {
        let state = std::fs::read_to_string(&freezer).unwrap();
        assert_eq!(state.trim(), "THAWED");
    }

    let mut resources = Any::new();
    resources.type_url = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into();
    resources.value = br#"{"memory": {"limit": 67108864}}"#.to_vec();
    let update = task::UpdateTaskRequest {
        id: "res".into(),
        resources: Some(resources).into(),
        ..Default::default()
    };
    w.client.update(ctx(), &update).await.unwrap();
    let limit =
        std::fs::read_to_string(w.memory_cgroup("res").join("memory.limit_in_bytes")).unwrap();
    assert_eq!(limit.trim(), "67108864");
    let mut bad = update.clone();
    bad.resources.as_mut().unwrap().value = b"not json".to_vec();
    let err = w.client.update(ctx(), &bad).await.unwrap_err().to_string();
    assert!(err.contains("LinuxResources"), "{err}");

    kill(&w, "res", 9).await;
    assert_eq!(w.wait("res", "").await.unwrap(), 137);
    w.delete("res").await.unwrap();
}

#[tokio::test]
async fn attach_clients_share_output_stdin_and_the_log_reopens() {
    let w = ShimWorld::start("pod-attach").await.unwrap();
    let log = w.path("logs/echo.log");
    let log_s = log.display().to_string();
    let b = w
        .bundle(
            "echo",
            &[
                "sh",
                "-c",
                "while read l; do echo \"got $l\"; done; echo bye",
            ],
            &[(LOG, &log_s), ("io.kubernetes.cri-o.Stdin", "true")],
            |_| {},
        )
        .unwrap();
    w.create("echo", &b, false).await.unwrap();
    w.start_task("echo", "").await.unwrap();
    let socket = crio_attach::attach_path(&w.socket_dir(), "echo", "");
    let mut a = UnixStream::connect(&socket).await.unwrap();
    let mut b2 = UnixStream::connect(&socket).await.unwrap();
    // Let the shim subscribe both clients before the output comes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    write_frame(&mut a, channel::STDIN, b"hi\n").await.unwrap();
    read_until(&mut a, "got hi").await;
    read_until(&mut b2, "got hi").await;

    let rotated = w.path("logs/echo.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    crio_attach::reopen_log(&socket).await.unwrap();
    write_frame(&mut b2, channel::STDIN, b"again\n")
        .await
        .unwrap();
    read_until(&mut a, "got again").await;
    write_frame(&mut a, channel::STDIN, b"").await.unwrap();
    assert_eq!(w.wait("echo", "").await.unwrap(), 0);
    let old: Vec<String> = log_lines(&rotated).into_iter().map(|l| l.2).collect();
    let new: Vec<String> = log_lines(&log).into_iter().map(|l| l.2).collect();
    assert_eq!(old, vec!["got hi"]);
    assert_eq!(new, vec!["got again", "bye"]);
    w.delete("echo").await.unwrap();

    // stdin_once: the first attacher's leaving closes stdin.
    let b = w
        .bundle(
            "once",
            &["cat"],
            &[
                ("io.kubernetes.cri-o.Stdin", "true"),
                ("io.kubernetes.cri-o.StdinOnce", "true"),
            ],
            |_| {},
        )
        .unwrap();
    w.create("once", &b, false).await.unwrap();
    w.start_task("once", "").await.unwrap();
    let socket = crio_attach::attach_path(&w.socket_dir(), "once", "");
    let mut c = UnixStream::connect(&socket).await.unwrap();
    write_frame(&mut c, channel::STDIN, b"x\n").await.unwrap();
    read_until(&mut c, "x\n").await;
    drop(c);
    assert_eq!(w.wait("once", "").await.unwrap(), 0);
    w.delete("once").await.unwrap();
}

#[tokio::test]
async fn a_container_over_its_memory_limit_is_reported_oom() {
    let w = ShimWorld::start("pod-oom").await.unwrap();
    let b = w
        .bundle(
            "hog",
            &["dd", "if=/dev/zero", "of=/dev/null", "bs=96M", "count=1"],
            &[],
            |spec| {
                spec["linux"]["resources"]["memory"] = serde_json::json!({"limit": 32 << 20});
            },
        )
        .unwrap();
    w.create("hog", &b, false).await.unwrap();
    w.start_task("hog", "").await.unwrap();
    assert_eq!(w.wait("hog", "").await.unwrap(), 137);
    assert!(b.join("oom").exists(), "no oom file in the bundle");
    eventually("the OOM event", async || {
        w.events()
            .iter()
            .any(|e| e.topic == "/tasks/oom" && e.container_id == "hog")
            .then_some(())
    })
    .await;
    w.delete("hog").await.unwrap();
}

#[tokio::test]
async fn an_exit_while_nobody_listens_is_in_the_bundle() {
    let mut w = ShimWorld::start("pod-quiet").await.unwrap();
    let b = w
        .bundle("quiet", &["sh", "-c", "sleep 1; exit 7"], &[], |_| {})
        .unwrap();
    w.create("quiet", &b, false).await.unwrap();
    w.start_task("quiet", "").await.unwrap();
    w.stop_events().await;
    let exit = eventually("the exit file", async || {
        std::fs::read_to_string(b.join("exit")).ok()
    })
    .await;
    assert!(exit.starts_with("7 "), "{exit:?}");
    // The shim still answers.
    assert_eq!(w.wait("quiet", "").await.unwrap(), 7);
    w.delete("quiet").await.unwrap();
}

#[tokio::test]
async fn an_oom_kill_inside_a_running_container_is_reported_at_once() {
    let w = ShimWorld::start("pod-oom-live").await.unwrap();
    let b = w
        .bundle(
            "live",
            &[
                "sh",
                "-c",
                "dd if=/dev/zero of=/dev/null bs=96M count=1; sleep 1000",
            ],
            &[],
            |spec| {
                spec["linux"]["resources"]["memory"] = serde_json::json!({"limit": 32 << 20});
            },
        )
        .unwrap();
    w.create("live", &b, false).await.unwrap();
    w.start_task("live", "").await.unwrap();
    eventually("the OOM event of a running container", async || {
        w.events()
            .iter()
            .any(|e| e.topic == "/tasks/oom" && e.container_id == "live")
            .then_some(())
    })
    .await;
    assert!(b.join("oom").exists());
    assert_eq!(w.status("live").await.unwrap(), Status::RUNNING);
    kill(&w, "live", 9).await;
    assert_eq!(w.wait("live", "").await.unwrap(), 137);
    let ooms = w
        .events()
        .iter()
        .filter(|e| e.topic == "/tasks/oom")
        .count();
    assert_eq!(ooms, 1, "one OOM, one event");
    w.delete("live").await.unwrap();
}
