//! Identity merges: two nodes that minted an identity each for one person are
//! reconciled by the master.
//!
//! [`MergeBook`] is the pure decision (no I/O, no clock: callers pass `now`):
//! it keeps a bounded set of recent identities ([`MAX_RECENT`], ageing out after
//! [`MAX_AGE_MS`]), and when an identity announced by node A is at least
//! `threshold` cosine-similar to a recent one minted by another node B, merges
//! the later-minted one into the earlier (ties: the smaller id). Merges always
//! point at a root: when a root is merged away, every identity that pointed at
//! it is re-pointed (and announced again), so nodes never follow chains.
//! The service ([`MergeService`]) subscribes to `keys.identities_all()`, writes
//! each merge to the global database as the master's own `Record::Merge`, and
//! publishes it on `keys.merges()`.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vidar_link::LinkError;
use vidar_protocol::messages::{IdentityAnnounce, MergeAnnounce, Merges, SplitAnnounce};
use vidar_protocol::{IdentityId, Keys, NodeId, UnixMs};
use vidar_runtime::Shutdown;
use vidar_store::{IdentityMerge, Record, WriterHandle};

/// Most recent identities compared against.
pub const MAX_RECENT: usize = 10_000;
/// Identities older than this (since last announced) are no longer compared, ms.
pub const MAX_AGE_MS: i64 = 3_600_000;
/// Most merged-away identities remembered for re-pointing (oldest forgotten first).
pub const MAX_MERGED: usize = 100_000;
/// Two identities first seen on one camera closer in time than this were two
/// people on screen together: never merged, ms.
pub const CONCURRENT_MS: u64 = 5_000;
/// Announcements waiting for the merge thread before zenoh is slowed down.
const QUEUE: usize = 4096;
/// How often the merge thread looks for nodes that came (back).
const CATCH_UP_EVERY: Duration = Duration::from_secs(2);
/// Most splits sent again to a node that came (the newest).
pub const MAX_CATCH_UP: usize = 1000;

/// The pairs operators said are different people, from the corrections
/// stored (splits in force, merges undone), newest [`MAX_APART`]: the merge
/// book starts from them, so a restart never lets an automatic merge join
/// what an operator separated.
pub fn apart_pairs(
    reader: &vidar_store::Reader,
) -> Result<Vec<(IdentityId, IdentityId)>, vidar_store::StoreError> {
    use vidar_store::CorrectionAction::{Merge, Split};
    let trail = reader.corrections(None, UnixMs(i64::MIN), UnixMs(i64::MAX), MAX_APART)?;
    Ok(trail
        .iter()
        .filter_map(|a| match (&a.correction.action, a.reverted) {
            (Split { from, into, .. }, false) | (Merge { from, into }, true) => {
                Some((*from, *into))
            }
            _ => None,
        })
        .collect())
}

/// The splits in force of `node`'s sightings, newest `limit`, as announced:
/// what a node that was down when they were made still has to learn.
pub fn splits_of(
    reader: &vidar_store::Reader,
    node: &NodeId,
    limit: usize,
) -> Result<Vec<SplitAnnounce>, vidar_store::StoreError> {
    let mut out = Vec::new();
    // Reverts are in the trail too; ask for more than `limit` to have enough.
    for a in reader.corrections(
        None,
        UnixMs(i64::MIN),
        UnixMs(i64::MAX),
        limit.saturating_mul(4),
    )? {
        if out.len() >= limit {
            break;
        }
        let vidar_store::CorrectionAction::Split {
            sighting,
            from,
            into,
        } = &a.correction.action
        else {
            continue;
        };
        if a.reverted || &sighting.node != node {
            continue;
        }
        if let Some(s) = reader.sighting(sighting)? {
            out.push(SplitAnnounce {
                sighting: sighting.clone(),
                camera: s.value.camera,
                track: s.value.track,
                first_ms: s.value.first_ms,
                last_ms: s.value.last_ms,
                from: *from,
                into: *into,
                decided_ms: a.correction.decided_ms,
            });
        }
    }
    Ok(out)
}

#[derive(Debug, Clone)]
struct Recent {
    identity: IdentityId,
    node: NodeId,
    /// Tag of the model that made the embedding: only equal tags are compared.
    model: String,
    /// Where and when it was first seen (announced).
    camera: vidar_protocol::CameraId,
    seen_ms: UnixMs,
    /// L2-normalised.
    embedding: Vec<f32>,
    received_ms: UnixMs,
}

/// The merge decisions, pure and deterministic.
#[derive(Debug)]
pub struct MergeBook {
    threshold: f32,
    recent: VecDeque<Recent>,
    /// Merged-away identity -> its root.
    merged: HashMap<IdentityId, IdentityId>,
    /// Merged-away identities in merge order, to bound `merged`.
    merged_order: VecDeque<IdentityId>,
    /// Earliest time each identity was seen (ms), to pick the merge target.
    first_seen: HashMap<IdentityId, UnixMs>,
    /// The nodes that minted the identities of each root's cluster.
    minted_by: HashMap<IdentityId, BTreeSet<NodeId>>,
    /// Roots an operator said are different people, both ways.
    apart: HashMap<IdentityId, BTreeSet<IdentityId>>,
}

