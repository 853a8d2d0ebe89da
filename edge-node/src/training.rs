//! Training samples for the site's model adaptation (issue 13, EdgeSplit
//! item 1): the best crops of this node's own confirmed tracks, kept in a
//! file of their own ([`vidar_store::training`]), bounded, with retention,
//! never synchronised to the master. Off unless `[training] collect = true`.
//!
//! The re-ID worker keeps, per local track, the `per_track` crops of
//! highest re-ID quality (size, detection score, whole in the frame, not
//! overlapped), each JPEG-encoded only when it enters that list; when the
//! track ends with at least `min_crops` crops embedded, the track and its
//! crops go to a writer thread of their own (a full queue drops the track,
//! counted: analysis never waits on the disk).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use vidar_config::{Problem, Problems};
use vidar_protocol::UnixMs;
use vidar_store::training::{Sample, Tracklet, TrainingBounds, TrainingStore};

use crate::telemetry::NodeMetrics;

/// Longest side of a sample's JPEG, pixels (the re-ID input is 256x128).
pub const SAMPLE_MAX_SIDE: u32 = 256;
/// JPEG quality of a sample.
pub const SAMPLE_QUALITY: u8 = 90;
/// Finished tracks waiting for the writer; more are dropped (counted).
const QUEUE: usize = 256;

/// `[training]`: collecting training samples on this node.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingConfig {
    /// Collect samples. Default false: crops of people are kept on the node
    /// only for a site that adapts its model (EdgeSplit), and only then.
    pub collect: bool,
    /// The samples' file. Default `training.db` beside the database.
    pub path: Option<PathBuf>,
    /// Crops kept per track, the best by re-ID quality. Default 4.
    pub per_track: usize,
    /// Least re-ID quality of a crop kept (0..=1). Default 0.4.
    pub min_quality: f32,
    /// Least crops embedded for a track to count as confirmed. Default 3.
    pub min_crops: u32,
    /// Most samples kept; the oldest tracks go first. Default 20000 (about
    /// 200 MB of JPEGs at the default size).
    pub max_samples: usize,
    /// Tracks that ended longer ago than this go, seconds. Default 7 days.
    pub retention_s: u64,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        TrainingConfig {
            collect: false,
            path: None,
            per_track: 4,
            min_quality: 0.4,
            min_crops: 3,
            max_samples: 20_000,
            retention_s: 7 * 24 * 3600,
        }
    }
}

impl TrainingConfig {
    /// Every wrong value, by key.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::new();
        if self.per_track == 0 || self.per_track > 64 {
            p.push("per_track", format!("{}: 1..=64 allowed", self.per_track));
        }
        if !(0.0..=1.0).contains(&self.min_quality) {
            p.push(
                "min_quality",
                format!("{}: 0..=1 allowed", self.min_quality),
            );
        }
        if self.max_samples == 0 {
            p.push("max_samples", "must be at least 1");
        }
        if self.retention_s == 0 {
            p.push("retention_s", "must be at least 1");
        }
        p.into_vec()
    }

    /// The samples' file for a node whose database is `database`.
    pub fn file(&self, database: &Path) -> PathBuf {
        self.path.clone().unwrap_or_else(|| {
            database
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or_else(|| Path::new("."))
                .join("training.db")
        })
    }
}

/// The re-ID worker's side: which crops to keep, and where finished tracks go.
#[derive(Debug)]
pub struct Collector {
    per_track: usize,
    min_quality: f32,
    min_crops: u32,
    tx: SyncSender<Tracklet>,
    metrics: Arc<NodeMetrics>,
}

