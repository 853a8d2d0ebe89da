//! Operators' corrections at the master: an admin splits a sighting off an
//! identity, merges two identities, or reverts an earlier correction.
//!
//! No HTTP here. [`decide`] checks a [`Request`] against the global database
//! (pure but for reads) and says what to store and what to tell the merge
//! thread; [`Desk::correct`] does it, one correction at a time, so two
//! splits never mint the same identity. A correction is the master's own
//! [`Record::Correction`]: kept for good, followed by every query
//! (`vidar_store::Corrections`), and audited (who, when, why; the log says
//! so too). The merge thread then keeps the two apart or joins them, and
//! tells the nodes ([`Operator`]).
//!
//! The hard rules of automatic identity hold for operators too: two people
//! on one camera at the same time are two, so a merge or a split that would
//! give one identity two overlapping sightings on one camera is refused.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Mutex;

use serde::Deserialize;
use vidar_protocol::messages::SplitAnnounce;
use vidar_protocol::{IdentityId, NodeId, UnixMs};
use vidar_store::{
    Correction, CorrectionAction, Reader, Record, RecordKey, Span, SplitScope, StoreError,
    TimeRange, WriterHandle, MAX_QUERY_ROWS,
};

use crate::merge_service::Input;
use crate::merges::Operator;

/// Identities the master mints for split-off people: node prefix 0, which no
/// edge of a cluster mints in (they derive a prefix in 1..=65535).
pub const MINTED: (IdentityId, IdentityId) = (IdentityId(1), IdentityId((1 << 48) - 1));

/// A correction an operator asks for (the JSON body of `POST /api/corrections`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Request {
    /// The sighting `node`/`seq`, shown under `from`, is someone else: a new
    /// identity, or `into` when given.
    Split {
        /// The sighting's node.
        node: NodeId,
        /// The sighting's seq.
        seq: u64,
        /// The identity the operator saw it under (refused if stale).
        from: IdentityId,
        /// The identity it belongs to; a new one when absent.
        #[serde(default)]
        into: Option<IdentityId>,
        /// The sighting's whole track (the default: a track longer than ten
        /// seconds is recorded in pieces, and the operator means the person),
        /// or `sighting` for that piece alone.
        #[serde(default = "whole_track")]
        scope: SplitScope,
        /// Why.
        #[serde(default)]
        reason: String,
    },
    /// `from` and `into` are one person.
    Merge {
        /// The identity merged away.
        from: IdentityId,
        /// The identity it joins.
        into: IdentityId,
        /// Why.
        #[serde(default)]
        reason: String,
    },
    /// The correction `node`/`seq` is undone.
    Revert {
        /// The correction's node (the master's).
        node: NodeId,
        /// The correction's seq.
        seq: u64,
        /// Why.
        #[serde(default)]
        reason: String,
    },
}

fn whole_track() -> SplitScope {
    SplitScope::Track
}

/// Why a correction was refused.
#[derive(Debug)]
pub enum Refusal {
    /// A field is wrong in itself.
    Bad {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Something named does not exist.
    NotFound(String),
    /// It contradicts what is stored (stale view, already done, a hard rule).
    Conflict(String),
    /// The global database failed.
    Store(StoreError),
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Refusal::Store(e)
    }
}

/// What [`decide`] decided: the record to store and what the merge thread
/// is told once it is stored.
#[derive(Debug)]
pub struct Decided {
    /// The correction record.
    pub correction: Correction,
    /// For the merge thread (and through it the nodes).
    pub operator: Option<Operator>,
}

/// Checks `req` from `actor` against the database and decides it at `now`.
pub fn decide(
    reader: &Reader,
    req: &Request,
    actor: &str,
    now: UnixMs,
) -> Result<Decided, Refusal> {
    let (action, operator, reason) = match req {
        Request::Split {
            node,
            seq,
            from,
            into,
            scope,
            reason,
        } => {
            let (action, announce) = split(reader, node, *seq, *from, *into, *scope, now)?;
            (action, Some(Operator::Split(announce)), reason)
        }
        Request::Merge { from, into, reason } => {
            merge(reader, *from, *into)?;
            let action = CorrectionAction::Merge {
                from: *from,
                into: *into,
            };
            let op = Operator::Merge {
                from: *from,
                into: *into,
            };
            (action, Some(op), reason)
        }
        Request::Revert { node, seq, reason } => {
            let key = RecordKey {
                node: node.clone(),
                seq: *seq,
            };
            let Some((undone, reverted)) = reader.correction(&key)? else {
                return Err(Refusal::NotFound(format!("no correction {node}/{seq}")));
            };
            let op = match undone.action {
                CorrectionAction::Revert { .. } => {
                    return Err(Refusal::Bad {
                        field: "seq",
                        message: format!("{node}/{seq} is itself a revert; correct again instead"),
                    })
                }
                _ if reverted => {
                    return Err(Refusal::Conflict(format!(
                        "correction {node}/{seq} is already reverted"
                    )))
                }
                CorrectionAction::Merge { from, into } => Some(Operator::KeepApart(from, into)),
                CorrectionAction::Split { .. } => None,
            };
            (CorrectionAction::Revert { correction: key }, op, reason)
        }
    };
    let correction = Correction {
        action,
        actor: actor.to_owned(),
        reason: reason.trim().to_owned(),
        decided_ms: now,
    };
    if let Err(e) = Record::Correction(correction.clone()).validate() {
        let field = if e.reason.starts_with("actor") {
            "actor"
        } else {
            "reason"
        };
        return Err(Refusal::Bad {
            field,
            message: e.reason,
        });
    }
    Ok(Decided {
        correction,
        operator,
    })
}

