//! A node's training samples (issue 13, EdgeSplit): crops of its own
//! confirmed tracks, kept in a database file of their own (`training.db`
//! beside the node's database by default), never synchronised: sync reads
//! only the record tables of the node's database, and this file has none.
//!
//! - A **tracklet** is one track of one camera: its span, the identity the
//!   node decided for it (if any) and how sure it was. Its id is the
//!   pseudo-identity the trainer learns: two tracklets that overlap in time
//!   on one camera are two people for certain; tracklets of one identity
//!   decided with a high similarity may be taken as one person.
//! - A **sample** is one crop of a tracklet (a JPEG of the person's box),
//!   the best few of the track by the re-ID quality rules.
//!
//! Bounded: at most `max_samples` samples (the oldest tracklets go first)
//! and nothing older than the retention. The file and its folder are the
//! owner's only (0600, 0700).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use vidar_protocol::{CameraId, IdentityId, TrackId, UnixMs};

use crate::error::{sqlite, StoreError};
use crate::schema::{create_private, create_private_dir};

/// `PRAGMA application_id` of a training file: "VIDT".
const TRAINING_APPLICATION_ID: i32 = 0x5649_4454;
/// `PRAGMA user_version` of the layout below.
const TRAINING_VERSION: i32 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tracklets (
    id          INTEGER PRIMARY KEY,
    camera_id   TEXT NOT NULL,
    track_id    INTEGER NOT NULL,
    identity_id INTEGER,
    similarity  REAL,
    first_ms    INTEGER NOT NULL,
    last_ms     INTEGER NOT NULL CHECK (last_ms >= first_ms),
    crops       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS tracklets_by_end ON tracklets (last_ms);
CREATE TABLE IF NOT EXISTS samples (
    tracklet_id INTEGER NOT NULL REFERENCES tracklets (id) ON DELETE CASCADE,
    t_ms        INTEGER NOT NULL,
    quality     REAL NOT NULL,
    jpeg        BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS samples_by_tracklet ON samples (tracklet_id);
";

/// One crop of a track.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Capture time.
    pub t_ms: UnixMs,
    /// Its re-ID quality (size, score, whole, alone), 0..=1.
    pub quality: f32,
    /// The person's box, as a JPEG.
    pub jpeg: Vec<u8>,
}

/// One track of one camera and its best crops.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracklet {
    /// Its id in the file (0 before it is stored): the pseudo-identity.
    pub id: i64,
    /// The camera.
    pub camera: CameraId,
    /// The tracker's id (reused after a restart: `id` is the tracklet's own).
    pub track: TrackId,
    /// The identity the node decided, if any, and with what similarity
    /// (1 for a mint).
    pub identity: Option<(IdentityId, f32)>,
    /// First and last time the track was seen.
    pub first_ms: UnixMs,
    /// Last time the track was seen.
    pub last_ms: UnixMs,
    /// Crops embedded over the track.
    pub crops: u32,
    /// The crops kept.
    pub samples: Vec<Sample>,
}

/// Bounds of a training file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrainingBounds {
    /// Most samples kept.
    pub max_samples: usize,
    /// Tracklets that ended longer ago than this go.
    pub retention: Duration,
}

/// What [`TrainingStore::add`] kept and removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Added {
    /// The new tracklet's id.
    pub id: i64,
    /// Tracklets removed by the bounds (with their samples).
    pub removed: usize,
}

/// A node's training file, opened for writing (one per file).
#[derive(Debug)]
pub struct TrainingStore {
    conn: Connection,
    path: PathBuf,
    bounds: TrainingBounds,
}

