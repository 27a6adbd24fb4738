//! Content digests as validated values. Digests come from registries and
//! image configs, and the stores name directories and files after them, so
//! one that is not exactly `sha256:` and 64 lowercase hex digits is refused
//! where it enters (parsing, or deserialising a record read back from disk)
//! and never reaches a path.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

const PREFIX: &str = "sha256:";
const HEX_LEN: usize = 64;

/// A `sha256:<64 lowercase hex>` digest. Only sha256: it is what the
/// registry client verifies content with and what the stores are keyed by;
/// a sha512 descriptor could be neither checked nor stored.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a sha256 digest (sha256: and 64 lowercase hex digits)")]
pub struct DigestError(pub String);

impl Digest {
    /// Parses `sha256:<64 lowercase hex>`, refusing anything else.
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let valid = s.strip_prefix(PREFIX).is_some_and(|h| {
            h.len() == HEX_LEN && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
        if valid {
            Ok(Self(s.to_string()))
        } else {
            Err(DigestError(s.to_string()))
        }
    }

    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self::from_sha256(Sha256::digest(data).into())
    }

    /// The digest with this sha256 value.
    pub fn from_sha256(bytes: [u8; 32]) -> Self {
        Self(format!("{PREFIX}{}", hex::encode(bytes)))
    }

    /// The 64 hex digits: what the stores name files and directories after.
    pub fn hex(&self) -> &str {
        &self.0[PREFIX.len()..]
    }

    /// `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for Digest {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Digest {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Digest {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn accepts_only_sha256_with_64_lowercase_hex() {
        let d = Digest::parse(&format!("sha256:{HEX}")).unwrap();
        assert_eq!(d.hex(), HEX);
        assert_eq!(d.to_string(), format!("sha256:{HEX}"));
        for bad in [
            String::new(),
            HEX.to_string(),
            format!("sha256:{HEX}/diff/fake"),
            format!("sha256:{HEX}/"),
            format!("sha256:{}", &HEX[1..]),
            format!("sha256:{HEX}0"),
            format!("sha256:{}", HEX.to_uppercase()),
            format!("sha512:{HEX}{HEX}"),
            format!("SHA256:{HEX}"),
            "sha256:../../../../etc".to_string(),
            format!("sha256:{}..", &HEX[2..]),
            format!(" sha256:{HEX}"),
        ] {
            assert_eq!(Digest::parse(&bad), Err(DigestError(bad.clone())), "{bad}");
        }
    }

    #[test]
    fn serde_validates() {
        let d = Digest::of(b"x");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        let err = serde_json::from_str::<Digest>(&format!("\"sha256:{HEX}/diff/x\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a sha256 digest"), "{err}");
        assert_eq!(
            Digest::of(b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
