//! Record sync: pulls every reachable edge's records after the master's cursor
//! into the global database, every `sync_every` and on demand.
//!
//! For each node: ask `keys.sync(node)` for records after the cursor (with the
//! cursor as `ack_through`, so the edge may prune what the master holds), store
//! the batch with `upsert_batch` (records and cursor in one transaction, so the
//! cursor never passes an uncommitted record), and ask again while the edge
//! says there is `more`. The cursor lives in the global database, so a restarted
//! master resumes where it stopped; keys already present are left alone, so a
//! batch applied twice (or overlapping batches) change nothing. A node that does
//! not answer is logged with exponential spacing and retried next round.
//! This module owns the transport loop; the SQL is the store's.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use vidar_protocol::messages::{SyncBatch, SyncRequest};
use vidar_protocol::{Keys, NodeId, UnixMs};
use vidar_store::{Reader, WriterHandle};

use crate::membership::Membership;

/// How long one sync request waits for its batch.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Nodes synced at once in a round.
pub const MAX_PARALLEL: usize = 16;
/// Most requests to one node in one round (a node far behind catches up over
/// several rounds rather than starving the others).
pub const MAX_REQUESTS_PER_ROUND: usize = 1000;

/// One node's sync state, for the API and metrics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeSync {
    /// The master's cursor: every record of the node up to this seq is in the global database.
    pub cursor: u64,
    /// The node's highest seq at its last answer.
    pub edge_last_seq: Option<u64>,
    /// Records the node holds beyond the cursor, at its last answer.
    pub lag_records: Option<u64>,
    /// Wall-clock ms of the last round that reached the node's end.
    pub last_success_ms: Option<UnixMs>,
    /// Seconds since then (filled when read).
    pub since_success_s: Option<f64>,
    /// Records stored from this node since the master started.
    pub records: u64,
    /// Consecutive failed rounds.
    pub failures: u64,
    /// The last failure, if the last round failed.
    pub last_error: Option<String>,
    #[serde(skip)]
    last_success: Option<Instant>,
}

#[derive(Debug)]
struct Shared {
    nodes: Mutex<BTreeMap<NodeId, NodeSync>>,
    wake: SyncSender<()>,
    records: AtomicU64,
    rounds: AtomicU64,
    /// Records refused because their seq is past what their node reported.
    beyond: AtomicU64,
    /// Merges and corrections refused from edges (only the master makes them).
    masters_only: AtomicU64,
    /// Records per second of the last round.
    rate: vidar_runtime::metrics::F64Gauge,
}

/// A handle on the sync service: trigger a round, read its state.
#[derive(Debug, Clone)]
pub struct Sync {
    shared: Arc<Shared>,
}

impl Sync {
    /// A handle; `wake` must be the sender of the service's trigger channel.
    pub fn new(wake: SyncSender<()>) -> Sync {
        Sync {
            shared: Arc::new(Shared {
                nodes: Mutex::new(BTreeMap::new()),
                wake,
                records: AtomicU64::new(0),
                rounds: AtomicU64::new(0),
                beyond: AtomicU64::new(0),
                masters_only: AtomicU64::new(0),
                rate: Default::default(),
            }),
        }
    }

    /// Asks for a round now ("sync now"); coalesced with one already asked for.
    pub fn trigger(&self) {
        let _ = self.shared.wake.try_send(());
    }

    /// Every node's sync state.
    pub fn nodes(&self) -> BTreeMap<NodeId, NodeSync> {
        let now = Instant::now();
        let mut nodes = self
            .shared
            .nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for n in nodes.values_mut() {
            n.since_success_s = n
                .last_success
                .map(|at| now.saturating_duration_since(at).as_secs_f64());
        }
        nodes
    }

    /// Records stored since start.
    pub fn records(&self) -> u64 {
        self.shared.records.load(Ordering::Relaxed)
    }