fn split(
    reader: &Reader,
    node: &NodeId,
    seq: u64,
    from: IdentityId,
    into: Option<IdentityId>,
    scope: SplitScope,
    now: UnixMs,
) -> Result<(CorrectionAction, SplitAnnounce), Refusal> {
    let key = RecordKey {
        node: node.clone(),
        seq,
    };
    let Some(s) = reader.sighting(&key)? else {
        return Err(Refusal::Conflict(format!(
            "sighting {node}/{seq} is not in the global database (not synchronised yet, \
             or pruned): try again once it is synchronised"
        )));
    };
    let corrections = reader.corrections_in_force()?;
    let shown = corrections.identity_of(&key, s.value.identity);
    if shown != from {
        return Err(Refusal::Conflict(format!(
            "sighting {node}/{seq} is shown under {shown}, not {from}: reload and try again"
        )));
    }
    let moved = crate::merges::moved_by(reader, &s, scope)?;
    let (first_ms, last_ms) = crate::merges::extent(&s, &moved);
    let into = match into {
        Some(i) if i == shown => {
            return Err(Refusal::Bad {
                field: "into",
                message: format!("the sighting is already {i}'s"),
            })
        }
        Some(i) => {
            if !reader.identity_known(i)? {
                return Err(Refusal::NotFound(format!("identity {i} is not known")));
            }
            let cluster = reader.identity_cluster(i)?;
            if cluster.contains(&shown) {
                return Err(Refusal::Conflict(format!(
                    "{i} and {shown} are one person (merged): revert or split the merge instead"
                )));
            }
            let cluster: HashSet<IdentityId> = cluster.into_iter().collect();
            let range = TimeRange::new(first_ms, last_ms + 1);
            let there = reader.sightings_by_camera(&s.value.camera, range, MAX_QUERY_ROWS)?;
            let is_moved = |k: &RecordKey| moved.iter().any(|m| &m.key == k);
            if let Some(o) = there.iter().find(|o| {
                !is_moved(&o.key)
                    && cluster.contains(&corrections.identity_of(&o.key, o.value.identity))
                    && moved
                        .iter()
                        .any(|m| m.first_ms <= o.value.last_ms && o.value.first_ms <= m.last_ms)
            }) {
                return Err(Refusal::Conflict(format!(
                    "{i} is on camera {} at the same time (sighting {}/{}): \
                     two people on screen at once are two",
                    s.value.camera, o.key.node, o.key.seq
                )));
            }
            i
        }
        None => mint(reader)?,
    };
    let announce = SplitAnnounce {
        sighting: key.clone(),
        camera: s.value.camera.clone(),
        track: s.value.track,
        first_ms,
        last_ms,
        from: shown,
        into,
        decided_ms: now,
    };
    let action = CorrectionAction::Split {
        sighting: key,
        from: shown,
        into,
        scope,
    };
    Ok((action, announce))
}

/// A new identity for a split-off person: past every id of the range the
/// global database knows (minted by an earlier split, or recorded).
fn mint(reader: &Reader) -> Result<IdentityId, Refusal> {
    let (lo, hi) = MINTED;
    let used = reader
        .max_corrected_into(lo, hi)?
        .max(reader.max_identity_between(lo, hi)?);
    match used {
        None => Ok(lo),
        Some(m) if m < hi => Ok(IdentityId(m.0 + 1)),
        Some(_) => Err(Refusal::Conflict(
            "the master's identity range for splits is used up".into(),
        )),
    }
}

fn merge(reader: &Reader, from: IdentityId, into: IdentityId) -> Result<(), Refusal> {
    if from == into {
        return Err(Refusal::Bad {
            field: "into",
            message: format!("{into} is the identity merged away (from)"),
        });
    }
    for (field, id) in [("from", from), ("into", into)] {
        if !reader.identity_known(id)? {
            return Err(Refusal::NotFound(format!(
                "{field}: identity {id} is not known"
            )));
        }
    }
    if reader.identity_cluster(from)?.contains(&into) {
        return Err(Refusal::Conflict(format!(
            "{from} and {into} are one person already"
        )));
    }
    let all = TimeRange::all();
    let a = reader.trajectory_spans(from, all, MAX_QUERY_ROWS)?;
    let b = reader.trajectory_spans(into, all, MAX_QUERY_ROWS)?;
    if let Some((x, y)) = together(&a, &b) {
        return Err(Refusal::Conflict(format!(
            "{from} and {into} are both on camera {} at once (sightings {}/{} and {}/{}): \
             two people on screen at once are two",
            x.camera, x.key.node, x.key.seq, y.key.node, y.key.seq
        )));
    }
    Ok(())
}

