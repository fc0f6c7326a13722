//! One container of a pod on the node: its phase, restart count and CrashLoopBackOff backoff,
//! probe workers and liveness kill; starting it and sending its due probes.
//!
//! Start at [`ContainerState`]; [`super::pod::PodState`] drives it.

use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Container;
use runtime::Moment;

use super::pod::Ctx;
use super::probe::{ProbeWorker, probe_action};
use super::standin::{self, ImagePolicy, Plan};
use super::{PodRef, ProbeKind, ProbeRequest, RuntimeCommand};

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Terminated {
    /// Which instance of the container this was (its restart count when it ran).
    pub attempt: i32,
    pub code: i32,
    pub reason: String,
    pub started_at: Moment,
    pub finished_at: Moment,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum CPhase {
    /// Not running; `restart_at` when a (re)start is planned.
    Waiting {
        reason: String,
        message: Option<String>,
        restart_at: Option<Moment>,
    },
    Starting,
    Running {
        pid: u32,
        started_at: Moment,
    },
    /// Exited and will not be restarted.
    Terminated(Terminated),
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Backoff {
    pub delay: Duration,
    pub updated: Moment,
}

/// A container being killed for a failed liveness/startup probe.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Kill {
    pub kill_at: Moment,
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
    /// How the lab runs it (built-in echo, own command, stand-in, refused).
    pub plan: Plan,
    /// Image pull backoff of a refused image (`--image-policy fail`).
    pub pull_backoff: Option<Backoff>,
    /// The `StandIn` Event was recorded for this container.
    pub stand_in_announced: bool,
}

impl ContainerState {
    pub(super) fn new(spec: &Container, policy: ImagePolicy) -> ContainerState {
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
                restart_at: Some(Moment::MIN),
            },
            restart_count: 0,
            last_term: None,
            backoff: None,
            ready: false,
            started: false,
            probes,
            kill: None,
            plan: standin::plan(spec, policy),
            pull_backoff: None,
            stand_in_announced: false,
        }
    }

    /// A stand-in container: exec probes succeed without running anything.
    pub fn is_stand_in(&self) -> bool {
        matches!(self.plan, Plan::StandIn { .. })
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
            Some(b) if now <= b.updated + max * 2 => Backoff {
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
        attempt: c.restart_count,
        plan: c.plan.clone(),
    });
}

/// A refused image's pull attempt came due at `now`: outside the backoff window it "pulls"
/// and fails (`ErrImagePull`, backoff doubled as upstream's image backoff, which shares the
/// container restart backoff's 10 s .. 300 s), inside it reports `ImagePullBackOff`.
/// Returns the Events to record: (type is Warning unless `BackOff`, reason, message).
pub(super) fn refuse_pull(
    c: &mut ContainerState,
    image: &str,
    ctx: &mut Ctx,
) -> Vec<(&'static str, String)> {
    let now = ctx.now;
    let err = standin::refused_message(image);
    match c.pull_backoff {
        Some(b) if now < b.updated + b.delay => {
            let until = b.updated + b.delay;
            c.phase = CPhase::Waiting {
                reason: standin::IMAGE_PULL_BACK_OFF.into(),
                message: Some(format!(
                    "Back-off pulling image \"{image}\": {}: {err}",
                    standin::ERR_IMAGE_PULL
                )),
                restart_at: Some(until),
            };
            vec![
                ("BackOff", format!("Back-off pulling image \"{image}\"")),
                ("Failed", format!("Error: {}", standin::IMAGE_PULL_BACK_OFF)),
            ]
        }
        prev => {
            let max = ctx.cfg.restart_backoff_max;
            let delay = match prev {
                Some(b) if now <= b.updated + max * 2 => (b.delay * 2).min(max),
                _ => ctx.cfg.restart_backoff_initial,
            };
            c.pull_backoff = Some(Backoff {
                delay,
                updated: now,
            });
            c.phase = CPhase::Waiting {
                reason: standin::ERR_IMAGE_PULL.into(),
                message: Some(err.clone()),
                // The pod worker's next sync shows the backoff (upstream requeues at once).
                restart_at: Some(now + PULL_RESYNC.min(delay)),
            };
            vec![
                ("Pulling", format!("Pulling image \"{image}\"")),
                ("Failed", format!("Failed to pull image \"{image}\": {err}")),
                ("Failed", format!("Error: {}", standin::ERR_IMAGE_PULL)),
            ]
        }
    }
}

/// After a failed pull, the next sync (which reports `ImagePullBackOff`) comes this much
/// later at most.
pub const PULL_RESYNC: Duration = Duration::from_millis(1_000);

pub(super) fn send_due_probes(c: &mut ContainerState, pod: &PodRef, ip: Ipv4Addr, ctx: &mut Ctx) {
    let now = ctx.now;
    let started = c.started;
    let stand_in = c.is_stand_in();
    let spec = &c.spec;
    for w in c.probes.iter_mut() {
        let gated = match w.kind {
            ProbeKind::Startup => started,
            _ => !started,
        };
        if gated || !w.due(now) {
            continue;
        }
        if stand_in && w.probe.exec.is_some() {
            // A stand-in has none of the image's files or tools: its exec probes succeed.
            let id = ctx.out.next_probe_id();
            w.sent(id, now);
            ctx.out
                .inflight_probes
                .insert(id, (pod.uid.clone(), spec.name.clone(), w.kind));
            ctx.out.instant_successes.push_back(id);
            continue;
        }
        match probe_action(&w.probe, spec, ip) {
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
