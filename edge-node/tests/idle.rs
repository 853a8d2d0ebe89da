//! The node's threads at rest: the re-ID worker sleeps until an input, a
//! remote deadline or its chores, and never polls. One test in this file, so
//! the `reid` thread it finds in this process is its worker's.

use std::sync::Arc;
use std::time::Duration;

use vidar_edge_node::identify::Identifier;
use vidar_edge_node::recorder::Recorder;
use vidar_edge_node::telemetry::NodeMetrics;
use vidar_protocol::NodeId;
use vidar_reid::{Gallery, GalleryConfig};
use vidar_testkit::fakes::ColorEmbedder;
use vidar_testkit::process::voluntary_switches as switches;

/// An idle re-ID worker sleeps through three seconds (its chores are 10 s
/// apart): it used to wake every 100 ms to look for overdue remote answers.
#[test]
fn an_idle_reid_worker_sleeps() {
    let dir = tempfile::tempdir().expect("tmp");
    let node = NodeId::new("n1").expect("id");
    let metrics = Arc::new(NodeMetrics::default());
    let rec =
        Recorder::open(&dir.path().join("e.db"), &node, Arc::clone(&metrics)).expect("recorder");
    let gallery =
        Gallery::with_model(GalleryConfig::default(), ColorEmbedder::TAG).expect("gallery");
    let id = Identifier::spawn(
        node,
        Box::new(ColorEmbedder::default()),
        gallery,
        rec.share(),
        metrics,
        false,
        None,
    )
    .expect("worker");
    std::thread::sleep(Duration::from_millis(300));
    let before = switches("reid");
    assert_eq!(before.len(), 1, "one reid thread: {before:?}");
    std::thread::sleep(Duration::from_secs(3));
    let after = switches("reid");
    let woke = after
        .first()
        .copied()
        .unwrap_or(0)
        .saturating_sub(before[0]);
    assert!(
        woke <= 2,
        "the idle re-ID worker woke {woke} times in 3 s: it polls"
    );
    drop(id);
    rec.close();
}
