//! Opening database files, connection settings, and schema migrations.
//!
//! The schema version lives in `PRAGMA user_version`; `PRAGMA application_id`
//! marks the file as Vidar's. Migrations run in one `IMMEDIATE` transaction, so a
//! crash or error mid-way leaves the file at its previous version. A file from a
//! newer build is refused, never downgraded.
//!
//! Durability: WAL with `synchronous=NORMAL`. A commit is then atomic and
//! consistent across process crashes (`kill -9`): the WAL is written before the
//! commit returns. Only an OS crash or power cut can lose the last commits before
//! the next checkpoint (never corrupt the file). Those records are not lost to the
//! cluster's view of correctness: the master only ever acknowledges records it
//! pulled, so a rolled-back tail was never acknowledged, and the edge's seq counter
//! rolls back with it (it is in the same transactions). Nodes that prefer the last
//! ~100 ms of records over an fsync per batch can set [`Synchronous::Full`].
//!
//! Record tables have no foreign keys between them, on purpose: sync delivers
//! records node by node in seq order, while a sighting's identity may come from
//! another node's records, pulled later or pruned earlier.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};
use serde::{Deserialize, Serialize};

use crate::error::{sqlite, StoreError};

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// `PRAGMA application_id` of a Vidar database: "VIDR".
pub const APPLICATION_ID: i32 = 0x5649_4452;

/// Page cache of the writer's connection by default, KiB (SQLite's default
/// is 2 MiB); `WriterTuning::cache_kib`. A writer's hot pages are the
/// tables' right edges and the indexes' recent entries; readers have their
/// own connections, and the file stays in the system's page cache besides.
/// 8 MiB holds a whole site's writes at the master, and is reached within
/// minutes of a start, after which SQLite's share of a process's memory is
/// flat (`make soak`, docs/benchmarks.md: an edge's 32 MiB cache, the
/// default before, still filled 20 minutes into a life).
pub(crate) const WRITER_CACHE_KIB: u32 = 8 * 1024;
/// WAL pages before an automatic checkpoint (SQLite's default is 1000): fewer,
/// larger checkpoints write a hot index page back once instead of several times.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 4000;
/// Bytes the WAL file is truncated to after a checkpoint that emptied it.
const WAL_SIZE_LIMIT: u64 = 64 * 1024 * 1024;
/// Page cache of each reader's connection, KiB.
const READER_CACHE_KIB: u32 = 8 * 1024;

/// `MIGRATIONS[k]` takes the schema from version `k` to `k + 1`. Append only.
const MIGRATIONS: &[&str] = &[
    MIGRATION_1,
    MIGRATION_2,
    MIGRATION_3,
    MIGRATION_4,
    MIGRATION_5,
];

/// Version 5: what reached the `records` sinks of analytics jobs, one row
/// per frame (`items`: the JSON of its boxes, tracks and vectors).
const MIGRATION_5: &str = "
CREATE TABLE job_results (
    node_id     TEXT NOT NULL,
    seq         INTEGER NOT NULL CHECK (seq >= 1),
    job_id      TEXT NOT NULL,
    stage       TEXT NOT NULL,
    camera_id   TEXT NOT NULL,
    captured_ms INTEGER NOT NULL,
    item        INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    items       TEXT NOT NULL,
    PRIMARY KEY (node_id, seq)
) STRICT;
CREATE INDEX job_results_by_job ON job_results (job_id, captured_ms);
";

/// Version 4: a split moves one sighting or its whole track (`scope`); the
/// view `split_pieces` lists, for every split in force, each sighting it
/// moves. A track's pieces are found from the split sighting by following
/// the recorder's seam: a track longer than ten seconds is recorded as
/// sightings of one node, camera and track id, each starting at the instant
/// the one before it ended (`first_ms` = the previous `last_ms`, later seq).
/// A track id used again after a restart starts no such seam, so another
/// track never joins. Pieces recorded after the split join once synchronised.
const MIGRATION_4: &str = "
ALTER TABLE corrections ADD COLUMN scope TEXT NOT NULL DEFAULT 'sighting'
    CHECK (scope IN ('sighting', 'track'));
