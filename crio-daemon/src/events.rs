//! The life-cycle events of containers and pods (CRI `GetContainerEvents`,
//! the kubelet's Evented PLEG), published in one order to every subscriber.
//!
//! Each object (container or pod, by ID) goes through created, started,
//! stopped and deleted at most once each, in that order: a transition seen
//! twice (a StopContainer and the exit event of the same process, a retried
//! RunPodSandbox) is published once. Subscribers share one bounded ring: a
//! subscriber that falls more than [`BUFFER`] events behind loses its place
//! (and is told so) instead of holding memory for it.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::broadcast;

/// How many events a subscriber may be behind before it is dropped.
pub const BUFFER: usize = 1024;

/// A life-cycle step, in the order an object goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EventKind {
    /// Created (a container not started yet; a pod being made).
    Created,
    /// Started (a container's process runs; a pod is ready).
    Started,
    /// Stopped (a container's process exited; a pod stopped).
    Stopped,
    /// Deleted.
    Deleted,
}

/// One published event.
#[derive(Debug)]
pub struct Event<T> {
    /// The step.
    pub kind: EventKind,
    /// The container or pod it happened to.
    pub id: String,
    /// When it was published, CRI nanoseconds.
    pub at: i64,
    /// What subscribers need to describe it.
    pub detail: T,
}

/// What a subscriber receives.
pub type Subscription<T> = broadcast::Receiver<Arc<Event<T>>>;

/// Publishes events to every subscriber, each transition of an object once.
pub struct Publisher<T>(Mutex<Inner<T>>);

struct Inner<T> {
    /// The last step published of every object not deleted yet.
    last: HashMap<String, EventKind>,
    /// The ring; none once closed.
    tx: Option<broadcast::Sender<Arc<Event<T>>>>,
}

