//! Wall-clock time as every record, plan, status and gallery carries it:
//! [`UnixMs`], milliseconds since the Unix epoch. The clock is read here and
//! nowhere else ([`UnixMs::now`]); code that decides (planners, galleries,
//! merge books) takes the time as an argument instead, so it stays testable.
//!
//! One type end to end: SQLite stores it as its integer, the wire as a
//! postcard `i64`, JSON as a number. Differences between two instants are
//! signed milliseconds ([`UnixMs::since`]); spans added to an instant are
//! [`Duration`]s or milliseconds, saturating, never wrapping.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An instant of wall-clock time: milliseconds since the Unix epoch (UTC).
///
/// Negative values are before 1970; arithmetic saturates at the ends of
/// `i64`, so [`UnixMs::MAX`] works as "open" or "never".
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct UnixMs(pub i64);

impl UnixMs {
    /// The epoch itself (also the default).
    pub const EPOCH: UnixMs = UnixMs(0);
    /// The latest representable instant: "open", "never", "no bound".
    pub const MAX: UnixMs = UnixMs(i64::MAX);
    /// The earliest representable instant: "no bound".
    pub const MIN: UnixMs = UnixMs(i64::MIN);

    /// Now, from the system clock.
    pub fn now() -> UnixMs {
        UnixMs::of(SystemTime::now())
    }

    /// `t` as milliseconds since the epoch (saturating far from it).
    pub fn of(t: SystemTime) -> UnixMs {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => UnixMs(ms(d)),
            Err(e) => UnixMs(-ms(e.duration())),
        }
    }

    /// The milliseconds since the epoch.
    pub const fn ms(self) -> i64 {
        self.0
    }

    /// Signed milliseconds from `earlier` to `self` (negative when `earlier`
    /// is later), saturating.
    pub const fn since(self, earlier: UnixMs) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    /// The time from `earlier` to `self`, zero when `earlier` is later.
    pub fn elapsed_since(self, earlier: UnixMs) -> Duration {
        Duration::from_millis(u64::try_from(self.since(earlier)).unwrap_or(0))
    }

    /// How far apart `self` and `other` are, in milliseconds.
    pub const fn abs_diff(self, other: UnixMs) -> u64 {
        self.0.abs_diff(other.0)
    }

    /// `ms` milliseconds later (earlier when negative), saturating.
    pub const fn add_ms(self, ms: i64) -> UnixMs {
        UnixMs(self.0.saturating_add(ms))
    }

    /// `d` later, saturating.
    pub fn plus(self, d: Duration) -> UnixMs {
        self.add_ms(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    /// `d` earlier, saturating.
    pub fn minus(self, d: Duration) -> UnixMs {
        self.add_ms(-i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    /// As a [`SystemTime`] (the epoch for instants before it).
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(u64::try_from(self.0).unwrap_or(0))
    }
}

impl fmt::Display for UnixMs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// `t + ms`: `ms` milliseconds later (earlier when negative), saturating.
impl std::ops::Add<i64> for UnixMs {
    type Output = UnixMs;
    fn add(self, ms: i64) -> UnixMs {
        self.add_ms(ms)
    }
}

impl std::ops::AddAssign<i64> for UnixMs {
    fn add_assign(&mut self, ms: i64) {
        *self = self.add_ms(ms);
    }
}

/// `t - ms`: `ms` milliseconds earlier, saturating.
impl std::ops::Sub<i64> for UnixMs {
    type Output = UnixMs;
    fn sub(self, ms: i64) -> UnixMs {
        self.add_ms(ms.saturating_neg())
    }
}

/// `a - b`: signed milliseconds from `b` to `a` ([`UnixMs::since`]).
impl std::ops::Sub for UnixMs {
    type Output = i64;
    fn sub(self, earlier: UnixMs) -> i64 {
        self.since(earlier)
    }
}

impl std::str::FromStr for UnixMs {
    type Err = std::num::ParseIntError;

    /// Integer milliseconds since the epoch, as [`Display`](fmt::Display) writes them.
    fn from_str(s: &str) -> Result<UnixMs, Self::Err> {
        s.trim().parse().map(UnixMs)
    }
}

/// SQLite keeps an instant as its integer milliseconds.
#[cfg(feature = "sqlite")]
impl rusqlite::ToSql for UnixMs {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::from(self.0))
    }
}

#[cfg(feature = "sqlite")]
impl rusqlite::types::FromSql for UnixMs {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        i64::column_result(v).map(UnixMs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_after_2020_and_times_before_the_epoch_are_negative() {
        assert!(UnixMs::now() > UnixMs(1_577_836_800_000));
        assert_eq!(
            UnixMs::of(UNIX_EPOCH - Duration::from_secs(1)),
            UnixMs(-1000)
        );
        assert_eq!(
            UnixMs::of(UNIX_EPOCH + Duration::from_millis(1500)),
            UnixMs(1500)
        );
        let t = UnixMs(1_700_000_000_123);
        assert_eq!(UnixMs::of(t.to_system_time()), t);
    }

    #[test]
    fn arithmetic_saturates_instead_of_wrapping() {
        let t = UnixMs(10_000);
        assert_eq!(t.plus(Duration::from_millis(500)), UnixMs(10_500));
        assert_eq!(t.minus(Duration::from_secs(20)), UnixMs(-10_000));
        assert_eq!(UnixMs::MAX.plus(Duration::from_secs(1)), UnixMs::MAX);
        assert_eq!(UnixMs::MIN.add_ms(-1), UnixMs::MIN);
        assert_eq!(UnixMs::MAX.since(UnixMs::MIN), i64::MAX);
        assert_eq!(UnixMs(5).since(UnixMs(8)), -3);
        assert_eq!(UnixMs(5).elapsed_since(UnixMs(8)), Duration::ZERO);
        assert_eq!(UnixMs(8).elapsed_since(UnixMs(5)), Duration::from_millis(3));
        assert_eq!(UnixMs(8) - UnixMs(5), 3);
        assert_eq!(UnixMs(8) + 2, UnixMs(10));
        assert_eq!(UnixMs(8) - 10, UnixMs(-2));
        assert_eq!(UnixMs::MIN - i64::MIN, UnixMs(-1));
        let mut t = UnixMs::MAX;
        t += 1;
        assert_eq!(t, UnixMs::MAX);
    }

    #[test]
    fn it_travels_as_a_plain_integer() {
        assert_eq!(serde_json::to_string(&UnixMs(42)).expect("json"), "42");
        let back: UnixMs = serde_json::from_str("-7").expect("json");
        assert_eq!(back, UnixMs(-7));
        let bytes = postcard::to_allocvec(&UnixMs(-1)).expect("postcard");
        assert_eq!(postcard::from_bytes::<i64>(&bytes).expect("as i64"), -1);
    }
}
