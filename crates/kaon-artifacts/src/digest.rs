use std::fmt;
use std::str::FromStr;

use crate::ArtifactError;

/// A BLAKE3 digest: the address of a blob.
///
/// BLAKE3 rather than SHA-256: it hashes several times faster on one core
/// without SHA extensions (the 1 GiB put stays close to `cp`), it
/// parallelises over large inputs, and kaon already uses it for workflow
/// digests. Its text form carries the algorithm (`blake3:<hex>`) so a
/// second algorithm could be added without ambiguity.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

/// The prefix of a digest's text form.
pub const ALGORITHM: &str = "blake3";

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(*blake3::hash(bytes).as_bytes())
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// The first 12 hex digits, for people.
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }
}

impl From<blake3::Hash> for Digest {
    fn from(h: blake3::Hash) -> Self {
        Digest(*h.as_bytes())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{ALGORITHM}:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl FromStr for Digest {
    type Err = ArtifactError;

    /// Accepts `blake3:<hex>` and bare hex; anything else is
    /// [`ArtifactError::BadDigest`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ArtifactError::BadDigest {
            text: s.to_string(),
        };
        let hex = s.strip_prefix("blake3:").unwrap_or(s);
        if hex.len() != 64 {
            return Err(bad());
        }
        blake3::Hash::from_hex(hex)
            .map(Digest::from)
            .map_err(|_| bad())
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip() {
        let d = Digest::of(b"kaon");
        let t = d.to_string();
        assert!(t.starts_with("blake3:"));
        assert_eq!(t.parse::<Digest>().ok(), Some(d));
        assert_eq!(d.hex().parse::<Digest>().ok(), Some(d));
        assert!(matches!(
            "blake3:abc".parse::<Digest>(),
            Err(ArtifactError::BadDigest { ref text }) if text == "blake3:abc"
        ));
        assert!(
            format!("blake3:{}", "g".repeat(64))
                .parse::<Digest>()
                .is_err()
        );
    }
}
