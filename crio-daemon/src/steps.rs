//! Where the time of one call goes: named steps timed one after the other,
//! logged at debug level to find the costs worth taking down; and the
//! stage a creation is at, for the retries that find it still under way.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

/// The stage a pod's or a container's creation is at (CRI-O's names:
/// "sandbox network creation", "container storage creation", …), shared
/// with the retries of the same request, which count it as stalled there.
#[derive(Clone, Debug)]
pub struct Stage(Arc<Mutex<&'static str>>);

impl Stage {
    /// A creation at its `first` stage.
    pub fn new(first: &'static str) -> Self {
        Self(Arc::new(Mutex::new(first)))
    }

    /// The creation moves on to `stage`.
    pub fn set(&self, stage: &'static str) {
        *self.0.lock() = stage;
    }

    /// The stage it is at.
    pub fn get(&self) -> &'static str {
        *self.0.lock()
    }

    /// A retry found the creation still under way: counted at its stage
    /// (`container_runtime_crio_resources_stalled_at_stage`).
    pub fn stalled(&self) {
        let stage = self.get();
        tracing::info!(stage, "creation not finished yet: the retry waits for it");
        crate::metrics::global().stalled_at(stage);
    }
}

/// The steps of one call so far.
pub struct Steps {
    last: Instant,
    done: Vec<(&'static str, f64)>,
}

impl Default for Steps {
    fn default() -> Self {
        Self {
            last: Instant::now(),
            done: Vec::new(),
        }
    }
}

impl Steps {
    /// Ends the step `name`, which began at the previous mark.
    pub fn mark(&mut self, name: &'static str) {
        let now = Instant::now();
        let ms = (now - self.last).as_secs_f64() * 1e3;
        self.done.push((name, ms));
        self.last = now;
    }

    /// `name=1.23ms …`, in order.
    pub fn summary(&self) -> String {
        self.done
            .iter()
            .map(|(name, ms)| format!("{name}={ms:.2}ms"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_in_order() {
        let mut s = Steps::default();
        s.mark("one");
        std::thread::sleep(std::time::Duration::from_millis(2));
        s.mark("two");
        let text = s.summary();
        assert!(text.starts_with("one=") && text.contains(" two="), "{text}");
        assert!(s.done[1].1 >= 2.0);
    }
}
