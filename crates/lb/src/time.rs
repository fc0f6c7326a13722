//! Time as the balancer sees it: [`Time`], milliseconds since an epoch the driver picks (the
//! driver's start live, zero in tests), passed in to every call; durations are `Duration`.
//!
//! Start at [`Time`].

use std::ops::Add;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// An instant: milliseconds since the driver's epoch.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Time(u64);

impl Time {
    pub const ZERO: Time = Time(0);

    pub fn from_millis(ms: u64) -> Time {
        Time(ms)
    }

    pub fn as_millis(self) -> u64 {
        self.0
    }

    /// How long after `earlier` this is (zero if it is not after it).
    pub fn since(self, earlier: Time) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Time {
    type Output = Time;

    fn add(self, d: Duration) -> Time {
        Time(
            self.0
                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_and_subtracts_durations() {
        let t = Time::from_millis(1_000) + Duration::from_millis(2_500);
        assert_eq!(t.as_millis(), 3_500);
        assert_eq!(t.since(Time::from_millis(500)), Duration::from_secs(3));
        assert_eq!(Time::ZERO.since(t), Duration::ZERO);
    }
}
