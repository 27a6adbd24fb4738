//! Life-cycle events of containers and pods: published as records change
//! (a container saved created, running or exited, removed; a pod run,
//! stopped, removed by `Sandboxes`), and the shims' events acted on as they
//! arrive (an exit or an OOM kill recorded at once). The exit files stay the
//! fallback for what happened while the daemon was down, and for events
//! lost on the way.

use std::collections::BTreeMap;
use std::sync::Arc;

use crio_contract::bundle::OOM_FILE;
use tokio::sync::mpsc;

use super::{ContainerRecord, ContainerState, Containers};
use crate::events::{BUFFER, EventKind, Publisher, Subscription};
use crate::ids::Id;
use crate::pod::{PodRecord, PodState, Pods};
use crate::shim::ShimEvent;

/// What an event is about. The pod's status and its containers' are read
/// when the event is sent, from memory: the ring holds no statuses.
#[derive(Debug)]
pub struct Subject {
    /// The pod: the container's, or the pod itself.
    pub pod_id: Id,
    /// A pod event's pod as it was then, for when it is gone by the time
    /// the event is sent.
    pub pod: Option<PodRecord>,
}

/// A published container or pod event.
pub type ContainerEvent = crate::events::Event<Subject>;

/// The publisher of container and pod events.
pub(super) type Events = Publisher<Subject>;

/// The step a container has reached when its record is in `state`.
fn step(state: ContainerState) -> EventKind {
    match state {
        ContainerState::Created => EventKind::Created,
        ContainerState::Running => EventKind::Started,
        ContainerState::Exited => EventKind::Stopped,
    }
}

/// A publisher that knows the containers and pods found at start-up, so
/// none of them is announced again for a step it had reached.
pub(super) fn publisher(containers: &BTreeMap<String, ContainerRecord>, pods: &Pods) -> Events {
    let known_containers = containers
        .values()
        .filter(|r| !r.infra)
        .map(|r| (r.id.to_string(), step(r.state)));
    let known_pods = pods.filter_map(|p| {
        let step = match p.state {
            PodState::Ready => EventKind::Started,
            PodState::NotReady => EventKind::Stopped,
        };
        Some((p.id.to_string(), step))
    });
    Publisher::new(BUFFER, known_containers.chain(known_pods))
}

impl Containers {
    /// Every container and pod event from now on, in order.
    pub fn subscribe_events(&self) -> Subscription<Subject> {
        self.events.subscribe()
    }

    /// Ends every subscription once it has read what was published.
    pub fn close_events(&self) {
        self.events.close();
    }

    /// Publishes that a container reached `kind` (infra containers are
    /// not the CRI's: their pod's events stand for them).
    pub(super) fn announce(&self, r: &ContainerRecord, kind: EventKind) {
        if !r.infra {
            self.events.publish(&r.id, kind, || Subject {
                pod_id: r.pod_id.clone(),
                pod: None,
            });
        }
    }

    /// Publishes the step a container's saved record is at.
    pub(super) fn announce_state(&self, r: &ContainerRecord) {
        self.announce(r, step(r.state));
    }

    /// Publishes that pod `pod` reached `kind` (its ID stands for its
    /// infra container, as the kubelet expects).
    pub fn announce_pod(&self, pod: &PodRecord, kind: EventKind) {
        self.events.publish(&pod.id, kind, || Subject {
            pod_id: pod.id.clone(),
            pod: Some(pod.clone()),
        });
    }

    /// Acts on the shims' events as they arrive, each in a task of its own
    /// (one container's start under way holds up no other's exit).
    pub async fn follow_shim_events(self: Arc<Self>, mut queue: mpsc::Receiver<ShimEvent>) {
        while let Some(event) = queue.recv().await {
            let this = self.clone();
            tokio::spawn(async move { this.on_shim_event(event).await });
        }
    }

    /// Records what one shim event says: an init's exit, an OOM kill.
    pub(super) async fn on_shim_event(&self, event: ShimEvent) {
        match event {
            ShimEvent::Exit {
                container_id,
                exec_id,
                status,
                at,
            } if exec_id == container_id => {
                self.exited(&container_id, status as i32, at).await;
            }
            // An exec's end changes nothing of its container.
            ShimEvent::Exit { .. } => {}
            ShimEvent::Oom { container_id } => self.oom_seen(&container_id).await,
        }
    }

    /// A container's init exited. Recorded after any call on the container
    /// under way (a start returns, and is announced, first).
    async fn exited(&self, id: &str, code: i32, at: i64) {
        let Some(r) = self.get(id) else { return };
        let lock = self.locks.of(&r.id);
        let _held = lock.lock().await;
        let oom = self.bundle(&r.id).join(OOM_FILE).exists();
        self.record_exit(&r.id, code, at, oom);
    }

