//! Pod and container IDs. The daemon names directories after them (bundles,
//! writable layers, pod run dirs, records), so an ID is a validated value:
//! generated here, or parsed (a record read back from disk does not load
//! with a bad one). What a request names is checked at the CRI edge (with
//! [`is_id_or_prefix`]) and only ever looked up, never joined to a path.

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Hex digits in an ID.
const LEN: usize = 64;
/// The shortest prefix a request may name an object by (as crictl does).
const MIN_PREFIX: usize = 3;

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `s` can name an object: an ID, or a prefix of one at least
/// 3 characters long (as crictl's short IDs).
pub fn is_id_or_prefix(s: &str) -> bool {
    (MIN_PREFIX..=LEN).contains(&s.len()) && is_lower_hex(s)
}

/// A text that is not an ID.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an ID ({LEN} lowercase hex digits)")]
pub struct IdError(String);

/// A pod or container ID: 64 lowercase hex digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(String);

impl Id {
    /// A fresh random ID.
    pub fn random() -> Self {
        Self(crate::pod::new_id())
    }

    /// Parses an ID, refusing anything the daemon would not generate.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.len() == LEN && is_lower_hex(s) {
            Ok(Self(s.to_string()))
        } else {
            Err(IdError(s.to_string()))
        }
    }

    /// The ID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for Id {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl PartialEq<str> for Id {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Id {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_lowercase_hex() {
        let id = Id::random();
        assert_eq!(Id::parse(&id).unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<Id>(&json).unwrap(), id);
        for bad in [
            "",
            "../../etc",
            &id[1..],
            &format!("{id}/x"),
            &id.to_uppercase(),
        ] {
            assert!(Id::parse(bad).is_err(), "{bad}");
            assert!(
                serde_json::from_str::<Id>(&format!("{bad:?}")).is_err(),
                "{bad}"
            );
        }
    }
}