    /// Records refused since start because their seq was past what their
    /// node reported having written and past what the master asked for (a
    /// forged or broken reply; records written after the node's status,
    /// within what was asked, wait for the next status and are not counted).
    pub fn beyond(&self) -> u64 {
        self.shared.beyond.load(Ordering::Relaxed)
    }

    /// Merges and corrections refused from edges since start (only the
    /// master makes them; one from an edge is forged).
    pub fn masters_only(&self) -> u64 {
        self.shared.masters_only.load(Ordering::Relaxed)
    }

    /// Rounds completed since start.
    pub fn rounds(&self) -> u64 {
        self.shared.rounds.load(Ordering::Relaxed)
    }

    /// Records per second of the last round (0 when it moved nothing).
    pub fn rate(&self) -> f64 {
        self.shared.rate.get()
    }

    fn update(&self, node: &NodeId, f: impl FnOnce(&mut NodeSync)) {
        let mut nodes = self.shared.nodes.lock().unwrap_or_else(|p| p.into_inner());
        f(nodes.entry(node.clone()).or_default());
    }
}

/// Why one node's sync stopped short.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The node did not answer usably.
    #[error("requesting records from {node}: {source}")]
    Request {
        /// The node.
        node: NodeId,
        /// What happened.
        source: vidar_link::RequestError,
    },
    /// The batch claims to come from another node.
    #[error("the sync answer on {node}'s key is a batch from {from}")]
    WrongNode {
        /// The node asked.
        node: NodeId,
        /// The node the batch names.
        from: NodeId,
    },
    /// The global database refused the batch or failed.
    #[error(transparent)]
    Store(#[from] vidar_store::StoreError),
}

/// What the sync service needs to run.
#[derive(Debug)]
pub struct SyncService {
    /// The site link.
    pub link: vidar_link::Link,
    /// The site's keys.
    pub keys: Keys,
    /// Who is reachable.
    pub membership: Membership,
    /// The global database's writer.
    pub writer: WriterHandle,
    /// The global database (read for cursors).
    pub database: PathBuf,
    /// The handle shared with the API.
    pub sync: Sync,
    /// The receiver of the trigger channel.
    pub wake: Receiver<()>,
    /// Round period.
    pub every: Duration,
    /// Records asked for per request.
    pub batch: u32,
    /// Triggered to stop the service, after one final round (with a wake,
    /// see [`Sync::trigger`]).
    pub stop: vidar_runtime::Shutdown,
}

/// Least time between two trims of the heap after sync rounds. The master's
/// memory comes and goes in rounds, queries and merges (SQLite page caches of
/// short-lived readers, decoded batches); without handing the free memory
/// back, glibc keeps each arena's high-water mark as RSS.
const TRIM_EVERY: Duration = Duration::from_secs(5);

