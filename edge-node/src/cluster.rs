//! An edge node in a cluster: the zenoh side of the node.
//!
//! - membership: a liveliness token at `alive/<node>` for as long as the node runs;
//! - status: a [`NodeStatus`] on `status/<node>` every `sharing.status_every_ms`
//!   (capacity profiled at start-up, per-camera load, sync backlog);
//! - plans: the master's [`Plan`] on `plan` (subscribed, and asked for at start
//!   so a node that joins late catches up); the node ingests exactly the
//!   cameras the newest plan gives it (starting and stopping ingest without
//!   restarting), sends each camera's crops to the re-ID service the plan
//!   names, and enforces the plan's bandwidth share towards each node with a
//!   token bucket;
//! - re-ID service: a queryable at `reid/<node>` answering other nodes' crops
//!   through this node's gallery (when `sharing.reid_service`);
//! - shared identities: announces the identities it mints on `identities`,
//!   keeps a replica of the others', applies the master's `merges`;
//! - sync: a queryable at `sync/<node>` serving record batches after the
//!   master's cursor, pruning only what the master acknowledged (and only
//!   once older than `sharing.retention_s`);
//! - queries: a queryable at `query/<node>` answering from the local database
//!   what the master has not synchronised yet.
//!
//! Every payload received is decoded through [`Garbage`]: malformed or
//! wrong-version messages are counted and logged, never trusted.

use crate::analysis::{CameraRegistry, CameraSlot, Control};
use crate::config::{EdgeConfig, SharingConfig};
use crate::identify::{ClusterReid, Inbox, RemoteJob};
use crate::metrics::NodeMetrics;
use crate::node::StatusBoard;
use crate::recorder::Recorder;
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use vidar_link::zenoh::{self, Wait};
use vidar_link::{request, Garbage, Mode};
use vidar_pipeline::{Ingest, IngestConfig};
use vidar_protocol::messages::SYNC_BATCH_BYTES;
use vidar_protocol::messages::{
    CameraLoad, IdentityAnnounce, MergeAnnounce, Merges, NodeCapacity, NodeLoad, NodeStatus, Plan,
    QueryReply, QueryRequest, ReidReply, ReidRequest, SyncBatch, SyncRequest,
};
use vidar_protocol::record::{KeyedRecord, Record};
use vidar_protocol::{wire, CameraId, Keys, NodeId, StreamState};
use vidar_store::{Reader, WriterHandle};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A token bucket: `rate` bytes/s, holding at most one second's worth (and
/// never less than one request's worth, so a share below one crop per second
/// still lets a crop through now and then).
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `rate` bytes per second.
    pub fn new(rate: u64) -> Self {
        let rate = rate as f64;
        let burst = rate.max(64.0 * 1024.0);
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Takes `bytes` if the bucket holds them at `now`.
    pub fn take_at(&mut self, bytes: usize, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= bytes as f64 {
            self.tokens -= bytes as f64;
            true
        } else {
            false
        }
    }

    /// Changes the rate, keeping the tokens already earned (up to the new burst).
    pub fn set_rate(&mut self, rate: u64) {
        self.rate = rate as f64;
        self.burst = self.rate.max(64.0 * 1024.0);
        self.tokens = self.tokens.min(self.burst);
    }
}

/// What the newest plan says this node must do with its crops.
#[derive(Debug, Default)]
struct Routes {
    /// camera -> node whose re-ID service embeds its crops (only when not this node).
    remote: HashMap<CameraId, NodeId>,
    /// Bandwidth buckets towards each node (plan shares from this node).
    buckets: HashMap<NodeId, TokenBucket>,
}

/// State shared by the zenoh callbacks and the node's threads.
struct Shared {
    node: NodeId,
    keys: Keys,
    session: zenoh::Session,
    garbage: Arc<Garbage>,
    routes: Mutex<Routes>,
    plan_version: AtomicU64,
    reid_timeout: Duration,
    /// The master has committed this node's records up to this seq.
    acked: AtomicU64,
}

/// The re-ID worker's view of the cluster.
struct ReidLink(Arc<Shared>);

impl ClusterReid for ReidLink {
    fn node(&self) -> &NodeId {
        &self.0.node
    }

    fn remote_for(&self, camera: &CameraId) -> Option<NodeId> {
        let routes = self.0.routes.lock().unwrap_or_else(|p| p.into_inner());
        routes.remote.get(camera).cloned()
    }

