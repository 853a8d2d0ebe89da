//! Model refreshes on a node: what a [`ModelRefresh`] from the master may
//! change, where its file is kept, and building the refreshed re-ID model.
//!
//! A refresh names a manifest model, a size and a sha256, signed by the
//! master (the link checks the signature before anything here sees it).
//! The file itself comes from the master's file service in chunks and is
//! trusted only once its size and sha256 are the signed ones. It is kept
//! as `<refresh_dir>/<sha256>.onnx` (0600, written whole then renamed),
//! and the refresh applied last as `<refresh_dir>/applied.json`, so a node
//! that restarts runs the same weights (and restores the identities made
//! by them) before the master is reachable again.
//!
//! A refresh is built exactly as the configured model is (the same
//! [`EmbedderConfig`], the manifest with the model's file replaced, see
//! [`vidar_models::Manifest::refreshed`]), so a file whose graph is not the
//! model's (other inputs, outputs or sizes) is refused with what differs.

use std::path::{Path, PathBuf};

use vidar_config::Config;
use vidar_models::{ModelStore, Precision, RuntimeConfig, SessionFactory};
use vidar_protocol::messages::{Crop as WireCrop, CropEncoding, ModelRefresh};
use vidar_protocol::{BBox, IdentityId, TrackId, UnixMs};
use vidar_reid::{Crop, Embedder, EmbedderConfig, Embedding, OnnxEmbedder};
use vidar_runtime::files::write_private;

/// Name of the record of the refresh applied last, in the refresh directory.
const APPLIED: &str = "applied.json";

/// Why a refresh was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Never to be applied: not this node's model, a file that is not the
    /// signed one, a graph unlike the model's. The same refresh is not
    /// tried again.
    Refused(String),
    /// Not now: the file could not be fetched or written. Tried again when
    /// the master repeats the refresh.
    Failed(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Refused(why) => write!(f, "refused: {why}"),
            Outcome::Failed(why) => write!(f, "failed for now: {why}"),
        }
    }
}

/// Builds refreshed re-ID models for one node.
#[derive(Debug, Clone)]
pub struct Refresher {
    embedder: EmbedderConfig,
    runtime: RuntimeConfig,
    base: ModelStore,
    dir: PathBuf,
    database: PathBuf,
    max_age_s: u64,
    max_identities: usize,
}

impl Refresher {
    /// For a node running `embedder` on `runtime`, whose shipped models are
    /// in `base`; refreshes are kept in `dir`; identities are re-embedded
    /// from the snapshots in `database` within `gallery`'s age and size.
    pub fn new(
        embedder: EmbedderConfig,
        runtime: RuntimeConfig,
        base: ModelStore,
        dir: PathBuf,
        database: PathBuf,
        gallery: &vidar_reid::GalleryConfig,
    ) -> Refresher {
        Refresher {
            embedder,
            runtime,
            base,
            dir,
            database,
            max_age_s: gallery.max_age_s,
            max_identities: gallery.max_identities,
        }
    }

