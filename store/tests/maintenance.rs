//! Online backups while the writer commits, and the integrity check that
//! finds a damaged file (issue 16: `vidar-master backup`, check at start).

#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use vidar_config::Config;
use vidar_protocol::{CameraId, NodeId, UnixMs};
use vidar_store::maintenance::{backup, check, Check};
use vidar_store::{CameraRecord, Reader, Record, StoreError, WriterConfig};

fn camera(i: u64) -> Record {
    Record::Camera(CameraRecord {
        camera: CameraId::new(&format!("c{i}")).expect("id"),
        name: format!("camera number {i} with a name long enough to fill pages"),
        recorded_ms: UnixMs(i as i64),
    })
}

/// Commits camera records `ids`.
fn cameras(h: &vidar_store::WriterHandle, ids: std::ops::Range<u64>) {
    for i in ids {
        h.submit(camera(i)).expect("submit");
    }
    h.flush().expect("flush");
}

#[test]
fn a_backup_taken_while_the_writer_commits_is_a_consistent_checked_copy() {
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("global.db");
    let node = NodeId::new("m").expect("id");
    let w = WriterConfig::new(&db, node.clone())
        .build(&())
        .expect("writer");
    let h = w.handle();
    cameras(&h, 0..2000);
    // Keep committing on another thread while the backup runs.
    let busy = std::thread::spawn({
        let h = h.clone();
        move || {
            for i in 2000..6000 {
                let _ = h.submit(camera(i));
            }
            let _ = h.flush();
        }
    });
    let copy = tmp.path().join("backup.db");
    let b = backup(&db, &copy).expect("backup");
    busy.join().expect("writer thread");
    assert!(b.bytes > 0);
    assert_eq!(
        std::fs::metadata(&copy).expect("copy").permissions().mode() & 0o777,
        0o600
    );
    check(&copy, Check::Full).expect("the copy is sound");
    // A consistent prefix of what was committed: seqs 1..=n, none missing.
    let last = Reader::open(&copy)
        .and_then(|r| r.last_seq(&node))
        .expect("reads");
    assert!(
        last >= 2000,
        "the copy holds what was flushed before: {last}"
    );
    let keys = Reader::open(&copy)
        .and_then(|r| r.records_after(&node, 0, 10_000))
        .expect("records");
    assert_eq!(keys.len() as u64, last);
    assert!(keys
        .iter()
        .enumerate()
        .all(|(i, r)| r.key.seq == i as u64 + 1));
    // Never over an existing file.
    let e = backup(&db, &copy).expect_err("exists");
    assert!(e.to_string().contains("exists"), "{e}");
    w.shutdown().expect("shutdown");
    check(&db, Check::Quick).expect("the live file is sound");
}

#[test]
fn the_check_names_a_damaged_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("edge.db");
    let w = WriterConfig::new(&db, NodeId::new("n").expect("id"))
        .build(&())
        .expect("writer");
    let h = w.handle();
    cameras(&h, 0..3000);
    w.shutdown().expect("shutdown");
    check(&db, Check::Full).expect("sound before");
    // Scribble over pages past the header and the schema (page 1).
    let mut bytes = std::fs::read(&db).expect("read");
    assert!(bytes.len() > 64 * 1024, "big enough: {}", bytes.len());
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 16 * 1024] {
        *b = 0x5a;
    }
    std::fs::write(&db, &bytes).expect("write");
    match check(&db, Check::Quick) {
        Err(StoreError::Corrupt { path, problems }) => {
            assert_eq!(path, db);
            assert!(!problems.is_empty());
        }
        Err(other) => {
            // SQLite may refuse the file outright; still an error naming it.
            assert!(other.to_string().contains("edge.db"), "{other}");
        }
        Ok(()) => panic!("a damaged file passed the check"),
    }
}
