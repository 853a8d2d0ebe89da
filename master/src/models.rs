//! The site's model registry and its deployment to the nodes.
//!
//! The registry is a folder (`models_dir`, default `models` beside the
//! global database): each version's ONNX file as `<sha256>.onnx` (0600) and
//! `registry.json`, the versions (model, parent, sha256, size, metrics) and
//! the deployment history. `vidar-master model add|list|promote|rollback`
//! edit it; every write is a whole new file renamed over the old one, so a
//! running master never reads half of one.
//!
//! The running master reads `registry.json` every [`EVERY`]; when the
//! deployment changes it publishes a [`ModelRefresh`] on `models` (signed
//! under a bundle, like plans), repeats it every [`REPUBLISH`] for nodes
//! that missed it, answers nodes that ask for it at start, and serves the
//! deployed files in chunks on `model-files`. A node takes the refresh only
//! if the master's key signed it and the file it fetches has the signed
//! size and sha256 (see the edge's `refresh` module).
//!
//! A registry that cannot be read keeps the deployment in force (a typo
//! must not roll every node back).

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use vidar_protocol::messages::{
    is_sha256_hex, ModelChunk, ModelChunkRequest, ModelRefresh, MAX_MODEL_BYTES, MAX_MODEL_NAME,
};
use vidar_protocol::{Keys, UnixMs};
use vidar_runtime::Shutdown;

/// How often a running master reads the registry.
pub const EVERY: Duration = Duration::from_secs(2);
/// How often the deployment in force is published again.
pub const REPUBLISH: Duration = Duration::from_secs(30);
/// The registry's file name in the models folder.
pub const REGISTRY: &str = "registry.json";
/// The registry format this build writes and reads.
const FORMAT: u32 = 1;

/// One version of a model's weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Version {
    /// Its name, unique in the registry (`site-2026-12-04`).
    pub version: String,
    /// The manifest model it is weights for.
    pub model: String,
    /// The version it was trained from, if any.
    pub parent: Option<String>,
    /// Lower-case hex sha256 of the file.
    pub sha256: String,
    /// File size, bytes.
    pub size: u64,
    /// When it was added, ms since the epoch.
    pub added_ms: UnixMs,
    /// Measurements that came with it (validation rank-1, ...), as given.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

/// One deployment: which version every node was told to run, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    /// The refresh serial (increases with every deployment).
    pub serial: u64,
    /// The version deployed.
    pub version: String,
    /// When.
    pub issued_ms: UnixMs,
    /// How it came about.
    pub how: How,
}

/// How a deployment came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum How {
    /// `vidar-master model promote`.
    Promote,
    /// `vidar-master model rollback`.
    Rollback,
}

impl std::fmt::Display for How {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            How::Promote => "promote",
            How::Rollback => "rollback",
        })
    }
}

/// The registry file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    /// Format version ([`FORMAT`]).
    pub format: u32,
    /// Every version added, oldest first.
    pub versions: Vec<Version>,
    /// Every deployment, oldest first; the last is in force.
    pub deployments: Vec<Deployment>,
}

/// What went wrong with the registry, naming the file or the version.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Reading or writing a file.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The registry file is not valid.
    #[error("{}: {why}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// An operator's request that cannot be done.
    #[error("{0}")]
    Refused(String),
}

