//! Vidar's wire and domain types, at the bottom of the crate graph.
//!
//! This crate owns the types every other crate exchanges (ids, boxes, stream
//! status). It depends on serde only and does no I/O. Ids are newtypes that
//! validate when deserialised, so a hostile or malformed message cannot smuggle
//! an empty or oversized id into the system.

pub mod geometry;
pub mod ids;
pub mod stream;

pub use geometry::BBox;
pub use ids::{CameraId, IdError, IdentityId, NodeId, TrackId};
pub use stream::{StreamCounters, StreamState, StreamStatus};