/// Most identities kept apart by operators' corrections.
pub const MAX_APART: usize = 100_000;

/// An operator's correction, handed to the merge thread by the API (the
/// correction itself is already stored).
#[derive(Debug, Clone)]
pub enum Operator {
    /// Identities `from` and `into` are one person: joined here and on the
    /// nodes (whose galleries fold `from`'s views into `into`).
    Merge {
        /// The identity merged away.
        from: IdentityId,
        /// The identity it joins.
        into: IdentityId,
    },
    /// A sighting split off an identity: the two are kept apart here, and
    /// the node that recorded it learns the split-off person.
    Split(SplitAnnounce),
    /// An operator's merge undone: the two are kept apart from now on.
    KeepApart(IdentityId, IdentityId),
}

fn normalise(v: &[f32]) -> Option<Vec<f32>> {
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if !(norm.is_finite() && norm > 0.0) {
        return None;
    }
    Some(v.iter().map(|x| (f64::from(*x) / norm) as f32).collect())
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl MergeBook {
    /// A book merging at cosine similarity `threshold` or above.
    pub fn new(threshold: f64) -> MergeBook {
        MergeBook {
            threshold: threshold as f32,
            recent: VecDeque::new(),
            merged: HashMap::new(),
            merged_order: VecDeque::new(),
            first_seen: HashMap::new(),
            minted_by: HashMap::new(),
            apart: HashMap::new(),
        }
    }

    /// Whether an operator said roots `a` and `b` are different people.
    pub fn kept_apart(&self, a: IdentityId, b: IdentityId) -> bool {
        self.apart.get(&a).is_some_and(|s| s.contains(&b))
    }

    /// From now on, `a` and `b` (and whatever joins them) are never merged
    /// here. Two identities already one stay one (an operator merge undone
    /// is not unmerged on the nodes).
    pub fn keep_apart(&mut self, a: IdentityId, b: IdentityId) {
        let (a, b) = (self.root(a), self.root(b));
        if a == b {
            return;
        }
        if self.apart.len() >= MAX_APART {
            tracing::warn!(a = %a, b = %b, "too many identities kept apart: not remembered");
            return;
        }
        self.apart.entry(a).or_default().insert(b);
        self.apart.entry(b).or_default().insert(a);
    }

    /// An operator's merge of `from` into `into`: their roots join (the
    /// operator's direction wins). Returns the merges for the nodes (empty
    /// when they were one already).
    pub fn operator_merge(
        &mut self,
        from: IdentityId,
        into: IdentityId,
        now_ms: UnixMs,
    ) -> Vec<MergeAnnounce> {
        let (from, into) = (self.root(from), self.root(into));
        if from == into {
            return Vec::new();
        }
        if let Some(s) = self.apart.get_mut(&from) {
            s.remove(&into);
        }
        if let Some(s) = self.apart.get_mut(&into) {
            s.remove(&from);
        }
        self.join(into, from, now_ms)
    }

    /// The identity `id` is now known as (itself unless merged away).
    pub fn root(&self, id: IdentityId) -> IdentityId {
        self.merged.get(&id).copied().unwrap_or(id)
    }

    fn first(&self, id: IdentityId) -> UnixMs {
        self.first_seen.get(&id).copied().unwrap_or(UnixMs::MAX)
    }

    /// The comparison window: identities held (at most [`MAX_RECENT`], none
    /// older than [`MAX_AGE_MS`]) and the heap their entries take, bytes
    /// (embeddings, names and the entry itself). It fills for an hour after
    /// start, then stays.
    pub fn window(&self) -> (usize, usize) {
        let bytes = self
            .recent
            .iter()
            .map(|r| {
                std::mem::size_of::<Recent>()
                    + r.embedding.capacity() * std::mem::size_of::<f32>()
                    + r.model.capacity()
                    + r.node.as_str().len()
                    + r.camera.as_str().len()
            })
            .sum();
        (self.recent.len(), bytes)
    }

    fn age_out(&mut self, now_ms: UnixMs) {
        while let Some(front) = self.recent.front() {
            if self.recent.len() > MAX_RECENT || now_ms - front.received_ms > MAX_AGE_MS {
                if let Some(old) = self.recent.pop_front() {
                    if !self.merged.contains_key(&old.identity)
                        && !self.recent.iter().any(|r| r.identity == old.identity)
                    {
                        self.first_seen.remove(&old.identity);
                        if !self.merged.values().any(|r| *r == old.identity) {
                            self.minted_by.remove(&old.identity);
                        }
                    }
                }
            } else {
                break;
            }
        }
    }

    /// Takes in an announcement received at `now_ms`; returns the merges it
    /// decides (empty, or the main merge followed by re-pointed ones).
    pub fn observe(&mut self, a: &IdentityAnnounce, now_ms: UnixMs) -> Vec<MergeAnnounce> {
        self.age_out(now_ms);
        let Some(embedding) = normalise(&a.embedding) else {
            return Vec::new();
        };
        let seen = self.first_seen.entry(a.identity).or_insert(a.seen_ms);
        *seen = (*seen).min(a.seen_ms);
        let me = self.root(a.identity);
        self.minted_by.entry(me).or_default().insert(a.node.clone());
        let empty = BTreeSet::new();
        let mine = self.minted_by.get(&me).unwrap_or(&empty);
        // Best match among other nodes' identities not already one with this,
        // never joining two clusters that share a minting node (that node's
        // own gallery already judged them different people).
        let mut best: Option<(f32, IdentityId)> = None;
        for r in &self.recent {
            if r.node == a.node || r.embedding.len() != embedding.len() || r.model != a.model {
                continue;
            }
            // The nodes' own rule: two people on one camera at once are two.
            if r.camera == a.camera && r.seen_ms.abs_diff(a.seen_ms) < CONCURRENT_MS {
                continue;
            }
            let other = self.root(r.identity);
            if other == me {
                continue;
            }
            let theirs = self.minted_by.get(&other).unwrap_or(&empty);
            if !mine.is_disjoint(theirs) || self.kept_apart(me, other) {
                continue;
            }
            let s = dot(&embedding, &r.embedding);
            let better = match best {
                None => true,
                Some((bs, bid)) => s > bs || (s == bs && other < bid),
            };
            if better {
                best = Some((s, other));
            }
        }
        // Refresh this identity's entry (one per identity, newest last).
        self.recent.retain(|r| r.identity != a.identity);
        self.recent.push_back(Recent {
            identity: a.identity,
            node: a.node.clone(),
            model: a.model.clone(),
            camera: a.camera.clone(),
            seen_ms: a.seen_ms,
            embedding,
            received_ms: now_ms,
        });
        self.age_out(now_ms);
        match best {
            Some((s, other)) if s >= self.threshold => self.merge(me, other, now_ms),
            _ => Vec::new(),
        }
    }

    /// Merges roots `x` and `y`: the later-minted into the earlier.
    fn merge(&mut self, x: IdentityId, y: IdentityId, now_ms: UnixMs) -> Vec<MergeAnnounce> {
        let key = |id: IdentityId| (self.first(id), id);
        let (into, from) = if key(x) <= key(y) { (x, y) } else { (y, x) };
        self.join(into, from, now_ms)
    }

    /// Root `from` joins root `into`; every identity pointing at `from` is
    /// re-pointed (the main merge first, then those, for the nodes).
    fn join(&mut self, into: IdentityId, from: IdentityId, now_ms: UnixMs) -> Vec<MergeAnnounce> {
        let decided_ms = now_ms;
        let mut out = vec![MergeAnnounce {
            from,
            into,
            decided_ms,
        }];
        let children: Vec<IdentityId> = self
            .merged
            .iter()
            .filter(|(_, root)| **root == from)
            .map(|(id, _)| *id)
            .collect();
        let mut children = children;
        children.sort();
        for c in children {
            self.merged.insert(c, into);
            out.push(MergeAnnounce {
                from: c,
                into,
                decided_ms,
            });
        }
        self.merged.insert(from, into);
        self.merged_order.push_back(from);
        if let Some(nodes) = self.minted_by.remove(&from) {
            self.minted_by.entry(into).or_default().extend(nodes);
        }
        if let Some(others) = self.apart.remove(&from) {
            for o in &others {
                if let Some(s) = self.apart.get_mut(o) {
                    s.remove(&from);
                    s.insert(into);
                }
            }
            self.apart.entry(into).or_default().extend(others);
        }
        let first = self.first(from).min(self.first(into));
        self.first_seen.insert(into, first);
        while self.merged_order.len() > MAX_MERGED {
            if let Some(old) = self.merged_order.pop_front() {
                self.merged.remove(&old);
            }
        }
        out
    }
}

/// Counters of the merge service.
#[derive(Debug, Default)]
pub struct MergeCounters {
    /// Identity announcements taken in.
    pub announcements: AtomicU64,
    /// Merges decided (re-pointings included).
    pub merges: AtomicU64,
    /// Merges that could not be stored or published.
    pub failures: AtomicU64,
    /// Announcements refused: put under another node's key.
    pub refused: AtomicU64,
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
        let subscription = self.link.subscribe::<IdentityAnnounce>(
            &self.keys.identities_all(),
            move |key, a| {
                // Fails only once the thread is gone (the master stopping).
                let _ = tx.send(Input::Announce(key.to_owned(), a));
            },
        )?;
        let publisher = self.link.publisher::<Merges>(&self.keys.merges())?;
        let splits = self.link.publisher::<SplitAnnounce>(&self.keys.merges())?;
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
                            self.correct(&mut book, op, &publisher, &splits);
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

    /// Applies an operator's correction to the book and tells the nodes.
    fn correct(
        &self,
        book: &mut MergeBook,
        op: Operator,
        publisher: &vidar_link::Publisher<Merges>,
        splits: &vidar_link::Publisher<SplitAnnounce>,
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
            Operator::KeepApart(a, b) => book.keep_apart(a, b),
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

#[cfg(test)]
#[path = "merges_tests.rs"]
mod tests;
