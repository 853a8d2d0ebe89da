//! Read-only access: the queries behind `vidar-edge query`, the master's API, and
//! the edge side of sync. Each [`Reader`] owns its own read-only connection, so
//! any number of them run beside the writer (WAL). Every value is a bound
//! parameter; only constant table and column names are formatted into SQL.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use vidar_protocol::{CameraId, IdentityId, NodeId, UnixMs};

use crate::error::StoreError;
use crate::record::{
    CameraRecord, IdentityRecord, KeyedRecord, RecordKey, Sighting, Snapshot, Stored, TimeRange,
    MAX_SIGHTING_SPAN_MS,
};
use crate::rows::{self, id_to_sql, seq_to_sql, TABLES};
use crate::schema::classify;

/// Most rows one query returns, whatever `limit` a caller asks for.
pub const MAX_QUERY_ROWS: usize = 100_000;
/// Bytes counted for a record's fixed-size fields by [`Reader::records_after_within`].
pub const RECORD_OVERHEAD_BYTES: usize = 64;
/// Most identities in one merge cluster that trajectory queries follow.
pub const MAX_CLUSTER: usize = 10_000;

/// The identities connected to `?1` by merges, in either direction: the
/// master's own and operators' merges in force.
const CLUSTER_CTE: &str = "WITH RECURSIVE cluster(id) AS (
    VALUES (?1)
    UNION SELECT m.into_identity FROM identity_merges m JOIN cluster c ON m.from_identity = c.id
    UNION SELECT m.from_identity FROM identity_merges m JOIN cluster c ON m.into_identity = c.id
    UNION SELECT m.into_identity FROM corrections_in_force m JOIN cluster c
        ON m.action = 'merge' AND m.from_identity = c.id
    UNION SELECT m.from_identity FROM corrections_in_force m JOIN cluster c
        ON m.action = 'merge' AND m.into_identity = c.id
    LIMIT 10000
)";

/// Each sighting moved by a split in force, and the identity it belongs to
/// now (its newest split wins, as in [`crate::Corrections`]).
const MOVED_CTE: &str = "moved(node_id, seq, into_identity) AS MATERIALIZED (
    SELECT node_id, seq, into_identity FROM (
        SELECT node_id, seq, into_identity, row_number() OVER (
            PARTITION BY node_id, seq ORDER BY decided_ms DESC, cnode DESC, cseq DESC) AS newest
        FROM split_pieces)
    WHERE newest = 1
)";

/// An identity's presence within a time range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentitySeen {
    /// The identity (as recorded, merges not applied).
    pub identity: IdentityId,
    /// Start of its earliest sighting overlapping the range.
    pub first_ms: UnixMs,
    /// End of its latest sighting overlapping the range.
    pub last_ms: UnixMs,
    /// Sightings overlapping the range.
    pub sightings: u64,
    /// Distinct cameras among them.
    pub cameras: u64,
}

/// Where and when a sighting was, without its box path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// The sighting's key.
    pub key: RecordKey,
    /// Its identity as recorded.
    pub identity: IdentityId,
    /// Its camera.
    pub camera: CameraId,
    /// Start.
    pub first_ms: UnixMs,
    /// End (inclusive).
    pub last_ms: UnixMs,
}

/// A read-only connection to a store database.
#[derive(Debug)]
pub struct Reader {
    conn: Connection,
    path: PathBuf,
}

fn limit_sql(limit: usize) -> i64 {
    limit.min(MAX_QUERY_ROWS) as i64
}

/// The lowest `first_ms` a sighting overlapping `range` can have.
fn lowest_first(range: TimeRange) -> UnixMs {
    range.start_ms.add_ms(-MAX_SIGHTING_SPAN_MS)
}

