//! The writer thread: receives messages, batches writes, runs the transactions.
//! Owns the only read-write connection; never shares it.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, ErrorCode, OptionalExtension, TransactionBehavior};
use vidar_protocol::{NodeId, UnixMs};

use crate::error::{sqlite, StoreError};
use crate::record::RecordKey;
use crate::rows::{self, Prepared, TABLES};
use crate::writer::{FlushReport, PruneReport, Shared, UpsertReport};

/// Attempts at committing one batch before the writer gives up.
const COMMIT_ATTEMPTS: u32 = 5;
/// Backoff before the second attempt; doubles each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

type Reply<T> = SyncSender<Result<T, String>>;

/// A message to the writer thread.
#[derive(Debug)]
pub(crate) enum Msg {
    Write {
        rec: Prepared,
        ack: Option<Reply<RecordKey>>,
    },
    Flush {
        reply: Reply<FlushReport>,
    },
    Upsert {
        peer: NodeId,
        records: Vec<(u64, Prepared)>,
        reply: Reply<UpsertReport>,
    },
    AdvanceCursor {
        peer: NodeId,
        seq: u64,
        reply: Reply<u64>,
    },
    Prune {
        up_to: i64,
        cutoff_ms: UnixMs,
        reply: Reply<PruneReport>,
    },
    Shutdown {
        reply: Reply<()>,
    },
}

struct PendingWrite {
    rec: Prepared,
    ack: Option<Reply<RecordKey>>,
}

pub(crate) struct Worker {
    conn: Connection,
    shared: Arc<Shared>,
    max_batch: usize,
    max_delay: Duration,
    batch: Vec<PendingWrite>,
}

fn transient(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
        )
    )
}

