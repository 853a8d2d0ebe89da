//! Kill safety: a real child process writes records and is killed with SIGKILL
//! mid-stream; the database must reopen cleanly with every acknowledged record,
//! no duplicate, and a seq counter that never reuses a value.
//!
//! The child is this test binary re-invoked on the ignored `kill_child_writer`
//! test, with the database path in an environment variable. It prints
//! `VIDAR-ACK <seq> <index>` after each record's commit is acknowledged.

#![allow(clippy::unwrap_used)] // a test crate: a panic is how a helper reports failure

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vidar_config::Config;

use common::*;
use vidar_protocol::{IdentityId, TrackId, UnixMs};
use vidar_store::{Reader, Record, TrackRecord, WriterConfig};

const CHILD_DB: &str = "VIDAR_STORE_KILL_CHILD_DB";
const CHILD_FIRST: &str = "VIDAR_STORE_KILL_CHILD_FIRST";
const ACK: &str = "VIDAR-ACK ";

/// Record `index` of the stream; the index is recoverable from the stored record.
fn record(index: u64) -> Record {
    match index % 3 {
        0 => Record::Sighting(sighting(
            7,
            "cam-a",
            index,
            index as i64,
            index as i64 + 400,
            12,
        )),
        1 => Record::Track(TrackRecord {
            camera: cam("cam-b"),
            track: TrackId(index),
            first_ms: UnixMs(0),
            last_ms: UnixMs(1),
            identity: None,
        }),
        _ => {
            let Record::Snapshot(mut s) = snapshot(0, "cam-c", 0) else {
                unreachable!()
            };
            s.identity = IdentityId(index);
            Record::Snapshot(s)
        }
    }
}

fn index_of(r: &Record) -> u64 {
    match r {
        Record::Sighting(s) => s.track.0,
        Record::Track(t) => t.track.0,
        Record::Snapshot(s) => s.identity.0,
        other => panic!("unexpected record {other:?}"),
    }
}

#[test]
#[ignore = "child process of kill_mid_stream_loses_nothing_acknowledged; started by it"]
fn kill_child_writer() {
    let Ok(path) = std::env::var(CHILD_DB) else {
        eprintln!("only meaningful as the child of kill_mid_stream_loses_nothing_acknowledged");
        return;
    };
    let first: u64 = std::env::var(CHILD_FIRST).unwrap().parse().unwrap();
    let mut c = WriterConfig::new(&path, node("edge-1"));
    c.tuning.max_batch = 32;
    c.tuning.max_delay_ms = 2;
    let w = c.build(&()).unwrap();
    let (tx, rx) = std::sync::mpsc::sync_channel::<(u64, vidar_store::PendingKey)>(10_000);
    let printer = std::thread::spawn(move || {
        for (index, pending) in rx {
            let key = pending.wait().unwrap();
            println!("{ACK}{} {index}", key.seq);
        }
    });
    let start = Instant::now();
    let mut index = first;
    // Bounded, in case the parent died without killing us.
    while start.elapsed() < Duration::from_secs(60) {
        tx.send((index, w.submit_acked(record(index)).unwrap()))
            .unwrap();
        index += 1;
    }
    drop(tx);
    printer.join().unwrap();
    w.shutdown().unwrap();
}

/// Runs one child until it has acknowledged `kill_after` records, SIGKILLs it,
/// and returns every `(seq, index)` it acknowledged.
fn run_and_kill(path: &std::path::Path, first: u64, kill_after: usize) -> Vec<(u64, u64)> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "kill_child_writer",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB, path)
        .env(CHILD_FIRST, first.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut acks = Vec::new();
    let started = Instant::now();
    let mut killed = false;
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(pos) = line.find(ACK) {
            let mut it = line[pos + ACK.len()..]
                .split_whitespace()
                .map(|v| v.parse::<u64>().unwrap());
            acks.push((it.next().unwrap(), it.next().unwrap()));
        }
        if !killed && (acks.len() >= kill_after || started.elapsed() > Duration::from_secs(30)) {
            child.kill().unwrap(); // SIGKILL
            killed = true;
        }
    }
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "child was not killed mid-stream: {status:?}"
    );
    assert!(
        acks.len() >= kill_after,
        "child acknowledged only {} records",
        acks.len()
    );
    acks
}

#[test]
fn kill_mid_stream_loses_nothing_acknowledged() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = db(&dir, "killed.db");
    let edge = node("edge-1");
    let mut acked: BTreeMap<u64, u64> = BTreeMap::new();
    for generation in 0..3u64 {
        let acks = run_and_kill(&path, generation * 1_000_000, 2_000);
        let prev_max = acked.keys().next_back().copied().unwrap_or(0);
        let stored_before = acked.len();
        for (seq, index) in acks {
            assert!(
                seq > prev_max,
                "generation {generation} reused seq {seq} (had {prev_max})"
            );
            assert!(
                acked.insert(seq, index).is_none(),
                "seq {seq} acknowledged twice"
            );
        }
        assert!(acked.len() > stored_before);

        let c = rusqlite::Connection::open(&path)?;
        let check: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        assert_eq!(check, "ok");
        drop(c);

        let r = Reader::open(&path)?;
        let stored = r.records_after(&edge, 0, vidar_store::MAX_QUERY_ROWS)?;
        let by_seq: BTreeMap<u64, u64> = stored
            .iter()
            .map(|k| (k.key.seq, index_of(&k.record)))
            .collect();
        for (seq, index) in &acked {
            assert_eq!(
                by_seq.get(seq),
                Some(index),
                "acknowledged seq {seq} (record {index}) lost or altered"
            );
        }
        let distinct: BTreeSet<u64> = by_seq.values().copied().collect();
        assert_eq!(distinct.len(), stored.len(), "a record was stored twice");
        let last = r.last_seq(&edge)?;
        assert_eq!(
            by_seq.keys().copied().collect::<Vec<_>>(),
            (1..=last).collect::<Vec<_>>(),
            "seqs are gapless up to the counter"
        );
        // Records of earlier generations are all still there, and only from those generations' ranges.
        assert!(distinct.iter().all(|i| i / 1_000_000 <= generation));
    }
    // After the last kill, a fresh writer continues the sequence.
    let max_acked = acked.keys().next_back().copied().unwrap_or(0);
    let last_before = Reader::open(&path)?.last_seq(&edge)?;
    assert!(last_before >= max_acked);
    let w = writer(&path, "edge-1");
    let key = w.write(record(99_000_000))?;
    assert_eq!(key.seq, last_before + 1);
    w.shutdown()?;
    Ok(())
}
