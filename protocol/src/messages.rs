//! Every message exchanged between Vidar processes over zenoh, grouped by
//! direction, each with its own [`MessageKind`](crate::wire::MessageKind) and its
//! invariants ([`Message::validate`](crate::wire::Message::validate)).
//!
//! | message              | from -> to         | key ([`crate::keys::Keys`])  | how                |
//! |----------------------|--------------------|------------------------------|--------------------|
//! | [`NodeStatus`]       | edge -> master     | `status(node)`               | put, about 1 Hz    |
//! | [`Plan`]             | master -> all      | `plan()`                     | put on change, signed |
//! | [`ReidRequest`]      | edge -> re-ID node | `reid(node, asker)`          | query              |
//! | [`ReidReply`]        | re-ID node -> edge | `reid(node, asker)`          | reply              |
//! | [`IdentityAnnounce`] | edge -> all        | `identities(node)`           | put, once a mint   |
//! | [`IdentityJoined`]   | edge -> master     | `identities(node)`           | put, once a join   |
//! | [`IdentitySeen`]     | edge -> all        | `identities(node)`           | put, a track's decision, every 10 s while open, its end |
//! | [`MergeAnnounce`]    | master -> all      | `merges()`                   | put, signed        |
//! | [`Merges`]           | master -> all      | `merges()`                   | put (several), signed |
//! | [`SplitAnnounce`]    | master -> all      | `merges()`                   | put, signed        |
//! | [`KeepApart`]        | master -> all      | `merges()`                   | put, signed        |
//! | [`SyncRequest`]      | master -> edge     | `sync(node)`                 | query              |
//! | [`SyncBatch`]        | edge -> master     | `sync(node)`                 | reply              |
//! | [`QueryRequest`]     | master -> edge     | `query(node)`                | query              |
//! | [`QueryReply`]       | edge -> master     | `query(node)`                | reply              |
//! | [`CameraTile`]       | edge -> master UI  | `tile(node, camera)`         | put, low rate      |
//! | [`ModelRefresh`]     | master -> all      | `models()`                   | put on deploy and every 30 s, and get; signed |
//! | [`ModelChunkRequest`]| edge -> master     | `model_files()`              | query              |
//! | [`ModelChunk`]       | master -> edge     | `model_files()`              | reply              |
//! | [`JobItem`]          | edge -> edge       | `job(receiver, sender)`      | put, at the flow's share |
//! | [`JobItem`]          | edge -> integrators | `job_output(node, job)`     | put (a topic sink) |
//! | [`TrainRequest`]     | master -> edge     | `train(node)`                | query (a split training round's steps) |
//! | [`TrainReply`]       | edge -> master     | `train(node)`                | reply              |
//!
//! Times are milliseconds since the Unix epoch (UTC). This module owns the shapes
//! and bounds of messages; it must not do I/O or know about zenoh.

mod edge_to_edge;
mod edge_to_master;
pub mod jobs;
mod master_to_edge;
mod models;
mod training;

pub use edge_to_edge::{
    Crop, CropEncoding, IdentityAnnounce, IdentityJoined, IdentitySeen, LinkProbe, LinkProbeReply,
    ReidAnswer, ReidReply, ReidRequest,
};
pub use edge_to_master::{
    CameraLoad, CameraTile, JobFlowLoad, LinkRate, NodeCapacity, NodeLoad, NodeStatus, QueryReply,
    SyncBatch, TileBox, MAX_JOB_FLOW_LOADS,
};
pub use jobs::{
    DataKind, JobAssignment, JobCrop, JobData, JobFlow, JobFrame, JobItem, JobSpec, JobStage,
    JobVector, SinkKind, StageKind, MAX_PLAN_JOBS,
};
pub use master_to_edge::{
    BandwidthShare, KeepApart, MergeAnnounce, Merges, Plan, QueryRequest, SplitAnnounce,
    StreamAssignment, SyncRequest,
};
pub use models::{
    is_sha256_hex, ModelChunk, ModelChunkRequest, ModelRefresh, MAX_MODEL_BYTES, MAX_MODEL_CHUNK,
    MAX_MODEL_NAME,
};
pub use training::{
    CutTime, TrainReply, TrainRequest, TrainStep, WireTensor, MAX_PROFILE_CUTS, MAX_TENSOR_VALUES,
    MAX_TRAIN_BATCH, MAX_TRAIN_PARAMS,
};

use crate::record::{KeyedRecord, MAX_EMBEDDING_DIM};
use crate::BBox;