impl TrainingStore {
    /// Opens (or creates, 0600 in a 0700 folder) the training file at `path`.
    pub fn open(path: &Path, bounds: TrainingBounds) -> Result<TrainingStore, StoreError> {
        if let Some(dir) = path.parent() {
            create_private_dir(dir).map_err(|source| StoreError::Io {
                path: dir.to_path_buf(),
                what: "creating the folder of the training file",
                source,
            })?;
        }
        create_private(path)?;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sqlite(path, "opening the training file"))?;
        let store = TrainingStore {
            conn,
            path: path.to_owned(),
            bounds,
        };
        store.init()?;
        Ok(store)
    }

    fn init(&self) -> Result<(), StoreError> {
        let p = &self.path;
        let (app, version): (i32, i32) = self
            .conn
            .query_row(
                "SELECT (SELECT application_id FROM pragma_application_id),
                        (SELECT user_version FROM pragma_user_version)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(sqlite(p, "reading the training file's header"))?;
        let fresh = app == 0 && version == 0;
        if !fresh && app != TRAINING_APPLICATION_ID {
            return Err(StoreError::Io {
                path: p.clone(),
                what: "opening the training file",
                source: std::io::Error::other(format!(
                    "application id {app:#x} is not a Vidar training file's ({TRAINING_APPLICATION_ID:#x})"
                )),
            });
        }
        if version > TRAINING_VERSION {
            return Err(StoreError::Io {
                path: p.clone(),
                what: "opening the training file",
                source: std::io::Error::other(format!(
                    "layout version {version} is newer than this build's {TRAINING_VERSION}"
                )),
            });
        }
        self.conn
            .execute_batch(&format!(
                "PRAGMA foreign_keys = ON; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
                 {SCHEMA}
                 PRAGMA application_id = {TRAINING_APPLICATION_ID};
                 PRAGMA user_version = {TRAINING_VERSION};"
            ))
            .map_err(sqlite(p, "creating the training tables"))?;
        Ok(())
    }

    /// Stores `t` with its samples, then applies the bounds at `now`.
    pub fn add(&mut self, t: &Tracklet, now: UnixMs) -> Result<Added, StoreError> {
        let p = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(sqlite(&p, "starting a training write"))?;
        tx.execute(
            "INSERT INTO tracklets (camera_id, track_id, identity_id, similarity, first_ms, last_ms, crops)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                t.camera.as_str(),
                t.track.0 as i64,
                t.identity.map(|(i, _)| i64::from_ne_bytes(i.0.to_ne_bytes())),
                t.identity.map(|(_, s)| f64::from(s)),
                t.first_ms,
                t.last_ms.max(t.first_ms),
                i64::from(t.crops),
            ],
        )
        .map_err(sqlite(&p, "storing a tracklet"))?;
        let id = tx.last_insert_rowid();
        for s in &t.samples {
            tx.execute(
                "INSERT INTO samples (tracklet_id, t_ms, quality, jpeg) VALUES (?1, ?2, ?3, ?4)",
                params![id, s.t_ms, f64::from(s.quality), s.jpeg],
            )
            .map_err(sqlite(&p, "storing a sample"))?;
        }
        let cutoff = now.minus(self.bounds.retention);
        let mut removed = tx
            .execute("DELETE FROM tracklets WHERE last_ms < ?1", params![cutoff])
            .map_err(sqlite(&p, "removing old tracklets"))?;
        // Over the bound: the oldest tracklets go, whole, until it holds.
        let total: i64 = tx
            .query_row("SELECT count(*) FROM samples", [], |r| r.get(0))
            .map_err(sqlite(&p, "counting samples"))?;
        let mut excess = total - self.bounds.max_samples as i64;
        while excess > 0 {
            let oldest: Option<(i64, i64)> = tx
                .query_row(
                    "SELECT t.id, (SELECT count(*) FROM samples s WHERE s.tracklet_id = t.id)
                     FROM tracklets t ORDER BY t.last_ms, t.id LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(sqlite(&p, "finding the oldest tracklet"))?;
            let Some((oldest, n)) = oldest else { break };
            tx.execute("DELETE FROM tracklets WHERE id = ?1", params![oldest])
                .map_err(sqlite(&p, "removing a tracklet over the bound"))?;
            removed += 1;
            excess -= n.max(1);
        }
        tx.commit()
            .map_err(sqlite(&p, "committing a training write"))?;
        Ok(Added { id, removed })
    }

    /// Every tracklet with its samples, oldest first (at most `limit`).
    pub fn tracklets(&self, limit: usize) -> Result<Vec<Tracklet>, StoreError> {
        read_tracklets(&self.conn, &self.path, limit)
    }
}

/// Every tracklet of the training file at `path` with its samples, oldest
/// first (at most `limit`), read-only.
pub fn read_training(path: &Path, limit: usize) -> Result<Vec<Tracklet>, StoreError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(sqlite(path, "opening the training file"))?;
    let app: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(sqlite(path, "reading the training file's header"))?;
    if app != TRAINING_APPLICATION_ID {
        return Err(StoreError::Io {
            path: path.to_path_buf(),
            what: "opening the training file",
            source: std::io::Error::other("not a Vidar training file"),
        });
    }
    read_tracklets(&conn, path, limit)
}