    /// This node's recent identities seen through `embedder` (the new
    /// model), from their snapshots: see [`reembed`].
    pub fn reembed(&self, embedder: &mut dyn Embedder) -> Vec<(IdentityId, Embedding)> {
        match reembed(
            embedder,
            &self.database,
            self.max_age_s,
            self.max_identities,
            UnixMs::now(),
        ) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "identities not re-embedded for the new model: they are retired at the swap");
                Vec::new()
            }
        }
    }

    /// Where refreshed files and the applied record are kept.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The sha256 of the shipped file the configured re-ID model loads.
    pub fn shipped_sha256(&self) -> Option<String> {
        let manifest = self.base.manifest();
        let spec = manifest.model(&self.embedder.model).ok()?;
        manifest.file(&spec.file).map(|f| f.sha256.clone())
    }

    /// Whether `r` is for this node's re-ID model, as configured.
    pub fn check(&self, r: &ModelRefresh) -> Result<(), Outcome> {
        if r.model != self.embedder.model {
            return Err(Outcome::Refused(format!(
                "the refresh is for model {:?}; this node's re-ID model is {:?}",
                r.model, self.embedder.model
            )));
        }
        if self.embedder.precision == Some(Precision::Int8) {
            return Err(Outcome::Refused(format!(
                "this node runs the int8 variant of {}; a refresh carries float weights (set embedder.precision to fp32 to take refreshes)",
                r.model
            )));
        }
        Ok(())
    }

    /// The path a refresh's file is kept at.
    pub fn file_of(&self, r: &ModelRefresh) -> PathBuf {
        self.dir.join(format!("{}.onnx", r.sha256))
    }

    /// The embedder for `r` from a file already on this node (the shipped
    /// model, or a kept refresh whose size and sha256 check out); `None`
    /// when the file must be fetched.
    pub fn build_local(&self, r: &ModelRefresh) -> Result<Option<OnnxEmbedder>, Outcome> {
        self.check(r)?;
        if self.shipped_sha256().as_deref() == Some(r.sha256.as_str()) {
            // A rollback to the weights this node ships with.
            let factory = SessionFactory::new(self.base.clone(), self.runtime.clone())
                .map_err(|e| Outcome::Failed(format!("starting ONNX Runtime: {e}")))?;
            return self
                .embedder
                .build(&factory)
                .map(Some)
                .map_err(|e| Outcome::Failed(format!("loading the shipped model: {e}")));
        }
        let path = self.file_of(r);
        if !path.is_file() {
            return Ok(None);
        }
        match vidar_models::store::sha256_file(&path) {
            Ok(sha) if sha == r.sha256 => self.build(r).map(Some),
            // A damaged or foreign copy: fetched again over it.
            Ok(sha) => {
                tracing::warn!(path = %path.display(), %sha, want = %r.sha256, "a kept model file is not the one signed; fetching it again");
                Ok(None)
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "a kept model file cannot be read; fetching it again");
                Ok(None)
            }
        }
    }

    /// Checks fetched `bytes` against the signed size and sha256 of `r`,
    /// keeps them (0600, written whole and renamed) and builds the embedder.
    pub fn accept(&self, r: &ModelRefresh, bytes: &[u8]) -> Result<OnnxEmbedder, Outcome> {
        self.check(r)?;
        if bytes.len() as u64 != r.size {
            return Err(Outcome::Refused(format!(
                "the file from the master is {} bytes; the signed refresh says {}",
                bytes.len(),
                r.size
            )));
        }
        let sha = vidar_models::store::sha256_bytes(bytes);
        if sha != r.sha256 {
            return Err(Outcome::Refused(format!(
                "the file from the master has sha256 {sha}; the signed refresh says {}",
                r.sha256
            )));
        }
        write_private(&self.dir, &self.file_of(r), bytes)
            .map_err(|e| Outcome::Failed(format!("keeping {}: {e}", self.file_of(r).display())))?;
        self.build(r)
    }

    /// Builds the embedder from the kept file of `r` (checked again by the
    /// model store as it reads it).
    fn build(&self, r: &ModelRefresh) -> Result<OnnxEmbedder, Outcome> {
        let file = format!("{}.onnx", r.sha256);
        let manifest = self
            .base
            .manifest()
            .refreshed(&r.model, &file, &r.sha256, r.size)
            .map_err(|e| Outcome::Refused(e.to_string()))?;
        let factory =
            SessionFactory::new(ModelStore::new(&self.dir, manifest), self.runtime.clone())
                .map_err(|e| Outcome::Failed(format!("starting ONNX Runtime: {e}")))?;
        self.embedder.build(&factory).map_err(|e| {
            Outcome::Refused(format!(
                "version {} is not a {} model: {e}",
                r.version, r.model
            ))
        })
    }

    /// Records `r` as the refresh this node runs.
    pub fn remember(&self, r: &ModelRefresh) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(r).map_err(std::io::Error::other)?;
        write_private(&self.dir, &self.dir.join(APPLIED), &json)
    }

    /// The float graph this node's re-ID model runs now, for split
    /// training: the kept file of the refresh applied last, or the shipped
    /// one; with the model's name and manifest entry (input size,
    /// normalisation). The int8 variant is not trained: its float graph is.
    pub fn training_model(&self) -> Result<(String, PathBuf, vidar_models::ModelSpec), String> {
        let manifest = self.base.manifest();
        let spec = manifest
            .model(&self.embedder.model)
            .map_err(|e| e.to_string())?
            .clone();
        let applied = std::fs::read(self.dir.join(APPLIED))
            .ok()
            .and_then(|b| serde_json::from_slice::<ModelRefresh>(&b).ok())
            .filter(|r| r.model == self.embedder.model)
            .map(|r| self.file_of(&r))
            .filter(|p| p.is_file());
        let path = match applied {
            Some(p) => p,
            None => self
                .base
                .verified_path(&spec.file)
                .map_err(|e| e.to_string())?,
        };
        Ok((self.embedder.model.clone(), path, spec))
    }

    /// The refresh applied before this start, with its embedder; `None` (a
    /// warning logged) when there is none, it is not for this node's model
    /// as configured now, or its file is gone or damaged: then the
    /// configured model runs until the master sends the refresh again.
    pub fn restore(&self) -> Option<(ModelRefresh, OnnxEmbedder)> {
        let path = self.dir.join(APPLIED);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "applied model refresh not read; running the configured model");
                return None;
            }
        };
        let r: ModelRefresh = match serde_json::from_slice(&bytes) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "applied model refresh unreadable; running the configured model");
                return None;
            }
        };
        match self.build_local(&r) {
            Ok(Some(e)) => Some((r, e)),
            Ok(None) => {
                tracing::warn!(version = %r.version, path = %self.file_of(&r).display(), "the applied model refresh's file is gone or damaged; running the configured model until the master sends it again");
                None
            }
            Err(why) => {
                tracing::warn!(version = %r.version, %why, "the applied model refresh is not used; running the configured model");
                None
            }
        }
    }
}

