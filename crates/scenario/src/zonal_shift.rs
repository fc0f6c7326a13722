//! The scenario's zonal shifts (EKS / ARC zonal shift, docs/zonal-shift.md): `zonalShifts`,
//! shifts started, extended or cancelled at a time, and `zonalAutoshift`, the rule that starts
//! one when the clients' failed requests say a zone is impaired. Field names follow ARC's API
//! (`awayFrom`, `expiresIn`) and CloudWatch alarms (`threshold`, `period`).
//!
//! Start at [`ZonalShift`], [`ZonalAutoshift`] and [`check`].

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::duration::{self, format_duration, parse_duration};
use crate::locate::Seg;
use crate::model::Scenario;
use crate::validate::Problem;

/// ARC's bounds on `expiresIn`: 1 minute to 72 hours (ARC API `StartZonalShift`).
pub const MIN_EXPIRES_IN: Duration = Duration::from_secs(60);
/// See [`MIN_EXPIRES_IN`].
pub const MAX_EXPIRES_IN: Duration = Duration::from_secs(72 * 3600);

/// One zonal-shift action (`zonalShifts[i]`): start (or, if the zone is already shifted,
/// extend: ARC `UpdateZonalShift`) a shift away from `awayFrom` for `expiresIn`, or cancel it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ZonalShift {
    /// When: an offset from the start of the run (`30s`), or from the first fault (`+10s`).
    pub at: ShiftAt,
    /// The zone traffic is shifted away from (one of `topology.zones`).
    pub away_from: String,
    /// How long the shift lasts from `at` (1m..=72h, ARC's bounds); required unless `cancel`.
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub expires_in: Option<Duration>,
    /// Cancel the zone's shift instead (ARC `CancelZonalShift`).
    #[serde(default)]
    pub cancel: bool,
}

/// When a zonal-shift action happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShiftAt {
    /// An offset from the start of the run (`30s`).
    Start(Duration),
    /// An offset from the first fault (`+10s`).
    AfterFirstFault(Duration),
}

impl<'de> Deserialize<'de> for ShiftAt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ShiftAtVisitor)
    }
}

struct ShiftAtVisitor;

impl Visitor<'_> for ShiftAtVisitor {
    type Value = ShiftAt;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a duration from the start (30s) or from the first fault (+10s)")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ShiftAt, E> {
        let t = v.trim();
        let (relative, text) = match t.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, t),
        };
        let d = parse_duration(text).map_err(E::custom)?;
        Ok(if relative {
            ShiftAt::AfterFirstFault(d)
        } else {
            ShiftAt::Start(d)
        })
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ShiftAt, E> {
        if v == 0 {
            return Ok(ShiftAt::Start(Duration::ZERO));
        }
        Err(E::custom(format!(
            "invalid duration {v}: missing unit (expected {})",
            duration::EXPECTED
        )))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ShiftAt, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(format!(
                "invalid duration {v}: negative durations are not allowed (expected {})",
                duration::EXPECTED
            ))),
        }
    }
}

/// The autoshift rule (`zonalAutoshift`): when the run's cluster clients' failed requests are
/// at least `threshold` percent over the sliding `period` for `delay`, the zone whose clients
/// fared worst is shifted away from for `expiresIn` (once at a time).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ZonalAutoshift {
    /// Failed requests in percent of all requests in the period, (0, 100] (default 10).
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// The sliding window (default 10s).
    #[serde(default = "default_period", deserialize_with = "duration::deserialize")]
    pub period: Duration,
    /// How long the threshold must stay breached before the shift starts (default 5s).
    #[serde(default = "default_delay", deserialize_with = "duration::deserialize")]
    pub delay: Duration,
    /// The shift's length (default 30m; 1m..=72h).
    #[serde(
        default = "default_expires_in",
        deserialize_with = "duration::deserialize"
    )]
    pub expires_in: Duration,
}

