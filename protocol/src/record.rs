//! The records Vidar stores and syncs between nodes, and their validation.
//!
//! Every record is immutable once keyed: the edge that made it assigns a
//! [`RecordKey`] `(node, seq)` when its writer (in `vidar-store`) commits it, and
//! the same key always names the same content, on the edge and on the master.
//! They live here, not in the store, because record batches travel between
//! processes ([`crate::messages::SyncBatch`], [`crate::messages::QueryReply`]).
//! Nothing here touches SQLite or the network.
//!
//! Times are milliseconds since the Unix epoch (UTC), of capture time where the
//! record comes from video.

use crate::time::UnixMs;
use serde::{Deserialize, Serialize};

use crate::{BBox, CameraId, IdentityId, NodeId, TrackId};

/// A record that breaks a documented bound; refused before it is stored or sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} record: {reason}")]
pub struct InvalidRecord {
    /// The record kind ([`Record::kind`]).
    pub kind: &'static str,
    /// What is wrong, with the offending values.
    pub reason: String,
}

/// Longest camera name, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// Largest accepted embedding dimension.
pub const MAX_EMBEDDING_DIM: usize = 4096;
/// Longest model tag (`name@sha256-prefix`) on an identity, bytes.
pub const MAX_MODEL_TAG: usize = 128;
/// Largest accepted snapshot, in bytes (a person crop, not a frame).
pub const MAX_SNAPSHOT_BYTES: usize = 512 * 1024;
/// Longest time span of one sighting, in milliseconds (one hour). Longer presences
/// are recorded as several consecutive sightings; the bound keeps time-range
/// queries on an index range and box-path offsets small.
pub const MAX_SIGHTING_SPAN_MS: i64 = 3_600_000;
/// Most points in one sighting's box path.
pub const MAX_PATH_POINTS: usize = 100_000;
/// Longest operator name on a correction, bytes.
pub const MAX_ACTOR_LEN: usize = 128;
/// Longest reason given for a correction, bytes.
pub const MAX_REASON_LEN: usize = 1024;

/// The primary key of every record: the node that made it and its position in
/// that node's sequence (shared by all record kinds, starting at 1, never reused).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RecordKey {
    /// The node whose writer assigned `seq`.
    pub node: NodeId,
    /// Position in the node's sequence; 1 is the first record a node ever wrote.
    pub seq: u64,
}

/// A half-open time interval `[start_ms, end_ms)`, milliseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRange {
    /// First millisecond included.
    pub start_ms: UnixMs,
    /// First millisecond excluded.
    pub end_ms: UnixMs,
}

impl TimeRange {
    /// The interval `[start_ms, end_ms)`.
    pub fn new(start_ms: UnixMs, end_ms: UnixMs) -> Self {
        TimeRange { start_ms, end_ms }
    }

    /// All representable time.
    pub fn all() -> Self {
        TimeRange {
            start_ms: UnixMs::MIN,
            end_ms: UnixMs::MAX,
        }
    }
}

/// A camera known to a node, as registered (name changes are new records).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraRecord {
    /// The camera.
    pub camera: CameraId,
    /// Human-readable name, stored verbatim (at most [`MAX_NAME_LEN`] bytes).
    pub name: String,
    /// When the node registered the camera.
    pub recorded_ms: UnixMs,
}

/// A closed tracker track: one person followed on one camera.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackRecord {
    /// The camera the track ran on.
    pub camera: CameraId,
    /// The tracker's id for it.
    pub track: TrackId,
    /// First frame time of the track.
    pub first_ms: UnixMs,
    /// Last frame time of the track.
    pub last_ms: UnixMs,
    /// The identity re-ID gave it, if any.
    pub identity: Option<IdentityId>,
}

/// One box of a sighting's path, at a capture time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoxPoint {
    /// Capture time of the frame, within the sighting's `[first_ms, last_ms]`.
    pub t_ms: UnixMs,
    /// The person's box in that frame, pixels.
    pub bbox: BBox,
}

/// An identity seen on a camera over a time span, with the path of its box.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sighting {
    /// The global identity.
    pub identity: IdentityId,
    /// The camera.
    pub camera: CameraId,
    /// The track on that camera.
    pub track: TrackId,
    /// Start of the span.
    pub first_ms: UnixMs,
    /// End of the span (inclusive), at most [`MAX_SIGHTING_SPAN_MS`] after `first_ms`.
    pub last_ms: UnixMs,
    /// Boxes in time order (the store keeps them delta-encoded, see `vidar_store::boxpath`).
    pub path: Vec<BoxPoint>,
}

