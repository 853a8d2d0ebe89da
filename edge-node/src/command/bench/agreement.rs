//! Detection agreement for `bench capacity`: what each system reports, frame
//! by frame, against the same system detecting every frame with the float
//! SSD, on one pass over the video.
//!
//! - Vidar: the real node over the video file (no frame dropped: the ingest
//!   queue blocks), configured as the system is (int8 SSD, motion gating);
//!   per frame, the boxes of the confirmed tracks its detections updated
//!   (what a sighting's path records), and on a frame the gate or the
//!   interval left undetected, the boxes of the tracks the last detection
//!   updated, predicted to it at constant velocity (what a live overlay
//!   draws there). Its float reference: the same node with the
//!   float SSD, no gate, and frames converted to RGB by GStreamer (the
//!   conventional path: so a system's row measures its model, its gate and
//!   its pixel path together; the float system's row, in the node's default
//!   I420, measures the pixel path alone).
//! - The Python reference: `reference_pipeline.py --boxes` over the file;
//!   per frame, its person detections. Its float reference: the same script
//!   with the float SSD.
//!
//! Agreement is person-box F1 at IoU >= 0.5 (greedy, best IoU first, one to
//! one) over every frame of the video. Each float system is run twice and
//! the second run is scored against the first: it shows how far the measure
//! itself moves between identical runs.

use crate::analysis::FrameBoxes;
use crate::node;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use vidar_models::Precision;
use vidar_protocol::BBox;

/// Boxes per frame (0 = the first decoded frame).
pub(super) type Frames = BTreeMap<u64, Vec<BBox>>;

/// How a Vidar agreement run is configured.
#[derive(Debug, Clone, Copy)]
pub(super) struct VidarRun {
    /// The int8 SSD (else the float one).
    pub(super) int8: bool,
    /// Motion-gated detection.
    pub(super) motion: bool,
    /// The gate's `track_skip` (None: the node's default).
    pub(super) track_skip: Option<u32>,
    /// ONNX Runtime intra-op threads.
    pub(super) threads: usize,
    /// The cameras' pixel layout.
    pub(super) pixels: vidar_pipeline::PixelFormat,
}

/// Most frames a run may report before its reader drains them.
const OBSERVED: usize = 4096;

/// The node over `video`, every frame analysed in order; what each detected frame reported.
pub(super) fn vidar(video: &Path, run: VidarRun) -> Result<Frames> {
    let (mut config, db) = super::file_run::file_config("agree", video, run.threads)?;
    config.detector.max_batch = Some(1);
    config.detector.precision = run.int8.then_some(Precision::Int8);
    config.motion.enabled = run.motion;
    if let Some(k) = run.track_skip {
        config.motion.track_skip = k;
    }
    // With the gate, the file plays at its own rate: the gate's periodic full
    // detection counts capture time, which a file read faster would compress.
    for camera in &mut config.cameras {
        camera.realtime = run.motion;
        camera.pixel_format = run.pixels;
    }
    let mut built = node::build(&config)?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<FrameBoxes>(OBSERVED);
    built.analysis.observer = Some(tx);
    let mut frames = Frames::new();
    let pass = super::file_run::play_file(built, &db, || {
        frames.extend(rx.try_iter().map(|f| (f.seq, f.boxes)));
    })?;
    // Frames the loop never reached reported nothing.
    for seq in 0..pass.decoded {
        frames.entry(seq).or_default();
    }
    Ok(frames)
}

