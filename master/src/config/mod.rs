//! The master's configuration file (TOML): what it reads, its defaults, and the
//! validation that lists every problem at once, each naming its file and key.
//!
//! This module only parses and checks; it opens nothing. The running master is
//! built from a validated config by [`crate::Master::start`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use vidar_config::{Config, Problem, Problems};
use vidar_link::LinkSettings;
use vidar_protocol::{CameraId, NodeId};

pub mod web;

use crate::planner::SiteCamera;
pub use web::{AuthMode, FloorCameraConfig, FloorPlanConfig, Role, TokenConfig, UserConfig};

/// Largest accepted period (sync, plan), seconds: one day.
const MAX_PERIOD_S: f64 = 86_400.0;
/// Most records one sync request may ask for (the protocol's bound).
const MAX_SYNC_BATCH: u32 = vidar_protocol::messages::MAX_BATCH_RECORDS as u32;

/// The master's configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MasterConfig {
    /// The config format (default 1); a newer one than this build reads is
    /// refused (`vidar_config::version`).
    #[serde(default = "vidar_config::version::default_version")]
    pub config_version: u32,
    /// The master's node id: the writer id of the global database, so it must
    /// differ from every edge's id. Default `master`.
    #[serde(default = "default_master_id")]
    pub master_id: String,
    /// The global SQLite database (created if absent). Required.
    pub database: PathBuf,
    /// Where the HTTP API listens, `host:port`. Default `127.0.0.1:8080`.
    #[serde(default = "default_http_addr")]
    pub http_addr: String,
    /// How the master joins the zenoh network; its mode defaults to `router`.
    #[serde(default)]
    pub cluster: LinkSettings,
    /// Seconds between two record syncs from every live node. Default 10.
    #[serde(default = "default_sync_every_s")]
    pub sync_every_s: f64,
    /// Records asked for in one sync request, 1..=100000. Default 5000.
    #[serde(default = "default_sync_batch")]
    pub sync_batch: u32,
    /// Seconds between two periodic replans (events replan at once). Default 30.
    #[serde(default = "default_plan_every_s")]
    pub plan_every_s: f64,
    /// How cameras and re-ID are placed: `jstsh` (default; WMWO), or a
    /// baseline for testbed comparisons: `jstsh_greedy` (its greedy stages
    /// alone), `nmno` (random nodes, re-ID local), `wmno` (each camera to its
    /// fastest node, re-ID local), `nmwo` (random nodes, re-ID by JSTSH's
    /// second stage). The same stickiness rules apply to every one.
    #[serde(default = "default_plan_algorithm")]
    pub plan_algorithm: vidar_scheduler::jstsh::StreamAlgorithm,
    /// Seconds without a status after which a node counts as dead (a node whose
    /// liveliness token is gone is dead at once). Default 5.
    #[serde(default = "default_node_timeout_s")]
    pub node_timeout_s: f64,
    /// Cosine similarity, in (0, 1], at or above which two identities minted by
    /// different nodes are merged. Default 0.72 (the gallery's confident threshold).
    #[serde(default = "default_merge_threshold")]
    pub merge_threshold: f64,
    /// The site's cameras. Default none.
    #[serde(default)]
    pub cameras: Vec<CameraConfig>,
    /// `password` (users log in, tools send a bearer token) or `none` (no
    /// login, everyone is admin; loopback `http_addr` only). Default `password`,
    /// which needs at least one `[[users]]` or `[[tokens]]` entry.
    #[serde(default)]
    pub auth: AuthMode,
    /// The web UI's users. Default none.
    #[serde(default)]
    pub users: Vec<UserConfig>,
    /// Bearer tokens for tools (`Authorization: Bearer TOKEN`). Default none.
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// Seconds a login session lasts at most. Default 28800 (8 h).
    #[serde(default = "web::default_session_ttl_s")]
    pub session_ttl_s: f64,
    /// Seconds without a request after which a session ends. Default 3600.
    #[serde(default = "web::default_session_idle_s")]
    pub session_idle_s: f64,
    /// Serve /metrics without authentication (for a Prometheus on a trusted
    /// network). Default false.
    #[serde(default)]
    pub metrics_public: bool,
    /// Host names the UI and API answer to (the `Host` header, port
    /// ignored), e.g. `["vidar.example.com"]`: other names get 421, which
    /// stops DNS-rebinding pages from reaching the API through a browser.
    /// Empty (the default): `localhost`, `127.0.0.1` and `::1` when
    /// `http_addr` is on loopback, any name otherwise. `/healthz` answers
    /// every name (probes).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Run SQLite's quick integrity check on the global database at start
    /// (linear in its size: about a second per GB) and refuse to start on a
    /// damaged file. Default true.
    #[serde(default = "yes")]
    pub check_database_at_start: bool,
    /// The model registry (`vidar-master model ...`): versions of the
    /// nodes' re-ID weights and their deployment. Default `models` beside
    /// the database.
    #[serde(default)]
    pub models_dir: Option<PathBuf>,
    /// Analytics jobs (`vidar-master jobs ...`, `/api/jobs`): one job file
    /// per job. Default `jobs` beside the database.
    #[serde(default)]
    pub jobs_dir: Option<PathBuf>,
    /// What the master keeps across its restarts: the plan in force and the
    /// figures its nodes measured (`plan.json`), so a restarted master keeps
    /// the cameras where they are. Default `state` beside the database.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// How job stages are placed: `otfa` (default), or `otfs`, or a baseline
    /// for testbed comparisons: `tp`, `lr`, `br` (ALGORITHMS.md section 2).
    #[serde(default = "default_jobs_policy")]
    pub jobs_policy: vidar_scheduler::ents::Policy,
    /// PEM certificate chain: with `tls_key`, the HTTP API and UI are served
    /// over HTTPS only. Default none (plain HTTP).
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `tls_cert`. Default none.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// The floor plan on which the UI draws trajectories. Default none.
    #[serde(default)]
    pub floor_plan: Option<FloorPlanConfig>,
    /// Split training rounds of the re-ID model (EdgeSplit), run when an
    /// operator asks (`POST /api/training`).
    #[serde(default)]
    pub training: crate::training::TrainingConfig,
}

