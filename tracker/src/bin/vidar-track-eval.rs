//! `vidar-track-eval`: run the tracker over MOT files, make degraded
//! detections from ground truth, and score results.
//!
//! - `track --detections det.txt --out res.txt [--config tracker.toml] [--frame-size 640x480]`
//!   prints `{"frames":…,"detections":…,"seconds":…,"fps":…}` (time spent in
//!   `Tracker::update` only, excluding file I/O).
//! - `degrade --gt gt.txt --level easy|medium|hard|harsh --seed 1 --out det.txt`
//! - `score --gt gt.txt --results res.txt` prints CLEAR-MOT and IDF1 as JSON
//!   (ground truth rows with conf < 1 are ignored, as `motmetrics` with
//!   `min_confidence=1`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use vidar_config::Config;
use vidar_tracker::degrade::{degrade, Difficulty};
use vidar_tracker::eval::evaluate;
use vidar_tracker::mot::{by_frame, read_mot, write_mot, MotRecord};
use vidar_tracker::{Detection, FrameSize, TrackerConfig};

#[derive(Debug, Parser)]
#[command(
    name = "vidar-track-eval",
    about = "Vidar tracker evaluation on MOT Challenge files"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Track a MOT detections file and write a MOT results file.
    Track {
        /// MOT detections (id column ignored, conf = score).
        #[arg(long)]
        detections: PathBuf,
        /// Where to write the results.
        #[arg(long)]
        out: PathBuf,
        /// Tracker config (TOML); defaults when absent.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Camera resolution `WIDTHxHEIGHT` (e.g. 640x480); overrides the
        /// config's `frame_size`.
        #[arg(long, value_parser = parse_frame_size)]
        frame_size: Option<FrameSize>,
        /// Run the whole sequence this many times and report the fastest
        /// (results are written from the first run).
        #[arg(long, default_value_t = 1)]
        repeat: u32,
    },
    /// Make seeded degraded detections from ground truth.
    Degrade {
        /// MOT ground truth.
        #[arg(long)]
        gt: PathBuf,
        /// Difficulty: easy, medium, hard or harsh.
        #[arg(long)]
        level: Difficulty,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Where to write the detections.
        #[arg(long)]
        out: PathBuf,
    },
    /// Score a results file against ground truth (CLEAR-MOT, IDF1).
    Score {
        /// MOT ground truth.
        #[arg(long)]
        gt: PathBuf,
        /// MOT tracker results.
        #[arg(long)]
        results: PathBuf,
        /// Largest 1 - IoU distance of a match.
        #[arg(long, default_value_t = 0.5)]
        max_distance: f64,
    },
}

fn parse_frame_size(s: &str) -> Result<FrameSize, String> {
    let parse = |v: &str| v.trim().parse::<u32>().ok().filter(|n| *n > 0);
    match s.split_once(['x', 'X']) {
        Some((w, h)) => match (parse(w), parse(h)) {
            (Some(width), Some(height)) => Ok(FrameSize { width, height }),
            _ => Err(format!(
                "invalid frame size {s:?}: expected WIDTHxHEIGHT, e.g. 640x480"
            )),
        },
        None => Err(format!(
            "invalid frame size {s:?}: expected WIDTHxHEIGHT, e.g. 640x480"
        )),
    }
}

fn read(path: &Path) -> Result<Vec<MotRecord>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    read_mot(file).with_context(|| format!("reading {}", path.display()))
}

fn write(path: &Path, records: &[MotRecord]) -> Result<()> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    write_mot(BufWriter::new(file), records).with_context(|| format!("writing {}", path.display()))
}

fn load_config(path: Option<&Path>) -> Result<TrackerConfig> {
    let Some(path) = path else {
        return Ok(TrackerConfig::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading tracker config {}", path.display()))?;
    let config: TrackerConfig = toml::from_str(&text)
        .with_context(|| format!("parsing tracker config {}", path.display()))?;
    config
        .check()
        .with_context(|| format!("tracker config {}", path.display()))?;
    Ok(config)
}

/// Runs the tracker over every frame from 1 to the last one with detections.
fn track(
    frames: &[(u64, Vec<Detection>)],
    config: &TrackerConfig,
) -> Result<(Vec<MotRecord>, Duration)> {
    let mut tracker = config.build(&())?;
    let mut out = Vec::new();
    let mut busy = Duration::ZERO;
    let last = frames.last().map_or(0, |(f, _)| *f);
    let mut next = frames.iter().peekable();
    for frame in 1..=last {
        let dets: &[Detection] = match next.peek() {
            Some((f, d)) if *f == frame => {
                next.next();
                d
            }
            _ => &[],
        };
        let start = Instant::now();
        let result = tracker.update(frame, dets)?;
        busy += start.elapsed();
        out.extend(
            result
                .tracks
                .iter()
                .map(|t| MotRecord::new(frame, t.id.0 as i64, t.bbox, t.score)),
        );
    }
    Ok((out, busy))
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Track {
            detections,
            out,
            config,
            frame_size,
            repeat,
        } => {
            let mut config = load_config(config.as_deref())?;
            if frame_size.is_some() {
                config.frame_size = frame_size;
            }
            let records = read(&detections)?;
            let frames: Vec<(u64, Vec<Detection>)> = by_frame(&records)
                .into_iter()
                .map(|(f, recs)| {
                    (
                        f,
                        recs.iter()
                            .map(|r| Detection::new(r.bbox, r.conf))
                            .collect(),
                    )
                })
                .collect();
            if frames.first().is_some_and(|(f, _)| *f == 0) {
                bail!(
                    "{}: MOT frames are numbered from 1, found frame 0",
                    detections.display()
                );
            }
            let (results, mut best) = track(&frames, &config)?;
            for _ in 1..repeat {
                best = best.min(track(&frames, &config)?.1);
            }
            write(&out, &results)?;
            let n = frames.last().map_or(0, |(f, _)| *f);
            let secs = best.as_secs_f64();
            let fps = if secs > 0.0 {
                n as f64 / secs
            } else {
                f64::INFINITY
            };
            println!(
                "{{\"frames\":{n},\"detections\":{},\"seconds\":{secs:.9},\"fps\":{fps:.1}}}",
                records.len()
            );
        }
        Command::Degrade {
            gt,
            level,
            seed,
            out,
        } => {
            let gt_records = read(&gt)?;
            write(&out, &degrade(&gt_records, &level.config(), seed))?;
        }
        Command::Score {
            gt,
            results,
            max_distance,
        } => {
            let gt_records: Vec<MotRecord> =
                read(&gt)?.into_iter().filter(|r| r.conf >= 1.0).collect();
            let s = evaluate(&gt_records, &read(&results)?, max_distance);
            let (c, i) = (s.clear, s.id);
            println!(
                "{{\"mota\":{:.6},\"motp\":{:.6},\"idf1\":{:.6},\"idp\":{:.6},\"idr\":{:.6},\"num_switches\":{},\"num_false_positives\":{},\"num_misses\":{},\"num_matches\":{},\"num_objects\":{},\"num_predictions\":{},\"idtp\":{}}}",
                c.mota, c.motp, i.idf1, i.idp, i.idr, c.num_switches, c.num_false_positives, c.num_misses, c.num_matches, c.num_objects, c.num_predictions, i.idtp
            );
        }
    }
    std::io::stdout().flush()?;
    Ok(())
}

fn main() -> Result<()> {
    run(Cli::parse())
}
