//! Single-use, expiring tokens naming pending streaming requests.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use parking_lot::Mutex;

use crate::{Error, Request};

/// Pending requests by token.
pub struct Tokens {
    ttl: Duration,
    capacity: usize,
    pending: Mutex<HashMap<String, (Instant, Request)>>,
}

impl Tokens {
    /// A cache whose tokens live `ttl` and that holds at most `capacity`.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            pending: Mutex::default(),
        }
    }

    /// Stores `request` under a new unguessable token (128 random bits,
    /// URL-safe).
    pub fn insert(&self, request: Request) -> Result<String, Error> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let now = Instant::now();
        let mut pending = self.pending.lock();
        pending.retain(|_, (expires, _)| *expires > now);
        if pending.len() >= self.capacity {
            return Err(Error::Full(self.capacity));
        }
        pending.insert(token.clone(), (now + self.ttl, request));
        Ok(token)
    }

    /// Takes the request of `token`: each token works once, and not after
    /// it expired.
    pub fn take(&self, token: &str) -> Option<Request> {
        let mut pending = self.pending.lock();
        let (expires, request) = pending.remove(token)?;
        (expires > Instant::now()).then_some(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PortForwardRequest;

    fn request() -> Request {
        Request::PortForward(PortForwardRequest {
            pod_sandbox_id: "p".into(),
            ports: vec![80],
        })
    }

    #[test]
    fn tokens_are_single_use_expire_and_are_bounded() {
        let tokens = Tokens::new(Duration::from_secs(60), 2);
        let a = tokens.insert(request()).unwrap();
        let b = tokens.insert(request()).unwrap();
        assert_ne!(a, b);
        assert!(
            a.len() >= 22
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert!(matches!(tokens.insert(request()), Err(Error::Full(2))));
        assert!(tokens.take(&a).is_some());
        assert!(tokens.take(&a).is_none(), "a token works once");
        assert!(tokens.take("garbage").is_none());
        let short = Tokens::new(Duration::from_millis(1), 2);
        let t = short.insert(request()).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(short.take(&t).is_none(), "an expired token is refused");
    }
}
