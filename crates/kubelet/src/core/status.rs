//! Pod status: what the kubelet reports (phase, IPs, conditions, container statuses) and the
//! status-manager rule for writing it (only on change, built on the cached pod for CAS, wait
//! for the newer pod after a conflict). Start at [`sync_status`].

use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use runtime::time::to_time;
use runtime::{Action, Moment, Object, WriteError};

use super::config::{STATUS_CONFLICT_WAIT, STATUS_RETRY};
use super::pod::{CPhase, Ctx, NetState, PodState, TermReason, Terminated};

/// Upstream reason and message of pods stopped by a graceful node shutdown
/// (k/k `pkg/kubelet/nodeshutdown/nodeshutdown_manager_linux.go`).
pub const SHUTDOWN_REASON: &str = "Terminated";
pub const SHUTDOWN_MESSAGE: &str = "Pod was terminated in response to imminent node shutdown.";

/// Write bookkeeping of one pod's status.
#[derive(Clone, Debug, Default)]
pub(crate) struct StatusSync {
    inflight: bool,
    /// Do not write while the cached pod still has this resourceVersion (our last write's
    /// base: the watch has not brought the result yet) ...
    awaiting_rv: Option<String>,
    /// ... unless this much time passed.
    awaiting_until: Moment,
    /// No write before this (after an error).
    not_before: Moment,
    /// A write is wanted but was held back.
    dirty: bool,
}

impl StatusSync {
    fn blocked(&self, cached_rv: Option<&String>, now: Moment) -> bool {
        self.inflight
            || now < self.not_before
            || (self.awaiting_rv.is_some()
                && self.awaiting_rv.as_ref() == cached_rv
                && now < self.awaiting_until)
    }

    pub fn handle_write_result(
        &mut self,
        obj: &Object,
        result: &Result<(), WriteError>,
        now: Moment,
    ) {
        self.inflight = false;
        match result {
            Ok(()) | Err(WriteError::Conflict) => {
                self.awaiting_rv = obj.meta().resource_version.clone();
                self.awaiting_until = now + STATUS_CONFLICT_WAIT;
                self.dirty = result.is_err();
            }
            Err(WriteError::NotFound) => {}
            Err(e) => {
                tracing::warn!(key = %obj.key(), error = ?e, "pod status write failed");
                self.awaiting_rv = None;
                self.not_before = now + STATUS_RETRY;
                self.dirty = true;
            }
        }
    }

    pub fn wakeup(&self) -> Option<Moment> {
        (self.dirty && !self.inflight).then_some(self.not_before.max(self.awaiting_until))
    }
}

/// Write `st`'s status for the cached `pod` if it differs from what the API holds.
pub(crate) fn sync_status(st: &mut PodState, pod: &Pod, ctx: &mut Ctx) {
    let now = ctx.now;
    let desired = build_status(st, pod, ctx);
    let annotation = super::annotate::pending(st, pod);
    if pod.status.as_ref() == Some(&desired) && annotation.is_none() {
        st.status.dirty = false;
        return;
    }
    if st
        .status
        .blocked(pod.metadata.resource_version.as_ref(), now)
    {
        st.status.dirty = true;
        return;
    }
    let mut next = pod.clone();
    next.status = Some(desired);
    if let Some(value) = annotation {
        super::annotate::set(&mut next, value);
    }
    st.status.inflight = true;
    st.status.dirty = false;
    ctx.out
        .writes
        .push_action(Action::UpdateStatus(Object::Pod(Arc::new(next))));
}

fn all_stopped(st: &PodState) -> bool {
    st.containers.iter().all(|c| !c.is_live())
}

/// Upstream `getPhase`, plus the terminal phase of a terminated pod.
fn phase(st: &PodState) -> &'static str {
    if let Some(t) = &st.term
        && all_stopped(st)
    {
        let all_ok = st
            .containers
            .iter()
            .all(|c| c.last_term.as_ref().is_some_and(|t| t.code == 0));
        return match t.reason {
            TermReason::Shutdown => "Failed",
            _ if all_ok => "Succeeded",
            _ => "Failed",
        };
    }
    let (mut waiting, mut running, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in &st.containers {
        match (&c.phase, &c.last_term) {
            (CPhase::Running { .. }, _) => running += 1,
            (CPhase::Terminated(t), _) => {
                stopped += 1;
                if t.code == 0 {
                    succeeded += 1;
                }
            }
            (_, None) => waiting += 1,
            (_, Some(_)) => stopped += 1,
        }
    }
    let restarting =
        st.restart_policy == "Always" || stopped != succeeded && st.restart_policy != "Never";
    if waiting > 0 {
        "Pending"
    } else if running > 0 || restarting {
        "Running"
    } else if stopped == succeeded {
        "Succeeded"
    } else {
        "Failed"
    }
}

fn condition(
    old: &[PodCondition],
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    msg: Option<String>,
    now: Moment,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let since = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| to_time(now));
    PodCondition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.map(str::to_string),
        message: msg,
        last_transition_time: Some(since),
        ..PodCondition::default()
    }
}

