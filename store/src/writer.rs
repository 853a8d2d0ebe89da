//! The one writer of a database: a dedicated thread that owns the read-write
//! connection, fed through a bounded channel, committing records in batches.
//!
//! Seqs are assigned by the writer thread inside each batch's transaction, from
//! the `node_seq` table that the same transaction advances. Hence: a seq is known
//! to a caller only once committed; a crash loses at most uncommitted records and
//! their never-announced seqs; and, since commits are serial, a reader that sees
//! seq `s` of this node also sees every smaller seq (sync relies on this).
//!
//! Queue policy: records are never dropped. [`WriterHandle::submit`] blocks while
//! the queue is full (backpressure: upstream stages drop frames, not records);
//! [`WriterHandle::try_submit`] refuses instead, for callers that count and drop.
//! A batch that cannot be committed is retried with backoff; if it still fails, the
//! writer stops, every waiting caller gets the reason, and later calls are refused.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vidar_config::{Config, Problem, Problems};
use vidar_protocol::{NodeId, UnixMs};

use crate::error::StoreError;
use crate::record::{KeyedRecord, Record, RecordKey};
use crate::rows::{seq_to_sql, Prepared};
use crate::schema::Synchronous;
use crate::worker::{Msg, Worker};

/// Tunables of a [`Writer`], as found in a node's config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WriterTuning {
    /// Most records committed in one transaction. Default 256.
    pub max_batch: usize,
    /// Longest a record waits for its batch to fill before commit, in milliseconds. Default 100.
    pub max_delay_ms: u64,
    /// Messages the writer's queue holds before `submit` blocks. Default 4096.
    pub queue_capacity: usize,
    /// How long a write waits for another process's lock, in milliseconds. Default 5000.
    pub busy_timeout_ms: u64,
    /// Disk sync at commit: `normal` (default) or `full`; see the `schema` module docs.
    pub synchronous: Synchronous,
    /// Most page cache the writer's connection keeps, KiB, 256..=4194304.
    /// Default 8192 (8 MiB: the hot pages of a whole site's writes). The
    /// file's pages stay in the system's page cache besides; this cache saves
    /// the copies.
    pub cache_kib: u32,
}

impl Default for WriterTuning {
    fn default() -> Self {
        WriterTuning {
            max_batch: 256,
            max_delay_ms: 100,
            queue_capacity: 4096,
            busy_timeout_ms: 5000,
            synchronous: Synchronous::Normal,
            cache_kib: crate::schema::WRITER_CACHE_KIB,
        }
    }
}

impl WriterTuning {
    /// Everything wrong with these settings, keys relative to them.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::new();
        if !(1..=100_000).contains(&self.max_batch) {
            p.push(
                "max_batch",
                format!("must be 1..=100000, got {}", self.max_batch),
            );
        }
        if self.max_delay_ms > 60_000 {
            p.push(
                "max_delay_ms",
                format!("must be at most 60000, got {}", self.max_delay_ms),
            );
        }
        if !(1..=1_000_000).contains(&self.queue_capacity) {
            p.push(
                "queue_capacity",
                format!("must be 1..=1000000, got {}", self.queue_capacity),
            );
        }
        if !(256..=4_194_304).contains(&self.cache_kib) {
            p.push(
                "cache_kib",
                format!("must be 256..=4194304, got {}", self.cache_kib),
            );
        }
        if self.busy_timeout_ms > 600_000 {
            p.push(
                "busy_timeout_ms",
                format!("must be at most 600000, got {}", self.busy_timeout_ms),
            );
        }
        p.into_vec()
    }
}

/// What a [`Writer`] is built from.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// The database file (created if absent).
    pub path: PathBuf,
    /// This node: the `node_id` of every key the writer assigns.
    pub node: NodeId,
    /// Batching and queue settings.
    pub tuning: WriterTuning,
}

impl WriterConfig {
    /// A config with default tuning.
    pub fn new(path: impl Into<PathBuf>, node: NodeId) -> Self {
        WriterConfig {
            path: path.into(),
            node,
            tuning: WriterTuning::default(),
        }
    }
}

