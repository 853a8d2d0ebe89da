//! Vidar's storage: the SQLite schema and its migrations, the one batched writer
//! per database, the queries, and the record sync between edges and the master.
//!
//! This crate owns every byte that goes into a Vidar database file and every SQL
//! statement that reads it; nothing else opens those files. It must not do
//! networking (sync transport is the caller's) nor hold records in memory beyond
//! a batch.
//!
//! - [`Writer`] (one per database) owns the read-write connection on its own
//!   thread; producers send it [`Record`]s through cloneable [`WriterHandle`]s, and
//!   it commits them in batches, assigning each its [`RecordKey`] `(node, seq)`.
//! - [`Reader`] (any number, each with its own read-only connection) answers
//!   queries and, on an edge, serves [`Reader::records_after`] to the master.
//! - On the master, [`WriterHandle::upsert_batch`] stores a pulled batch and
//!   advances that peer's cursor in the same transaction; the edge records the
//!   master's acknowledgement with [`WriterHandle::advance_cursor`] and frees space
//!   with [`WriterHandle::prune_acknowledged`].
//!
//! ```no_run
//! use vidar_protocol::{CameraId, NodeId, UnixMs};
//! use vidar_config::Config;
//! use vidar_store::{CameraRecord, Reader, Record, WriterConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let writer = WriterConfig::new("/var/lib/vidar/edge.db", NodeId::new("edge-1")?).build(&())?;
//! writer.submit(Record::Camera(CameraRecord {
//!     camera: CameraId::new("lobby")?,
//!     name: "Lobby, east door".into(),
//!     recorded_ms: UnixMs(1_700_000_000_000),
//! }))?;
//! writer.flush()?;
//! let reader = Reader::open("/var/lib/vidar/edge.db")?;
//! println!("{:?}", reader.cameras()?);
//! writer.shutdown()?;
//! # Ok(()) }
//! ```

pub mod boxpath;
mod corrections;
mod error;
pub mod maintenance;
mod reader;
mod record;
mod rows;
mod schema;
pub mod training;
mod worker;
mod writer;

pub use corrections::{Audited, Corrections, MAX_IN_FORCE};
pub use error::{InvalidRecord, StoreError};
pub use reader::{IdentitySeen, Reader, Span, MAX_CLUSTER, MAX_QUERY_ROWS, RECORD_OVERHEAD_BYTES};
// The record types are `vidar-protocol`'s (they travel in sync batches); re-exported
// so users of the store need not name both crates.
pub use record::Stored;
pub use schema::{create_private_dir, Synchronous, APPLICATION_ID, SCHEMA_VERSION};
pub use vidar_protocol::record::{
    BoxPoint, CameraRecord, Correction, CorrectionAction, IdentityMerge, IdentityRecord, JobResult,
    KeyedRecord, Record, RecordKey, Sighting, Snapshot, SplitScope, TimeRange, TrackRecord,
    MAX_ACTOR_LEN, MAX_EMBEDDING_DIM, MAX_NAME_LEN, MAX_PATH_POINTS, MAX_REASON_LEN,
    MAX_SIGHTING_SPAN_MS, MAX_SNAPSHOT_BYTES,
};
pub use writer::{
    FlushReport, PendingKey, PruneReport, UpsertReport, Writer, WriterConfig, WriterHandle,
    WriterStats, WriterTuning,
};

/// Bytes SQLite holds on the heap in this process: every connection's page
/// cache, prepared statements and schema. Each cache is capped (8 MiB for a
/// writer, 8 MiB for a reader), so this rises while a database grows past the
/// caps and then stays; exported as a gauge so that a process' memory can be
/// told apart from a leak.
#[allow(unsafe_code)]
pub fn sqlite_memory_bytes() -> u64 {
    // SAFETY: sqlite3_memory_used takes no arguments, only reads SQLite's
    // global counter (under its own mutex), and is callable from any thread at
    // any time, before or after any connection exists.
    let used = unsafe { rusqlite::ffi::sqlite3_memory_used() };
    u64::try_from(used).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    /// Producers share handles across threads; readers move to the thread that queries.
    #[test]
    fn handles_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<super::Writer>();
        send_sync::<super::WriterHandle>();
        send::<super::Reader>();
        send::<super::PendingKey>();
    }

    /// The gauge reads SQLite's real counter: zero would mean the build turned
    /// memory statistics off, and the exported gauge would lie.
    #[test]
    fn sqlite_memory_is_counted_while_a_database_is_open() {
        use vidar_config::Config;
        let dir = tempfile::tempdir().unwrap();
        let node = vidar_protocol::NodeId::new("edge-1").unwrap();
        let writer = super::WriterConfig::new(dir.path().join("m.db"), node)
            .build(&())
            .unwrap();
        let reader = super::Reader::open(dir.path().join("m.db")).unwrap();
        assert!(super::sqlite_memory_bytes() > 0);
        drop((reader, writer));
    }
}
