//! Go's text forms of times and durations: metav1.Time / MicroTime (RFC 3339) and
//! time.Duration.String().
//!
//! Start at [`rfc3339`] and [`go_duration`].

use chrono::{DateTime, SecondsFormat};

/// Unix seconds of Go's zero `time.Time` (0001-01-01T00:00:00Z).
const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

/// `2006-01-02T15:04:05Z` (or with `.000000` microseconds); `None` for Go's zero time or a time
/// outside what RFC 3339 can write.
pub fn rfc3339(seconds: i64, nanos: i32, micro: bool) -> Option<String> {
    if seconds == GO_ZERO_TIME_SECONDS && nanos == 0 {
        return None;
    }
    let t = DateTime::from_timestamp(seconds, u32::try_from(nanos).ok()?)?;
    if micro {
        Some(t.to_rfc3339_opts(SecondsFormat::Micros, true))
    } else {
        Some(t.to_rfc3339_opts(SecondsFormat::Secs, true))
    }
}

/// `whole.fraction` of `value / unit` with trailing zeros of the fraction dropped.
fn decimal(value: u64, unit: u64) -> String {
    let whole = value / unit;
    let rest = value % unit;
    if rest == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let frac = format!("{rest:0width$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

/// Go's `time.Duration(nanoseconds).String()`: `0s`, `1.5s`, `300ms`, `1h0m0s`.
pub fn go_duration(nanoseconds: i64) -> String {
    if nanoseconds == 0 {
        return "0s".into();
    }
    let sign = if nanoseconds < 0 { "-" } else { "" };
    let u = nanoseconds.unsigned_abs();
    let body = if u < 1_000 {
        format!("{u}ns")
    } else if u < 1_000_000 {
        format!("{}µs", decimal(u, 1_000))
    } else if u < 1_000_000_000 {
        format!("{}ms", decimal(u, 1_000_000))
    } else {
        let total_seconds = u / 1_000_000_000;
        let (hours, minutes) = (total_seconds / 3600, (total_seconds / 60) % 60);
        let seconds = decimal(
            (total_seconds % 60) * 1_000_000_000 + u % 1_000_000_000,
            1_000_000_000,
        );
        if hours > 0 {
            format!("{hours}h{minutes}m{seconds}s")
        } else if minutes > 0 {
            format!("{minutes}m{seconds}s")
        } else {
            format!("{seconds}s")
        }
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_go_writes_them() {
        assert_eq!(rfc3339(0, 0, false).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(1_700_000_000, 123_456_789, true).unwrap(),
            "2023-11-14T22:13:20.123456Z"
        );
        assert_eq!(rfc3339(GO_ZERO_TIME_SECONDS, 0, false), None);
    }

    #[test]
    fn durations_as_go_writes_them() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(90_500_000_000), "1m30.5s");
        assert_eq!(go_duration(300_000_000), "300ms");
        assert_eq!(go_duration(1_500), "1.5µs");
        assert_eq!(go_duration(-2_000_000_000), "-2s");
    }
}
