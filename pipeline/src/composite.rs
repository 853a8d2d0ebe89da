//! A composite scene with ground truth: labelled person images (a re-id data
//! set folder with `labels.csv`) walked across a static street background, as
//! several cameras see the same people one after another.
//!
//! Scene camera `K` shows the images of data-set camera `K`, so two mounts of
//! one scene show different views of the same identities. Every person of the
//! scene enters camera 0 at a seeded time, crosses the street at walking pace
//! (scaled for perspective), leaves, and enters camera `K + 1` a seeded transit
//! time after leaving camera `K`. The schedule repeats every
//! [`CompositeScene::period_frames`] frames with the same people.
//!
//! Frame `n` of a mount is a pure function of the spec (seed included), the
//! labelled images, the background and `n`; so is its ground truth
//! ([`CompositeScene::truth`]): one box per person in view with the share of
//! it that is visible. Mounts of one scene must share every parameter except
//! `camera`, and their backgrounds must have one size.
//!
//! Split by concern: [`labels`] (the data-set folder), [`background`] (median
//! of a video, or an image), [`plan`] (who walks where, when), [`render`]
//! (pasting and truth), [`truth`] (ground-truth files) and [`serve`] (the RTSP
//! mounts of `vidar-camera`). Only `background` and `serve` use GStreamer.
//! The images are research-use-only data: this module reads them at run time
//! from the folder it is given and never writes them anywhere.

pub mod background;
pub mod labels;
pub mod plan;
pub mod render;
pub mod serve;
pub mod truth;

pub use background::Background;
pub use labels::{Labels, PersonImages};
pub use plan::{Plan, Walk};
pub use render::{CompositeScene, TruthBox};
pub use truth::{write_mot_ground_truth, write_people_csv, GroundTruthWriter};

use std::path::PathBuf;

/// The default background video (a pedestrian street, 768x576).
pub const DEFAULT_BACKGROUND: &str = "/usr/share/doc/opencv-doc/examples/data/vtest.avi";

