//! The edge node's TOML configuration: every field documented, defaults that
//! work for a single box, and validation that reports every problem at once
//! with the file and key it concerns.
//!
//! ```toml
//! node_id = "edge-1"
//! database = "vidar-edge.db"
//! metrics_addr = "127.0.0.1:9100"
//! detection_interval = 1
//!
//! [[cameras]]
//! camera = "entrance"
//! source = "rtsp://user:pass@10.0.0.5/stream1"
//! ```

use anyhow::{Context, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use vidar_config::{Config, Problem, Problems};
use vidar_detectors::SsdConfig;
use vidar_link::LinkSettings;
use vidar_models::RuntimeConfig;
use vidar_pipeline::IngestConfig;
use vidar_protocol::NodeId;
use vidar_reid::{EmbedderConfig, GalleryConfig};
use vidar_tracker::TrackerConfig;

/// Everything `vidar-edge run` needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeConfig {
    /// The config format (default 1); a newer one than this build reads is
    /// refused ([`vidar_config::version`]).
    #[serde(default = "vidar_config::version::default_version")]
    pub config_version: u32,
    /// This node's id in the cluster (letters, digits, `_`, `.`, `-`). Required.
    pub node_id: NodeId,
    /// Local SQLite database path. Default `vidar-edge.db`.
    #[serde(default = "defaults::database")]
    pub database: PathBuf,
    /// Address of the Prometheus `/metrics` and `/healthz` endpoint. Default `127.0.0.1:9100`.
    #[serde(default = "defaults::metrics_addr")]
    pub metrics_addr: String,
    /// Run the detector on every Nth frame of a camera; the tracker predicts in
    /// between. 1 = every frame (default). Raise it when the box cannot keep up.
    #[serde(default = "defaults::one")]
    pub detection_interval: u32,
    /// Detector threads, each with its own ONNX Runtime session, so frames of
    /// several cameras are detected in parallel. 0 = automatic (default): one
    /// when `models.runtime.intra_threads` is 0 (ONNX Runtime then spreads a
    /// run over every core), else cores / intra_threads, at most one a camera.
    #[serde(default)]
    pub inference_workers: usize,
    /// Batches each detector thread takes at once. 2: a camera's next frames
    /// are prepared (resized) on the thread's own preparer while the model
    /// runs on the last, and the model starts on them the moment it is done;
    /// this pays where inference leaves a core free (or runs on a GPU), and
    /// only contends with the model where it already uses every core. 1: a
    /// thread gets its next batch when done. 0 = automatic (default): 2 with a
    /// GPU provider, or when the detector threads times
    /// `models.runtime.intra_threads` (> 0) leave a core; 1 otherwise.
    #[serde(default)]
    pub inference_depth: usize,
    /// Save a small JPEG of each new identity. Default true.
    #[serde(default = "defaults::yes")]
    pub snapshots: bool,
    /// Model files and ONNX Runtime settings.
    #[serde(default)]
    pub models: ModelsConfig,
    /// Person detector.
    #[serde(default)]
    pub detector: SsdConfig,
    /// Re-ID embedder.
    #[serde(default)]
    pub embedder: EmbedderConfig,
    /// Identity gallery.
    #[serde(default)]
    pub gallery: GalleryConfig,
    /// Tracker, one per camera.
    #[serde(default)]
    pub tracker: TrackerConfig,
    /// Motion-gated detection: the detector sees a camera's frame only when
    /// something in it moves (and at least every `full_every_ms`).
    #[serde(default)]
    pub motion: crate::cameras::motion::MotionConfig,
    /// Adaptive per-camera detection rates: when the detectors cannot keep
    /// up, quiet cameras are detected less often than busy ones, each at
    /// least `min_fps`, instead of frames being dropped.
    #[serde(default)]
    pub detection_rate: crate::cameras::rate::RateConfig,
    /// Cameras to ingest. At least one on a single node; none in a cluster
    /// (the master's plan assigns them).
    #[serde(default)]
    pub cameras: Vec<IngestConfig>,
    /// Joining a cluster (zenoh): present = this node takes its cameras from
    /// the master's plan, shares identities and re-ID work with the other
    /// nodes, and serves its records to the master.
    #[serde(default)]
    pub cluster: Option<LinkSettings>,
    /// How this node takes part in the cluster.
    #[serde(default)]
    pub sharing: SharingConfig,
    /// Training samples for the site's model adaptation (off by default).
    #[serde(default)]
    pub training: crate::training::TrainingConfig,
}

