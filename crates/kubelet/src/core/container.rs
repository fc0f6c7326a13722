//! One container of a pod on the node: its phase, restart count and CrashLoopBackOff backoff,
//! probe workers and liveness kill; starting it and sending its due probes.
//!
//! Start at [`ContainerState`]; [`super::pod::PodState`] drives it.

use std::net::Ipv4Addr;

use controllers::Millis;
use k8s_openapi::api::core::v1::Container;

use super::pod::Ctx;
use super::probe::{ProbeWorker, probe_action};
use super::{PodRef, ProbeKind, ProbeRequest, RuntimeCommand};

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Terminated {
    pub code: i32,
    pub reason: String,
    pub started_at: Millis,
    pub finished_at: Millis,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum CPhase {
    /// Not running; `restart_at` when a (re)start is planned.
    Waiting {
        reason: String,
        message: Option<String>,
        restart_at: Option<Millis>,
    },
    Starting,
    Running {
        pid: u32,
        started_at: Millis,
    },
    /// Exited and will not be restarted.
    Terminated(Terminated),
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Backoff {
    pub delay: Millis,
    pub updated: Millis,
}

/// A container being killed for a failed liveness/startup probe.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Kill {
    pub kill_at: Millis,
    pub kill_sent: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct ContainerState {
    pub spec: Container,
    pub phase: CPhase,
    pub restart_count: i32,
    pub last_term: Option<Terminated>,
    pub backoff: Option<Backoff>,
    pub ready: bool,
    /// Startup probe passed (or none).
    pub started: bool,
    pub probes: Vec<ProbeWorker>,
    pub kill: Option<Kill>,
}

impl ContainerState {
    pub(super) fn new(spec: &Container) -> ContainerState {
        let mut probes = Vec::new();
        for (kind, p) in [
            (ProbeKind::Startup, &spec.startup_probe),
            (ProbeKind::Liveness, &spec.liveness_probe),
            (ProbeKind::Readiness, &spec.readiness_probe),
        ] {
            if let Some(p) = p {
                probes.push(ProbeWorker::new(kind, p.clone()));
            }
        }
        ContainerState {
            spec: spec.clone(),
            phase: CPhase::Waiting {
                reason: "ContainerCreating".into(),
                message: None,
                restart_at: Some(Millis::MIN),
            },
            restart_count: 0,
            last_term: None,
            backoff: None,
            ready: false,
            started: false,
            probes,
            kill: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub(super) fn has_probe(&self, kind: ProbeKind) -> bool {
        self.probes.iter().any(|p| p.kind == kind)
    }

    pub fn is_live(&self) -> bool {
        matches!(self.phase, CPhase::Starting | CPhase::Running { .. })
    }

    pub(super) fn stop_probes(&mut self) {
        self.probes.iter_mut().for_each(ProbeWorker::stop);
    }
}

/// Issue StartContainer for `c` (a first start or a restart after its backoff).
pub(super) fn start_container(
    c: &mut ContainerState,
    pod: &PodRef,
    env: Vec<(String, String)>,
    ctx: &mut Ctx,
) {
    let now = ctx.now;
    if c.last_term.is_some() {
        let max = ctx.cfg.restart_backoff_max;
        c.backoff = Some(match c.backoff {
            Some(b) if now - b.updated <= 2 * max => Backoff {
                delay: (b.delay * 2).min(max),
                updated: now,
            },
            _ => Backoff {
                delay: ctx.cfg.restart_backoff_initial,
                updated: now,
            },
        });
        c.restart_count += 1;
    }
    c.phase = CPhase::Starting;
    ctx.out.commands.push_back(RuntimeCommand::StartContainer {
        pod: pod.clone(),
        container: Box::new(c.spec.clone()),
        env,
    });
}

pub(super) fn send_due_probes(c: &mut ContainerState, pod: &PodRef, ip: Ipv4Addr, ctx: &mut Ctx) {
    let now = ctx.now;
    let started = c.started;
    let spec = c.spec.clone();
    for w in c.probes.iter_mut() {
        let gated = match w.kind {
            ProbeKind::Startup => started,
            _ => !started,
        };
        if gated || !w.due(now) {
            continue;
        }
        match probe_action(&w.probe, &spec, ip) {
            Ok(action) => {
                let id = ctx.out.next_probe_id();
                w.sent(id, now);
                ctx.out
                    .inflight_probes
                    .insert(id, (pod.uid.clone(), spec.name.clone(), w.kind));
                ctx.out.probes.push_back(ProbeRequest {
                    id,
                    pod: pod.clone(),
                    container: spec.name.clone(),
                    kind: w.kind,
                    action,
                    timeout: w.timeout(),
                });
            }
            Err(e) => {
                tracing::warn!(pod = %pod.key, container = %spec.name, error = %e, "bad probe");
                w.next_at = now + w.period();
            }
        }
    }
}