impl Registry {
    /// Loads the registry in `dir`, lets `f` change it, and saves it,
    /// holding an exclusive lock (`flock` on `dir/.registry.lock`) from
    /// the load to the save, so that two writers (an operator's `vidar-master
    /// model ...` and the master adding a training candidate) never lose
    /// each other's change. Nothing is saved when `f` fails.
    pub fn edit<T>(
        dir: &Path,
        f: impl FnOnce(&mut Registry) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        let lock_path = dir.join(".registry.lock");
        let io = |what, source| RegistryError::Io {
            what,
            path: lock_path.clone(),
            source,
        };
        vidar_store::create_private_dir(dir).map_err(|e| io("creating the folder of", e))?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io("opening", e))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io("locking", e.into()))?;
        let mut r = Registry::load(dir)?;
        let out = f(&mut r)?;
        r.save(dir)?;
        Ok(out)
    }

    /// The registry in `dir` (an empty one if it has no registry yet).
    pub fn load(dir: &Path) -> Result<Registry, RegistryError> {
        let path = dir.join(REGISTRY);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Registry {
                    format: FORMAT,
                    ..Registry::default()
                })
            }
            Err(source) => {
                return Err(RegistryError::Io {
                    what: "reading",
                    path,
                    source,
                })
            }
        };
        let r: Registry = serde_json::from_slice(&bytes).map_err(|e| RegistryError::Invalid {
            path: path.clone(),
            why: e.to_string(),
        })?;
        r.check()
            .map_err(|why| RegistryError::Invalid { path, why })?;
        Ok(r)
    }

    /// Every inconsistency, as one message.
    fn check(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!(
                "format {}, this build reads format {FORMAT}",
                self.format
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for v in &self.versions {
            check_name("version", &v.version)?;
            check_name("model", &v.model)?;
            if !seen.insert(v.version.as_str()) {
                return Err(format!("version {:?} is listed twice", v.version));
            }
            if !is_sha256_hex(&v.sha256) {
                return Err(format!(
                    "version {:?}: sha256 is not 64 lower-case hex digits",
                    v.version
                ));
            }
            if v.size == 0 || v.size > MAX_MODEL_BYTES {
                return Err(format!(
                    "version {:?}: size {} out of 1..={MAX_MODEL_BYTES}",
                    v.version, v.size
                ));
            }
        }
        let mut serial = 0;
        for d in &self.deployments {
            if d.serial <= serial {
                return Err(format!("deployment serial {} does not increase", d.serial));
            }
            serial = d.serial;
            if self.version(&d.version).is_none() {
                return Err(format!(
                    "deployment {} names unknown version {:?}",
                    d.serial, d.version
                ));
            }
        }
        Ok(())
    }

    /// The version called `name`.
    pub fn version(&self, name: &str) -> Option<&Version> {
        self.versions.iter().find(|v| v.version == name)
    }

    /// The deployment in force and its version.
    pub fn deployed(&self) -> Option<(&Deployment, &Version)> {
        let d = self.deployments.last()?;
        Some((d, self.version(&d.version)?))
    }

    /// The refresh every node must run now.
    pub fn refresh(&self) -> Option<ModelRefresh> {
        let (d, v) = self.deployed()?;
        Some(ModelRefresh {
            serial: d.serial,
            model: v.model.clone(),
            version: v.version.clone(),
            parent: v.parent.clone(),
            sha256: v.sha256.clone(),
            size: v.size,
            issued_ms: d.issued_ms,
        })
    }

    /// Writes the registry into `dir`: a new file, synced, renamed over.
    pub fn save(&self, dir: &Path) -> Result<(), RegistryError> {
        self.check().map_err(RegistryError::Refused)?;
        let json =
            serde_json::to_vec_pretty(self).map_err(|e| RegistryError::Refused(e.to_string()))?;
        write_private(dir, &dir.join(REGISTRY), &json)
    }

    /// Adds `file` as `version` of `model` (copied into `dir`).
    pub fn add(
        &mut self,
        dir: &Path,
        file: &Path,
        model: &str,
        version: &str,
        parent: Option<&str>,
        metrics: BTreeMap<String, f64>,
    ) -> Result<&Version, RegistryError> {
        check_name("version", version).map_err(RegistryError::Refused)?;
        check_name("model", model).map_err(RegistryError::Refused)?;
        if self.version(version).is_some() {
            return Err(RegistryError::Refused(format!(
                "version {version:?} exists already: versions are never replaced, add it under a new name"
            )));
        }
        if let Some(p) = parent {
            match self.version(p) {
                Some(pv) if pv.model != model => {
                    return Err(RegistryError::Refused(format!(
                        "parent {p:?} is weights for {}, not {model}",
                        pv.model
                    )))
                }
                // A parent outside the registry (the shipped weights) is a name only.
                _ => check_name("parent", p).map_err(RegistryError::Refused)?,
            }
        }
        if let Some((k, v)) = metrics.iter().find(|(_, v)| !v.is_finite()) {
            return Err(RegistryError::Refused(format!(
                "metric {k}: {v} is not finite"
            )));
        }
        let io = |what, source| RegistryError::Io {
            what,
            path: file.to_owned(),
            source,
        };
        let bytes = std::fs::read(file).map_err(|e| io("reading", e))?;
        if bytes.is_empty() || bytes.len() as u64 > MAX_MODEL_BYTES {
            return Err(RegistryError::Refused(format!(
                "{}: {} bytes, 1..={MAX_MODEL_BYTES} accepted",
                file.display(),
                bytes.len()
            )));
        }
        let sha256 = sha256_hex(&bytes);
        write_private(dir, &dir.join(format!("{sha256}.onnx")), &bytes)?;
        self.versions.push(Version {
            version: version.to_owned(),
            model: model.to_owned(),
            parent: parent.map(str::to_owned),
            sha256,
            size: bytes.len() as u64,
            added_ms: UnixMs::now(),
            metrics,
        });
        Ok(&self.versions[self.versions.len() - 1])
    }

    /// Deploys `version` to every node. With a `gate` (a metric name, e.g.
    /// `rank1`, measured on the operator's held-out set), only if the
    /// version has that metric and beats the deployed version's (when the
    /// deployed one has it); the refusal says why.
    pub fn promote(
        &mut self,
        version: &str,
        gate: Option<&str>,
    ) -> Result<&Deployment, RegistryError> {
        let Some(candidate) = self.version(version) else {
            return Err(RegistryError::Refused(format!(
                "no version {version:?} in the registry (`vidar-master model list`)"
            )));
        };
        if let Some(metric) = gate {
            let Some(&mine) = candidate.metrics.get(metric) else {
                return Err(RegistryError::Refused(format!(
                    "version {version:?} has no {metric} to judge it by: measure it on your held-out set (`vidar-edge eval reid --data DIR --weights FILE`), add it under a new version with --metric {metric}=VALUE, or promote with --force"
                )));
            };
            if let Some((_, deployed)) = self.deployed() {
                if let Some(&theirs) = deployed.metrics.get(metric) {
                    if mine <= theirs {
                        return Err(RegistryError::Refused(format!(
                            "version {version:?} ({metric} {mine}) does not beat the deployed {:?} ({metric} {theirs}); not deployed (--force deploys it anyway)",
                            deployed.version
                        )));
                    }
                }
            }
        }
        self.deploy(version, How::Promote)
    }

    /// Deploys again the version in force before the current one.
    pub fn rollback(&mut self) -> Result<&Deployment, RegistryError> {
        let current = self
            .deployments
            .last()
            .map(|d| d.version.clone())
            .ok_or_else(|| RegistryError::Refused("nothing is deployed".into()))?;
        // Promotions stack up and each rollback takes the top off, so a
        // rollback after a rollback goes one step further back, not forth.
        let mut stack: Vec<&str> = Vec::new();
        for d in &self.deployments {
            if d.how == How::Rollback {
                stack.pop();
            } else if stack.last() != Some(&d.version.as_str()) {
                stack.push(&d.version);
            }
        }
        let previous = match stack.len() {
            n if n >= 2 => stack[n - 2].to_owned(),
            _ => {
                return Err(RegistryError::Refused(format!(
                    "{current:?} is the only version deployed so far: nothing to roll back to (add the shipped file as a version and promote it)"
                )))
            }
        };
        self.deploy(&previous, How::Rollback)
    }

    fn deploy(&mut self, version: &str, how: How) -> Result<&Deployment, RegistryError> {
        let now = UnixMs::now();
        // Serials are milliseconds when they can be, so a registry rebuilt
        // from scratch still outnumbers what nodes applied before.
        let last = self.deployments.last().map_or(0, |d| d.serial);
        let serial = (now.0.max(0) as u64).max(last + 1);
        self.deployments.push(Deployment {
            serial,
            version: version.to_owned(),
            issued_ms: now,
            how,
        });
        Ok(&self.deployments[self.deployments.len() - 1])
    }
}

