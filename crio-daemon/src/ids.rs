//! Pod and container IDs. The daemon names directories after them (bundles,
//! writable layers, pod run dirs, records), so an ID is a validated value:
//! generated here, or parsed (a record read back from disk does not load
//! with a bad one). What a request names is checked at the CRI edge by
//! [`requested`] and only ever looked up, never joined to a path.

use std::fmt;
use std::ops::Deref;

use crio_api::Status;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Hex digits in an ID.
const LEN: usize = 64;
/// The shortest prefix a request may name an object by (as crictl does).
const MIN_PREFIX: usize = 3;

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A pod or container ID: 64 lowercase hex digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(String);

impl Id {
    /// A fresh random ID.
    pub fn random() -> Self {
        Self(crate::pods::new_id())
    }

    /// Parses an ID, refusing anything the daemon would not generate.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.len() == LEN && is_lower_hex(s) {
            Ok(Self(s.to_string()))
        } else {
            Err(format!("{s:?} is not an ID ({LEN} lowercase hex digits)"))
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

/// Checks the `field` of a request naming a `kind` ("container", "pod
/// sandbox") by ID or unique prefix: empty is InvalidArgument; anything that
/// cannot be an ID or a prefix of one is NotFound, as CRI-O answers.
pub fn requested<'a>(kind: &str, field: &str, id: &'a str) -> Result<&'a str, Status> {
    if id.is_empty() {
        return Err(crio_api::status::invalid_field(field, "must not be empty"));
    }
    if (MIN_PREFIX..=LEN).contains(&id.len()) && is_lower_hex(id) {
        Ok(id)
    } else {
        Err(Status::not_found(format!(
            "{kind} {id:?} not found: not a {kind} ID"
        )))
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

    #[test]
    fn requests_name_ids_or_prefixes() {
        let id = Id::random();
        assert_eq!(requested("container", "container_id", &id).unwrap(), &*id);
        assert!(requested("container", "container_id", &id[..3]).is_ok());
        let empty = requested("pod sandbox", "pod_sandbox_id", "").unwrap_err();
        assert_eq!(empty.code(), crio_api::Code::InvalidArgument);
        for bad in [
            "../../etc",
            "/",
            "..",
            "ab",
            "ABCDEF",
            "abc/..",
            &format!("{id}0"),
        ] {
            let err = requested("container", "container_id", bad).unwrap_err();
            assert_eq!(err.code(), crio_api::Code::NotFound, "{bad}");
        }
    }
}