    fn take_bandwidth(&self, to: &NodeId, bytes: usize) -> bool {
        let mut routes = self.0.routes.lock().unwrap_or_else(|p| p.into_inner());
        match routes.buckets.get_mut(to) {
            Some(b) => b.take_at(bytes, Instant::now()),
            // The plan gives this flow no share: not limited.
            None => true,
        }
    }

    fn identify_remote(&self, to: &NodeId, req: &ReidRequest) -> Result<ReidReply, String> {
        let key = self.0.keys.reid(to);
        request::<ReidRequest, ReidReply>(
            &self.0.session,
            &key,
            req,
            self.0.reid_timeout,
            &self.0.garbage,
        )
        .map_err(|e| e.to_string())
    }

    fn announce(&self, identity: &IdentityAnnounce) {
        match wire::encode(identity) {
            Ok(bytes) => {
                if let Err(e) = self.0.session.put(self.0.keys.identities(), bytes).wait() {
                    tracing::debug!(error = %e, "identity announcement not sent");
                }
            }
            Err(e) => tracing::warn!(error = %e, "identity announcement not encodable"),
        }
    }
}

/// The node's zenoh session, opened before the re-ID worker starts (which
/// needs [`Link::reid`]).
pub struct Link {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("node", &self.shared.node)
            .finish()
    }
}

impl Link {
    /// Opens the session described by the config's `[cluster]` table.
    pub fn open(config: &EdgeConfig, settings: &vidar_link::LinkSettings) -> Result<Link> {
        let keys = settings.keys()?;
        let session = settings
            .open(Mode::Peer)
            .context("joining the cluster (config [cluster])")?;
        Ok(Link {
            shared: Arc::new(Shared {
                node: config.node_id.clone(),
                keys,
                session,
                garbage: Arc::new(Garbage::default()),
                routes: Mutex::new(Routes::default()),
                plan_version: AtomicU64::new(0),
                acked: AtomicU64::new(0),
                reid_timeout: Duration::from_millis(config.sharing.reid_timeout_ms),
            }),
        })
    }

    /// Counts the messages refused on Vidar's keys.
    pub fn garbage(&self) -> Arc<Garbage> {
        Arc::clone(&self.shared.garbage)
    }

    /// The re-ID worker's cluster handle.
    pub fn reid(&self) -> Box<dyn ClusterReid> {
        Box::new(ReidLink(Arc::clone(&self.shared)))
    }
}

/// What [`start`] needs from the node.
pub struct Parts {
    /// The node's configuration.
    pub config: EdgeConfig,
    /// Capacity measured at start-up (or configured).
    pub capacity: NodeCapacity,
    /// The re-ID worker's inbox.
    pub inbox: Inbox,
    /// Camera changes for the analysis thread.
    pub control: Sender<Control>,
    /// The cameras being analysed.
    pub registry: Arc<CameraRegistry>,
    /// Stream states.
    pub board: Arc<StatusBoard>,
    /// Node metrics.
    pub metrics: Arc<NodeMetrics>,
    /// A recorder (camera records).
    pub recorder: Recorder,
    /// The database writer (sync pruning, statistics).
    pub store: WriterHandle,
    /// The metrics address actually bound.
    pub metrics_addr: String,
    /// Frames for live tiles.
    pub tiles: Option<std::sync::mpsc::Receiver<crate::analysis::TileFrame>>,
}

/// The running cluster side; dropping it leaves the cluster (the liveliness
/// token goes, so the master reassigns this node's cameras at once).
pub struct Running {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    // Declarations live as long as this value.
    _token: zenoh::liveliness::LivelinessToken,
    _queryables: Vec<zenoh::query::Queryable<()>>,
    _subscribers: Vec<zenoh::pubsub::Subscriber<()>>,
    link: Link,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").field("link", &self.link).finish()
    }
}

impl Running {
    /// Leaves the cluster: stops the threads, undeclares everything, closes the session.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let session = self.link.shared.session.clone();
        drop(self);
        if let Err(e) = session.close().wait() {
            tracing::debug!(error = %e, "closing the zenoh session");
        }
    }
}