fn check_name(field: &str, s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > MAX_MODEL_NAME {
        return Err(format!("{field} {s:?}: 1..={MAX_MODEL_NAME} bytes"));
    }
    if s.chars().any(|c| c.is_control()) {
        return Err(format!("{field} {s:?}: control characters"));
    }
    Ok(())
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// [`vidar_runtime::files::write_private`], naming the file on failure.
fn write_private(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    vidar_runtime::files::write_private(dir, path, bytes).map_err(|source| RegistryError::Io {
        what: "writing",
        path: path.to_owned(),
        source,
    })
}

/// The deployment in force, shared by the watch thread and the queryables.
#[derive(Debug, Clone, Default)]
struct InForce(Arc<Mutex<Option<ModelRefresh>>>);

impl InForce {
    fn get(&self) -> Option<ModelRefresh> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    fn set(&self, r: Option<ModelRefresh>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = r;
    }
}

/// Publishes the registry's deployment and serves its files.
#[derive(Debug)]
pub struct ModelService {
    /// The master's router.
    pub link: vidar_link::Link,
    /// The site's keys.
    pub keys: Keys,
    /// The registry folder.
    pub dir: PathBuf,
    /// Stops the thread.
    pub stop: Shutdown,
}

impl ModelService {
    /// Declares the queryables and starts the watch thread.
    pub fn spawn(
        self,
    ) -> Result<(JoinHandle<()>, Vec<vidar_link::Service>), vidar_link::LinkError> {
        let in_force = InForce::default();
        let mut services = Vec::new();
        {
            let f = in_force.clone();
            services.push(self.link.serve_get::<ModelRefresh>(
                &self.keys.models(),
                move |answer| {
                    if let Some(r) = f.get() {
                        answer.reply(Ok(r));
                    }
                },
            )?);
        }
        {
            let f = in_force.clone();
            let dir = self.dir.clone();
            services.push(self.link.serve(
                &self.keys.model_files(),
                move |req: ModelChunkRequest, answer: vidar_link::Responder<ModelChunk>| {
                    answer.reply(chunk(&dir, f.get().as_ref(), &req));
                },
            )?);
        }
        let publisher = self.link.publisher::<ModelRefresh>(&self.keys.models())?;
        let thread = std::thread::Builder::new()
            .name("vidar-models".into())
            .spawn(move || self.run(&in_force, &publisher))
            .map_err(|e| vidar_link::LinkError::Declare {
                what: "the model thread".into(),
                reason: e.to_string(),
            })?;
        Ok((thread, services))
    }

    fn run(self, in_force: &InForce, publisher: &vidar_link::Publisher<ModelRefresh>) {
        let mut last_error: Option<String> = None;
        let mut published: Option<Instant> = None;
        loop {
            match Registry::load(&self.dir) {
                Ok(r) => {
                    last_error = None;
                    let now = r.refresh();
                    if now != in_force.get() {
                        if let Some(r) = &now {
                            tracing::info!(serial = r.serial, model = %r.model, version = %r.version, sha256 = %r.sha256, "deploying a model refresh");
                        }
                        in_force.set(now);
                        published = None;
                    }
                }
                Err(e) => {
                    let e = e.to_string();
                    if last_error.as_ref() != Some(&e) {
                        tracing::warn!(error = %e, "reading the model registry; the deployment in force is kept");
                    }
                    last_error = Some(e);
                }
            }
            if let Some(r) = in_force.get() {
                if published.is_none_or(|at| at.elapsed() >= REPUBLISH) {
                    if let Err(e) = publisher.put(&r) {
                        tracing::warn!(error = %e, "publishing the model refresh");
                    }
                    published = Some(Instant::now());
                }
            }
            if self.stop.wait_timeout(EVERY) {
                break;
            }
        }
    }
}

/// The part of a deployed file `req` asks for. Only the version in force
/// is served (a node has no business with the others).
fn chunk(
    dir: &Path,
    in_force: Option<&ModelRefresh>,
    req: &ModelChunkRequest,
) -> Result<ModelChunk, String> {
    let Some(r) = in_force.filter(|r| r.sha256 == req.sha256) else {
        return Err(format!("{} is not the model deployed", req.sha256));
    };
    if req.offset >= r.size {
        return Err(format!(
            "offset {} is past the file's {} bytes",
            req.offset, r.size
        ));
    }
    // The name is 64 hex digits (checked by the request's validation).
    let path = dir.join(format!("{}.onnx", r.sha256));
    let mut f = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", r.sha256))?;
    f.seek(SeekFrom::Start(req.offset))
        .map_err(|e| format!("{}: {e}", r.sha256))?;
    let want = (u64::from(req.len)).min(r.size - req.offset) as usize;
    let mut bytes = vec![0u8; want];
    f.read_exact(&mut bytes)
        .map_err(|e| format!("{}: {e}", r.sha256))?;
    Ok(ModelChunk {
        sha256: r.sha256.clone(),
        offset: req.offset,
        total: r.size,
        bytes,
    })
}

#[cfg(test)]
#[path = "models_tests.rs"]
mod tests;
