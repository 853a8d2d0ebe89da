//! What an edge node tells the master: its status, its records (sync and ad hoc
//! queries) and annotated snapshots of its cameras for the UI.

use crate::time::UnixMs;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

use super::{
    check_bbox, check_fraction, check_jpeg, check_jpeg_size, check_len, check_rate, check_records,
    check_text, MAX_ADDR_LEN, MAX_BATCH_RECORDS, MAX_CAMERAS_PER_NODE, MAX_LINKS, MAX_TILE_BOXES,
    MAX_TILE_JPEG_BYTES, MAX_TILE_SIDE,
};
use crate::record::KeyedRecord;
use crate::wire::{Message, MessageKind};
use crate::{BBox, CameraId, IdentityId, JobId, NodeId, StageId, StreamState, TrackId};

/// A node's periodic report: what it can do, what it is doing, how well it
/// reaches its peers. Its liveliness token says whether it is up at all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The reporting node.
    pub node: NodeId,
    /// When this report was sent, ms since the epoch (the node's clock).
    pub sent_ms: UnixMs,
    /// When the node process started, ms since the epoch.
    pub started_ms: UnixMs,
    /// The [`Plan::version`](super::Plan::version) the node is running (0: none yet).
    pub plan_version: u64,
    /// What the node can do, measured at start-up.
    pub capacity: NodeCapacity,
    /// What the node is doing now.
    pub load: NodeLoad,
    /// Measured rates to peers.
    #[serde(deserialize_with = "crate::bounded::vec::<_, _, MAX_LINKS>")]
    pub links: Vec<LinkRate>,
    /// Where its Prometheus `/metrics` listens (`host:port`), if anywhere.
    pub metrics_addr: Option<String>,
    /// What each job flow from this node carries (the master plans job
    /// placements with these bytes per item rather than its model's).
    #[serde(deserialize_with = "crate::bounded::vec::<_, _, MAX_JOB_FLOW_LOADS>")]
    pub job_flows: Vec<JobFlowLoad>,
}

/// At most this many job flows in one [`NodeStatus`].
pub const MAX_JOB_FLOW_LOADS: usize = 4096;

/// The items a node's stage produced for a stage of the same job on another
/// node (the flow into `to_stage`), since the job started there: every item
/// offered to the flow, whether its share let it through or not, so
/// `bytes / items` is what the flow needs per item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobFlowLoad {
    /// The job.
    pub job: JobId,
    /// The stage the flow feeds.
    pub to_stage: StageId,
    /// Items offered to the flow.
    pub items: u64,
    /// Their encoded bytes.
    pub bytes: u64,
}

/// A node's capacity, profiled at start-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeCapacity {
    /// CPU cores available to the process.
    pub cores: u32,
    /// Memory available to the process, MiB.
    pub memory_mb: u64,
    /// Frames per second of the detector alone, profiled at start-up.
    pub detect_fps: f64,
    /// Person crops per second the re-ID model embeds, profiled at start-up (0: no model).
    pub reid_crops_per_s: f64,
    /// Whether the node serves re-ID for other nodes (answers on `Keys::reid`).
    pub reid_service: bool,
    /// CPU to JPEG-encode one megapixel of a job's frame for another node,
    /// in detector frames (encoding time over a detector frame's time, both
    /// profiled at start-up on one thread; 0: not measured). Protocol 8.
    pub jpeg_encode_cost: f64,
    /// The same for decoding one megapixel of a frame from another node.
    pub jpeg_decode_cost: f64,
    /// The cores `detect_fps` spans: the detector threads, at most the
    /// process's CPU quota (protocol 9). With [`NodeLoad::cpu_cores`] it
    /// turns CPU into detector frames.
    pub detect_cores: f64,
}

/// A node's current work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeLoad {
    /// One entry per camera the node ingests, each camera once.
    #[serde(deserialize_with = "crate::bounded::vec::<_, _, MAX_CAMERAS_PER_NODE>")]
    pub cameras: Vec<CameraLoad>,
    /// Fraction of the last interval the detector was busy, 0..=1.
    pub detect_busy: f64,
    /// Fraction of the last interval the re-ID model was busy, 0..=1.
    pub reid_busy: f64,
    /// CPU the node's process used, cores, averaged over about half a
    /// minute (protocol 9): everything it does, decoding and bookkeeping
    /// included, which no model of its work counts.
    pub cpu_cores: f64,
    /// Of [`cpu_cores`](Self::cpu_cores), what the threads of its analytics
    /// jobs used.
    pub job_cpu_cores: f64,
    /// Crops waiting for re-ID on this node.
    pub reid_queue: u32,
    /// The node's highest record seq committed to its database.
    pub records_last_seq: u64,
    /// Records committed locally but not yet acknowledged by the master.
    pub unsynced: u64,
}

