//! `run(config, shutdown)`: wires one edge node together. Ingest threads (one
//! per camera) -> the analysis thread (detect, track, re-ID) -> the recorder
//! (one SQLite writer) -> `/metrics`. Returns after `shutdown` is set and every
//! record has been flushed.

use crate::analysis::{Analysis, AnalysisSettings};
use crate::cameras::CameraSlot;
use crate::cluster;
use crate::config::EdgeConfig;
use crate::detect_pool::DetectPool;
use crate::identify::Identifier;
use crate::recorder::Recorder;
use crate::telemetry::CameraRegistry;
use crate::telemetry::{
    self as metrics, exposition, render_node, render_store, server, NodeMetrics, StatusBoard,
    Summary,
};
use anyhow::{Context, Result};
use std::sync::Arc;
use std::time::Duration;
use vidar_config::{Config, Problem};
use vidar_models::{Manifest, ModelStore};
use vidar_protocol::UnixMs;
use vidar_reid::{Embedder, Gallery};
use vidar_runtime::{Health, Policy, Shutdown};

/// A built node, not yet running: analysis plus what `/metrics` reads.
#[derive(Debug)]
pub struct Built {
    /// The analysis loop with its cameras, models and recorder.
    pub analysis: Analysis,
    /// Stream statuses, published by the analysis thread.
    pub statuses: Arc<StatusBoard>,
    /// Per-camera metrics.
    pub cameras: Vec<(vidar_protocol::CameraId, Arc<metrics::CameraMetrics>)>,
    /// Node metrics.
    pub metrics: Arc<NodeMetrics>,
    /// The database writer, for its statistics.
    pub store: vidar_store::WriterHandle,
    /// The cameras being analysed (changes in a cluster).
    pub registry: Arc<CameraRegistry>,
    /// The cluster side, not yet started (cluster mode only).
    pub cluster: Option<ClusterStart>,
    /// Analytics jobs' taps and counters.
    pub jobs: Arc<crate::analytics::Hub>,
}

/// What starting the cluster side needs from [`build`].
#[derive(Debug)]
pub struct ClusterStart {
    link: cluster::Link,
    capacity: vidar_protocol::messages::NodeCapacity,
    control: std::sync::mpsc::Sender<crate::cameras::Control>,
    inbox: crate::identify::Inbox,
    tiles: Option<std::sync::mpsc::Receiver<crate::media::TileFrame>>,
    refresher: crate::refresh::Refresher,
    refresh: Option<vidar_protocol::messages::ModelRefresh>,
    jobs: crate::analytics::stages::Builders,
}

impl Config for EdgeConfig {
    type Output = Built;
    /// Stops the build while it waits for the master's router.
    type Context = Shutdown;
    type Error = anyhow::Error;

    fn problems(&self) -> Vec<Problem> {
        self.value_problems()
    }

    /// [`build_until`], for a config without problems.
    fn build(&self, stop: &Shutdown) -> Result<Built> {
        self.check()?;
        build_until(self, stop)
    }
}

/// The models a node runs: `models.dir` with the built-in manifest, or
/// `VIDAR_MODEL_DIR`.
pub(crate) fn model_store(config: &EdgeConfig) -> Result<ModelStore> {
    Ok(match &config.models.dir {
        Some(dir) => ModelStore::new(dir, Manifest::builtin()?),
        None => {
            ModelStore::from_env().context("locating models (set models.dir or VIDAR_MODEL_DIR)")?
        }
    })
}

/// The node's model refreshes (kept in its refresh folder) for its re-ID
/// model as configured.
pub(crate) fn refresher(config: &EdgeConfig, store: ModelStore) -> crate::refresh::Refresher {
    crate::refresh::Refresher::new(
        config.embedder.clone(),
        config.models.runtime.clone(),
        store,
        config.refresh_dir(),
        config.database.clone(),
        &config.gallery,
    )
}

