//! Motion-gated detection: a cheap look at each due frame decides whether the
//! detector needs to see it.
//!
//! The frame is sampled onto a coarse grey grid (about `grid_width` cells
//! across, each cell the mean of four pixels of its block, so the cost does
//! not grow with the resolution: 96 x 72 cells read 28k pixels of a 768 x 576
//! frame). Each cell is compared with a running background (an exponential
//! mean, `learn_rate` per frame) and with the last frame judged; a cell
//! moves when it differs from both by more than `threshold` grey levels.
//! The background alone would keep calling "motion" where someone stood
//! until it has learned them away (the ghost: seconds at any useful learning
//! rate); the last frame alone would call noise against a noisy frame
//! motion. Moving cells are dilated by one cell into regions
//! (8-connected); a region with fewer than `min_cells` moving cells is noise.
//! Cells under a camera's masks (always-moving areas: trees, screens) never
//! move.
//!
//! The detector runs on the whole frame when any region moves, and at least
//! every `full_every_ms` whatever moves, so a person who stands still is not
//! lost: the tracker predicts over the frames in between, as over the frames
//! `detection_interval` skips.
//!
//! Motion the tracks explain: the caller passes the boxes of the people
//! already tracked (confirmed, matched at the last detection; only those
//! matched in 3 frames or more whose last detection scored 0.7 or more
//! count), each as the
//! span from its box at the last detection to its predicted box now. When
//! every region's moving cells lie inside those spans (fewer than
//! `min_cells` outside any), the motion is people walking where the tracker
//! expects them, and the tracker may predict over up to `track_skip` such
//! frames in a row before the detector looks again. Motion anywhere else (a
//! person coming in, a tracked one turning off its predicted path) sends the
//! frame to the detector at once. On scenes where people walk all the time
//! this is what saves calls; on still scenes the gate above does.
//!
//! Why the whole frame rather than the regions:
//! SSD-MobileNet costs the same per call at 300 x 300 whatever the crop, so
//! crops of k regions cost k calls where the frame costs one, and a crop
//! around a region changes the scale the detector sees. The gate saves calls
//! on frames where nothing moves (quiet cameras, empty scenes, night).
//!
//! Per frame: no allocation once the grid is sized (on the first frame and
//! when the resolution changes), no logging.

use serde::Deserialize;
use std::collections::BTreeMap;
use vidar_config::{Problem, Problems};
use vidar_detectors::Picture;
use vidar_tracker::Predicted;

/// A track explains motion only when its last detection scored at least
/// this: a detection near the detector's threshold is as likely missing from
/// the next frame as there, and the frames skipped on it disagreed with
/// every-frame detection (on vtest.avi: F1 0.964 with every confirmed track,
/// 0.971 with these two bounds; docs/benchmarks.md).
const EXPLAIN_MIN_SCORE: f32 = 0.7;
/// ... and was matched in at least this many frames (its velocity is known).
const EXPLAIN_MIN_HITS: u32 = 3;

/// `[motion]` of the node's config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MotionConfig {
    /// Run the detector only on frames where something moves (and at least
    /// every `full_every_ms`). Default true: on composite scenes it saved
    /// 17-39 % of the detector's calls at equal MOTA (docs/benchmarks.md).
    pub enabled: bool,
    /// Grid cells across the frame (the cell is width / this, at least 2
    /// pixels). Default 96.
    pub grid_width: u32,
    /// A cell moves when its grey level differs from the background's by
    /// more than this (0-255). Default 16.
    pub threshold: u8,
    /// Moving cells a region needs to count (smaller ones are noise). Default 2.
    pub min_cells: u32,
    /// How fast the background follows the scene, per frame (0-1]. Default 0.05.
    pub learn_rate: f32,
    /// Detect at least this often whatever moves, ms: still people stay
    /// tracked. Keep it under the tracker's `max_lost_frames` at the
    /// camera's rate. Default 1000.
    pub full_every_ms: u64,
    /// Frames in a row the tracker may predict over when all motion lies on
    /// tracked people's predicted paths (0: detect every moving frame).
    /// Default 1.
    pub track_skip: u32,
    /// Areas that always move, per camera id: rectangles `[x0, y0, x1, y1]`
    /// as fractions of the frame (0-1), e.g. `entrance = [[0.0, 0.0, 0.3, 0.2]]`.
    pub masks: BTreeMap<String, Vec<[f32; 4]>>,
}