impl<T: Send + Sync + 'static> Publisher<T> {
    /// A publisher whose objects have already reached the steps `known` (the
    /// records found at start-up), with a ring of `capacity` events.
    pub fn new(capacity: usize, known: impl IntoIterator<Item = (String, EventKind)>) -> Self {
        Self(Mutex::new(Inner {
            last: known.into_iter().collect(),
            tx: Some(broadcast::channel(capacity).0),
        }))
    }

    /// Every event published from now on, in order; ends after [`Self::close`].
    pub fn subscribe(&self) -> Subscription<T> {
        match &self.0.lock().tx {
            Some(tx) => tx.subscribe(),
            None => broadcast::channel(1).1,
        }
    }

    /// Ends every subscription once it has read what was published (the
    /// daemon stops: streams end instead of holding up its exit).
    pub fn close(&self) {
        self.0.lock().tx = None;
    }

    /// Publishes that `id` reached `kind`, with the detail `describe` makes,
    /// unless it had already reached it (or a later step), or was never
    /// announced created (a create rolled back). Whether it was published.
    pub fn publish(&self, id: &str, kind: EventKind, describe: impl FnOnce() -> T) -> bool {
        // Held while sending: events leave in the order their steps were decided.
        let mut inner = self.0.lock();
        let last = &mut inner.last;
        match (last.get(id), kind) {
            (None, EventKind::Created) => {}
            (None, _) => return false,
            (Some(seen), _) if *seen >= kind => return false,
            _ => {}
        }
        match kind {
            EventKind::Deleted => {
                last.remove(id);
            }
            _ => {
                last.insert(id.to_string(), kind);
            }
        }
        let event = Event {
            kind,
            id: id.to_string(),
            at: crio_api::time::now_nanos(),
            detail: describe(),
        };
        if let Some(tx) = &inner.tx {
            // No subscriber: nothing is kept.
            let _ = tx.send(Arc::new(event));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EventKind::*;
    use tokio::sync::broadcast::error::TryRecvError;

    fn steps(rx: &mut Subscription<()>) -> Vec<(String, EventKind)> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|e| (e.id.clone(), e.kind))
            .collect()
    }

    #[test]
    fn each_step_once_and_in_order() {
        let p = Publisher::<()>::new(16, []);
        let mut rx = p.subscribe();
        for (id, kind) in [
            ("a", Created),
            ("a", Created),
            ("a", Started),
            ("b", Created),
            ("a", Stopped),
            ("a", Stopped),
            ("a", Started),
            ("a", Deleted),
            ("a", Deleted),
        ] {
            p.publish(id, kind, || ());
        }
        let want = [("a", Created), ("a", Started), ("b", Created)]
            .into_iter()
            .chain([("a", Stopped), ("a", Deleted)])
            .map(|(id, k)| (id.to_string(), k))
            .collect::<Vec<_>>();
        assert_eq!(steps(&mut rx), want);
        assert!(
            !p.0.lock().last.contains_key("a"),
            "a deleted object is forgotten"
        );
    }

    #[test]
    fn known_objects_are_not_announced_again() {
        let p = Publisher::<()>::new(16, [("old".to_string(), Stopped)]);
        let mut rx = p.subscribe();
        assert!(!p.publish("old", Stopped, || ()));
        // Never announced: a create rolled back is not stopped or deleted
        // for anyone.
        assert!(!p.publish("rolled-back", Stopped, || ()));
        assert!(!p.publish("rolled-back", Deleted, || ()));
        assert!(p.publish("old", Deleted, || ()));
        assert_eq!(steps(&mut rx), [("old".to_string(), Deleted)]);
    }

    #[test]
    fn every_subscriber_sees_the_same_sequence() {
        let p = Publisher::<()>::new(64, []);
        let (mut first, mut second) = (p.subscribe(), p.subscribe());
        for i in 0..20 {
            p.publish(&format!("c{i}"), Created, || ());
            p.publish(&format!("c{}", i / 2), Stopped, || ());
        }
        let seen = steps(&mut first);
        assert_eq!(seen.len(), 30);
        assert_eq!(seen, steps(&mut second));
    }

    #[test]
    fn a_slow_subscriber_is_dropped_not_buffered() {
        let p = Publisher::<Vec<u8>>::new(8, []);
        let mut slow = p.subscribe();
        let mut fast = p.subscribe();
        for i in 0..100 {
            p.publish(&i.to_string(), Created, || vec![0; 1024]);
            assert_eq!(fast.try_recv().unwrap().id, i.to_string());
        }
        // The ring holds 8 events, whoever is behind.
        assert_eq!(queued(&p), 8);
        assert_eq!(slow.try_recv().unwrap_err(), TryRecvError::Lagged(92));
        // What is left for it is the newest 8, still in order.
        let rest: Vec<String> = std::iter::from_fn(|| slow.try_recv().ok())
            .map(|e| e.id.clone())
            .collect();
        assert_eq!(rest, (92..100).map(|i| i.to_string()).collect::<Vec<_>>());
    }

    #[test]
    fn without_subscribers_nothing_is_kept() {
        let p = Publisher::<Vec<u8>>::new(8, []);
        assert!(p.publish("a", Created, || vec![0; 1 << 20]));
        assert_eq!(queued(&p), 0);
    }

    fn queued<T: Send + Sync + 'static>(p: &Publisher<T>) -> usize {
        p.0.lock().tx.as_ref().map_or(0, |tx| tx.len())
    }

    #[tokio::test]
    async fn closing_ends_subscriptions_after_what_was_published() {
        let p = Publisher::<()>::new(8, []);
        let mut rx = p.subscribe();
        p.publish("a", Created, || ());
        p.close();
        // Decided, but no one hears it any more.
        p.publish("b", Created, || ());
        assert_eq!(rx.recv().await.unwrap().id, "a");
        assert!(rx.recv().await.is_err(), "closed after the last event");
        assert!(
            p.subscribe().recv().await.is_err(),
            "a late subscriber ends at once"
        );
    }
}