/// One camera of the site (`[[cameras]]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// The camera id (`[A-Za-z0-9_.-]`, 1..=64 characters). Required.
    pub camera: String,
    /// Its source URL (`rtsp://...`, `file://...`). Required.
    pub source: String,
    /// Frames per second it sends, > 0. Default 10.
    #[serde(default = "default_fps")]
    pub fps: f64,
    /// Expected people in view, >= 0 (sizes its re-ID load). Default 2.
    #[serde(default = "default_persons")]
    pub persons: f64,
    /// Frame width, pixels. Default 1280.
    #[serde(default = "default_width")]
    pub width: u32,
    /// Frame height, pixels. Default 720.
    #[serde(default = "default_height")]
    pub height: u32,
    /// The node that must ingest it (e.g. the only one on the camera's LAN). Default none.
    #[serde(default)]
    pub node: Option<String>,
}

fn default_plan_algorithm() -> vidar_scheduler::jstsh::StreamAlgorithm {
    vidar_scheduler::jstsh::StreamAlgorithm::Jstsh
}
fn default_master_id() -> String {
    "master".into()
}
fn default_http_addr() -> String {
    "127.0.0.1:8080".into()
}
fn default_sync_every_s() -> f64 {
    10.0
}
fn default_sync_batch() -> u32 {
    5000
}
fn default_plan_every_s() -> f64 {
    30.0
}
fn default_node_timeout_s() -> f64 {
    5.0
}
fn default_merge_threshold() -> f64 {
    // The gallery's confident threshold for the default re-ID model (tracklets,
    // 0.1 % false matches on CUHK01): identities minted by two nodes are one
    // person only on that much evidence.
    0.72
}
fn default_fps() -> f64 {
    10.0
}
fn default_persons() -> f64 {
    2.0
}
fn default_width() -> u32 {
    1280
}
fn default_height() -> u32 {
    720
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this config (syntax, unknown or mistyped key).
    #[error("{}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (it names the key and line).
        message: String,
    },
    /// The values are unusable; every problem is listed.
    #[error("{}: invalid configuration:\n  {}", path.display(), problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem, each naming its key.
        problems: Vec<Problem>,
    },
}

fn yes() -> bool {
    true
}

fn default_jobs_policy() -> vidar_scheduler::ents::Policy {
    vidar_scheduler::ents::Policy::Otfa
}

impl MasterConfig {
    /// The jobs' folder: `jobs_dir`, or `jobs` beside the database.
    pub fn jobs_dir(&self) -> PathBuf {
        self.jobs_dir
            .clone()
            .unwrap_or_else(|| self.beside_database("jobs"))
    }

    /// The model registry's folder: `models_dir`, or `models` beside the database.
    pub fn models_dir(&self) -> PathBuf {
        self.models_dir
            .clone()
            .unwrap_or_else(|| self.beside_database("models"))
    }

