//! The merge service: the thread that feeds nodes' identity announcements
//! and operators' corrections to the [`MergeBook`], stores each merge as the
//! master's own record and publishes it; sends a node that comes (back) the
//! splits of its sightings.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vidar_link::LinkError;
use vidar_protocol::messages::{
    IdentityAnnounce, IdentityJoined, KeepApart, MergeAnnounce, Merges, SplitAnnounce,
};
use vidar_protocol::MessageKind;
use vidar_protocol::{Keys, NodeId, UnixMs};
use vidar_runtime::Shutdown;
use vidar_store::{IdentityMerge, Record, WriterHandle};

use crate::merges::{apart_pairs, splits_of, MergeBook, Operator, MAX_CATCH_UP};

/// Announcements waiting for the merge thread before zenoh is slowed down.
const QUEUE: usize = 4096;
/// How often the merge thread looks for nodes that came (back).
const CATCH_UP_EVERY: Duration = Duration::from_secs(2);

/// Counters of the merge service.
#[derive(Debug, Default)]
pub struct MergeCounters {
    /// Identity announcements taken in.
    pub announcements: AtomicU64,
    /// Merges decided (re-pointings included).
    pub merges: AtomicU64,
    /// Merges that could not be stored or published.
    pub failures: AtomicU64,
    /// Announcements and joins refused: put under another node's key, or a
    /// join of an identity the node did not mint or an operator separated.
    pub refused: AtomicU64,
    /// Nodes' joins of their own mints to known identities, taken.
    pub joins: AtomicU64,
    /// Identities in the comparison window now ([`MergeBook::window`]).
    pub window: AtomicU64,
    /// Heap the window's entries hold, bytes (approximate).
    pub window_bytes: AtomicU64,
}

/// What the merge service needs to run.
#[derive(Debug)]
pub struct MergeService {
    /// The site link.
    pub link: vidar_link::Link,
    /// The site's keys.
    pub keys: Keys,
    /// The global database's writer (merges are the master's own records).
    pub writer: WriterHandle,
    /// Cosine threshold.
    pub threshold: f64,
    /// Counters shared with the API.
    pub counters: Arc<MergeCounters>,
    /// Who is reachable: a node that comes (back) is sent the splits of its
    /// sightings in force, so one that was down when they were made learns
    /// them ([`splits_of`]).
    pub membership: crate::membership::Membership,
    /// The global database (read for those splits).
    pub database: std::path::PathBuf,
    /// Triggered to stop the service (with an [`Input::Stop`] to wake it).
    pub stop: Shutdown,
}

/// What the merge thread takes in, one at a time, in arrival order.
#[derive(Debug)]
pub enum Input {
    /// A node announced an identity it minted, under this key.
    Announce(String, IdentityAnnounce),
    /// A node joined an identity it minted to a known one, under this key.
    Joined(String, IdentityJoined),
    /// An operator's correction, already stored.
    Operator(Operator),
    /// The master is stopping.
    Stop,
}

/// The merge thread's inbox. Bounded: announcements that arrive faster than
/// the book takes them wait in zenoh's delivery (as its FIFO handler did),
/// and a correction waits for room; nothing is dropped.
pub fn inbox() -> (SyncSender<Input>, Receiver<Input>) {
    mpsc::sync_channel(QUEUE)
}