/// How a node takes part in a cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharingConfig {
    /// Serve re-ID for other nodes' crops when the plan says so. Default true.
    #[serde(default = "defaults::yes")]
    pub reid_service: bool,
    /// How long to wait for another node's re-ID answer before identifying
    /// locally, ms. Default 500.
    #[serde(default = "defaults::reid_timeout_ms")]
    pub reid_timeout_ms: u64,
    /// Probe the links to the plan's other nodes (for 0.5 % of each rate) and
    /// report rates and round trips to the master's planner. Default true.
    #[serde(default = "defaults::yes")]
    pub probe_links: bool,
    /// Status report period, ms. Default 1000.
    #[serde(default = "defaults::status_every_ms")]
    pub status_every_ms: u64,
    /// Live tile period per camera for the master's UI, ms (a JPEG with
    /// boxes and identities); 0 = no tiles. Default 1000.
    #[serde(default = "defaults::status_every_ms")]
    pub tile_every_ms: u64,
    /// Keep records the master has acknowledged this long before pruning
    /// them from the local database, seconds. Default 7 days.
    #[serde(default = "defaults::retention_s")]
    pub retention_s: u64,
    /// Detector throughput announced to the master, frames/s; 0 = measured at
    /// start-up (default).
    #[serde(default)]
    pub detect_fps: f64,
    /// Re-ID throughput announced to the master, crops/s; 0 = measured at
    /// start-up (default).
    #[serde(default)]
    pub reid_crops_per_s: f64,
    /// CPU to JPEG-encode one megapixel of a job's frame for another node,
    /// in detector frames, announced to the master; 0 = measured at start-up
    /// (default). Set it where the measure would mislead, for example a
    /// hardware encoder.
    #[serde(default)]
    pub jpeg_encode_cost: f64,
    /// The same for decoding one from another node.
    #[serde(default)]
    pub jpeg_decode_cost: f64,
    /// Ingest settings for the cameras the plan assigns (any `[[cameras]]`
    /// key except `camera` and `source`, e.g. `transport = "tcp"`).
    #[serde(default)]
    pub ingest: toml::Table,
    /// Credentials of the cameras the plan may assign to this node: plans
    /// never carry them (`[[sharing.credentials]]` with `camera`,
    /// `username`, `password`).
    #[serde(default)]
    pub credentials: Vec<CameraCredentials>,
    /// A TOML file of more `[[credentials]]` (same keys), read when a camera
    /// is started, so it can be kept 0600 apart from this config and
    /// changed without a restart.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
}

/// A camera's login, held only by the nodes that may ingest it.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraCredentials {
    /// The camera.
    pub camera: vidar_protocol::CameraId,
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for CameraCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CameraCredentials")
            .field("camera", &self.camera)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The file behind `sharing.credentials_file`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsFile {
    #[serde(default)]
    credentials: Vec<CameraCredentials>,
}