/// One camera's ingest and analysis on a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraLoad {
    /// The camera.
    pub camera: CameraId,
    /// Its ingest state.
    pub state: StreamState,
    /// Frames per second arriving from the source.
    pub fps: f64,
    /// Frames per second actually analysed (detector and tracker).
    pub analysed_fps: f64,
    /// Frames dropped since ingest started (queues full).
    pub dropped: u64,
    /// Pipeline rebuilds since ingest started.
    pub reconnects: u64,
    /// Tracks alive now.
    pub tracks: u32,
    /// The encoded stream's rate as it arrives (RTP bytes over the last
    /// status period), bits per second; 0 when not measured (a file source,
    /// or no data yet). What the camera costs the node's link.
    pub bitrate_bps: f64,
    /// People in view: confirmed tracks per detected frame, averaged over
    /// about half a minute (0: nothing detected yet). What its re-ID and its
    /// jobs' crops cost scales with.
    pub persons: f64,
    /// Detector runs per analysed frame, averaged over about half a minute
    /// (protocol 10; 0: nothing analysed yet): below 1 where the node
    /// detects every n-th frame or motion gating skips still ones, the
    /// tracker predicting over the rest. What the camera costs the
    /// detector, per frame it sends.
    pub detect_share: f64,
}

/// A measured link from the reporting node to a peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkRate {
    /// The peer.
    pub to: NodeId,
    /// Throughput achieved, megabits per second.
    pub mbit_s: f64,
    /// Round-trip time, milliseconds.
    pub rtt_ms: f64,
    /// The reporting node's upload as the probes to this peer saw it,
    /// megabits per second: their bytes plus every byte the node's jobs
    /// sent to any peer while they were timed (at most what the flows'
    /// shares carry in that time), over the transfer time. All of it left
    /// by the node's own link, so where nodes are clients of the master's
    /// router this is a lower bound on that link's upload, which `mbit_s`
    /// (the rate left to this peer) is not once the jobs fill it. At least
    /// `mbit_s` (protocol 7).
    pub upload_mbit_s: f64,
}

impl Message for NodeStatus {
    const KIND: MessageKind = MessageKind::NodeStatus;

    fn validate(&self) -> Result<(), String> {
        check_rate("capacity.detect_fps", self.capacity.detect_fps)?;
        check_rate("capacity.reid_crops_per_s", self.capacity.reid_crops_per_s)?;
        check_rate("capacity.jpeg_encode_cost", self.capacity.jpeg_encode_cost)?;
        check_rate("capacity.jpeg_decode_cost", self.capacity.jpeg_decode_cost)?;
        check_rate("capacity.detect_cores", self.capacity.detect_cores)?;
        let l = &self.load;
        check_len("load.cameras", l.cameras.len(), MAX_CAMERAS_PER_NODE)?;
        let mut seen = HashSet::new();
        for (k, c) in l.cameras.iter().enumerate() {
            if !seen.insert(&c.camera) {
                return Err(format!(
                    "load.cameras[{k}].camera: {} listed twice",
                    c.camera
                ));
            }
            check_rate(&format!("load.cameras[{k}].fps"), c.fps)?;
            check_rate(&format!("load.cameras[{k}].analysed_fps"), c.analysed_fps)?;
            check_rate(&format!("load.cameras[{k}].bitrate_bps"), c.bitrate_bps)?;
            check_rate(&format!("load.cameras[{k}].persons"), c.persons)?;
            check_fraction(&format!("load.cameras[{k}].detect_share"), c.detect_share)?;
        }
        check_fraction("load.detect_busy", l.detect_busy)?;
        check_fraction("load.reid_busy", l.reid_busy)?;
        check_rate("load.cpu_cores", l.cpu_cores)?;
        check_rate("load.job_cpu_cores", l.job_cpu_cores)?;
        check_len("links", self.links.len(), MAX_LINKS)?;
        for (k, link) in self.links.iter().enumerate() {
            check_rate(&format!("links[{k}].mbit_s"), link.mbit_s)?;
            check_rate(&format!("links[{k}].rtt_ms"), link.rtt_ms)?;
            check_rate(&format!("links[{k}].upload_mbit_s"), link.upload_mbit_s)?;
        }
        if let Some(a) = &self.metrics_addr {
            check_text("metrics_addr", a, MAX_ADDR_LEN)?;
        }
        check_len("job_flows", self.job_flows.len(), MAX_JOB_FLOW_LOADS)?;
        for (k, f) in self.job_flows.iter().enumerate() {
            if f.bytes > 0 && f.items == 0 {
                return Err(format!(
                    "job_flows[{k}] (job {}, stage {}): {} bytes in 0 items",
                    f.job, f.to_stage, f.bytes
                ));
            }
        }
        Ok(())
    }
}

