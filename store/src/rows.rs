//! Mapping records to and from table rows. The only place that knows column lists.
//!
//! Ids of type `u64` (identities, tracks) are stored as the `i64` with the same
//! bits, so every value round-trips (re-ID mints ids with a node prefix in the
//! top 16 bits). Seqs are positive and below `i64::MAX`, so they sort as numbers.

use rusqlite::types::Type;
use rusqlite::{params, Connection, Row};
use vidar_protocol::{CameraId, IdentityId, JobId, NodeId, StageId, TrackId, UnixMs};

use crate::boxpath;
use crate::error::InvalidRecord;
use crate::record::{
    CameraRecord, Correction, CorrectionAction, IdentityMerge, IdentityRecord, JobResult,
    KeyedRecord, Record, RecordKey, Sighting, Snapshot, SplitScope, Stored, TrackRecord,
};

/// A validated record with its blob (box path or embedding) already encoded,
/// so the writer thread only binds values.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub record: Record,
    blob: Vec<u8>,
}

impl Prepared {
    /// Validates and encodes `record`.
    pub fn new(record: Record) -> Result<Self, InvalidRecord> {
        record.validate()?;
        let blob = match &record {
            Record::Sighting(s) => boxpath::encode(s.first_ms, &s.path),
            Record::Identity(i) => boxpath::encode_f32s(&i.embedding),
            Record::JobResult(r) => serde_json::to_vec(&r.items).map_err(|e| InvalidRecord {
                kind: "job_result",
                reason: format!("items as JSON: {e}"),
            })?,
            _ => Vec::new(),
        };
        Ok(Prepared { record, blob })
    }
}

/// The `u64` id as the `i64` with the same bits.
pub(crate) fn id_to_sql(id: u64) -> i64 {
    i64::from_ne_bytes(id.to_ne_bytes())
}

fn id_from_sql(v: i64) -> u64 {
    u64::from_ne_bytes(v.to_ne_bytes())
}

/// A seq as stored; seqs above `i64::MAX` do not exist.
pub(crate) fn seq_to_sql(seq: u64) -> Option<i64> {
    i64::try_from(seq).ok()
}

/// Inserts `p` under `(node, seq)` unless that key exists; returns rows inserted (0 or 1).
pub(crate) fn insert(
    conn: &Connection,
    node: &NodeId,
    seq: i64,
    p: &Prepared,
) -> rusqlite::Result<usize> {
    let n = node.as_str();
    match &p.record {
        Record::Camera(c) => conn
            .prepare_cached(
                "INSERT INTO cameras (node_id, seq, camera_id, name, recorded_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (node_id, seq) DO NOTHING",
            )?
            .execute(params![n, seq, c.camera.as_str(), c.name, c.recorded_ms]),
        Record::Track(t) => conn
            .prepare_cached(
                "INSERT INTO tracks (node_id, seq, camera_id, track_id, first_ms, last_ms, identity_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (node_id, seq) DO NOTHING",
            )?
            .execute(params![
                n,
                seq,
                t.camera.as_str(),
                id_to_sql(t.track.0),
                t.first_ms,
                t.last_ms,
                t.identity.map(|i| id_to_sql(i.0)),
            ]),
        Record::Sighting(s) => conn
            .prepare_cached(
                "INSERT INTO sightings (node_id, seq, identity_id, camera_id, track_id, first_ms, last_ms, path)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (node_id, seq) DO NOTHING",
            )?
            .execute(params![
                n,
                seq,
                id_to_sql(s.identity.0),
                s.camera.as_str(),
                id_to_sql(s.track.0),
                s.first_ms,
                s.last_ms,
                p.blob,
            ]),
        Record::Identity(i) => conn
            .prepare_cached(
                "INSERT INTO identities (node_id, seq, identity_id, camera_id, first_seen_ms, dim, embedding, model)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (node_id, seq) DO NOTHING",
            )?
            .execute(params![
                n,
                seq,
                id_to_sql(i.identity.0),
                i.camera.as_str(),
                i.first_seen_ms,
                i.embedding.len() as i64,
                p.blob,
                i.model,
            ]),
        Record::Snapshot(s) => conn
            .prepare_cached(
                "INSERT INTO snapshots (node_id, seq, identity_id, camera_id, t_ms, jpeg)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (node_id, seq) DO NOTHING",
            )?
            .execute(params![
                n,
                seq,
                id_to_sql(s.identity.0),
                s.camera.as_str(),
                s.t_ms,
                s.jpeg,
            ]),
        Record::Merge(m) => conn
            .prepare_cached(
                "INSERT INTO identity_merges (node_id, seq, from_identity, into_identity, decided_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (node_id, seq) DO NOTHING",
            )?
            .execute(params![
                n,
                seq,
                id_to_sql(m.from.0),
                id_to_sql(m.into.0),
                m.decided_ms,
            ]),
        Record::Correction(c) => {
            let (action, target, from, into, scope) = match &c.action {
                CorrectionAction::Split {
                    sighting,
                    from,
                    into,
                    scope,
                } => ("split", Some(sighting), Some(*from), Some(*into), *scope),
                CorrectionAction::Merge { from, into } => {
                    ("merge", None, Some(*from), Some(*into), SplitScope::Sighting)
                }
                CorrectionAction::Revert { correction } => {
                    ("revert", Some(correction), None, None, SplitScope::Sighting)
                }
            };
            let target_seq = match target {
                Some(k) => Some(seq_to_sql(k.seq).ok_or(rusqlite::Error::IntegralValueOutOfRange(
                    4,
                    i64::MAX,
                ))?),
                None => None,
            };
            conn.prepare_cached(
                "INSERT INTO corrections (node_id, seq, action, target_node, target_seq, from_identity, into_identity, actor, reason, decided_ms, scope)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT (node_id, seq) DO NOTHING",
            )?
            .execute(params![
                n,
                seq,
                action,
                target.map(|k| k.node.as_str()),
                target_seq,
                from.map(|i| id_to_sql(i.0)),
                into.map(|i| id_to_sql(i.0)),
                c.actor,
                c.reason,
                c.decided_ms,
                scope.as_str(),
            ])
        }
        Record::JobResult(r) => conn
            .prepare_cached(
                "INSERT INTO job_results (node_id, seq, job_id, stage, camera_id, captured_ms, item, kind, items)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (node_id, seq) DO NOTHING",
            )?
            .execute(params![
                n,
                seq,
                r.job.as_str(),
                r.stage.as_str(),
                r.camera.as_str(),
                r.captured_ms,
                i64::try_from(r.item).unwrap_or(i64::MAX),
                r.kind.as_str(),
                std::str::from_utf8(&p.blob).unwrap_or("[]"),
            ]),
    }
}

