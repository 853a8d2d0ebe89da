//! Live camera tiles: the latest [`CameraTile`] of every camera, received on
//! `keys.tiles_all()`, with a broadcast of metadata updates for the browsers'
//! event streams. The routes that serve them are [`crate::http::tiles`]'s.
//!
//! Bounded: at most [`MAX_CAMERAS`] cameras; a camera without a tile for
//! [`STALE_AFTER`] is marked stale and its JPEG dropped, and it is forgotten
//! after [`FORGET_AFTER`]. The event channel holds [`EVENTS_CAPACITY`]
//! updates; a browser that lags behind skips the oldest and gets the current
//! list again. Undecodable tiles are counted by [`vidar_link::Garbage`], never trusted.
//! No HTTP here: this module only keeps tiles.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use serde::Serialize;
use tokio::sync::{broadcast, watch};
use vidar_link::{Link, LinkError, Subscription};
use vidar_protocol::messages::CameraTile;
use vidar_protocol::{BBox, CameraId, IdentityId, Keys, NodeId, StreamState, TrackId, UnixMs};

/// A camera without a tile for this long is stale (shown greyed, no JPEG).
pub const STALE_AFTER: Duration = Duration::from_secs(60);
/// A camera without a tile for this long is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// Most cameras kept; beyond, the one silent the longest is forgotten.
pub const MAX_CAMERAS: usize = 512;
/// Metadata updates buffered per browser before the oldest are skipped.
pub const EVENTS_CAPACITY: usize = 256;

/// One box drawn on a tile.
#[derive(Debug, Clone, Serialize)]
pub struct TileBoxOut {
    /// In the tile's pixels.
    pub bbox: BBox,
    /// The track.
    pub track: TrackId,
    /// Its identity, once re-ID gave it one.
    pub identity: Option<IdentityId>,
}

/// A tile's metadata, as the browser gets it.
#[derive(Debug, Clone, Serialize)]
pub struct TileMeta {
    /// The camera.
    pub camera: CameraId,
    /// The node ingesting it.
    pub node: NodeId,
    /// Its ingest state.
    pub state: StreamState,
    /// Frames per second from the source.
    pub fps: f64,
    /// Frames dropped since ingest started.
    pub dropped: u64,
    /// Capture time of the frame, ms since the epoch.
    pub captured_ms: UnixMs,
    /// JPEG width, pixels.
    pub width: u32,
    /// JPEG height, pixels.
    pub height: u32,
    /// The people in the frame.
    pub boxes: Vec<TileBoxOut>,
    /// When the master received it, ms since the epoch.
    pub received_ms: UnixMs,
    /// Increases with every tile of this camera (cache-busting for the JPEG).
    pub seq: u64,
    /// No tile for [`STALE_AFTER`]: the view is not live.
    pub stale: bool,
    /// Whether `/api/tiles/{camera}.jpg` has an image.
    pub has_image: bool,
}

#[derive(Debug)]
struct Entry {
    meta: TileMeta,
    jpeg: Bytes,
    at: Instant,
}

/// The latest tile of every camera.
#[derive(Debug)]
pub struct Tiles {
    entries: Mutex<HashMap<CameraId, Entry>>,
    events: broadcast::Sender<TileMeta>,
    closed: watch::Sender<bool>,
    seq: AtomicU64,
    received: AtomicU64,
    mismatched: AtomicU64,
}

impl Default for Tiles {
    fn default() -> Self {
        Tiles {
            entries: Mutex::new(HashMap::new()),
            events: broadcast::channel(EVENTS_CAPACITY).0,
            closed: watch::channel(false).0,
            seq: AtomicU64::new(0),
            received: AtomicU64::new(0),
            mismatched: AtomicU64::new(0),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Tiles {
    /// Keeps `tile` as its camera's latest and tells the browsers.
    pub fn put(&self, tile: CameraTile) {
        self.received.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let meta = TileMeta {
            camera: tile.camera.clone(),
            node: tile.node,
            state: tile.state,
            fps: tile.fps,
            dropped: tile.dropped,
            captured_ms: tile.captured_ms,
            width: tile.width,
            height: tile.height,
            boxes: tile
                .boxes
                .into_iter()
                .map(|b| TileBoxOut {
                    bbox: b.bbox,
                    track: b.track,
                    identity: b.identity,
                })
                .collect(),
            received_ms: UnixMs::now(),
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            stale: false,
            has_image: !tile.jpeg.is_empty(),
        };
        {
            let mut entries = lock(&self.entries);
            prune(&mut entries, now);
            if entries.len() >= MAX_CAMERAS && !entries.contains_key(&tile.camera) {
                if let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, e)| e.at)
                    .map(|(c, _)| c.clone())
                {
                    entries.remove(&oldest);
                }
            }
            entries.insert(
                tile.camera,
                Entry {
                    meta: meta.clone(),
                    jpeg: Bytes::from(tile.jpeg),
                    at: now,
                },
            );
        }
        // No browser listening is not an error.
        let _ = self.events.send(meta);
    }

    /// Every camera's latest metadata, by camera id.
    pub fn list(&self) -> Vec<TileMeta> {
        let now = Instant::now();
        let mut entries = lock(&self.entries);
        prune(&mut entries, now);
        let mut out: Vec<TileMeta> = entries.values().map(|e| e.meta.clone()).collect();
        out.sort_by(|a, b| a.camera.as_str().cmp(b.camera.as_str()));
        out
    }

    /// The latest JPEG of `camera`, unless stale.
    pub fn jpeg(&self, camera: &CameraId) -> Option<Bytes> {
        let now = Instant::now();
        let mut entries = lock(&self.entries);
        prune(&mut entries, now);
        entries
            .get(camera)
            .filter(|e| !e.meta.stale && !e.jpeg.is_empty())
            .map(|e| e.jpeg.clone())
    }

    /// Tiles received since start.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Tiles whose key named another node or camera than their content.
    pub fn mismatched(&self) -> u64 {
        self.mismatched.load(Ordering::Relaxed)
    }

    /// A receiver of every metadata update from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<TileMeta> {
        self.events.subscribe()
    }

    /// A receiver that turns `true` when [`close`](Self::close) is called.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closed.subscribe()
    }

    /// Ends every event stream (the HTTP server is stopping).
    pub fn close(&self) {
        let _ = self.closed.send(true);
    }
}

fn prune(entries: &mut HashMap<CameraId, Entry>, now: Instant) {
    entries.retain(|_, e| now.duration_since(e.at) < FORGET_AFTER);
    for e in entries.values_mut() {
        if !e.meta.stale && now.duration_since(e.at) >= STALE_AFTER {
            e.meta.stale = true;
            e.meta.has_image = false;
            e.jpeg = Bytes::new();
        }
    }
}

/// Subscribes `tiles` to every camera's tiles.
pub fn attach(link: &Link, keys: &Keys, tiles: &Arc<Tiles>) -> Result<Subscription, LinkError> {
    let (t, k) = (tiles.clone(), keys.clone());
    link.subscribe(&keys.tiles_all(), move |key, tile: CameraTile| {
        let Some((node, camera)) = k.tile_from_key(key) else {
            return;
        };
        if tile.node != node || tile.camera != camera {
            t.mismatched.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(key, node = %tile.node, camera = %tile.camera, "tile refused: its key names another node or camera");
            return;
        }
        t.put(tile);
    })
}