/// An edge's answer to a [`SyncRequest`](super::SyncRequest): its records after
/// the requested seq, in seq order, without gaps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncBatch {
    /// The answering node; every record's `key.node`.
    pub node: NodeId,
    /// Records in strictly increasing seq order, at most
    /// [`MAX_BATCH_RECORDS`](super::MAX_BATCH_RECORDS).
    #[serde(deserialize_with = "crate::bounded::vec::<_, _, MAX_BATCH_RECORDS>")]
    pub records: Vec<KeyedRecord>,
    /// The node's highest seq at reply time (the master's lag is `last_seq` minus
    /// the last record's seq).
    pub last_seq: u64,
    /// Whether records beyond this batch were already there: ask again at once.
    pub more: bool,
}

impl Message for SyncBatch {
    const KIND: MessageKind = MessageKind::SyncBatch;

    fn validate(&self) -> Result<(), String> {
        check_records("records", &self.records)?;
        let mut prev = 0;
        for (k, r) in self.records.iter().enumerate() {
            if r.key.node != self.node {
                return Err(format!(
                    "records[{k}].key.node: {}, but the batch is from {}",
                    r.key.node, self.node
                ));
            }
            if r.key.seq <= prev {
                return Err(format!(
                    "records[{k}].key.seq: {} after {prev}, seqs must increase",
                    r.key.seq
                ));
            }
            if r.key.seq > self.last_seq {
                return Err(format!(
                    "records[{k}].key.seq: {} is above last_seq {}",
                    r.key.seq, self.last_seq
                ));
            }
            prev = r.key.seq;
        }
        Ok(())
    }
}

/// An edge's answer to a [`QueryRequest`](super::QueryRequest): matching
/// records it holds (synchronised or not), in the order the query defines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryReply {
    /// The records, at most [`MAX_BATCH_RECORDS`](super::MAX_BATCH_RECORDS).
    #[serde(deserialize_with = "crate::bounded::vec::<_, _, MAX_BATCH_RECORDS>")]
    pub records: Vec<KeyedRecord>,
}

impl Message for QueryReply {
    const KIND: MessageKind = MessageKind::QueryReply;

    fn validate(&self) -> Result<(), String> {
        check_records("records", &self.records)
    }
}

/// A low-rate annotated snapshot of one camera, for the master's UI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraTile {
    /// The camera.
    pub camera: CameraId,
    /// The node ingesting it.
    pub node: NodeId,
    /// Capture time of the frame, ms since the epoch.
    pub captured_ms: UnixMs,
    /// Its ingest state.
    pub state: StreamState,
    /// Frames per second arriving from the source.
    pub fps: f64,
    /// Frames dropped since ingest started.
    pub dropped: u64,
    /// Width of `jpeg`, pixels (the boxes are in these pixels).
    pub width: u32,
    /// Height of `jpeg`, pixels.
    pub height: u32,
    /// The frame, JPEG, at most [`MAX_TILE_JPEG_BYTES`](super::MAX_TILE_JPEG_BYTES);
    /// empty when there is no frame (not streaming).
    #[serde(with = "crate::bytes")]
    pub jpeg: Vec<u8>,
    /// The tracked people in the frame, at most [`MAX_TILE_BOXES`](super::MAX_TILE_BOXES).
    #[serde(deserialize_with = "crate::bounded::vec::<_, _, MAX_TILE_BOXES>")]
    pub boxes: Vec<TileBox>,
}

/// One tracked person drawn on a [`CameraTile`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TileBox {
    /// The box, in the tile's pixels.
    pub bbox: BBox,
    /// The track.
    pub track: TrackId,
    /// Its identity, once re-ID gave it one.
    pub identity: Option<IdentityId>,
}

impl Message for CameraTile {
    const KIND: MessageKind = MessageKind::CameraTile;

    fn validate(&self) -> Result<(), String> {
        check_rate("fps", self.fps)?;
        if self.jpeg.len() > MAX_TILE_JPEG_BYTES {
            return Err(format!(
                "jpeg: {} bytes, at most {MAX_TILE_JPEG_BYTES} allowed",
                self.jpeg.len()
            ));
        }
        for (name, v) in [("width", self.width), ("height", self.height)] {
            if v == 0 || v > MAX_TILE_SIDE {
                return Err(format!("{name}: {v} pixels, 1..={MAX_TILE_SIDE} allowed"));
            }
        }
        if !self.jpeg.is_empty() {
            check_jpeg("jpeg", &self.jpeg)?;
            check_jpeg_size("jpeg", &self.jpeg, self.width, self.height)?;
        }
        check_len("boxes", self.boxes.len(), MAX_TILE_BOXES)?;
        for (k, b) in self.boxes.iter().enumerate() {
            check_bbox(&format!("boxes[{k}].bbox"), &b.bbox)?;
        }
        Ok(())
    }
}
