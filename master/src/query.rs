//! Query fan-out and merge: asking every reachable edge for the records it
//! holds but has not synchronised yet, and merging those answers with the
//! global database's rows.
//!
//! No HTTP here: [`Edges::ask`] takes protocol requests and returns protocol
//! records, and the merges are pure functions over store rows, so they test
//! without a server. Edges are asked in parallel, each on the blocking pool
//! (zenoh's synchronous API) for the timeout at most; one that does not answer
//! is listed in [`EdgeAnswers::unanswered`], never waited for longer, and is
//! not asked again until its back-off ends ([`Silence`]): a node that holds
//! its queryable but never answers costs the API one timeout per back-off,
//! not one per query. Records are merged by their key `(node, seq)`: the
//! global database's copy wins.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use vidar_protocol::messages::{QueryReply, QueryRequest};
use vidar_protocol::{IdentityId, Keys, NodeId};
use vidar_store::{
    Corrections, IdentitySeen, KeyedRecord, Record, RecordKey, Sighting, Stored, TimeRange,
};

/// How to reach the edges' query endpoints.
#[derive(Debug, Clone, Copy)]
pub struct Edges<'a> {
    /// The site link (refused replies are counted there).
    pub link: &'a vidar_link::Link,
    /// The site's keys.
    pub keys: &'a Keys,
    /// How long to wait for each edge.
    pub timeout: Duration,
    /// The edges that did not answer lately.
    pub silence: &'a Silence,
}

/// An edge that did not answer, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Unanswered {
    /// The node.
    pub node: NodeId,
    /// Whether it was asked this time (false: it did not answer lately and
    /// its back-off has not ended).
    pub asked: bool,
    /// What happened.
    pub error: String,
}

/// The first back-off of an edge that did not answer.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(5);
/// The longest back-off: an edge that stays silent is tried this often.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The edges that did not answer a query lately, each with when it may be
/// asked again: the back-off starts at [`FIRST_BACKOFF`] and doubles with
/// each failure to [`MAX_BACKOFF`]; an answer forgets it.
#[derive(Debug, Default)]
pub struct Silence(Mutex<HashMap<NodeId, (Instant, Duration)>>);

impl Silence {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, (Instant, Duration)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long until `node` may be asked again (None: now).
    pub fn wait(&self, node: &NodeId, now: Instant) -> Option<Duration> {
        let (until, _) = *self.map().get(node)?;
        (until > now).then(|| until - now)
    }

    /// `node` did not answer at `now`.
    pub fn failed(&self, node: &NodeId, now: Instant) {
        let mut map = self.map();
        let backoff = match map.get(node) {
            Some(&(_, b)) => (b * 2).min(MAX_BACKOFF),
            None => FIRST_BACKOFF,
        };
        map.insert(node.clone(), (now + backoff, backoff));
    }

    /// `node` answered.
    pub fn answered(&self, node: &NodeId) {
        self.map().remove(node);
    }
}

/// The edges' answers to one query.
#[derive(Debug, Default)]
pub struct EdgeAnswers {
    /// Every record the edges returned, in the order of `asked`.
    pub records: Vec<KeyedRecord>,
    /// The edges asked.
    pub asked: Vec<NodeId>,
    /// The edges that did not answer.
    pub unanswered: Vec<Unanswered>,
}