/// An identity's appearance embedding, as minted or refreshed by re-ID.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentityRecord {
    /// The identity.
    pub identity: IdentityId,
    /// The camera it was first seen on.
    pub camera: CameraId,
    /// When it was first seen.
    pub first_seen_ms: UnixMs,
    /// The embedding (usually L2-normalised), 1..=[`MAX_EMBEDDING_DIM`] finite values.
    pub embedding: Vec<f32>,
    /// Tag of the model that made the embedding (`name@sha256-prefix`, at
    /// most [`MAX_MODEL_TAG`] bytes; empty when unknown): embeddings of
    /// different models are never compared.
    pub model: String,
}

/// A small JPEG of a person, for the UI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Who is shown.
    pub identity: IdentityId,
    /// The camera it was cut from.
    pub camera: CameraId,
    /// Capture time of the frame.
    pub t_ms: UnixMs,
    /// JPEG bytes (starting with the SOI marker), at most [`MAX_SNAPSHOT_BYTES`].
    #[serde(with = "crate::bytes")]
    pub jpeg: Vec<u8>,
}

/// The master's decision that `from` and `into` are one person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityMerge {
    /// The identity merged away.
    pub from: IdentityId,
    /// The identity it joins.
    pub into: IdentityId,
    /// When the merge was decided.
    pub decided_ms: UnixMs,
}

/// What an operator's split moves.
///
/// A track longer than ten seconds is recorded as several sightings, each
/// starting where the one before ended (same node, camera and track id). An
/// operator who says "this is someone else" means the person, so the whole
/// track; a tracker that switched people within one track needs the piece.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitScope {
    /// The one sighting named.
    #[default]
    Sighting,
    /// Every piece of the sighting's track: those recorded before it and
    /// after it, including pieces recorded after the split was made.
    Track,
}

impl SplitScope {
    /// The name stored and shown (`sighting`, `track`).
    pub fn as_str(self) -> &'static str {
        match self {
            SplitScope::Sighting => "sighting",
            SplitScope::Track => "track",
        }
    }
}

/// What an operator corrected (see [`Correction`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CorrectionAction {
    /// The sighting `sighting`, shown under identity `from`, is another
    /// person: from now on it belongs to `into` (a new identity minted by
    /// the master, or a known one).
    Split {
        /// The sighting's record key.
        sighting: RecordKey,
        /// The identity it was shown under when the operator split it.
        from: IdentityId,
        /// The identity it belongs to now.
        into: IdentityId,
        /// Whether the sighting alone moves, or the whole track it is a
        /// piece of (records written before scopes existed: the sighting).
        #[serde(default)]
        scope: SplitScope,
    },
    /// Identities `from` and `into` are one person (as a merge by the master,
    /// decided by an operator).
    Merge {
        /// The identity merged away.
        from: IdentityId,
        /// The identity it joins.
        into: IdentityId,
    },
    /// The correction keyed `correction` is undone (a revert is never reverted).
    Revert {
        /// The correction's record key.
        correction: RecordKey,
    },
}

/// An operator's correction of who is who, made at the master: kept for good
/// (never pruned), audited (who, when, why), followed by every query of the
/// global database, and sent to the nodes, whose galleries learn from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Correction {
    /// What was corrected.
    pub action: CorrectionAction,
    /// Who corrected it (the signed-in user or token name, at most [`MAX_ACTOR_LEN`] bytes).
    pub actor: String,
    /// Why, as the operator wrote it (at most [`MAX_REASON_LEN`] bytes; may be empty).
    pub reason: String,
    /// When it was decided.
    pub decided_ms: UnixMs,
}

/// What reached a job's `records` sink for one frame (see
/// [`crate::messages::JobSpec`]): written by the sink's node, synced like
/// every record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    /// The job.
    pub job: crate::JobId,
    /// The sink stage.
    pub stage: crate::StageId,
    /// The camera of the frame.
    pub camera: CameraId,
    /// The frame's capture time.
    pub captured_ms: UnixMs,
    /// The frame's position among those the job's source took, from 1.
    pub item: u64,
    /// What reached the sink.
    pub kind: crate::messages::DataKind,
    /// Per crop (or for the frame): box, track and values (none for crops).
    pub items: Vec<crate::messages::JobVector>,
}

