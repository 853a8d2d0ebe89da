//! Keeping a database file healthy: SQLite's integrity check, and online
//! backups taken while a writer is running (`vidar-master backup`).
//!
//! A backup is `VACUUM INTO` a new file: one read transaction, so it is a
//! consistent snapshot even while the writer commits (WAL lets both run), and
//! compact. The copy is created 0600 like the database, then opened again and
//! checked (integrity, Vidar's application id, schema version) before it is
//! called good. Restoring is copying it back while nothing has the database
//! open (docs/deploy.md).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::error::StoreError;
use crate::schema::{classify, create_private, open_read_only};

/// Lines of an integrity report kept.
const MAX_PROBLEMS: usize = 20;

/// How thorough a check is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// `PRAGMA quick_check`: pages, records and constraints, not index
    /// contents (linear in the file; what a start-up runs).
    Quick,
    /// `PRAGMA integrity_check`: also every index against its table.
    Full,
}

/// Checks the database at `path` (which must exist and be Vidar's);
/// [`StoreError::Corrupt`] lists what SQLite found.
pub fn check(path: &Path, how: Check) -> Result<(), StoreError> {
    let conn = open_read_only(path, Duration::from_secs(30))?;
    run_check(&conn, path, how)
}

fn run_check(conn: &Connection, path: &Path, how: Check) -> Result<(), StoreError> {
    let pragma = match how {
        Check::Quick => "PRAGMA quick_check",
        Check::Full => "PRAGMA integrity_check",
    };
    let mut stmt = conn
        .prepare(pragma)
        .map_err(|e| classify(e, path, "checking integrity"))?;
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(|e| classify(e, path, "checking integrity"))?;
    let mut problems = Vec::new();
    for row in rows {
        let line = row.map_err(|e| classify(e, path, "checking integrity"))?;
        if line != "ok" && problems.len() < MAX_PROBLEMS {
            problems.push(line);
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            problems,
        })
    }
}

/// What a backup wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Backup {
    /// The copy.
    pub path: PathBuf,
    /// Its size, bytes.
    pub bytes: u64,
    /// How long the copy and its check took.
    pub took: Duration,
}

/// Copies the database at `from` into the new file `to` (which must not
/// exist), consistently even while a writer commits, then checks the copy
/// fully. A copy that fails its check is deleted.
pub fn backup(from: &Path, to: &Path) -> Result<Backup, StoreError> {
    let t0 = Instant::now();
    if to.exists() {
        return Err(StoreError::Io {
            path: to.to_path_buf(),
            what: "writing a backup (the file exists: choose a new name)",
            source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        });
    }
    // Vidar's and at a schema this build reads (migrated by its writer).
    let src = open_read_only(from, Duration::from_secs(30))?;
    // An empty 0600 file: VACUUM INTO fills an empty file and keeps its mode.
    create_private(to)?;
    let target = to.to_string_lossy().into_owned();
    if let Err(e) = src.execute("VACUUM INTO ?1", [&target]) {
        let _ = std::fs::remove_file(to);
        return Err(classify(e, from, "copying into the backup"));
    }
    drop(src);
    // Vidar's id and schema (open_read_only), then every page and index.
    let verified =
        open_read_only(to, Duration::from_secs(30)).and_then(|c| run_check(&c, to, Check::Full));
    if let Err(e) = verified {
        let _ = std::fs::remove_file(to);
        return Err(e);
    }
    let bytes = std::fs::metadata(to)
        .map_err(|source| StoreError::Io {
            path: to.to_path_buf(),
            what: "reading the backup's size",
            source,
        })?
        .len();
    Ok(Backup {
        path: to.to_path_buf(),
        bytes,
        took: t0.elapsed(),
    })
}
