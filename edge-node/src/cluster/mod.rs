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
//!   and where the identities it decides are seen (believed only from a
//!   node the plan has ingest or decide that camera); keeps a replica of the
//!   others', applies the master's `merges`;
//! - sync: a queryable at `sync/<node>` serving record batches after the
//!   master's cursor, pruning only what the master acknowledged (and only
//!   once older than `sharing.retention_s`);
//! - queries: a queryable at `query/<node>` answering from the local database
//!   what the master has not synchronised yet;
//! - model refreshes: the master's signed refresh on `models` (subscribed,
//!   and asked for at start); its file fetched from `model-files`, checked
//!   against the signed sha256, built off the hot path and swapped into the
//!   re-ID worker between jobs (see [`crate::refresh`]).
//!
//! Every payload received is decoded through [`Garbage`]: malformed or
//! wrong-version messages are counted and logged, never trusted.

mod links;
mod models;
mod plans;
mod probe;
mod services;
mod shared;
mod status;
mod tiles;
mod train;

pub use crate::bandwidth::TokenBucket;
pub use links::{LinkTable, PeerLink};
pub use shared::Link;

use crate::cameras::Control;
use crate::config::EdgeConfig;
use crate::identify::{Inbox, RemoteJob};
use crate::recorder::Recorder;
use crate::telemetry::CameraRegistry;
use crate::telemetry::{NodeMetrics, StatusBoard};
use anyhow::Result;
use plans::PlanFollower;
use services::{serve_query, serve_sync};
use status::Reporter;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tiles::publish_tiles;
use vidar_link::Responder;
use vidar_protocol::messages::{
    IdentityAnnounce, IdentitySeen, KeepApart, LinkProbe, LinkProbeReply, MergeAnnounce, Merges,
    ModelRefresh, NodeCapacity, Plan, QueryReply, QueryRequest, ReidReply, ReidRequest,
    SplitAnnounce, SyncBatch, SyncRequest,
};
use vidar_protocol::UnixMs;
use vidar_store::{Reader, WriterHandle};

/// What [`start`] needs from the node.
#[derive(Debug)]
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
    pub tiles: Option<std::sync::mpsc::Receiver<crate::media::TileFrame>>,
    /// Builds refreshed re-ID models.
    pub refresher: crate::refresh::Refresher,
    /// The refresh running since start (restored), if any.
    pub refresh: Option<vidar_protocol::messages::ModelRefresh>,
    /// What analytics jobs' stages are built from.
    pub jobs: crate::analytics::stages::Builders,
    /// Analytics jobs' taps and counters.
    pub hub: Arc<crate::analytics::Hub>,
}

/// The running cluster side; dropping it leaves the cluster (the liveliness
/// token goes, so the master reassigns this node's cameras at once).
pub struct Running {
    stop: vidar_runtime::Shutdown,
    threads: Vec<std::thread::JoinHandle<()>>,
    // Declarations live as long as this value.
    _token: vidar_link::AliveToken,
    _services: Vec<vidar_link::Service>,
    _subscriptions: Vec<vidar_link::Subscription>,
    /// The plan thread's inbox: `None` wakes it to stop.
    plan_inbox: std::sync::mpsc::SyncSender<Option<Plan>>,
    /// The model thread's inbox: `None` wakes it to stop.
    model_inbox: std::sync::mpsc::SyncSender<Option<ModelRefresh>>,
    link: Link,
    jobs: Arc<crate::analytics::runtime::JobRuntime>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").field("link", &self.link).finish()
    }
}

impl Running {
    /// Leaves the cluster: stops the threads, undeclares everything, closes the session.
    pub fn stop(mut self) {
        self.stop.trigger("leaving the cluster");
        // The plan thread sleeps on its inbox: wake it (an error means it
        // has ended already).
        let _ = self.plan_inbox.send(None);
        let _ = self.model_inbox.send(None);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.jobs.stop();
        let net = self.link.shared.link.clone();
        drop(self);
        net.close();
    }
}

