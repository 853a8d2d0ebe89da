//! Synthetic people, and a detector and embedder that see them.
//!
//! A person is a solid rectangle of one colour on a black frame
//! ([`Figure`], [`draw`]). [`ColorBlobDetector`] reports one detection per
//! colour: the bounding box of that colour's pixels. [`ColorEmbedder`] embeds
//! a crop as the mean colour of its non-black pixels, so two crops of the same
//! person have cosine 1 and two people of clearly different colours are far
//! apart. Row 0 of every frame carries a 32-bit tag (the first four pixels'
//! red bytes), which the detector logs in the order it saw frames.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use vidar_detectors::{DetectError, Detection, Detector, StageTimings};
use vidar_detectors::{Picture, RgbFrame};
use vidar_protocol::BBox;
use vidar_reid::{Crop, EmbedTimings, Embedder, Embedding, ReidError};

/// A person drawn as a solid rectangle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figure {
    /// Its colour (not black; each person has their own).
    pub color: [u8; 3],
    /// Where it is, pixels.
    pub bbox: BBox,
}

/// A `width` x `height` packed RGB frame: black, `figures` drawn in order
/// (later ones cover earlier ones), and `tag` in row 0.
pub fn draw(width: u32, height: u32, tag: u32, figures: &[Figure]) -> Vec<u8> {
    let (w, h) = (width as usize, height as usize);
    let mut px = vec![0u8; w * h * 3];
    for f in figures {
        let x0 = (f.bbox.x.max(0.0) as usize).min(w);
        let x1 = ((f.bbox.x + f.bbox.w).max(0.0) as usize).min(w);
        let y0 = (f.bbox.y.max(1.0) as usize).min(h);
        let y1 = ((f.bbox.y + f.bbox.h).max(0.0) as usize).min(h);
        for y in y0..y1 {
            for x in x0..x1 {
                px[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&f.color);
            }
        }
    }
    for (i, b) in tag.to_le_bytes().iter().enumerate() {
        if i < w {
            px[i * 3] = *b;
        }
    }
    px
}

/// `f` of `frame` as packed RGB (an I420 frame converted first: its
/// colours then come back only approximately).
fn with_rgb<R>(frame: &Picture<'_>, f: impl FnOnce(&RgbFrame<'_>) -> R) -> R {
    match frame {
        Picture::Rgb(rgb) => f(rgb),
        Picture::I420(_) => {
            let data = frame.to_rgb();
            match RgbFrame::packed(frame.width(), frame.height(), &data) {
                Ok(rgb) => f(&rgb),
                Err(e) => panic!("converted frame: {e}"),
            }
        }
    }
}

/// The tag [`draw`] wrote into `frame`.
pub fn tag_of(frame: &Picture<'_>) -> u32 {
    with_rgb(frame, rgb_tag)
}

fn rgb_tag(frame: &RgbFrame<'_>) -> u32 {
    let d = frame.data();
    let b = |i: usize| d.get(i * 3).copied().unwrap_or(0);
    u32::from_le_bytes([b(0), b(1), b(2), b(3)])
}

/// A gate a detector waits at while closed (to hold frames "at the detector").
#[derive(Debug, Default)]
pub struct Gate {
    closed: Mutex<bool>,
    changed: Condvar,
}

impl Gate {
    /// A closed gate.
    pub fn closed() -> Arc<Gate> {
        Arc::new(Gate {
            closed: Mutex::new(true),
            changed: Condvar::new(),
        })
    }

    /// Opens the gate for good.
    pub fn open(&self) {
        *self.closed.lock().unwrap_or_else(|p| p.into_inner()) = false;
        self.changed.notify_all();
    }