CREATE INDEX sightings_by_track ON sightings (node_id, camera_id, track_id);
CREATE VIEW split_pieces AS
WITH RECURSIVE piece(cnode, cseq, decided_ms, into_identity, dir,
                     node_id, seq, camera_id, track_id, first_ms, last_ms) AS (
    SELECT c.node_id, c.seq, c.decided_ms, c.into_identity,
           CASE c.scope WHEN 'track' THEN 0 ELSE 2 END,
           s.node_id, s.seq, s.camera_id, s.track_id, s.first_ms, s.last_ms
    FROM corrections_in_force c
    JOIN sightings s ON s.node_id = c.target_node AND s.seq = c.target_seq
    WHERE c.action = 'split'
    UNION ALL
    SELECT p.cnode, p.cseq, p.decided_ms, p.into_identity, 1,
           s.node_id, s.seq, s.camera_id, s.track_id, s.first_ms, s.last_ms
    FROM piece p JOIN sightings s
      ON s.node_id = p.node_id AND s.camera_id = p.camera_id AND s.track_id = p.track_id
     AND s.first_ms = p.last_ms AND s.seq > p.seq
    WHERE p.dir IN (0, 1)
    UNION ALL
    SELECT p.cnode, p.cseq, p.decided_ms, p.into_identity, -1,
           s.node_id, s.seq, s.camera_id, s.track_id, s.first_ms, s.last_ms
    FROM piece p JOIN sightings s
      ON s.node_id = p.node_id AND s.camera_id = p.camera_id AND s.track_id = p.track_id
     AND s.last_ms = p.first_ms AND s.seq < p.seq
    WHERE p.dir IN (0, -1)
)
SELECT cnode, cseq, decided_ms, into_identity, node_id, seq FROM piece;
";

/// Version 3: operators' corrections (audited, never pruned), and the view of
/// those still in force (not reverted).
const MIGRATION_3: &str = "
CREATE TABLE corrections (
    node_id       TEXT NOT NULL,
    seq           INTEGER NOT NULL CHECK (seq >= 1),
    action        TEXT NOT NULL CHECK (action IN ('split', 'merge', 'revert')),
    target_node   TEXT,
    target_seq    INTEGER,
    from_identity INTEGER,
    into_identity INTEGER,
    actor         TEXT NOT NULL,
    reason        TEXT NOT NULL,
    decided_ms    INTEGER NOT NULL,
    PRIMARY KEY (node_id, seq),
    CHECK ((action = 'merge') = (target_node IS NULL)),
    CHECK ((action = 'revert') = (from_identity IS NULL))
) STRICT;
CREATE INDEX corrections_by_target ON corrections (target_node, target_seq);
CREATE VIEW corrections_in_force AS
    SELECT c.* FROM corrections c
    WHERE c.action <> 'revert' AND NOT EXISTS (
        SELECT 1 FROM corrections r
        WHERE r.action = 'revert' AND r.target_node = c.node_id AND r.target_seq = c.seq);
";

/// Version 2: identities carry the tag of the model that made their
/// embedding (empty for identities written by version 1, which are then
/// compared with nothing).
const MIGRATION_2: &str = "
ALTER TABLE identities ADD COLUMN model TEXT NOT NULL DEFAULT '' CHECK (length(model) <= 128);
";