/// A sighting of `a` and one of `b` on one camera overlapping in time, if any.
fn together<'a>(a: &'a [Span], b: &'a [Span]) -> Option<(&'a Span, &'a Span)> {
    // Both sides sorted by camera then start: one sweep per camera.
    let mut all: Vec<(&Span, bool)> = a
        .iter()
        .map(|s| (s, true))
        .chain(b.iter().map(|s| (s, false)))
        .collect();
    all.sort_by(|x, y| {
        (x.0.camera.as_str(), x.0.first_ms).cmp(&(y.0.camera.as_str(), y.0.first_ms))
    });
    // The open sighting with the latest end on each side, within a camera.
    let mut open: [Option<&Span>; 2] = [None, None];
    let mut camera = None;
    for (s, side_a) in all {
        if camera != Some(s.camera.as_str()) {
            camera = Some(s.camera.as_str());
            open = [None, None];
        }
        let (mine, theirs) = if side_a { (0, 1) } else { (1, 0) };
        if let Some(o) = open[theirs] {
            if o.last_ms >= s.first_ms {
                return Some(if side_a { (s, o) } else { (o, s) });
            }
        }
        if open[mine].is_none_or(|m| m.last_ms < s.last_ms) {
            open[mine] = Some(s);
        }
    }
    None
}

/// Takes corrections one at a time: checks, stores, hands to the merge thread.
#[derive(Debug)]
pub struct Desk {
    one_at_a_time: Mutex<()>,
    operator: Mutex<SyncSender<Input>>,
    writer: WriterHandle,
    database: PathBuf,
    /// Corrections stored since start.
    pub recorded: AtomicU64,
    /// Corrections refused since start.
    pub refused: AtomicU64,
}

impl Desk {
    /// A desk storing through `writer` into `database`, telling `operator`.
    pub fn new(writer: WriterHandle, database: PathBuf, operator: SyncSender<Input>) -> Desk {
        Desk {
            one_at_a_time: Mutex::new(()),
            operator: Mutex::new(operator),
            writer,
            database,
            recorded: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Decides, stores and hands on `req` by `actor` (blocking: call it off
    /// the async runtime). Returns the stored correction and its key.
    pub fn correct(&self, req: &Request, actor: &str) -> Result<(RecordKey, Correction), Refusal> {
        let _one = self
            .one_at_a_time
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let outcome = self.correct_now(req, actor);
        let counter = if outcome.is_ok() {
            &self.recorded
        } else {
            &self.refused
        };
        counter.fetch_add(1, Ordering::Relaxed);
        outcome
    }

    fn correct_now(&self, req: &Request, actor: &str) -> Result<(RecordKey, Correction), Refusal> {
        let reader = Reader::open(&self.database)?;
        let now = UnixMs::now();
        let d = decide(&reader, req, actor, now)?;
        drop(reader);
        let key = self
            .writer
            .write(Record::Correction(d.correction.clone()))?;
        tracing::info!(actor, key = %format!("{}/{}", key.node, key.seq), correction = ?d.correction.action, reason = %d.correction.reason, "correction recorded");
        if let Some(op) = d.operator {
            let tx = self
                .operator
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if tx.send(Input::Operator(op)).is_err() {
                tracing::warn!(
                    "the merge thread is gone: the correction is stored, the nodes not told"
                );
            }
        }
        Ok((key, d.correction))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vidar_protocol::CameraId;

    fn s(node: &str, seq: u64, camera: &str, first: i64, last: i64) -> Span {
        Span {
            key: RecordKey {
                node: NodeId::new(node).expect("id"),
                seq,
            },
            identity: IdentityId(1),
            camera: CameraId::new(camera).expect("id"),
            first_ms: UnixMs(first),
            last_ms: UnixMs(last),
        }
    }

    #[test]
    fn together_finds_overlap_on_one_camera_only() {
        let a = [s("e", 1, "c1", 0, 100), s("e", 2, "c2", 500, 600)];
        let b = [s("e", 3, "c2", 0, 499), s("e", 4, "c1", 101, 200)];
        assert!(together(&a, &b).is_none());
        let b = [s("e", 3, "c2", 0, 499), s("e", 4, "c1", 50, 60)];
        let (x, y) = together(&a, &b).expect("overlap on c1");
        assert_eq!((x.key.seq, y.key.seq), (1, 4));
        // A long sighting of one side spans several of the other.
        let a = [s("e", 1, "c1", 0, 1_000)];
        let b = [s("e", 3, "c1", 10, 20), s("e", 4, "c1", 900, 950)];
        assert!(together(&a, &b).is_some());
        assert!(together(&b, &a).is_some());
    }
}
