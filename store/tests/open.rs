//! Opening files: fresh, re-opened, from the future, not ours, not SQLite.

#![allow(clippy::unwrap_used)] // a test crate: a panic is how a helper reports failure

mod common;

use common::*;
use vidar_config::Config;
use vidar_store::{Reader, StoreError, WriterConfig, SCHEMA_VERSION};

fn raw(path: &std::path::Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

#[test]
fn fresh_file_gets_current_schema_wal_and_reopens() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = db(&dir, "edge.db");
    let w = writer(&path, "edge-1");
    let k = w.write(camera("cam-a", "first", 1))?;
    assert_eq!(k.seq, 1);
    w.shutdown()?;

    let c = raw(&path);
    let v: u32 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    assert_eq!(v, SCHEMA_VERSION);
    let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    assert_eq!(mode, "wal");
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for t in [
        "cameras",
        "identities",
        "identity_merges",
        "node_seq",
        "sightings",
        "snapshots",
        "sync_cursors",
        "tracks",
    ] {
        assert!(tables.iter().any(|n| n == t), "{t} missing from {tables:?}");
    }
    drop(c);

    // Re-open: no migration re-run (data intact), seq continues.
    let w = writer(&path, "edge-1");
    assert_eq!(w.write(camera("cam-a", "second", 2))?.seq, 2);
    w.shutdown()?;
    let r = Reader::open(&path)?;
    let cams = r.cameras()?;
    assert_eq!(cams.len(), 1);
    assert_eq!(cams[0].value.name, "second");
    assert_eq!(r.last_seq(&node("edge-1"))?, 2);
    Ok(())
}

#[test]
fn newer_schema_is_refused_by_writer_and_reader() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = db(&dir, "future.db");
    writer(&path, "edge-1").shutdown()?;
    raw(&path).execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))?;

    let e = WriterConfig::new(&path, node("edge-1"))
        .build(&())
        .unwrap_err();
    assert!(
        matches!(e, StoreError::TooNew { found, .. } if found == SCHEMA_VERSION + 1),
        "{e}"
    );
    let msg = e.to_string();
    assert!(msg.contains("future.db") && msg.contains("newer"), "{msg}");
    let e = Reader::open(&path).unwrap_err();
    assert!(matches!(e, StoreError::TooNew { .. }), "{e}");
    Ok(())
}

#[test]
fn reader_refuses_unmigrated_and_missing_files() -> TestResult {
    let dir = tempfile::tempdir()?;
    let empty = db(&dir, "empty.db");
    drop(raw(&empty));
    let e = Reader::open(&empty).unwrap_err();
    assert!(
        matches!(e, StoreError::NeedsMigration { found: 0, .. }),
        "{e}"
    );

    let missing = db(&dir, "missing.db");
    let msg = Reader::open(&missing).unwrap_err().to_string();
    assert!(msg.contains("missing.db"), "{msg}");
    assert!(!missing.exists(), "a reader must not create the file");
    Ok(())
}

#[test]
fn non_sqlite_file_gives_clear_error_naming_the_path() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = db(&dir, "garbage.db");
    std::fs::write(&path, b"this is a JPEG, honest\n".repeat(300))?;
    for e in [
        WriterConfig::new(&path, node("edge-1"))
            .build(&())
            .unwrap_err(),
        Reader::open(&path).unwrap_err(),
    ] {
        assert!(matches!(e, StoreError::NotADatabase { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("garbage.db") && msg.contains("not a Vidar database"),
            "{msg}"
        );
    }
    // The file was not touched.
    assert_eq!(
        std::fs::read(&path)?,
        b"this is a JPEG, honest\n".repeat(300)
    );
    Ok(())
}

#[test]
fn database_with_corrupt_header_gives_clear_error() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = db(&dir, "corrupt.db");
    let w = writer(&path, "edge-1");
    for r in one_of_each(1_000) {
        w.submit(r)?;
    }
    w.shutdown()?;
    // Checkpoint into the main file, then scribble over the header.
    raw(&path).execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    let mut bytes = std::fs::read(&path)?;
    bytes[..16].copy_from_slice(b"NOT SQLITE AT AL");
    std::fs::write(&path, bytes)?;
    let e = Reader::open(&path).unwrap_err();
    assert!(matches!(e, StoreError::NotADatabase { .. }), "{e:?}");
    assert!(e.to_string().contains("corrupt.db"));
    Ok(())
}

#[test]
fn someone_elses_sqlite_database_is_left_alone() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = db(&dir, "other.db");
    raw(&path).execute_batch("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")?;
    let e = WriterConfig::new(&path, node("edge-1"))
        .build(&())
        .unwrap_err();
    assert!(matches!(e, StoreError::Foreign { .. }), "{e}");
    assert!(e.to_string().contains("other.db"));
    let v: u32 = raw(&path).query_row("PRAGMA user_version", [], |r| r.get(0))?;
    assert_eq!(v, 0, "no migration applied to a foreign file");

    let path2 = db(&dir, "other2.db");
    raw(&path2).execute_batch("PRAGMA user_version = 1; CREATE TABLE t (x)")?;
    let e = WriterConfig::new(&path2, node("edge-1"))
        .build(&())
        .unwrap_err();
    assert!(e.to_string().contains("application_id"), "{e}");
    Ok(())
}

#[test]
fn bad_tuning_reports_every_problem() {
    let mut c = WriterConfig::new("/nonexistent/x.db", node("edge-1"));
    c.tuning.max_batch = 0;
    c.tuning.queue_capacity = 0;
    c.tuning.max_delay_ms = 120_000;
    let msg = c.build(&()).unwrap_err().to_string();
    for key in ["max_batch", "queue_capacity", "max_delay_ms"] {
        assert!(msg.contains(key), "{msg}");
    }
}

#[test]
fn tuning_parses_from_toml_like_json_with_defaults_and_refuses_unknown_keys() {
    let t: vidar_store::WriterTuning =
        serde_json::from_str(r#"{"max_batch": 64, "synchronous": "full"}"#).unwrap();
    assert_eq!(t.max_batch, 64);
    assert_eq!(t.max_delay_ms, 100);
    assert_eq!(t.synchronous, vidar_store::Synchronous::Full);
    assert!(serde_json::from_str::<vidar_store::WriterTuning>(r#"{"max_batchh": 64}"#).is_err());
}