fn job_result(row: &Row<'_>) -> rusqlite::Result<JobResult> {
    let text_at = |col: usize| -> rusqlite::Result<String> { row.get(col) };
    let job = text_at(2)?;
    let stage = text_at(3)?;
    let kind = text_at(7)?;
    let items = text_at(8)?;
    let item: i64 = row.get(6)?;
    Ok(JobResult {
        job: JobId::new(&job).map_err(|e| bad(2, Type::Text, format!("job id {job:?}: {e}")))?,
        stage: StageId::new(&stage)
            .map_err(|e| bad(3, Type::Text, format!("stage {stage:?}: {e}")))?,
        camera: camera_at(row, 4)?,
        captured_ms: row.get(5)?,
        item: u64::try_from(item).map_err(|_| bad(6, Type::Integer, format!("item {item}")))?,
        kind: serde_json::from_value(serde_json::Value::String(kind.clone()))
            .map_err(|e| bad(7, Type::Text, format!("kind {kind:?}: {e}")))?,
        items: serde_json::from_str(&items)
            .map_err(|e| bad(8, Type::Text, format!("items: {e}")))?,
    })
}

/// Decodes a row selected with [`JOB_RESULT_COLUMNS`].
pub(crate) fn job_result_row(row: &Row<'_>) -> rusqlite::Result<Stored<JobResult>> {
    match decode("job_results", row)? {
        KeyedRecord {
            key,
            record: Record::JobResult(value),
        } => Ok(Stored { key, value }),
        _ => Err(bad(0, Type::Null, "not a job result".into())),
    }
}

/// One record table: its name, the column list [`decode`] expects after
/// `node_id, seq`, and the column retention compares against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Table {
    pub name: &'static str,
    pub columns: &'static str,
    pub time_column: &'static str,
    /// SQL for the bytes of a row's variable-size payload (text and blobs).
    pub size_expr: &'static str,
    /// Whether `prune_acknowledged` deletes from it (cameras are configuration, kept).
    pub prunable: bool,
}

