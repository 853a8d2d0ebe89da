//! The live one-line summary printed by `run --status-every`.

use super::CameraRegistry;
use super::StatusBoard;
use crate::telemetry::NodeMetrics;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The live one-line summary printed by `run --status-every`.
#[derive(Debug)]
pub struct Summary {
    pub registry: Arc<CameraRegistry>,
    pub board: Arc<StatusBoard>,
    pub node: Arc<NodeMetrics>,
    pub last: std::collections::HashMap<vidar_protocol::CameraId, u64>,
    /// Starts every line (the node id, in a cluster).
    pub prefix: Option<String>,
}

impl Summary {
    pub fn new(
        registry: Arc<CameraRegistry>,
        board: Arc<StatusBoard>,
        node: Arc<NodeMetrics>,
    ) -> Self {
        Summary {
            registry,
            board,
            node,
            last: std::collections::HashMap::new(),
            prefix: None,
        }
    }

    pub fn line(&mut self, dt: f64) -> String {
        let statuses = self.board.snapshot();
        let mut line = match &self.prefix {
            Some(p) => format!("{p} | "),
            None => String::new(),
        };
        let cams = self.registry.snapshot();
        if cams.is_empty() {
            line.push_str("no cameras | ");
        }
        for (cam, m) in &cams {
            let analysed = m.analysed.load(Ordering::Relaxed);
            let before = self.last.insert(cam.clone(), analysed).unwrap_or(analysed);
            let fps = analysed.saturating_sub(before) as f64 / dt.max(1e-3);
            let st = statuses
                .iter()
                .find(|(c, _)| c == cam.as_str())
                .map(|(_, s)| s);
            let (state, dropped) = st
                .map(|s| (s.state.as_str(), s.counters.dropped))
                .unwrap_or(("?", 0));
            let _ = write!(
                line,
                "{cam}: {state} {fps:.1} fps, {} tracks, {dropped} dropped, p99 {:.0} ms | ",
                m.tracks.load(Ordering::Relaxed),
                m.latency.quantile(0.99) * 1000.0
            );
        }
        let _ = write!(
            line,
            "identities {} records {}",
            self.node.identities.load(Ordering::Relaxed),
            self.node.records_submitted.load(Ordering::Relaxed)
        );
        line
    }
}
