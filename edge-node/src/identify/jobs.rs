//! What goes to the re-ID worker and what comes back.

use vidar_pipeline::Frame;
use vidar_protocol::messages::{
    IdentityAnnounce, IdentityJoined, IdentitySeen, ReidReply, ReidRequest,
};
use vidar_protocol::{BBox, CameraId, IdentityId, NodeId, TrackId, UnixMs};

/// One track's crop in a frame.
#[derive(Debug, Clone, Copy)]
pub struct TrackCrop {
    /// Track id.
    pub track: TrackId,
    /// Its box in the frame.
    pub bbox: BBox,
    /// Crop quality, 0..1 (the weight of its embedding in the track's mean).
    pub quality: f32,
    /// When the track was first seen, ms.
    pub first_ms: UnixMs,
    /// Decide the identity now even with fewer than [`MIN_CROPS`] crops.
    pub decide: bool,
}

/// Crops of one frame to identify.
#[derive(Debug)]
pub struct Job {
    /// Key of the camera's slot in the analysis.
    pub camera: usize,
    /// The frame the boxes are in.
    pub frame: Frame,
    /// The tracks' crops.
    pub tracks: Vec<TrackCrop>,
}

/// A track's crop was handled: its identity when decided.
#[derive(Debug, Clone, Copy)]
pub struct Identified {
    /// Key of the camera's slot in the analysis.
    pub camera: usize,
    /// Track id.
    pub track: TrackId,
    /// Identity assigned, when decided by this crop (None: more crops needed, or decided earlier).
    pub identity: Option<IdentityId>,
    /// Whether that identity is final. A track whose decision minted a new
    /// identity is not settled: its later views are embedded too, and it
    /// joins a known identity when they match one clearly.
    pub settled: bool,
}

/// Another node's crops to identify here, and how to answer.
pub struct RemoteJob {
    /// The request.
    pub request: ReidRequest,
    /// Sends the reply back.
    pub reply: Box<dyn FnOnce(ReidReply) + Send>,
}

impl std::fmt::Debug for RemoteJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteJob")
            .field("request", &self.request)
            .finish_non_exhaustive()
    }
}

/// Receives the answer to a remote re-ID request.
pub type RemoteDone = Box<dyn FnOnce(Result<ReidReply, String>) + Send>;

/// What the cluster gives the re-ID worker (implemented over zenoh in
/// `cluster.rs`; absent on a single node).
pub trait ClusterReid: Send {
    /// This node.
    fn node(&self) -> &NodeId;
    /// The node whose re-ID service the plan names for `camera`, when it is
    /// not this one.
    fn remote_for(&self, camera: &CameraId) -> Option<NodeId>;
    /// Takes `bytes` from the bandwidth share towards `to`; false when the
    /// share is used up for now.
    fn take_bandwidth(&self, to: &NodeId, bytes: usize) -> bool;
    /// Asks `to` to identify the crops and returns at once: `done` gets the
    /// reply, or why there is none, exactly once, on another thread, within
    /// [`ClusterReid::reply_within`]. Err: the request could not be sent.
    fn send_remote(
        &self,
        to: &NodeId,
        request: &ReidRequest,
        done: RemoteDone,
    ) -> Result<(), String>;
    /// The longest a remote request waits for its reply.
    fn reply_within(&self) -> std::time::Duration;
    /// Tells every node about an identity minted here.
    fn announce(&self, identity: &IdentityAnnounce);
    /// Tells the master that an identity minted here is a known one (it
    /// records and sends the merge).
    fn joined(&self, join: &IdentityJoined);
    /// Tells every node where an identity is seen: a track decided here
    /// is on screen (`last_ms` None) or ended.
    fn seen(&self, seen: &IdentitySeen);
}

/// Local jobs waiting for the worker before new ones are refused.
pub const QUEUE: usize = 4;
/// Crops of a track embedded before its identity is decided.
pub const MIN_CROPS: u32 = 2;
/// Tracks followed at once by the worker (local and remote); the stalest goes.
pub(super) const MAX_TRACKS: usize = 4096;
/// A remote track not heard of for this long is closed, ms.
pub(super) const REMOTE_TRACK_IDLE_MS: i64 = 10_000;
/// How long another node's open track counts as on screen after its last
/// word, ms: its node repeats the word every [`CHORES_EVERY`] while the track
/// is open, so a node that died or was cut off holds no identity for longer.
pub(super) const SEEN_LEASE_MS: i64 = 30_000;
/// How often the re-ID worker ages out identities and idle remote tracks.
pub(super) const CHORES_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
/// A remote track this old (capture time) is decided with one crop, ms.
pub(super) const REMOTE_DECIDE_AFTER_MS: i64 = 1_000;
/// A better snapshot is written when its quality beats the written one by this factor.
pub(super) const SNAPSHOT_GAIN: f32 = 1.25;
/// Inputs of every kind waiting for the worker.
pub(super) const INBOX: usize = 256;
/// Longest side of a crop sent to another node, pixels (the embedder's input
/// is smaller; this keeps detail for it while bounding bandwidth).
pub const REMOTE_CROP_SIDE: u32 = 160;
/// Jobs whose crops are at another node's service at once; more are
/// identified here.
pub(super) const MAX_REMOTE_IN_FLIGHT: usize = 8;