const MIGRATION_1: &str = "
CREATE TABLE node_seq (
    node_id  TEXT PRIMARY KEY NOT NULL,
    next_seq INTEGER NOT NULL CHECK (next_seq >= 1)
) STRICT;
CREATE TABLE sync_cursors (
    peer       TEXT PRIMARY KEY NOT NULL,
    acked_seq  INTEGER NOT NULL CHECK (acked_seq >= 0),
    updated_ms INTEGER NOT NULL
) STRICT;
CREATE TABLE cameras (
    node_id     TEXT NOT NULL,
    seq         INTEGER NOT NULL CHECK (seq >= 1),
    camera_id   TEXT NOT NULL,
    name        TEXT NOT NULL,
    recorded_ms INTEGER NOT NULL,
    PRIMARY KEY (node_id, seq)
) STRICT;
CREATE TABLE tracks (
    node_id     TEXT NOT NULL,
    seq         INTEGER NOT NULL CHECK (seq >= 1),
    camera_id   TEXT NOT NULL,
    track_id    INTEGER NOT NULL,
    first_ms    INTEGER NOT NULL,
    last_ms     INTEGER NOT NULL CHECK (last_ms >= first_ms),
    identity_id INTEGER,
    PRIMARY KEY (node_id, seq)
) STRICT;
CREATE INDEX tracks_by_camera ON tracks (camera_id, first_ms);
CREATE TABLE sightings (
    node_id     TEXT NOT NULL,
    seq         INTEGER NOT NULL CHECK (seq >= 1),
    identity_id INTEGER NOT NULL,
    camera_id   TEXT NOT NULL,
    track_id    INTEGER NOT NULL,
    first_ms    INTEGER NOT NULL,
    last_ms     INTEGER NOT NULL CHECK (last_ms >= first_ms),
    path        BLOB NOT NULL,
    PRIMARY KEY (node_id, seq)
) STRICT;
CREATE INDEX sightings_by_identity ON sightings (identity_id, first_ms);
CREATE INDEX sightings_by_camera ON sightings (camera_id, first_ms);
CREATE INDEX sightings_by_time ON sightings (first_ms);
CREATE TABLE identities (
    node_id       TEXT NOT NULL,
    seq           INTEGER NOT NULL CHECK (seq >= 1),
    identity_id   INTEGER NOT NULL,
    camera_id     TEXT NOT NULL,
    first_seen_ms INTEGER NOT NULL,
    dim           INTEGER NOT NULL CHECK (dim BETWEEN 1 AND 4096),
    embedding     BLOB NOT NULL CHECK (length(embedding) = 4 * dim),
    PRIMARY KEY (node_id, seq)
) STRICT;
CREATE INDEX identities_by_identity ON identities (identity_id);
CREATE TABLE snapshots (
    node_id     TEXT NOT NULL,
    seq         INTEGER NOT NULL CHECK (seq >= 1),
    identity_id INTEGER NOT NULL,
    camera_id   TEXT NOT NULL,
    t_ms        INTEGER NOT NULL,
    jpeg        BLOB NOT NULL,
    PRIMARY KEY (node_id, seq)
) STRICT;
CREATE INDEX snapshots_by_identity ON snapshots (identity_id, t_ms);
CREATE TABLE identity_merges (
    node_id       TEXT NOT NULL,
    seq           INTEGER NOT NULL CHECK (seq >= 1),
    from_identity INTEGER NOT NULL,
    into_identity INTEGER NOT NULL CHECK (into_identity <> from_identity),
    decided_ms    INTEGER NOT NULL,
    PRIMARY KEY (node_id, seq)
) STRICT;
CREATE INDEX merges_by_from ON identity_merges (from_identity);
CREATE INDEX merges_by_into ON identity_merges (into_identity);
";

/// How hard SQLite syncs to disk at each commit (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Synchronous {
    /// fsync at checkpoints only: safe against process crashes, may lose the last
    /// commits (never consistency) on power loss.
    #[default]
    Normal,
    /// fsync the WAL at every commit.
    Full,
}

/// Reads `PRAGMA user_version`, turning "not a database" into a clear error.
fn user_version(conn: &Connection, path: &Path) -> Result<u32, StoreError> {
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| classify(e, path, "reading the schema version"))?;
    u32::try_from(v).map_err(|_| StoreError::Foreign {
        path: path.to_path_buf(),
        reason: format!("user_version {v} is negative"),
    })
}