fn default_threshold() -> f64 {
    10.0
}
fn default_period() -> Duration {
    Duration::from_secs(10)
}
fn default_delay() -> Duration {
    Duration::from_secs(5)
}
fn default_expires_in() -> Duration {
    Duration::from_secs(30 * 60)
}

impl ZonalShift {
    /// The action's offset from the start of the run (`None` for `+…` without a fault; never
    /// after `check`).
    pub fn offset(&self, s: &Scenario) -> Option<Duration> {
        match self.at {
            ShiftAt::Start(d) => Some(d),
            ShiftAt::AfterFirstFault(d) => s.faults.iter().map(|f| f.at).min().map(|f| f + d),
        }
    }
}

impl Scenario {
    /// The zonal-shift actions sorted by their offset from the start (stable).
    pub fn zonal_shifts_by_time(&self) -> Vec<(Duration, &ZonalShift)> {
        let mut out: Vec<(Duration, &ZonalShift)> = self
            .zonal_shifts
            .iter()
            .filter_map(|z| Some((z.offset(self)?, z)))
            .collect();
        out.sort_by_key(|(at, _)| *at);
        out
    }
}

fn at(i: usize, field: &str) -> Vec<Seg> {
    vec![
        Seg::Key("zonalShifts".into()),
        Seg::Index(i),
        Seg::Key(field.into()),
    ]
}

fn problem(path: Vec<Seg>, message: String) -> Problem {
    Problem { path, message }
}

fn check_expires_in(d: Duration, path: Vec<Seg>) -> Result<(), Problem> {
    if d < MIN_EXPIRES_IN || d > MAX_EXPIRES_IN {
        return Err(problem(
            path,
            format!(
                "expiresIn {} is out of range: expected 1m to 72h (ARC's bounds)",
                format_duration(d)
            ),
        ));
    }
    Ok(())
}

