//! Flag value parsing shared by the roles: port ranges here; the timer profile and Go-style
//! durations are crate `profile`'s (re-exported), as is the mapping of profile and flags to
//! every component's config.
//!
//! Start at [`parse_port_range`].

use anyhow::Context;
pub use profile::{Profile, parse_duration};

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
        use std::time::Duration;
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
