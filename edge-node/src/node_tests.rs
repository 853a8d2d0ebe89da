//! Tests of `node`: recorder and metrics under a locked database.
use super::*;
use crate::telemetry::render_store;
use std::time::Instant;
use vidar_protocol::{CameraId, NodeId};

/// A recorder whose writer gives up after ~30 ms on a locked database.
fn impatient_recorder(dir: &std::path::Path) -> (Recorder, std::path::PathBuf) {
    let db = dir.join("edge.db");
    let mut cfg = vidar_store::WriterConfig::new(&db, NodeId::new("n1").expect("id"));
    cfg.tuning.busy_timeout_ms = 5;
    cfg.tuning.max_delay_ms = 5;
    let rec = Recorder::open_with(&cfg, Arc::new(NodeMetrics::default())).expect("open");
    (rec, db)
}

/// Another process's write lock on the database, held until dropped.
fn lock(db: &std::path::Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(db).expect("open");
    c.execute_batch("BEGIN EXCLUSIVE").expect("lock");
    c
}

fn wait(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_stopped_database_writer_turns_healthz_red_and_stops_the_node() {
    let dir = tempfile::tempdir().expect("tmp");
    let (rec, db) = impatient_recorder(dir.path());
    let shutdown = Shutdown::new();
    let health = Health::new(&shutdown);
    let board = Arc::new(StatusBoard::default());
    let registry = Arc::new(CameraRegistry::default());
    watch_health(&health, &rec.writer(), &board, &registry);
    assert!(health.report().ok(), "{:?}", health.report());
    let held = lock(&db);
    rec.camera(&CameraId::new("c1").expect("id"), "rtsp://cam/1");
    wait("the writer to give up", || rec.writer().stopped().is_some());
    let report = health.report();
    assert!(!report.ok());
    assert!(
        report.text().contains("database writer: FAILED"),
        "{}",
        report.text()
    );
    let reason = shutdown.reason().expect("the node stops");
    assert!(reason.failure, "{reason:?}");
    drop(held);
}

#[test]
fn records_written_counts_commits_not_submissions() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = dir.path().join("edge.db");
    let node = NodeId::new("n1").expect("id");
    let metrics = Arc::new(NodeMetrics::default());
    let rec = Recorder::open(&db, &node, Arc::clone(&metrics)).expect("open");
    let mut expo = crate::telemetry::exposition(&node);
    let (m, writer) = (Arc::clone(&metrics), rec.writer());
    expo.collect(move |f| {
        crate::telemetry::render_node(f, &StatusBoard::default(), &[], &m)?;
        render_store(f, &writer)
    });
    let value = |name: &str| -> u64 {
        let text = expo.render();
        vidar_runtime::metrics::value(&text, name, &[("node", "n1")]).map_or(u64::MAX, |v| v as u64)
    };
    // The disk is busy (another process holds the lock): records are
    // submitted but not committed.
    let held = lock(&db);
    for k in 0..3 {
        rec.camera(&CameraId::new(&format!("c{k}")).expect("id"), "file:///x");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(value("vidar_records_submitted_total"), 3);
    assert_eq!(
        value("vidar_records_written_total"),
        0,
        "nothing committed yet"
    );
    drop(held);
    wait("the commit", || value("vidar_records_written_total") == 3);
    assert!(rec.writer().stopped().is_none());
}