impl SyncService {
    /// Runs the service on its own thread.
    pub fn spawn(self) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("vidar-sync".into())
            .spawn(move || self.run())
    }

    fn run(self) {
        let reader = match Reader::open(&self.database) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::error!(error = %e, "opening the global database for sync cursors; sync stopped");
                None
            }
        };
        let Some(reader) = reader else { return };
        let mut next = Instant::now();
        let mut trimmed = Instant::now();
        loop {
            let wait = next.saturating_duration_since(Instant::now());
            if !self.stop.is_triggered() && !wait.is_zero() {
                // Sleeps until the round is due, "sync now" or the stop.
                match self.wake.recv_timeout(wait) {
                    Ok(()) => {}
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => {
                        self.stop.wait_timeout(wait);
                        continue;
                    }
                }
            }
            self.round(&reader);
            if trimmed.elapsed() >= TRIM_EVERY {
                trimmed = Instant::now();
                let released = vidar_runtime::heap::trim();
                tracing::debug!(?released, took = ?trimmed.elapsed(), "free heap memory handed back");
            }
            if self.stop.is_triggered() {
                tracing::info!("final sync round done");
                return;
            }
            next = Instant::now() + self.every;
        }
    }

    /// One pass over every reachable node, up to [`MAX_PARALLEL`] at once:
    /// a slow or silent node (or many) holds up only its own worker, never
    /// the others' sync.
    pub fn round(&self, reader: &Reader) {
        let start = Instant::now();
        let puller = Puller {
            link: &self.link,
            keys: &self.keys,
            membership: &self.membership,
            writer: &self.writer,
            sync: &self.sync,
            batch: self.batch,
        };
        let mut work = Vec::new();
        for node in self.membership.reachable() {
            match reader.cursor(&node) {
                Ok(c) => work.push((node, c.unwrap_or(0))),
                Err(e) => puller.failed(&node, &SyncError::from(e)),
            }
        }
        // Popped from the end: the first reachable node goes first.
        work.reverse();
        let moved = AtomicU64::new(0);
        let workers = work.len().min(MAX_PARALLEL);
        let queue = Mutex::new(work);
        let pull = || loop {
            let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let Some((node, cursor)) = next else { break };
            match puller.sync_node(&node, cursor) {
                Ok(n) => {
                    moved.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => puller.failed(&node, &e),
            }
        };
        if workers <= 1 {
            pull();
        } else {
            std::thread::scope(|sc| {
                for _ in 0..workers {
                    sc.spawn(pull);
                }
            });
        }
        let moved = moved.load(Ordering::Relaxed);
        let secs = start.elapsed().as_secs_f64().max(1e-3);
        let rate = moved as f64 / secs;
        self.sync.shared.rate.set(rate);
        self.sync.shared.rounds.fetch_add(1, Ordering::Relaxed);
        if moved > 0 {
            tracing::info!(records = moved, rate, "sync round stored records");
        }
    }
}

/// What pulling one node's records needs (all shareable across the round's
/// workers).
struct Puller<'a> {
    link: &'a vidar_link::Link,
    keys: &'a Keys,
    membership: &'a Membership,
    writer: &'a WriterHandle,
    sync: &'a Sync,
    batch: u32,
}