/// Errors of the composite scene. Messages name the path or parameter.
#[derive(Debug, thiserror::Error)]
pub enum CompositeError {
    /// A query parameter is missing, unknown or out of range.
    #[error("composite parameter {name}: {reason}")]
    Param {
        /// The parameter name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The labelled folder or its `labels.csv` cannot be used.
    #[error("labelled people folder {path}: {reason}")]
    Labels {
        /// The folder or file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A person image is missing or cannot be decoded.
    #[error("person image {path}: {reason}")]
    Image {
        /// The image file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Not enough people have images on every camera of the scene.
    #[error("labelled people folder {path}: {reason}")]
    NoPeople {
        /// The folder.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// The background image or video cannot be used.
    #[error("background {path}: {reason}")]
    Background {
        /// The image or video.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Writing ground truth failed.
    #[error("writing ground truth {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Building or starting the GStreamer side failed.
    #[error("composite camera: {0}")]
    Gst(String),
}

impl CompositeError {
    fn param(name: &str, reason: impl Into<String>) -> CompositeError {
        CompositeError::Param {
            name: name.into(),
            reason: reason.into(),
        }
    }
}

/// Parameters of a composite scene mount (`composite:?people=DIR&camera=K&...`).
#[derive(Debug, Clone, PartialEq)]
pub struct CompositeSpec {
    /// Labelled folder with `labels.csv` (`file,person_id,camera`). Required.
    pub people: PathBuf,
    /// Scene camera shown by this mount; shows data-set camera `camera`. Default 0.
    pub camera: u32,
    /// Number of cameras in the chain; people are drawn among those with images
    /// on all of them. Default `max(2, camera + 1)`.
    pub cameras: u32,
    /// Seed of the selection, paths and times. Default 1.
    pub seed: u64,
    /// Frames per second (1..=60). Default 10.
    pub fps: u32,
    /// Number of people (1..=1000). Default 12.
    pub count: u32,
    /// Mean transit time between consecutive cameras, seconds (0..=3600;
    /// each person gets 0.7..1.3 of it). Default 8.
    pub transit_s: f64,
    /// Mean time between arrivals at camera 0, seconds (0.1..=600; each gap
    /// is 0.3..1.7 of it). Default 3.
    pub gap_s: f64,
    /// Person height at the bottom of the walking band, pixels. Default
    /// 160 * frame height / 576.
    pub near_px: Option<u32>,
    /// Person height at the top of the walking band, pixels. Default
    /// 80 * frame height / 576.
    pub far_px: Option<u32>,
    /// Top of the walking band (feet line), fraction of the height. Default 0.4.
    pub top: f32,
    /// Bottom of the walking band (feet line), fraction of the height. Default 0.98.
    pub bottom: f32,
    /// Background image (PNG/JPEG/PPM) or video (per-pixel median of
    /// `bg_frames` frames). Default [`DEFAULT_BACKGROUND`].
    pub background: Option<PathBuf>,
    /// Frames of the background video the median is taken over (3..=500). Default 40.
    pub bg_frames: u32,
    /// Width of the soft edge of pasted images, pixels (0..=16). Default 2.
    pub feather: u32,
    /// Probability that a person walks on to the next camera (0..=1). Default 1.
    pub onward: f64,
    /// Only people whose id is in this range (inclusive) are drawn
    /// (`ids=LO-HI`), e.g. those a re-ID model was not adapted on. Default:
    /// every id.
    pub ids: Option<vidar_protocol::ids::IdRange>,
}

impl CompositeSpec {
    /// A spec with defaults for the folder `people`.
    pub fn new(people: impl Into<PathBuf>) -> CompositeSpec {
        CompositeSpec {
            people: people.into(),
            camera: 0,
            cameras: 2,
            seed: 1,
            fps: 10,
            count: 12,
            transit_s: 8.0,
            gap_s: 3.0,
            near_px: None,
            far_px: None,
            top: 0.4,
            bottom: 0.98,
            background: None,
            bg_frames: 40,
            feather: 2,
            onward: 1.0,
            ids: None,
        }
    }

    /// Parses `key=value&...` (the part after `composite:?`). Keys: people,
    /// camera, cameras, seed, fps, count, transit, gap, near, far, top, bottom,
    /// background, bgframes, feather, onward, ids.
    pub fn from_query(query: &str) -> Result<CompositeSpec, CompositeError> {
        let mut people = None;
        let mut spec = CompositeSpec::new("");
        let mut cameras = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| CompositeError::param(pair, format!("{pair:?} is not key=value")))?;
            let int = |max: u64| -> Result<u64, CompositeError> {
                match v.parse::<u64>() {
                    Ok(n) if n <= max => Ok(n),
                    _ => Err(CompositeError::param(
                        k,
                        format!("{v:?} is not an integer in 0..={max}"),
                    )),
                }
            };
            let real = || -> Result<f64, CompositeError> {
                v.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| CompositeError::param(k, format!("{v:?} is not a number")))
            };
            match k {
                "people" => people = Some(PathBuf::from(v)),
                "camera" => spec.camera = int(63)? as u32,
                "cameras" => cameras = Some(int(64)? as u32),
                "seed" => spec.seed = int(u64::MAX)?,
                "fps" => spec.fps = int(1000)? as u32,
                "count" => spec.count = int(100_000)? as u32,
                "transit" => spec.transit_s = real()?,
                "gap" => spec.gap_s = real()?,
                "near" => spec.near_px = Some(int(100_000)? as u32),
                "far" => spec.far_px = Some(int(100_000)? as u32),
                "top" => spec.top = real()? as f32,
                "bottom" => spec.bottom = real()? as f32,
                "background" => spec.background = Some(PathBuf::from(v)),
                "bgframes" => spec.bg_frames = int(100_000)? as u32,
                "feather" => spec.feather = int(1000)? as u32,
                "onward" => spec.onward = real()?,
                "ids" => spec.ids = Some(v.parse().map_err(|e| CompositeError::param(k, e))?),
                other => {
                    return Err(CompositeError::param(
                        other,
                        "unknown (known: people, camera, cameras, seed, fps, count, transit, \
                         gap, near, far, top, bottom, background, bgframes, feather, onward, ids)",
                    ))
                }
            }
        }
        spec.people = people.ok_or_else(|| {
            CompositeError::param("people", "missing: give the labelled folder, people=DIR")
        })?;
        spec.cameras = cameras.unwrap_or(spec.cameras.max(spec.camera + 1));
        spec.validate()?;
        Ok(spec)
    }

    /// Checks ranges; the error names the first bad parameter.
    pub fn validate(&self) -> Result<(), CompositeError> {
        let p = |name: &str, reason: String| CompositeError::param(name, reason);
        if self.people.as_os_str().is_empty() {
            return Err(p("people", "empty path".into()));
        }
        if !(1..=64).contains(&self.cameras) {
            return Err(p("cameras", format!("{} must be in 1..=64", self.cameras)));
        }
        if self.camera >= self.cameras {
            return Err(p(
                "camera",
                format!("{} must be below cameras={}", self.camera, self.cameras),
            ));
        }
        if !(1..=60).contains(&self.fps) {
            return Err(p("fps", format!("{} must be in 1..=60", self.fps)));
        }
        if !(1..=1000).contains(&self.count) {
            return Err(p("count", format!("{} must be in 1..=1000", self.count)));
        }
        if !(0.0..=3600.0).contains(&self.transit_s) {
            return Err(p(
                "transit",
                format!("{} s must be in 0..=3600", self.transit_s),
            ));
        }
        if !(0.1..=600.0).contains(&self.gap_s) {
            return Err(p("gap", format!("{} s must be in 0.1..=600", self.gap_s)));
        }
        for (name, v) in [("near", self.near_px), ("far", self.far_px)] {
            if let Some(v) = v {
                if !(8..=4000).contains(&v) {
                    return Err(p(name, format!("{v} px must be in 8..=4000")));
                }
            }
        }
        if !(0.0..1.0).contains(&self.top)
            || !(0.0..=1.0).contains(&self.bottom)
            || self.bottom - self.top < 0.05
        {
            return Err(p(
                "top",
                format!(
                    "walking band top={} bottom={} must satisfy 0 <= top < bottom - 0.05 <= 0.95",
                    self.top, self.bottom
                ),
            ));
        }
        if !(3..=500).contains(&self.bg_frames) {
            return Err(p(
                "bgframes",
                format!("{} must be in 3..=500", self.bg_frames),
            ));
        }
        if self.feather > 16 {
            return Err(p(
                "feather",
                format!("{} px must be at most 16", self.feather),
            ));
        }
        if !(0.0..=1.0).contains(&self.onward) {
            return Err(p("onward", format!("{} must be in 0..=1", self.onward)));
        }
        Ok(())
    }

    /// The background path: the given one or [`DEFAULT_BACKGROUND`].
    pub fn background_path(&self) -> PathBuf {
        self.background
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_BACKGROUND))
    }

