//! One registered target's health as ELBv2 reports it: its state (`initial`, `healthy`,
//! `unhealthy`, `draining`, `unused`), the reason code, and the consecutive-result counters
//! that move it between states. Pure: the balancer feeds it probe results.
//!
//! Start at [`TargetHealth::record`].

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use serde::{Deserialize, Serialize};

use crate::time::Time;

/// A target in a group: address and port (a group holds each at most once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TargetKey {
    pub ip: Ipv4Addr,
    pub port: u16,
}

impl TargetKey {
    pub fn addr(self) -> SocketAddrV4 {
        SocketAddrV4::new(self.ip, self.port)
    }
}

impl fmt::Display for TargetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.ip, self.port)
    }
}

/// ELBv2 `TargetHealth.State` (the states a Network Load Balancer reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetState {
    Initial,
    Healthy,
    Unhealthy,
    Draining,
    Unused,
}

impl TargetState {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Initial => "initial",
            TargetState::Healthy => "healthy",
            TargetState::Unhealthy => "unhealthy",
            TargetState::Draining => "draining",
            TargetState::Unused => "unused",
        }
    }
}

impl fmt::Display for TargetState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// ELBv2 `TargetHealth.Reason` codes a Network Load Balancer uses (an NLB reports every
/// failed check as `Target.FailedHealthChecks`; the detail goes into the description).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Reason {
    #[serde(rename = "Elb.RegistrationInProgress")]
    RegistrationInProgress,
    #[serde(rename = "Elb.InitialHealthChecking")]
    InitialHealthChecking,
    #[serde(rename = "Target.FailedHealthChecks")]
    FailedHealthChecks,
    #[serde(rename = "Target.DeregistrationInProgress")]
    DeregistrationInProgress,
    #[serde(rename = "Target.NotRegistered")]
    NotRegistered,
    #[serde(rename = "Target.NotInUse")]
    NotInUse,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::RegistrationInProgress => "Elb.RegistrationInProgress",
            Reason::InitialHealthChecking => "Elb.InitialHealthChecking",
            Reason::FailedHealthChecks => "Target.FailedHealthChecks",
            Reason::DeregistrationInProgress => "Target.DeregistrationInProgress",
            Reason::NotRegistered => "Target.NotRegistered",
            Reason::NotInUse => "Target.NotInUse",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one health check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// TCP connected, or HTTP answered with a code the matcher accepts.
    Success,
    /// Refused, reset, a code outside the matcher, a malformed answer: the detail says which.
    Failure(String),
    /// No answer within the health-check timeout.
    Timeout,
}

/// A state change worth reporting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub from: TargetState,
    pub to: TargetState,
}

/// One target's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetHealth {
    pub zone: String,
    pub state: TargetState,
    pub reason: Option<Reason>,
    pub description: Option<String>,
    /// When the state last changed.
    pub since: Time,
    successes: u32,
    failures: u32,
    /// Whether any check finished since registration (`Elb.RegistrationInProgress` until then).
    checked: bool,
}

impl TargetHealth {
    /// A newly registered target: `initial`, `Elb.RegistrationInProgress`.
    pub fn registered(zone: &str, now: Time) -> TargetHealth {
        TargetHealth {
            zone: zone.to_string(),
            state: TargetState::Initial,
            reason: Some(Reason::RegistrationInProgress),
            description: Some("Target registration is in progress".into()),
            since: now,
            successes: 0,
            failures: 0,
            checked: false,
        }
    }

    /// A target the balancer does not use (its zone has no node, or no listener forwards to
    /// its group): `unused`, `Target.NotInUse`; it is not checked.
    pub fn not_in_use(zone: &str, now: Time) -> TargetHealth {
        TargetHealth {
            state: TargetState::Unused,
            reason: Some(Reason::NotInUse),
            description: Some(
                "Target group is not used by any listener, or the target is in a zone the load balancer has no node in"
                    .into(),
            ),
            ..TargetHealth::registered(zone, now)
        }
    }

    /// Whether the balancer sends it health checks (`initial`, `healthy`, `unhealthy`).
    pub fn is_checked(&self) -> bool {
        matches!(
            self.state,
            TargetState::Initial | TargetState::Healthy | TargetState::Unhealthy
        )
    }