/// Declares everything and starts the status and plan threads.
pub fn start(link: Link, parts: Parts) -> Result<Running> {
    let shared = Arc::clone(&link.shared);
    let s = &shared.session;
    let keys = &shared.keys;
    let node = shared.node.clone();
    let token = s
        .liveliness()
        .declare_token(keys.node_alive(&node))
        .wait()
        .map_err(|e| anyhow::anyhow!("declaring liveliness: {e}"))?;

    let mut queryables = Vec::new();
    let mut subscribers = Vec::new();
    let database = parts.config.database.clone();
    let retention = Duration::from_secs(parts.config.sharing.retention_s);

    // Sync: record batches after the master's cursor.
    {
        let sh = Arc::clone(&shared);
        let store = parts.store.clone();
        let db = database.clone();
        let reader: Mutex<Option<Reader>> = Mutex::new(None);
        queryables.push(declare_service(
            &shared,
            keys.sync(&node),
            move |req: SyncRequest, query, key| {
                sh.acked.fetch_max(req.ack_through, Ordering::Relaxed);
                let answer = serve_sync(&sh.node, &reader, &db, &store, &req, retention);
                reply(&query, &key, answer);
            },
        )?);
    }

    // Queries for what the master has not synchronised yet.
    {
        let db = database.clone();
        let reader: Mutex<Option<Reader>> = Mutex::new(None);
        queryables.push(declare_service(
            &shared,
            keys.query(&node),
            move |req: QueryRequest, query, key| {
                reply(&query, &key, serve_query(&reader, &db, &req));
            },
        )?);
    }

    // Re-ID service for other nodes: answered by the re-ID worker.
    if parts.config.sharing.reid_service {
        let sh = Arc::clone(&shared);
        let inbox = parts.inbox.clone();
        queryables.push(declare_service(
            &shared,
            keys.reid(&node),
            move |req: ReidRequest, query, key| {
                let request_id = req.request_id;
                let query = Arc::new(query);
                let (q2, k2) = (Arc::clone(&query), key.clone());
                let job = RemoteJob {
                    request: req,
                    reply: Box::new(move |r: ReidReply| reply(&q2, &k2, Ok(r))),
                };
                if inbox.remote(job).is_err() {
                    let busy = ReidReply {
                        request_id,
                        served_by: sh.node.clone(),
                        results: Vec::new(),
                        error: Some("re-ID service busy".into()),
                    };
                    reply(&query, &key, Ok(busy));
                }
            },
        )?);
    }

    // Identities announced by other nodes, merges from the master.
    {
        let sh = Arc::clone(&shared);
        let inbox = parts.inbox.clone();
        let sub = s
            .declare_subscriber(keys.identities())
            .callback(move |sample| {
                let key = sample.key_expr().to_string();
                let bytes = sample.payload().to_bytes();
                if let Some(a) = sh.garbage.decode::<IdentityAnnounce>(&key, &bytes) {
                    inbox.announce(a);
                }
            })
            .wait()
            .map_err(|e| anyhow::anyhow!("subscribing to identities: {e}"))?;
        subscribers.push(sub);
        let sh = Arc::clone(&shared);
        let inbox = parts.inbox.clone();
        let sub = s
            .declare_subscriber(keys.merges())
            .callback(move |sample| {
                let key = sample.key_expr().to_string();
                let bytes = sample.payload().to_bytes();
                match wire::peek(&bytes) {
                    Ok((_, vidar_protocol::MessageKind::Merges)) => {
                        if let Some(m) = sh.garbage.decode::<Merges>(&key, &bytes) {
                            for one in m.merges {
                                inbox.merge(one);
                            }
                        }
                    }
                    _ => {
                        if let Some(m) = sh.garbage.decode::<MergeAnnounce>(&key, &bytes) {
                            inbox.merge(m);
                        }
                    }
                }
            })
            .wait()
            .map_err(|e| anyhow::anyhow!("subscribing to merges: {e}"))?;
        subscribers.push(sub);
    }

    // Plans: newest version wins; handled on the plan thread (starting an
    // ingest takes a while and must not block zenoh's callback threads).
    let (plan_tx, plan_rx) = std::sync::mpsc::sync_channel::<Plan>(8);
    {
        let sh = Arc::clone(&shared);
        let tx = plan_tx.clone();
        let sub = s
            .declare_subscriber(keys.plan())
            .callback(move |sample| {
                let key = sample.key_expr().to_string();
                let bytes = sample.payload().to_bytes();
                if let Some(p) = sh.garbage.decode::<Plan>(&key, &bytes) {
                    let _ = tx.try_send(p);
                }
            })
            .wait()
            .map_err(|e| anyhow::anyhow!("subscribing to plans: {e}"))?;
        subscribers.push(sub);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    {
        let sh = Arc::clone(&shared);
        let stop = Arc::clone(&stop);
        let follower = PlanFollower {
            shared: Arc::clone(&sh),
            cameras: HashMap::new(),
            control: parts.control.clone(),
            config: parts.config.clone(),
            recorder: parts.recorder.share(),
        };
        threads.push(
            std::thread::Builder::new()
                .name("plan".into())
                .spawn(move || follower.run(plan_rx, &stop))?,
        );
    }
    {
        let sh = Arc::clone(&shared);
        let stop = Arc::clone(&stop);
        let reporter = Reporter {
            shared: sh,
            capacity: parts.capacity.clone(),
            registry: Arc::clone(&parts.registry),
            board: Arc::clone(&parts.board),
            metrics: Arc::clone(&parts.metrics),
            store: parts.store.clone(),
            metrics_addr: parts.metrics_addr.clone(),
            started_ms: now_ms(),
            every: Duration::from_millis(parts.config.sharing.status_every_ms),
            last: HashMap::new(),
        };
        threads.push(
            std::thread::Builder::new()
                .name("status".into())
                .spawn(move || reporter.run(&stop))?,
        );
    }
    if let Some(rx) = parts.tiles {
        let sh = Arc::clone(&shared);
        let board = Arc::clone(&parts.board);
        threads.push(
            std::thread::Builder::new()
                .name("tiles".into())
                .spawn(move || publish_tiles(&sh, &board, rx))?,
        );
    }
    tracing::info!(node = %node, site = keys.prefix(), "joined the cluster");
    Ok(Running {
        stop,
        threads,
        _token: token,
        _queryables: queryables,
        _subscribers: subscribers,
        link,
    })
}

/// Declares a queryable at `key` whose requests decode as `Q` (refused ones
/// are counted and answered with an error) and go to `handle`.
fn declare_service<Q: vidar_protocol::Message + 'static>(
    shared: &Arc<Shared>,
    key: String,
    handle: impl Fn(Q, zenoh::query::Query, String) + Send + Sync + 'static,
) -> Result<zenoh::query::Queryable<()>> {
    let sh = Arc::clone(shared);
    let what = Q::KIND.as_str();
    shared
        .session
        .declare_queryable(&key)
        .callback(move |query| {
            let key = query.key_expr().to_string();
            match query
                .payload()
                .map(|p| p.to_bytes())
                .and_then(|b| sh.garbage.decode::<Q>(&key, &b))
            {
                Some(req) => handle(req, query, key),
                None => {
                    let _ = query.reply_err(format!("expected a {what}")).wait();
                }
            }
        })
        .wait()
        .map_err(|e| anyhow::anyhow!("declaring the {what} queryable at {key}: {e}"))
}

