//! The batching writer: keys, batching, delay, flush, shutdown, backpressure.

#![allow(clippy::unwrap_used)] // a test crate: a panic is how a helper reports failure

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use vidar_config::Config;

use common::*;
use vidar_store::{Reader, Record, StoreError, TimeRange};

fn count(path: &std::path::Path, table: &str) -> u64 {
    let r = Reader::open(path).unwrap();
    r.counts()
        .unwrap()
        .into_iter()
        .find(|(t, _)| *t == table)
        .unwrap()
        .1
}

#[test]
fn keys_are_consecutive_across_kinds_and_records_roundtrip() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = db(&dir, "e.db");
    let w = writer(&path, "edge-1");
    let records = one_of_each(1_700_000_000_000);
    let pending: Vec<_> = records
        .iter()
        .map(|r| w.submit_acked(r.clone()))
        .collect::<Result<_, _>>()?;
    let seqs: Vec<u64> = pending
        .into_iter()
        .map(|p| p.wait().map(|k| k.seq))
        .collect::<Result<_, _>>()?;
    assert_eq!(seqs, vec![1, 2, 3, 4, 5, 6]);
    let r = Reader::open(&path)?;
    let back = r.records_after(&node("edge-1"), 0, 100)?;
    assert_eq!(
        back.iter().map(|k| k.record.clone()).collect::<Vec<_>>(),
        records
    );
    assert!(back.iter().all(|k| k.key.node == node("edge-1")));
    w.shutdown()?;
    Ok(())
}

#[test]
fn batches_are_bounded_by_max_batch() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = db(&dir, "e.db");
    let w = writer_with(&path, "edge-1", 64, Duration::from_secs(10));
    for k in 0..1000 {
        w.submit(Record::Sighting(sighting(
            k,
            "cam-a",
            k,
            k as i64,
            k as i64 + 10,
            3,
        )))?;
    }
    let report = w.flush()?;
    assert_eq!(report.last_seq, 1000);
    assert_eq!(report.records, 1000);
    let stats = w.stats();
    // 15 full batches of 64, and the flush commits the remaining 40.
    assert_eq!(stats.batches, 16, "{stats:?}");
    assert_eq!(count(&path, "sightings"), 1000);
    w.shutdown()?;
    Ok(())
}

#[test]
fn a_partial_batch_waits_for_max_delay_then_commits_without_flush() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = db(&dir, "e.db");
    let w = writer_with(&path, "edge-1", 256, Duration::from_millis(1500));
    let start = Instant::now();
    w.submit(camera("cam-a", "x", 1))?;
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(count(&path, "cameras"), 0, "committed before max_delay");
    while count(&path, "cameras") == 0 {
        assert!(start.elapsed() < Duration::from_secs(5), "never committed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(start.elapsed() >= Duration::from_millis(1450));
    w.shutdown()?;
    Ok(())
}

#[test]
fn flush_commits_at_once_and_shutdown_commits_what_is_queued() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = db(&dir, "e.db");
    let w = writer_with(&path, "edge-1", 100_000, Duration::from_secs(30));
    w.submit(camera("cam-a", "x", 1))?;
    let t = Instant::now();
    w.flush()?;
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(count(&path, "cameras"), 1);

    let h = w.handle();
    for k in 0..500 {
        h.submit(track("cam-a", k, 0, 10))?;
    }
    let stats = w.shutdown()?;
    assert_eq!(stats.records, 501);
    assert_eq!(count(&path, "tracks"), 500);
    // The handle outlives the writer: refused with a clear error, not a hang.
    let e = h.submit(camera("cam-a", "late", 2)).unwrap_err();
    assert!(matches!(e, StoreError::WriterStopped { .. }), "{e}");
    assert!(h.flush().is_err());
    Ok(())
}

#[test]
fn invalid_records_are_refused_at_submit_and_the_writer_goes_on() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = db(&dir, "e.db");
    let w = writer(&path, "edge-1");
    let mut backwards = sighting(1, "cam-a", 1, 100, 50, 0);
    backwards.path.clear();
    let too_long = sighting(1, "cam-a", 1, 0, vidar_store::MAX_SIGHTING_SPAN_MS + 1, 2);
    let mut nan = sighting(1, "cam-a", 1, 0, 10, 2);
    nan.path[1].bbox.w = f32::NAN;
    let mut not_jpeg = snapshot(1, "cam-a", 5);
    if let Record::Snapshot(s) = &mut not_jpeg {
        s.jpeg[0] = 0x89;
    }
    for bad in [
        Record::Sighting(backwards),
        Record::Sighting(too_long),
        Record::Sighting(nan),
        identity(1, "cam-a", 0, 0),
        not_jpeg,
        merge(3, 3, 0),
        camera("cam-a", &"n".repeat(300), 0),
    ] {
        let kind = bad.kind();
        let e = w.submit(bad).unwrap_err();
        assert!(matches!(e, StoreError::Invalid(_)), "{e}");
        assert!(e.to_string().contains(kind), "{e}");
    }
    assert_eq!(
        w.write(camera("cam-a", "fine", 0))?.seq,
        1,
        "no seq consumed by refused records"
    );
    w.shutdown()?;
    Ok(())
}