    fn wait(&self) {
        let mut closed = self.closed.lock().unwrap_or_else(|p| p.into_inner());
        while *closed {
            closed = self
                .changed
                .wait_timeout(closed, Duration::from_secs(30))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }
}

/// What a [`ColorBlobDetector`] saw, shared with the test.
#[derive(Debug, Default)]
pub struct DetectorLog {
    /// Frames detected.
    pub frames: AtomicU64,
    /// Runs (batches).
    pub runs: AtomicU64,
    /// Frames waiting at a closed gate now.
    pub waiting: AtomicU64,
    /// Tags of the frames, in the order seen.
    pub tags: Mutex<Vec<u32>>,
    /// What each frame costs, µs: the detector sleeps that long and reports
    /// it as inference time (0, the default: free).
    pub cost_us: AtomicU64,
}

impl DetectorLog {
    /// A copy of the tags seen so far.
    pub fn tags(&self) -> Vec<u32> {
        self.tags.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Finds every solid colour in a frame: one detection (score 0.9) per colour,
/// its box the bounding box of that colour's pixels (sampled every 2 pixels,
/// row 0 ignored). Blobs under 4 pixels a side are ignored.
#[derive(Debug)]
pub struct ColorBlobDetector {
    log: Arc<DetectorLog>,
    gate: Option<Arc<Gate>>,
    max_batch: usize,
    timings: StageTimings,
}

impl ColorBlobDetector {
    /// A detector logging into `log`, batching up to `max_batch` frames.
    pub fn new(log: Arc<DetectorLog>, max_batch: usize) -> Self {
        ColorBlobDetector {
            log,
            gate: None,
            max_batch: max_batch.max(1),
            timings: StageTimings::default(),
        }
    }

    /// Waits at `gate` before every run.
    pub fn with_gate(mut self, gate: Arc<Gate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// The blobs of `frame`.
    pub fn blobs(frame: &Picture<'_>) -> Vec<Detection> {
        with_rgb(frame, Self::rgb_blobs)
    }

    fn rgb_blobs(frame: &RgbFrame<'_>) -> Vec<Detection> {
        let (w, h, stride, d) = (
            frame.width() as usize,
            frame.height() as usize,
            frame.stride(),
            frame.data(),
        );
        // colour -> (x0, y0, x1, y1)
        let mut found: Vec<([u8; 3], [usize; 4])> = Vec::new();
        for y in (1..h).step_by(2) {
            for x in (0..w).step_by(2) {
                let i = y * stride + x * 3;
                let Some(c) = d.get(i..i + 3) else { continue };
                if c == [0, 0, 0] {
                    continue;
                }
                let c = [c[0], c[1], c[2]];
                match found.iter_mut().find(|(k, _)| *k == c) {
                    Some((_, b)) => {
                        b[0] = b[0].min(x);
                        b[1] = b[1].min(y);
                        b[2] = b[2].max(x);
                        b[3] = b[3].max(y);
                    }
                    None => found.push((c, [x, y, x, y])),
                }
            }
        }
        found
            .into_iter()
            .filter(|(_, b)| b[2] - b[0] >= 4 && b[3] - b[1] >= 4)
            .map(|(_, b)| Detection {
                bbox: BBox {
                    x: b[0] as f32,
                    y: b[1] as f32,
                    w: (b[2] - b[0] + 2) as f32,
                    h: (b[3] - b[1] + 2) as f32,
                },
                score: 0.9,
                class_id: 0,
            })
            .collect()
    }
}

impl Detector for ColorBlobDetector {
    fn name(&self) -> &str {
        "color-blobs"
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn detect_into(
        &mut self,
        frames: &[Picture<'_>],
        out: &mut Vec<Vec<Detection>>,
    ) -> Result<(), DetectError> {
        if let Some(g) = &self.gate {
            self.log
                .waiting
                .fetch_add(frames.len() as u64, Ordering::SeqCst);
            g.wait();
            self.log
                .waiting
                .fetch_sub(frames.len() as u64, Ordering::SeqCst);
        }
        let cost = self.log.cost_us.load(Ordering::SeqCst);
        if cost > 0 {
            let spent = Duration::from_micros(cost * frames.len() as u64);
            std::thread::sleep(spent);
            self.timings.inference += spent;
        }
        out.clear();
        for f in frames {
            self.log
                .tags
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(tag_of(f));
            out.push(Self::blobs(f));
        }
        self.log
            .frames
            .fetch_add(frames.len() as u64, Ordering::SeqCst);
        self.log.runs.fetch_add(1, Ordering::SeqCst);
        self.timings.frames += frames.len();
        self.timings.runs += 1;
        Ok(())
    }

    fn take_timings(&mut self) -> StageTimings {
        std::mem::take(&mut self.timings)
    }
}

/// Embeds a crop as the mean colour of its non-black pixels (dimension 3,
/// L2-normalised); a crop with no colour embeds as zero.
#[derive(Debug, Default)]
pub struct ColorEmbedder {
    /// Crops embedded so far.
    pub crops: Arc<AtomicU64>,
    gate: Option<Arc<Gate>>,
    timings: EmbedTimings,
}

impl ColorEmbedder {
    /// Waits at `gate` before every run.
    pub fn with_gate(mut self, gate: Arc<Gate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// The model tag every embedding of this embedder carries.
    pub const TAG: &'static str = "fake-color@000000000000";

    /// The embedding of `bbox` in `frame`.
    pub fn mean_color(frame: &Picture<'_>, bbox: &BBox) -> Embedding {
        with_rgb(frame, |rgb| Self::rgb_mean_color(rgb, bbox))
    }

    fn rgb_mean_color(frame: &RgbFrame<'_>, bbox: &BBox) -> Embedding {
        let (w, h, stride, d) = (
            frame.width() as f32,
            frame.height() as f32,
            frame.stride(),
            frame.data(),
        );
        let x0 = bbox.x.clamp(0.0, w) as usize;
        let x1 = (bbox.x + bbox.w).clamp(0.0, w) as usize;
        let y0 = bbox.y.clamp(1.0, h) as usize;
        let y1 = (bbox.y + bbox.h).clamp(0.0, h) as usize;
        let mut sum = [0f32; 3];
        for y in y0..y1 {
            for x in x0..x1 {
                let i = y * stride + x * 3;
                if let Some(c) = d.get(i..i + 3) {
                    if c != [0, 0, 0] {
                        for k in 0..3 {
                            sum[k] += f32::from(c[k]);
                        }
                    }
                }
            }
        }
        Embedding::normalized(&sum)
    }
}

impl Embedder for ColorEmbedder {
    fn name(&self) -> &str {
        "fake-color"
    }

    fn model_tag(&self) -> &str {
        Self::TAG
    }

    fn dim(&self) -> usize {
        3
    }

    fn max_batch(&self) -> usize {
        8
    }

    fn embed_into(
        &mut self,
        crops: &[Crop<'_>],
        out: &mut Vec<Embedding>,
    ) -> Result<(), ReidError> {
        if let Some(g) = &self.gate {
            g.wait();
        }
        out.clear();
        out.extend(crops.iter().map(|c| Self::mean_color(&c.frame, &c.bbox)));
        self.crops.fetch_add(crops.len() as u64, Ordering::SeqCst);
        self.timings.crops += crops.len();
        self.timings.runs += 1;
        Ok(())
    }

    fn take_timings(&mut self) -> EmbedTimings {
        std::mem::take(&mut self.timings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fig(color: [u8; 3], x: f32, y: f32) -> Figure {
        Figure {
            color,
            bbox: BBox {
                x,
                y,
                w: 20.0,
                h: 50.0,
            },
        }
    }

    #[test]
    fn the_detector_finds_what_was_drawn_and_the_embedder_tells_people_apart() {
        let red = fig([250, 30, 30], 10.0, 20.0);
        let green = fig([30, 250, 30], 100.0, 40.0);
        let px = draw(200, 120, 77, &[red, green]);
        let frame: Picture<'_> = RgbFrame::packed(200, 120, &px).expect("frame").into();
        assert_eq!(tag_of(&frame), 77);
        let dets = ColorBlobDetector::blobs(&frame);
        assert_eq!(dets.len(), 2, "{dets:?}");
        for (d, f) in dets.iter().zip([red, green]) {
            assert!((d.bbox.x - f.bbox.x).abs() <= 2.0, "{d:?} vs {f:?}");
            assert!((d.bbox.y - f.bbox.y).abs() <= 2.0, "{d:?} vs {f:?}");
            assert!((d.bbox.w - f.bbox.w).abs() <= 2.0, "{d:?} vs {f:?}");
            assert!((d.bbox.h - f.bbox.h).abs() <= 2.0, "{d:?} vs {f:?}");
        }
        let e_red = ColorEmbedder::mean_color(&frame, &dets[0].bbox);
        let e_green = ColorEmbedder::mean_color(&frame, &dets[1].bbox);
        let e_red2 = ColorEmbedder::mean_color(&frame, &red.bbox);
        assert!(e_red.cosine(&e_red2) > 0.999);
        assert!(e_red.cosine(&e_green) < 0.5);
    }
}
