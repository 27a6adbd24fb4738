//! Where the time of one call goes: named steps timed one after the other,
//! logged at debug level to find the costs worth taking down.

use std::time::Instant;

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