    /// Count one check's outcome; a change of state when a threshold is reached. A new target
    /// needs `healthy` consecutive successes to become healthy (or `unhealthy` consecutive
    /// failures to become unhealthy), like an unhealthy one.
    pub fn record(
        &mut self,
        outcome: &ProbeOutcome,
        healthy: u32,
        unhealthy: u32,
        now: Time,
    ) -> Option<Change> {
        if !self.is_checked() {
            return None;
        }
        let first = !self.checked;
        self.checked = true;
        match outcome {
            ProbeOutcome::Success => {
                self.successes = self.successes.saturating_add(1);
                self.failures = 0;
                if self.state != TargetState::Healthy && self.successes >= healthy {
                    return self.set(TargetState::Healthy, None, None, now);
                }
            }
            ProbeOutcome::Failure(_) | ProbeOutcome::Timeout => {
                self.failures = self.failures.saturating_add(1);
                self.successes = 0;
                if self.state != TargetState::Unhealthy && self.failures >= unhealthy {
                    return self.set(
                        TargetState::Unhealthy,
                        Some(Reason::FailedHealthChecks),
                        Some(describe_failure(outcome)),
                        now,
                    );
                }
                if self.state == TargetState::Unhealthy {
                    self.description = Some(describe_failure(outcome));
                }
            }
        }
        if first && self.state == TargetState::Initial {
            self.reason = Some(Reason::InitialHealthChecking);
            self.description = Some("Initial health checks in progress".into());
        }
        None
    }

    /// Deregistered: `draining` (`Target.DeregistrationInProgress`) until the delay ends.
    pub fn drain(&mut self, now: Time) -> Option<Change> {
        if self.state == TargetState::Draining {
            return None;
        }
        self.set(
            TargetState::Draining,
            Some(Reason::DeregistrationInProgress),
            Some("Target deregistration is in progress".into()),
            now,
        )
    }

    fn set(
        &mut self,
        to: TargetState,
        reason: Option<Reason>,
        description: Option<String>,
        now: Time,
    ) -> Option<Change> {
        let from = self.state;
        self.state = to;
        self.reason = reason;
        self.description = description;
        self.since = now;
        self.successes = 0;
        self.failures = 0;
        (from != to).then_some(Change { from, to })
    }
}

fn describe_failure(outcome: &ProbeOutcome) -> String {
    match outcome {
        ProbeOutcome::Timeout => "Health checks failed: request timed out".into(),
        // ELB's own wording for a code outside the matcher is kept as it is.
        ProbeOutcome::Failure(detail) if detail.starts_with("Health checks failed") => {
            detail.clone()
        }
        ProbeOutcome::Failure(detail) => format!("Health checks failed: {detail}"),
        ProbeOutcome::Success => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Time {
        Time::from_millis(ms)
    }

    #[test]
    fn initial_becomes_healthy_after_the_healthy_threshold() {
        let mut h = TargetHealth::registered("a", t(0));
        assert_eq!(h.reason, Some(Reason::RegistrationInProgress));
        assert_eq!(h.record(&ProbeOutcome::Success, 3, 3, t(0)), None);
        assert_eq!(h.reason, Some(Reason::InitialHealthChecking));
        assert_eq!(h.record(&ProbeOutcome::Success, 3, 3, t(10)), None);
        let c = h.record(&ProbeOutcome::Success, 3, 3, t(20));
        assert_eq!(
            c,
            Some(Change {
                from: TargetState::Initial,
                to: TargetState::Healthy
            })
        );
        assert_eq!((h.reason, h.since), (None, t(20)));
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let mut h = TargetHealth::registered("a", t(0));
        for _ in 0..3 {
            h.record(&ProbeOutcome::Success, 3, 3, t(0));
        }
        let fail = ProbeOutcome::Failure("connection refused".into());
        h.record(&fail, 3, 3, t(1));
        h.record(&fail, 3, 3, t(2));
        h.record(&ProbeOutcome::Success, 3, 3, t(3));
        h.record(&fail, 3, 3, t(4));
        assert_eq!(h.record(&fail, 3, 3, t(5)), None);
        assert_eq!(h.state, TargetState::Healthy);
        let c = h
            .record(&ProbeOutcome::Timeout, 3, 3, t(6))
            .expect("third in a row");
        assert_eq!(c.to, TargetState::Unhealthy);
        assert_eq!(h.reason, Some(Reason::FailedHealthChecks));
        assert_eq!(
            h.description.as_deref(),
            Some("Health checks failed: request timed out")
        );
    }

    #[test]
    fn draining_and_unused_are_not_checked() {
        let mut h = TargetHealth::registered("a", t(0));
        assert_eq!(h.drain(t(5)).map(|c| c.to), Some(TargetState::Draining));
        assert_eq!(h.drain(t(6)), None);
        assert!(!h.is_checked());
        assert_eq!(h.record(&ProbeOutcome::Success, 2, 2, t(7)), None);
        let u = TargetHealth::not_in_use("x", t(0));
        assert_eq!(
            (u.state, u.reason),
            (TargetState::Unused, Some(Reason::NotInUse))
        );
        assert!(!u.is_checked());
    }
}