/// Checks `zonalShifts` and `zonalAutoshift` against the topology, the faults and the run.
pub fn check(s: &Scenario) -> Result<(), Problem> {
    let limit = s.run.limit();
    for (i, z) in s.zonal_shifts.iter().enumerate() {
        if !s.topology.zones.contains(&z.away_from) {
            return Err(problem(
                at(i, "awayFrom"),
                format!(
                    "unknown zone {:?}: expected one of {}",
                    z.away_from,
                    s.topology.zones.join(", ")
                ),
            ));
        }
        let Some(offset) = z.offset(s) else {
            return Err(problem(
                at(i, "at"),
                "`+` counts from the first fault, and the scenario has no faults: write an offset from the start (30s)".into(),
            ));
        };
        if offset >= limit {
            return Err(problem(
                at(i, "at"),
                format!(
                    "zonal shift at {} is not within the run (ends at {}): expected a time before the end",
                    format_duration(offset),
                    format_duration(limit)
                ),
            ));
        }
        match (z.cancel, z.expires_in) {
            (false, None) => {
                return Err(problem(
                    vec![Seg::Key("zonalShifts".into()), Seg::Index(i)],
                    "missing field `expiresIn` (how long the shift lasts, 1m to 72h), or `cancel: true`".into(),
                ));
            }
            (false, Some(d)) => check_expires_in(d, at(i, "expiresIn"))?,
            (true, Some(_)) => {
                return Err(problem(
                    at(i, "expiresIn"),
                    "a cancel takes no expiresIn".into(),
                ));
            }
            (true, None) => {
                let started = s.zonal_shifts.iter().any(|o| {
                    !o.cancel && o.away_from == z.away_from && o.offset(s) <= Some(offset)
                });
                if !started {
                    return Err(problem(
                        at(i, "cancel"),
                        format!(
                            "no zonal shift away from zone {:?} starts before this cancel",
                            z.away_from
                        ),
                    ));
                }
            }
        }
    }
    if let Some(a) = &s.zonal_autoshift {
        let path = |f: &str| vec![Seg::Key("zonalAutoshift".into()), Seg::Key(f.into())];
        if !(a.threshold > 0.0 && a.threshold <= 100.0) {
            return Err(problem(
                path("threshold"),
                format!(
                    "expected a percentage of failed requests in (0, 100], found {}",
                    a.threshold
                ),
            ));
        }
        if a.period.is_zero() {
            return Err(problem(path("period"), "expected a period > 0".into()));
        }
        check_expires_in(a.expires_in, path("expiresIn"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{Scenario, ScenarioError, ShiftAt};

    const BASE: &str =
        "name: s\nfaults:\n  - {at: 20s, type: zone-power-off, target: a}\nrun: {duration: 2m}\n";

    fn parse(extra: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse(&format!("{BASE}{extra}"), "s.yaml")
    }

    fn err(extra: &str) -> String {
        parse(extra).expect_err("rejected").to_string()
    }

    #[test]
    fn parses_shifts_and_the_autoshift_rule() {
        let s = parse(
            "zonalShifts:\n  - {at: +10s, awayFrom: a, expiresIn: 30m}\n  - at: 1m\n    awayFrom: a\n    cancel: true\nzonalAutoshift: {threshold: 20, period: 5s}\n",
        )
        .expect("valid");
        assert_eq!(
            s.zonal_shifts[0].at,
            ShiftAt::AfterFirstFault(Duration::from_secs(10))
        );
        let times: Vec<Duration> = s.zonal_shifts_by_time().iter().map(|(t, _)| *t).collect();
        assert_eq!(times, [Duration::from_secs(30), Duration::from_secs(60)]);
        let a = s.zonal_autoshift.expect("rule");
        assert_eq!((a.threshold, a.period), (20.0, Duration::from_secs(5)));
        assert_eq!(
            (a.delay, a.expires_in),
            (Duration::from_secs(5), Duration::from_secs(1800))
        );
    }

    #[test]
    fn bad_input_is_rejected_at_its_line() {
        assert_eq!(
            err("zonalShifts:\n  - {at: 10s, awayFrom: d, expiresIn: 30m}\n"),
            "s.yaml:6:25: zonalShifts[0].awayFrom: unknown zone \"d\": expected one of a, b, c"
        );
        assert_eq!(
            err("zonalShifts:\n  - {at: 10s, awayFrom: a, expiresIn: 30s}\n"),
            "s.yaml:6:39: zonalShifts[0].expiresIn: expiresIn 30s is out of range: expected 1m to 72h (ARC's bounds)"
        );
        assert!(
            err("zonalShifts:\n  - {at: 10s, awayFrom: a}\n")
                .starts_with("s.yaml:6:5: zonalShifts[0]: missing field `expiresIn`")
        );
        assert!(
            err("zonalShifts:\n  - {at: 5m, awayFrom: a, expiresIn: 1h}\n").starts_with(
                "s.yaml:6:10: zonalShifts[0].at: zonal shift at 5m is not within the run"
            )
        );
        assert!(
            err("zonalShifts:\n  - {at: soon, awayFrom: a, expiresIn: 1h}\n")
                .starts_with("s.yaml:6:10: zonalShifts[0].at: invalid duration")
        );
        assert!(
            err("zonalShifts:\n  - {at: 10s, awayFrom: a, cancel: true}\n").starts_with(
                "s.yaml:6:36: zonalShifts[0].cancel: no zonal shift away from zone \"a\""
            )
        );
        assert!(
            err("zonalShifts:\n  - {at: 10s, awayFrom: a, expiresIn: 1h, zone: a}\n")
                .contains("unknown field `zone`")
        );
        assert!(
            err("zonalAutoshift: {threshold: 0}\n")
                .starts_with("s.yaml:5:29: zonalAutoshift.threshold: expected a percentage")
        );
    }

    #[test]
    fn plus_needs_a_fault() {
        let e = Scenario::parse(
            "name: s\nrun: {duration: 2m}\nzonalShifts:\n  - {at: +10s, awayFrom: a, expiresIn: 1h}\n",
            "s.yaml",
        )
        .expect_err("rejected");
        assert!(
            e.to_string()
                .starts_with("s.yaml:4:10: zonalShifts[0].at: `+` counts from the first fault"),
            "{e}"
        );
    }
}