    /// A process of a container was OOM-killed: its status says so once it
    /// has exited.
    async fn oom_seen(&self, id: &str) {
        let Some(r) = self.get(id) else { return };
        let lock = self.locks.of(&r.id);
        let _held = lock.lock().await;
        let marked = self.change(&r.id, |r| {
            let first = !std::mem::replace(&mut r.oom_killed, true);
            if first {
                crate::metrics::global().container_oom(&r.name);
            }
            first
        });
        if let Err(e) = marked {
            tracing::warn!(container = %r.id, "record the OOM kill: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crio_contract::bundle::OOM_FILE;

    use super::*;
    use crate::events::EventKind::{Created, Deleted, Started, Stopped};
    use crate::shim::TaskError;
    use crate::testing::{World, pod_config};

    /// The events received so far, as (ID, step).
    fn received(events: &mut Subscription<Subject>) -> Vec<(String, EventKind)> {
        std::iter::from_fn(|| events.try_recv().ok())
            .map(|e| (e.id.clone(), e.kind))
            .collect()
    }

    fn steps(id: &str, kinds: &[EventKind]) -> Vec<(String, EventKind)> {
        kinds.iter().map(|k| (id.to_string(), *k)).collect()
    }

    fn exit(id: &str, exec_id: &str, status: u32) -> ShimEvent {
        ShimEvent::Exit {
            container_id: id.into(),
            exec_id: exec_id.into(),
            status,
            at: 1_000,
        }
    }

    /// A world with a running container: (world, pod, container).
    async fn running() -> (World, String, String) {
        let w = World::new();
        let pod = w.pod("web").await;
        let id = w.containers.create(&pod, w.container("app")).await.unwrap();
        w.containers.start(&id).await.unwrap();
        (w, pod, id)
    }

    #[tokio::test]
    async fn a_pod_and_its_container_are_announced_in_order() {
        let w = World::new();
        let mut events = w.containers.subscribe_events();
        let pod = w
            .sandboxes
            .run(pod_config("web"), String::new())
            .await
            .unwrap();
        // A retry of the same pod is no news.
        let again = w.sandboxes.run(pod_config("web"), String::new()).await;
        assert_eq!(again.unwrap(), pod);
        let id = w.containers.create(&pod, w.container("app")).await.unwrap();
        w.containers.start(&id).await.unwrap();
        w.containers.stop(&id, 10).await.unwrap();
        w.containers.stop(&id, 10).await.unwrap();
        w.containers.remove(&id).await.unwrap();
        w.sandboxes.stop(&pod).await.unwrap();
        w.sandboxes.remove(&pod).await.unwrap();
        w.sandboxes.remove(&pod).await.unwrap();
        let mut want = steps(&pod, &[Created, Started]);
        want.extend(steps(&id, &[Created, Started, Stopped, Deleted]));
        want.extend(steps(&pod, &[Stopped, Deleted]));
        assert_eq!(received(&mut events), want);
    }

    #[tokio::test]
    async fn each_event_names_its_pod_and_a_gone_pod_is_kept() {
        let w = World::new();
        let pod = w
            .sandboxes
            .run(pod_config("web"), String::new())
            .await
            .unwrap();
        let id = w.containers.create(&pod, w.container("app")).await.unwrap();
        let mut events = w.containers.subscribe_events();
        w.containers.start(&id).await.unwrap();
        w.sandboxes.remove(&pod).await.unwrap();
        let all: Vec<_> = std::iter::from_fn(|| events.try_recv().ok()).collect();
        assert!(all.iter().all(|e| *e.detail.pod_id == *pod), "{all:?}");
        let deleted = all.last().unwrap();
        assert_eq!((deleted.id.as_str(), deleted.kind), (pod.as_str(), Deleted));
        let last = deleted
            .detail
            .pod
            .as_ref()
            .expect("the removed pod as it was");
        assert_eq!(last.state, PodState::NotReady);
        assert!(
            all[0].detail.pod.is_none(),
            "a container event reads its pod when sent"
        );
    }

    #[tokio::test]
    async fn an_exit_event_is_recorded_and_announced_once() {
        let (w, _pod, id) = running().await;
        let mut events = w.containers.subscribe_events();
        // An exec's exit is not its container's.
        w.containers.on_shim_event(exit(&id, "exec-1", 1)).await;
        assert_eq!(
            w.containers.get(&id).unwrap().state,
            ContainerState::Running
        );
        w.containers.on_shim_event(exit(&id, &id, 3)).await;
        let r = w.containers.get(&id).unwrap();
        assert_eq!(
            (r.state, r.exit_code, r.finished_at),
            (ContainerState::Exited, 3, 1_000)
        );
        // Seen again (the event repeated, StopContainer, the exit file): no news.
        w.containers.on_shim_event(exit(&id, &id, 3)).await;
        w.containers.stop(&id, 0).await.unwrap();
        w.containers.refresh(&id).await.unwrap();
        assert_eq!(w.containers.get(&id).unwrap().exit_code, 3);
        assert!(
            w.shims.calls_of(&["kill"]).is_empty(),
            "an exited container is not signalled"
        );
        assert_eq!(received(&mut events), steps(&id, &[Stopped]));
    }

    #[tokio::test]
    async fn a_stop_then_its_exit_event_is_one_stop() {
        let (w, _pod, id) = running().await;
        let mut events = w.containers.subscribe_events();
        w.containers.stop(&id, 10).await.unwrap();
        w.containers.on_shim_event(exit(&id, &id, 143)).await;
        assert_eq!(w.containers.get(&id).unwrap().exit_code, 143);
        assert_eq!(received(&mut events), steps(&id, &[Stopped]));
    }

    #[tokio::test]
    async fn an_exit_during_a_start_is_announced_after_it() {
        let w = World::new();
        let pod = w.pod("web").await;
        let id = w.containers.create(&pod, w.container("app")).await.unwrap();
        let mut events = w.containers.subscribe_events();
        // A start under way holds the container's lock across its shim call.
        let lock = w.containers.locks.of(&id);
        let start = lock.lock().await;
        let containers = w.containers.clone();
        let exit_id = id.clone();
        let early = tokio::spawn(async move {
            containers.on_shim_event(exit(&exit_id, &exit_id, 0)).await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            w.containers.get(&id).unwrap().state,
            ContainerState::Created
        );
        w.containers
            .change(&id, |r| {
                r.state = ContainerState::Running;
                true
            })
            .unwrap();
        drop(start);
        early.await.unwrap();
        assert_eq!(w.containers.get(&id).unwrap().state, ContainerState::Exited);
        assert_eq!(received(&mut events), steps(&id, &[Started, Stopped]));
    }

    #[tokio::test]
    async fn oom_kills_mark_the_exit() {
        let (w, pod, id) = running().await;
        let mut events = w.containers.subscribe_events();
        w.containers
            .on_shim_event(ShimEvent::Oom {
                container_id: id.clone(),
            })
            .await;
        let r = w.containers.get(&id).unwrap();
        assert!(r.oom_killed && r.state == ContainerState::Running);
        w.containers.on_shim_event(exit(&id, &id, 137)).await;
        assert!(w.containers.get(&id).unwrap().oom_killed);
        // An OOM recorded only in the bundle (its event lost) counts too.
        let other = w.containers.create(&pod, w.container("b")).await.unwrap();
        w.containers.start(&other).await.unwrap();
        std::fs::write(w.bundle(&other).join(OOM_FILE), "").unwrap();
        w.containers.on_shim_event(exit(&other, &other, 137)).await;
        assert!(w.containers.get(&other).unwrap().oom_killed);
        let mut want = steps(&id, &[Stopped]);
        want.extend(steps(&other, &[Created, Started, Stopped]));
        assert_eq!(received(&mut events), want);
    }

    #[tokio::test]
    async fn shim_events_are_followed_from_the_queue() {
        let (w, _pod, id) = running().await;
        let mut events = w.containers.subscribe_events();
        let (queue, taken) = mpsc::channel(4);
        tokio::spawn(w.containers.clone().follow_shim_events(taken));
        // For a container that is not (any more) there: nothing happens.
        queue.send(exit("gone", "gone", 1)).await.unwrap();
        queue.send(exit(&id, &id, 2)).await.unwrap();
        let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((event.id.as_str(), event.kind), (id.as_str(), Stopped));
        assert_eq!(w.containers.get(&id).unwrap().exit_code, 2);
    }

    #[tokio::test]
    async fn a_create_rolled_back_is_not_announced() {
        let w = World::new();
        let pod = w.pod("web").await;
        let mut events = w.containers.subscribe_events();
        w.shims
            .fail_next("create", TaskError::Failed("runc create: boom".into()));
        assert!(w.containers.create(&pod, w.container("app")).await.is_err());
        assert!(received(&mut events).is_empty());
    }
}
