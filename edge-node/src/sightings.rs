//! Open tracks and the sightings they become: a confirmed track's box path
//! and identity, recorded when it ends and split every [`MAX_SIGHTING`].

use crate::recorder::SightingOut;
use std::time::Duration;
use vidar_protocol::{BBox, CameraId, IdentityId, TrackId, UnixMs};

/// A sighting longer than this is split, so a crash loses at most this much of
/// a track that is still open.
pub const MAX_SIGHTING: Duration = Duration::from_secs(10);

/// A track whose identity was minted and may still join a known one
/// (`Worker::reconsider`) is not cut before it is this old: a piece recorded
/// under the minted identity would stay there when the track joins, a
/// stretch of the person's trajectory under an identity nobody else has.
/// Bounds what a crash can lose of such a track.
pub const MAX_UNSETTLED_HOLD: Duration = Duration::from_secs(30);

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
    /// Whether its identity may still change: minted, and re-ID may still
    /// look at views of it (one in flight, or fewer than the `looks` it
    /// takes of a track).
    pub(crate) fn may_still_join(&self, looks: u32) -> bool {
        self.identity.is_some() && !self.settled && (self.pending || self.crops_sent < looks)
    }

    /// Whether the sighting so far is due to be recorded (the track goes
    /// on): it has an identity and spans `limit_ms`, and its identity is
    /// final or it has been held [`MAX_UNSETTLED_HOLD`] already.
    pub(crate) fn due(&self, limit_ms: i64, looks: u32) -> bool {
        let hold = i64::try_from(MAX_UNSETTLED_HOLD.as_millis()).unwrap_or(i64::MAX);
        self.identity.is_some()
            && self.last_ms - self.first_ms >= limit_ms
            && (!self.may_still_join(looks) || self.last_ms - self.born_ms >= hold)
    }

    /// A frame the detector skipped: the track's predicted box at `now`
    /// joins its path (the person was there as far as the tracker knows).
    pub(crate) fn coast(&mut self, now: UnixMs, bbox: BBox) {
        if now <= self.last_ms {
            return;
        }
        self.last_ms = now;
        self.path.push((now, bbox));
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Views re-ID takes of a track here.
    const LOOKS: u32 = 4;

    fn open(settled: bool, crops_sent: u32, born: i64, first: i64, last: i64) -> OpenTrack {
        OpenTrack {
            identity: Some(IdentityId(5)),
            pending: false,
            settled,
            first_ms: UnixMs(first),
            last_ms: UnixMs(last),
            path: Vec::new(),
            born_ms: UnixMs(born),
            crops_sent,
            best_sent: 0.5,
            since_sent: 0,
        }
    }

    #[test]
    fn a_minted_track_that_may_still_join_is_held_and_not_for_ever() {
        let limit = 10_000;
        // Settled (a known identity, or joined): cut at the limit.
        assert!(!open(true, 3, 0, 0, 9_999).due(limit, LOOKS));
        assert!(open(true, 3, 0, 0, 10_000).due(limit, LOOKS));
        // Minted, still looked at: held past the limit ...
        let mut t = open(false, 3, 0, 0, 12_000);
        assert!(t.may_still_join(LOOKS) && !t.due(limit, LOOKS));
        // ... until re-ID has seen all the views it looks at ...
        t.crops_sent = LOOKS;
        assert!(t.due(limit, LOOKS));
        t.pending = true;
        assert!(!t.due(limit, LOOKS), "its last view is still in flight");
        // ... or the hold is over.
        let held = i64::try_from(MAX_UNSETTLED_HOLD.as_millis()).expect("ms");
        assert!(open(false, 3, 0, 0, held).due(limit, LOOKS));
        // Later pieces of a long track follow the same rule.
        assert!(!open(false, 3, 0, held - 10_000, held - 1).due(limit, LOOKS));
        // No identity yet: nothing to record.
        let mut none = open(true, 3, 0, 0, held);
        none.identity = None;
        assert!(!none.due(limit, LOOKS));
    }
}