/// Replies with an encoded message, or an error reply.
fn reply<M: vidar_protocol::Message>(
    query: &zenoh::query::Query,
    key: &str,
    answer: Result<M, String>,
) {
    let sent = match answer.and_then(|m| wire::encode(&m).map_err(|e| e.to_string())) {
        Ok(bytes) => query.reply(key, bytes).wait(),
        Err(e) => query.reply_err(e).wait(),
    };
    if let Err(e) = sent {
        tracing::debug!(key, error = %e, "reply not sent");
    }
}

/// Opens the database for reading once, on first use.
fn with_reader<T>(
    slot: &Mutex<Option<Reader>>,
    db: &std::path::Path,
    f: impl FnOnce(&Reader) -> Result<T, vidar_store::StoreError>,
) -> Result<T, String> {
    let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
    if guard.is_none() {
        *guard = Some(Reader::open(db).map_err(|e| e.to_string())?);
    }
    match guard.as_ref() {
        Some(r) => f(r).map_err(|e| e.to_string()),
        None => Err("database not open".into()),
    }
}

fn serve_sync(
    node: &NodeId,
    reader: &Mutex<Option<Reader>>,
    db: &std::path::Path,
    store: &WriterHandle,
    req: &SyncRequest,
    retention: Duration,
) -> Result<SyncBatch, String> {
    if req.ack_through > 0 {
        // The master committed everything up to ack_through: those records
        // may go once past retention. Never beyond what we have written.
        let upto = req.ack_through.min(store.stats().last_seq);
        if let Err(e) = store.prune_acknowledged(upto, retention) {
            tracing::warn!(error = %e, "pruning acknowledged records failed");
        }
    }
    let max = (req.max_records as usize).max(1);
    let (records, last_seq) = with_reader(reader, db, |r| {
        let recs = r.records_after_within(node, req.after_seq, max, SYNC_BATCH_BYTES)?;
        let last = r.last_seq(node)?;
        Ok((recs, last))
    })?;
    // Every seq of this node up to last_seq exists (pruning only removes
    // acknowledged ones), so a batch ending below it leaves more to fetch.
    let more = records.last().is_some_and(|r| r.key.seq < last_seq);
    Ok(SyncBatch {
        node: node.clone(),
        records,
        last_seq,
        more,
    })
}