impl MergeService {
    /// Subscribes to identity announcements and runs the service on its own
    /// thread, taking [`inbox`]'s receiver: operators' corrections (already
    /// stored, from the API) and the master's stop come through its sender,
    /// nodes' announcements through the subscription, in arrival order.
    pub fn spawn(
        self,
        (tx, inbox): (SyncSender<Input>, Receiver<Input>),
    ) -> Result<JoinHandle<()>, LinkError> {
        let subscription =
            self.link
                .subscribe_any(&self.keys.identities_all(), move |payload| {
                    // A send fails only once the thread is gone (the master stopping).
                    let key = payload.key().to_owned();
                    match payload.kind() {
                        Some(MessageKind::IdentityJoined) => {
                            if let Some(j) = payload.decode::<IdentityJoined>() {
                                let _ = tx.send(Input::Joined(key, j));
                            }
                        }
                        // Where an identity is seen is for the other nodes.
                        Some(MessageKind::IdentitySeen) | None => {}
                        Some(_) => {
                            if let Some(a) = payload.decode::<IdentityAnnounce>() {
                                let _ = tx.send(Input::Announce(key, a));
                            }
                        }
                    }
                })?;
        let publisher = self.link.publisher::<Merges>(&self.keys.merges())?;
        let splits = self.link.publisher::<SplitAnnounce>(&self.keys.merges())?;
        let apart = self.link.publisher::<KeepApart>(&self.keys.merges())?;
        let thread = std::thread::Builder::new()
            .name("vidar-merges".into())
            .spawn(move || {
                let mut book = MergeBook::new(self.threshold);
                match vidar_store::Reader::open(&self.database).and_then(|r| apart_pairs(&r)) {
                    Ok(pairs) => {
                        for (a, b) in pairs {
                            book.keep_apart(a, b);
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "reading the operators' corrections: identities they separated may be merged again"),
                }
                let mut reachable: BTreeSet<NodeId> = BTreeSet::new();
                let mut looked = Instant::now();
                while !self.stop.is_triggered() {
                    if looked.elapsed() >= CATCH_UP_EVERY {
                        looked = Instant::now();
                        let now: BTreeSet<NodeId> =
                            self.membership.reachable().into_iter().collect();
                        for node in now.difference(&reachable) {
                            self.catch_up(node, &splits);
                        }
                        reachable = now;
                    }
                    // Sleeps until something arrives, the stop included, or
                    // the next look for nodes that came.
                    let wait = CATCH_UP_EVERY.saturating_sub(looked.elapsed());
                    let (key, a) = match inbox.recv_timeout(wait) {
                        Ok(Input::Announce(key, a)) => (key, a),
                        Ok(Input::Operator(op)) => {
                            self.correct(&mut book, op, &publisher, &splits, &apart);
                            continue;
                        }
                        Ok(Input::Joined(key, j)) => {
                            self.joined(&mut book, &key, &j, &publisher);
                            continue;
                        }
                        Ok(Input::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                        Err(RecvTimeoutError::Timeout) => continue,
                    };
                    // Only the node the key names announces its mints (under
                    // a bundle, the ACL lets a node put only under its own
                    // name).
                    if !self.keys.identities_of(&key, &a.node) {
                        self.counters.refused.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(key, node = %a.node, "identity announced under another node's key");
                        continue;
                    }
                    self.counters.announcements.fetch_add(1, Ordering::Relaxed);
                    let merges = book.observe(&a, UnixMs::now());
                    let (held, bytes) = book.window();
                    self.counters.window.store(held as u64, Ordering::Relaxed);
                    self.counters.window_bytes.store(bytes as u64, Ordering::Relaxed);
                    if !merges.is_empty() {
                        self.apply(&publisher, merges);
                    }
                }
                drop(subscription);
            })
            .map_err(|e| LinkError::Declare {
                what: "the merge thread".into(),
                reason: e.to_string(),
            })?;
        Ok(thread)
    }

    /// Takes a node's join of its own mint (only under its own key), stores
    /// and publishes the merges it makes.
    fn joined(
        &self,
        book: &mut MergeBook,
        key: &str,
        j: &IdentityJoined,
        publisher: &vidar_link::Publisher<Merges>,
    ) {
        if !self.keys.identities_of(key, &j.node) {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(key, node = %j.node, "a join put under another node's key");
            return;
        }
        match book.node_join(j, UnixMs::now()) {
            Ok(merges) => {
                self.counters.joins.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(node = %j.node, from = %j.from, into = %j.into, merges = merges.len(), "a node joined its mint to a known identity");
                if !merges.is_empty() {
                    self.apply(publisher, merges);
                }
            }
            Err(why) => {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(node = %j.node, from = %j.from, into = %j.into, %why, "a node's join not taken");
            }
        }
    }

    /// Applies an operator's correction to the book and tells the nodes.
    fn correct(
        &self,
        book: &mut MergeBook,
        op: Operator,
        publisher: &vidar_link::Publisher<Merges>,
        splits: &vidar_link::Publisher<SplitAnnounce>,
        apart: &vidar_link::Publisher<KeepApart>,
    ) {
        match op {
            Operator::Merge { from, into } => {
                let merges = book.operator_merge(from, into, UnixMs::now());
                if !merges.is_empty() {
                    self.publish(publisher, merges);
                }
            }
            Operator::Split(s) => {
                book.keep_apart(s.from, s.into);
                if let Err(e) = splits.put(&s) {
                    self.counters.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "publishing a split");
                }
            }
            Operator::KeepApart(from, into) => {
                book.keep_apart(from, into);
                // The nodes' galleries joined them when the merge was made:
                // they take `from` apart again, from its last recorded view.
                let view = vidar_store::Reader::open(&self.database)
                    .and_then(|r| r.identity_records(from))
                    .map(|mut records| {
                        records.pop().map(|r| IdentityAnnounce {
                            identity: from,
                            node: r.key.node,
                            camera: r.value.camera,
                            seen_ms: r.value.first_seen_ms,
                            embedding: r.value.embedding,
                            model: r.value.model,
                        })
                    })
                    .unwrap_or_else(|e| {
                        tracing::warn!(identity = %from, error = %e, "reading the view of an identity kept apart: the nodes only forget the merge");
                        None
                    });
                let k = KeepApart {
                    from,
                    into,
                    view,
                    decided_ms: UnixMs::now(),
                };
                if let Err(e) = apart.put(&k) {
                    self.counters.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "publishing an undone merge");
                }
            }
        }
    }

    /// Sends `node` the splits in force of its sightings (newest
    /// [`MAX_CATCH_UP`]); the node learns each once.
    fn catch_up(&self, node: &NodeId, splits: &vidar_link::Publisher<SplitAnnounce>) {
        let found = vidar_store::Reader::open(&self.database)
            .and_then(|r| splits_of(&r, node, MAX_CATCH_UP));
        match found {
            Ok(list) => {
                if !list.is_empty() {
                    tracing::info!(node = %node, splits = list.len(), "a node came: its sightings' splits sent again");
                }
                for s in list {
                    if let Err(e) = splits.put(&s) {
                        tracing::warn!(error = %e, "publishing a split");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(node = %node, error = %e, "reading the splits of a node's sightings")
            }
        }
    }

    fn publish(&self, publisher: &vidar_link::Publisher<Merges>, merges: Vec<MergeAnnounce>) {
        self.counters
            .merges
            .fetch_add(merges.len() as u64, Ordering::Relaxed);
        if let Err(e) = publisher.put(&Merges { merges }) {
            self.counters.failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "publishing merges");
        }
    }

    fn apply(&self, publisher: &vidar_link::Publisher<Merges>, merges: Vec<MergeAnnounce>) {
        for m in &merges {
            tracing::info!(from = %m.from, into = %m.into, "identities merged");
            let record = Record::Merge(IdentityMerge {
                from: m.from,
                into: m.into,
                decided_ms: m.decided_ms,
            });
            if let Err(e) = self.writer.write(record) {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, from = %m.from, into = %m.into, "storing a merge");
            }
        }
        self.publish(publisher, merges);
    }
}