impl Config for WriterConfig {
    type Output = Writer;
    type Context = ();
    type Error = StoreError;

    fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::new();
        if self.path.as_os_str().is_empty() {
            p.push("path", "must name a database file");
        }
        p.nested("tuning", self.tuning.problems());
        p.into_vec()
    }

    /// Opens (creating and migrating) the database and starts the writer thread.
    fn build(&self, _: &()) -> Result<Writer, StoreError> {
        Writer::open(self)
    }
}

/// Counters of a writer since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct WriterStats {
    /// Records committed (own writes and upserted peer records).
    pub records: u64,
    /// Transactions committed.
    pub batches: u64,
    /// Highest seq this node's writer has committed (0: none yet).
    pub last_seq: u64,
    /// Messages waiting in the queue now.
    pub queued: u64,
}

/// State shared by the handles and the writer thread.
#[derive(Debug)]
pub(crate) struct Shared {
    pub path: PathBuf,
    pub node: NodeId,
    pub capacity: usize,
    pub records: AtomicU64,
    pub batches: AtomicU64,
    pub last_seq: AtomicU64,
    pub queued: AtomicU64,
    /// Why the thread stopped, once it has.
    pub stopped: Mutex<Option<String>>,
}

impl Shared {
    pub fn stopped_error(&self) -> StoreError {
        let reason = self
            .stopped
            .lock()
            .map(|g| g.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
            .unwrap_or_else(|| "the writer thread has exited".to_string());
        StoreError::WriterStopped {
            path: self.path.clone(),
            reason,
        }
    }
}

/// The result of [`WriterHandle::flush`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushReport {
    /// Highest seq of this node committed so far (0: none yet).
    pub last_seq: u64,
    /// Records committed since the writer started.
    pub records: u64,
}

/// The result of [`WriterHandle::upsert_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpsertReport {
    /// Records that were new.
    pub inserted: usize,
    /// Records already present under their key (left unchanged).
    pub already_present: usize,
    /// The peer's cursor after the commit.
    pub cursor: u64,
}

/// The result of [`WriterHandle::prune_acknowledged`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneReport {
    /// Records deleted, all kinds together.
    pub deleted: usize,
}

/// A submitted record's key, available once its batch commits.
#[derive(Debug)]
pub struct PendingKey {
    rx: Receiver<Result<RecordKey, String>>,
    shared: Arc<Shared>,
}

impl PendingKey {
    /// Blocks until the record is committed (its key) or the writer fails.
    pub fn wait(self) -> Result<RecordKey, StoreError> {
        match self.rx.recv() {
            Ok(Ok(key)) => Ok(key),
            Ok(Err(reason)) => Err(StoreError::WriterStopped {
                path: self.shared.path.clone(),
                reason,
            }),
            Err(_) => Err(self.shared.stopped_error()),
        }
    }
}

/// A cloneable sender of work to the writer thread; any number of producers may hold one.
#[derive(Debug, Clone)]
pub struct WriterHandle {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
}

/// The writer: owns the thread. Dropping it shuts down like [`Writer::shutdown`],
/// ignoring errors; prefer calling `shutdown` to see them.
#[derive(Debug)]
pub struct Writer {
    handle: WriterHandle,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Opens (creating and migrating) `config.path` and starts the writer thread.
    pub fn open(config: &WriterConfig) -> Result<Writer, StoreError> {
        config.check()?;
        let t = &config.tuning;
        let conn = crate::schema::open_writable(
            &config.path,
            Duration::from_millis(t.busy_timeout_ms),
            t.synchronous,
            t.cache_kib,
        )?;
        let shared = Arc::new(Shared {
            path: config.path.clone(),
            node: config.node.clone(),
            capacity: t.queue_capacity,
            records: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            last_seq: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            stopped: Mutex::new(None),
        });
        let worker = Worker::new(
            conn,
            shared.clone(),
            t.max_batch,
            Duration::from_millis(t.max_delay_ms),
        )?;
        let (tx, rx) = mpsc::sync_channel(t.queue_capacity);
        let thread = std::thread::Builder::new()
            .name(format!("vidar-store-{}", config.node))
            .spawn(move || worker.run(rx))
            .map_err(|e| StoreError::WriterStopped {
                path: config.path.clone(),
                reason: format!("could not start the writer thread: {e}"),
            })?;
        Ok(Writer {
            handle: WriterHandle { tx, shared },
            thread: Some(thread),
        })
    }