/// Maps SQLite's "not a database" and "corrupt" codes to [`StoreError::NotADatabase`].
pub(crate) fn classify(e: rusqlite::Error, path: &Path, context: &'static str) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreError::NotADatabase {
            path: path.to_path_buf(),
            source: e,
        },
        _ => sqlite(path, context)(e),
    }
}

fn check_application_id(conn: &Connection, path: &Path, version: u32) -> Result<(), StoreError> {
    let app: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|e| classify(e, path, "reading the application id"))?;
    if version > 0 && app != APPLICATION_ID {
        return Err(StoreError::Foreign {
            path: path.to_path_buf(),
            reason: format!("application_id is {app:#x}, Vidar's is {APPLICATION_ID:#x}"),
        });
    }
    if version == 0 {
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| classify(e, path, "listing tables"))?;
        if tables > 0 {
            return Err(StoreError::Foreign {
                path: path.to_path_buf(),
                reason: format!("it has {tables} tables but no Vidar schema version"),
            });
        }
    }
    Ok(())
}

/// Opens (creating if absent) a read-write connection, sets WAL and the pragmas,
/// and migrates the schema to [`SCHEMA_VERSION`].
/// Creates the database file readable and writable by its owner only
/// (0600) when it does not exist yet; SQLite gives its WAL and shared-memory
/// files the database file's permissions. An existing file is left as it is.
pub(crate) fn create_private(path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(StoreError::Io {
                    path: path.to_path_buf(),
                    what: "creating the database file",
                    source: e,
                })
            }
        }
    }
    Ok(())
}

/// Creates the folder `dir` (and its parents) readable by its owner only
/// (0700) when it does not exist; an existing folder is left as it is.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

pub(crate) fn open_writable(
    path: &Path,
    busy_timeout: Duration,
    synchronous: Synchronous,
    cache_kib: u32,
) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    create_private(path)?;
    let mut conn =
        Connection::open_with_flags(path, flags).map_err(|e| classify(e, path, "opening"))?;
    conn.busy_timeout(busy_timeout)
        .map_err(sqlite(path, "setting the busy timeout"))?;
    let version = user_version(&conn, path)?;
    check_application_id(&conn, path, version)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version == 0 {
        // Only possible before the first table exists; lets pruning give pages back.
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL")
            .map_err(sqlite(path, "setting auto_vacuum"))?;
    }
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| classify(e, path, "enabling WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Foreign {
            path: path.to_path_buf(),
            reason: format!("journal mode stayed {mode:?}, WAL is required"),
        });
    }
    let sync = match synchronous {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON; PRAGMA cache_size = -{cache_kib}; \
         PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}; PRAGMA journal_size_limit = {WAL_SIZE_LIMIT};"
    ))
    .map_err(|e| classify(e, path, "setting pragmas"))?;
    migrate(&mut conn, path, MIGRATIONS)?;
    Ok(conn)
}

/// Applies every migration of `migrations` above the file's version, in one transaction.
fn migrate(conn: &mut Connection, path: &Path, migrations: &[&str]) -> Result<(), StoreError> {
    let target = migrations.len() as u32;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite(path, "starting the migration transaction"))?;
    // Re-read inside the write lock: another process may have migrated meanwhile.
    let from = user_version(&tx, path)?;
    if from > target {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: from,
            supported: target,
        });
    }
    if from == target {
        return Ok(());
    }
    for (k, sql) in migrations.iter().enumerate().skip(from as usize) {
        let version = k as u32 + 1;
        let fail = |source| StoreError::Migration {
            path: path.to_path_buf(),
            version,
            source,
        };
        tx.execute_batch(sql).map_err(fail)?;
        // Pragmas take no bound parameters; both values are constants of this build.
        tx.execute_batch(&format!(
            "PRAGMA user_version = {version}; PRAGMA application_id = {APPLICATION_ID};"
        ))
        .map_err(fail)?;
        tracing::info!(path = %path.display(), version, "applied store migration");
    }
    tx.commit().map_err(|source| StoreError::Migration {
        path: path.to_path_buf(),
        version: target,
        source,
    })
}