impl Worker {
    /// Makes sure this node has a seq counter and that it is above every stored seq of the node.
    pub fn new(
        mut conn: Connection,
        shared: Arc<Shared>,
        max_batch: usize,
        max_delay: Duration,
    ) -> Result<Worker, StoreError> {
        let path = shared.path.clone();
        let node = shared.node.as_str();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite(&path, "starting the seq check"))?;
        tx.execute(
            "INSERT INTO node_seq (node_id, next_seq) VALUES (?1, 1) ON CONFLICT (node_id) DO NOTHING",
            [node],
        )
        .map_err(sqlite(&path, "creating the seq counter"))?;
        let mut max_stored = 0i64;
        for t in TABLES {
            let m: Option<i64> = tx
                .query_row(
                    &format!("SELECT max(seq) FROM {} WHERE node_id = ?1", t.name),
                    [node],
                    |r| r.get(0),
                )
                .map_err(sqlite(&path, "reading the highest stored seq"))?;
            max_stored = max_stored.max(m.unwrap_or(0));
        }
        let next: i64 = tx
            .query_row(
                "SELECT next_seq FROM node_seq WHERE node_id = ?1",
                [node],
                |r| r.get(0),
            )
            .map_err(sqlite(&path, "reading the seq counter"))?;
        if next <= max_stored {
            // Only a hand-edited file gets here; never reuse a seq regardless.
            tracing::warn!(path = %path.display(), next, max_stored, "seq counter behind stored records; moved past them");
            tx.execute(
                "UPDATE node_seq SET next_seq = ?2 WHERE node_id = ?1",
                params![node, max_stored + 1],
            )
            .map_err(sqlite(&path, "moving the seq counter"))?;
        }
        tx.commit()
            .map_err(sqlite(&path, "committing the seq check"))?;
        shared.last_seq.store(
            u64::try_from(next.max(max_stored + 1) - 1).unwrap_or(0),
            Ordering::Relaxed,
        );
        Ok(Worker {
            conn,
            shared,
            max_batch,
            max_delay,
            batch: Vec::new(),
        })
    }

    /// The thread's body: runs until shutdown, until every handle is gone, or a fatal error.
    pub fn run(mut self, rx: Receiver<Msg>) {
        let mut deadline = Instant::now();
        loop {
            let msg = if self.batch.is_empty() {
                match rx.recv() {
                    Ok(m) => m,
                    Err(_) => break,
                }
            } else {
                match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => {
                        if self.commit_batch().is_err() {
                            return;
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => {
                        let _ = self.commit_batch();
                        break;
                    }
                }
            };
            self.shared.queued.fetch_sub(1, Ordering::Relaxed);
            if let Msg::Write { rec, ack } = msg {
                if self.batch.is_empty() {
                    deadline = Instant::now() + self.max_delay;
                }
                self.batch.push(PendingWrite { rec, ack });
                if self.batch.len() >= self.max_batch && self.commit_batch().is_err() {
                    return;
                }
                continue;
            }
            // Every other message sees all writes queued before it committed.
            if let Err(reason) = self.commit_batch() {
                reply_err(msg, &reason);
                return;
            }
            match msg {
                Msg::Write { .. } => {}
                Msg::Flush { reply } => {
                    let _ = reply.send(Ok(FlushReport {
                        last_seq: self.shared.last_seq.load(Ordering::Relaxed),
                        records: self.shared.records.load(Ordering::Relaxed),
                    }));
                }
                Msg::Upsert {
                    peer,
                    records,
                    reply,
                } => {
                    let r =
                        self.with_retries("upserting a peer batch", |w| w.upsert(&peer, &records));
                    let _ = reply.send(r);
                }
                Msg::AdvanceCursor { peer, seq, reply } => {
                    let r = self.with_retries("advancing a cursor", |w| w.advance(&peer, seq));
                    let _ = reply.send(r);
                }
                Msg::Prune {
                    up_to,
                    cutoff_ms,
                    reply,
                } => {
                    let r = self.with_retries("pruning", |w| w.prune(up_to, cutoff_ms));
                    let _ = reply.send(r);
                }
                Msg::Shutdown { reply } => {
                    let _ = reply.send(Ok(()));
                    break;
                }
            }
        }
        // Housekeeping SQLite recommends before closing a long-lived connection.
        if let Err(e) = self.conn.execute_batch("PRAGMA optimize") {
            tracing::warn!(path = %self.shared.path.display(), error = %e, "PRAGMA optimize failed at writer stop");
        }
        tracing::debug!(path = %self.shared.path.display(), "store writer stopped");
        self.set_stopped("the writer was shut down".to_string());
    }

    fn set_stopped(&self, reason: String) {
        if let Ok(mut g) = self.shared.stopped.lock() {
            g.get_or_insert(reason);
        }
    }

    /// Runs `f` (one transaction) with backoff on transient errors; the error text otherwise.
    fn with_retries<T>(
        &mut self,
        what: &str,
        mut f: impl FnMut(&mut Self) -> rusqlite::Result<T>,
    ) -> Result<T, String> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            match f(self) {
                Ok(v) => return Ok(v),
                Err(e) if transient(&e) && attempt < COMMIT_ATTEMPTS => {
                    tracing::warn!(path = %self.shared.path.display(), attempt, error = %e, what, "store transaction failed; retrying");
                    std::thread::sleep(backoff);
                    backoff *= 2;
                    attempt += 1;
                }
                Err(e) => return Err(format!("{what}: {e}")),
            }
        }
    }

    /// Commits the pending batch and acknowledges it. On final failure the
    /// writer is done: every waiting caller gets the reason.
    fn commit_batch(&mut self) -> Result<(), String> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        match self.with_retries("committing a batch", |w| w.insert_batch(&batch)) {
            Ok(first) => {
                let n = batch.len() as u64;
                self.shared.records.fetch_add(n, Ordering::Relaxed);
                self.shared.batches.fetch_add(1, Ordering::Relaxed);
                self.shared.last_seq.store(first + n - 1, Ordering::Relaxed);
                for (k, w) in batch.into_iter().enumerate() {
                    if let Some(ack) = w.ack {
                        let _ = ack.send(Ok(RecordKey {
                            node: self.shared.node.clone(),
                            seq: first + k as u64,
                        }));
                    }
                }
                Ok(())
            }
            Err(reason) => {
                tracing::error!(path = %self.shared.path.display(), records = batch.len(), error = %reason, "store writer failed; stopping");
                self.set_stopped(reason.clone());
                for w in batch {
                    if let Some(ack) = w.ack {
                        let _ = ack.send(Err(reason.clone()));
                    }
                }
                Err(reason)
            }
        }
    }

    /// One transaction: reads the counter, inserts under consecutive seqs, advances it.
    /// Returns the first seq used.
    fn insert_batch(&mut self, batch: &[PendingWrite]) -> rusqlite::Result<u64> {
        let node = &self.shared.node;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let first: i64 = tx
            .prepare_cached("SELECT next_seq FROM node_seq WHERE node_id = ?1")?
            .query_row([node.as_str()], |r| r.get(0))?;
        let mut seq = first;
        for w in batch {
            if rows::insert(&tx, node, seq, &w.rec)? != 1 {
                // A seq from the counter already used: refuse rather than lose the record.
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT),
                    Some(format!(
                        "seq {seq} of {node} already used; counter is behind"
                    )),
                ));
            }
            seq += 1;
        }
        tx.prepare_cached("UPDATE node_seq SET next_seq = ?2 WHERE node_id = ?1")?
            .execute(params![node.as_str(), seq])?;
        tx.commit()?;
        Ok(u64::try_from(first).unwrap_or(0))
    }

    fn upsert(
        &mut self,
        peer: &NodeId,
        records: &[(u64, Prepared)],
    ) -> rusqlite::Result<UpsertReport> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut inserted = 0;
        let mut max_seq = 0u64;
        for (seq, p) in records {
            let s = rows::seq_to_sql(*seq).unwrap_or(i64::MAX);
            inserted += rows::insert(&tx, peer, s, p)?;
            max_seq = max_seq.max(*seq);
        }
        let cursor = advance_in(&tx, peer, max_seq)?;
        tx.commit()?;
        self.shared
            .records
            .fetch_add(inserted as u64, Ordering::Relaxed);
        self.shared.batches.fetch_add(1, Ordering::Relaxed);
        Ok(UpsertReport {
            inserted,
            already_present: records.len() - inserted,
            cursor,
        })
    }

    fn advance(&mut self, peer: &NodeId, seq: u64) -> rusqlite::Result<u64> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let cursor = advance_in(&tx, peer, seq)?;
        tx.commit()?;
        Ok(cursor)
    }

    fn prune(&mut self, up_to: i64, cutoff_ms: UnixMs) -> rusqlite::Result<PruneReport> {
        let node = self.shared.node.as_str();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut deleted = 0;
        for t in TABLES.iter().filter(|t| t.prunable) {
            // Table and column names are constants of this crate; values are bound.
            deleted += tx.execute(
                &format!(
                    "DELETE FROM {} WHERE node_id = ?1 AND seq <= ?2 AND {} < ?3",
                    t.name, t.time_column
                ),
                params![node, up_to, cutoff_ms],
            )?;
        }
        tx.commit()?;
        if deleted > 0 {
            // Give the freed pages back to the file system (auto_vacuum = INCREMENTAL).
            self.conn.execute_batch("PRAGMA incremental_vacuum")?;
        }
        Ok(PruneReport { deleted })
    }
}