/// Declares everything and starts the status and plan threads.
pub fn start(link: Link, parts: Parts) -> Result<Running> {
    let shared = Arc::clone(&link.shared);
    let net = &shared.link;
    let keys = net.keys().clone();
    let node = shared.node.clone();
    let token = net.alive(&keys.node_alive(&node))?;

    let mut services = Vec::new();
    let mut subscriptions = Vec::new();
    let database = parts.config.database.clone();
    let retention = Duration::from_secs(parts.config.sharing.retention_s);

    // Sync: record batches after the master's cursor.
    {
        let sh = Arc::clone(&shared);
        let store = parts.store.clone();
        let db = database.clone();
        let reader: Mutex<Option<Reader>> = Mutex::new(None);
        services.push(net.serve(
            &keys.sync(&node),
            move |req: SyncRequest, answer: Responder<SyncBatch>| {
                sh.acked.fetch_max(req.ack_through, Ordering::Relaxed);
                answer.reply(serve_sync(&sh.node, &reader, &db, &store, &req, retention));
            },
        )?);
    }

    // Queries for what the master has not synchronised yet.
    {
        let db = database.clone();
        let reader: Mutex<Option<Reader>> = Mutex::new(None);
        services.push(net.serve(
            &keys.query(&node),
            move |req: QueryRequest, answer: Responder<QueryReply>| {
                answer.reply(serve_query(&reader, &db, &req));
            },
        )?);
    }

    // Re-ID service for other nodes: answered by the re-ID worker.
    if parts.config.sharing.reid_service {
        let sh = Arc::clone(&shared);
        let inbox = parts.inbox.clone();
        services.push(net.serve(
            &keys.reid_served_by(&node),
            move |req: ReidRequest, answer: Responder<ReidReply>| {
                let request_id = req.request_id;
                // The asker is named by the key (under a bundle the master's
                // ACL lets a node ask only under its own name) and must be
                // one the plan sends to us.
                if let Err(why) = sh.asker_allowed(answer.key(), &req) {
                    sh.refused_askers.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(key = answer.key(), why, "re-ID request refused");
                    answer.reply(Err(why));
                    return;
                }
                // The responder goes with the job; a full worker gives the
                // job back, and it answers "busy".
                let job = RemoteJob {
                    request: req,
                    reply: Box::new(move |r: ReidReply| answer.reply(Ok(r))),
                };
                if let Err(job) = inbox.remote(job) {
                    (job.reply)(ReidReply {
                        request_id,
                        served_by: sh.node.clone(),
                        results: Vec::new(),
                        error: Some("re-ID service busy".into()),
                    });
                }
            },
        )?);
    }

    // Link probes from other nodes: answered at once, from the node the key names.
    {
        let sh = Arc::clone(&shared);
        services.push(net.serve(
            &keys.probe_served_by(&node),
            move |req: LinkProbe, answer: Responder<LinkProbeReply>| {
                probe::answer(&sh, req, answer)
            },
        )?);
    }

    // Identities announced by other nodes, where they are seen, merges
    // from the master.
    {
        let inbox = parts.inbox.clone();
        let k = keys.clone();
        let sh = Arc::clone(&shared);
        subscriptions.push(net.subscribe_any(&keys.identities_all(), move |payload| {
            match payload.kind() {
                // A node's join of its own mint is for the master, which
                // sends the merge it makes to every node (signed); a payload
                // without a valid header is already counted as refused.
                Some(vidar_protocol::MessageKind::IdentityJoined) | None => {}
                Some(vidar_protocol::MessageKind::IdentitySeen) => {
                    if let Some(s) = payload.decode::<IdentitySeen>() {
                        match sh.believe_seen(payload.key(), &s, UnixMs::now()) {
                            Ok(()) => inbox.seen(s),
                            Err(why) => payload.refuse(&why),
                        }
                    }
                }
                Some(_) => {
                    if let Some(a) = payload.decode::<IdentityAnnounce>() {
                        // Only the node named by the key announces its identities.
                        if k.identities_of(payload.key(), &a.node) {
                            inbox.announce(a)
                        }
                    }
                }
            }
        })?);
        let inbox = parts.inbox.clone();
        subscriptions.push(net.subscribe_any(
            &keys.merges(),
            move |payload| match payload.kind() {
                Some(vidar_protocol::MessageKind::Merges) => {
                    if let Some(m) = payload.decode::<Merges>() {
                        for one in m.merges {
                            inbox.merge(one);
                        }
                    }
                }
                Some(vidar_protocol::MessageKind::SplitAnnounce) => {
                    if let Some(s) = payload.decode::<SplitAnnounce>() {
                        inbox.split(s);
                    }
                }
                Some(vidar_protocol::MessageKind::KeepApart) => {
                    if let Some(k) = payload.decode::<KeepApart>() {
                        inbox.keep_apart(k);
                    }
                }
                Some(_) => {
                    if let Some(m) = payload.decode::<MergeAnnounce>() {
                        inbox.merge(m);
                    }
                }
                None => {}
            },
        )?);
    }

    // Analytics jobs: the stages the plan places here, and the items other
    // nodes send them (checked against the plan by the runtime).
    let jobs = Arc::new(crate::analytics::runtime::JobRuntime::new(
        crate::analytics::worker::Ctx {
            me: node.clone(),
            link: shared.link.clone(),
            hub: Arc::clone(&parts.hub),
            builders: parts.jobs.clone(),
            sent: Arc::clone(&shared.links.job_bytes),
        },
    ));
    {
        let jobs = Arc::clone(&jobs);
        subscriptions.push(net.subscribe(
            &keys.job_to(&node),
            move |key, item: vidar_protocol::messages::JobItem| jobs.receive(key, item),
        )?);
    }

    // Plans: newest version wins; handled on the plan thread (starting an
    // ingest takes a while and must not block zenoh's callback threads).
    let (plan_tx, plan_rx) = std::sync::mpsc::sync_channel::<Option<Plan>>(8);
    {
        let tx = plan_tx.clone();
        subscriptions.push(net.subscribe(&keys.plan(), move |_key, p: Plan| {
            let _ = tx.try_send(Some(p));
        })?);
    }

    // Model refreshes: built on their own thread (loading a session takes
    // a while), newest serial wins.
    let (model_tx, model_rx) = std::sync::mpsc::sync_channel::<Option<ModelRefresh>>(8);
    {
        let tx = model_tx.clone();
        subscriptions.push(net.subscribe(&keys.models(), move |_key, r: ModelRefresh| {
            let _ = tx.try_send(Some(r));
        })?);
    }

    let stop = vidar_runtime::Shutdown::new();
    let mut threads = Vec::new();
    // Split training rounds: the master's steps, on a thread below analysis.
    if parts.config.training.rounds {
        if let Some((service, thread)) =
            train::start(net, &keys.train(&node), &parts, stop.clone())?
        {
            services.push(service);
            threads.push(thread);
        }
    }
    {
        let follower = models::ModelFollower {
            shared: Arc::clone(&shared),
            inbox: parts.inbox.clone(),
            metrics: Arc::clone(&parts.metrics),
            running: parts
                .refresh
                .as_ref()
                .map(|r| r.sha256.clone())
                .or_else(|| parts.refresher.shipped_sha256()),
            applied: parts.refresh.as_ref().map_or(0, |r| r.serial),
            refresher: parts.refresher.clone(),
            refused: Default::default(),
        };
        if let Some(r) = &parts.refresh {
            parts
                .metrics
                .model_refresh_serial
                .store(r.serial, Ordering::Relaxed);
        }
        let stop = stop.clone();
        threads.push(
            std::thread::Builder::new()
                .name("models".into())
                .spawn(move || follower.run(model_rx, &stop))?,
        );
    }
    {
        let sh = Arc::clone(&shared);
        let stop = stop.clone();
        let follower = PlanFollower {
            shared: Arc::clone(&sh),
            cameras: HashMap::new(),
            control: parts.control.clone(),
            config: parts.config.clone(),
            recorder: parts.recorder.share(),
            jobs: Arc::clone(&jobs),
        };
        threads.push(
            std::thread::Builder::new()
                .name("plan".into())
                .spawn(move || follower.run(plan_rx, &stop))?,
        );
    }
    {
        let sh = Arc::clone(&shared);
        let stop = stop.clone();
        let reporter = Reporter {
            inbox: parts.inbox.clone(),
            shared: sh,
            capacity: parts.capacity.clone(),
            registry: Arc::clone(&parts.registry),
            board: Arc::clone(&parts.board),
            metrics: Arc::clone(&parts.metrics),
            store: parts.store.clone(),
            metrics_addr: parts.metrics_addr.clone(),
            started_ms: UnixMs::now(),
            every: Duration::from_millis(parts.config.sharing.status_every_ms),
            last: HashMap::new(),
            cpu: status::CpuUse::start(parts.hub.cpu_ns.load(Ordering::Relaxed)),
            hub: Arc::clone(&parts.hub),
        };
        threads.push(
            std::thread::Builder::new()
                .name("status".into())
                .spawn(move || reporter.run(&stop))?,
        );
    }
    if parts.config.sharing.probe_links {
        let sh = Arc::clone(&shared);
        let stop = stop.clone();
        threads.push(
            std::thread::Builder::new()
                .name("probe".into())
                .spawn(move || probe::run(&sh, &stop))?,
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
        _services: services,
        _subscriptions: subscriptions,
        plan_inbox: plan_tx,
        model_inbox: model_tx,
        link,
        jobs,
    })
}
