//! Wall-clock time in milliseconds since the Unix epoch: the one helper the
//! node uses (0 when the clock is before 1970).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch of `t`.
pub fn ms_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    ms_of(SystemTime::now())
}
