//! The node's metric families: streams, cameras, node counters, store. Each
//! is written once per scrape through the runtime's exposition, whose samples
//! all carry the `node` label ([`exposition`]).

use super::StatusBoard;
use crate::telemetry::{CameraMetrics, NodeMetrics};
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use vidar_protocol::{CameraId, NodeId, StreamState, StreamStatus};
use vidar_runtime::metrics::{Exposition, Families};

/// The node's exposition: every sample labelled `node="<id>"`.
pub fn exposition(node: &NodeId) -> Exposition {
    Exposition::new(&[("node", node.as_str())])
}

/// The database writer's families.
pub fn render_store(f: &mut Families<'_>, store: &vidar_store::WriterHandle) -> fmt::Result {
    let st = store.stats();
    f.counter(
        "vidar_records_written",
        "Records committed to the local database.",
        st.records,
    )?;
    f.counter(
        "vidar_store_records_committed",
        "Records committed by the database writer.",
        st.records,
    )?;
    f.counter(
        "vidar_store_batches",
        "Write transactions committed.",
        st.batches,
    )?;
    f.gauge(
        "vidar_store_queue_depth",
        "Records waiting for the database writer.",
        st.queued,
    )?;
    f.gauge(
        "vidar_store_last_seq",
        "Highest record sequence number committed.",
        st.last_seq,
    )?;
    f.gauge(
        "vidar_sqlite_memory_bytes",
        "Heap SQLite holds in this process (page caches, statements; capped per connection).",
        vidar_store::sqlite_memory_bytes(),
    )?;
    vidar_runtime::heap::encode(f)
}