impl Edges<'_> {
    /// Asks every node of `nodes` whose back-off is over, in parallel, for `q`.
    pub async fn ask(&self, nodes: Vec<NodeId>, q: QueryRequest) -> EdgeAnswers {
        let mut tasks = Vec::new();
        let mut out = EdgeAnswers::default();
        let now = Instant::now();
        for node in nodes {
            if let Some(wait) = self.silence.wait(&node, now) {
                out.asked.push(node.clone());
                out.unanswered.push(Unanswered {
                    node,
                    asked: false,
                    error: format!(
                        "did not answer lately; not asked again for {:.1} s",
                        wait.as_secs_f64()
                    ),
                });
                continue;
            }
            let (link, q) = (self.link.clone(), q.clone());
            let (key, timeout) = (self.keys.query(&node), self.timeout);
            let task = tokio::task::spawn_blocking(move || {
                link.request::<QueryRequest, QueryReply>(&key, &q, timeout)
            });
            tasks.push((node, task));
        }
        for (node, task) in tasks {
            out.asked.push(node.clone());
            let answer = task.await;
            match &answer {
                Ok(Ok(_)) => self.silence.answered(&node),
                _ => self.silence.failed(&node, Instant::now()),
            }
            match answer {
                Ok(Ok(reply)) => {
                    // A reply is trusted for its own node's records only
                    // (under a bundle, only that node may answer on its key).
                    let (mine, foreign): (Vec<_>, Vec<_>) =
                        reply.records.into_iter().partition(|r| r.key.node == node);
                    out.records.extend(mine);
                    if !foreign.is_empty() {
                        tracing::warn!(node = %node, foreign = foreign.len(), "query reply held records of other nodes: dropped");
                    }
                }
                Ok(Err(e)) => out.unanswered.push(Unanswered {
                    node,
                    asked: true,
                    error: e.to_string(),
                }),
                Err(e) => out.unanswered.push(Unanswered {
                    node,
                    asked: true,
                    error: format!("query task: {e}"),
                }),
            }
        }
        out
    }
}

/// A sighting in a reply.
#[derive(Debug, Serialize)]
pub struct SightingOut {
    /// The node that recorded it.
    pub node: NodeId,
    /// Its place in that node's sequence.
    pub seq: u64,
    /// Whether it came from the global database (else only an edge has it so far).
    pub synced: bool,
    /// The identity it was recorded under, when an operator's split moved it
    /// (`identity` is then whom it belongs to now).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_identity: Option<IdentityId>,
    /// The sighting, its `identity` as corrected.
    #[serde(flatten)]
    pub sighting: Sighting,
}

/// Whether `s` overlaps `r`.
pub fn overlaps(s: &Sighting, r: TimeRange) -> bool {
    s.last_ms >= r.start_ms && s.first_ms < r.end_ms
}

/// A sighting as shown: its identity as the operators' `corrections` say.
fn shown(key: RecordKey, mut sighting: Sighting, synced: bool, c: &Corrections) -> SightingOut {
    let now = c.identity_of(&key, sighting.identity);
    let recorded_identity = (now != sighting.identity).then_some(sighting.identity);
    sighting.identity = now;
    SightingOut {
        node: key.node,
        seq: key.seq,
        synced,
        recorded_identity,
        sighting,
    }
}

/// The database's sightings plus the edges' not already there, deduplicated by
/// key, in time order, at most `limit`; and whether some were cut. Identities
/// are shown as `corrections` say. Edge sightings pass only if `keep` says so
/// of them as corrected (the database's already matched the query).
pub fn merge_sightings(
    db: Vec<Stored<Sighting>>,
    edge: Vec<KeyedRecord>,
    corrections: &Corrections,
    keep: impl Fn(&Sighting) -> bool,
    limit: usize,
) -> (Vec<SightingOut>, bool) {
    let mut seen: HashSet<RecordKey> = HashSet::new();
    let mut out = Vec::new();
    for s in db {
        if seen.insert(s.key.clone()) {
            out.push(shown(s.key, s.value, true, corrections));
        }
    }
    for r in edge {
        if let Record::Sighting(s) = r.record {
            if seen.contains(&r.key) {
                continue;
            }
            let one = shown(r.key, s, false, corrections);
            if keep(&one.sighting) {
                seen.insert(RecordKey {
                    node: one.node.clone(),
                    seq: one.seq,
                });
                out.push(one);
            }
        }
    }
    out.sort_by(|a, b| {
        (a.sighting.first_ms, &a.node, a.seq).cmp(&(b.sighting.first_ms, &b.node, b.seq))
    });
    let truncated = out.len() > limit;
    out.truncate(limit);
    (out, truncated)
}

/// An identity in a reply.
#[derive(Debug, Serialize)]
pub struct IdentityOut {
    /// When and how often it was seen.
    #[serde(flatten)]
    pub seen: IdentitySeen,
    /// Whether the global database knows it (else only an edge has it so far).
    pub synced: bool,
}

