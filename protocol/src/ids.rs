//! Newtype identifiers. String ids (`NodeId`, `CameraId`) are validated on
//! construction and on deserialisation: 1..=64 characters of `[A-Za-z0-9_.-]`,
//! so they are safe inside zenoh key expressions, file names and SQL values.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::sync::Arc;

/// An inclusive range of person ids of a labelled data set, written `A-B`
/// (or `A`): which people an evaluation, a training run or a composite scene
/// takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    /// First id.
    pub lo: u64,
    /// Last id.
    pub hi: u64,
}

impl IdRange {
    /// True when `id` is in the range.
    pub fn contains(&self, id: u64) -> bool {
        (self.lo..=self.hi).contains(&id)
    }
}

impl std::str::FromStr for IdRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let num = |v: &str| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| format!("ids {s:?}: {v:?} is not a non-negative integer"))
        };
        let (lo, hi) = match s.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(s)?, num(s)?),
        };
        if lo > hi {
            return Err(format!("ids {s:?}: {lo} is above {hi}"));
        }
        Ok(IdRange { lo, hi })
    }
}

impl fmt::Display for IdRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.lo, self.hi)
    }
}

/// Longest accepted string id, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// Why a string was refused as an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdError {
    /// The id was empty.
    Empty,
    /// The id was longer than [`MAX_ID_LEN`].
    TooLong(usize),
    /// The id contained a character outside `[A-Za-z0-9_.-]`.
    BadChar(char),
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdError::Empty => write!(f, "id is empty"),
            IdError::TooLong(n) => write!(f, "id is {n} bytes long, at most {MAX_ID_LEN} allowed"),
            IdError::BadChar(c) => write!(
                f,
                "id contains {c:?}; only letters, digits, '_', '.' and '-' are allowed"
            ),
        }
    }
}

impl std::error::Error for IdError {}

fn validate(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong(s.len()));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(IdError::BadChar(c));
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates and wraps `s`.
            pub fn new(s: &str) -> Result<Self, IdError> {
                validate(s)?;
                Ok(Self(Arc::from(s)))
            }
            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_id!(
    /// Identifies an edge node or the master in the cluster.
    NodeId
);
string_id!(
    /// Identifies a camera (one video stream) across the cluster.
    CameraId
);
string_id!(
    /// Identifies an analytics job (a DAG of stages, see
    /// [`crate::messages::JobSpec`]) across the cluster.
    JobId
);
string_id!(
    /// Names a stage within one job.
    StageId
);

/// A track within one camera's tracker (unique per camera and node run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TrackId(pub u64);

/// A global person identity, assigned by re-identification. Minted ids carry
/// the minting node's prefix in their top 16 bits, so they are usually above
/// 2^53: in human-readable formats (JSON) they are written as decimal strings,
/// which JavaScript cannot round, and read from either strings or numbers; in
/// binary formats (the wire codec) they are plain `u64`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdentityId(pub u64);

impl Serialize for IdentityId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(&self.0)
        } else {
            s.serialize_u64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for IdentityId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = IdentityId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an identity id: an unsigned integer or a string of decimal digits")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<IdentityId, E> {
                Ok(IdentityId(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<IdentityId, E> {
                u64::try_from(v)
                    .map(IdentityId)
                    .map_err(|_| E::custom("an identity id cannot be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<IdentityId, E> {
                v.strip_prefix('p')
                    .unwrap_or(v)
                    .parse::<u64>()
                    .map(IdentityId)
                    .map_err(|_| E::custom(format!("{v:?} is not an identity id")))
            }
        }
        if d.is_human_readable() {
            d.deserialize_any(V)
        } else {
            d.deserialize_u64(V)
        }
    }
}

impl fmt::Display for TrackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}", self.0)
    }
}

impl fmt::Display for IdentityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_ids_are_exact_strings_in_json() {
        let id = IdentityId(12_951_508_103_387_414_529);
        let json = serde_json::to_string(&id).expect("json");
        assert_eq!(json, "\"12951508103387414529\"");
        assert_eq!(serde_json::from_str::<IdentityId>(&json).expect("back"), id);
        assert_eq!(
            serde_json::from_str::<IdentityId>("17").expect("number"),
            IdentityId(17)
        );
        assert_eq!(
            serde_json::from_str::<IdentityId>("\"p17\"").expect("p-form"),
            IdentityId(17)
        );
        assert!(serde_json::from_str::<IdentityId>("\"x\"").is_err());
        assert!(serde_json::from_str::<IdentityId>("-3").is_err());
    }

    #[test]
    fn accepts_reasonable_ids() {
        for s in ["cam-1", "node_2", "lobby.east", "A"] {
            assert_eq!(CameraId::new(s).map(|c| c.to_string()), Ok(s.to_string()));
        }
    }

    #[test]
    fn refuses_bad_ids_with_reason() {
        assert_eq!(NodeId::new(""), Err(IdError::Empty));
        assert_eq!(NodeId::new("a/b"), Err(IdError::BadChar('/')));
        assert_eq!(NodeId::new("a*"), Err(IdError::BadChar('*')));
        assert_eq!(NodeId::new(&"x".repeat(65)), Err(IdError::TooLong(65)));
    }

    #[test]
    fn deserialisation_validates() {
        let ok: Result<CameraId, _> = serde_json::from_str("\"cam1\"");
        assert!(ok.is_ok());
        let bad: Result<CameraId, _> = serde_json::from_str("\"cam/../1\"");
        let err = bad.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("'/'") || err.contains("\"/\""), "{err}");
    }
}