impl SharingConfig {
    /// The URL to ingest `camera` from, given the plan's `source` (which has
    /// no credentials): with this node's credentials for it when it has
    /// some (inline first, then `credentials_file`).
    pub fn source_for(&self, camera: &vidar_protocol::CameraId, source: &str) -> Result<String> {
        let mut found = self
            .credentials
            .iter()
            .find(|c| &c.camera == camera)
            .cloned();
        if found.is_none() {
            if let Some(path) = &self.credentials_file {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!("reading sharing.credentials_file {}", path.display())
                })?;
                let file: CredentialsFile = toml::from_str(&text)
                    .with_context(|| format!("{}: not a credentials file", path.display()))?;
                found = file.credentials.into_iter().find(|c| &c.camera == camera);
            }
        }
        Ok(match found {
            Some(c) => vidar_protocol::secret::with_credentials(source, &c.username, &c.password),
            None => source.to_string(),
        })
    }
}

impl Default for SharingConfig {
    fn default() -> Self {
        SharingConfig {
            reid_service: true,
            reid_timeout_ms: defaults::reid_timeout_ms(),
            probe_links: true,
            status_every_ms: defaults::status_every_ms(),
            tile_every_ms: defaults::status_every_ms(),
            retention_s: defaults::retention_s(),
            detect_fps: 0.0,
            reid_crops_per_s: 0.0,
            jpeg_encode_cost: 0.0,
            jpeg_decode_cost: 0.0,
            ingest: toml::Table::new(),
            credentials: Vec::new(),
            credentials_file: None,
        }
    }
}

/// Where models live and how sessions are built.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    /// Directory of model files; default `$VIDAR_MODEL_DIR`.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Execution providers and threads.
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// Where model refreshes from the master are kept (their files and the
    /// one applied); default `model-refresh` beside the database.
    #[serde(default)]
    pub refresh_dir: Option<PathBuf>,
}

mod defaults {
    use std::path::PathBuf;
    pub fn database() -> PathBuf {
        PathBuf::from("vidar-edge.db")
    }
    pub fn metrics_addr() -> String {
        "127.0.0.1:9100".into()
    }
    pub fn one() -> u32 {
        1
    }
    pub fn yes() -> bool {
        true
    }
    pub fn reid_timeout_ms() -> u64 {
        500
    }
    pub fn status_every_ms() -> u64 {
        1000
    }
    pub fn retention_s() -> u64 {
        7 * 24 * 3600
    }
}