impl Reader {
    /// Opens `path` read-only; it must exist and be at this build's schema version.
    pub fn open(path: impl AsRef<Path>) -> Result<Reader, StoreError> {
        let path = path.as_ref().to_path_buf();
        let conn = crate::schema::open_read_only(&path, Duration::from_secs(5))?;
        Ok(Reader { conn, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn err(
        &self,
        context: &'static str,
    ) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
        move |e| classify(e, &self.path, context)
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Every identity merged with `identity`, directly or through others, itself included, sorted.
    pub fn identity_cluster(&self, identity: IdentityId) -> Result<Vec<IdentityId>, StoreError> {
        let sql = format!("{CLUSTER_CTE} SELECT id FROM cluster");
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(self.err("preparing identity_cluster"))?;
        let mut ids = stmt
            .query_map([id_to_sql(identity.0)], |r| r.get::<_, i64>(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<i64>>>())
            .map_err(self.err("querying identity_cluster"))?
            .into_iter()
            .map(|v| IdentityId(u64::from_ne_bytes(v.to_ne_bytes())))
            .collect::<Vec<_>>();
        ids.sort();
        Ok(ids)
    }

    /// The sightings of `identity` and of every identity merged with it, across
    /// cameras and nodes, overlapping `range`, in time order (at most `limit`),
    /// with operators' corrections followed: a sighting split off the cluster
    /// is left out, one split into it is in. Records are returned as
    /// recorded; [`crate::Corrections::identity_of`] says whom each belongs to now.
    pub fn trajectory(
        &self,
        identity: IdentityId,
        range: TimeRange,
        limit: usize,
    ) -> Result<Vec<Stored<Sighting>>, StoreError> {
        self.trajectory_rows(
            identity,
            range,
            limit,
            rows::SIGHTING_COLUMNS,
            rows::sighting_row,
            |s| (&s.key, s.value.identity),
        )
    }

    /// [`trajectory`](Self::trajectory)'s sightings as spans only (no box
    /// paths loaded): where and when, for checks over a whole history.
    pub fn trajectory_spans(
        &self,
        identity: IdentityId,
        range: TimeRange,
        limit: usize,
    ) -> Result<Vec<Span>, StoreError> {
        self.trajectory_rows(
            identity,
            range,
            limit,
            rows::SPAN_COLUMNS,
            rows::span_row,
            |s| (&s.key, s.identity),
        )
    }

    fn trajectory_rows<T>(
        &self,
        identity: IdentityId,
        range: TimeRange,
        limit: usize,
        cols: &str,
        row: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
        key_of: fn(&T) -> (&RecordKey, IdentityId),
    ) -> Result<Vec<T>, StoreError> {
        let cluster: HashSet<IdentityId> = self.identity_cluster(identity)?.into_iter().collect();
        let corrections = self.corrections_in_force()?;
        let sql = format!(
            "{CLUSTER_CTE} SELECT {cols} FROM sightings
             WHERE identity_id IN (SELECT id FROM cluster)
               AND first_ms >= ?2 AND first_ms < ?3 AND last_ms >= ?4
             UNION ALL SELECT {cols} FROM sightings
             WHERE (node_id, seq) IN (SELECT node_id, seq FROM split_pieces
                    WHERE into_identity IN (SELECT id FROM cluster))
               AND first_ms >= ?2 AND first_ms < ?3 AND last_ms >= ?4
             ORDER BY first_ms, node_id, seq LIMIT ?5"
        );
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(self.err("preparing trajectory"))?;
        // Sightings split off the cluster are dropped below: ask for enough.
        let wanted = limit.min(MAX_QUERY_ROWS);
        let rows: Vec<T> = stmt
            .query_map(
                params![
                    id_to_sql(identity.0),
                    lowest_first(range),
                    range.end_ms,
                    range.start_ms,
                    (wanted + corrections.split_count()) as i64
                ],
                row,
            )
            .and_then(|rows| rows.collect())
            .map_err(self.err("querying trajectory"))?;
        let mut out: Vec<T> = Vec::with_capacity(rows.len().min(wanted));
        let mut last: Option<RecordKey> = None;
        for s in rows {
            let (key, recorded) = key_of(&s);
            let now = corrections.identity_of(key, recorded);
            let repeated = last.as_ref() == Some(key);
            if cluster.contains(&now) && !repeated && out.len() < wanted {
                last = Some(key.clone());
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Sightings on `camera` overlapping `range`, in time order (at most `limit`).
    pub fn sightings_by_camera(
        &self,
        camera: &CameraId,
        range: TimeRange,
        limit: usize,
    ) -> Result<Vec<Stored<Sighting>>, StoreError> {
        let sql = format!(
            "SELECT {} FROM sightings
             WHERE camera_id = ?1 AND first_ms >= ?2 AND first_ms < ?3 AND last_ms >= ?4
             ORDER BY first_ms, node_id, seq LIMIT ?5",
            rows::SIGHTING_COLUMNS
        );
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(self.err("preparing sightings_by_camera"))?;
        let rows = stmt
            .query_map(
                params![
                    camera.as_str(),
                    lowest_first(range),
                    range.end_ms,
                    range.start_ms,
                    limit_sql(limit)
                ],
                rows::sighting_row,
            )
            .and_then(|rows| rows.collect())
            .map_err(self.err("querying sightings_by_camera"))?;
        Ok(rows)
    }

    /// Sightings on any camera overlapping `range`, in time order (at most `limit`).
    pub fn sightings_in_range(
        &self,
        range: TimeRange,
        limit: usize,
    ) -> Result<Vec<Stored<Sighting>>, StoreError> {
        let sql = format!(
            "SELECT {} FROM sightings
             WHERE first_ms >= ?1 AND first_ms < ?2 AND last_ms >= ?3
             ORDER BY first_ms, node_id, seq LIMIT ?4",
            rows::SIGHTING_COLUMNS
        );
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(self.err("preparing sightings_in_range"))?;
        let rows = stmt
            .query_map(
                params![
                    lowest_first(range),
                    range.end_ms,
                    range.start_ms,
                    limit_sql(limit)
                ],
                rows::sighting_row,
            )
            .and_then(|rows| rows.collect())
            .map_err(self.err("querying sightings_in_range"))?;
        Ok(rows)
    }

    /// Identities with a sighting overlapping `range`, earliest first (at most
    /// `limit`); a sighting moved by a split in force counts for its new identity.
    pub fn identities_in_range(
        &self,
        range: TimeRange,
        limit: usize,
    ) -> Result<Vec<IdentitySeen>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "WITH {MOVED_CTE}
                     SELECT coalesce(m.into_identity, s.identity_id) AS who, min(s.first_ms),
                            max(s.last_ms), count(*), count(DISTINCT s.camera_id)
                     FROM sightings s LEFT JOIN moved m ON m.node_id = s.node_id AND m.seq = s.seq
                     WHERE s.first_ms >= ?1 AND s.first_ms < ?2 AND s.last_ms >= ?3
                     GROUP BY who ORDER BY min(s.first_ms), who LIMIT ?4"
            ))
            .map_err(self.err("preparing identities_in_range"))?;
        let rows = stmt
            .query_map(
                params![
                    lowest_first(range),
                    range.end_ms,
                    range.start_ms,
                    limit_sql(limit)
                ],
                |r| {
                    Ok(IdentitySeen {
                        identity: IdentityId(u64::from_ne_bytes(r.get::<_, i64>(0)?.to_ne_bytes())),
                        first_ms: r.get(1)?,
                        last_ms: r.get(2)?,
                        sightings: r.get::<_, i64>(3)?.max(0) as u64,
                        cameras: r.get::<_, i64>(4)?.max(0) as u64,
                    })
                },
            )
            .and_then(|rows| rows.collect())
            .map_err(self.err("querying identities_in_range"))?;
        Ok(rows)
    }

    /// Snapshots of `identity` and the identities merged with it, oldest first (at most `limit`).
    pub fn snapshots(
        &self,
        identity: IdentityId,
        limit: usize,
    ) -> Result<Vec<Stored<Snapshot>>, StoreError> {
        let sql = format!(
            "{CLUSTER_CTE} SELECT {} FROM snapshots
             WHERE identity_id IN (SELECT id FROM cluster)
             ORDER BY t_ms, node_id, seq LIMIT ?2",
            rows::SNAPSHOT_COLUMNS
        );
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(self.err("preparing snapshots"))?;
        let rows = stmt
            .query_map(
                params![id_to_sql(identity.0), limit_sql(limit)],
                rows::snapshot_row,
            )
            .and_then(|rows| rows.collect())
            .map_err(self.err("querying snapshots"))?;
        Ok(rows)
    }

    /// The newest snapshot of every identity with one taken at or after
    /// `since`, newest first (at most `limit`; merges not followed).
    pub fn latest_snapshots(
        &self,
        since: UnixMs,
        limit: usize,
    ) -> Result<Vec<Stored<Snapshot>>, StoreError> {
        let sql = format!(
            "SELECT {} FROM snapshots s
             JOIN (SELECT identity_id AS id, max(t_ms) AS t FROM snapshots
                   WHERE t_ms >= ?1 GROUP BY identity_id) newest
               ON s.identity_id = newest.id AND s.t_ms = newest.t
             ORDER BY s.t_ms DESC, s.identity_id, s.node_id, s.seq",
            rows::SNAPSHOT_COLUMNS
        );
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(self.err("preparing latest_snapshots"))?;
        let rows: Vec<Stored<Snapshot>> = stmt
            .query_map(params![since], rows::snapshot_row)
            .and_then(|rows| rows.collect())
            .map_err(self.err("querying latest_snapshots"))?;
        // One per identity (two taken in the same millisecond: the first).
        let mut seen = std::collections::HashSet::new();
        Ok(rows
            .into_iter()
            .filter(|r| seen.insert(r.value.identity))
            .take(limit)
            .collect())
    }

    /// The snapshot of `identity` (or an identity merged with it) best for a
    /// sighting on `camera` at `t_ms`: on that camera, closest in time; on any
    /// camera when that one has none; the oldest when neither is given.
    pub fn snapshot_near(
        &self,
        identity: IdentityId,
        camera: Option<&CameraId>,
        t_ms: Option<UnixMs>,
    ) -> Result<Option<Stored<Snapshot>>, StoreError> {
        let sql = format!(
            "{CLUSTER_CTE} SELECT {} FROM snapshots
             WHERE identity_id IN (SELECT id FROM cluster)
             ORDER BY (camera_id = ?2) DESC, abs(t_ms - ?3), t_ms, node_id, seq LIMIT 1",
            rows::SNAPSHOT_COLUMNS
        );
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(self.err("preparing snapshot_near"))?;
        let rows: Vec<Stored<Snapshot>> = stmt
            .query_map(
                params![
                    id_to_sql(identity.0),
                    camera.map(|c| c.as_str().to_owned()),
                    t_ms.unwrap_or(UnixMs(0))
                ],
                rows::snapshot_row,
            )
            .and_then(|rows| rows.collect())
            .map_err(self.err("querying snapshot_near"))?;
        Ok(rows.into_iter().next())
    }

    /// Embedding records of `identity` (not following merges), oldest first.
    pub fn identity_records(
        &self,
        identity: IdentityId,
    ) -> Result<Vec<Stored<IdentityRecord>>, StoreError> {
        let sql = format!(
            "SELECT {} FROM identities WHERE identity_id = ?1 ORDER BY first_seen_ms, node_id, seq LIMIT {MAX_QUERY_ROWS}",
            rows::IDENTITY_COLUMNS
        );
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(self.err("preparing identity_records"))?;
        let rows = stmt
            .query_map([id_to_sql(identity.0)], rows::identity_row)
            .and_then(|rows| rows.collect())
            .map_err(self.err("querying identity_records"))?;
        Ok(rows)
    }

    /// The highest identity id in `lo..=hi` found in identity or sighting records,
    /// so a node restarting can resume minting past the ids it (or a peer) used.
    pub fn max_identity_between(
        &self,
        lo: IdentityId,
        hi: IdentityId,
    ) -> Result<Option<IdentityId>, StoreError> {
        if lo > hi {
            return Ok(None);
        }
        // Ids are stored as i64 with the same bits: each half of the u64 range is
        // contiguous and ordered as i64, so query each half the range touches.
        const TOP: u64 = 1 << 63;
        let mut halves = Vec::new();
        if lo.0 < TOP {
            halves.push((lo.0, hi.0.min(TOP - 1)));
        }
        if hi.0 >= TOP {
            halves.push((lo.0.max(TOP), hi.0));
        }
        let mut best: Option<u64> = None;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT max(m) FROM (
                    SELECT max(identity_id) AS m FROM identities WHERE identity_id BETWEEN ?1 AND ?2
                    UNION ALL
                    SELECT max(identity_id) FROM sightings WHERE identity_id BETWEEN ?1 AND ?2)",
            )
            .map_err(self.err("preparing max_identity_between"))?;
        for (a, b) in halves {
            let m: Option<i64> = stmt
                .query_row(params![id_to_sql(a), id_to_sql(b)], |r| r.get(0))
                .map_err(self.err("querying max_identity_between"))?;
            if let Some(m) = m.map(|v| u64::from_ne_bytes(v.to_ne_bytes())) {
                best = Some(best.map_or(m, |x| x.max(m)));
            }
        }
        Ok(best.map(IdentityId))
    }

    /// Job `job`'s results: how many there are, and the newest `limit`
    /// (newest first).
    pub fn job_results(
        &self,
        job: &vidar_protocol::JobId,
        limit: usize,
    ) -> Result<(u64, Vec<Stored<crate::record::JobResult>>), StoreError> {
        let total: i64 = self
            .conn
            .prepare_cached("SELECT count(*) FROM job_results WHERE job_id = ?1")
            .and_then(|mut s| s.query_row(params![job.as_str()], |r| r.get(0)))
            .map_err(self.err("counting job results"))?;
        let sql = format!(
            "SELECT {} FROM job_results WHERE job_id = ?1
             ORDER BY captured_ms DESC, node_id, seq LIMIT ?2",
            rows::JOB_RESULT_COLUMNS
        );
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(self.err("preparing job results"))?;
        let rows = stmt
            .query_map(
                params![job.as_str(), limit_sql(limit)],
                rows::job_result_row,
            )
            .and_then(|rows| rows.collect())
            .map_err(self.err("querying job results"))?;
        Ok((u64::try_from(total).unwrap_or(0), rows))
    }

    /// The latest record of each camera (by node, then seq).
    pub fn cameras(&self) -> Result<Vec<Stored<CameraRecord>>, StoreError> {
        let sql = format!(
            "SELECT {} FROM cameras c WHERE seq = (SELECT max(seq) FROM cameras d
               WHERE d.camera_id = c.camera_id AND d.node_id = c.node_id)
             ORDER BY camera_id, node_id LIMIT {MAX_QUERY_ROWS}",
            rows::CAMERA_COLUMNS
        );
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(self.err("preparing cameras"))?;
        let rows = stmt
            .query_map([], rows::camera_row)
            .and_then(|rows| rows.collect())
            .map_err(self.err("querying cameras"))?;
        Ok(rows)
    }

    /// Edge side of sync: `node`'s records with seq above `after`, all kinds, in
    /// seq order, at most `limit`. Read in one snapshot, so the result has no gap:
    /// every seq of `node` between `after` and the last returned one is in it
    /// (unless pruned, which only happens to acknowledged seqs).
    pub fn records_after(
        &self,
        node: &NodeId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<KeyedRecord>, StoreError> {
        self.records_after_within(node, after, limit, usize::MAX)
    }

    /// [`records_after`](Self::records_after), also cut before the batch's size
    /// passes `max_bytes` (text and blob bytes plus [`RECORD_OVERHEAD_BYTES`] a
    /// record), so a sync message stays bounded; the first record is always
    /// included. Only the records returned are loaded.
    pub fn records_after_within(
        &self,
        node: &NodeId,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<KeyedRecord>, StoreError> {
        let after = seq_to_sql(after).unwrap_or(i64::MAX);
        let limit = limit.min(MAX_QUERY_ROWS);
        // One read transaction: without it, a commit between two tables' queries
        // could hide a lower seq behind a returned higher one, and the cursor
        // would skip it for ever.
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(self.err("starting the records_after snapshot"))?;
        // Pass 1: seqs and sizes only, to find where the batch ends.
        let mut sizes: Vec<(i64, i64)> = Vec::new();
        for t in TABLES {
            let sql = format!(
                "SELECT seq, {} FROM {} WHERE node_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                t.size_expr, t.name
            );
            let mut stmt = tx
                .prepare_cached(&sql)
                .map_err(self.err("preparing records_after"))?;
            let rows = stmt
                .query_map(params![node.as_str(), after, limit as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(self.err("querying records_after"))?;
            sizes.extend(rows);
        }
        sizes.sort_unstable();
        let mut total = 0usize;
        let mut last = None;
        for (k, &(seq, size)) in sizes.iter().take(limit).enumerate() {
            let bytes = usize::try_from(size)
                .unwrap_or(0)
                .saturating_add(RECORD_OVERHEAD_BYTES);
            if k > 0 && total.saturating_add(bytes) > max_bytes {
                break;
            }
            total = total.saturating_add(bytes);
            last = Some(seq);
        }
        let Some(last) = last else {
            return Ok(Vec::new());
        };
        // Pass 2: the records up to the cut.
        let mut all: Vec<KeyedRecord> = Vec::new();
        for t in TABLES {
            let sql = format!(
                "SELECT {} FROM {} WHERE node_id = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq",
                t.columns, t.name
            );
            let mut stmt = tx
                .prepare_cached(&sql)
                .map_err(self.err("preparing records_after"))?;
            let rows = stmt
                .query_map(params![node.as_str(), after, last], |r| {
                    rows::decode(t.name, r)
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(self.err("querying records_after"))?;
            all.extend(rows);
        }
        drop(tx);
        all.sort_by_key(|r| r.key.seq);
        Ok(all)
    }

    /// The cursor stored for `peer` (see `WriterHandle::advance_cursor`), if any.
    pub fn cursor(&self, peer: &NodeId) -> Result<Option<u64>, StoreError> {
        let v: Option<i64> = self
            .conn
            .prepare_cached("SELECT acked_seq FROM sync_cursors WHERE peer = ?1")
            .and_then(|mut s| s.query_row([peer.as_str()], |r| r.get(0)).optional())
            .map_err(self.err("reading a cursor"))?;
        Ok(v.and_then(|c| u64::try_from(c).ok()))
    }

    /// The highest seq `node`'s writer has committed in this database (0: none).
    pub fn last_seq(&self, node: &NodeId) -> Result<u64, StoreError> {
        let v: Option<i64> = self
            .conn
            .prepare_cached("SELECT next_seq - 1 FROM node_seq WHERE node_id = ?1")
            .and_then(|mut s| s.query_row([node.as_str()], |r| r.get(0)).optional())
            .map_err(self.err("reading the seq counter"))?;
        Ok(v.and_then(|c| u64::try_from(c).ok()).unwrap_or(0))
    }

    /// Records of each kind in the database, as `(table, count)`, for checks and metrics.
    pub fn counts(&self) -> Result<Vec<(&'static str, u64)>, StoreError> {
        TABLES
            .iter()
            .map(|t| {
                let n: i64 = self
                    .conn
                    .query_row(&format!("SELECT count(*) FROM {}", t.name), [], |r| {
                        r.get(0)
                    })
                    .map_err(self.err("counting records"))?;
                Ok((t.name, n.max(0) as u64))
            })
            .collect()
    }
}
