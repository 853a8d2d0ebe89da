//! `vidar-master`: the cluster's master. It keeps the membership table (zenoh
//! liveliness + node status), runs the planner on events and publishes
//! versioned plans, pulls every edge's records into the global database,
//! merges duplicate identities, and answers queries over HTTP.
//!
//! [`Master::start`] wires the services from a validated [`MasterConfig`]; each
//! service runs on its own thread (zenoh's synchronous API), the HTTP API on a
//! small tokio runtime. Locks are never held across network calls: services
//! clone what they need out of shared state first. The master must not touch
//! an edge's database (only its queryables) nor compute placements itself
//! (that is [`planner`]'s).

pub mod config;
pub mod corrections;
pub mod health;
pub mod http;
pub mod jobs;
pub mod membership;
pub mod merge_service;
pub mod merges;
pub mod models;
pub mod password;
pub mod planner;
pub mod plans;
pub mod query;
pub mod roster;
pub mod sync;
pub mod tiles;
pub mod training;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::Duration;
use vidar_config::{Config, Problem};

use vidar_link::Mode;
use vidar_store::{Writer, WriterConfig};

pub use config::{ConfigError, MasterConfig};

/// Why the master could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    /// The configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// The global database failed.
    #[error("global database: {0}")]
    Store(#[from] vidar_store::StoreError),
    /// The zenoh session could not be opened, or a declaration failed.
    #[error(transparent)]
    Link(#[from] vidar_link::LinkError),
    /// A service or the database writer died while running.
    #[error("stopped after a failure: {0}")]
    Failed(String),
    /// A file, socket or thread operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

impl From<vidar_config::Invalid> for MasterError {
    fn from(invalid: vidar_config::Invalid) -> Self {
        MasterError::Config(invalid.to_string())
    }
}

impl Config for MasterConfig {
    type Output = Master;
    /// Triggered (as a failure) when a service or the writer dies.
    type Context = vidar_runtime::Shutdown;
    type Error = MasterError;

    fn problems(&self) -> Vec<Problem> {
        self.value_problems()
    }

    /// Starts the master (see [`Master::start_with`]).
    fn build(&self, shutdown: &vidar_runtime::Shutdown) -> Result<Master, MasterError> {
        Master::start_with(self, shutdown)
    }
}

fn ioerr(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> MasterError {
    let what = what.into();
    move |source| MasterError::Io { what, source }
}

/// Stops the services if start-up fails half way.
/// Stops the service threads: triggers their token, then wakes each from
/// the wait it is in, so none notices the stop only when its timer fires.
#[derive(Debug, Clone)]
struct Stopper {
    token: vidar_runtime::Shutdown,
    plans: plans::Plans,
    sync: sync::Sync,
    merges: mpsc::SyncSender<merge_service::Input>,
}

impl Stopper {
    fn stop(&self) {
        self.token.trigger("the master is stopping");
        self.plans.wake();
        self.sync.trigger();
        // A full inbox means the thread is busy: it sees the token after
        // the message it is on.
        let _ = self.merges.try_send(merge_service::Input::Stop);
    }
}

/// Stops the threads started so far when `start` fails half way.
struct StopOnDrop(Option<Stopper>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            s.stop();
        }
    }
}

/// A running master.
#[derive(Debug)]
pub struct Master {
    stopper: Stopper,
    threads: health::Threads,
    feed: Option<membership::Feed>,
    plan_queryable: Option<vidar_link::Service>,
    model_services: Vec<vidar_link::Service>,
    tiles_feed: Option<vidar_link::Subscription>,
    http: Option<vidar_runtime::HttpServer>,
    http_addr: SocketAddr,
    writer: Option<Writer>,
    link: vidar_link::Link,
    context: Arc<http::ApiContext>,
}

impl Master {
    /// Opens the database and the zenoh session, starts every service and the
    /// HTTP API. Refuses a config with problems ([`MasterConfig::value_problems`]).
    pub fn start(config: &MasterConfig) -> Result<Master, MasterError> {
        Master::start_with(config, &vidar_runtime::Shutdown::new())
    }

    /// [`Master::start`], with `shutdown` triggered (as a failure) when a
    /// service or the database writer dies: see [`health`].
    pub fn start_with(
        config: &MasterConfig,
        shutdown: &vidar_runtime::Shutdown,
    ) -> Result<Master, MasterError> {
        vidar_config::result(config.value_problems())?;
        let master_id = config.master_node().map_err(MasterError::Config)?;
        let cameras = config.site_cameras().map_err(MasterError::Config)?;
        for c in &cameras {
            if vidar_protocol::secret::has_credentials(&c.source) {
                tracing::warn!(camera = %c.camera, "its source carries credentials, which plans never send: give them to the nodes that may ingest it ([[sharing.credentials]] or sharing.credentials_file)");
            }
        }
        let keys = config.cluster.keys()?;
        let http_addr: SocketAddr = config
            .http_addr
            .parse()
            .map_err(|e| MasterError::Config(format!("http_addr: {e}")))?;
        if let Some(dir) = config
            .database
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            vidar_store::create_private_dir(dir).map_err(ioerr(format!(
                "creating the database folder {}",
                dir.display()
            )))?;
        }
        let ui = http::UiState::build(config).map_err(MasterError::Config)?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(Arc::new(
                http::listen::server_config(cert, key).map_err(MasterError::Config)?,
            )),
            _ => None,
        };
        let writer = WriterConfig::new(&config.database, master_id);
        let writer = writer.build(&())?;
        if config.check_database_at_start {
            // Damage found now is damage never built upon: stop and restore.
            let t0 = std::time::Instant::now();
            vidar_store::maintenance::check(
                &config.database,
                vidar_store::maintenance::Check::Quick,
            )?;
            tracing::info!(
                took_ms = t0.elapsed().as_millis() as u64,
                "database integrity checked"
            );
        }
        let link = config.cluster.open(Mode::Router)?;
        let stop = vidar_runtime::Shutdown::new();
        let (plan_wake, plan_wake_rx) = mpsc::sync_channel(1);
        let timeout = Duration::from_secs_f64(config.node_timeout_s);
        let bundle = config.cluster.bundle()?;
        let members = match &bundle {
            Some(b) => {
                let enrolled = b
                    .enrolled()
                    .map_err(|e| MasterError::Config(format!("cluster.bundle: {e}")))?;
                tracing::info!(
                    nodes = enrolled.len(),
                    "mutual TLS with the site CA; only enrolled nodes are taken in"
                );
                membership::Membership::enrolled(timeout, plan_wake.clone(), &enrolled)
            }
            None => membership::Membership::new(timeout, plan_wake.clone()),
        };
        let plans = plans::Plans::new(cameras, plan_wake);
        let (sync_wake, sync_wake_rx) = mpsc::sync_channel(1);
        let sync = sync::Sync::new(sync_wake);
        let merge_counters = Arc::new(merge_service::MergeCounters::default());
        let (merge_tx, merge_rx) = merge_service::inbox();
        let stopper = Stopper {
            token: stop.clone(),
            plans: plans.clone(),
            sync: sync.clone(),
            merges: merge_tx.clone(),
        };
        let mut guard = StopOnDrop(Some(stopper.clone()));

        let feed = membership::attach(&link, &keys, &members)?;
        let mut threads = Vec::new();
        let (plan_thread, plan_queryable) = plans::PlanService {
            link: link.clone(),
            keys: keys.clone(),
            membership: members.clone(),
            plans: plans.clone(),
            wake: plan_wake_rx,
            every: Duration::from_secs_f64(config.plan_every_s),
            algorithm: config.plan_algorithm,
            jobs: jobs::Book::new(config.jobs_dir()),
            jobs_policy: config.jobs_policy,
            // Nodes with a bundle are clients of this router.
            jobs_network: jobs::place::Network::of_site(config.cluster.bundle.is_some()),
            stop: stop.clone(),
            state_dir: config.state_dir(),
            startup_wait: timeout,
        }
        .spawn()?;
        threads.push(("plans", plan_thread));
        let sync_thread = sync::SyncService {
            link: link.clone(),
            keys: keys.clone(),
            membership: members.clone(),
            writer: writer.handle(),
            database: config.database.clone(),
            sync: sync.clone(),
            wake: sync_wake_rx,
            every: Duration::from_secs_f64(config.sync_every_s),
            batch: config.sync_batch,
            stop: stop.clone(),
        }
        .spawn()
        .map_err(ioerr("starting the sync thread"))?;
        threads.push(("sync", sync_thread));
        let desk = Arc::new(corrections::Desk::new(
            writer.handle(),
            config.database.clone(),
            merge_tx.clone(),
        ));
        let merge_thread = merge_service::MergeService {
            link: link.clone(),
            keys: keys.clone(),
            writer: writer.handle(),
            threshold: config.merge_threshold,
            counters: merge_counters.clone(),
            membership: members.clone(),
            database: config.database.clone(),
            stop: stop.clone(),
        }
        .spawn((merge_tx, merge_rx))?;
        threads.push(("merges", merge_thread));
        let (model_thread, model_services) = models::ModelService {
            link: link.clone(),
            keys: keys.clone(),
            dir: config.models_dir(),
            stop: stop.clone(),
        }
        .spawn()?;
        threads.push(("models", model_thread));
        let (training, training_thread) = training::TrainingService {
            link: link.clone(),
            keys: keys.clone(),
            membership: members.clone(),
            models_dir: config.models_dir(),
            config: config.training.clone(),
            stop: stop.clone(),
        }
        .spawn()
        .map_err(ioerr("starting the training thread"))?;
        threads.push(("training", training_thread));
        if let Some(bundle) = bundle {
            let roster_thread = roster::RosterWatch {
                link: link.clone(),
                membership: members.clone(),
                bundle,
                stop: stop.clone(),
            }
            .spawn()
            .map_err(ioerr("starting the roster thread"))?;
            threads.push(("roster", roster_thread));
        }

        let tiles_feed = tiles::attach(&link, &keys, &ui.tiles)?;
        let threads: health::Threads = Arc::new(std::sync::Mutex::new(threads));
        let health = vidar_runtime::Health::new(shutdown);
        health::watch(&health, &writer.handle(), &threads, &stop);
        let context = Arc::new(http::ApiContext {
            health,
            database: config.database.clone(),
            link: link.clone(),
            keys,
            membership: members,
            plans,
            sync,
            merges: merge_counters,
            corrections: desk,
            writer: writer.handle(),
            edge_timeout: http::EDGE_TIMEOUT,
            edge_silence: Default::default(),
            ui,
            models_dir: config.models_dir(),
            jobs: jobs::Book::new(config.jobs_dir()),
            training,
            training_config: config.training.clone(),
        });
        let listener = std::net::TcpListener::bind(http_addr)
            .map_err(ioerr(format!("listening on http_addr {http_addr}")))?;
        let server = vidar_runtime::serve_on(
            listener,
            http::app(context.clone()),
            http::LIMITS,
            shutdown,
            tls,
        )
        .map_err(ioerr("starting the HTTP server"))?;
        let bound = server.addr();
        let scheme = if config.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        tracing::info!(http = %bound, ui = %format!("{scheme}://{bound}/"), database = %config.database.display(), site = %config.cluster.site, "master started");
        guard.0 = None;
        Ok(Master {
            stopper,
            threads,
            feed: Some(feed),
            plan_queryable: Some(plan_queryable),
            model_services,
            tiles_feed: Some(tiles_feed),
            http: Some(server),
            http_addr: bound,
            writer: Some(writer),
            link,
            context,
        })
    }

    /// Where the HTTP API listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The locators the cluster session listens on, with the ports the
    /// kernel picked for a `:0` in `cluster.listen`.
    pub fn zenoh_locators(&self) -> Vec<String> {
        self.link.locators()
    }

    /// The state the API serves (membership, plans, sync...).
    pub fn context(&self) -> &Arc<http::ApiContext> {
        &self.context
    }

    /// The global database.
    pub fn database(&self) -> PathBuf {
        self.context.database.clone()
    }

    /// Stops the HTTP API, runs a final sync round, flushes and closes the
    /// database and the zenoh session.
    pub fn shutdown(mut self) -> Result<(), MasterError> {
        self.stop_all()
    }

    fn stop_all(&mut self) -> Result<(), MasterError> {
        self.context.ui.tiles.close();
        // Dropping the server stops accepting and ends every connection.
        self.http.take();
        self.stopper.stop();
        let threads: Vec<_> = self
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for (name, t) in threads {
            if t.join().is_err() {
                tracing::error!(thread = name, "service thread panicked");
            }
        }
        self.plan_queryable.take();
        self.model_services.clear();
        self.tiles_feed.take();
        self.feed.take();
        let mut result = Ok(());
        if let Some(w) = self.writer.take() {
            if let Err(e) = w.flush() {
                result = Err(MasterError::Store(e));
            }
            match w.shutdown() {
                Ok(stats) => tracing::info!(records = stats.records, "global database closed"),
                Err(e) => result = Err(MasterError::Store(e)),
            }
        }
        self.link.close();
        result
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        if self.writer.is_some() {
            if let Err(e) = self.stop_all() {
                tracing::error!(error = %e, "stopping the master");
            }
        }
    }
}

/// Runs the master until `shutdown` is triggered (a signal, or a service
/// that died), then stops it cleanly; fails when the stop was a failure, so
/// the process exits non-zero and its supervisor restarts it.
pub fn run(config: &MasterConfig, shutdown: vidar_runtime::Shutdown) -> Result<(), MasterError> {
    let master = Master::start_with(config, &shutdown)?;
    let ready = vidar_config::ready::Ready {
        http: Some(master.http_addr()),
        zenoh: master.zenoh_locators(),
        ..vidar_config::ready::Ready::this_process()
    };
    match ready.announce() {
        Ok(Some(path)) => tracing::debug!(file = %path.display(), "ready file written"),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "writing the ready file (VIDAR_READY_FILE)"),
    }
    shutdown.wait();
    tracing::info!("shutting down");
    master.shutdown()?;
    match shutdown.reason() {
        Some(r) if r.failure => Err(MasterError::Failed(r.why)),
        _ => Ok(()),
    }
}
