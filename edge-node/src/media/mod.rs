//! Media: JPEG crops and snapshots of frames, crops received from other
//! nodes, and live tiles.

mod jpeg;
mod tiles;

pub use jpeg::{
    crop_jpeg, decode_crop, decode_jpeg, snapshot_jpeg, MAX_DECODED_SIDE, SNAPSHOT_MAX_SIDE,
};
pub use tiles::{TileFrame, TileSink, TILE_MAX_SIDE};
