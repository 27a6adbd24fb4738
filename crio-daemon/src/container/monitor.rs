//! Whether each pod's shim (its containers' monitor) answers, as the
//! daemon's own calls found it, and the watch that keeps the view true
//! without a read ever waiting for a shim: a shim that did not answer is
//! asked again in the background until it does, then its containers are
//! reconciled with its answers; containers whose process is gone while
//! their shim died are found from `/proc`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

use super::evidence::init_gone;
use super::{ContainerRecord, ContainerState, Containers};
use crate::error::{Error, Result};
use crate::ids::Id;
use crate::shim::{TaskState, TaskStatus};

/// How often the watch runs: shims that did not answer are asked again,
/// running containers' processes looked for in `/proc`.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// How long the watch waits for a shim that did not answer before.
const PROBE_DEADLINE: Duration = Duration::from_secs(2);

/// The CRI reason of a container whose pod's shim does not answer.
pub const SHIM_NOT_RESPONDING: &str = "ShimNotResponding";

/// Pods whose shim did not answer the last call made to it, and since when.
#[derive(Default)]
pub(super) struct Silent(Mutex<HashMap<String, SystemTime>>);

/// What the watch needs of a running container.
struct Running {
    id: Id,
    pod_id: Id,
    pid: u32,
    pid_start: u64,
    orphaned: bool,
}

impl Containers {
    /// Notes how a call to pod `pod`'s shim went: any answer (an error
    /// among them) means it answers; none (unreachable, past its deadline)
    /// means it does not, until it answers again.
    pub(super) fn note<T>(&self, pod: &str, outcome: &Result<T>) {
        match outcome {
            Err(e) if e.is_unreachable() || matches!(e, Error::Deadline(_)) => {
                let mut silent = self.silent.0.lock();
                if !silent.contains_key(pod) {
                    tracing::warn!(pod, "the pod's shim does not answer: {e}");
                    silent.insert(pod.to_string(), SystemTime::now());
                }
            }
            _ => {
                if self.silent.0.lock().remove(pod).is_some() {
                    tracing::info!(pod, "the pod's shim answers again");
                }
            }
        }
    }

    /// Why the state of pod `pod`'s containers may be stale: its shim did
    /// not answer the last call (for how long), or died. None when it
    /// answers.
    pub fn shim_trouble(&self, pod: &Id) -> Option<String> {
        let since = *self.silent.0.lock().get(pod.as_str())?;
        if !self.shim_alive(pod) {
            return Some(
                "the pod's shim (the container's monitor) died: the state is what this node's \
                 /proc shows"
                    .into(),
            );
        }
        let secs = since.elapsed().unwrap_or_default().as_secs();
        Some(format!(
            "the pod's shim (the container's monitor) has not answered for {secs} s: the \
             state is the last known"
        ))
    }

    /// Whether pod `pod`'s shim process still exists.
    pub(super) fn shim_alive(&self, pod: &Id) -> bool {
        self.shims.alive(pod, &self.pods.run_dir(pod))
    }

    /// A container as the daemon knows it, first brought up to date from
    /// the evidence on this node (exit file, `/proc`); never asks a shim.
    pub fn observe(&self, id: &str) -> Result<ContainerRecord> {
        let r = self.existing(id)?;
        if let Some(run) = Running::of(&r) {
            self.check_evidence(&run, true);
        }
        Ok(self.get(&r.id).unwrap_or(r))
    }

    /// Brings running containers up to date from their exit files (a stat
    /// each; for the stats calls, which read the cgroups of running ones).
    pub fn observe_exit_files(&self) {
        for run in self.records.filter_map(Running::of) {
            self.check_evidence(&run, false);
        }
    }

    /// Brings a running container up to date from the evidence on this
    /// node, without asking its shim: its exit file; with `processes`, its
    /// init (or its whole bundle, after a reboot) gone while its shim is
    /// dead too.
    fn check_evidence(&self, run: &Running, processes: bool) {
        if let Some((code, at)) = self.exit_file(&run.id) {
            self.record_exit(&run.id, code, at, false);
        } else if processes
            && (init_gone(run.pid, run.pid_start) || !self.bundle(&run.id).exists())
            && (run.orphaned || !self.shim_alive(&run.pod_id))
        {
            self.record_lost(&run.id);
        }
    }

    /// Marks the containers of pod `pod` that have not exited as orphans:
    /// its shim died, and the one started next will not know them.
    pub(super) fn orphan_containers_of(&self, pod: &Id) {
        let alive = self.records.filter_map(|r| {
            (r.pod_id == *pod && r.state != ContainerState::Exited).then(|| r.id.clone())
        });
        for id in alive {
            let orphaned = self.change(&id, |r| {
                let changed = !r.orphaned;
                r.orphaned = true;
                changed
            });
            if let Err(e) = orphaned {
                tracing::warn!(container = %id, "mark orphaned: {e}");
            }
        }
    }

    /// Brings a record in line with its shim's answer (the shim's word on
    /// an exit is evidence; on anything else the record already agrees).
    pub(super) fn reconcile(&self, r: &ContainerRecord, state: TaskState) -> ContainerRecord {
        if state.status == TaskStatus::Stopped {
            self.record_exit(&r.id, state.exit_status as i32, state.exited_at, false);
        }
        self.get(&r.id).unwrap_or_else(|| r.clone())
    }

    /// Keeps the view true in the background, until the daemon stops:
    /// every [`WATCH_INTERVAL`], running containers' processes are looked
    /// for in `/proc`, and shims that did not answer are asked again.
    pub async fn watch(self: Arc<Self>) {
        loop {
            tokio::time::sleep(WATCH_INTERVAL).await;
            for run in self.records.filter_map(Running::of) {
                self.check_evidence(&run, true);
            }
            let pods: Vec<String> = self.silent.0.lock().keys().cloned().collect();
            let mut probes = tokio::task::JoinSet::new();
            for pod in pods {
                let this = self.clone();
                probes.spawn(async move { this.probe(&pod).await });
            }
            while probes.join_next().await.is_some() {}
        }
    }

    /// Asks a silent shim for the state of each of its pod's containers
    /// that has not exited, reconciling with its answers; forgets pods
    /// that are gone or have nothing left to report.
    async fn probe(&self, pod: &str) {
        let waiting = self.records.filter_map(|r| {
            (r.pod_id == pod && r.state != ContainerState::Exited).then(|| r.clone())
        });
        if waiting.is_empty() {
            self.silent.0.lock().remove(pod);
            return;
        }
        for r in waiting {
            let answer = tokio::time::timeout(PROBE_DEADLINE, self.task_state(&r))
                .await
                .unwrap_or_else(|_| Err(Error::Deadline("task state".into())));
            self.note(pod, &answer);
            match answer {
                Ok(state) => drop(self.reconcile(&r, state)),
                Err(e) if e.is_unreachable() || matches!(e, Error::Deadline(_)) => return,
                Err(_) => {}
            }
        }
    }
}

impl Running {
    fn of(r: &ContainerRecord) -> Option<Self> {
        (r.state == ContainerState::Running).then(|| Self {
            id: r.id.clone(),
            pod_id: r.pod_id.clone(),
            pid: r.pid,
            pid_start: r.pid_start,
            orphaned: r.orphaned,
        })
    }
}