/// Every record table, in a fixed order.
pub(crate) const TABLES: [Table; 8] = [
    Table {
        name: "cameras",
        size_expr: "length(name)",
        columns: "node_id, seq, camera_id, name, recorded_ms",
        time_column: "recorded_ms",
        prunable: false,
    },
    Table {
        name: "tracks",
        size_expr: "0",
        columns: "node_id, seq, camera_id, track_id, first_ms, last_ms, identity_id",
        time_column: "last_ms",
        prunable: true,
    },
    Table {
        name: "sightings",
        size_expr: "length(path)",
        columns: "node_id, seq, identity_id, camera_id, track_id, first_ms, last_ms, path",
        time_column: "last_ms",
        prunable: true,
    },
    Table {
        name: "identities",
        size_expr: "length(embedding)",
        columns: "node_id, seq, identity_id, camera_id, first_seen_ms, dim, embedding, model",
        time_column: "first_seen_ms",
        prunable: true,
    },
    Table {
        name: "snapshots",
        size_expr: "length(jpeg)",
        columns: "node_id, seq, identity_id, camera_id, t_ms, jpeg",
        time_column: "t_ms",
        prunable: true,
    },
    Table {
        name: "identity_merges",
        size_expr: "0",
        columns: "node_id, seq, from_identity, into_identity, decided_ms",
        time_column: "decided_ms",
        prunable: true,
    },
    Table {
        name: "corrections",
        size_expr: "length(actor) + length(reason)",
        columns: "node_id, seq, action, target_node, target_seq, from_identity, into_identity, actor, reason, decided_ms, scope",
        time_column: "decided_ms",
        // The audit trail of who changed what: kept for good.
        prunable: false,
    },
    Table {
        name: "job_results",
        size_expr: "length(items)",
        columns: "node_id, seq, job_id, stage, camera_id, captured_ms, item, kind, items",
        time_column: "captured_ms",
        prunable: true,
    },
];

/// The column list of `job_results`.
pub(crate) const JOB_RESULT_COLUMNS: &str = TABLES[7].columns;

/// The column list of `sightings`, for queries that return sightings.
pub(crate) const SIGHTING_COLUMNS: &str = TABLES[2].columns;
/// The column list of `snapshots`.
pub(crate) const SNAPSHOT_COLUMNS: &str = TABLES[4].columns;
/// The column list of `identities`.
pub(crate) const IDENTITY_COLUMNS: &str = TABLES[3].columns;
/// The column list of `cameras`.
pub(crate) const CAMERA_COLUMNS: &str = TABLES[0].columns;
/// The columns of a sighting's [`crate::reader::Span`].
pub(crate) const SPAN_COLUMNS: &str = "node_id, seq, identity_id, camera_id, first_ms, last_ms";

/// Decodes a row selected with [`SPAN_COLUMNS`].
pub(crate) fn span_row(row: &Row<'_>) -> rusqlite::Result<crate::reader::Span> {
    Ok(crate::reader::Span {
        key: key_at(row)?,
        identity: IdentityId(id_at(row, 2)?),
        camera: camera_at(row, 3)?,
        first_ms: row.get(4)?,
        last_ms: row.get(5)?,
    })
}

/// The column list of `corrections`.
pub(crate) const CORRECTION_COLUMNS: &str = TABLES[6].columns;

fn bad(col: usize, ty: Type, msg: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, ty, msg.into())
}

fn node_at(row: &Row<'_>, col: usize) -> rusqlite::Result<NodeId> {
    let s: String = row.get(col)?;
    NodeId::new(&s).map_err(|e| bad(col, Type::Text, format!("node id {s:?}: {e}")))
}

fn camera_at(row: &Row<'_>, col: usize) -> rusqlite::Result<CameraId> {
    let s: String = row.get(col)?;
    CameraId::new(&s).map_err(|e| bad(col, Type::Text, format!("camera id {s:?}: {e}")))
}

pub(crate) fn id_at(row: &Row<'_>, col: usize) -> rusqlite::Result<u64> {
    Ok(id_from_sql(row.get(col)?))
}

pub(crate) fn key_at(row: &Row<'_>) -> rusqlite::Result<RecordKey> {
    let seq: i64 = row.get(1)?;
    let seq = u64::try_from(seq).map_err(|_| bad(1, Type::Integer, format!("seq {seq}")))?;
    Ok(RecordKey {
        node: node_at(row, 0)?,
        seq,
    })
}

/// Decodes a row of `table` selected with its `columns`.
pub(crate) fn decode(table: &str, row: &Row<'_>) -> rusqlite::Result<KeyedRecord> {
    let key = key_at(row)?;
    let record = match table {
        "cameras" => Record::Camera(CameraRecord {
            camera: camera_at(row, 2)?,
            name: row.get(3)?,
            recorded_ms: row.get(4)?,
        }),
        "tracks" => Record::Track(TrackRecord {
            camera: camera_at(row, 2)?,
            track: TrackId(id_at(row, 3)?),
            first_ms: row.get(4)?,
            last_ms: row.get(5)?,
            identity: row
                .get::<_, Option<i64>>(6)?
                .map(|v| IdentityId(id_from_sql(v))),
        }),
        "sightings" => Record::Sighting(sighting(row)?),
        "identities" => {
            let dim: i64 = row.get(5)?;
            let blob: Vec<u8> = row.get(6)?;
            let dim =
                usize::try_from(dim).map_err(|_| bad(5, Type::Integer, format!("dim {dim}")))?;
            Record::Identity(IdentityRecord {
                identity: IdentityId(id_at(row, 2)?),
                camera: camera_at(row, 3)?,
                first_seen_ms: row.get(4)?,
                embedding: boxpath::decode_f32s(&blob, dim).map_err(|m| bad(6, Type::Blob, m))?,
                model: row.get(7)?,
            })
        }
        "snapshots" => Record::Snapshot(Snapshot {
            identity: IdentityId(id_at(row, 2)?),
            camera: camera_at(row, 3)?,
            t_ms: row.get(4)?,
            jpeg: row.get(5)?,
        }),
        "identity_merges" => Record::Merge(IdentityMerge {
            from: IdentityId(id_at(row, 2)?),
            into: IdentityId(id_at(row, 3)?),
            decided_ms: row.get(4)?,
        }),
        "corrections" => Record::Correction(correction(row)?),
        "job_results" => Record::JobResult(job_result(row)?),
        other => return Err(bad(0, Type::Null, format!("no record table {other:?}"))),
    };
    Ok(KeyedRecord { key, record })
}

