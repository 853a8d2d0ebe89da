//! Wall-clock time in milliseconds since the Unix epoch (0 when the clock is
//! before 1970), read through [`vidar_protocol::time`] like every other
//! crate's.

pub use vidar_protocol::time::{ms_of, now_ms};