/// `reference_pipeline.py --boxes` over `video`: each frame's person detections.
pub(super) fn reference(
    python: &Path,
    script: &Path,
    video: &Path,
    int8: bool,
    threads: usize,
) -> Result<Frames> {
    let dir = std::env::temp_dir().join(format!("vidar-agree-ref-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (boxes, report) = (dir.join("boxes.json"), dir.join("report.json"));
    let mut cmd = Command::new(python);
    cmd.arg(script)
        .arg("--url")
        .arg(video)
        .arg("--boxes")
        .arg(&boxes)
        .arg("--out")
        .arg(&report)
        .arg("--threads")
        .arg(threads.to_string());
    if int8 {
        cmd.arg("--int8");
    }
    let out = cmd
        .output()
        .with_context(|| format!("running {} {}", python.display(), script.display()))?;
    if !out.status.success() {
        bail!(
            "{} --boxes failed ({}): {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    let text =
        std::fs::read_to_string(&boxes).with_context(|| format!("reading {}", boxes.display()))?;
    let _ = std::fs::remove_dir_all(&dir);
    parse_boxes(&text).with_context(|| format!("{} --boxes output", script.display()))
}

/// The script's `--boxes` JSON: one list per frame, in order, of `[x1, y1, x2, y2]`.
fn parse_boxes(text: &str) -> Result<Frames> {
    let lists: Vec<Vec<[f32; 4]>> = serde_json::from_str(text)?;
    let mut frames = Frames::new();
    for (i, list) in lists.into_iter().enumerate() {
        let mut boxes = Vec::with_capacity(list.len());
        for [x1, y1, x2, y2] in list {
            if !(x1.is_finite() && y1.is_finite() && x2 >= x1 && y2 >= y1) {
                bail!("frame {i}: bad box [{x1}, {y1}, {x2}, {y2}]");
            }
            boxes.push(BBox::from_corners(x1, y1, x2, y2));
        }
        frames.insert(i as u64, boxes);
    }
    Ok(frames)
}

/// Agreement of `got` with `reference`: precision, recall and F1 of person
/// boxes at IoU >= 0.5 over every frame either has.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Agreement {
    /// Boxes of the reference.
    pub(super) reference: usize,
    /// Boxes reported.
    pub(super) reported: usize,
    /// Matched pairs.
    pub(super) matched: usize,
    /// Frames compared.
    pub(super) frames: usize,
}

impl Agreement {
    /// Matched / reported (1 when nothing was reported).
    pub(super) fn precision(&self) -> f64 {
        ratio(self.matched, self.reported)
    }
    /// Matched / reference (1 when the reference has nothing).
    pub(super) fn recall(&self) -> f64 {
        ratio(self.matched, self.reference)
    }
    /// Harmonic mean of the two.
    pub(super) fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

/// Greedy one-to-one matching per frame, best IoU first.
pub(super) fn agreement(reference: &Frames, got: &Frames) -> Agreement {
    const IOU: f32 = 0.5;
    let empty = Vec::new();
    let mut a = Agreement {
        reference: 0,
        reported: 0,
        matched: 0,
        frames: 0,
    };
    let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
    let seqs: std::collections::BTreeSet<u64> =
        reference.keys().chain(got.keys()).copied().collect();
    for seq in seqs {
        let (want, have) = (
            reference.get(&seq).unwrap_or(&empty),
            got.get(&seq).unwrap_or(&empty),
        );
        a.frames += 1;
        a.reference += want.len();
        a.reported += have.len();
        pairs.clear();
        for (i, w) in want.iter().enumerate() {
            for (j, h) in have.iter().enumerate() {
                let iou = w.iou(h);
                if iou >= IOU {
                    pairs.push((iou, i, j));
                }
            }
        }
        pairs.sort_by(|x, y| y.0.total_cmp(&x.0));
        let (mut used_w, mut used_h) = (vec![false; want.len()], vec![false; have.len()]);
        for &(_, i, j) in &pairs {
            if !used_w[i] && !used_h[j] {
                used_w[i] = true;
                used_h[j] = true;
                a.matched += 1;
            }
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x: f32, y: f32) -> BBox {
        BBox {
            x,
            y,
            w: 10.0,
            h: 20.0,
        }
    }

    #[test]
    fn agreement_matches_one_to_one_per_frame() {
        let reference: Frames = [(0, vec![b(0.0, 0.0), b(50.0, 0.0)]), (1, vec![b(0.0, 0.0)])]
            .into_iter()
            .collect();
        // Frame 0: one box found (shifted 1 px), one missed, one false;
        // frame 1: two boxes on the one person (one matches); frame 2: extra.
        let got: Frames = [
            (0, vec![b(1.0, 0.0), b(200.0, 0.0)]),
            (1, vec![b(0.0, 0.0), b(0.5, 0.0)]),
            (2, vec![b(9.0, 9.0)]),
        ]
        .into_iter()
        .collect();
        let a = agreement(&reference, &got);
        assert_eq!((a.reference, a.reported, a.matched, a.frames), (3, 5, 2, 3));
        assert!((a.precision() - 0.4).abs() < 1e-9);
        assert!((a.recall() - 2.0 / 3.0).abs() < 1e-9);
        assert!((a.f1() - 0.5).abs() < 1e-9);
        assert_eq!(agreement(&reference, &reference).f1(), 1.0);
        assert_eq!(agreement(&reference, &Frames::new()).f1(), 0.0);
    }

    #[test]
    fn the_scripts_boxes_parse_and_bad_ones_are_named() {
        let f = parse_boxes("[[[1, 2, 11, 22]], [], [[0, 0, 5, 5], [5, 5, 6, 9]]]").expect("ok");
        assert_eq!(f.len(), 3);
        assert_eq!(f[&0], vec![BBox::from_corners(1.0, 2.0, 11.0, 22.0)]);
        assert!(f[&1].is_empty());
        let e = parse_boxes("[[], [[5, 5, 1, 1]]]").expect_err("inverted");
        assert!(e.to_string().contains("frame 1"), "{e}");
        assert!(parse_boxes("{\"not\": 1}").is_err());
    }
}