impl Puller<'_> {
    /// Notes a failed sync of `node` (logged on the 1st, 2nd, 4th... in a row).
    fn failed(&self, node: &NodeId, e: &SyncError) {
        let msg = e.to_string();
        let mut failures = 0;
        self.sync.update(node, |s| {
            s.failures += 1;
            failures = s.failures;
            s.last_error = Some(msg.clone());
        });
        if failures.is_power_of_two() {
            tracing::warn!(node = %node, error = %msg, failures, "sync failed; retrying next round");
        }
    }

    /// The highest seq `node` reported having written, from its status.
    fn reported_last_seq(&self, node: &NodeId) -> Option<u64> {
        self.membership
            .snapshot()
            .into_iter()
            .find(|i| &i.node == node)
            .and_then(|i| i.status)
            .map(|s| s.load.records_last_seq)
    }

    /// Pulls `node`'s records after `cursor` until it has no more; returns
    /// how many were new.
    fn sync_node(&self, node: &NodeId, cursor: u64) -> Result<u64, SyncError> {
        let mut cursor = cursor;
        let key = self.keys.sync(node);
        let mut inserted = 0u64;
        for _ in 0..MAX_REQUESTS_PER_ROUND {
            let reported = self.reported_last_seq(node);
            let req = SyncRequest {
                after_seq: cursor,
                max_records: self.batch,
                ack_through: cursor,
            };
            let batch: SyncBatch =
                self.link
                    .request(&key, &req, REQUEST_TIMEOUT)
                    .map_err(|source| SyncError::Request {
                        node: node.clone(),
                        source,
                    })?;
            if &batch.node != node {
                return Err(SyncError::WrongNode {
                    node: node.clone(),
                    from: batch.node,
                });
            }
            let mut more = batch.more;
            // The cursor never moves past what the node itself reports
            // having written (its status; nothing before its first status),
            // nor past the batch's own last seq: a forged reply with huge
            // seqs must not make the node's real records unsyncable.
            let bound = reported.map_or(cursor, |r| batch.last_seq.min(r));
            let edge_last = bound;
            // An edge may resend what the master already holds; skip it here
            // (the store would leave it unchanged anyway).
            let (records, beyond): (Vec<_>, Vec<_>) = batch
                .records
                .into_iter()
                .filter(|r| r.key.seq > cursor)
                .partition(|r| r.key.seq <= bound);
            let replied = records.len() + beyond.len();
            // Merges and corrections are the master's alone: one from an
            // edge would change every query's answer. Its seq is skipped.
            let (records, foreign): (Vec<_>, Vec<_>) =
                records.into_iter().partition(|r| !r.record.masters_only());
            if !foreign.is_empty() {
                self.sync
                    .shared
                    .masters_only
                    .fetch_add(foreign.len() as u64, Ordering::Relaxed);
                tracing::warn!(node = %node, refused = foreign.len(), kind = foreign[0].record.kind(), "sync reply holds merges or corrections, which only the master makes: not stored");
            }
            if !beyond.is_empty() {
                // Records the node wrote after its status, within what was
                // asked, are the ordinary race between the two: they wait
                // for the status that reports them. More than was asked,
                // or seqs past what was asked, is a reply the node should
                // never send (forged or broken): refused and counted.
                let asked_end = cursor.saturating_add(u64::from(req.max_records));
                let ordinary = replied <= req.max_records as usize
                    && beyond.iter().all(|r| r.key.seq <= asked_end);
                if ordinary {
                    tracing::debug!(node = %node, cursor, bound, deferred = beyond.len(), "sync reply holds records written after the node's last status: taken once a status reports them");
                } else {
                    self.sync
                        .shared
                        .beyond
                        .fetch_add(beyond.len() as u64, Ordering::Relaxed);
                    tracing::warn!(node = %node, cursor, bound, asked = req.max_records, refused = beyond.len(), claimed_last_seq = batch.last_seq, "sync reply holds records past the node's reported last seq and past what was asked: not stored");
                }
                more = false;
            }
            if let Some(first) = records.first() {
                if first.key.seq != cursor + 1 {
                    tracing::warn!(node = %node, cursor, first = first.key.seq, "sync batch skips seqs (pruned before acknowledgement?)");
                }
            }
            if edge_last < cursor {
                tracing::warn!(node = %node, cursor, edge_last_seq = edge_last, "the edge's last seq is below the master's cursor: its database was replaced or reset; its new records up to the cursor will not be synced");
            }
            let before = cursor;
            let mut new_here = 0u64;
            if !records.is_empty() {
                let report = self.writer.upsert_batch(node, records)?;
                cursor = report.cursor;
                new_here = report.inserted as u64;
                inserted += new_here;
                self.sync
                    .shared
                    .records
                    .fetch_add(report.inserted as u64, Ordering::Relaxed);
            }
            // Past the refused ones too, or they would come every round.
            if let Some(last) = foreign.last() {
                if last.key.seq > cursor {
                    cursor = self.writer.advance_cursor(node, last.key.seq)?;
                }
            }
            // Nothing more was reported: the next status says if there is.
            if reported.is_some_and(|r| cursor >= r) {
                more = false;
            }
            let ok_now = UnixMs::now();
            let at = Instant::now();
            self.sync.update(node, |s| {
                s.cursor = cursor;
                s.edge_last_seq = Some(edge_last);
                s.lag_records = Some(edge_last.saturating_sub(cursor));
                s.records += new_here;
                if !more || cursor == before {
                    s.last_success_ms = Some(ok_now);
                    s.last_success = Some(at);
                    if s.failures > 0 {
                        tracing::info!(node = %node, after_failures = s.failures, "sync reaches the node again");
                    }
                    s.failures = 0;
                    s.last_error = None;
                }
            });
            if !more || cursor == before {
                break;
            }
        }
        Ok(inserted)
    }
}
