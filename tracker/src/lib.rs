//! Vidar's multi-object tracker: turns per-frame detections into tracks.
//!
//! Pure and synchronous: no threads, clocks or I/O (the [`mot`] module reads
//! and writes MOT text through any `Read`/`Write`). One [`Tracker`] per
//! camera, or a [`MultiCameraTracker`] keyed by camera id.
//!
//! - [`kalman`]: constant-velocity Kalman filter on fixed-size nalgebra
//!   matrices; the filter keeps no per-track state.
//! - [`assignment`]: our Jonker-Volgenant (shortest augmenting path) solver,
//!   with gating and decomposition into independent sub-problems.
//! - [`tracker`]: ByteTrack-style three-stage association and the track
//!   lifecycle (tentative -> confirmed -> lost -> ended).
//! - [`mot`], [`eval`], [`degrade`]: MOT files, CLEAR-MOT/IDF1 scoring that
//!   agrees with `motmetrics`, and the seeded synthetic detector used to
//!   evaluate on real ground truth.
//!
//! ```
//! use vidar_config::Config;
//! use vidar_tracker::{BBox, BoxExt, Detection, TrackerConfig};
//!
//! let mut tracker = TrackerConfig::default().build(&())?;
//! for frame in 1..=3u64 {
//!     let x = 100.0 + 5.0 * frame as f32;
//!     let dets = [Detection::new(BBox::new(x, 50.0, 40.0, 100.0), 0.9)];
//!     let out = tracker.update(frame, &dets)?;
//!     assert_eq!(out.tracks.len(), 1); // confirmed on the stream's first frame
//! }
//! let ended = tracker.flush(); // end of stream: hand tracks to re-ID/storage
//! assert_eq!(ended.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod assignment;
pub mod config;
pub mod degrade;
pub mod error;
pub mod eval;
pub mod geometry;
pub mod kalman;
pub mod mot;
pub mod multi;
pub mod tracker;

pub use config::{AppearanceConfig, FrameSize, TrackerConfig};
pub use error::{ConfigError, MotError, TrackError};
pub use geometry::{BBox, BoxExt};
pub use kalman::MotionConfig;
pub use multi::MultiCameraTracker;
pub use tracker::{
    Detection, EndReason, EndedTrack, FrameResult, Predicted, TrackId, TrackOutput, TrackStatus,
    Tracker,
};