fn read_tracklets(
    conn: &Connection,
    path: &Path,
    limit: usize,
) -> Result<Vec<Tracklet>, StoreError> {
    let mut stmt = conn
        .prepare(
            "SELECT id, camera_id, track_id, identity_id, similarity, first_ms, last_ms, crops
             FROM tracklets ORDER BY last_ms, id LIMIT ?1",
        )
        .map_err(sqlite(path, "preparing the tracklet list"))?;
    let rows = stmt
        .query_map(params![limit.min(i64::MAX as usize) as i64], |r| {
            let camera: String = r.get(1)?;
            let identity: Option<i64> = r.get(3)?;
            let similarity: Option<f64> = r.get(4)?;
            Ok((
                r.get::<_, i64>(0)?,
                camera,
                r.get::<_, i64>(2)?,
                identity.map(|i| IdentityId(u64::from_ne_bytes(i.to_ne_bytes()))),
                similarity,
                r.get::<_, UnixMs>(5)?,
                r.get::<_, UnixMs>(6)?,
                r.get::<_, i64>(7)?,
            ))
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(sqlite(path, "listing tracklets"))?;
    let mut samples = conn
        .prepare("SELECT t_ms, quality, jpeg FROM samples WHERE tracklet_id = ?1 ORDER BY quality DESC, t_ms")
        .map_err(sqlite(path, "preparing the sample list"))?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, camera, track, identity, similarity, first_ms, last_ms, crops) in rows {
        let Ok(camera) = CameraId::new(&camera) else {
            continue; // not written by this crate
        };
        let samples = samples
            .query_map(params![id], |r| {
                Ok(Sample {
                    t_ms: r.get(0)?,
                    quality: r.get::<_, f64>(1)? as f32,
                    jpeg: r.get(2)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(sqlite(path, "listing samples"))?;
        out.push(Tracklet {
            id,
            camera,
            track: TrackId(track.max(0) as u64),
            identity: identity.map(|i| (i, similarity.unwrap_or(0.0) as f32)),
            first_ms,
            last_ms,
            crops: crops.clamp(0, i64::from(u32::MAX)) as u32,
            samples,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tracklet(track: u64, last_ms: i64, samples: usize) -> Tracklet {
        Tracklet {
            id: 0,
            camera: CameraId::new("c").expect("id"),
            track: TrackId(track),
            identity: Some((IdentityId(1 << 63 | track), 0.8)),
            first_ms: UnixMs(last_ms - 1_000),
            last_ms: UnixMs(last_ms),
            crops: 9,
            samples: (0..samples)
                .map(|k| Sample {
                    t_ms: UnixMs(last_ms - k as i64),
                    quality: 0.5 + k as f32 / 10.0,
                    jpeg: vec![0xff, 0xd8, k as u8],
                })
                .collect(),
        }
    }

    #[test]
    fn tracklets_are_kept_within_their_bounds_and_read_back() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("private").join("training.db");
        let bounds = TrainingBounds {
            max_samples: 10,
            retention: Duration::from_secs(120),
        };
        let mut s = TrainingStore::open(&path, bounds).expect("open");
        let now = UnixMs(10_000_000);
        let a = s.add(&tracklet(1, 9_930_000, 4), now).expect("add");
        assert_eq!(a.removed, 0);
        s.add(&tracklet(2, 9_990_000, 4), now).expect("add");
        // 4 more make 12 samples: the oldest tracklet (4 samples) goes.
        let c = s.add(&tracklet(3, 9_995_000, 4), now).expect("add");
        assert_eq!(c.removed, 1);
        let got = s.tracklets(100).expect("list");
        assert_eq!(
            got.iter().map(|t| t.track.0).collect::<Vec<_>>(),
            vec![2, 3]
        );
        let want = Tracklet {
            id: c.id,
            ..tracklet(3, 9_995_000, 4)
        };
        let mut back = got[1].clone();
        back.samples.sort_by_key(|x| x.jpeg[2]);
        assert_eq!(back, want);
        // Past the retention: gone at the next write.
        let later = UnixMs(9_995_000 + 121_000);
        s.add(&tracklet(4, later.0, 1), later).expect("add");
        let got = s.tracklets(100).expect("list");
        assert_eq!(got.iter().map(|t| t.track.0).collect::<Vec<_>>(), vec![4]);
        // Private, and readable by the export.
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir = std::fs::metadata(path.parent().expect("dir"))
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir, 0o700);
        drop(s);
        assert_eq!(read_training(&path, 10).expect("read").len(), 1);
        // Reopened: the same file; another SQLite file is refused.
        TrainingStore::open(&path, bounds).expect("reopen");
        let other = tmp.path().join("other.db");
        let c = Connection::open(&other).expect("sqlite");
        c.execute_batch("PRAGMA application_id = 7; CREATE TABLE x (y);")
            .expect("other");
        drop(c);
        let e = TrainingStore::open(&other, bounds)
            .expect_err("foreign")
            .to_string();
        assert!(e.contains("not a Vidar training file"), "{e}");
        assert!(read_training(&other, 10).is_err());
    }
}
