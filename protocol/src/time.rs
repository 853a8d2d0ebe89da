//! Wall-clock time as every record, plan and status carries it: milliseconds
//! since the Unix epoch. The clock is read here and nowhere else; code that
//! decides (planners, galleries, merge books) takes the time as an argument
//! instead, so it stays testable.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch of `t` (0 before 1970, saturating far
/// in the future).
pub fn ms_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    ms_of(SystemTime::now())
}

/// [`now_ms`] as SQLite stores integers (saturating at `i64::MAX`).
pub fn now_ms_i64() -> i64 {
    i64::try_from(now_ms()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn now_is_after_2020_and_before_the_epoch_is_zero() {
        assert!(now_ms() > 1_577_836_800_000);
        assert!(now_ms_i64() > 1_577_836_800_000);
        assert_eq!(ms_of(UNIX_EPOCH - Duration::from_secs(1)), 0);
        assert_eq!(ms_of(UNIX_EPOCH + Duration::from_millis(1500)), 1500);
    }
}
