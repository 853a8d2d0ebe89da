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

mod bandwidth;
mod plans;
mod services;
mod shared;
mod status;
mod tiles;

pub use bandwidth::TokenBucket;
pub use shared::Link;

use crate::cameras::Control;
use crate::config::EdgeConfig;
use crate::identify::{Inbox, RemoteJob};
use crate::recorder::Recorder;
use crate::telemetry::CameraRegistry;
use crate::telemetry::{NodeMetrics, StatusBoard};
use anyhow::Result;
use plans::PlanFollower;
use services::{declare_service, reply, serve_query, serve_sync};
use status::Reporter;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tiles::publish_tiles;
use vidar_link::zenoh::{self, Wait};
use vidar_protocol::messages::{
    IdentityAnnounce, MergeAnnounce, Merges, NodeCapacity, Plan, QueryRequest, ReidReply,
    ReidRequest, SyncRequest,
};
use vidar_protocol::wire;
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
}

/// The running cluster side; dropping it leaves the cluster (the liveliness
/// token goes, so the master reassigns this node's cameras at once).
pub struct Running {
    stop: vidar_runtime::Shutdown,
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
        self.stop.trigger("leaving the cluster");
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

    let stop = vidar_runtime::Shutdown::new();
    let mut threads = Vec::new();
    {
        let sh = Arc::clone(&shared);
        let stop = stop.clone();
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
            started_ms: crate::clock::now_ms(),
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
