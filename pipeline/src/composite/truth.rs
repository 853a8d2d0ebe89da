//! Ground-truth files of a composite scene.
//!
//! - Live (`vidar-camera --ground-truth DIR`), per mount, written as frames
//!   are pushed and flushed at least once a second:
//!   `DIR/<mount>.gt.csv`: `frame,unix_ms,person_id,x,y,w,h,visibility`, one
//!   row per person box (boxes clipped to the frame, pixels);
//!   `DIR/<mount>.frames.csv`: `frame,unix_ms`, one row per pushed frame
//!   (empty frames included, so a scorer knows which frames had nobody);
//!   `DIR/<mount>.people.csv`: `person_id,camera,file`, the images used.
//!   `frame` counts from 0 at start-up and keeps counting when a new client
//!   restarts the stream; `unix_ms` is the wall clock when the live
//!   pipeline asked for the frame, just before it was rendered and pushed (a
//!   receiver matches by capture time, after a constant latency).
//! - Offline: [`write_mot_ground_truth`], MOT Challenge format
//!   `frame,id,x,y,w,h,1,-1,-1,-1` with frames from 1, no GStreamer.

use super::{CompositeError, CompositeScene, TruthBox};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vidar_protocol::UnixMs;

/// Longest time rows stay buffered before they reach the file.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

fn create(path: &Path) -> Result<BufWriter<File>, CompositeError> {
    File::create(path)
        .map(BufWriter::new)
        .map_err(|source| CompositeError::Write {
            path: path.to_path_buf(),
            source,
        })
}

/// Writes the first `frames` frames' ground truth in MOT Challenge format
/// (`frame,id,x,y,w,h,1,-1,-1,-1`, frame numbers from 1) to `out`.
pub fn write_mot(scene: &CompositeScene, frames: u64, mut out: impl Write) -> std::io::Result<()> {
    for n in 0..frames {
        for b in scene.truth(n) {
            writeln!(
                out,
                "{},{},{},{},{},{},1,-1,-1,-1",
                n + 1,
                b.person_id,
                b.x,
                b.y,
                b.w,
                b.h
            )?;
        }
    }
    out.flush()
}

/// [`write_mot`] to the file `path`.
pub fn write_mot_ground_truth(
    scene: &CompositeScene,
    frames: u64,
    path: &Path,
) -> Result<(), CompositeError> {
    let out = create(path)?;
    write_mot(scene, frames, out).map_err(|source| CompositeError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `person_id,camera,file` for every person and scene camera.
pub fn write_people_csv(scene: &CompositeScene, path: &Path) -> Result<(), CompositeError> {
    let werr = |source| CompositeError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut out = create(path)?;
    writeln!(out, "person_id,camera,file").map_err(werr)?;
    for p in scene.people() {
        for (k, f) in p.files.iter().enumerate() {
            writeln!(out, "{},{k},{f}", p.person_id).map_err(werr)?;
        }
    }
    out.flush().map_err(werr)
}

/// Live ground truth of one mount (`<mount>.gt.csv` and `<mount>.frames.csv`).
#[derive(Debug)]
pub struct GroundTruthWriter {
    gt_path: PathBuf,
    frames_path: PathBuf,
    gt: BufWriter<File>,
    frames: BufWriter<File>,
    last_flush: Instant,
}

impl GroundTruthWriter {
    /// Creates (truncates) the files for `mount` in `dir` and writes headers.
    pub fn create(dir: &Path, mount: &str) -> Result<GroundTruthWriter, CompositeError> {
        let gt_path = dir.join(format!("{mount}.gt.csv"));
        let frames_path = dir.join(format!("{mount}.frames.csv"));
        let mut w = GroundTruthWriter {
            gt: create(&gt_path)?,
            frames: create(&frames_path)?,
            gt_path,
            frames_path,
            last_flush: Instant::now(),
        };
        let r = writeln!(w.gt, "frame,unix_ms,person_id,x,y,w,h,visibility");
        w.check(r, true)?;
        let r = writeln!(w.frames, "frame,unix_ms");
        w.check(r, false)?;
        w.flush()?;
        Ok(w)
    }

    fn check(&self, r: std::io::Result<()>, gt: bool) -> Result<(), CompositeError> {
        r.map_err(|source| CompositeError::Write {
            path: if gt {
                self.gt_path.clone()
            } else {
                self.frames_path.clone()
            },
            source,
        })
    }

    /// Records frame `frame`, pushed at `unix_ms`, with its boxes; flushes
    /// when the last flush is [`FLUSH_EVERY`] old.
    pub fn record(
        &mut self,
        frame: u64,
        unix_ms: UnixMs,
        boxes: &[TruthBox],
    ) -> Result<(), CompositeError> {
        let r = writeln!(self.frames, "{frame},{unix_ms}");
        self.check(r, false)?;
        for b in boxes {
            let r = writeln!(
                self.gt,
                "{frame},{unix_ms},{},{},{},{},{},{:.3}",
                b.person_id, b.x, b.y, b.w, b.h, b.visibility
            );
            self.check(r, true)?;
        }
        if self.last_flush.elapsed() >= FLUSH_EVERY {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes buffered rows to the files.
    pub fn flush(&mut self) -> Result<(), CompositeError> {
        self.last_flush = Instant::now();
        let r = self.gt.flush();
        self.check(r, true)?;
        let r = self.frames.flush();
        self.check(r, false)
    }
}

impl Drop for GroundTruthWriter {
    fn drop(&mut self) {
        // Best effort on the way out; errors were reported by record/flush.
        let _ = self.gt.flush();
        let _ = self.frames.flush();
    }
}