#[test]
fn concurrent_producers_get_distinct_gapless_keys() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = db(&dir, "e.db");
    let w = writer_with(&path, "edge-1", 32, Duration::from_millis(2));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let h = w.handle();
            std::thread::spawn(move || {
                (0..300u64)
                    .map(|k| {
                        h.write(track("cam-a", t * 1000 + k, 0, 1))
                            .map(|key| key.seq)
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
        })
        .collect();
    let mut all = BTreeSet::new();
    for t in threads {
        let seqs = t.join().map_err(|_| "producer panicked")??;
        assert!(
            seqs.windows(2).all(|p| p[0] < p[1]),
            "one producer's keys increase"
        );
        all.extend(seqs);
    }
    assert_eq!(all, (1..=1200).collect::<BTreeSet<_>>());
    w.shutdown()?;
    Ok(())
}

#[test]
fn try_submit_reports_a_full_queue_and_submit_waits_out_a_locked_database() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = db(&dir, "e.db");
    let mut c = vidar_store::WriterConfig::new(&path, node("edge-1"));
    c.tuning.max_batch = 1;
    c.tuning.max_delay_ms = 0;
    c.tuning.queue_capacity = 2;
    c.tuning.busy_timeout_ms = 100;
    let w = c.build(&())?;
    w.write(camera("cam-a", "before", 0))?;

    // Another process holds the write lock for a while.
    let blocker = rusqlite::Connection::open(&path)?;
    blocker.execute_batch("BEGIN IMMEDIATE; INSERT INTO sync_cursors VALUES ('x', 0, 0);")?;
    let mut full = false;
    for k in 0..50 {
        match w.try_submit(track("cam-a", k, 0, 1)) {
            Ok(()) => {}
            Err(StoreError::QueueFull { capacity, .. }) => {
                assert_eq!(capacity, 2);
                full = true;
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    assert!(
        full,
        "queue never reported full while the database was locked"
    );
    // Released within the writer's retry budget: everything queued commits.
    std::thread::sleep(Duration::from_millis(150));
    blocker.execute_batch("COMMIT")?;
    let report = w.flush()?;
    assert!(report.last_seq >= 2, "{report:?}");
    w.shutdown()?;
    let r = Reader::open(&path)?;
    assert_eq!(r.cursor(&node("x"))?, Some(0));
    assert_eq!(r.last_seq(&node("edge-1"))?, report.last_seq);
    Ok(())
}

#[test]
fn a_writer_that_cannot_commit_stops_and_says_why() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = db(&dir, "e.db");
    let mut c = vidar_store::WriterConfig::new(&path, node("edge-1"));
    c.tuning.busy_timeout_ms = 20;
    c.tuning.max_delay_ms = 0;
    let w = c.build(&())?;
    let blocker = rusqlite::Connection::open(&path)?;
    blocker.execute_batch("BEGIN IMMEDIATE; INSERT INTO sync_cursors VALUES ('x', 0, 0);")?;
    let e = w.write(camera("cam-a", "blocked", 0)).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("e.db") && msg.contains("locked"), "{msg}");
    assert!(w.submit(camera("cam-a", "after", 0)).is_err());
    blocker.execute_batch("ROLLBACK")?;
    assert!(w.shutdown().is_err());
    let r = Reader::open(&path)?;
    assert!(r.cameras()?.is_empty());
    Ok(())
}

#[test]
fn queries_see_only_committed_records() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = db(&dir, "e.db");
    let w = writer_with(&path, "edge-1", 1000, Duration::from_secs(30));
    w.submit(Record::Sighting(sighting(1, "cam-a", 1, 0, 10, 2)))?;
    w.flush()?;
    let r = Reader::open(&path)?;
    assert_eq!(
        r.trajectory(vidar_protocol::IdentityId(1), TimeRange::all(), 10)?
            .len(),
        1
    );
    w.submit(Record::Sighting(sighting(1, "cam-a", 2, 20, 30, 2)))?;
    assert_eq!(
        r.trajectory(vidar_protocol::IdentityId(1), TimeRange::all(), 10)?
            .len(),
        1
    );
    w.flush()?;
    assert_eq!(
        r.trajectory(vidar_protocol::IdentityId(1), TimeRange::all(), 10)?
            .len(),
        2
    );
    w.shutdown()?;
    Ok(())
}