    /// A handle for producers.
    pub fn handle(&self) -> WriterHandle {
        self.handle.clone()
    }

    /// Commits everything queued before this call, then stops the thread.
    pub fn shutdown(mut self) -> Result<WriterStats, StoreError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<WriterStats, StoreError> {
        let Some(thread) = self.thread.take() else {
            return Ok(self.handle.stats());
        };
        let (reply, rx) = mpsc::sync_channel(1);
        let sent = self.handle.tx.send(Msg::Shutdown { reply }).is_ok();
        let answer = if sent { rx.recv().ok() } else { None };
        if thread.join().is_err() {
            return Err(StoreError::WriterStopped {
                path: self.handle.shared.path.clone(),
                reason: "the writer thread panicked".to_string(),
            });
        }
        match answer {
            Some(Ok(())) => Ok(self.handle.stats()),
            Some(Err(reason)) => Err(StoreError::WriterStopped {
                path: self.handle.shared.path.clone(),
                reason,
            }),
            None => Err(self.handle.shared.stopped_error()),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.thread.is_some() {
            if let Err(e) = self.stop() {
                tracing::error!(error = %e, "store writer dropped with an error");
            }
        }
    }
}

impl std::ops::Deref for Writer {
    type Target = WriterHandle;
    fn deref(&self) -> &WriterHandle {
        &self.handle
    }
}

impl WriterHandle {
    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// This node's id.
    pub fn node(&self) -> &NodeId {
        &self.shared.node
    }

    /// Why the writer stopped, once it has (failed or shut down): nothing
    /// more will be committed.
    pub fn stopped(&self) -> Option<String> {
        self.shared
            .stopped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Counters since start.
    pub fn stats(&self) -> WriterStats {
        WriterStats {
            records: self.shared.records.load(Ordering::Relaxed),
            batches: self.shared.batches.load(Ordering::Relaxed),
            last_seq: self.shared.last_seq.load(Ordering::Relaxed),
            queued: self.shared.queued.load(Ordering::Relaxed),
        }
    }

    fn send(&self, msg: Msg) -> Result<(), StoreError> {
        // A writer that stopped refuses at once, even while its thread is
        // still winding down and its channel still takes messages.
        let stopped = self
            .shared
            .stopped
            .lock()
            .map(|g| g.is_some())
            .unwrap_or(true);
        if stopped {
            return Err(self.shared.stopped_error());
        }
        self.shared.queued.fetch_add(1, Ordering::Relaxed);
        self.tx.send(msg).map_err(|_| {
            self.shared.queued.fetch_sub(1, Ordering::Relaxed);
            self.shared.stopped_error()
        })
    }

    /// Queues `record` for the next batch; blocks while the queue is full. Its key
    /// is not reported; [`flush`](Self::flush) tells when it is committed.
    pub fn submit(&self, record: Record) -> Result<(), StoreError> {
        let rec = Prepared::new(record)?;
        self.send(Msg::Write { rec, ack: None })
    }

    /// Like [`submit`](Self::submit), and the returned [`PendingKey`] gives the key once committed.
    pub fn submit_acked(&self, record: Record) -> Result<PendingKey, StoreError> {
        let rec = Prepared::new(record)?;
        let (ack, rx) = mpsc::sync_channel(1);
        self.send(Msg::Write {
            rec,
            ack: Some(ack),
        })?;
        Ok(PendingKey {
            rx,
            shared: self.shared.clone(),
        })
    }

    /// Queues `record` unless the queue is full ([`StoreError::QueueFull`]: not taken).
    pub fn try_submit(&self, record: Record) -> Result<(), StoreError> {
        let rec = Prepared::new(record)?;
        self.shared.queued.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(Msg::Write { rec, ack: None }) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                match e {
                    TrySendError::Full(_) => Err(StoreError::QueueFull {
                        path: self.shared.path.clone(),
                        capacity: self.shared.capacity,
                    }),
                    TrySendError::Disconnected(_) => Err(self.shared.stopped_error()),
                }
            }
        }
    }