/// Builds every part, failing early, with the file and problem named, on a
/// bad model, database or camera config.
pub fn build(config: &EdgeConfig) -> Result<Built> {
    build_until(config, &Shutdown::new())
}

/// [`build`], giving up when `stop` is triggered while it waits (for the
/// master's router, in a cluster).
pub fn build_until(config: &EdgeConfig, stop: &Shutdown) -> Result<Built> {
    let store = model_store(config)?;
    let factory = config
        .models
        .runtime
        .build(&store)
        .context("starting ONNX Runtime")?;
    let mut detectors: Vec<Box<dyn vidar_detectors::Detector>> = Vec::new();
    for _ in 0..config.detector_threads() {
        let detector = config
            .detector
            .build(&factory)
            .with_context(|| format!("loading detector model {:?}", config.detector.model))?;
        detectors.push(Box::new(detector));
    }
    if let Some(d) = detectors.first() {
        tracing::info!(
            model = d.name(),
            threads = detectors.len(),
            max_batch = d.max_batch(),
            depth = config.detector_depth(),
            "detectors loaded"
        );
    }
    // The model refresh applied before a restart runs again (its
    // identities are restored below); else the configured model.
    let refresher = refresher(config, store.clone());
    let (refresh, mut embedder) = match refresher.restore() {
        Some((r, e)) => {
            tracing::info!(serial = r.serial, model = %r.model, version = %r.version, "running the model refresh applied before this start");
            (Some(r), e)
        }
        None => (
            None,
            config
                .embedder
                .build(&factory)
                .with_context(|| format!("loading re-ID model {:?}", config.embedder.model))?,
        ),
    };
    // In a cluster: join it, and measure what this node can do for the master's plans.
    let link = match &config.cluster {
        Some(settings) => {
            let link = cluster::Link::open(config, settings, stop)?;
            let capacity =
                crate::profiling::profile(config, detectors.as_mut_slice(), &mut embedder);
            tracing::info!(
                detect_fps = capacity.detect_fps,
                reid_crops_per_s = capacity.reid_crops_per_s,
                jpeg_encode_cost = capacity.jpeg_encode_cost,
                jpeg_decode_cost = capacity.jpeg_decode_cost,
                "capacity"
            );
            Some((link, capacity))
        }
        None => None,
    };
    let mut gallery_config = config.gallery.clone();
    if config.cluster.is_some() && gallery_config.node_prefix == 0 {
        // Nodes of a cluster must mint different ids: derive this node's
        // prefix from its id unless the operator set one.
        gallery_config.node_prefix = node_prefix(&config.node_id);
        tracing::info!(
            node_prefix = gallery_config.node_prefix,
            "identity prefix derived from node_id (set gallery.node_prefix to choose it)"
        );
    }
    // Identities carry the embedder's model tag: vectors of another model
    // (restored, or announced by a node running another one) are never compared.
    let mut gallery = Gallery::with_model(gallery_config, embedder.model_tag())?;
    let node_metrics = Arc::new(NodeMetrics::default());
    let recorder = Recorder::open(&config.database, &config.node_id, Arc::clone(&node_metrics))
        .with_context(|| format!("opening database {}", config.database.display()))?;
    // Never reuse an identity number minted before a restart.
    let (lo, hi) = gallery.id_range();
    let last = vidar_store::Reader::open(&config.database)
        .and_then(|r| r.max_identity_between(lo, hi))
        .with_context(|| format!("reading identities from {}", config.database.display()))?;
    if let Some(last) = last {
        gallery.resume_after(last);
        tracing::info!(last_identity = %last, "resuming identity numbering");
    }
    let restored = restore_gallery(&mut gallery, config)
        .with_context(|| format!("restoring identities from {}", config.database.display()))?;
    if restored > 0 {
        tracing::info!(restored, "restored identities from the database");
    }
    let mut identifier = Identifier::spawn(
        config.node_id.clone(),
        Box::new(embedder),
        gallery,
        recorder.share(),
        Arc::clone(&node_metrics),
        config.snapshots,
        link.as_ref().map(|(l, _)| l.reid()),
    )?;
    if config.training.collect {
        let (collector, thread) = crate::training::Collector::start(
            &config.training,
            &config.database,
            Arc::clone(&node_metrics),
        )
        .context("opening the training samples' file")?;
        identifier.collect_training(collector, thread)?;
    }
    let mut cameras = Vec::with_capacity(config.cameras.len());
    for cam in &config.cameras {
        let slot = CameraSlot::start(cam.clone(), &config.tracker, &config.motion)?;
        recorder.camera(&cam.camera, &crate::cameras::source_name(&cam.source));
        cameras.push(slot);
    }
    let cam_metrics: Vec<_> = cameras
        .iter()
        .map(|c| (c.source.camera().clone(), Arc::clone(&c.metrics)))
        .collect();
    let store = recorder.writer();
    let (control_tx, control_rx) = std::sync::mpsc::channel();
    let in_cluster = link.is_some();
    let (tile_sink, tile_rx) = match (in_cluster, config.sharing.tile_every_ms) {
        (true, every) if every > 0 => {
            let (tx, rx) = std::sync::mpsc::sync_channel(2);
            (
                Some(crate::media::TileSink {
                    tx,
                    every: Duration::from_millis(every),
                }),
                Some(rx),
            )
        }
        _ => (None, None),
    };
    let cluster = link.map(|(link, capacity)| ClusterStart {
        link,
        capacity,
        control: control_tx,
        inbox: identifier.inbox(),
        tiles: tile_rx,
        refresher,
        refresh,
        jobs: crate::analytics::stages::Builders {
            factory: factory.clone(),
            detector: config.detector.clone(),
            embedder: config.embedder.clone(),
            tracker: config.tracker.clone(),
            recorder: recorder.share(),
        },
    });
    let jobs = Arc::new(crate::analytics::Hub::default());
    let registry = Arc::new(CameraRegistry::default());
    Ok(Built {
        registry: Arc::clone(&registry),
        cluster,
        store,
        analysis: Analysis {
            cameras,
            detectors: DetectPool::spawn(detectors, config.detector_depth())
                .context("starting detector threads")?,
            identifier,
            recorder,
            metrics: Arc::clone(&node_metrics),
            settings: AnalysisSettings {
                detection_interval: config.detection_interval,
                rate: config.detection_rate.clone(),
            },
            control: in_cluster.then_some(control_rx),
            registry,
            tiles: tile_sink,
            jobs: Arc::clone(&jobs),
            observer: None,
        },
        jobs,
        statuses: Arc::new(StatusBoard::default()),
        cameras: cam_metrics,
        metrics: node_metrics,
    })
}