/// Streams (from their statuses), cameras' analysis and the node's counters.
pub fn render_node(
    f: &mut Families<'_>,
    board: &StatusBoard,
    cams: &[(CameraId, Arc<CameraMetrics>)],
    nm: &NodeMetrics,
) -> fmt::Result {
    let statuses = board.snapshot();
    let streams = |get: fn(&StreamStatus) -> u64| {
        statuses
            .iter()
            .map(move |(cam, st)| ([("camera", cam.as_str())], get(st)))
    };
    f.counters(
        "vidar_frames",
        "Frames decoded by ingest.",
        streams(|s| s.counters.frames),
    )?;
    f.counters(
        "vidar_frames_dropped",
        "Frames dropped because analysis fell behind.",
        streams(|s| s.counters.dropped),
    )?;
    f.counters(
        "vidar_reconnects",
        "Stream reconnects.",
        streams(|s| s.counters.reconnects),
    )?;
    f.counters(
        "vidar_decode_errors",
        "Corrupt or undecodable data events.",
        streams(|s| s.counters.decode_errors),
    )?;
    f.counters(
        "vidar_stream_bytes",
        "Encoded video bytes received (RTP; network sources only).",
        streams(|s| s.counters.bytes),
    )?;
    f.gauges(
        "vidar_queue_depth",
        "Frames waiting in the stream queue.",
        streams(|s| s.queue_depth as u64),
    )?;
    f.gauges(
        "vidar_stream_up",
        "1 when the stream is delivering frames.",
        statuses.iter().map(|(cam, st)| {
            (
                [("camera", cam.as_str()), ("state", st.state.as_str())],
                u64::from(st.state == StreamState::Streaming),
            )
        }),
    )?;
    let cameras = |get: fn(&CameraMetrics) -> u64| {
        cams.iter()
            .map(move |(cam, m)| ([("camera", cam.as_str())], get(m)))
    };
    f.counters(
        "vidar_frames_analysed",
        "Frames analysed (detected or tracked).",
        cameras(|m| m.analysed.load(Ordering::Relaxed)),
    )?;
    f.counters(
        "vidar_frames_detected",
        "Frames the detector ran on.",
        cameras(|m| m.detected.load(Ordering::Relaxed)),
    )?;
    f.counters(
        "vidar_detector_calls_saved",
        "Due frames the motion gate kept from the detector (nothing moved, or only tracked people along their predicted paths; the tracker predicted).",
        cameras(|m| m.motion_skipped.load(Ordering::Relaxed)),
    )?;
    f.counters(
        "vidar_detector_calls_saved_tracked",
        "Of vidar_detector_calls_saved, the frames where tracked people moved along their predicted paths ([motion] track_skip).",
        cameras(|m| m.tracked_skipped.load(Ordering::Relaxed)),
    )?;
    f.gauges(
        "vidar_motion_share",
        "Share of the frame moving in the last frame the motion gate judged (0-1).",
        cams.iter()
            .map(|(cam, m)| ([("camera", cam.as_str())], m.motion_share.get())),
    )?;
    f.gauges(
        "vidar_tracks",
        "Confirmed tracks in the latest analysed frame.",
        cameras(|m| m.tracks.load(Ordering::Relaxed)),
    )?;
    f.gauges(
        "vidar_detection_interval",
        "The camera's detection interval now: every Nth frame (adaptive under load, [detection_rate]).",
        cameras(|m| m.detection_interval.load(Ordering::Relaxed)),
    )?;
    f.histograms(
        "vidar_capture_to_result_seconds",
        "Capture to analysis result latency.",
        cams.iter()
            .map(|(cam, m)| ([("camera", cam.as_str())], &m.latency)),
    )?;
    f.histogram(
        "vidar_detector_inference_seconds",
        "Detector inference time per run.",
        &nm.inference,
    )?;
    f.histogram(
        "vidar_detector_preprocess_seconds",
        "Detector pre-processing time per run.",
        &nm.preprocess,
    )?;
    f.histogram(
        "vidar_detector_postprocess_seconds",
        "Detector post-processing (decode, NMS) time per run.",
        &nm.postprocess,
    )?;
    f.histogram(
        "vidar_analysis_pass_seconds",
        "Wall-clock time of one pass of the analysis loop (dispatch, tracking, re-ID hand-off).",
        &nm.analysis_pass,
    )?;
    f.counter(
        "vidar_analysis_stalls",
        "Analysis passes of 100 ms or more (every camera held back).",
        nm.analysis_stalls.load(Ordering::Relaxed),
    )?;
    f.histogram(
        "vidar_reid_inference_seconds",
        "Re-ID time per batch of crops.",
        &nm.reid_inference,
    )?;
    for (name, help, v) in [
        (
            "vidar_records_submitted",
            "Records handed to the database writer (committed: vidar_records_written_total).",
            &nm.records_submitted,
        ),
        (
            "vidar_identities",
            "Identities minted by this node.",
            &nm.identities,
        ),
        (
            "vidar_identities_reconsidered",
            "Minted identities joined to a known one when the track's later views matched it.",
            &nm.reconsidered,
        ),
        ("vidar_crops_embedded", "Person crops embedded.", &nm.crops),
        (
            "vidar_analysis_errors",
            "Failed inference runs or writes.",
            &nm.errors,
        ),
        (
            "vidar_crops_remote",
            "Crops identified by another node's re-ID service.",
            &nm.crops_remote,
        ),
        (
            "vidar_reid_remote_failures",
            "Remote re-ID requests that failed and were done locally.",
            &nm.remote_failures,
        ),
        (
            "vidar_crops_throttled",
            "Crops kept local because the plan's bandwidth share was used up.",
            &nm.crops_throttled,
        ),
        (
            "vidar_crops_served",
            "Crops from other nodes identified here.",
            &nm.crops_served,
        ),
        (
            "vidar_cluster_inputs_dropped",
            "Cluster inputs dropped because the re-ID worker was full.",
            &nm.inputs_dropped,
        ),
        (
            "vidar_model_swaps",
            "Times the re-ID worker swapped to a refreshed model.",
            &nm.model_swaps,
        ),
        (
            "vidar_identities_retired",
            "Identities retired from the gallery by model swaps (vectors of the old model, no snapshot to re-embed).",
            &nm.identities_retired,
        ),
        (
            "vidar_identities_reembedded",
            "Identities kept across model swaps, re-embedded from their snapshots.",
            &nm.identities_reembedded,
        ),
        (
            "vidar_model_refreshes_applied",
            "Model refreshes verified, built and swapped in.",
            &nm.model_refreshes_applied,
        ),
        (
            "vidar_model_refreshes_refused",
            "Model refreshes refused (another model, a file unlike the signed one, another graph).",
            &nm.model_refreshes_refused,
        ),
        (
            "vidar_training_tracklets",
            "Confirmed tracks stored as training samples.",
            &nm.training_tracklets,
        ),
        (
            "vidar_training_samples",
            "Crops stored as training samples.",
            &nm.training_samples,
        ),
        (
            "vidar_training_dropped",
            "Tracks not stored as training samples (queue full or a failed write).",
            &nm.training_dropped,
        ),
        (
            "vidar_training_round_steps",
            "Split training steps this node answered (forward, backward, begin, finish, profile).",
            &nm.training_round_steps,
        ),
        (
            "vidar_training_round_refused",
            "Split training steps refused (busy, a bad request, nothing to train on).",
            &nm.training_round_refused,
        ),
        (
            "vidar_model_refreshes_failed",
            "Model refreshes that failed for now (fetch or write) and wait for the master's repeat.",
            &nm.model_refreshes_failed,
        ),
    ] {
        f.counter(name, help, v.load(Ordering::Relaxed))?;
    }
    f.gauge(
        "vidar_detector_capacity_fps",
        "Frames per second the detectors can take, as measured (0 until measured; [detection_rate]).",
        nm.detector_capacity.get(),
    )?;
    f.gauge(
        "vidar_gallery_identities",
        "Identities the re-ID gallery holds now.",
        nm.gallery_identities.load(Ordering::Relaxed),
    )?;
    f.gauge(
        "vidar_model_refresh_serial",
        "Serial of the last model refresh applied (0: none).",
        nm.model_refresh_serial.load(Ordering::Relaxed),
    )
}