    /// Writes `record` and waits for its commit (batched with whatever else is queued).
    pub fn write(&self, record: Record) -> Result<RecordKey, StoreError> {
        self.submit_acked(record)?.wait()
    }

    fn request<T>(
        &self,
        make: impl FnOnce(SyncSender<Result<T, String>>) -> Msg,
    ) -> Result<T, StoreError> {
        let (reply, rx) = mpsc::sync_channel(1);
        self.send(make(reply))?;
        match rx.recv() {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(reason)) => Err(StoreError::WriterStopped {
                path: self.shared.path.clone(),
                reason,
            }),
            Err(_) => Err(self.shared.stopped_error()),
        }
    }

    /// Waits until everything sent through any handle before this call is committed.
    pub fn flush(&self) -> Result<FlushReport, StoreError> {
        self.request(|reply| Msg::Flush { reply })
    }

    /// Master side of sync: stores `records` pulled from `peer` (a result of the
    /// peer's `records_after`) and advances `peer`'s cursor to the highest seq in
    /// the batch, in one transaction. Keys already present are left as they are
    /// (records are immutable), so a batch applied twice changes nothing.
    pub fn upsert_batch(
        &self,
        peer: &NodeId,
        records: Vec<KeyedRecord>,
    ) -> Result<UpsertReport, StoreError> {
        let bad = |reason: String| StoreError::BadBatch {
            peer: peer.to_string(),
            reason,
        };
        if peer == &self.shared.node {
            return Err(bad(format!(
                "records keyed with this database's own node {peer} would collide with its seq counter"
            )));
        }
        let mut prepared = Vec::with_capacity(records.len());
        let mut prev = 0u64;
        for KeyedRecord { key, record } in records {
            if &key.node != peer {
                return Err(bad(format!(
                    "record {}/{} is not from {peer}",
                    key.node, key.seq
                )));
            }
            if key.seq <= prev || seq_to_sql(key.seq).is_none() {
                return Err(bad(format!(
                    "seq {} after {prev}: seqs must be positive, below 2^63 and increasing",
                    key.seq
                )));
            }
            prev = key.seq;
            prepared.push((key.seq, Prepared::new(record)?));
        }
        let peer = peer.clone();
        self.request(|reply| Msg::Upsert {
            peer,
            records: prepared,
            reply,
        })
    }

    /// Records that `peer` has acknowledged everything of ours up to `seq`
    /// (monotonic: a lower value leaves the cursor as it is). Returns the cursor.
    pub fn advance_cursor(&self, peer: &NodeId, seq: u64) -> Result<u64, StoreError> {
        if seq_to_sql(seq).is_none() {
            return Err(StoreError::BadBatch {
                peer: peer.to_string(),
                reason: format!("cursor {seq} is above 2^63"),
            });
        }
        let peer = peer.clone();
        self.request(|reply| Msg::AdvanceCursor { peer, seq, reply })
    }

    /// Edge side: deletes this node's records with seq `<= up_to_seq` (what the
    /// master acknowledged) whose time is older than `retention` before now.
    /// Camera records are kept (configuration, few).
    pub fn prune_acknowledged(
        &self,
        up_to_seq: u64,
        retention: Duration,
    ) -> Result<PruneReport, StoreError> {
        self.prune_acknowledged_at(up_to_seq, retention, UnixMs::now())
    }

    /// [`prune_acknowledged`](Self::prune_acknowledged) with an explicit "now".
    pub fn prune_acknowledged_at(
        &self,
        up_to_seq: u64,
        retention: Duration,
        now: UnixMs,
    ) -> Result<PruneReport, StoreError> {
        let cutoff_ms = now.minus(retention);
        let up_to = seq_to_sql(up_to_seq).unwrap_or(i64::MAX);
        self.request(|reply| Msg::Prune {
            up_to,
            cutoff_ms,
            reply,
        })
    }
}
