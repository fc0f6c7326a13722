//! Go-style durations (`500ms`, `30s`, `1m30s`, `1.5h`): `parse_duration` is the entry point, the
//! `deserialize*` helpers plug it into serde fields.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};

/// Units accepted in a duration, with their length in nanoseconds (Go's `time.ParseDuration`
/// set: `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`).
const UNITS: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// What a duration must look like, used in every error message.
pub const EXPECTED: &str = "a Go-style duration such as 500ms, 30s, 2m or 1m30s";

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {text:?}: {reason} (expected {EXPECTED})")]
pub struct DurationError {
    /// The text as written.
    pub text: String,
    /// What was wrong with it.
    pub reason: String,
}

/// Parses a Go-style duration: a sequence of `<number><unit>` terms (`1m30s`, `1.5s`), or a
/// bare `0`. Negative durations are rejected: nothing in a scenario runs backwards.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let fail = |reason: String| DurationError {
        text: text.to_string(),
        reason,
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(fail("empty".into()));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.starts_with('-') {
        return Err(fail("negative durations are not allowed".into()));
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    let mut total_ns: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(num_len);
        if number.is_empty() || number == "." {
            return Err(fail(format!("expected a number before {tail:?}")));
        }
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        if unit.is_empty() {
            return Err(fail(format!(
                "missing unit after {number:?} (ns, us, ms, s, m, h)"
            )));
        }
        let Some(&(_, unit_ns)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(fail(format!("unknown unit {unit:?} (ns, us, ms, s, m, h)")));
        };
        let term = term_ns(number, unit_ns).ok_or_else(|| fail("number out of range".into()))?;
        total_ns = total_ns
            .checked_add(term)
            .ok_or_else(|| fail("duration out of range".into()))?;
        rest = next;
    }
    let secs = u64::try_from(total_ns / 1_000_000_000)
        .map_err(|_| fail("duration out of range".into()))?;
    let nanos = u32::try_from(total_ns % 1_000_000_000)
        .map_err(|_| fail("duration out of range".into()))?;
    Ok(Duration::new(secs, nanos))
}

/// Nanoseconds of one `<number><unit>` term; `None` on a malformed number or overflow.
/// Fractions finer than a nanosecond are truncated, as Go does.
fn term_ns(number: &str, unit_ns: u128) -> Option<u128> {
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if frac_part.contains('.') || (int_part.is_empty() && frac_part.is_empty()) {
        return None;
    }
    let int: u128 = if int_part.is_empty() {
        0
    } else {
        int_part.parse().ok()?
    };
    let mut ns = int.checked_mul(unit_ns)?;
    let mut scale = unit_ns;
    for digit in frac_part.chars() {
        scale /= 10;
        let d = u128::from(digit.to_digit(10)?);
        ns = ns.checked_add(d * scale)?;
    }
    Some(ns)
}

/// Formats a duration the way the scenario files write them (`1m30s`, `500ms`, `0s`).
pub fn format_duration(d: Duration) -> String {
    let total_ms = d.as_millis();
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        return format!("{}ns", d.as_nanos());
    }
    if !total_ms.is_multiple_of(1000) {
        return format!("{total_ms}ms");
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(EXPECTED)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse_duration(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        if v == 0 {
            return Ok(Duration::ZERO);
        }
        Err(E::custom(format!(
            "invalid duration {v}: missing unit (expected {EXPECTED})"
        )))
    }
}

/// serde `deserialize_with` helper for a `Duration` field.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(DurationVisitor)
}

/// serde `deserialize_with` helper for an `Option<Duration>` field (pair with `default`).
pub fn deserialize_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    d.deserialize_any(DurationVisitor).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_forms() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h2m3s"), Ok(Duration::from_secs(3723)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_bad_forms_with_reason() {
        let e = parse_duration("5x").unwrap_err();
        assert!(e.to_string().contains("unknown unit \"x\""), "{e}");
        assert!(e.to_string().contains("1m30s"), "{e}");
        assert!(
            parse_duration("30")
                .unwrap_err()
                .reason
                .contains("missing unit")
        );
        assert!(
            parse_duration("-1s")
                .unwrap_err()
                .reason
                .contains("negative")
        );
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1..5s").is_err());
        assert!(parse_duration("99999999999999999999999999999h").is_err());
    }

    #[test]
    fn formats_round_trip() {
        for s in ["1m30s", "500ms", "0s", "2h", "1h1s", "5s"] {
            let d = parse_duration(s).unwrap();
            assert_eq!(format_duration(d), s);
        }
    }
}