impl Collector {
    /// Opens the samples' file and starts its writer thread (it ends when
    /// the collector is dropped, after writing what was queued).
    pub fn start(
        config: &TrainingConfig,
        database: &Path,
        metrics: Arc<NodeMetrics>,
    ) -> anyhow::Result<(Collector, std::thread::JoinHandle<()>)> {
        let path = config.file(database);
        let store = TrainingStore::open(
            &path,
            TrainingBounds {
                max_samples: config.max_samples,
                retention: Duration::from_secs(config.retention_s),
            },
        )?;
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let m = Arc::clone(&metrics);
        let thread = std::thread::Builder::new()
            .name("training".into())
            .spawn(move || write(store, rx, &m))?;
        tracing::info!(file = %path.display(), "collecting training samples");
        Ok((
            Collector {
                per_track: config.per_track,
                min_quality: config.min_quality,
                min_crops: config.min_crops,
                tx,
                metrics,
            },
            thread,
        ))
    }

    /// Whether a crop of `quality` would be kept beside `kept`.
    pub fn wants(&self, kept: &[Sample], quality: f32) -> bool {
        quality >= self.min_quality
            && (kept.len() < self.per_track || kept.iter().any(|s| s.quality < quality))
    }

    /// Keeps `s` among a track's best crops (the worst goes when full).
    pub fn keep(&self, kept: &mut Vec<Sample>, s: Sample) {
        if kept.len() >= self.per_track {
            if let Some((worst, _)) = kept
                .iter()
                .enumerate()
                .min_by(|a, b| a.1.quality.total_cmp(&b.1.quality))
            {
                kept.swap_remove(worst);
            }
        }
        kept.push(s);
    }