/// Most entries in one [`JobResult`].
pub const MAX_JOB_RESULT_ITEMS: usize = crate::messages::jobs::MAX_JOB_ITEM_ENTRIES;

/// Any record the store keeps, without its key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Record {
    /// See [`CameraRecord`].
    Camera(CameraRecord),
    /// See [`TrackRecord`].
    Track(TrackRecord),
    /// See [`Sighting`].
    Sighting(Sighting),
    /// See [`IdentityRecord`].
    Identity(IdentityRecord),
    /// See [`Snapshot`].
    Snapshot(Snapshot),
    /// See [`IdentityMerge`].
    Merge(IdentityMerge),
    /// See [`Correction`].
    Correction(Correction),
    /// See [`JobResult`].
    JobResult(JobResult),
}

/// A record with its key: the unit of sync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyedRecord {
    /// Who made it and where it sits in their sequence.
    pub key: RecordKey,
    /// The content.
    pub record: Record,
}

impl Record {
    /// Stable lowercase name of the kind, for errors, logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Camera(_) => "camera",
            Record::Track(_) => "track",
            Record::Sighting(_) => "sighting",
            Record::Identity(_) => "identity",
            Record::Snapshot(_) => "snapshot",
            Record::Merge(_) => "merge",
            Record::Correction(_) => "correction",
            Record::JobResult(_) => "job_result",
        }
    }

    /// Checks every bound documented on the record types.
    pub fn validate(&self) -> Result<(), InvalidRecord> {
        let bad = |reason: String| {
            Err(InvalidRecord {
                kind: self.kind(),
                reason,
            })
        };
        match self {
            Record::Camera(c) => {
                if c.name.len() > MAX_NAME_LEN {
                    return bad(format!(
                        "camera name is {} bytes, at most {MAX_NAME_LEN} allowed",
                        c.name.len()
                    ));
                }
            }
            Record::Track(t) => {
                if t.last_ms < t.first_ms {
                    return bad(format!(
                        "last_ms {} is before first_ms {}",
                        t.last_ms, t.first_ms
                    ));
                }
            }
            Record::Sighting(s) => {
                if let Err(reason) = validate_sighting(s) {
                    return bad(reason);
                }
            }
            Record::Identity(i) => {
                let n = i.embedding.len();
                if n == 0 || n > MAX_EMBEDDING_DIM {
                    return bad(format!(
                        "embedding has {n} values, 1..={MAX_EMBEDDING_DIM} allowed"
                    ));
                }
                if let Some(k) = i.embedding.iter().position(|v| !v.is_finite()) {
                    return bad(format!("embedding value {k} is not finite"));
                }
                if i.model.len() > MAX_MODEL_TAG {
                    return bad(format!(
                        "model tag has {} bytes, at most {MAX_MODEL_TAG} allowed",
                        i.model.len()
                    ));
                }
            }
            Record::Snapshot(s) => {
                if s.jpeg.len() > MAX_SNAPSHOT_BYTES {
                    return bad(format!(
                        "snapshot is {} bytes, at most {MAX_SNAPSHOT_BYTES} allowed",
                        s.jpeg.len()
                    ));
                }
                if !s.jpeg.starts_with(&[0xFF, 0xD8, 0xFF]) {
                    return bad("snapshot does not start with a JPEG SOI marker".to_string());
                }
            }
            Record::Merge(m) => {
                if m.from == m.into {
                    return bad(format!("merge of {} into itself", m.from));
                }
            }
            Record::Correction(c) => {
                if let Err(reason) = validate_correction(c) {
                    return bad(reason);
                }
            }
            Record::JobResult(r) => {
                if r.items.len() > MAX_JOB_RESULT_ITEMS {
                    return bad(format!(
                        "{} items, at most {MAX_JOB_RESULT_ITEMS} allowed",
                        r.items.len()
                    ));
                }
                for (k, v) in r.items.iter().enumerate() {
                    if let Err(reason) = v.check(&format!("items[{k}]")) {
                        return bad(reason);
                    }
                }
            }
        }
        Ok(())
    }

    /// The time the record is about, used for retention: the end of a span, or its instant.
    pub fn time_ms(&self) -> UnixMs {
        match self {
            Record::Camera(c) => c.recorded_ms,
            Record::Track(t) => t.last_ms,
            Record::Sighting(s) => s.last_ms,
            Record::Identity(i) => i.first_seen_ms,
            Record::Snapshot(s) => s.t_ms,
            Record::Merge(m) => m.decided_ms,
            Record::Correction(c) => c.decided_ms,
            Record::JobResult(r) => r.captured_ms,
        }
    }

    /// Whether only the master writes records of this kind (merges and
    /// corrections): such records are never taken from an edge.
    pub fn masters_only(&self) -> bool {
        matches!(self, Record::Merge(_) | Record::Correction(_))
    }
}