/// A stable identity prefix in 1..=65535 for `node` (FNV-1a of its id).
pub fn node_prefix(node: &vidar_protocol::NodeId) -> u16 {
    let mut h: u32 = 0x811c_9dc5;
    for b in node.as_str().bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h % 65_535) as u16 + 1
}

/// Loads the identities this database saw within the gallery's age limit
/// back into the gallery, so people seen before a restart keep their identity.
fn restore_gallery(gallery: &mut Gallery, config: &EdgeConfig) -> Result<usize> {
    let reader = vidar_store::Reader::open(&config.database)?;
    let since = UnixMs::now().minus(Duration::from_secs(config.gallery.max_age_s));
    let seen = reader.identities_in_range(
        vidar_store::TimeRange::new(since, UnixMs::MAX),
        config.gallery.max_identities,
    )?;
    let mut restored = 0;
    for s in seen {
        let Some(rec) = reader.identity_records(s.identity)?.pop() else {
            continue;
        };
        let r = rec.value;
        let mut ident = vidar_reid::Identity::single(
            r.identity,
            vidar_reid::Embedding::normalized(&r.embedding),
            &r.model,
            r.camera,
            r.first_seen_ms,
            vidar_reid::Origin::Local,
        );
        ident.last_seen_ms = s.last_ms;
        ident.sightings = s.sightings;
        if let Some(a) = ident.appearances.first_mut() {
            a.last_ms = ident.last_seen_ms;
        }
        match gallery.restore(ident) {
            Ok(()) => restored += 1,
            Err(e) => {
                tracing::warn!(identity = %s.identity, error = %e, "stored identity not restored")
            }
        }
    }
    Ok(restored)
}