    /// A track ended: queued for the file when confirmed and with crops kept.
    pub fn finish(&self, t: Tracklet) {
        if t.crops < self.min_crops || t.samples.is_empty() {
            return;
        }
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(t) {
            self.metrics
                .training_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn write(mut store: TrainingStore, rx: Receiver<Tracklet>, metrics: &NodeMetrics) {
    while let Ok(t) = rx.recv() {
        let n = t.samples.len() as u64;
        match store.add(&t, UnixMs::now()) {
            Ok(_) => {
                metrics.training_tracklets.fetch_add(1, Ordering::Relaxed);
                metrics.training_samples.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                metrics.training_dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "a training sample not stored");
            }
        }
    }
}

/// Writes the samples of the training file `file` into `out` in the
/// `labels.csv` layout `vidar-edge eval reid` reads (`file,person_id,camera`,
/// where a person is a tracklet), with the tracks' spans and decided
/// identities as extra columns for a trainer. Returns (tracklets, images).
pub fn export(file: &Path, out: &Path) -> anyhow::Result<(usize, usize)> {
    use anyhow::Context;
    use std::io::Write;
    let tracklets = vidar_store::training::read_training(file, usize::MAX)
        .with_context(|| format!("reading {}", file.display()))?;
    vidar_store::create_private_dir(out).with_context(|| format!("creating {}", out.display()))?;
    let labels = out.join("labels.csv");
    let mut csv = std::io::BufWriter::new(
        std::fs::File::create(&labels).with_context(|| format!("creating {}", labels.display()))?,
    );
    writeln!(
        csv,
        "file,person_id,camera,t_ms,quality,track_first_ms,track_last_ms,identity,similarity"
    )?;
    let mut images = 0;
    for t in &tracklets {
        for (k, s) in t.samples.iter().enumerate() {
            let name = format!("{}_{k}.jpg", t.id);
            std::fs::write(out.join(&name), &s.jpeg)
                .with_context(|| format!("writing {}", out.join(&name).display()))?;
            let (identity, similarity) = match t.identity {
                Some((i, sim)) => (i.0.to_string(), format!("{sim:.3}")),
                None => (String::new(), String::new()),
            };
            writeln!(
                csv,
                "{name},{},{},{},{:.3},{},{},{identity},{similarity}",
                t.id, t.camera, s.t_ms.0, s.quality, t.first_ms.0, t.last_ms.0
            )?;
            images += 1;
        }
    }
    csv.flush()?;
    Ok((tracklets.len(), images))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identify::testing::{answer, figure, job, spawn};
    use std::time::SystemTime;
    use vidar_protocol::TrackId;
    use vidar_reid::GalleryConfig;

    #[test]
    fn a_confirmed_tracks_best_crops_are_kept_and_exported_and_short_tracks_are_not() {
        let dir = tempfile::tempdir().expect("tmp");
        let (mut id, metrics, _rec) = spawn(dir.path(), GalleryConfig::default(), false, None);
        let config = TrainingConfig {
            collect: true,
            per_track: 2,
            min_quality: 0.3,
            min_crops: 3,
            ..TrainingConfig::default()
        };
        let database = dir.path().join("e.db");
        let (collector, writer) =
            Collector::start(&config, &database, Arc::clone(&metrics)).expect("collector");
        id.collect_training(collector, writer).expect("collecting");
        let t0 = SystemTime::now() - Duration::from_secs(60);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Track 1: five crops of qualities 0.5, 0.9, 0.2, 0.7, 0.6: kept 0.9
        // and 0.7 (0.2 is under the floor).
        let red = figure([220, 40, 40]);
        for (k, q) in [0.5f32, 0.9, 0.2, 0.7, 0.6].into_iter().enumerate() {
            let mut j = job(1, red, at(0), at(k as u64 * 100), false);
            j.tracks[0].quality = q;
            answer(&mut id, j);
        }
        id.ended(0, TrackId(1), UnixMs::of(at(400)));
        // Track 2: two crops only, not confirmed.
        let blue = figure([40, 40, 220]);
        for k in 0..2 {
            answer(&mut id, job(2, blue, at(1_000), at(1_000 + k * 100), false));
        }
        id.ended(0, TrackId(2), UnixMs::of(at(1_100)));
        id.finish();
        assert_eq!(metrics.training_tracklets.load(Ordering::Relaxed), 1);
        assert_eq!(metrics.training_samples.load(Ordering::Relaxed), 2);
        let got = vidar_store::training::read_training(&config.file(&database), 10).expect("read");
        assert_eq!(got.len(), 1);
        let t = &got[0];
        assert_eq!((t.track, t.crops, t.camera.as_str()), (TrackId(1), 5, "c"));
        assert_eq!(
            t.samples.iter().map(|s| s.quality).collect::<Vec<_>>(),
            vec![0.9, 0.7]
        );
        assert_eq!(t.samples[0].t_ms, UnixMs::of(at(100)));
        assert!(t.identity.is_some(), "decided at its second crop");
        // A real JPEG of the person (red), at most SAMPLE_MAX_SIDE.
        let img = image::load_from_memory(&t.samples[0].jpeg).expect("jpeg");
        let px = img.to_rgb8();
        let mid = px.get_pixel(px.width() / 2, px.height() / 2);
        assert!(mid[0] > 150 && mid[2] < 100, "{mid:?}");
        // Exported in the labels.csv layout of `vidar-edge eval reid`.
        let out = dir.path().join("export");
        assert_eq!(
            export(&config.file(&database), &out).expect("export"),
            (1, 2)
        );
        let csv = std::fs::read_to_string(out.join("labels.csv")).expect("labels");
        let lines: Vec<&str> = csv.lines().collect();
        assert!(lines[0].starts_with("file,person_id,camera,"), "{csv}");
        assert_eq!(lines.len(), 3, "{csv}");
        let first = format!("{}_0.jpg,{},c,", t.id, t.id);
        assert!(lines[1].starts_with(&first), "{csv}");
        assert!(out.join(format!("{}_1.jpg", t.id)).is_file());
    }

    #[test]
    fn bad_training_settings_are_named() {
        let c = TrainingConfig {
            per_track: 0,
            min_quality: 1.5,
            max_samples: 0,
            retention_s: 0,
            ..TrainingConfig::default()
        };
        let keys: Vec<String> = c.problems().into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            vec!["per_track", "min_quality", "max_samples", "retention_s"]
        );
        assert!(TrainingConfig::default().problems().is_empty());
    }
}