fn validate_correction(c: &Correction) -> Result<(), String> {
    if c.actor.is_empty() || c.actor.len() > MAX_ACTOR_LEN {
        return Err(format!(
            "actor is {} bytes, 1..={MAX_ACTOR_LEN} allowed",
            c.actor.len()
        ));
    }
    if c.reason.len() > MAX_REASON_LEN {
        return Err(format!(
            "reason is {} bytes, at most {MAX_REASON_LEN} allowed",
            c.reason.len()
        ));
    }
    if let Some(k) = c
        .actor
        .chars()
        .chain(c.reason.chars())
        .position(|ch| ch.is_control() && ch != '\n')
    {
        return Err(format!("actor or reason holds a control character at {k}"));
    }
    match &c.action {
        CorrectionAction::Split { from, into, .. } | CorrectionAction::Merge { from, into }
            if from == into =>
        {
            Err(format!("{from} corrected into itself"))
        }
        _ => Ok(()),
    }
}

fn validate_sighting(s: &Sighting) -> Result<(), String> {
    if s.last_ms < s.first_ms {
        return Err(format!(
            "last_ms {} is before first_ms {}",
            s.last_ms, s.first_ms
        ));
    }
    let span = s.last_ms.since(s.first_ms);
    if span > MAX_SIGHTING_SPAN_MS {
        return Err(format!(
            "spans {span} ms, at most {MAX_SIGHTING_SPAN_MS} allowed; split it"
        ));
    }
    if s.path.len() > MAX_PATH_POINTS {
        return Err(format!(
            "path has {} points, at most {MAX_PATH_POINTS} allowed",
            s.path.len()
        ));
    }
    let mut prev = s.first_ms;
    for (k, p) in s.path.iter().enumerate() {
        if p.t_ms < prev || p.t_ms > s.last_ms {
            return Err(format!(
                "path point {k} at {} ms is out of order or outside [{}, {}]",
                p.t_ms, s.first_ms, s.last_ms
            ));
        }
        prev = p.t_ms;
        let b = p.bbox;
        if ![b.x, b.y, b.w, b.h].iter().all(|v| v.is_finite()) {
            return Err(format!("path point {k} has a non-finite box"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cam() -> CameraId {
        CameraId::new("c").expect("valid id")
    }

    #[test]
    fn validation_names_kind_and_reason() {
        let too_long = Record::Camera(CameraRecord {
            camera: cam(),
            name: "x".repeat(MAX_NAME_LEN + 1),
            recorded_ms: UnixMs(0),
        });
        assert_eq!(
            too_long.validate().map_err(|e| e.to_string()),
            Err("invalid camera record: camera name is 257 bytes, at most 256 allowed".into())
        );
        let nan = Record::Identity(IdentityRecord {
            identity: IdentityId(1),
            camera: cam(),
            first_seen_ms: UnixMs(0),
            embedding: vec![0.0, f32::NAN],
            model: "test-model".into(),
        });
        assert_eq!(
            nan.validate().map_err(|e| e.to_string()),
            Err("invalid identity record: embedding value 1 is not finite".into())
        );
        let not_jpeg = Record::Snapshot(Snapshot {
            identity: IdentityId(1),
            camera: cam(),
            t_ms: UnixMs(0),
            jpeg: b"GIF89a".to_vec(),
        });
        assert!(not_jpeg.validate().is_err());
        let out_of_span = Record::Sighting(Sighting {
            identity: IdentityId(1),
            camera: cam(),
            track: TrackId(1),
            first_ms: UnixMs(10),
            last_ms: UnixMs(20),
            path: vec![BoxPoint {
                t_ms: UnixMs(21),
                bbox: BBox::default(),
            }],
        });
        assert!(out_of_span.validate().is_err());
        let self_merge = Record::Merge(IdentityMerge {
            from: IdentityId(3),
            into: IdentityId(3),
            decided_ms: UnixMs(0),
        });
        assert_eq!(
            self_merge.validate().map_err(|e| e.to_string()),
            Err("invalid merge record: merge of p3 into itself".into())
        );
    }
}