fn conditions(st: &PodState, old: &[PodCondition], phase: &str, now: Moment) -> Vec<PodCondition> {
    let unready: Vec<&str> = st
        .containers
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.spec.name.as_str())
        .collect();
    let all_ready = unready.is_empty();
    let terminal = phase == "Succeeded" || phase == "Failed";
    let (reason, msg) = match (all_ready, terminal) {
        (true, _) => (None, None),
        (false, true) => (Some("PodCompleted"), None),
        (false, false) => (
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        ),
    };
    let net_ready = st.net == NetState::Ready;
    let mut out = vec![
        condition(old, "PodReadyToStartContainers", net_ready, None, None, now),
        condition(old, "Initialized", true, None, None, now),
        condition(old, "Ready", all_ready, reason, msg.clone(), now),
        condition(old, "ContainersReady", all_ready, reason, msg, now),
    ];
    match old.iter().find(|c| c.type_ == "PodScheduled") {
        Some(c) => out.push(c.clone()),
        None => out.push(condition(old, "PodScheduled", true, None, None, now)),
    }
    if st
        .term
        .as_ref()
        .is_some_and(|t| t.reason == TermReason::Shutdown)
    {
        out.push(condition(
            old,
            "DisruptionTarget",
            true,
            Some("TerminationByKubelet"),
            Some(SHUTDOWN_MESSAGE.into()),
            now,
        ));
    }
    let ours: Vec<String> = out.iter().map(|c| c.type_.clone()).collect();
    out.extend(old.iter().filter(|c| !ours.contains(&c.type_)).cloned());
    out
}

fn terminated(t: &Terminated, id: &str) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: t.code,
        reason: Some(t.reason.clone()),
        started_at: Some(to_time(t.started_at)),
        finished_at: Some(to_time(t.finished_at)),
        container_id: Some(id.to_string()),
        ..ContainerStateTerminated::default()
    }
}

/// A container instance's ID: `zonelab://<pod uid>/<container>/<attempt>` (the attempt names
/// its log file; see [`super::logs`]).
pub fn container_id(uid: &str, container: &str, attempt: i32) -> String {
    format!("zonelab://{uid}/{container}/{attempt}")
}

pub(crate) fn container_statuses(st: &PodState) -> Vec<ContainerStatus> {
    st.containers
        .iter()
        .map(|c| {
            let id = container_id(&st.uid, &c.spec.name, c.restart_count);
            let waiting = |reason: &str, message: Option<String>| ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.into()),
                    message,
                }),
                ..ContainerState::default()
            };
            let (state, running) = match &c.phase {
                CPhase::Waiting {
                    reason, message, ..
                } => (waiting(reason, message.clone()), false),
                CPhase::Starting => (waiting("ContainerCreating", None), false),
                CPhase::Running { started_at, .. } => (
                    ContainerState {
                        running: Some(ContainerStateRunning {
                            started_at: Some(to_time(*started_at)),
                        }),
                        ..ContainerState::default()
                    },
                    true,
                ),
                CPhase::Terminated(t) => (
                    ContainerState {
                        terminated: Some(terminated(
                            t,
                            &container_id(&st.uid, &c.spec.name, t.attempt),
                        )),
                        ..ContainerState::default()
                    },
                    false,
                ),
            };
            let last_state = match (&c.phase, &c.last_term) {
                (CPhase::Terminated(_), _) | (_, None) => None,
                (_, Some(t)) => Some(ContainerState {
                    terminated: Some(terminated(
                        t,
                        &container_id(&st.uid, &c.spec.name, t.attempt),
                    )),
                    ..ContainerState::default()
                }),
            };
            ContainerStatus {
                name: c.spec.name.clone(),
                image: c.spec.image.clone().unwrap_or_default(),
                image_id: String::new(),
                container_id: running.then(|| id.clone()),
                ready: c.ready && running,
                started: Some(running && c.started),
                restart_count: c.restart_count,
                state: Some(state),
                last_state,
                ..ContainerStatus::default()
            }
        })
        .collect()
}

/// The status the kubelet wants the API to hold for `pod`.
pub(crate) fn build_status(st: &PodState, pod: &Pod, ctx: &Ctx) -> PodStatus {
    let now = ctx.now;
    let old = pod.status.clone().unwrap_or_default();
    let phase = phase(st);
    let old_conds = old.conditions.clone().unwrap_or_default();
    let host_ip = ctx.cfg.node_ip.to_string();
    let pod_ip = st.ip.map(|i| i.to_string()).or(old.pod_ip.clone());
    let shutdown_done = phase == "Failed"
        && st
            .term
            .as_ref()
            .is_some_and(|t| t.reason == TermReason::Shutdown);
    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions(st, &old_conds, phase, now)),
        host_ip: Some(host_ip.clone()),
        host_ips: Some(vec![HostIP { ip: host_ip }]),
        pod_ips: pod_ip.clone().map(|ip| vec![PodIP { ip }]),
        pod_ip,
        start_time: old.start_time.clone().or(Some(to_time(st.start_time))),
        container_statuses: Some(container_statuses(st)),
        reason: if shutdown_done {
            Some(SHUTDOWN_REASON.into())
        } else {
            old.reason.clone()
        },
        message: if shutdown_done {
            Some(SHUTDOWN_MESSAGE.into())
        } else {
            old.message.clone()
        },
        qos_class: old.qos_class.clone().or(Some("BestEffort".into())),
        ..old
    }
}