impl Default for MotionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            grid_width: 96,
            threshold: 16,
            min_cells: 2,
            learn_rate: 0.05,
            full_every_ms: 1000,
            track_skip: 1,
            masks: BTreeMap::new(),
        }
    }
}

impl MotionConfig {
    /// Every problem, with its key.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::new();
        if !(8..=512).contains(&self.grid_width) {
            p.push(
                "grid_width",
                format!("{}: 8..=512 allowed", self.grid_width),
            );
        }
        if self.threshold == 0 {
            p.push("threshold", "0 would call every cell moving; 1..=255");
        }
        if self.min_cells == 0 || self.min_cells > 10_000 {
            p.push(
                "min_cells",
                format!("{}: 1..=10000 allowed", self.min_cells),
            );
        }
        if !(self.learn_rate > 0.0 && self.learn_rate <= 1.0) {
            p.push("learn_rate", format!("{}: (0, 1] allowed", self.learn_rate));
        }
        if !(100..=60_000).contains(&self.full_every_ms) {
            p.push(
                "full_every_ms",
                format!("{}: 100..=60000 allowed", self.full_every_ms),
            );
        }
        if self.track_skip > MAX_TRACK_SKIP {
            p.push(
                "track_skip",
                format!("{}: 0..={MAX_TRACK_SKIP} allowed", self.track_skip),
            );
        }
        for (camera, rects) in &self.masks {
            for (i, r) in rects.iter().enumerate() {
                let ok = r.iter().all(|v| (0.0..=1.0).contains(v)) && r[0] < r[2] && r[1] < r[3];
                if !ok {
                    p.push(
                        format!("masks.{camera}[{i}]"),
                        format!(
                            "{r:?}: [x0, y0, x1, y1] as fractions of the frame, 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1"
                        ),
                    );
                }
            }
        }
        p.into_vec()
    }

    /// A gate for `camera` (its masks), or none when gating is off.
    pub fn gate(&self, camera: &str) -> Option<MotionGate> {
        self.enabled.then(|| MotionGate {
            grid_width: self.grid_width as usize,
            threshold: f32::from(self.threshold),
            min_cells: self.min_cells as usize,
            learn_rate: self.learn_rate,
            full_every_ms: self.full_every_ms,
            track_skip: self.track_skip,
            masks: self.masks.get(camera).cloned().unwrap_or_default(),
            grid: Grid::default(),
            last_full_ms: None,
            skipped: 0,
        })
    }
}

/// Why a frame goes to the detector, or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The first frame, or the first at a new resolution: the background.
    Start,
    /// Something moves.
    Motion,
    /// Nothing moves, but the last detection is `full_every_ms` old.
    Periodic,
    /// Nothing moves: the tracker predicts.
    Still,
    /// Only tracked people move, along their predicted paths: the tracker
    /// predicts (at most `track_skip` frames in a row).
    Tracked,
}

/// The gate's answer for one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// Why.
    pub why: Why,
    /// Share of the unmasked cells that move (0-1).
    pub share: f32,
    /// Regions that count as motion.
    pub regions: usize,
    /// Of those, regions with motion off the tracked people's paths.
    pub untracked: usize,
}

impl Verdict {
    /// Whether the detector should see the frame.
    pub fn detect(&self) -> bool {
        !matches!(self.why, Why::Still | Why::Tracked)
    }
}

/// The most frames in a row `track_skip` may let the tracker predict over.
pub const MAX_TRACK_SKIP: u32 = 10;

/// One camera's motion state.
#[derive(Debug)]
pub struct MotionGate {
    grid_width: usize,
    threshold: f32,
    min_cells: usize,
    learn_rate: f32,
    full_every_ms: u64,
    track_skip: u32,
    masks: Vec<[f32; 4]>,
    grid: Grid,
    /// Capture time of the last frame the gate sent to the detector.
    last_full_ms: Option<i64>,
    /// Frames judged since the gate last sent one to the detector.
    skipped: u32,
}

/// The grid and its buffers, sized for one resolution.
#[derive(Debug, Default)]
struct Grid {
    /// Frame size it was built for.
    frame: (u32, u32),
    /// Cells across and down; cell size in pixels.
    w: usize,
    h: usize,
    cell: usize,
    background: Vec<f32>,
    /// Each cell's value in the last frame judged.
    last: Vec<f32>,
    /// 1 = moving (raw), per cell.
    moving: Vec<u8>,
    /// Region label per cell (0 = none), of the dilated moving cells.
    label: Vec<u32>,
    /// 1 = masked.
    masked: Vec<u8>,
    /// 1 = on a tracked person's path (this frame).
    covered: Vec<u8>,
    unmasked: usize,
    stack: Vec<usize>,
}

