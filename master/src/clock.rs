//! The wall clock, read in one place: milliseconds since the Unix epoch, the
//! unit of every timestamp the master stores, publishes or serves.
//!
//! The bottom layer of the crate: it depends on nothing else here. Code that
//! decides (the planner, [`crate::merges::MergeBook`]) takes the time as an
//! argument instead of reading this clock, so it stays testable.

/// Milliseconds since the Unix epoch, now (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_after_2020() {
        let t = now_ms();
        assert!(t > 1_577_836_800_000, "{t}");
    }
}