fn correction(row: &Row<'_>) -> rusqlite::Result<Correction> {
    let action: String = row.get(2)?;
    let target = || -> rusqlite::Result<RecordKey> {
        let seq: i64 = row.get(4)?;
        Ok(RecordKey {
            node: node_at(row, 3)?,
            seq: u64::try_from(seq).map_err(|_| bad(4, Type::Integer, format!("seq {seq}")))?,
        })
    };
    let ident = |col: usize| id_at(row, col).map(IdentityId);
    let action = match action.as_str() {
        "split" => CorrectionAction::Split {
            sighting: target()?,
            from: ident(5)?,
            into: ident(6)?,
            scope: match row.get::<_, String>(10)?.as_str() {
                "sighting" => SplitScope::Sighting,
                "track" => SplitScope::Track,
                other => return Err(bad(10, Type::Text, format!("split scope {other:?}"))),
            },
        },
        "merge" => CorrectionAction::Merge {
            from: ident(5)?,
            into: ident(6)?,
        },
        "revert" => CorrectionAction::Revert {
            correction: target()?,
        },
        other => return Err(bad(2, Type::Text, format!("correction action {other:?}"))),
    };
    Ok(Correction {
        action,
        actor: row.get(7)?,
        reason: row.get(8)?,
        decided_ms: row.get(9)?,
    })
}

/// Decodes a row selected with [`CORRECTION_COLUMNS`].
pub(crate) fn correction_row(row: &Row<'_>) -> rusqlite::Result<Stored<Correction>> {
    Ok(Stored {
        key: key_at(row)?,
        value: correction(row)?,
    })
}

fn sighting(row: &Row<'_>) -> rusqlite::Result<Sighting> {
    let first_ms: UnixMs = row.get(5)?;
    let blob: Vec<u8> = row.get(7)?;
    Ok(Sighting {
        identity: IdentityId(id_at(row, 2)?),
        camera: camera_at(row, 3)?,
        track: TrackId(id_at(row, 4)?),
        first_ms,
        last_ms: row.get(6)?,
        path: boxpath::decode(first_ms, &blob).map_err(|m| bad(7, Type::Blob, m))?,
    })
}

/// Decodes a row selected with [`SIGHTING_COLUMNS`].
pub(crate) fn sighting_row(row: &Row<'_>) -> rusqlite::Result<Stored<Sighting>> {
    Ok(Stored {
        key: key_at(row)?,
        value: sighting(row)?,
    })
}

/// Decodes a row selected with [`SNAPSHOT_COLUMNS`].
pub(crate) fn snapshot_row(row: &Row<'_>) -> rusqlite::Result<Stored<Snapshot>> {
    match decode("snapshots", row)? {
        KeyedRecord {
            key,
            record: Record::Snapshot(value),
        } => Ok(Stored { key, value }),
        _ => Err(bad(0, Type::Null, "not a snapshot".into())),
    }
}

/// Decodes a row selected with [`IDENTITY_COLUMNS`].
pub(crate) fn identity_row(row: &Row<'_>) -> rusqlite::Result<Stored<IdentityRecord>> {
    match decode("identities", row)? {
        KeyedRecord {
            key,
            record: Record::Identity(value),
        } => Ok(Stored { key, value }),
        _ => Err(bad(0, Type::Null, "not an identity".into())),
    }
}

/// Decodes a row selected with [`CAMERA_COLUMNS`].
pub(crate) fn camera_row(row: &Row<'_>) -> rusqlite::Result<Stored<CameraRecord>> {
    match decode("cameras", row)? {
        KeyedRecord {
            key,
            record: Record::Camera(value),
        } => Ok(Stored { key, value }),
        _ => Err(bad(0, Type::Null, "not a camera".into())),
    }
}