/// Sets `peer`'s cursor to `seq` if that is higher; returns the cursor.
fn advance_in(conn: &Connection, peer: &NodeId, seq: u64) -> rusqlite::Result<u64> {
    let s = rows::seq_to_sql(seq).unwrap_or(i64::MAX);
    conn.prepare_cached(
        "INSERT INTO sync_cursors (peer, acked_seq, updated_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (peer) DO UPDATE SET acked_seq = excluded.acked_seq, updated_ms = excluded.updated_ms
         WHERE excluded.acked_seq > sync_cursors.acked_seq",
    )?
    .execute(params![peer.as_str(), s, UnixMs::now()])?;
    let cursor: Option<i64> = conn
        .prepare_cached("SELECT acked_seq FROM sync_cursors WHERE peer = ?1")?
        .query_row([peer.as_str()], |r| r.get(0))
        .optional()?;
    Ok(cursor.and_then(|c| u64::try_from(c).ok()).unwrap_or(0))
}

fn reply_err(msg: Msg, reason: &str) {
    let r = reason.to_string();
    match msg {
        Msg::Write { ack, .. } => {
            if let Some(a) = ack {
                let _ = a.send(Err(r));
            }
        }
        Msg::Flush { reply } => drop(reply.send(Err(r))),
        Msg::Upsert { reply, .. } => drop(reply.send(Err(r))),
        Msg::AdvanceCursor { reply, .. } => drop(reply.send(Err(r))),
        Msg::Prune { reply, .. } => drop(reply.send(Err(r))),
        Msg::Shutdown { reply } => drop(reply.send(Err(r))),
    }
}
