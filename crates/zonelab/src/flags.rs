//! Flag value parsing shared by the roles: Go-style durations, port ranges, timer profiles.
//!
//! Start at [`Profile`].

use std::time::Duration;

use anyhow::Context;

/// A set of timer defaults: upstream's, or all timers divided by 10 so a lab run takes minutes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    Upstream,
    Fast,
}

impl Profile {
    /// Every timer is divided by this.
    pub fn divisor(self) -> u32 {
        match self {
            Profile::Upstream => 1,
            Profile::Fast => 10,
        }
    }

    /// An upstream duration under this profile.
    pub fn duration(self, upstream: Duration) -> Duration {
        upstream / self.divisor()
    }

    /// An upstream number of seconds under this profile (at least 1).
    pub fn seconds(self, upstream: i64) -> i64 {
        (upstream / i64::from(self.divisor())).max(1)
    }

    /// An upstream per-second rate under this profile (timers / 10 => rates x 10).
    pub fn rate(self, upstream: f32) -> f32 {
        upstream * self.divisor() as f32
    }
}

/// Parse `10s`, `500ms`, `2m`, `1h`, `1m30s` (Go duration style).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0.0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(split);
        let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        total += n * match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" if next.is_empty() && n == 0.0 => 0.0,
            _ => {
                return Err(format!(
                    "invalid duration {s:?}: use a unit of ms, s, m or h"
                ));
            }
        };
        rest = next;
    }
    Ok(Duration::from_secs_f64(total))
}

/// Parse `LOW-HIGH`.
pub fn parse_port_range(s: &str) -> anyhow::Result<(u16, u16)> {
    let (a, b) = s
        .split_once('-')
        .with_context(|| format!("invalid --service-node-port-range {s:?}: want LOW-HIGH"))?;
    let lo: u16 = a
        .trim()
        .parse()
        .with_context(|| format!("invalid port {a:?}"))?;
    let hi: u16 = b
        .trim()
        .parse()
        .with_context(|| format!("invalid port {b:?}"))?;
    anyhow::ensure!(
        lo <= hi,
        "invalid --service-node-port-range {s:?}: LOW > HIGH"
    );
    Ok((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_ranges() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("5").is_err());
        assert_eq!(parse_port_range("30000-32767").unwrap(), (30000, 32767));
        assert!(parse_port_range("5-1").is_err());
    }
}
