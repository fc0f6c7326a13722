//! Time as components see it: a [`Moment`] is a point in time, milliseconds since the Unix
//! epoch, passed in by the driver (wall clock live, virtual in the simulator); spans of time
//! are `std::time::Duration`. A point plus a point does not compile, nor does a duration where
//! a point is expected. Conversions to and from Kubernetes timestamps live here too.
//!
//! Start at [`Moment`].

use std::fmt;
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// A point in time: milliseconds since the Unix epoch (i64 inside, as Kubernetes timestamps
/// and the serialized reports count them). Arithmetic with a [`Duration`] saturates at the
/// ends of the range, so [`Moment::MIN`]/[`Moment::MAX`] work as "never" sentinels.
///
/// `Debug` and `Display` print the bare millisecond count, as the former `i64` did (so every
/// text that shows a time stays byte-identical).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Moment(i64);

impl Moment {
    /// The Unix epoch (also the simulator's and the tests' usual origin).
    pub const EPOCH: Moment = Moment(0);
    /// Earlier than every real time ("never happened").
    pub const MIN: Moment = Moment(i64::MIN);
    /// Later than every real time ("never due").
    pub const MAX: Moment = Moment(i64::MAX);

    /// The point `ms` milliseconds after the Unix epoch.
    pub const fn from_millis(ms: i64) -> Moment {
        Moment(ms)
    }

    /// Milliseconds since the Unix epoch (for serialization and Kubernetes fields).
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// How long after `earlier` this is; zero if it is not after it.
    pub fn saturating_since(self, earlier: Moment) -> Duration {
        self.checked_since(earlier).unwrap_or(Duration::ZERO)
    }

    /// How long after `earlier` this is; `None` if it is before it.
    pub fn checked_since(self, earlier: Moment) -> Option<Duration> {
        let ms = i128::from(self.0) - i128::from(earlier.0);
        u64::try_from(ms).ok().map(Duration::from_millis)
    }
}

/// Whole milliseconds of `d` as i64 (saturating), the unit Moments count in.
pub fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A span of `ms` milliseconds; a negative count is no time at all (for counts read from
/// flags and API fields, where upstream treats a negative wait as "now").
pub fn span_ms(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// A span of `s` whole seconds; negative is no time at all (as [`span_ms`]).
pub fn span_secs(s: i64) -> Duration {
    Duration::from_secs(u64::try_from(s).unwrap_or(0))
}

impl fmt::Debug for Moment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Moment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Add<Duration> for Moment {
    type Output = Moment;

    fn add(self, d: Duration) -> Moment {
        Moment(self.0.saturating_add(duration_ms(d)))
    }
}

impl Sub<Duration> for Moment {
    type Output = Moment;

    fn sub(self, d: Duration) -> Moment {
        Moment(self.0.saturating_sub(duration_ms(d)))
    }
}

impl AddAssign<Duration> for Moment {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl SubAssign<Duration> for Moment {
    fn sub_assign(&mut self, d: Duration) {
        *self = *self - d;
    }
}

/// A Kubernetes timestamp for `now` (whole seconds, as the API serializes them).
pub fn to_time(now: Moment) -> Time {
    let ms = now.0 - now.0.rem_euclid(1000);
    Time(Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// The point a Kubernetes timestamp names.
pub fn from_time(t: &Time) -> Moment {
    Moment(t.0.as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_truncates_to_seconds() {
        let t = to_time(Moment::from_millis(1_700_000_000_123));
        assert_eq!(from_time(&t), Moment::from_millis(1_700_000_000_000));
        assert_eq!(to_time(from_time(&t)), t);
        // Before the epoch, truncation still goes down to the whole second.
        let before = to_time(Moment::from_millis(-1_500));
        assert_eq!(from_time(&before).as_millis(), -2_000);
    }

    #[test]
    fn adds_and_subtracts_durations() {
        let t = Moment::from_millis(1_000) + Duration::from_millis(2_500);
        assert_eq!(t.as_millis(), 3_500);
        assert_eq!(t - Duration::from_secs(3), Moment::from_millis(500));
        let mut u = t;
        u += Duration::from_millis(5);
        u -= Duration::from_millis(10);
        assert_eq!(u.as_millis(), 3_495);
    }

    #[test]
    fn since_saturates_at_zero() {
        let a = Moment::from_millis(1_000);
        let b = Moment::from_millis(4_250);
        assert_eq!(b.saturating_since(a), Duration::from_millis(3_250));
        assert_eq!(a.saturating_since(b), Duration::ZERO);
        assert_eq!(a.checked_since(b), None);
        assert_eq!(b.checked_since(a), Some(Duration::from_millis(3_250)));
        assert_eq!(Moment::MIN.saturating_since(Moment::MAX), Duration::ZERO);
        assert_eq!(
            Moment::MAX.saturating_since(Moment::MIN),
            Duration::from_millis(u64::MAX)
        );
    }

    #[test]
    fn arithmetic_saturates_at_the_sentinels() {
        assert_eq!(Moment::MAX + Duration::from_secs(1), Moment::MAX);
        assert_eq!(Moment::MIN - Duration::from_secs(1), Moment::MIN);
        assert_eq!(Moment::EPOCH + Duration::MAX, Moment::MAX);
    }

    #[test]
    fn millisecond_counts_convert_both_ways() {
        assert_eq!(span_ms(1_500), Duration::from_millis(1_500));
        assert_eq!(span_ms(-5), Duration::ZERO);
        assert_eq!(duration_ms(Duration::from_micros(2_999)), 2);
        assert_eq!(duration_ms(Duration::MAX), i64::MAX);
    }

    #[test]
    fn orders_like_the_millisecond_count() {
        let mut v = [
            Moment::from_millis(5),
            Moment::MIN,
            Moment::from_millis(-3),
            Moment::MAX,
            Moment::EPOCH,
        ];
        v.sort();
        let ms: Vec<i64> = v.iter().map(|m| m.as_millis()).collect();
        assert_eq!(ms, [i64::MIN, -3, 0, 5, i64::MAX]);
        assert_eq!(format!("{:?}", Moment::from_millis(42)), "42");
    }
}
