//! Edge -> master sync: pull after a cursor, idempotent upsert, cursors, pruning.

#![allow(clippy::unwrap_used)] // a test crate: a panic is how a helper reports failure

mod common;

use std::time::Duration;
use vidar_protocol::UnixMs;

use common::*;
use vidar_store::{KeyedRecord, Reader, Record, RecordKey, StoreError};

/// Every record table's full contents, in key order, for before/after comparisons.
fn dump(path: &std::path::Path) -> Vec<String> {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut out = Vec::new();
    for t in [
        "cameras",
        "tracks",
        "sightings",
        "identities",
        "snapshots",
        "identity_merges",
        "sync_cursors",
        "node_seq",
    ] {
        let mut stmt = c
            .prepare(&format!("SELECT * FROM {t} ORDER BY 1, 2"))
            .unwrap();
        let n = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                let vals: Vec<String> = (0..n)
                    .map(|k| format!("{:?}", r.get_ref(k).unwrap()))
                    .collect();
                Ok(format!("{t}: {}", vals.join(", ")))
            })
            .unwrap();
        out.extend(rows.map(|r| r.unwrap()));
    }
    out
}

fn edge_with_records(dir: &tempfile::TempDir, n: usize) -> std::path::PathBuf {
    let path = db(dir, "edge.db");
    let w = writer(&path, "edge-1");
    for k in 0..n {
        for r in one_of_each(1_000 * k as i64) {
            w.submit(r).unwrap();
        }
    }
    w.shutdown().unwrap();
    path
}

#[test]
fn master_pulls_everything_in_batches_exactly_once() -> TestResult {
    let dir = tempfile::tempdir()?;
    let edge = edge_with_records(&dir, 20); // 120 records
    let master_path = db(&dir, "master.db");
    let master = writer(&master_path, "master");
    let edge_reader = Reader::open(&edge)?;
    let peer = node("edge-1");

    let mut rounds = 0;
    loop {
        let cursor = Reader::open(&master_path)?.cursor(&peer)?.unwrap_or(0);
        let batch = edge_reader.records_after(&peer, cursor, 25)?;
        if batch.is_empty() {
            break;
        }
        let seqs: Vec<u64> = batch.iter().map(|r| r.key.seq).collect();
        assert_eq!(
            seqs,
            (cursor + 1..=cursor + seqs.len() as u64).collect::<Vec<_>>(),
            "contiguous after the cursor"
        );
        let report = master.upsert_batch(&peer, batch)?;
        assert_eq!(report.already_present, 0);
        assert_eq!(report.cursor, *seqs.last().ok_or("empty")?);
        rounds += 1;
    }
    assert_eq!(rounds, 5);
    let m = Reader::open(&master_path)?;
    assert_eq!(
        m.records_after(&peer, 0, 1000)?,
        edge_reader.records_after(&peer, 0, 1000)?
    );
    assert_eq!(m.cursor(&peer)?, Some(120));
    // The master's own counter is untouched by peer records.
    assert_eq!(
        master.write(merge(1, 2, 0))?,
        RecordKey {
            node: node("master"),
            seq: 1
        }
    );
    master.shutdown()?;
    Ok(())
}

#[test]
fn upserting_the_same_batch_twice_changes_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let edge = edge_with_records(&dir, 3);
    let master_path = db(&dir, "master.db");
    let master = writer(&master_path, "master");
    let peer = node("edge-1");
    let batch = Reader::open(&edge)?.records_after(&peer, 0, 100)?;
    let first = master.upsert_batch(&peer, batch.clone())?;
    assert_eq!(
        (first.inserted, first.already_present, first.cursor),
        (18, 0, 18)
    );
    let before = dump(&master_path);
    let again = master.upsert_batch(&peer, batch.clone())?;
    assert_eq!(
        (again.inserted, again.already_present, again.cursor),
        (0, 18, 18)
    );
    assert_eq!(dump(&master_path), before);
    // An older, overlapping batch (a retry after a lost reply) neither duplicates nor moves the cursor back.
    let again = master.upsert_batch(&peer, batch[..5].to_vec())?;
    assert_eq!((again.inserted, again.cursor), (0, 18));
    assert_eq!(dump(&master_path), before);
    master.shutdown()?;
    Ok(())
}