/// Most records one query answer carries.
const QUERY_LIMIT: usize = 10_000;

fn serve_query(
    reader: &Mutex<Option<Reader>>,
    db: &std::path::Path,
    req: &QueryRequest,
) -> Result<QueryReply, String> {
    let sightings = with_reader(reader, db, |r| match req {
        QueryRequest::Trajectory { identity, range } => {
            r.trajectory(*identity, *range, QUERY_LIMIT)
        }
        QueryRequest::SightingsByCamera { camera, range } => {
            r.sightings_by_camera(camera, *range, QUERY_LIMIT)
        }
        QueryRequest::IdentitiesInRange { range } => r.sightings_in_range(*range, QUERY_LIMIT),
    })?;
    Ok(QueryReply {
        records: sightings
            .into_iter()
            .map(|s| KeyedRecord {
                key: s.key,
                record: Record::Sighting(s.value),
            })
            .collect(),
    })
}

/// Follows the newest plan: the cameras this node ingests, and where their
/// crops go.
struct PlanFollower {
    shared: Arc<Shared>,
    /// camera -> source being ingested.
    cameras: HashMap<CameraId, String>,
    control: Sender<Control>,
    config: EdgeConfig,
    recorder: Recorder,
}

impl PlanFollower {
    fn run(mut self, rx: std::sync::mpsc::Receiver<Plan>, stop: &AtomicBool) {
        let mut asked = Instant::now() - Duration::from_secs(10);
        while !stop.load(Ordering::Relaxed) {
            // Until a plan arrives, ask the master for the current one now and then.
            if self.shared.plan_version.load(Ordering::Relaxed) == 0
                && asked.elapsed() >= Duration::from_secs(2)
            {
                asked = Instant::now();
                self.ask_for_plan();
            }
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(plan) => self.apply(plan),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
    }

    fn ask_for_plan(&mut self) {
        let sh = Arc::clone(&self.shared);
        let replies = match sh
            .session
            .get(sh.keys.plan())
            .timeout(Duration::from_secs(1))
            .wait()
        {
            Ok(r) => r,
            Err(_) => return,
        };
        while let Ok(reply) = replies.recv_timeout(Duration::from_millis(1200)) {
            let Some(reply) = reply else { break };
            if let Ok(sample) = reply.result() {
                let key = sample.key_expr().to_string();
                if let Some(p) = sh
                    .garbage
                    .decode::<Plan>(&key, &sample.payload().to_bytes())
                {
                    self.apply(p);
                }
            }
        }
    }

    fn apply(&mut self, plan: Plan) {
        let current = self.shared.plan_version.load(Ordering::Relaxed);
        if plan.version <= current {
            return;
        }
        let me = self.shared.node.clone();
        let mine: HashMap<CameraId, String> = plan
            .streams_for(&me)
            .map(|s| (s.camera.clone(), s.source.clone()))
            .collect();
        // Cameras taken away, or moved to another source.
        let gone: Vec<CameraId> = self
            .cameras
            .iter()
            .filter(|(c, src)| mine.get(*c) != Some(*src))
            .map(|(c, _)| c.clone())
            .collect();
        for c in gone {
            self.cameras.remove(&c);
            let _ = self.control.send(Control::Remove(c));
        }
        for (camera, source) in &mine {
            if self.cameras.contains_key(camera) {
                continue;
            }
            match self.slot(camera, source) {
                Ok(slot) => {
                    self.recorder.camera(camera, source_name(source).as_str());
                    if self.control.send(Control::Add(Box::new(slot))).is_ok() {
                        self.cameras.insert(camera.clone(), source.clone());
                    }
                }
                Err(e) => {
                    tracing::error!(camera = %camera, error = %format!("{e:#}"), "cannot ingest the camera the plan gives this node")
                }
            }
        }
        {
            let mut routes = self.shared.routes.lock().unwrap_or_else(|p| p.into_inner());
            routes.remote = plan
                .streams_for(&me)
                .filter(|s| s.reid_node != me)
                .map(|s| (s.camera.clone(), s.reid_node.clone()))
                .collect();
            let mut buckets = std::mem::take(&mut routes.buckets);
            routes.buckets = plan
                .bandwidth
                .iter()
                .filter(|b| b.from == me)
                .map(|b| {
                    let bucket = match buckets.remove(&b.to) {
                        Some(mut old) => {
                            old.set_rate(b.bytes_per_s);
                            old
                        }
                        None => TokenBucket::new(b.bytes_per_s),
                    };
                    (b.to.clone(), bucket)
                })
                .collect();
        }
        self.shared
            .plan_version
            .store(plan.version, Ordering::Relaxed);
        tracing::info!(version = plan.version, cameras = mine.len(), reason = %plan.reason, "following plan");
    }

    /// Starts ingesting `camera` with the `[sharing.ingest]` template.
    fn slot(&self, camera: &CameraId, source: &str) -> Result<CameraSlot> {
        let cfg = ingest_config(&self.config.sharing, camera, source)?;
        let tracker = self.config.tracker.build()?;
        let ingest = Ingest::start(cfg).with_context(|| format!("starting camera {camera}"))?;
        Ok(CameraSlot::new(ingest, tracker))
    }
}

/// The source without credentials, for the camera record.
pub fn source_name(source: &str) -> String {
    vidar_pipeline::Source::parse(source)
        .map(|s| s.describe())
        .unwrap_or_default()
}

/// The ingest settings of a planned camera: the template plus camera and source.
pub fn ingest_config(
    sharing: &SharingConfig,
    camera: &CameraId,
    source: &str,
) -> Result<IngestConfig> {
    let mut table = sharing.ingest.clone();
    table.insert("camera".into(), toml::Value::String(camera.to_string()));
    table.insert("source".into(), toml::Value::String(source.to_string()));
    let cfg: IngestConfig = toml::Value::Table(table)
        .try_into()
        .context("sharing.ingest is not a valid camera template")?;
    if let Err(errs) = cfg.validate() {
        anyhow::bail!("camera {camera} from the plan: {}", errs.join("; "));
    }
    Ok(cfg)
}

/// Publishes the node's status.
struct Reporter {
    shared: Arc<Shared>,
    capacity: NodeCapacity,
    registry: Arc<CameraRegistry>,
    board: Arc<StatusBoard>,
    metrics: Arc<NodeMetrics>,
    store: WriterHandle,
    metrics_addr: String,
    started_ms: u64,
    every: Duration,
    /// camera -> (frames, analysed) at the last report.
    last: HashMap<CameraId, (u64, u64, Instant)>,
}

impl Reporter {
    fn run(mut self, stop: &AtomicBool) {
        let key = self.shared.keys.status(&self.shared.node);
        let publisher = match self.shared.session.declare_publisher(key).wait() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "status publisher not declared; the master will not see this node's load");
                return;
            }
        };
        let mut busy_last = (
            self.metrics.inference.sum_seconds(),
            self.metrics.reid_inference.sum_seconds(),
            Instant::now(),
        );
        while !stop.load(Ordering::Relaxed) {
            let status = self.status(&mut busy_last);
            match wire::encode(&status) {
                Ok(bytes) => {
                    if let Err(e) = publisher.put(bytes).wait() {
                        tracing::debug!(error = %e, "status not published");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "status not encodable"),
            }
            let until = Instant::now() + self.every;
            while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn status(&mut self, busy_last: &mut (f64, f64, Instant)) -> NodeStatus {
        let states: HashMap<String, vidar_protocol::StreamStatus> =
            self.board.snapshot().into_iter().collect();
        let now = Instant::now();
        let mut cameras = Vec::new();
        for (camera, m) in self.registry.snapshot() {
            let st = states.get(camera.as_str());
            let frames = st.map_or(0, |s| s.counters.frames);
            let analysed = m.analysed.load(Ordering::Relaxed);
            let (f0, a0, t0) = self
                .last
                .get(&camera)
                .copied()
                .unwrap_or((frames, analysed, now));
            let dt = now.saturating_duration_since(t0).as_secs_f64();
            let rate = |a: u64, b: u64| {
                if dt > 0.0 {
                    a.saturating_sub(b) as f64 / dt
                } else {
                    0.0
                }
            };
            cameras.push(CameraLoad {
                camera: camera.clone(),
                state: st.map_or(StreamState::Connecting, |s| s.state),
                fps: rate(frames, f0),
                analysed_fps: rate(analysed, a0),
                dropped: st.map_or(0, |s| s.counters.dropped),
                reconnects: st.map_or(0, |s| s.counters.reconnects),
                tracks: m.tracks.load(Ordering::Relaxed) as u32,
            });
            self.last.insert(camera, (frames, analysed, now));
        }
        let busy_now = self.metrics.inference.sum_seconds();
        let reid_now = self.metrics.reid_inference.sum_seconds();
        let wall = now.saturating_duration_since(busy_last.2).as_secs_f64();
        let threads = f64::from(self.capacity.cores.max(1));
        let share = |busy: f64, of: f64| {
            if wall > 0.0 {
                (busy / wall / of).clamp(0.0, 1.0)
            } else {
                0.0
            }
        };
        // Detection: share of the node's cores; re-ID: of its one worker thread.
        let detect_busy = share(busy_now - busy_last.0, threads);
        let reid_busy = share(reid_now - busy_last.1, 1.0);
        *busy_last = (busy_now, reid_now, now);
        let st = self.store.stats();
        NodeStatus {
            node: self.shared.node.clone(),
            sent_ms: now_ms(),
            started_ms: self.started_ms,
            plan_version: self.shared.plan_version.load(Ordering::Relaxed),
            capacity: self.capacity.clone(),
            load: NodeLoad {
                cameras,
                detect_busy,
                reid_busy,
                reid_queue: 0,
                records_last_seq: st.last_seq,
                unsynced: st
                    .last_seq
                    .saturating_sub(self.shared.acked.load(Ordering::Relaxed)),
            },
            links: Vec::new(),
            metrics_addr: Some(self.metrics_addr.clone()),
        }
    }
}

/// What this node tells the master it can do: configured rates, or measured
/// here and now on a synthetic frame (detector: one warm-up and five timed
/// runs on each detector thread's model, times the threads; re-ID: batches of
/// four crops).
pub fn profile(
    config: &EdgeConfig,
    detectors: &mut [Box<dyn vidar_detectors::Detector>],
    embedder: &mut dyn vidar_reid::Embedder,
) -> NodeCapacity {
    let s = &config.sharing;
    let (w, h) = (640u32, 480u32);
    let pixels = vec![96u8; (w * h * 3) as usize];
    let detect_fps = if s.detect_fps > 0.0 {
        s.detect_fps
    } else {
        let threads = detectors.len().max(1) as f64;
        detectors
            .first_mut()
            .and_then(|d| {
                let frame = vidar_detectors::RgbFrame::new(w, h, (w * 3) as usize, &pixels).ok()?;
                d.detect(&[frame]).ok()?;
                let t0 = Instant::now();
                for _ in 0..5 {
                    d.detect(&[frame]).ok()?;
                }
                let _ = d.take_timings();
                Some(threads * 5.0 / t0.elapsed().as_secs_f64().max(1e-6))
            })
            .unwrap_or(0.0)
    };
    let reid_crops_per_s = if s.reid_crops_per_s > 0.0 {
        s.reid_crops_per_s
    } else {
        (|| {
            let frame = vidar_detectors::RgbFrame::new(w, h, (w * 3) as usize, &pixels).ok()?;
            let bbox = vidar_protocol::BBox {
                x: 100.0,
                y: 100.0,
                w: 64.0,
                h: 160.0,
            };
            let crops = vec![vidar_reid::Crop { frame, bbox }; 4];
            let mut out = Vec::new();
            embedder.embed_into(&crops, &mut out).ok()?;
            let t0 = Instant::now();
            for _ in 0..3 {
                embedder.embed_into(&crops, &mut out).ok()?;
            }
            let _ = embedder.take_timings();
            Some(12.0 / t0.elapsed().as_secs_f64().max(1e-6))
        })()
        .unwrap_or(0.0)
    };
    NodeCapacity {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        memory_mb: memory_mb(),
        detect_fps,
        reid_crops_per_s,
        reid_service: s.reid_service,
    }
}

/// Total memory of the machine, MiB (0 when unknown).
fn memory_mb() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// Longest side of a live tile, pixels.
pub const TILE_MAX_SIDE: u32 = 640;

/// Encodes and publishes live tiles until the analysis side hangs up.
fn publish_tiles(
    shared: &Shared,
    board: &StatusBoard,
    rx: std::sync::mpsc::Receiver<crate::analysis::TileFrame>,
) {
    use vidar_protocol::messages::{CameraTile, TileBox};
    // camera -> (frames decoded, when, frame rate then), for its frame rate.
    let mut rates: HashMap<CameraId, (u64, Instant, f64)> = HashMap::new();
    while let Ok(t) = rx.recv() {
        let f = &t.frame;
        let Ok(rgb) = vidar_detectors::RgbFrame::new(f.width, f.height, f.stride, f.pixels())
        else {
            continue;
        };
        let full = vidar_protocol::BBox {
            x: 0.0,
            y: 0.0,
            w: f.width as f32,
            h: f.height as f32,
        };
        let Some(jpeg) = crate::recorder::crop_jpeg(&rgb, &full, TILE_MAX_SIDE, 70) else {
            continue;
        };
        let status = board
            .snapshot()
            .into_iter()
            .find(|(c, _)| c == f.camera.as_str())
            .map(|(_, s)| s);
        // Over at least 5 s: the stream counters are published once a second,
        // so a shorter window would jitter between one and two updates.
        let frames = status.as_ref().map_or(0, |s| s.counters.frames);
        let now = Instant::now();
        let (before, at, last_fps) = rates.get(&f.camera).copied().unwrap_or((frames, now, 0.0));
        let elapsed = now.saturating_duration_since(at).as_secs_f64();
        let fps = if elapsed >= 5.0 {
            let fps = frames.saturating_sub(before) as f64 / elapsed;
            rates.insert(f.camera.clone(), (frames, now, fps));
            fps
        } else {
            rates.entry(f.camera.clone()).or_insert((frames, now, 0.0));
            last_fps
        };
        let tile = CameraTile {
            camera: f.camera.clone(),
            node: shared.node.clone(),
            captured_ms: f
                .capture_time
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            state: status.as_ref().map_or(StreamState::Streaming, |s| s.state),
            fps,
            dropped: status.as_ref().map_or(0, |s| s.counters.dropped),
            width: f.width,
            height: f.height,
            jpeg,
            boxes: t
                .boxes
                .iter()
                .map(|(b, track, identity)| TileBox {
                    bbox: *b,
                    track: vidar_protocol::TrackId(*track),
                    identity: *identity,
                })
                .collect(),
        };
        drop(t);
        match wire::encode(&tile) {
            Ok(bytes) => {
                let key = shared.keys.tile(&shared.node, &tile.camera);
                if let Err(e) = shared.session.put(key, bytes).wait() {
                    tracing::debug!(error = %e, "tile not published");
                }
            }
            Err(e) => tracing::debug!(error = %e, "tile not encodable"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_enforces_the_share_over_time() {
        let t0 = Instant::now();
        // 100 KB/s: a full bucket (1 s worth) lets 100 KB through at once...
        let mut b = TokenBucket::new(100_000);
        let mut sent = 0usize;
        while b.take_at(10_000, t0) {
            sent += 10_000;
        }
        assert_eq!(sent, 100_000);
        // ...then the rate: over 10 simulated seconds about 1 MB more, not more.
        let mut t = t0;
        for _ in 0..1000 {
            t += Duration::from_millis(10);
            while b.take_at(1_000, t) {
                sent += 1_000;
            }
        }
        assert!((1_090_000..=1_110_000).contains(&sent), "{sent}");
        // A share below one crop per second still lets a crop through now and then.
        let mut slow = TokenBucket::new(100);
        assert!(slow.take_at(6_000, t0));
        slow.set_rate(100);
        assert!(!slow.take_at(64 * 1024, t0 + Duration::from_secs(1)));
    }

    #[test]
    fn planned_cameras_take_the_ingest_template() {
        let mut sharing = SharingConfig::default();
        sharing
            .ingest
            .insert("transport".into(), toml::Value::String("tcp".into()));
        let cam = CameraId::new("lobby").expect("id");
        let cfg = ingest_config(&sharing, &cam, "rtsp://10.0.0.5/s1").expect("valid");
        assert_eq!(cfg.camera, cam);
        assert_eq!(cfg.source, "rtsp://10.0.0.5/s1");
        sharing
            .ingest
            .insert("queue_capacity".into(), toml::Value::Integer(0));
        let err = ingest_config(&sharing, &cam, "rtsp://10.0.0.5/s1")
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(err.contains("queue_capacity"), "{err}");
    }
}
