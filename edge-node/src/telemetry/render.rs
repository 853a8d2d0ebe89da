//! The node's Prometheus exposition: streams, cameras, node counters, store.

use super::StatusBoard;
use crate::telemetry::{header, render_histogram, CameraMetrics, NodeMetrics};
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use vidar_protocol::StreamStatus;

pub fn render_store(
    out: &mut String,
    node: &vidar_protocol::NodeId,
    store: &vidar_store::WriterHandle,
) {
    let st = store.stats();
    for (name, kind, help, v) in [
        (
            "vidar_records_written_total",
            "counter",
            "Records committed to the local database.",
            st.records,
        ),
        (
            "vidar_store_records_committed_total",
            "counter",
            "Records committed by the database writer.",
            st.records,
        ),
        (
            "vidar_store_batches_total",
            "counter",
            "Write transactions committed.",
            st.batches,
        ),
        (
            "vidar_store_queue_depth",
            "gauge",
            "Records waiting for the database writer.",
            st.queued,
        ),
        (
            "vidar_store_last_seq",
            "gauge",
            "Highest record sequence number committed.",
            st.last_seq,
        ),
    ] {
        header(out, name, kind, help);
        let _ = writeln!(out, "{name}{{node=\"{node}\"}} {v}");
    }
}

/// Reads one value of a camera's analysis metrics.
type CameraValue = dyn Fn(&CameraMetrics) -> u64;

pub fn render_node(
    out: &mut String,
    node: &vidar_protocol::NodeId,
    board: &StatusBoard,
    cams: &[(vidar_protocol::CameraId, Arc<CameraMetrics>)],
    nm: &NodeMetrics,
) {
    let statuses = board.snapshot();
    let counter = |out: &mut String, name: &str, help: &str, f: &dyn Fn(&StreamStatus) -> u64| {
        header(out, name, "counter", help);
        for (cam, st) in &statuses {
            let _ = writeln!(out, "{name}{{node=\"{node}\",camera=\"{cam}\"}} {}", f(st));
        }
    };
    counter(
        out,
        "vidar_frames_total",
        "Frames decoded by ingest.",
        &|s| s.counters.frames,
    );
    counter(
        out,
        "vidar_frames_dropped_total",
        "Frames dropped because analysis fell behind.",
        &|s| s.counters.dropped,
    );
    counter(out, "vidar_reconnects_total", "Stream reconnects.", &|s| {
        s.counters.reconnects
    });
    counter(
        out,
        "vidar_decode_errors_total",
        "Corrupt or undecodable data events.",
        &|s| s.counters.decode_errors,
    );
    header(
        out,
        "vidar_queue_depth",
        "gauge",
        "Frames waiting in the stream queue.",
    );
    for (cam, st) in &statuses {
        let _ = writeln!(
            out,
            "vidar_queue_depth{{node=\"{node}\",camera=\"{cam}\"}} {}",
            st.queue_depth
        );
    }
    header(
        out,
        "vidar_stream_up",
        "gauge",
        "1 when the stream is delivering frames.",
    );
    for (cam, st) in &statuses {
        let up = u8::from(st.state == vidar_protocol::StreamState::Streaming);
        let _ = writeln!(
            out,
            "vidar_stream_up{{node=\"{node}\",camera=\"{cam}\",state=\"{}\"}} {up}",
            st.state.as_str()
        );
    }
    let per_camera: [(&str, &str, &str, &CameraValue); 2] = [
        (
            "vidar_frames_analysed_total",
            "counter",
            "Frames analysed (detected or tracked).",
            &|m| m.analysed.load(Ordering::Relaxed),
        ),
        (
            "vidar_tracks",
            "gauge",
            "Confirmed tracks in the latest analysed frame.",
            &|m| m.tracks.load(Ordering::Relaxed),
        ),
    ];
    for (name, kind, help, value) in per_camera {
        header(out, name, kind, help);
        for (cam, m) in cams {
            let _ = writeln!(
                out,
                "{name}{{node=\"{node}\",camera=\"{cam}\"}} {}",
                value(m)
            );
        }
    }
    header(
        out,
        "vidar_capture_to_result_seconds",
        "histogram",
        "Capture to analysis result latency.",
    );
    for (cam, m) in cams {
        render_histogram(
            out,
            "vidar_capture_to_result_seconds",
            &format!("node=\"{node}\",camera=\"{cam}\""),
            &m.latency,
        );
    }
    let labels = format!("node=\"{node}\"");
    for (name, help, h) in [
        (
            "vidar_detector_inference_seconds",
            "Detector inference time per run.",
            &nm.inference,
        ),
        (
            "vidar_detector_preprocess_seconds",
            "Detector pre-processing time per run.",
            &nm.preprocess,
        ),
        (
            "vidar_reid_inference_seconds",
            "Re-ID time per batch of crops.",
            &nm.reid_inference,
        ),
    ] {
        header(out, name, "histogram", help);
        render_histogram(out, name, &labels, h);
    }
    for (name, help, v) in [
        (
            "vidar_records_submitted_total",
            "Records handed to the database writer (committed: vidar_records_written_total).",
            &nm.records_submitted,
        ),
        (
            "vidar_identities_total",
            "Identities minted by this node.",
            &nm.identities,
        ),
        (
            "vidar_identities_reconsidered_total",
            "Minted identities joined to a known one when the track's later views matched it.",
            &nm.reconsidered,
        ),
        (
            "vidar_crops_embedded_total",
            "Person crops embedded.",
            &nm.crops,
        ),
        (
            "vidar_analysis_errors_total",
            "Failed inference runs or writes.",
            &nm.errors,
        ),
        (
            "vidar_crops_remote_total",
            "Crops identified by another node's re-ID service.",
            &nm.crops_remote,
        ),
        (
            "vidar_reid_remote_failures_total",
            "Remote re-ID requests that failed and were done locally.",
            &nm.remote_failures,
        ),
        (
            "vidar_crops_throttled_total",
            "Crops kept local because the plan's bandwidth share was used up.",
            &nm.crops_throttled,
        ),
        (
            "vidar_crops_served_total",
            "Crops from other nodes identified here.",
            &nm.crops_served,
        ),
        (
            "vidar_cluster_inputs_dropped_total",
            "Cluster inputs dropped because the re-ID worker was full.",
            &nm.inputs_dropped,
        ),
    ] {
        header(out, name, "counter", help);
        let _ = writeln!(out, "{name}{{{labels}}} {}", v.load(Ordering::Relaxed));
    }
}