/// The database's identities seen in `range` plus those only an edge knows
/// (first seen in `range`), by first time then id, at most `limit`; and
/// whether some were cut.
pub fn merge_identities(
    db: Vec<IdentitySeen>,
    edge: Vec<KeyedRecord>,
    range: TimeRange,
    limit: usize,
) -> (Vec<IdentityOut>, bool) {
    let mut known: HashSet<IdentityId> = db.iter().map(|s| s.identity).collect();
    let mut out: Vec<IdentityOut> = db
        .into_iter()
        .map(|seen| IdentityOut { seen, synced: true })
        .collect();
    // Edges report identity records (first sightings), not aggregates: an
    // identity only an edge knows shows with its first time and no count yet.
    for rec in edge {
        if let Record::Identity(i) = rec.record {
            let t = i.first_seen_ms;
            if t >= range.start_ms && t < range.end_ms && known.insert(i.identity) {
                out.push(IdentityOut {
                    seen: IdentitySeen {
                        identity: i.identity,
                        first_ms: t,
                        last_ms: t,
                        sightings: 0,
                        cameras: 1,
                    },
                    synced: false,
                });
            }
        }
    }
    out.sort_by_key(|o| (o.seen.first_ms, o.seen.identity));
    let truncated = out.len() > limit;
    out.truncate(limit);
    (out, truncated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vidar_protocol::UnixMs;
    use vidar_protocol::{CameraId, TrackId};
    use vidar_store::IdentityRecord;

    #[test]
    fn a_silent_edge_is_asked_again_after_a_doubling_back_off_and_forgotten_once_it_answers() {
        let silence = Silence::default();
        let (n, other) = (NodeId::new("n").expect("id"), NodeId::new("o").expect("id"));
        let t0 = Instant::now();
        assert_eq!(silence.wait(&n, t0), None, "asked at first");
        let mut at = t0;
        let mut waits = Vec::new();
        for _ in 0..6 {
            silence.failed(&n, at);
            let w = silence.wait(&n, at).expect("backing off");
            waits.push(w.as_secs());
            assert_eq!(silence.wait(&n, at + w), None, "asked again when it ends");
            at += w;
        }
        assert_eq!(waits, [5, 10, 20, 40, 60, 60]);
        assert_eq!(silence.wait(&other, at), None, "another edge is not held");
        silence.answered(&n);
        assert_eq!(silence.wait(&n, at), None);
        silence.failed(&n, at);
        assert_eq!(silence.wait(&n, at), Some(FIRST_BACKOFF), "starts afresh");
    }

    fn key(node: &str, seq: u64) -> RecordKey {
        RecordKey {
            node: NodeId::new(node).expect("id"),
            seq,
        }
    }

    fn sighting(identity: u64, first_ms: i64) -> Sighting {
        Sighting {
            identity: IdentityId(identity),
            camera: CameraId::new("lobby").expect("id"),
            track: TrackId(1),
            first_ms: UnixMs(first_ms),
            last_ms: UnixMs(first_ms + 500),
            path: Vec::new(),
        }
    }

    fn edge_sighting(node: &str, seq: u64, identity: u64, first_ms: i64) -> KeyedRecord {
        KeyedRecord {
            key: key(node, seq),
            record: Record::Sighting(sighting(identity, first_ms)),
        }
    }

    fn edge_identity(node: &str, seq: u64, identity: u64, first_seen_ms: i64) -> KeyedRecord {
        KeyedRecord {
            key: key(node, seq),
            record: Record::Identity(IdentityRecord {
                identity: IdentityId(identity),
                camera: CameraId::new("lobby").expect("id"),
                first_seen_ms: UnixMs(first_seen_ms),
                embedding: vec![1.0],
                model: "m".into(),
            }),
        }
    }

    #[test]
    fn sightings_merge_by_key_in_time_order() {
        let db = vec![Stored {
            key: key("a", 1),
            value: sighting(7, 2_000),
        }];
        let edge = vec![
            // Already in the database: its synced copy wins.
            edge_sighting("a", 1, 7, 2_000),
            edge_sighting("b", 4, 7, 1_000),
            // Refused by the query's own filter.
            edge_sighting("b", 5, 8, 3_000),
        ];
        let none = Corrections::default();
        let (out, truncated) =
            merge_sightings(db, edge, &none, |s| s.identity == IdentityId(7), 10);
        assert!(!truncated);
        let got: Vec<_> = out
            .iter()
            .map(|o| (o.node.as_str(), o.seq, o.synced))
            .collect();
        assert_eq!(got, [("b", 4, false), ("a", 1, true)]);
    }

    #[test]
    fn sightings_are_shown_and_filtered_as_corrected() {
        let c = Corrections::from_moves([
            (key("a", 1), IdentityId(9)),
            (key("b", 4), IdentityId(7)),
            (key("b", 6), IdentityId(9)),
        ]);
        let db = vec![Stored {
            key: key("a", 1),
            value: sighting(7, 2_000),
        }];
        let edge = vec![
            edge_sighting("b", 4, 8, 1_000),
            edge_sighting("b", 5, 7, 3_000),
            edge_sighting("b", 6, 7, 4_000),
        ];
        let (out, _) = merge_sightings(db, edge, &c, |s| s.identity == IdentityId(7), 10);
        let got: Vec<_> = out
            .iter()
            .map(|o| {
                (
                    o.seq,
                    o.sighting.identity.0,
                    o.recorded_identity.map(|i| i.0),
                )
            })
            .collect();
        // a/1 is the database's (shown as 9, recorded as 7); b/4 moved into
        // 7; b/5 is 7's own; b/6 moved away from 7.
        assert_eq!(got, [(4, 7, Some(8)), (1, 9, Some(7)), (5, 7, None)]);
    }

    #[test]
    fn sightings_beyond_the_limit_are_cut_and_said_so() {
        let edge = (1..=3)
            .map(|i| edge_sighting("b", i, 7, i as i64))
            .collect();
        let (out, truncated) =
            merge_sightings(Vec::new(), edge, &Corrections::default(), |_| true, 2);
        assert!(truncated);
        assert_eq!(out.iter().map(|o| o.seq).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn overlap_is_half_open() {
        let s = sighting(1, 1_000); // [1000, 1500]
        assert!(overlaps(&s, TimeRange::new(UnixMs(1_500), UnixMs(2_000))));
        assert!(!overlaps(&s, TimeRange::new(UnixMs(1_501), UnixMs(2_000))));
        assert!(!overlaps(&s, TimeRange::new(UnixMs(0), UnixMs(1_000))));
        assert!(overlaps(&s, TimeRange::new(UnixMs(0), UnixMs(1_001))));
    }

    #[test]
    fn identities_only_an_edge_knows_are_added_once_within_the_range() {
        let db = vec![IdentitySeen {
            identity: IdentityId(1),
            first_ms: UnixMs(5_000),
            last_ms: UnixMs(6_000),
            sightings: 3,
            cameras: 2,
        }];
        let edge = vec![
            edge_identity("b", 1, 1, 100),    // known to the database
            edge_identity("b", 2, 2, 200),    // new
            edge_identity("c", 9, 2, 300),    // same identity from another edge
            edge_identity("c", 10, 3, 9_999), // outside the range
            edge_sighting("c", 11, 4, 400),   // not an identity record
        ];
        let (out, truncated) =
            merge_identities(db, edge, TimeRange::new(UnixMs(0), UnixMs(9_000)), 10);
        assert!(!truncated);
        let got: Vec<_> = out
            .iter()
            .map(|o| {
                (
                    o.seen.identity.0,
                    o.seen.first_ms,
                    o.seen.sightings,
                    o.synced,
                )
            })
            .collect();
        assert_eq!(
            got,
            [(2, UnixMs(200), 0, false), (1, UnixMs(5_000), 3, true)]
        );
        let (out, truncated) = merge_identities(
            Vec::new(),
            vec![edge_identity("b", 1, 1, 1), edge_identity("b", 2, 2, 2)],
            TimeRange::new(UnixMs(0), UnixMs(9_000)),
            1,
        );
        assert!(truncated);
        assert_eq!(out.len(), 1);
    }
}