/// The identities this node took a snapshot of within `max_age_s` before
/// `now` (at most `max_identities`, the newest), each seen through
/// `embedder` in its newest snapshot:
/// the person's box inside the snapshot's margin (see
/// [`crate::media::snapshot_jpeg`]). What a gallery needs to know them
/// again under a new model (vectors of two models are never compared). An
/// identity without a readable snapshot is left out.
pub fn reembed(
    embedder: &mut dyn Embedder,
    db: &Path,
    max_age_s: u64,
    max_identities: usize,
    now: UnixMs,
) -> Result<Vec<(IdentityId, Embedding)>, String> {
    let reader = vidar_store::Reader::open(db).map_err(|e| e.to_string())?;
    let since = now.minus(std::time::Duration::from_secs(max_age_s));
    let snapshots = reader
        .latest_snapshots(since, max_identities)
        .map_err(|e| e.to_string())?;
    let mut images = Vec::with_capacity(snapshots.len());
    for snap in snapshots {
        let id = snap.value.identity;
        let Some((width, height)) = vidar_protocol::messages::jpeg_size(&snap.value.jpeg) else {
            continue;
        };
        let crop = WireCrop {
            camera: snap.value.camera,
            track: TrackId(0),
            capture_ms: snap.value.t_ms,
            width,
            height,
            encoding: CropEncoding::Jpeg,
            data: snap.value.jpeg,
        };
        match crate::media::decode_crop(&crop) {
            Ok(img) => images.push((id, img)),
            Err(e) => tracing::debug!(identity = %id, error = %e, "snapshot not decoded"),
        }
    }
    let mut out = Vec::with_capacity(images.len());
    let mut embedded = Vec::new();
    for chunk in images.chunks(embedder.max_batch().max(1)) {
        let mut crops = Vec::with_capacity(chunk.len());
        for (_, img) in chunk {
            let (w, h) = (img.width() as f32, img.height() as f32);
            let frame = vidar_detectors::RgbFrame::new(
                img.width(),
                img.height(),
                img.width() as usize * 3,
                img.as_raw(),
            )
            .map_err(|e| e.to_string())?;
            // The snapshot adds 10 % of the box's width on each side and 5 %
            // of its height above and below: the box is the middle 10/12 by 20/22.
            crops.push(Crop {
                frame: frame.into(),
                bbox: BBox {
                    x: w / 12.0,
                    y: h / 22.0,
                    w: w * 10.0 / 12.0,
                    h: h * 20.0 / 22.0,
                },
            });
        }
        embedder
            .embed_into(&crops, &mut embedded)
            .map_err(|e| e.to_string())?;
        out.extend(chunk.iter().map(|(id, _)| *id).zip(embedded.drain(..)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use vidar_models::Manifest;
    use vidar_protocol::UnixMs;
    use vidar_reid::Embedder;

    const MODEL: &str = "osnet-x0-25-msmt17-combineall";

    /// A refresher for a node whose database is in `dir`, on the real model
    /// files (`make test` sets `VIDAR_MODEL_DIR` and `ORT_DYLIB_PATH`).
    fn refresher(dir: &Path, precision: Option<Precision>) -> Refresher {
        vidar_testkit::require_node_env();
        Refresher::new(
            EmbedderConfig {
                precision,
                ..EmbedderConfig::default()
            },
            RuntimeConfig::default(),
            ModelStore::from_env().expect("models"),
            dir.join("model-refresh"),
            dir.join("e.db"),
            &vidar_reid::GalleryConfig::default(),
        )
    }

    fn refresh_of(bytes: &[u8], serial: u64) -> ModelRefresh {
        ModelRefresh {
            serial,
            model: MODEL.into(),
            version: format!("v{serial}"),
            parent: None,
            sha256: vidar_models::store::sha256_bytes(bytes),
            size: bytes.len() as u64,
            issued_ms: UnixMs(0),
        }
    }

    fn model_bytes(file: &str) -> Vec<u8> {
        let dir = std::env::var_os("VIDAR_MODEL_DIR").expect("VIDAR_MODEL_DIR");
        std::fs::read(Path::new(&dir).join(file)).expect("model file")
    }

    #[test]
    fn a_refresh_is_kept_built_and_restored_and_bad_ones_are_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        let r = refresher(tmp.path(), None);
        assert_eq!(r.dir(), tmp.path().join("model-refresh"));
        let shipped = r.shipped_sha256().expect("shipped sha");
        assert_eq!(
            Some(&shipped),
            Manifest::builtin()
                .expect("manifest")
                .file("reid_osnet_x0_25_msmt17_combineall.onnx")
                .map(|f| &f.sha256)
        );
        // Other weights for the same graph: not here yet, then kept and built.
        let weights = model_bytes("reid_osnet_x0_25_market1501.onnx");
        let good = refresh_of(&weights, 7);
        assert!(
            r.build_local(&good).expect("no error").is_none(),
            "not here yet"
        );
        let e = r.accept(&good, &weights).expect("accepted");
        assert!(
            e.model_tag()
                .starts_with(&format!("{MODEL}@{}", &good.sha256[..12])),
            "{}",
            e.model_tag()
        );
        let kept = r.file_of(&good);
        let mode = std::fs::metadata(&kept).expect("kept").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        r.remember(&good).expect("remembered");
        // After a restart: the same weights, before the master is heard.
        let (again, e) = r.restore().expect("restored");
        assert_eq!(again, good);
        assert!(e.model_tag().contains(&good.sha256[..12]));
        // A kept file damaged on disk is not used; fetched again instead.
        let mut damaged = weights.clone();
        damaged[100] ^= 1;
        std::fs::write(&kept, &damaged).expect("damage");
        assert!(r.build_local(&good).expect("no error").is_none());
        assert!(r.restore().is_none(), "the configured model runs instead");

        // Bytes that are not the signed ones.
        let Err(Outcome::Refused(why)) = r.accept(&good, &damaged) else {
            panic!("tampered bytes accepted")
        };
        assert!(
            why.contains("sha256") && why.contains(&good.sha256),
            "{why}"
        );
        let Err(Outcome::Refused(why)) = r.accept(&good, &weights[..1000]) else {
            panic!("short bytes accepted")
        };
        assert!(why.contains("1000 bytes"), "{why}");
        // The right bytes of the wrong graph: a detector as the re-ID model.
        let ssd = model_bytes("ssd_mobilenet_v2_coco_quant.onnx");
        let Err(Outcome::Refused(why)) = r.accept(&refresh_of(&ssd, 8), &ssd) else {
            panic!("another graph accepted")
        };
        assert!(why.contains("v8") && why.contains(MODEL), "{why}");
        // Another model's refresh, and a node on int8.
        let other = ModelRefresh {
            model: "mobilenetv2-deepsort".into(),
            ..good.clone()
        };
        assert!(
            matches!(r.check(&other), Err(Outcome::Refused(w)) if w.contains("mobilenetv2-deepsort"))
        );
        let int8 = refresher(tmp.path(), Some(Precision::Int8));
        assert!(matches!(int8.check(&good), Err(Outcome::Refused(w)) if w.contains("int8")));
        // A rollback to the shipped weights needs no file.
        let shipped_bytes = model_bytes("reid_osnet_x0_25_msmt17_combineall.onnx");
        let back = r
            .build_local(&refresh_of(&shipped_bytes, 9))
            .expect("no error")
            .expect("built from the shipped file");
        assert!(back.model_tag().contains(&shipped[..12]));
    }

    #[test]
    fn an_unreadable_applied_record_runs_the_configured_model() {
        let tmp = tempfile::tempdir().expect("tmp");
        let r = refresher(tmp.path(), None);
        assert!(r.restore().is_none(), "nothing applied");
        std::fs::create_dir_all(r.dir()).expect("dir");
        std::fs::write(r.dir().join(APPLIED), b"{not json").expect("write");
        assert!(r.restore().is_none());
    }
}