/// Most cameras one node reports in a [`NodeStatus`].
pub const MAX_CAMERAS_PER_NODE: usize = 1024;
/// Most peer links one node reports in a [`NodeStatus`].
pub const MAX_LINKS: usize = 1024;
/// Most filler bytes in one [`LinkProbe`] (the largest probe a node times).
pub const MAX_PROBE_BYTES: usize = 1024 * 1024;
/// Longest address string (`metrics_addr`), in bytes.
pub const MAX_ADDR_LEN: usize = 256;
/// Most stream assignments in one [`Plan`].
pub const MAX_PLAN_STREAMS: usize = 10_000;
/// Most bandwidth shares in one [`Plan`].
pub const MAX_BANDWIDTH_SHARES: usize = 65_536;
/// Longest camera source URL in a [`Plan`], in bytes.
pub const MAX_SOURCE_LEN: usize = 2048;
/// Longest free-text field (a plan's reason, a reply's error), in bytes.
pub const MAX_TEXT_LEN: usize = 4096;
/// Most crops in one [`ReidRequest`] (and answers in one [`ReidReply`]).
pub const MAX_CROPS_PER_REQUEST: usize = 64;
/// Largest crop width or height, in pixels.
pub const MAX_CROP_SIDE: u32 = 4096;
/// Most records in one [`SyncBatch`] or [`QueryReply`], and the most a
/// [`SyncRequest`] may ask for (the store's own row limit).
pub const MAX_BATCH_RECORDS: usize = 100_000;
/// A byte budget for the records of one [`SyncBatch`], to pass to the store's
/// `records_after_within`: a quarter of [`MAX_MESSAGE_BYTES`](crate::wire::MAX_MESSAGE_BYTES),
/// leaving room for box paths, which encode larger on the wire than in SQLite.
/// If `encode` still says `TooLarge`, send fewer records.
pub const SYNC_BATCH_BYTES: usize = crate::wire::MAX_MESSAGE_BYTES / 4;
/// Most merges in one [`Merges`].
pub const MAX_MERGES: usize = 10_000;
/// Most boxes drawn on one [`CameraTile`].
pub const MAX_TILE_BOXES: usize = 1024;
/// Largest JPEG of one [`CameraTile`], in bytes.
pub const MAX_TILE_JPEG_BYTES: usize = 4 * 1024 * 1024;
/// Longest side of a live tile, pixels (nodes send at most 640).
pub const MAX_TILE_SIDE: u32 = 4096;

// Checks shared by the messages. Each returns the problem with its field path.

fn check_len(field: &str, len: usize, max: usize) -> Result<(), String> {
    if len > max {
        return Err(format!("{field}: {len} entries, at most {max} allowed"));
    }
    Ok(())
}

fn check_text(field: &str, s: &str, max: usize) -> Result<(), String> {
    if s.len() > max {
        return Err(format!("{field}: {} bytes, at most {max} allowed", s.len()));
    }
    Ok(())
}

fn check_rate(field: &str, v: f64) -> Result<(), String> {
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("{field}: {v} is not a finite non-negative number"));
    }
    Ok(())
}

fn check_fraction(field: &str, v: f64) -> Result<(), String> {
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("{field}: {v} is outside 0..=1"));
    }
    Ok(())
}

fn check_bbox(field: &str, b: &BBox) -> Result<(), String> {
    if ![b.x, b.y, b.w, b.h].iter().all(|v| v.is_finite()) || b.w < 0.0 || b.h < 0.0 {
        return Err(format!(
            "{field}: {b:?} is not a finite box of non-negative size"
        ));
    }
    Ok(())
}

fn check_jpeg(field: &str, data: &[u8]) -> Result<(), String> {
    if !data.starts_with(&[0xFF, 0xD8]) {
        return Err(format!(
            "{field}: {} bytes that do not start with a JPEG SOI marker",
            data.len()
        ));
    }
    Ok(())
}

/// The size a JPEG's frame header (SOFn) declares, reading markers only:
/// None when there is no frame header in the first bytes.
pub fn jpeg_size(data: &[u8]) -> Option<(u32, u32)> {
    let mut i = 2; // after SOI
    while i + 4 <= data.len() {
        if data[i] != 0xFF {
            return None;
        }
        let marker = data[i + 1];
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        let len = usize::from(u16::from_be_bytes([data[i + 2], data[i + 3]]));
        // SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC).
        if (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            let h = data.get(i + 5..i + 7)?;
            let w = data.get(i + 7..i + 9)?;
            return Some((
                u32::from(u16::from_be_bytes([w[0], w[1]])),
                u32::from(u16::from_be_bytes([h[0], h[1]])),
            ));
        }
        if marker == 0xDA || len < 2 {
            return None; // image data before any frame header
        }
        i += 2 + len;
    }
    None
}

/// `data` is a JPEG whose frame header says `width` x `height`.
fn check_jpeg_size(field: &str, data: &[u8], width: u32, height: u32) -> Result<(), String> {
    match jpeg_size(data) {
        Some((w, h)) if (w, h) == (width, height) => Ok(()),
        Some((w, h)) => Err(format!(
            "{field}: the JPEG is {w}x{h}, the message says {width}x{height}"
        )),
        None => Err(format!("{field}: no JPEG frame header")),
    }
}

fn check_embedding(field: &str, e: &[f32]) -> Result<(), String> {
    let n = e.len();
    if n == 0 || n > MAX_EMBEDDING_DIM {
        return Err(format!(
            "{field}: {n} values, 1..={MAX_EMBEDDING_DIM} allowed"
        ));
    }
    if let Some(k) = e.iter().position(|v| !v.is_finite()) {
        return Err(format!("{field}[{k}]: {} is not finite", e[k]));
    }
    Ok(())
}

/// Validates each record with [`Record::validate`](crate::record::Record::validate)
/// and checks its seq (sequences start at 1).
fn check_records(field: &str, records: &[KeyedRecord]) -> Result<(), String> {
    check_len(field, records.len(), MAX_BATCH_RECORDS)?;
    for (k, r) in records.iter().enumerate() {
        if r.key.seq == 0 {
            return Err(format!("{field}[{k}].key.seq: 0, sequences start at 1"));
        }
        r.record
            .validate()
            .map_err(|e| format!("{field}[{k}].record: {e}"))?;
    }
    Ok(())
}
