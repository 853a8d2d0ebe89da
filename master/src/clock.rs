//! The wall clock, milliseconds since the Unix epoch: the unit of every
//! timestamp the master stores, publishes or serves, read through
//! [`vidar_protocol::time`] like every other crate's.
//!
//! The bottom layer of the crate: it depends on nothing else here. Code that
//! decides (the planner, [`crate::merges::MergeBook`]) takes the time as an
//! argument instead of reading this clock, so it stays testable.

pub use vidar_protocol::time::now_ms;