impl EdgeConfig {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<EdgeConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates TOML `text`; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<EdgeConfig> {
        let config: EdgeConfig =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("config {origin}: {e}"))?;
        let problems = config.value_problems();
        if !problems.is_empty() {
            let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
            anyhow::bail!("config {origin} is invalid:\n  - {}", lines.join("\n  - "));
        }
        Ok(config)
    }

    /// Where model refreshes are kept: `models.refresh_dir`, or
    /// `model-refresh` beside the database.
    pub fn refresh_dir(&self) -> PathBuf {
        self.models.refresh_dir.clone().unwrap_or_else(|| {
            self.database
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or_else(|| std::path::Path::new("."))
                .join("model-refresh")
        })
    }

    /// Detector threads to start (see [`EdgeConfig::inference_workers`]).
    pub fn detector_threads(&self) -> usize {
        if self.inference_workers > 0 {
            return self.inference_workers;
        }
        let intra = self.models.runtime.intra_threads;
        if intra == 0 {
            return 1;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / intra).clamp(1, self.cameras.len().max(1))
    }

    /// Batches each detector thread takes at once (see [`EdgeConfig::inference_depth`]).
    pub fn detector_depth(&self) -> usize {
        if self.inference_depth > 0 {
            return self.inference_depth;
        }
        let runtime = &self.models.runtime;
        let gpu = runtime
            .providers
            .iter()
            .any(|p| !matches!(p, vidar_models::ProviderConfig::Cpu));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let spare =
            runtime.intra_threads > 0 && self.detector_threads() * runtime.intra_threads < cores;
        if gpu || spare {
            2
        } else {
            1
        }
    }

    /// Every problem, each naming its key: what the config contract's
    /// `problems()` reports for an edge config (the contract's impl sits
    /// with the node it builds, in `node`).
    pub fn value_problems(&self) -> Vec<Problem> {
        let mut p = Problems::new();
        p.extend(vidar_config::version::version_problem(self.config_version));
        match &self.cluster {
            None if self.cameras.is_empty() => {
                p.push("cameras","at least one [[cameras]] entry is required (or a [cluster] table, where the master assigns cameras)");
            }
            Some(_) if !self.cameras.is_empty() => {
                p.push("cameras","in a cluster the master assigns cameras; list them in the master's config, not here");
            }
            _ => {}
        }
        if let Some(cluster) = &self.cluster {
            p.nested("cluster", cluster.problems());
            if let Ok(Some(b)) = cluster.bundle() {
                if b.role != vidar_link::Role::Node || b.name != self.node_id.as_str() {
                    p.push("cluster.bundle", format!(
                        "{} is {:?}'s bundle, this node is {:?}: copy the one `vidar-master enroll {}` wrote",
                        b.dir.display(),
                        b.name,
                        self.node_id.as_str(),
                        self.node_id.as_str()
                    ));
                }
            }
            let s = &self.sharing;
            if !(10..=60_000).contains(&s.reid_timeout_ms) {
                p.push(
                    "sharing.reid_timeout_ms",
                    format!("{} must be in 10..=60000", s.reid_timeout_ms),
                );
            }
            if !(100..=60_000).contains(&s.status_every_ms) {
                p.push(
                    "sharing.status_every_ms",
                    format!("{} must be in 100..=60000", s.status_every_ms),
                );
            }
            for (key, v) in [
                ("sharing.detect_fps", s.detect_fps),
                ("sharing.reid_crops_per_s", s.reid_crops_per_s),
                ("sharing.jpeg_encode_cost", s.jpeg_encode_cost),
                ("sharing.jpeg_decode_cost", s.jpeg_decode_cost),
            ] {
                if !v.is_finite() || v < 0.0 {
                    p.push(key, format!("{v} must be 0 (measure) or a positive figure"));
                }
            }
            if let Ok(camera) = vidar_protocol::CameraId::new("template") {
                if let Err(e) =
                    crate::cameras::ingest_config(&s.ingest, &camera, "rtsp://127.0.0.1/template")
                {
                    p.push("sharing.ingest", format!("{e:#}"));
                }
            }
        }
        if !(1..=300).contains(&self.detection_interval) {
            p.push(
                "detection_interval",
                format!("{} must be in 1..=300", self.detection_interval),
            );
        }
        if self.inference_depth > 2 {
            p.push(
                "inference_depth",
                format!("{} must be 0 (automatic), 1 or 2", self.inference_depth),
            );
        }
        if self.inference_workers > 64 {
            p.push(
                "inference_workers",
                format!(
                    "{} must be in 0..=64 (0 = automatic)",
                    self.inference_workers
                ),
            );
        }
        if self.metrics_addr.parse::<std::net::SocketAddr>().is_err() {
            p.push(
                "metrics_addr",
                format!(
                    "{:?} is not an address like 127.0.0.1:9100",
                    self.metrics_addr
                ),
            );
        }
        let mut seen = std::collections::HashSet::new();
        for (i, c) in self.cameras.iter().enumerate() {
            if !seen.insert(c.camera.clone()) {
                p.push(
                    format!("cameras[{i}].camera"),
                    format!("{} is used twice", c.camera),
                );
            }
            p.nested(&format!("cameras[{i}]"), c.problems());
        }
        p.nested("detector", self.detector.problems());
        p.nested("embedder", self.embedder.problems());
        p.nested("gallery", self.gallery.problems());
        p.nested("tracker", self.tracker.problems());
        p.nested("models.runtime", self.models.runtime.problems());
        p.nested("training", self.training.problems());
        p.nested("motion", self.motion.problems());
        p.nested("detection_rate", self.detection_rate.problems());
        p.into_vec()
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