    /// Person heights (far, near) in pixels for a frame `height` pixels tall.
    pub fn heights_px(&self, height: u32) -> (f32, f32) {
        let scale = height as f32 / 576.0;
        let far = self.far_px.map_or(80.0 * scale, |v| v as f32);
        let near = self.near_px.map_or(160.0 * scale, |v| v as f32);
        (far, near)
    }
}

/// Parses a `composite:?...` source string; `None` when it is not one.
pub fn parse_source(source: &str) -> Option<Result<CompositeSpec, CompositeError>> {
    let rest = source.trim().strip_prefix("composite:")?;
    let query = rest.trim_start_matches("//").trim_start_matches('?');
    Some(CompositeSpec::from_query(query))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_query_with_defaults_and_names_bad_parameters() {
        let s = CompositeSpec::from_query("people=/d&camera=1&seed=7&transit=4.5").expect("spec");
        assert_eq!(s.people, PathBuf::from("/d"));
        assert_eq!((s.camera, s.cameras, s.seed, s.fps), (1, 2, 7, 10));
        assert_eq!(s.transit_s, 4.5);
        let s = CompositeSpec::from_query("people=/d&camera=2").expect("spec");
        assert_eq!(s.cameras, 3);
        assert_eq!(s.ids, None);
        let s = CompositeSpec::from_query("people=/d&ids=1-200").expect("spec");
        assert_eq!(s.ids, Some(vidar_protocol::ids::IdRange { lo: 1, hi: 200 }));
        for (q, name) in [
            ("camera=1", "people"),
            ("people=/d&fps=0", "fps"),
            ("people=/d&fps=x", "fps"),
            ("people=/d&count=0", "count"),
            ("people=/d&camera=2&cameras=2", "camera"),
            ("people=/d&gap=-1", "gap"),
            ("people=/d&colour=red", "colour"),
            ("people=/d&onward=2", "onward"),
            ("people=/d&top=0.9&bottom=0.5", "top"),
            ("people=/d&ids=9-3", "ids"),
            ("people=/d&ids=1..200", "ids"),
        ] {
            let e = CompositeSpec::from_query(q).expect_err(q).to_string();
            assert!(e.contains(name), "{q}: {e}");
        }
        assert!(parse_source("synthetic:?fps=3").is_none());
        assert!(parse_source("composite:?people=/x").is_some_and(|r| r.is_ok()));
    }
}
