//! Test support for the re-ID worker: a worker on a real store with the fake
//! colour embedder, jobs of one figure at a given time, and waiting for the
//! answer.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use vidar_pipeline::Frame;
use vidar_protocol::messages::{IdentityAnnounce, IdentityJoined, ReidRequest};
use vidar_protocol::{BBox, CameraId, NodeId, UnixMs};
use vidar_reid::{Gallery, GalleryConfig};
use vidar_testkit::fakes::{draw, ColorEmbedder, Figure};

use super::{ClusterReid, Identified, Identifier, Job, RemoteDone, TrackCrop};
use crate::recorder::Recorder;
use crate::telemetry::NodeMetrics;

/// A worker of node `n1` on a database in `dir`, with `cfg` and the colour
/// embedder; its metrics and recorder.
pub(crate) fn spawn(
    dir: &Path,
    cfg: GalleryConfig,
    snapshots: bool,
    cluster: Option<Box<dyn ClusterReid>>,
) -> (Identifier, Arc<NodeMetrics>, Recorder) {
    let node = NodeId::new("n1").expect("id");
    let metrics = Arc::new(NodeMetrics::default());
    let rec = Recorder::open(&dir.join("e.db"), &node, Arc::clone(&metrics)).expect("recorder");
    let gallery = Gallery::with_model(cfg, ColorEmbedder::TAG).expect("gallery");
    let id = Identifier::spawn(
        node,
        Box::new(ColorEmbedder::default()),
        gallery,
        rec.share(),
        Arc::clone(&metrics),
        snapshots,
        cluster,
    )
    .expect("worker");
    (id, metrics, rec)
}

/// A cluster of one node: records what the worker announces and joins.
pub(crate) struct Alone {
    node: NodeId,
    announced: Arc<Mutex<Vec<IdentityAnnounce>>>,
    /// The joins of minted identities it told the master of.
    pub(crate) joined: Arc<Mutex<Vec<IdentityJoined>>>,
    /// Where it told the other nodes its identities are seen.
    pub(crate) seen: Arc<Mutex<Vec<vidar_protocol::messages::IdentitySeen>>>,
}

impl Alone {
    /// Node `node`, whose announcements go to `announced`.
    pub(crate) fn new(node: NodeId, announced: Arc<Mutex<Vec<IdentityAnnounce>>>) -> Alone {
        Alone {
            node,
            announced,
            joined: Arc::default(),
            seen: Arc::default(),
        }
    }
}

impl ClusterReid for Alone {
    fn node(&self) -> &NodeId {
        &self.node
    }
    fn remote_for(&self, _camera: &CameraId) -> Option<NodeId> {
        None
    }
    fn take_bandwidth(&self, _to: &NodeId, _bytes: usize) -> bool {
        true
    }
    fn send_remote(&self, _to: &NodeId, _r: &ReidRequest, _done: RemoteDone) -> Result<(), String> {
        Err("no peers".into())
    }
    fn reply_within(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn announce(&self, a: &IdentityAnnounce) {
        self.announced.lock().expect("lock").push(a.clone());
    }
    fn joined(&self, j: &IdentityJoined) {
        self.joined.lock().expect("lock").push(j.clone());
    }
    fn seen(&self, s: &vidar_protocol::messages::IdentitySeen) {
        self.seen.lock().expect("lock").push(s.clone());
    }
}

/// A cluster of two workers in one process: each sends its crops to the
/// other's service, the way the zenoh queryable hands them over.
pub(crate) struct Loopback {
    pub(crate) node: NodeId,
    pub(crate) to: NodeId,
    pub(crate) peer: Arc<std::sync::Mutex<Option<super::Inbox>>>,
}

impl ClusterReid for Loopback {
    fn node(&self) -> &NodeId {
        &self.node
    }
    fn remote_for(&self, _camera: &CameraId) -> Option<NodeId> {
        Some(self.to.clone())
    }
    fn take_bandwidth(&self, _to: &NodeId, _bytes: usize) -> bool {
        true
    }
    fn send_remote(
        &self,
        _to: &NodeId,
        request: &vidar_protocol::messages::ReidRequest,
        done: crate::identify::RemoteDone,
    ) -> Result<(), String> {
        let inbox = self
            .peer
            .lock()
            .expect("lock")
            .clone()
            .ok_or_else(|| "no peer".to_string())?;
        let job = super::RemoteJob {
            request: request.clone(),
            reply: Box::new(move |r| done(Ok(r))),
        };
        inbox.remote(job).map_err(|_| "peer busy".to_string())
    }
    fn reply_within(&self) -> Duration {
        Duration::from_secs(5)
    }
    fn announce(&self, _identity: &vidar_protocol::messages::IdentityAnnounce) {}
    fn joined(&self, _join: &vidar_protocol::messages::IdentityJoined) {}
    fn seen(&self, _seen: &vidar_protocol::messages::IdentitySeen) {}
}

/// A person of `color`, standing in the middle of the frame.
pub(crate) fn figure(color: [u8; 3]) -> Figure {
    Figure {
        color,
        bbox: BBox {
            x: 60.0,
            y: 20.0,
            w: 50.0,
            h: 120.0,
        },
    }
}

/// Track `track` (first seen at `first`) alone in a frame of camera `c`
/// captured at `at`.
pub(crate) fn job(track: u64, f: Figure, first: SystemTime, at: SystemTime, decide: bool) -> Job {
    let frame = Frame::from_rgb(
        CameraId::new("c").expect("id"),
        track,
        at,
        240,
        160,
        draw(240, 160, track as u32, &[f]),
    )
    .expect("frame");
    Job {
        camera: 0,
        frame,
        tracks: vec![TrackCrop {
            track: vidar_protocol::TrackId(track),
            bbox: f.bbox,
            quality: 0.9,
            first_ms: UnixMs::of(first),
            decide,
        }],
    }
}

/// Offers `j` and waits for the worker's answer.
pub(crate) fn answer(id: &mut Identifier, j: Job) -> Identified {
    assert!(id.offer(j).is_none(), "taken");
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(r) = id.results().next() {
            return r;
        }
        assert!(Instant::now() < end, "no answer");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A worker driven by hand (no thread): node `n1`, the colour embedder, a
/// real store in `dir`, no cluster; remote answers are posted nowhere.
pub(super) fn bare_worker(dir: &Path, cfg: GalleryConfig) -> super::worker::Worker {
    use std::collections::HashMap;
    let node = NodeId::new("n1").expect("id");
    let metrics = Arc::new(NodeMetrics::default());
    let recorder =
        Recorder::open(&dir.join("w.db"), &node, Arc::clone(&metrics)).expect("recorder");
    let gallery = Gallery::with_model(cfg, ColorEmbedder::TAG).expect("gallery");
    super::worker::Worker {
        embedder: Box::new(ColorEmbedder::default()),
        model: ColorEmbedder::TAG.to_owned(),
        tracks: HashMap::new(),
        gallery,
        recorder,
        metrics,
        snapshots: false,
        embeddings: Vec::new(),
        cluster: None,
        pending: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        node,
        remote: HashMap::new(),
        next_request: 0,
        post_reply: Arc::new(|_, _| {}),
        learned_splits: Default::default(),
        training: None,
    }
}
