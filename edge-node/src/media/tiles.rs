//! Live tiles: frames with their boxes, handed from the analysis loop to the
//! tile encoder.

use std::time::Duration;
use vidar_pipeline::Frame;
use vidar_protocol::{BBox, IdentityId, TrackId};

/// A frame with its boxes, for a live tile.
#[derive(Debug)]
pub struct TileFrame {
    /// The frame (moved, not copied).
    pub frame: Frame,
    /// Confirmed tracks in it: box, track id, identity when known.
    pub boxes: Vec<(BBox, TrackId, Option<IdentityId>)>,
}

/// Where frames for live tiles go, and how often.
#[derive(Debug)]
pub struct TileSink {
    /// To the tile encoder (bounded; a full queue skips the tile).
    pub tx: std::sync::mpsc::SyncSender<TileFrame>,
    /// One tile per camera per this period.
    pub every: Duration,
}

/// Longest side of a live tile, pixels.
pub const TILE_MAX_SIDE: u32 = 640;