impl MotionGate {
    /// Judges one frame captured at `now_ms` (grey from RGB, or the luma
    /// plane of I420 scaled to 0-255), with `tracked` the paths of the people
    /// tracked (box at the last detection, predicted box now; pixels).
    /// Updates the background.
    pub fn judge(&mut self, frame: &Picture<'_>, now_ms: i64, tracked: &[Predicted]) -> Verdict {
        let (width, height) = (frame.width(), frame.height());
        let grey = |x: usize, y: usize| -> u32 {
            match frame {
                Picture::Rgb(f) => rgb_grey(f.data(), f.stride(), x, y),
                Picture::I420(f) => {
                    let (luma, stride) = f.luma();
                    luma.get(y * stride + x)
                        .map_or(0, |&v| u32::from(f.colour().grey(v)))
                }
            }
        };
        let fresh = self.grid.frame != (width, height) || self.grid.background.is_empty();
        if fresh {
            self.resize(width, height);
        }
        let g = &mut self.grid;
        let (cell, gw, gh) = (g.cell, g.w, g.h);
        // Four samples per cell, at its quarter points.
        let (q1, q3) = (cell / 4, (3 * cell) / 4);
        let mut moving_cells = 0usize;
        for cy in 0..gh {
            let (ya, yb) = (cy * cell + q1, cy * cell + q3);
            for cx in 0..gw {
                let i = cy * gw + cx;
                let (xa, xb) = (cx * cell + q1, cx * cell + q3);
                let sum = grey(xa, ya) + grey(xb, ya) + grey(xa, yb) + grey(xb, yb);
                let v = sum as f32 / 4.0;
                let bg = &mut g.background[i];
                let last = std::mem::replace(&mut g.last[i], v);
                if fresh {
                    *bg = v;
                    g.moving[i] = 0;
                    continue;
                }
                let m = g.masked[i] == 0
                    && (v - *bg).abs() > self.threshold
                    && (v - last).abs() > self.threshold;
                g.moving[i] = u8::from(m);
                moving_cells += usize::from(m);
                *bg += self.learn_rate * (v - *bg);
            }
        }
        let share = moving_cells as f32 / g.unmasked.max(1) as f32;
        let (regions, untracked) = if moving_cells == 0 {
            (0, 0)
        } else {
            g.cover(tracked);
            g.regions(self.min_cells)
        };
        let due = self
            .last_full_ms
            .is_none_or(|t| now_ms.saturating_sub(t) >= self.full_every_ms as i64);
        let why = if fresh {
            Why::Start
        } else if regions > 0 {
            if untracked == 0 && self.skipped < self.track_skip && !due {
                Why::Tracked
            } else {
                Why::Motion
            }
        } else if due {
            Why::Periodic
        } else {
            Why::Still
        };
        let verdict = Verdict {
            why,
            share,
            regions,
            untracked,
        };
        if verdict.detect() {
            self.last_full_ms = Some(now_ms);
            self.skipped = 0;
        } else {
            self.skipped = self.skipped.saturating_add(1);
        }
        verdict
    }

    fn resize(&mut self, width: u32, height: u32) {
        let cell = ((width as usize) / self.grid_width).max(2);
        let (w, h) = (width as usize / cell, height as usize / cell);
        let g = &mut self.grid;
        g.frame = (width, height);
        g.cell = cell;
        g.w = w;
        g.h = h;
        let n = w * h;
        g.background.clear();
        g.background.resize(n, 0.0);
        g.last.clear();
        g.last.resize(n, 0.0);
        g.moving.clear();
        g.moving.resize(n, 0);
        g.label.clear();
        g.label.resize(n, 0);
        g.masked.clear();
        g.masked.resize(n, 0);
        g.covered.clear();
        g.covered.resize(n, 0);
        for cy in 0..h {
            for cx in 0..w {
                // The cell's centre, as a fraction of the frame.
                let fx = ((cx * cell) as f32 + cell as f32 / 2.0) / width as f32;
                let fy = ((cy * cell) as f32 + cell as f32 / 2.0) / height as f32;
                let inside = self
                    .masks
                    .iter()
                    .any(|r| fx >= r[0] && fx < r[2] && fy >= r[1] && fy < r[3]);
                g.masked[cy * w + cx] = u8::from(inside);
            }
        }
        g.unmasked = g.masked.iter().filter(|m| **m == 0).count();
        g.stack.clear();
        g.stack.reserve(n);
    }
}

