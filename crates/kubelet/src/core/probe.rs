//! Probe workers: when to probe (initialDelaySeconds, periodSeconds) and how results turn into
//! a state (successThreshold / failureThreshold runs), as upstream `pkg/kubelet/prober/worker.go`.
//! Start at [`ProbeWorker::due`] and [`ProbeWorker::record`].

use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use runtime::Moment;

use super::{ProbeAction, ProbeKind};

/// Upstream probe defaults (k/k `pkg/apis/core/v1/defaults.go`, `SetDefaults_Probe`).
pub const DEFAULT_PERIOD_SECONDS: i32 = 10;
pub const DEFAULT_TIMEOUT_SECONDS: i32 = 1;
pub const DEFAULT_SUCCESS_THRESHOLD: i32 = 1;
pub const DEFAULT_FAILURE_THRESHOLD: i32 = 3;

/// What a recorded result changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not enough results in a row to change the state.
    Unchanged,
    /// The probe's state is now success.
    Succeeded,
    /// The probe's state is now failure (threshold reached).
    Failed,
}

/// One probe of one container instance.
#[derive(Clone, Debug)]
pub(crate) struct ProbeWorker {
    pub kind: ProbeKind,
    pub probe: Probe,
    pub next_at: Moment,
    pub inflight: Option<u64>,
    last: Option<bool>,
    run: i32,
    /// After a liveness/startup failure: stop until the container restarts.
    pub on_hold: bool,
}

fn secs(v: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(u64::from(v.unwrap_or(default).max(0).unsigned_abs()))
}

impl ProbeWorker {
    pub fn new(kind: ProbeKind, probe: Probe) -> ProbeWorker {
        ProbeWorker {
            kind,
            probe,
            next_at: Moment::MAX,
            inflight: None,
            last: None,
            run: 0,
            on_hold: false,
        }
    }

    /// A new container instance started at `started_at`: first probe after the initial delay.
    pub fn reset(&mut self, started_at: Moment) {
        self.next_at = started_at + secs(self.probe.initial_delay_seconds, 0);
        self.inflight = None;
        self.last = None;
        self.run = 0;
        self.on_hold = false;
    }

    /// The container stopped: no more probes until it restarts.
    pub fn stop(&mut self) {
        self.next_at = Moment::MAX;
        self.inflight = None;
    }

    pub fn period(&self) -> Duration {
        secs(self.probe.period_seconds, DEFAULT_PERIOD_SECONDS).max(Duration::from_secs(1))
    }

    pub fn timeout(&self) -> Duration {
        secs(self.probe.timeout_seconds, DEFAULT_TIMEOUT_SECONDS).max(Duration::from_secs(1))
    }

    /// True when a probe should be sent now.
    pub fn due(&self, now: Moment) -> bool {
        !self.on_hold && self.inflight.is_none() && self.next_at <= now
    }

    /// A probe went out at `now` with `id`.
    pub fn sent(&mut self, id: u64, now: Moment) {
        self.inflight = Some(id);
        self.next_at = now + self.period();
    }

    /// Record one result; the state changes only after threshold-many equal results in a row.
    pub fn record(&mut self, ok: bool) -> Verdict {
        self.inflight = None;
        if self.last == Some(ok) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(ok);
            self.run = 1;
        }
        let threshold = if ok {
            self.probe
                .success_threshold
                .unwrap_or(DEFAULT_SUCCESS_THRESHOLD)
        } else {
            self.probe
                .failure_threshold
                .unwrap_or(DEFAULT_FAILURE_THRESHOLD)
        };
        if self.run < threshold.max(1) {
            return Verdict::Unchanged;
        }
        if ok {
            Verdict::Succeeded
        } else {
            if self.kind != ProbeKind::Readiness {
                self.on_hold = true;
                self.run = 0;
            }
            Verdict::Failed
        }
    }

    /// Whether one more success would leave this probe's state as it is: its last results
    /// are successes at or past `successThreshold` (so [`ProbeWorker::record`] says
    /// `Succeeded` again).
    pub fn settled_on_success(&self) -> bool {
        let threshold = self
            .probe
            .success_threshold
            .unwrap_or(DEFAULT_SUCCESS_THRESHOLD)
            .max(1);
        self.last == Some(true) && self.run >= threshold
    }

    pub fn wakeup(&self) -> Option<Moment> {
        (!self.on_hold && self.inflight.is_none() && self.next_at != Moment::MAX)
            .then_some(self.next_at)
    }
}