    /// What the master keeps across restarts: `state_dir`, or `state`
    /// beside the database.
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| self.beside_database("state"))
    }

    /// `name` in the database's folder.
    fn beside_database(&self, name: &str) -> PathBuf {
        self.database
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| std::path::Path::new("."))
            .join(name)
    }

    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<MasterConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        MasterConfig::parse(&text, path)
    }

    /// Parses and validates `text`; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<MasterConfig, ConfigError> {
        let config: MasterConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let problems = config.value_problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                problems,
            })
        }
    }

    /// Every problem of the values, each naming its key: what the config
    /// contract's `problems()` reports for a master config (the contract's
    /// impl sits with the [`crate::Master`] it builds).
    pub fn value_problems(&self) -> Vec<Problem> {
        let mut p = Problems::new();
        p.extend(vidar_config::version::version_problem(self.config_version));
        if let Err(e) = NodeId::new(&self.master_id) {
            p.push("master_id", format!("{:?}: {e}", self.master_id));
        }
        if self.database.as_os_str().is_empty() {
            p.push("database", "empty path");
        } else if self.database.is_dir() {
            p.push(
                "database",
                format!(
                    "{} is a directory, not a database file",
                    self.database.display()
                ),
            );
        }
        if self.http_addr.parse::<SocketAddr>().is_err() {
            p.push(
                "http_addr",
                format!("{:?} is not an address like 127.0.0.1:8080", self.http_addr),
            );
        }
        p.nested("cluster", self.cluster.problems());
        if let Ok(Some(b)) = self.cluster.bundle() {
            if b.role != vidar_link::Role::Master {
                p.push("cluster.bundle", format!(
                    "{} is node {:?}'s bundle; the master uses the master/ bundle that `vidar-master ca init` wrote",
                    b.dir.display(),
                    b.name
                ));
            }
        }
        for (key, v, min) in [
            ("sync_every_s", self.sync_every_s, 0.1),
            ("plan_every_s", self.plan_every_s, 1.0),
            ("node_timeout_s", self.node_timeout_s, 0.5),
        ] {
            if !(v.is_finite() && (min..=MAX_PERIOD_S).contains(&v)) {
                p.push(key, format!("{v} s, {min}..={MAX_PERIOD_S} allowed"));
            }
        }
        if self.plan_algorithm == vidar_scheduler::jstsh::StreamAlgorithm::Exact {
            p.push(
                "plan_algorithm",
                "exact is exponential in the cameras (the simulator's check, not a planner); \
                 jstsh, jstsh_greedy, nmno, wmno or nmwo",
            );
        }
        if !(1..=MAX_SYNC_BATCH).contains(&self.sync_batch) {
            p.push(
                "sync_batch",
                format!("{}, 1..={MAX_SYNC_BATCH} allowed", self.sync_batch),
            );
        }
        if !(self.merge_threshold.is_finite()
            && self.merge_threshold > 0.0
            && self.merge_threshold <= 1.0)
        {
            p.push(
                "merge_threshold",
                format!(
                    "{}, a cosine similarity in (0, 1] expected",
                    self.merge_threshold
                ),
            );
        }
        let mut seen = std::collections::HashSet::new();
        for (i, c) in self.cameras.iter().enumerate() {
            let key = |field: &str| format!("cameras[{i}].{field}");
            match CameraId::new(&c.camera) {
                Ok(id) => {
                    if !seen.insert(id) {
                        p.push(
                            key("camera"),
                            format!("{:?} is listed more than once", c.camera),
                        );
                    }
                }
                Err(e) => p.push(key("camera"), format!("{:?}: {e}", c.camera)),
            }
            if c.source.trim().is_empty() {
                p.push(key("source"), "empty");
            } else if !c.source.contains("://") {
                p.push(
                    key("source"),
                    format!("{:?} is not a URL like rtsp://host/path", c.source),
                );
            } else if c.source.len() > vidar_protocol::messages::MAX_SOURCE_LEN {
                p.push(
                    key("source"),
                    format!(
                        "{} bytes, at most {} allowed",
                        c.source.len(),
                        vidar_protocol::messages::MAX_SOURCE_LEN
                    ),
                );
            }
            if !(c.fps.is_finite() && c.fps > 0.0 && c.fps <= 1000.0) {
                p.push(key("fps"), format!("{}, 0 < fps <= 1000 expected", c.fps));
            }
            if !(c.persons.is_finite() && (0.0..=10_000.0).contains(&c.persons)) {
                p.push(key("persons"), format!("{}, 0..=10000 expected", c.persons));
            }
            for (field, v) in [("width", c.width), ("height", c.height)] {
                if !(1..=16_384).contains(&v) {
                    p.push(key(field), format!("{v} pixels, 1..=16384 expected"));
                }
            }
            if let Some(n) = &c.node {
                if let Err(e) = NodeId::new(n) {
                    p.push(key("node"), format!("{n:?}: {e}"));
                }
            }
        }
        p.extend(web::problems(self));
        p.nested("training", self.training.problems());
        p.into_vec()
    }

    /// The master's node id (valid after [`value_problems`](Self::value_problems) is empty).
    pub fn master_node(&self) -> Result<NodeId, String> {
        NodeId::new(&self.master_id).map_err(|e| format!("master_id: {e}"))
    }

    /// The cameras in the planner's form (valid after [`value_problems`](Self::value_problems) is empty).
    pub fn site_cameras(&self) -> Result<Vec<SiteCamera>, String> {
        self.cameras
            .iter()
            .enumerate()
            .map(|(i, c)| {
                Ok(SiteCamera {
                    camera: CameraId::new(&c.camera)
                        .map_err(|e| format!("cameras[{i}].camera: {e}"))?,
                    source: c.source.clone(),
                    fps: c.fps,
                    persons: c.persons,
                    detect_share: 1.0,
                    ingest_work: 0.0,
                    width: c.width,
                    height: c.height,
                    pinned: c
                        .node
                        .as_deref()
                        .map(NodeId::new)
                        .transpose()
                        .map_err(|e| format!("cameras[{i}].node: {e}"))?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
