//! The record types, now defined in `vidar-protocol` (record batches travel
//! between processes), re-exported so `vidar_store::Record` and friends keep
//! working; plus [`Stored`], the shape of query results, which is the store's own.

use serde::{Deserialize, Serialize};

pub use vidar_protocol::record::*;

/// A stored value with its key, as returned by queries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stored<T> {
    /// The record's key.
    pub key: RecordKey,
    /// The record.
    pub value: T,
}