#[test]
fn malformed_batches_are_refused_whole() -> TestResult {
    let dir = tempfile::tempdir()?;
    let edge = edge_with_records(&dir, 1);
    let master_path = db(&dir, "master.db");
    let master = writer(&master_path, "master");
    let peer = node("edge-1");
    let batch = Reader::open(&edge)?.records_after(&peer, 0, 100)?;

    let mut wrong_node = batch.clone();
    wrong_node[3].key.node = node("edge-2");
    let mut reordered = batch.clone();
    reordered.swap(1, 2);
    let mut zero = batch.clone();
    zero[0].key.seq = 0;
    let mut invalid = batch.clone();
    invalid[5].record = merge(9, 9, 0);
    for bad in [wrong_node, reordered, zero] {
        let e = master.upsert_batch(&peer, bad).unwrap_err();
        assert!(matches!(e, StoreError::BadBatch { .. }), "{e}");
    }
    assert!(matches!(
        master.upsert_batch(&peer, invalid).unwrap_err(),
        StoreError::Invalid(_)
    ));
    let own: Vec<KeyedRecord> = batch
        .iter()
        .map(|r| KeyedRecord {
            key: RecordKey {
                node: node("master"),
                seq: r.key.seq,
            },
            record: r.record.clone(),
        })
        .collect();
    assert!(master.upsert_batch(&node("master"), own).is_err());
    master.flush()?;
    let m = Reader::open(&master_path)?;
    assert!(
        m.counts()?.iter().all(|(_, n)| *n == 0),
        "nothing stored from refused batches"
    );
    assert_eq!(m.cursor(&peer)?, None);
    master.shutdown()?;
    Ok(())
}

#[test]
fn cursors_only_move_forward_and_survive_restart() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = db(&dir, "edge.db");
    let w = writer(&path, "edge-1");
    let master = node("master");
    assert_eq!(w.advance_cursor(&master, 10)?, 10);
    assert_eq!(w.advance_cursor(&master, 4)?, 10);
    assert_eq!(w.advance_cursor(&master, 12)?, 12);
    w.shutdown()?;
    assert_eq!(Reader::open(&path)?.cursor(&master)?, Some(12));
    assert_eq!(Reader::open(&path)?.cursor(&node("other"))?, None);
    Ok(())
}

#[test]
fn prune_deletes_only_acknowledged_and_expired_records() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = db(&dir, "edge.db");
    let w = writer(&path, "edge-1");
    // seq 1..=6 old, 7..=12 recent, 13..=18 old but not acknowledged.
    let mut records = one_of_each(1_000);
    records.extend(one_of_each(100_000));
    records.extend(one_of_each(2_000));
    for r in records {
        w.submit(r)?;
    }
    w.flush()?;
    let acked = w.advance_cursor(&node("master"), 12)?;
    let now = 101_000;
    let report = w.prune_acknowledged_at(acked, Duration::from_secs(50), UnixMs(now))?;
    // Old and acknowledged: seqs 2..=6 (seq 1 is a camera, kept).
    assert_eq!(report.deleted, 5);
    let r = Reader::open(&path)?;
    let left: Vec<u64> = r
        .records_after(&node("edge-1"), 0, 100)?
        .iter()
        .map(|k| k.key.seq)
        .collect();
    assert_eq!(left, [1].into_iter().chain(7..=18).collect::<Vec<_>>());
    // Pruning again changes nothing; a retention of zero then takes the recent acknowledged ones too.
    assert_eq!(
        w.prune_acknowledged_at(acked, Duration::from_secs(50), UnixMs(now))?
            .deleted,
        0
    );
    assert_eq!(
        w.prune_acknowledged_at(acked, Duration::ZERO, UnixMs(200_000))?
            .deleted,
        5
    );
    // The counter does not fall back to the highest remaining seq.
    w.prune_acknowledged_at(u64::MAX, Duration::ZERO, UnixMs::MAX)?;
    assert_eq!(
        r.records_after(&node("edge-1"), 0, 100)?.len(),
        3,
        "cameras stay"
    );
    w.shutdown()?;
    let w = writer(&path, "edge-1");
    assert_eq!(w.write(merge(1, 2, 0))?.seq, 19);
    w.shutdown()?;
    let free: i64 =
        rusqlite::Connection::open(&path)?.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    assert_eq!(free, 0, "freed pages given back by incremental_vacuum");
    Ok(())
}

