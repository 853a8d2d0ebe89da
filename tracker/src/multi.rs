//! Per-camera trackers behind one handle, keyed by the caller's camera id.
//!
//! Owns one [`Tracker`] per camera, created on the camera's first frame with
//! the shared config. Track ids are per camera: the pair (camera, track id)
//! is unique. Generic over the key so the protocol crate's `CameraId` (or
//! anything `Eq + Hash + Clone`) can be used.

use std::collections::HashMap;
use std::hash::Hash;
use vidar_config::Config;

use crate::config::TrackerConfig;
use crate::error::{ConfigError, TrackError};
use crate::tracker::{Detection, EndedTrack, FrameResult, Tracker};

/// One tracker per camera, all with the same configuration.
#[derive(Debug, Clone)]
pub struct MultiCameraTracker<C> {
    config: TrackerConfig,
    trackers: HashMap<C, Tracker>,
}

impl<C: Eq + Hash + Clone> MultiCameraTracker<C> {
    /// Validates the config; trackers are created lazily per camera.
    pub fn new(config: TrackerConfig) -> Result<Self, ConfigError> {
        config.check()?;
        Ok(Self {
            config,
            trackers: HashMap::new(),
        })
    }

    /// Processes one frame of `camera` (see [`Tracker::update`]).
    pub fn update(
        &mut self,
        camera: &C,
        frame: u64,
        detections: &[Detection],
    ) -> Result<FrameResult, TrackError> {
        if let Some(tracker) = self.trackers.get_mut(camera) {
            return tracker.update(frame, detections);
        }
        let mut tracker = Tracker::new_unchecked(self.config.clone());
        let result = tracker.update(frame, detections);
        self.trackers.insert(camera.clone(), tracker);
        result
    }

    /// Removes a camera, ending all its tracks.
    pub fn remove_camera(&mut self, camera: &C) -> Vec<EndedTrack> {
        self.trackers
            .remove(camera)
            .map(|mut t| t.flush())
            .unwrap_or_default()
    }

    /// Number of cameras with a tracker.
    pub fn cameras(&self) -> usize {
        self.trackers.len()
    }

    /// The tracker of one camera, if it has seen a frame.
    pub fn get(&self, camera: &C) -> Option<&Tracker> {
        self.trackers.get(camera)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{BBox, BoxExt};

    #[test]
    fn cameras_are_independent() {
        let mut multi = MultiCameraTracker::new(TrackerConfig::default()).expect("valid");
        let det = [Detection::new(BBox::new(10.0, 10.0, 20.0, 50.0), 0.9)];
        let a = multi.update(&"cam-a", 1, &det).expect("in order");
        let b = multi.update(&"cam-b", 1, &det).expect("in order");
        assert_eq!(multi.cameras(), 2);
        // Each camera numbers its own tracks from 1.
        assert_eq!(a.tracks[0].id, b.tracks[0].id);
        // Frame order is per camera: cam-a at frame 1 again is an error, cam-b at 2 is fine.
        assert!(multi.update(&"cam-a", 1, &det).is_err());
        assert!(multi.update(&"cam-b", 2, &det).is_ok());
        let ended = multi.remove_camera(&"cam-a");
        assert_eq!(ended.len(), 1);
        assert_eq!(multi.cameras(), 1);
    }

    #[test]
    fn keyed_by_the_protocol_camera_id() {
        let cam = vidar_protocol::CameraId::new("lobby.east").expect("valid id");
        let mut multi = MultiCameraTracker::new(TrackerConfig::default()).expect("valid");
        let det = [Detection::new(BBox::new(10.0, 10.0, 20.0, 50.0), 0.9)];
        assert_eq!(multi.update(&cam, 1, &det).expect("ok").tracks.len(), 1);
        assert!(multi.get(&cam).is_some_and(|t| t.live_tracks() == 1));
    }
}
