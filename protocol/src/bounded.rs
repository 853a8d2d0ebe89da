//! `#[serde(deserialize_with = "crate::bounded::vec::<_, _, MAX>")]` for message
//! vectors: refuses a sequence longer than `MAX` while decoding, before the
//! elements past the bound are built, so a hostile payload of many tiny
//! elements (each expanding to a larger value in memory) stops at the bound
//! instead of at the end of its 16 MiB. Validation re-checks the bound on the
//! sending side. Changes nothing on the wire.

use serde::de::{Error, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::marker::PhantomData;

/// Largest capacity reserved up front from an untrusted length hint, in bytes.
const MAX_PREALLOC_BYTES: usize = 1024 * 1024;

pub(crate) fn vec<'de, D, T, const MAX: usize>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    d.deserialize_seq(BoundedVec::<T, MAX>(PhantomData))
}

struct BoundedVec<T, const MAX: usize>(PhantomData<T>);

impl<'de, T: Deserialize<'de>, const MAX: usize> Visitor<'de> for BoundedVec<T, MAX> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a sequence of at most {MAX} elements")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let hint = seq.size_hint().unwrap_or(0);
        if hint > MAX {
            return Err(A::Error::invalid_length(hint, &self));
        }
        let cap = hint.min(MAX_PREALLOC_BYTES / std::mem::size_of::<T>().max(1));
        let mut out = Vec::with_capacity(cap);
        while let Some(x) = seq.next_element()? {
            if out.len() == MAX {
                return Err(A::Error::invalid_length(MAX + 1, &self));
            }
            out.push(x);
        }
        Ok(out)
    }
}
