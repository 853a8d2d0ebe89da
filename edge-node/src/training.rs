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
    /// Take part in the master's split training rounds (EdgeSplit) with
    /// these samples: train the layers before the cut the master gives,
    /// on a thread below live analysis, and send only activations and
    /// weights (never a crop). Default false; needs `collect`.
    pub rounds: bool,
    /// Threads the node side of a round may use (at the lowest CPU
    /// priority, so they take only what analysis leaves). Default 0: one
    /// per core.
    pub round_threads: usize,
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
            rounds: false,
            round_threads: 0,
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
        if self.rounds && !self.collect {
            p.push(
                "rounds",
                "needs collect = true (the rounds train on the collected samples)",
            );
        }
        if self.round_threads > 256 {
            p.push(
                "round_threads",
                format!("{}: 0..=256 allowed", self.round_threads),
            );
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

/// Which people of a labelled folder [`import`] takes: ids `from..=to`,
/// and of those every `of`-th from `part` (`id % of == part`), so that
/// several nodes can each take their own share of one folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// First id.
    pub from: u64,
    /// Last id.
    pub to: u64,
    /// This share's remainder.
    pub part: u64,
    /// How many shares.
    pub of: u64,
}

/// Writes the labelled images of `data` (a folder with a `labels.csv` in
/// the layout `vidar-edge eval reid` reads) into the training file `file`
/// as a node would have collected them: one tracklet per (person, camera),
/// each image a JPEG crop at most [`SAMPLE_MAX_SIDE`] on its long side.
/// For seeding a node's samples with an operator's labelled crops, and for
/// benchmarks. Returns (tracklets, images).
pub fn import(
    data: &Path,
    share: Share,
    file: &Path,
    bounds: TrainingBounds,
) -> anyhow::Result<(usize, usize)> {
    use anyhow::Context;
    use std::collections::BTreeMap;
    anyhow::ensure!(
        share.of >= 1 && share.part < share.of,
        "part {} of {}: 0 <= part < of",
        share.part,
        share.of
    );
    let labels = vidar_reid::eval::read_labels(data)?;
    let mut groups: BTreeMap<(u64, u32), Vec<String>> = BTreeMap::new();
    for l in labels {
        if (share.from..=share.to).contains(&l.person) && l.person % share.of == share.part {
            groups.entry((l.person, l.camera)).or_default().push(l.file);
        }
    }
    let mut store = TrainingStore::open(file, bounds)?;
    let now = UnixMs::now();
    let (mut tracklets, mut images) = (0, 0);
    for ((person, camera), files) in groups {
        let mut samples = Vec::with_capacity(files.len());
        for (k, f) in files.iter().enumerate() {
            let path = data.join(f);
            let img = image::open(&path).with_context(|| format!("reading {}", path.display()))?;
            let img = img.thumbnail(SAMPLE_MAX_SIDE, SAMPLE_MAX_SIDE).to_rgb8();
            let mut jpeg = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, SAMPLE_QUALITY)
                .encode_image(&img)
                .with_context(|| format!("encoding {}", path.display()))?;
            samples.push(Sample {
                t_ms: UnixMs(now.0 - 60_000 + k as i64),
                quality: 1.0,
                jpeg,
            });
        }
        images += samples.len();
        let camera_id = vidar_protocol::CameraId::new(&format!("camera-{camera}"))
            .map_err(|e| anyhow::anyhow!("camera {camera}: {e}"))?;
        store.add(
            &Tracklet {
                id: 0,
                camera: camera_id,
                track: vidar_protocol::TrackId(person),
                identity: None,
                first_ms: UnixMs(now.0 - 60_000),
                last_ms: UnixMs(now.0 - 50_000),
                crops: u32::try_from(samples.len()).unwrap_or(u32::MAX),
                samples,
            },
            now,
        )?;
        tracklets += 1;
    }
    Ok((tracklets, images))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_labelled_folder_is_imported_one_tracklet_per_person_and_camera_within_its_share() {
        let dir = tempfile::tempdir().expect("tmp");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("mkdir");
        let mut csv = String::from("file,person_id,camera\n");
        for person in 1..=4u64 {
            for camera in 0..2u32 {
                for k in 0..2 {
                    let name = format!("{person}_{camera}_{k}.png");
                    image::RgbImage::from_pixel(30, 80, image::Rgb([person as u8 * 40, 0, 0]))
                        .save(data.join(&name))
                        .expect("png");
                    csv.push_str(&format!("{name},{person},{camera}\n"));
                }
            }
        }
        std::fs::write(data.join("labels.csv"), csv).expect("labels");
        let file = dir.path().join("training.db");
        let bounds = TrainingBounds {
            max_samples: 100,
            retention: Duration::from_secs(3600),
        };
        let share = Share {
            from: 2,
            to: 4,
            part: 0,
            of: 2,
        };
        let (t, n) = import(&data, share, &file, bounds).expect("import");
        // People 2 and 4, two cameras each, two images each.
        assert_eq!((t, n), (4, 8));
        let read = vidar_store::training::read_training(&file, 100).expect("read");
        let mut got: Vec<(u64, String, usize)> = read
            .iter()
            .map(|t| (t.track.0, t.camera.as_str().to_string(), t.samples.len()))
            .collect();
        got.sort();
        assert_eq!(got[0], (2, "camera-0".to_string(), 2));
        assert_eq!(got[3], (4, "camera-1".to_string(), 2));
        assert!(read
            .iter()
            .flat_map(|t| &t.samples)
            .all(|s| s.jpeg.starts_with(&[0xFF, 0xD8])));
        let e = import(
            &data,
            Share {
                from: 1,
                to: 4,
                part: 2,
                of: 2,
            },
            &file,
            bounds,
        )
        .expect_err("bad share");
        assert!(e.to_string().contains("part 2 of 2"), "{e}");
    }

    #[test]
    fn bad_training_settings_are_named() {
        let c = TrainingConfig {
            per_track: 0,
            min_quality: 1.5,
            max_samples: 0,
            retention_s: 0,
            rounds: true,
            round_threads: 1000,
            ..TrainingConfig::default()
        };
        let keys: Vec<String> = c.problems().into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            vec![
                "per_track",
                "min_quality",
                "max_samples",
                "retention_s",
                "rounds",
                "round_threads"
            ]
        );
        assert!(TrainingConfig::default().problems().is_empty());
    }
}
