//! A recording fake of the OCI runtime and of the daemon's event endpoint:
//! it writes the pid files a runtime writes, exits processes when told (or
//! when killed or force-deleted), and fails the step it is told to fail.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use async_trait::async_trait;
use containerd_shim::protos::shim::events::ForwardRequest;
use crio_contract::bundle::EXIT_FILE;
use crio_contract::trace::{SPANS_TOPIC, SpanRecord, decode_spans};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::error::{Result, ShimError};
use crate::events::EventSink;
use crate::runtime::{CreateArgs, Exit, ExitWatch, Runtime, Stdio};

/// Pids the fake hands out: above any pid_max, so no real process has one.
const FIRST_PID: u32 = 1 << 24;

/// The fake runtime.
pub struct FakeRuntime {
    /// The calls made, as `verb id [args]`.
    pub calls: Mutex<Vec<String>>,
    /// Steps to fail: a verb (`create`, `start`, `exec`, `kill`, `delete`,
    /// `update`, `pause`), or `pid-file` (succeed but write no pid file).
    pub fail: Mutex<HashSet<&'static str>>,
    /// Exit watches not yet ended.
    pub live_watches: Arc<AtomicUsize>,
    next_pid: AtomicU32,
    inits: Mutex<HashMap<String, u32>>,
    exits: watch::Sender<HashMap<u32, i32>>,
}

impl Default for FakeRuntime {
    fn default() -> Self {
        Self {
            calls: Mutex::default(),
            fail: Mutex::default(),
            live_watches: Arc::default(),
            next_pid: AtomicU32::new(FIRST_PID),
            inits: Mutex::default(),
            exits: watch::channel(HashMap::new()).0,
        }
    }
}

impl FakeRuntime {
    /// Makes process `pid` exit with `code`.
    pub fn exit(&self, pid: u32, code: i32) {
        self.exits.send_modify(|exits| {
            exits.entry(pid).or_insert(code);
        });
    }

    /// The calls so far.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().clone()
    }

    /// Records `call`; an injected failure of `step`, if asked for.
    fn step(&self, step: &'static str, call: String) -> Result<()> {
        self.calls.lock().push(call);
        if self.fail.lock().contains(step) {
            return Err(ShimError::Runtime {
                what: format!("{step} (fake)"),
                message: "injected failure".into(),
            });
        }
        Ok(())
    }

    /// Writes a new pid to `file`, as a runtime does; the pid.
    async fn write_pid(&self, file: &Path) -> u32 {
        let pid = self.next_pid.fetch_add(1, Ordering::SeqCst);
        if !self.fail.lock().contains("pid-file") {
            tokio::fs::write(file, pid.to_string()).await.unwrap();
        }
        pid
    }

    fn init_of(&self, id: &str) -> Option<u32> {
        self.inits.lock().get(id).copied()
    }
}

/// A watch on the fake's exits.
struct FakeWatch {
    exits: watch::Receiver<HashMap<u32, i32>>,
    live: Arc<AtomicUsize>,
}

#[async_trait]
impl ExitWatch for FakeWatch {
    async fn exit_of(mut self: Box<Self>, pid: u32) -> i32 {
        let code = match self.exits.wait_for(|e| e.contains_key(&pid)).await {
            Ok(exits) => exits[&pid],
            Err(_) => 255,
        };
        self.live.fetch_sub(1, Ordering::SeqCst);
        code
    }

    async fn cancel(self: Box<Self>) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Runtime for FakeRuntime {
    async fn watch_exits(&self) -> Result<Box<dyn ExitWatch>> {
        self.live_watches.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(FakeWatch {
            exits: self.exits.subscribe(),
            live: self.live_watches.clone(),
        }))
    }

    async fn create(&self, args: &CreateArgs<'_>, stdio: Stdio) -> Result<()> {
        drop(stdio);
        self.step("create", format!("create {}", args.id))?;
        let pid = self.write_pid(args.pid_file).await;
        self.inits.lock().insert(args.id.to_string(), pid);
        Ok(())
    }

    async fn start(&self, id: &str, _exited: watch::Receiver<Option<Exit>>) -> Result<()> {
        self.step("start", format!("start {id}"))
    }

    async fn exec(&self, id: &str, process: &Path, pid_file: &Path, stdio: Stdio) -> Result<()> {
        drop(stdio);
        let name = process.file_name().unwrap_or_default().to_string_lossy();
        self.step("exec", format!("exec {id} {name}"))?;
        self.write_pid(pid_file).await;
        Ok(())
    }

    async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<()> {
        let all = if all { " --all" } else { "" };
        self.step("kill", format!("kill {id} {signal}{all}"))?;
        if let Some(pid) = self.init_of(id) {
            self.exit(pid, 128 + signal as i32);
        }
        Ok(())
    }

    async fn delete(&self, id: &str) -> Result<()> {
        self.step("delete", format!("delete {id}"))?;
        if let Some(pid) = self.inits.lock().remove(id) {
            self.exit(pid, 137);
        }
        Ok(())
    }

    async fn ps(&self, id: &str) -> Result<Option<Vec<u32>>> {
        self.step("ps", format!("ps {id}"))?;
        Ok(self.init_of(id).map(|pid| vec![pid]))
    }

    async fn pause(&self, id: &str, paused: bool) -> Result<()> {
        let verb = if paused { "pause" } else { "resume" };
        self.step("pause", format!("{verb} {id}"))
    }

    async fn update(&self, id: &str, resources: &Path) -> Result<()> {
        let text = tokio::fs::read_to_string(resources).await.unwrap();
        self.step("update", format!("update {id} {text}"))
    }
}

/// An event endpoint that records each event's topic and what the bundle's
/// exit file held when the event arrived.
pub struct Recorder {
    bundle: PathBuf,
    /// (topic, exit file content) per event.
    pub events: Mutex<Vec<(String, Option<String>)>>,
    /// The spans of the span events.
    pub spans: Mutex<Vec<SpanRecord>>,
}

impl Recorder {
    /// A recorder looking at `bundle`'s exit file.
    pub fn new(bundle: &Path) -> Self {
        Self {
            bundle: bundle.to_path_buf(),
            events: Mutex::default(),
            spans: Mutex::default(),
        }
    }

    /// The topics so far.
    pub fn topics(&self) -> Vec<String> {
        self.events.lock().iter().map(|e| e.0.clone()).collect()
    }
}

#[async_trait]
impl EventSink for Recorder {
    async fn forward(&self, req: ForwardRequest) {
        let exit = std::fs::read_to_string(self.bundle.join(EXIT_FILE)).ok();
        if req.envelope.topic == SPANS_TOPIC {
            let spans = decode_spans(&req.envelope.event.value);
            self.spans.lock().extend(spans);
        }
        self.events.lock().push((req.envelope.topic.clone(), exit));
    }
}