/// Resolve a port (number or container port name).
fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port {n}")),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("port {name:?} not found in container")),
    }
}

/// The concrete probe for a container whose pod has `pod_ip`.
pub fn probe_action(
    probe: &Probe,
    container: &Container,
    pod_ip: Ipv4Addr,
) -> Result<ProbeAction, String> {
    if let Some(h) = &probe.http_get {
        let headers = h
            .http_headers
            .iter()
            .flatten()
            .map(|x| (x.name.clone(), x.value.clone()))
            .collect();
        return Ok(ProbeAction::HttpGet {
            host: h.host.clone().unwrap_or_else(|| pod_ip.to_string()),
            port: resolve_port(&h.port, container)?,
            path: h.path.clone().unwrap_or_else(|| "/".into()),
            scheme: h.scheme.clone().unwrap_or_else(|| "HTTP".into()),
            headers,
        });
    }
    if let Some(t) = &probe.tcp_socket {
        return Ok(ProbeAction::TcpSocket {
            host: t.host.clone().unwrap_or_else(|| pod_ip.to_string()),
            port: resolve_port(&t.port, container)?,
        });
    }
    if let Some(e) = &probe.exec {
        return Ok(ProbeAction::Exec {
            command: e.command.clone().unwrap_or_default(),
        });
    }
    if let Some(g) = &probe.grpc {
        // No gRPC health client here: a connect to the port is the closest check.
        let port = u16::try_from(g.port).map_err(|_| format!("invalid port {}", g.port))?;
        return Ok(ProbeAction::TcpSocket {
            host: pod_ip.to_string(),
            port,
        });
    }
    Err("probe has no handler".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(kind: ProbeKind, success: i32, failure: i32) -> ProbeWorker {
        ProbeWorker::new(
            kind,
            Probe {
                success_threshold: Some(success),
                failure_threshold: Some(failure),
                ..Probe::default()
            },
        )
    }

    #[test]
    fn thresholds_need_runs_in_a_row() {
        let mut w = worker(ProbeKind::Readiness, 2, 3);
        assert_eq!(w.record(false), Verdict::Unchanged);
        assert_eq!(w.record(false), Verdict::Unchanged);
        assert_eq!(w.record(true), Verdict::Unchanged);
        assert_eq!(w.record(false), Verdict::Unchanged);
        assert_eq!(w.record(false), Verdict::Unchanged);
        assert_eq!(w.record(false), Verdict::Failed);
        assert_eq!(w.record(false), Verdict::Failed);
        assert_eq!(w.record(true), Verdict::Unchanged);
        assert_eq!(w.record(true), Verdict::Succeeded);
        assert!(!w.on_hold, "readiness keeps probing");
    }

    #[test]
    fn settled_once_successes_reach_the_threshold() {
        let mut w = worker(ProbeKind::Readiness, 2, 3);
        assert!(!w.settled_on_success(), "no result yet");
        w.record(true);
        assert!(!w.settled_on_success(), "one success of two");
        assert_eq!(w.record(true), Verdict::Succeeded);
        assert!(w.settled_on_success());
        w.record(false);
        assert!(!w.settled_on_success(), "a failure in between");
    }

    #[test]
    fn liveness_failure_holds_until_restart() {
        let mut w = worker(ProbeKind::Liveness, 1, 1);
        w.reset(Moment::EPOCH);
        assert!(w.due(Moment::EPOCH));
        w.sent(1, Moment::EPOCH);
        assert_eq!(w.record(false), Verdict::Failed);
        assert!(w.on_hold && !w.due(Moment::from_millis(100_000)));
        w.reset(Moment::from_millis(50_000));
        assert!(w.due(Moment::from_millis(50_000)));
    }
}