#[test]
fn records_serialise_for_the_wire() -> TestResult {
    let rec = KeyedRecord {
        key: RecordKey {
            node: node("edge-1"),
            seq: 7,
        },
        record: one_of_each(5)[2].clone(),
    };
    let json = serde_json::to_string(&rec)?;
    assert!(json.contains("\"sighting\""), "{json}");
    let back: KeyedRecord = serde_json::from_str(&json)?;
    assert_eq!(back, rec);
    let bad = json.replace("edge-1", "edge/1");
    assert!(
        serde_json::from_str::<KeyedRecord>(&bad).is_err(),
        "ids validated on the way in"
    );
    let _ = Record::kind(&rec.record);
    Ok(())
}

#[test]
fn records_after_has_no_gaps_while_the_writer_commits() -> TestResult {
    // The sync cursor is only safe if a batch never shows seq s without every seq
    // below it; records of different kinds live in different tables, so this needs
    // one read snapshot across them.
    let dir = tempfile::tempdir()?;
    let path = db(&dir, "edge.db");
    let w = writer_with(&path, "edge-1", 7, Duration::from_millis(1));
    w.flush()?;
    let h = w.handle();
    const N: u64 = 3_000;
    let producer = std::thread::spawn(move || {
        for k in 0..N {
            let r = match k % 3 {
                0 => track("cam-a", k, 0, 1),
                1 => snapshot(k, "cam-a", 0),
                _ => merge(k, k + 1, 0),
            };
            h.submit(r)?;
        }
        h.flush().map(|_| ())
    });
    let r = Reader::open(&path)?;
    let peer = node("edge-1");
    let mut cursor = 0u64;
    let started = std::time::Instant::now();
    while cursor < N {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "stuck at {cursor}"
        );
        let batch = r.records_after(&peer, cursor, 40)?;
        for rec in &batch {
            assert_eq!(rec.key.seq, cursor + 1, "gap after seq {cursor}");
            cursor = rec.key.seq;
        }
    }
    producer.join().map_err(|_| "producer panicked")??;
    w.shutdown()?;
    Ok(())
}

#[test]
fn records_after_within_bounds_the_batch_size() -> TestResult {
    let dir = tempfile::tempdir()?;
    let edge = edge_with_records(&dir, 10); // 60 records; each snapshot carries 206 JPEG bytes
    let r = Reader::open(&edge)?;
    let peer = node("edge-1");
    let size = |k: &KeyedRecord| {
        vidar_store::RECORD_OVERHEAD_BYTES
            + match &k.record {
                Record::Camera(c) => c.name.len(),
                Record::Sighting(s) => 1 + 20 * s.path.len(),
                Record::Identity(i) => 4 * i.embedding.len(),
                Record::Snapshot(s) => s.jpeg.len(),
                _ => 0,
            }
    };
    let all = r.records_after(&peer, 0, 1000)?;
    let mut got = Vec::new();
    let mut cursor = 0;
    let mut batches = 0;
    loop {
        let batch = r.records_after_within(&peer, cursor, 1000, 3_000)?;
        let Some(last) = batch.last() else { break };
        let bytes: usize = batch.iter().map(size).sum();
        assert!(
            batch.len() == 1 || bytes <= 3_000,
            "{bytes} bytes in {} records",
            batch.len()
        );
        cursor = last.key.seq;
        got.extend(batch);
        batches += 1;
    }
    assert_eq!(got, all);
    assert!(batches >= 8, "only {batches} batches for ~27 KB");
    // A record bigger than the budget still goes, alone.
    let one = r.records_after_within(&peer, 3, 1000, 10)?;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].key.seq, 4);
    Ok(())
}