impl Grid {
    /// Marks the cells on the tracked people's paths: each span from the
    /// box at the last detection to the predicted one, widened by a tenth of
    /// its size and a cell on every side (the moving cells at a person's
    /// edge, and the dilation's reach).
    fn cover(&mut self, tracked: &[Predicted]) {
        self.covered.iter_mut().for_each(|c| *c = 0);
        let cell = self.cell as f32;
        let last = |n: usize| n.saturating_sub(1) as f32;
        for p in tracked {
            if p.score < EXPLAIN_MIN_SCORE || p.hits < EXPLAIN_MIN_HITS {
                continue;
            }
            let (a, b) = (&p.last, &p.now);
            let (x0, y0) = (a.x.min(b.x), a.y.min(b.y));
            let (x1, y1) = ((a.x + a.w).max(b.x + b.w), (a.y + a.h).max(b.y + b.h));
            if !(x0.is_finite() && y0.is_finite() && x1.is_finite() && y1.is_finite()) {
                continue;
            }
            let (mx, my) = (0.1 * (x1 - x0) + cell, 0.1 * (y1 - y0) + cell);
            // Cells as floats, clamped to the grid before converting.
            let cx0 = ((x0 - mx) / cell).floor().clamp(0.0, last(self.w)) as usize;
            let cx1 = ((x1 + mx) / cell).floor().clamp(0.0, last(self.w)) as usize;
            let cy0 = ((y0 - my) / cell).floor().clamp(0.0, last(self.h)) as usize;
            let cy1 = ((y1 + my) / cell).floor().clamp(0.0, last(self.h)) as usize;
            for cy in cy0..=cy1 {
                if let Some(row) = self.covered.get_mut(cy * self.w + cx0..=cy * self.w + cx1) {
                    row.iter_mut().for_each(|c| *c = 1);
                }
            }
        }
    }

    /// Regions of the moving cells dilated by one cell (8-connected) with at
    /// least `min_cells` moving cells each, and how many of them have at
    /// least `min_cells` moving cells off the tracked paths ([`Grid::cover`]).
    fn regions(&mut self, min_cells: usize) -> (usize, usize) {
        let (w, h) = (self.w as isize, self.h as isize);
        self.label.iter_mut().for_each(|l| *l = 0);
        // A cell is in the dilated set when a moving cell is within one.
        let dilated = |moving: &[u8], x: isize, y: isize| -> bool {
            (-1..=1).any(|dy| {
                (-1..=1).any(|dx| {
                    let (nx, ny) = (x + dx, y + dy);
                    nx >= 0 && ny >= 0 && nx < w && ny < h && moving[(ny * w + nx) as usize] == 1
                })
            })
        };
        let mut next = 0u32;
        let (mut counted, mut untracked) = (0, 0);
        for start in 0..self.moving.len() {
            if self.moving[start] == 0 || self.label[start] != 0 {
                continue;
            }
            next += 1;
            let (mut cells, mut off) = (0, 0);
            self.stack.clear();
            self.stack.push(start);
            self.label[start] = next;
            while let Some(i) = self.stack.pop() {
                cells += usize::from(self.moving[i]);
                off += usize::from(self.moving[i] == 1 && self.covered[i] == 0);
                let (x, y) = ((i as isize) % w, (i as isize) / w);
                for dy in -1..=1 {
                    for dx in -1..=1 {
                        let (nx, ny) = (x + dx, y + dy);
                        if nx < 0 || ny < 0 || nx >= w || ny >= h {
                            continue;
                        }
                        let j = (ny * w + nx) as usize;
                        if self.label[j] == 0 && dilated(&self.moving, nx, ny) {
                            self.label[j] = next;
                            self.stack.push(j);
                        }
                    }
                }
            }
            if cells >= min_cells {
                counted += 1;
                untracked += usize::from(off >= min_cells);
            }
        }
        (counted, untracked)
    }
}

/// Grey level (0-255, BT.601 weights) of the pixel at `(x, y)`.
#[inline]
fn rgb_grey(pixels: &[u8], stride: usize, x: usize, y: usize) -> u32 {
    let at = y * stride + x * 3;
    match pixels.get(at..at + 3) {
        Some(p) => (77 * u32::from(p[0]) + 150 * u32::from(p[1]) + 29 * u32::from(p[2])) >> 8,
        None => 0,
    }
}

#[cfg(test)]
#[path = "motion_tests.rs"]
mod tests;
