//! Analytics jobs: the job book (a folder of job files, `jobs_dir`), the
//! checks a job passes before it is taken, and their placement by OTFA
//! ([`place`]).
//!
//! The book is a folder with one `<id>.toml` per job, written whole and
//! renamed into place (never half a file). `vidar-master jobs submit|list|cancel`
//! and `POST/GET/DELETE /api/jobs` both edit it; the plan service looks at it
//! every [`super::plans::REPUBLISH`] and replans when it changed, so a job is
//! placed within about 2 s of its submission, by a running master or by one
//! started later. A job is checked in full before its file is written: its
//! shape and types ([`JobSpec::check`]), and every `onnx` stage's model
//! against the model manifest the nodes load from ([`check_models`]).

pub mod cli;
pub mod network;
pub mod place;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Deserialize;
use vidar_protocol::messages::{JobSpec, StageKind};
use vidar_protocol::JobId;

/// Most jobs in the book.
pub const MAX_JOBS: usize = vidar_protocol::messages::MAX_PLAN_JOBS;
/// Largest job file, bytes.
pub const MAX_JOB_FILE: usize = 64 * 1024;

/// The model manifest the nodes load from (`models/manifest.toml`), read for
/// the names and input shapes of its models only.
const MANIFEST: &str = include_str!("../../../models/manifest.toml");

#[derive(Deserialize)]
struct Manifest {
    model: Vec<ManifestModel>,
}

#[derive(Deserialize)]
struct ManifestModel {
    name: String,
    input: ManifestInput,
    #[serde(default)]
    outputs: Vec<ManifestOutput>,
}

#[derive(Deserialize)]
struct ManifestInput {
    layout: String,
    shape: Vec<i64>,
}

#[derive(Deserialize)]
struct ManifestOutput {
    shape: Vec<i64>,
}

/// What the placement needs to know of a manifest model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelShape {
    /// Values in its first output per input (its fixed dimensions' product).
    pub output_values: usize,
}

/// The manifest's image models (NCHW with 3 channels): those an `onnx` stage may run.
pub fn image_models() -> Result<BTreeMap<String, ModelShape>, String> {
    let m: Manifest =
        toml::from_str(MANIFEST).map_err(|e| format!("the built-in model manifest: {e}"))?;
    Ok(m.model
        .into_iter()
        .filter(|m| m.input.layout == "nchw" && m.input.shape.get(1) == Some(&3))
        .map(|m| {
            let output_values = m
                .outputs
                .first()
                .map(|o| o.shape.iter().skip(1).filter(|&&d| d > 0).product::<i64>())
                .unwrap_or(1)
                .max(1) as usize;
            (m.name, ModelShape { output_values })
        })
        .collect())
}

/// Checks that every `onnx` stage of `job` names an image model of the manifest.
pub fn check_models(job: &JobSpec) -> Result<(), String> {
    let models = image_models()?;
    for s in &job.stages {
        if s.kind != StageKind::Onnx {
            continue;
        }
        let Some(m) = &s.model else { continue };
        if !models.contains_key(m) {
            let known: Vec<&str> = models.keys().map(String::as_str).collect();
            return Err(format!(
                "job {}, stage {} (onnx): model {m:?} is not an image model of the manifest (known: {})",
                job.id,
                s.name,
                known.join(", ")
            ));
        }
    }
    Ok(())
}

/// Parses and checks a job file's text; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<JobSpec, String> {
    if text.len() > MAX_JOB_FILE {
        return Err(format!(
            "{origin}: {} bytes, at most {MAX_JOB_FILE} allowed",
            text.len()
        ));
    }
    let job: JobSpec = toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
    job.check().map_err(|e| format!("{origin}: {e}"))?;
    check_models(&job).map_err(|e| format!("{origin}: {e}"))?;
    Ok(job)
}

/// The job book in `dir`.
#[derive(Debug, Clone)]
pub struct Book {
    dir: PathBuf,
}

/// What the book holds now: its jobs, and the files it could not take.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Contents {
    /// The jobs, by id.
    pub jobs: BTreeMap<JobId, JobSpec>,
    /// `(file, why)` of each file refused (edited by hand into something wrong).
    pub refused: Vec<(String, String)>,
}

impl Book {
    /// The book in `dir` (created on the first submission).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Book { dir: dir.into() }
    }

    /// Its folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file(&self, id: &JobId) -> PathBuf {
        self.dir.join(format!("{id}.toml"))
    }

    /// A fingerprint of the folder (names, sizes, times), to see whether it changed.
    pub fn fingerprint(&self) -> Vec<(String, u64, Option<SystemTime>)> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<_> = rd
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "toml"))
            .map(|e| {
                let md = e.metadata().ok();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    md.as_ref().map_or(0, |m| m.len()),
                    md.and_then(|m| m.modified().ok()),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// Reads every job file. A file that does not parse or check, or whose
    /// name is not its job's id, is refused (listed with why); the others stand.
    pub fn load(&self) -> Contents {
        let mut c = Contents::default();
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return c;
        };
        let mut paths: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        for p in paths {
            let name = p.display().to_string();
            let text = match std::fs::read_to_string(&p) {
                Ok(t) => t,
                Err(e) => {
                    c.refused.push((name, format!("reading it: {e}")));
                    continue;
                }
            };
            match parse(&text, &name) {
                Ok(job) if p.file_stem().is_some_and(|s| s == job.id.as_str()) => {
                    if c.jobs.len() >= MAX_JOBS {
                        c.refused
                            .push((name, format!("the book holds {MAX_JOBS} jobs already")));
                    } else {
                        c.jobs.insert(job.id.clone(), job);
                    }
                }
                Ok(job) => c.refused.push((
                    name,
                    format!(
                        "holds job {}, but a job's file must be named <id>.toml",
                        job.id
                    ),
                )),
                Err(e) => c.refused.push((name, e)),
            }
        }
        c
    }

    /// Checks and adds a job from its file's text. Refused when the text is
    /// wrong, or a job with its id exists and `replace` is false.
    pub fn submit(&self, text: &str, origin: &str, replace: bool) -> Result<JobSpec, String> {
        let job = parse(text, origin)?;
        let path = self.file(&job.id);
        if !replace && path.exists() {
            return Err(format!(
                "job {} exists already (cancel it first, or replace it)",
                job.id
            ));
        }
        if !path.exists() && self.load().jobs.len() >= MAX_JOBS {
            return Err(format!("the book holds {MAX_JOBS} jobs already"));
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("creating {}: {e}", self.dir.display()))?;
        let tmp = self.dir.join(format!(".{}.tmp", job.id));
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| format!("writing {}: {e}", path.display()))?;
        Ok(job)
    }

    /// Removes job `id`; an error when there is none.
    pub fn cancel(&self, id: &str) -> Result<(), String> {
        let id = JobId::new(id).map_err(|e| format!("job id {id:?}: {e}"))?;
        let path = self.file(&id);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(format!("no job {id} in {}", self.dir.display()))
            }
            Err(e) => Err(format!("removing {}: {e}", path.display())),
        }
    }
}
