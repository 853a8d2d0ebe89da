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
//! The service (`crate::merge_service::MergeService`) subscribes to `keys.identities_all()`, writes
//! each merge to the global database as the master's own `Record::Merge`, and
//! publishes it on `keys.merges()`.

use std::collections::{BTreeSet, HashMap, VecDeque};

use vidar_protocol::messages::{IdentityAnnounce, IdentityJoined, MergeAnnounce, SplitAnnounce};
use vidar_protocol::{IdentityId, NodeId, UnixMs};

/// Most recent identities compared against.
pub const MAX_RECENT: usize = 10_000;
/// Identities older than this (since last announced) are no longer compared, ms.
pub const MAX_AGE_MS: i64 = 3_600_000;
/// Most merged-away identities remembered for re-pointing (oldest forgotten first).
pub const MAX_MERGED: usize = 100_000;
/// Two identities first seen on one camera closer in time than this were two
/// people on screen together: never merged, ms.
pub const CONCURRENT_MS: u64 = 5_000;
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
    let trail = reader.corrections(None, UnixMs::MIN, UnixMs::MAX, MAX_APART)?;
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
    for a in reader.corrections(None, UnixMs::MIN, UnixMs::MAX, limit.saturating_mul(4))? {
        if out.len() >= limit {
            break;
        }
        let vidar_store::CorrectionAction::Split {
            sighting,
            from,
            into,
            scope,
        } = &a.correction.action
        else {
            continue;
        };
        if a.reverted || &sighting.node != node {
            continue;
        }
        if let Some(s) = reader.sighting(sighting)? {
            let moved = moved_by(reader, &s, *scope)?;
            let (first_ms, last_ms) = extent(&s, &moved);
            out.push(SplitAnnounce {
                sighting: sighting.clone(),
                camera: s.value.camera,
                track: s.value.track,
                first_ms,
                last_ms,
                from: *from,
                into: *into,
                decided_ms: a.correction.decided_ms,
            });
        }
    }
    Ok(out)
}

/// What a split of the sighting `s` with `scope` moves: the sighting, or
/// every piece of its track recorded so far (pieces recorded later follow
/// by the same rule, the store's `split_pieces`).
pub(crate) fn moved_by(
    reader: &vidar_store::Reader,
    s: &vidar_store::Stored<vidar_store::Sighting>,
    scope: vidar_store::SplitScope,
) -> Result<Vec<vidar_store::Span>, vidar_store::StoreError> {
    Ok(match scope {
        vidar_store::SplitScope::Sighting => vec![vidar_store::Span {
            key: s.key.clone(),
            identity: s.value.identity,
            camera: s.value.camera.clone(),
            first_ms: s.value.first_ms,
            last_ms: s.value.last_ms,
        }],
        vidar_store::SplitScope::Track => reader.track_pieces(&s.key)?,
    })
}

/// First and last instant of `s` and the `moved` pieces together.
pub(crate) fn extent(
    s: &vidar_store::Stored<vidar_store::Sighting>,
    moved: &[vidar_store::Span],
) -> (UnixMs, UnixMs) {
    moved
        .iter()
        .fold((s.value.first_ms, s.value.last_ms), |(a, b), p| {
            (a.min(p.first_ms), b.max(p.last_ms))
        })
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
    /// [`MAX_RECENT`] and [`MAX_MERGED`] (smaller in tests).
    max_recent: usize,
    max_merged: usize,
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

/// Why a node's [`IdentityJoined`] was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinRefused {
    /// `from` is not an identity this node announced (within the window):
    /// a node joins away only what it minted.
    NotItsMint,
    /// An operator said the two are different people.
    KeptApart,
}

impl std::fmt::Display for JoinRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JoinRefused::NotItsMint => "the identity joining was not announced by this node",
            JoinRefused::KeptApart => "an operator kept the two apart",
        })
    }
}

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
        MergeBook::with_limits(threshold, MAX_RECENT, MAX_MERGED)
    }

    /// [`MergeBook::new`] with other bounds on the window and the merged map.
    pub(crate) fn with_limits(threshold: f64, max_recent: usize, max_merged: usize) -> MergeBook {
        MergeBook {
            threshold: threshold as f32,
            max_recent,
            max_merged,
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

    /// A node's word that `j.from`, an identity it minted, is `j.into` (its
    /// own gallery joined them on a track's later views): their roots join,
    /// `from`'s into `into`'s. This overrides the book's own rule of never
    /// joining two clusters one node minted (that node has now judged them
    /// one person), never an operator's separation. Returns the merges for
    /// the nodes (empty when they were one already).
    pub fn node_join(
        &mut self,
        j: &IdentityJoined,
        now_ms: UnixMs,
    ) -> Result<Vec<MergeAnnounce>, JoinRefused> {
        self.age_out(now_ms);
        if !self
            .recent
            .iter()
            .any(|r| r.identity == j.from && r.node == j.node)
        {
            return Err(JoinRefused::NotItsMint);
        }
        let (from, into) = (self.root(j.from), self.root(j.into));
        if from == into {
            return Ok(Vec::new());
        }
        if self.kept_apart(from, into) {
            return Err(JoinRefused::KeptApart);
        }
        Ok(self.join(into, from, now_ms))
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
            if self.recent.len() > self.max_recent || now_ms - front.received_ms > MAX_AGE_MS {
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
        self.sweep_if_due();
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
        while self.merged_order.len() > self.max_merged {
            if let Some(old) = self.merged_order.pop_front() {
                self.merged.remove(&old);
            }
        }
        self.sweep_if_due();
        out
    }

    /// Entries of `first_seen` and `minted_by`: they stay bounded by what
    /// the window and the merged map hold.
    pub fn held(&self) -> (usize, usize) {
        (self.first_seen.len(), self.minted_by.len())
    }

    /// Forgets the first-seen times and minting nodes of identities that
    /// are in neither the window nor the merged map (in either role): an
    /// identity merged away whose window entry aged out is forgotten here
    /// once the merged map drops it, which `age_out` alone never saw. Runs
    /// when the two maps hold twice what is alive, so its cost per call is
    /// constant on average.
    fn sweep_if_due(&mut self) {
        let alive = self.recent.len() + 2 * self.merged.len();
        let due = 2 * alive + 64;
        if self.first_seen.len() <= due && self.minted_by.len() <= due {
            return;
        }
        let mut keep: std::collections::HashSet<IdentityId> =
            std::collections::HashSet::with_capacity(alive);
        keep.extend(self.recent.iter().map(|r| r.identity));
        for (from, into) in &self.merged {
            keep.insert(*from);
            keep.insert(*into);
        }
        self.first_seen.retain(|id, _| keep.contains(id));
        self.minted_by.retain(|id, _| keep.contains(id));
    }
}

#[cfg(test)]
#[path = "merges_tests.rs"]
mod tests;