/// Opens a read-only connection to a database at exactly [`SCHEMA_VERSION`].
pub(crate) fn open_read_only(
    path: &Path,
    busy_timeout: Duration,
) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| classify(e, path, "opening read-only"))?;
    conn.busy_timeout(busy_timeout)
        .map_err(sqlite(path, "setting the busy timeout"))?;
    conn.execute_batch(&format!("PRAGMA cache_size = -{READER_CACHE_KIB}"))
        .map_err(|e| classify(e, path, "setting the cache size"))?;
    let version = user_version(&conn, path)?;
    check_application_id(&conn, path, version)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version < SCHEMA_VERSION {
        return Err(StoreError::NeedsMigration {
            path: path.to_path_buf(),
            found: version,
            expected: SCHEMA_VERSION,
        });
    }
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_leave_version_and_application_id() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Io {
            path: std::env::temp_dir(),
            what: "creating a temporary directory",
            source: e,
        })?;
        let path = dir.path().join("v.db");
        let conn = open_writable(
            &path,
            Duration::from_secs(1),
            Synchronous::Normal,
            WRITER_CACHE_KIB,
        )?;
        assert_eq!(user_version(&conn, &path)?, SCHEMA_VERSION);
        let app: i32 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(sqlite(&path, "test"))?;
        assert_eq!(app, APPLICATION_ID);
        let av: i64 = conn
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
            .map_err(sqlite(&path, "test"))?;
        assert_eq!(av, 2, "incremental auto_vacuum");
        Ok(())
    }

    fn version_and_tables(path: &Path) -> (u32, Vec<String>) {
        let c = Connection::open(path).unwrap();
        let v = user_version(&c, path).unwrap();
        let t = c
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        (v, t)
    }

    #[test]
    fn a_failing_migration_rolls_back_all_of_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let mut conn = Connection::open(&path).unwrap();
        let e = migrate(&mut conn, &path, &[MIGRATION_1, "CREATE TABLE broken (;"]).unwrap_err();
        assert!(matches!(e, StoreError::Migration { version: 2, .. }), "{e}");
        assert!(e.to_string().contains("m.db"), "{e}");
        drop(conn);
        assert_eq!(version_and_tables(&path), (0, vec![]));
    }

    #[test]
    fn later_migrations_apply_on_top_of_an_existing_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn, &path, &[MIGRATION_1]).unwrap();
        conn.execute_batch("INSERT INTO node_seq VALUES ('n', 5)")
            .unwrap();
        let next = [MIGRATION_1, "ALTER TABLE cameras ADD COLUMN note TEXT"];
        migrate(&mut conn, &path, &next).unwrap();
        migrate(&mut conn, &path, &next).unwrap(); // a no-op the second time
        drop(conn);
        let (v, tables) = version_and_tables(&path);
        assert_eq!(v, 2);
        assert!(tables.contains(&"cameras".to_string()));
        let c = Connection::open(&path).unwrap();
        let next_seq: i64 = c
            .query_row("SELECT next_seq FROM node_seq", [], |r| r.get(0))
            .unwrap();
        assert_eq!(next_seq, 5, "data kept across the migration");
        // And a build that only knows version 1 refuses the file.
        let mut conn = Connection::open(&path).unwrap();
        let e = migrate(&mut conn, &path, &[MIGRATION_1]).unwrap_err();
        assert!(
            matches!(
                e,
                StoreError::TooNew {
                    found: 2,
                    supported: 1,
                    ..
                }
            ),
            "{e}"
        );
    }
}
