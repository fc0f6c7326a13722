//! Time as controllers see it: milliseconds since the Unix epoch, passed in by the driver
//! (wall clock live, virtual in the simulator), and conversions to Kubernetes timestamps.
//!
//! Start at [`Millis`].

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// A Kubernetes timestamp for `now` (whole seconds, as the API serializes them).
pub fn to_time(now: Millis) -> Time {
    Time(Timestamp::from_millisecond(now - now.rem_euclid(1000)).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// Milliseconds of a Kubernetes timestamp.
pub fn from_time(t: &Time) -> Millis {
    t.0.as_millisecond()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_truncates_to_seconds() {
        let t = to_time(1_700_000_000_123);
        assert_eq!(from_time(&t), 1_700_000_000_000);
    }
}