/// The node's health checks: the database writer (a stopped writer stops
/// the node: nothing more could be recorded) and its streams (red while no
/// camera delivers frames, when it has cameras).
pub fn watch_health(
    health: &Health,
    store: &vidar_store::WriterHandle,
    board: &Arc<StatusBoard>,
    registry: &Arc<CameraRegistry>,
) {
    let store = store.clone();
    health.check("database writer", Policy::Stop, move || {
        match store.stopped() {
            Some(why) => Err(format!("stopped: {why}")),
            None => Ok(()),
        }
    });
    let (board, registry) = (Arc::clone(board), Arc::clone(registry));
    health.check("streams", Policy::Report, move || {
        if registry.snapshot().is_empty() || board.any_streaming() {
            Ok(())
        } else {
            Err("no camera is delivering frames".into())
        }
    });
}

/// Builds the node and runs it until `shutdown` is triggered (a signal, or
/// a subsystem that failed under a stopping policy); prints a summary line
/// every `status_every_s` seconds (0 = never). Fails when the stop was a
/// failure, so the process exits non-zero and its supervisor restarts it.
pub fn run(config: EdgeConfig, shutdown: Shutdown, status_every_s: u64) -> Result<()> {
    let Built {
        analysis,
        statuses,
        cameras: _,
        metrics: node_metrics,
        store,
        registry,
        cluster,
        jobs: jobs_hub,
    } = match build_until(&config, &shutdown) {
        Ok(b) => b,
        // Stopped (SIGTERM) before the node was up: a clean exit.
        Err(e) if shutdown.reason().is_some_and(|r| !r.failure) => {
            tracing::info!(error = %format!("{e:#}"), "stopped before the node started");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let detector_threads = analysis.detectors.threads();
    let board = Arc::clone(&statuses);
    let summary_metrics = Arc::clone(&node_metrics);
    let nm = Arc::clone(&node_metrics);
    let node_id = config.node_id.clone();
    let reg = Arc::clone(&registry);
    let render_store_handle = store.clone();
    let render_jobs = Arc::clone(&jobs_hub);
    let garbage = cluster
        .as_ref()
        .map(|c| (c.link.garbage(), c.link.refused_askers(), c.link.links()));
    let certificate = cluster.as_ref().and_then(|c| c.link.certificate_expires());
    let mut metrics_exposition = exposition(&node_id);
    metrics_exposition.collect(move |f| {
        render_node(f, &board, &reg.snapshot(), &nm)?;
        render_store(f, &render_store_handle)?;
        render_jobs.render(f)?;
        if let Some((g, askers, links)) = &garbage {
            f.counter(
                "vidar_link_probe_bytes",
                "Bytes of link probes this node sent (padding plus 64 a probe).",
                links.probe_bytes(),
            )?;
            let links = links.rates();
            f.gauges(
                "vidar_link_rate_mbit_s",
                "Rate to a peer node, as this node's link probes measure it (smoothed), Mbit/s.",
                links.iter().map(|l| ([("peer", l.to.as_str())], l.mbit_s)),
            )?;
            f.gauges(
                "vidar_link_upload_mbit_s",
                "This node's upload as its probes to a peer saw it: their bytes and all its jobs sent to any peer meanwhile (smoothed), Mbit/s.",
                links.iter().map(|l| ([("peer", l.to.as_str())], l.upload_mbit_s)),
            )?;
            f.gauges(
                "vidar_link_rtt_ms",
                "Round trip to a peer node, as this node's link probes measure it (smoothed), ms.",
                links.iter().map(|l| ([("peer", l.to.as_str())], l.rtt_ms)),
            )?;
            f.counter(
                "vidar_reid_requests_refused",
                "Re-ID requests refused: from a node the plan does not pair with this one, or naming itself differently from its key.",
                askers.load(std::sync::atomic::Ordering::Relaxed),
            )?;
            f.counter(
                "vidar_messages_refused",
                "Malformed, foreign or wrong-version messages refused on Vidar's keys.",
                g.refused(),
            )?;
        }
        vidar_runtime::metrics::certificate_expiry(f, certificate.map(|t| t.0 / 1000))
    });
    let health = Health::new(&shutdown);
    watch_health(&health, &store, &statuses, &registry);
    let server = server::serve(
        &config.metrics_addr,
        Arc::new(metrics_exposition),
        health.clone(),
        &shutdown,
    )
    .with_context(|| format!("binding metrics_addr {}", config.metrics_addr))?;
    tracing::info!(node = %config.node_id, metrics = %server.addr(), cameras = config.cameras.len(),
        detector = %detector_name(&config), detector_threads, "edge node running");
    let publisher = Arc::clone(&statuses);
    let recorder = analysis.recorder.share();
    // The analysis thread owns the cameras and models: it cannot be
    // restarted, so its end before a shutdown stops the node.
    let analysis_health = health.register("analysis", Policy::Stop);
    let stop = shutdown.clone();
    let worker = std::thread::Builder::new()
        .name("analysis".into())
        .spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                analysis.run_with_status(&stop, &publisher)
            }));
            if outcome.is_err() {
                analysis_health.failed("the analysis thread panicked");
            }
        })?;
    let ready = vidar_config::ready::Ready {
        http: Some(server.addr()),
        zenoh: cluster
            .as_ref()
            .map(|c| c.link.locators())
            .unwrap_or_default(),
        ..vidar_config::ready::Ready::this_process()
    };
    let running = match cluster {
        Some(c) => Some(cluster::start(
            c.link,
            cluster::Parts {
                config: config.clone(),
                capacity: c.capacity,
                inbox: c.inbox,
                control: c.control,
                tiles: c.tiles,
                registry: Arc::clone(&registry),
                board: Arc::clone(&statuses),
                metrics: Arc::clone(&node_metrics),
                recorder,
                store: store.clone(),
                metrics_addr: server.addr().to_string(),
                refresher: c.refresher,
                refresh: c.refresh,
                jobs: c.jobs,
                hub: Arc::clone(&jobs_hub),
            },
        )?),
        None => None,
    };
    match ready.announce() {
        Ok(Some(path)) => tracing::debug!(file = %path.display(), "ready file written"),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "writing the ready file (VIDAR_READY_FILE)"),
    }
    let mut summary = Summary::new(
        Arc::clone(&registry),
        Arc::clone(&statuses),
        summary_metrics,
    );
    if running.is_some() {
        summary.prefix = Some(config.node_id.to_string());
    }
    let every = Duration::from_secs(if status_every_s > 0 {
        status_every_s
    } else {
        3600
    });
    let mut last = std::time::Instant::now();
    while !shutdown.wait_timeout(every) {
        if status_every_s > 0 {
            println!("{}", summary.line(last.elapsed().as_secs_f64()));
            last = std::time::Instant::now();
        }
    }
    if let Some(r) = running {
        // Leave first, so the master reassigns this node's cameras at once.
        r.stop();
    }
    tracing::info!("shutting down: flushing records");
    worker
        .join()
        .map_err(|_| anyhow::anyhow!("analysis thread panicked"))?;
    drop(server);
    match shutdown.reason() {
        Some(r) if r.failure => {
            tracing::error!(reason = %r.why, "stopped after a failure");
            anyhow::bail!("stopped after a failure: {}", r.why)
        }
        _ => {
            tracing::info!("stopped cleanly");
            Ok(())
        }
    }
}

fn detector_name(config: &EdgeConfig) -> &str {
    &config.detector.model
}

#[cfg(test)]
#[path = "node_tests.rs"]
mod tests;
