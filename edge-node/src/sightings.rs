//! Open tracks and the sightings they become: a confirmed track's box path
//! and identity, recorded when it ends and split every [`MAX_SIGHTING`].

use crate::recorder::SightingOut;
use std::time::Duration;
use vidar_protocol::{BBox, CameraId, IdentityId, TrackId, UnixMs};

/// A sighting longer than this is split, so a crash loses at most this much of
/// a track that is still open.
pub const MAX_SIGHTING: Duration = Duration::from_secs(10);

/// A confirmed track being followed: its identity and box path so far.
#[derive(Debug)]
pub(crate) struct OpenTrack {
    pub(crate) identity: Option<IdentityId>,
    /// A re-ID job for this track is in flight.
    pub(crate) pending: bool,
    /// Its identity is final (see `Identified::settled`).
    pub(crate) settled: bool,
    pub(crate) first_ms: UnixMs,
    pub(crate) last_ms: UnixMs,
    pub(crate) path: Vec<(UnixMs, BBox)>,
    /// When the track was first seen (sightings split, this does not move).
    pub(crate) born_ms: UnixMs,
    /// Crops handed to re-ID so far.
    pub(crate) crops_sent: u32,
    /// Best quality handed to re-ID so far.
    pub(crate) best_sent: f32,
    /// Detections of this track since the last crop was handed over.
    pub(crate) since_sent: u32,
}

impl OpenTrack {
    /// The sighting so far, taking the box path; the track continues from its last time.
    pub(crate) fn take_sighting(&mut self, camera: &CameraId, track: TrackId) -> SightingOut {
        let out = SightingOut {
            camera: camera.clone(),
            track,
            identity: self.identity,
            first_ms: self.first_ms,
            last_ms: self.last_ms,
            path: std::mem::take(&mut self.path),
        };
        self.first_ms = self.last_ms;
        out
    }
}
