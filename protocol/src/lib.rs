//! Vidar's wire and domain types, at the bottom of the crate graph.
//!
//! This crate owns the types every other crate exchanges (ids, boxes, stream
//! status, stored records) and every message between Vidar processes: their
//! shapes ([`messages`]), their encoding ([`wire::encode`], [`wire::decode`]) and
//! the zenoh key expressions they travel on ([`keys::Keys`]). It depends on serde
//! and postcard only, does no I/O (it reads the wall clock, in [`time`]) and knows nothing of zenoh. Ids are newtypes
//! that validate when deserialised, and every message is validated when decoded,
//! so a hostile or malformed message cannot smuggle an empty or oversized id, a
//! NaN or an unbounded buffer into the system.
//!
//! ```
//! use vidar_protocol::keys::Keys;
//! use vidar_protocol::messages::MergeAnnounce;
//! use vidar_protocol::wire::{decode, encode};
//! use vidar_protocol::{IdentityId, UnixMs};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let keys = Keys::new("plant-3")?;
//! let merge = MergeAnnounce { from: IdentityId(7), into: IdentityId(2), decided_ms: UnixMs(1) };
//! let payload = encode(&merge)?; // published on keys.merges()
//! assert_eq!(keys.merges(), "vidar/plant-3/merges");
//! assert_eq!(decode::<MergeAnnounce>(&payload)?, merge);
//! # Ok(()) }
//! ```

mod bounded;
mod bytes;
pub mod geometry;
pub mod ids;
pub mod keys;
pub mod messages;
pub mod record;
pub mod secret;
pub mod stream;
pub mod time;
pub mod wire;

pub use geometry::BBox;
pub use ids::{CameraId, IdError, IdentityId, JobId, NodeId, StageId, TrackId};
pub use keys::{Keys, NodeKey};
pub use stream::{StreamCounters, StreamState, StreamStatus};
pub use time::UnixMs;
pub use wire::{decode, encode, peek, DecodeError, EncodeError, Message, MessageKind};
