//! One pod's lifecycle on the node: network, containers (start, restart with CrashLoopBackOff
//! backoff, liveness kills), termination (not ready, SIGTERM, SIGKILL after the grace,
//! teardown, final delete). Start at [`PodState::sync`].

use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use runtime::events::{self, EventRecord, EventType};
use runtime::time::{duration_ms, span_ms};
use runtime::{Action, Cache, Key, Kind, Moment, WriteError};

use super::config::{DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS, STATUS_RETRY};
use super::container::refuse_pull;
pub(crate) use super::container::{CPhase, Terminated};
use super::container::{ContainerState, Kill, send_due_probes, start_container};
use super::probe::{ProbeWorker, Verdict};
use super::standin::{self, ImagePolicy, Plan};
use super::status::StatusSync;
use super::{
    Ipam, KubeletConfig, Outbox, PodRef, ProbeKind, ProbeOutcome, RuntimeCommand, RuntimeEvent,
    Signal,
};

/// Bound on how long SIGTERM waits for the "not ready" status to be written first.
pub const NOT_READY_WAIT: Duration = Duration::from_millis(2_000);
/// Retry delays after a failed network setup: doubling from 1 s up to 30 s.
const NET_RETRY_INITIAL: Duration = Duration::from_millis(1_000);
const NET_RETRY_MAX: Duration = Duration::from_millis(30_000);

/// What a sync may touch besides the pod itself.
pub(crate) struct Ctx<'a> {
    pub cfg: &'a KubeletConfig,
    pub cache: &'a Cache,
    pub ipam: &'a mut Ipam,
    pub out: &'a mut Outbox,
    pub shutdown: Option<Moment>,
    pub now: Moment,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NetState {
    Absent,
    SettingUp,
    Ready,
    Failed { retry_at: Moment, delay: Duration },
    TearingDown,
    Down,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TermReason {
    /// deletionTimestamp set: finish with a delete (grace 0, uid precondition).
    Deleted,
    /// Graceful node shutdown: finish as phase Failed.
    Shutdown,
    /// The API object is gone (or replaced): just clean up.
    Orphaned,
}

#[derive(Clone, Debug)]
pub(crate) struct Termination {
    pub reason: TermReason,
    pub began: Moment,
    pub kill_at: Moment,
    pub term_sent: bool,
    pub kill_sent: bool,
    /// A status write with the pod not ready succeeded.
    pub not_ready_posted: bool,
}

/// One pod this kubelet runs (keyed by UID in [`super::Kubelet`]).
#[derive(Clone, Debug)]
pub(crate) struct PodState {
    pub key: Key,
    pub uid: String,
    pub start_time: Moment,
    pub ip: Option<Ipv4Addr>,
    pub net: NetState,
    pub containers: Vec<ContainerState>,
    pub restart_policy: String,
    pub grace_seconds: i64,
    pub term: Option<Termination>,
    pub status: StatusSync,
    delete_sent: bool,
    delete_retry_at: Option<Moment>,
    orphaned: bool,
}

fn pod_grace(pod: &Pod) -> i64 {
    pod.metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS)
        .max(0)
}

use runtime::labels::pod_is_terminal as is_terminal;

impl PodState {
    /// Take on the cached pod `key`/`uid`; `None` for a finished pod nobody is deleting.
    pub fn admit(
        cache: &Cache,
        key: &Key,
        uid: &str,
        policy: ImagePolicy,
        now: Moment,
    ) -> Option<PodState> {
        let pod = cache.pods.get(key)?;
        if is_terminal(pod) && pod.metadata.deletion_timestamp.is_none() {
            return None;
        }
        let spec = pod.spec.as_ref()?;
        Some(PodState {
            key: key.clone(),
            uid: uid.to_string(),
            start_time: now,
            ip: None,
            net: NetState::Absent,
            containers: spec
                .containers
                .iter()
                .map(|c| ContainerState::new(c, policy))
                .collect(),
            restart_policy: spec
                .restart_policy
                .clone()
                .unwrap_or_else(|| "Always".into()),
            grace_seconds: pod_grace(pod),
            term: None,
            status: StatusSync::default(),
            delete_sent: false,
            delete_retry_at: None,
            orphaned: false,
        })
    }

    pub fn pod_ref(&self) -> PodRef {
        PodRef {
            key: self.key.clone(),
            uid: self.uid.clone(),
        }
    }

    fn all_stopped(&self) -> bool {
        self.containers.iter().all(|c| !c.is_live())
    }

    /// No processes and no network left.
    pub fn is_quiescent(&self) -> bool {
        self.all_stopped()
            && matches!(self.net, NetState::Down | NetState::Absent)
            && self.containers.iter().all(|c| {
                !matches!(
                    c.phase,
                    CPhase::Waiting {
                        restart_at: Some(_),
                        ..
                    }
                )
            })
    }

    /// The API object is gone and everything is cleaned up: forget the pod.
    pub fn finished(&self) -> bool {
        self.orphaned && self.is_quiescent()
    }

    /// The cached pod this state belongs to, if it still exists.
    pub fn cached<'c>(&self, cache: &'c Cache) -> Option<&'c Pod> {
        cache
            .pods
            .get(&self.key)
            .map(AsRef::as_ref)
            .filter(|p| p.metadata.uid.as_deref() == Some(self.uid.as_str()))
    }

    /// Move the pod towards what the API and the node state want.
    pub fn sync(&mut self, ctx: &mut Ctx) {
        // Borrowed from the cache (its own lifetime, not `ctx`'s): no copy of the pod.
        let cache = ctx.cache;
        let cached = self.cached(cache);
        if cached.is_none() {
            self.orphaned = true;
        }
        self.maybe_begin_termination(cached, ctx);
        if self.term.is_some() {
            self.sync_terminating(cached, ctx);
        } else {
            self.sync_running(ctx);
        }
        if let Some(pod) = cached {
            super::status::sync_status(self, pod, ctx);
        }
    }

    fn maybe_begin_termination(&mut self, cached: Option<&Pod>, ctx: &mut Ctx) {
        let now = ctx.now;
        if let Some(term) = self.term.as_mut() {
            if self.orphaned && term.reason != TermReason::Orphaned {
                term.reason = TermReason::Orphaned;
                term.kill_at = term.kill_at.min(now);
            }
            return;
        }
        let (reason, grace_ms) = match cached {
            None => (TermReason::Orphaned, 0),
            Some(p) if p.metadata.deletion_timestamp.is_some() => {
                (TermReason::Deleted, pod_grace(p) * 1000)
            }
            Some(_) if ctx.shutdown.is_some() => (
                TermReason::Shutdown,
                (self.grace_seconds * 1000).min(duration_ms(ctx.cfg.shutdown_grace_period)),
            ),
            Some(_) => return,
        };
        tracing::info!(pod = %self.key, ?reason, grace_ms, "terminating pod");
        self.term = Some(Termination {
            reason,
            began: now,
            kill_at: now + span_ms(grace_ms),
            term_sent: false,
            kill_sent: false,
            not_ready_posted: false,
        });
        for c in self.containers.iter_mut() {
            c.ready = false;
            c.stop_probes();
            if let CPhase::Waiting { .. } = c.phase {
                c.phase = match &c.last_term {
                    Some(t) => CPhase::Terminated(t.clone()),
                    None => CPhase::Waiting {
                        reason: "ContainerCreating".into(),
                        message: None,
                        restart_at: None,
                    },
                };
            }
        }
    }

    fn signal_live(&mut self, signal: Signal, out: &mut Outbox) {
        let pod = self.pod_ref();
        for c in self.containers.iter().filter(|c| c.is_live()) {
            if let CPhase::Running { .. } = c.phase {
                out.commands.push_back(RuntimeCommand::Signal {
                    pod: pod.clone(),
                    container: c.name().to_string(),
                    signal,
                });
            }
        }
    }

    fn sync_terminating(&mut self, cached: Option<&Pod>, ctx: &mut Ctx) {
        let now = ctx.now;
        let Some(term) = self.term.clone() else {
            return;
        };
        let not_ready_seen = cached.is_none_or(|p| !runtime::pod_is_ready(p));
        if !term.term_sent
            && (not_ready_seen || term.not_ready_posted || now >= term.began + NOT_READY_WAIT)
        {
            let running: Vec<String> = self
                .containers
                .iter()
                .filter(|c| matches!(c.phase, CPhase::Running { .. }))
                .map(|c| c.name().to_string())
                .collect();
            for name in running {
                // Upstream `killContainer`: Killing "Stopping container X".
                let msg = format!("Stopping container {name}");
                self.event(ctx, &name, EventType::Normal, "Killing", msg);
            }
            self.signal_live(Signal::Term, ctx.out);
            if let Some(t) = self.term.as_mut() {
                t.term_sent = true;
            }
        }
        if !term.kill_sent && now >= term.kill_at {
            self.signal_live(Signal::Kill, ctx.out);
            if let Some(t) = self.term.as_mut() {
                t.kill_sent = true;
            }
        }
        if !self.all_stopped() {
            return;
        }
        match self.net {
            NetState::SettingUp | NetState::TearingDown => return,
            NetState::Ready | NetState::Failed { .. } => {
                self.teardown(ctx.out);
                return;
            }
            NetState::Absent => self.net = NetState::Down,
            NetState::Down => {}
        }
        if term.reason == TermReason::Deleted
            && !self.delete_sent
            && self.delete_retry_at.is_none_or(|t| t <= now)
        {
            self.delete_sent = true;
            self.delete_retry_at = None;
            ctx.out.writes.push_action(Action::Delete {
                kind: Kind::Pod,
                key: self.key.clone(),
                uid: Some(self.uid.clone()),
                grace_period_seconds: Some(0),
            });
        }
    }

    fn teardown(&mut self, out: &mut Outbox) {
        self.net = NetState::TearingDown;
        out.commands.push_back(RuntimeCommand::TeardownNetwork {
            pod: self.pod_ref(),
        });
    }

    fn sync_running(&mut self, ctx: &mut Ctx) {
        let now = ctx.now;
        match self.net {
            NetState::Absent => return self.setup_network(ctx),
            NetState::Failed { retry_at, .. } if retry_at <= now => {
                return self.setup_network(ctx);
            }
            NetState::Ready => {}
            _ => return,
        }
        let pod = self.pod_ref();
        let cache = ctx.cache;
        let cached = self.cached(cache);
        let mut pending_events = Vec::new();
        for c in self.containers.iter_mut() {
            if let CPhase::Waiting {
                restart_at: Some(t),
                ..
            } = c.phase
                && t <= now
            {
                let env = super::env::container_env(ctx.cfg, cached, self.ip, &c.spec);
                for (type_, reason, msg) in start_or_refuse(c, &pod, env, ctx) {
                    pending_events.push((c.spec.name.clone(), type_, reason, msg));
                }
            }
            if let (CPhase::Running { .. }, Some(k)) = (&c.phase, c.kill.as_mut())
                && !k.kill_sent
                && k.kill_at <= now
            {
                k.kill_sent = true;
                ctx.out.commands.push_back(RuntimeCommand::Signal {
                    pod: pod.clone(),
                    container: c.spec.name.clone(),
                    signal: Signal::Kill,
                });
            }
            if let (CPhase::Running { .. }, Some(ip)) = (&c.phase, self.ip) {
                send_due_probes(c, &pod, ip, ctx);
            }
        }
        for (name, type_, reason, msg) in pending_events {
            self.event(ctx, &name, type_, reason, msg);
        }
        let done = self
            .containers
            .iter()
            .all(|c| matches!(c.phase, CPhase::Terminated(_)));
        if done && !self.containers.is_empty() {
            self.teardown(ctx.out);
        }
    }

    fn setup_network(&mut self, ctx: &mut Ctx) {
        match ctx.ipam.allocate(&self.uid) {
            Ok(ip) => {
                self.net = NetState::SettingUp;
                ctx.out.commands.push_back(RuntimeCommand::SetupNetwork {
                    pod: self.pod_ref(),
                    ip,
                });
            }
            Err(e) => {
                tracing::warn!(pod = %self.key, error = %e, "no pod address");
                self.net_failed(ctx.now);
            }
        }
    }

    fn net_failed(&mut self, now: Moment) {
        let delay = match self.net {
            NetState::Failed { delay, .. } => (delay * 2).min(NET_RETRY_MAX),
            _ => NET_RETRY_INITIAL,
        };
        self.net = NetState::Failed {
            retry_at: now + delay,
            delay,
        };
    }

    /// A runtime report for this pod.
    pub fn on_event(&mut self, event: RuntimeEvent, ctx: &mut Ctx) {
        let now = ctx.now;
        match event {
            RuntimeEvent::PodNetworkReady { ip, .. } => {
                if self.net == NetState::SettingUp {
                    self.net = NetState::Ready;
                    self.ip = Some(ip);
                }
            }
            RuntimeEvent::PodNetworkFailed { message, .. } => {
                tracing::warn!(pod = %self.key, %message, "pod network setup failed");
                if self.net == NetState::SettingUp {
                    self.net_failed(now);
                }
            }
            RuntimeEvent::PodNetworkTornDown { .. } => {
                self.net = NetState::Down;
                ctx.ipam.release(&self.uid);
            }
            RuntimeEvent::ContainerStarted { container, pid, .. } => {
                // Upstream `startContainer`: Pulled (images are local here), Created, then
                // Started; one runtime step here.
                let image = self
                    .containers
                    .iter()
                    .find(|c| c.name() == container)
                    .and_then(|c| c.spec.image.clone())
                    .unwrap_or_default();
                let pulled = format!("Container image \"{image}\" already present on machine");
                self.event(ctx, &container, EventType::Normal, "Pulled", pulled);
                let created = format!("Created container: {container}");
                self.event(ctx, &container, EventType::Normal, "Created", created);
                let started = format!("Started container {container}");
                self.event(ctx, &container, EventType::Normal, "Started", started);
                self.handle_started(&container, pid, ctx);
            }
            RuntimeEvent::ContainerStartFailed {
                container, message, ..
            } => {
                tracing::warn!(pod = %self.key, %container, %message, "container start failed");
                let msg = format!("Error: {message}");
                self.event(ctx, &container, EventType::Warning, "Failed", msg);
                self.handle_exit(&container, 128, "StartError", ctx);
            }
            RuntimeEvent::ContainerExited {
                container, code, ..
            } => {
                let reason = if code == 0 { "Completed" } else { "Error" };
                self.handle_exit(&container, code, reason, ctx);
            }
        }
    }

    fn handle_started(&mut self, name: &str, pid: u32, ctx: &mut Ctx) {
        let now = ctx.now;
        let pod = self.pod_ref();
        let terminating = self.term.as_ref().map(|t| (t.term_sent, t.kill_sent));
        let Some(c) = self.containers.iter_mut().find(|c| c.name() == name) else {
            return;
        };
        if c.phase != CPhase::Starting {
            return;
        }
        c.phase = CPhase::Running {
            pid,
            started_at: now,
        };
        c.started = !c.has_probe(ProbeKind::Startup);
        c.ready = false;
        c.kill = None;
        for p in c.probes.iter_mut() {
            p.reset(now);
        }
        if let Some((term_sent, kill_sent)) = terminating {
            c.stop_probes();
            let sig = [(kill_sent, Signal::Kill), (term_sent, Signal::Term)]
                .into_iter()
                .find(|(sent, _)| *sent)
                .map(|(_, s)| s);
            if let Some(signal) = sig {
                ctx.out.commands.push_back(RuntimeCommand::Signal {
                    pod,
                    container: name.to_string(),
                    signal,
                });
            }
        } else if c.started && !c.has_probe(ProbeKind::Readiness) {
            c.ready = true;
        }
    }

    fn handle_exit(&mut self, name: &str, code: i32, reason: &str, ctx: &mut Ctx) {
        let now = ctx.now;
        let terminating = self.term.is_some();
        let policy = self.restart_policy.clone();
        let pod_name = format!("{}_{}({})", self.key.name, self.key.namespace, self.uid);
        let Some(c) = self.containers.iter_mut().find(|c| c.name() == name) else {
            return;
        };
        let started_at = match c.phase {
            CPhase::Running { started_at, .. } => started_at,
            CPhase::Starting => now,
            _ => return,
        };
        let t = Terminated {
            attempt: c.restart_count,
            code,
            reason: reason.to_string(),
            started_at,
            finished_at: now,
        };
        c.ready = false;
        c.started = false;
        c.kill = None;
        c.stop_probes();
        c.last_term = Some(t.clone());
        let restart = !terminating
            && match policy.as_str() {
                "Never" => false,
                "OnFailure" => code != 0,
                _ => true,
            };
        if !restart {
            c.phase = CPhase::Terminated(t);
            return;
        }
        let max = ctx.cfg.restart_backoff_max;
        let restart_at = match c.backoff {
            Some(b) if now <= b.updated + max * 2 => now + b.delay,
            _ => now,
        };
        let (reason, message) = if restart_at > now {
            let delay_s = restart_at.saturating_since(now).as_secs();
            (
                "CrashLoopBackOff".to_string(),
                Some(format!(
                    "back-off {delay_s}s restarting failed container={name} pod={pod_name}"
                )),
            )
        } else {
            ("ContainerCreating".to_string(), None)
        };
        let backing_off = restart_at > now;
        c.phase = CPhase::Waiting {
            reason,
            message,
            restart_at: Some(restart_at),
        };
        if backing_off {
            // Upstream `doBackOff`: Warning BackOff "Back-off restarting failed container …".
            let msg = format!("Back-off restarting failed container {name} in pod {pod_name}");
            self.event(ctx, name, EventType::Warning, "BackOff", msg);
        }
    }

    /// Whether a success of probe `id` (of container `name`, `kind`) would change nothing:
    /// the pod is not terminating, the probe is in flight and already settled on success,
    /// and a readiness probe's container readiness already reflects it.
    pub fn probe_settled(&self, id: u64, name: &str, kind: ProbeKind) -> bool {
        if self.term.is_some() {
            return false;
        }
        self.containers.iter().any(|c| {
            c.name() == name
                && c.probes.iter().any(|w| {
                    w.kind == kind
                        && w.inflight == Some(id)
                        && w.settled_on_success()
                        && match kind {
                            ProbeKind::Readiness => c.ready == c.started,
                            ProbeKind::Liveness => true,
                            ProbeKind::Startup => false,
                        }
                })
        })
    }

    /// A probe result for container `name`. Returns whether it changed the container (its
    /// readiness, start or a kill): only then does the pod need a sync, as upstream's results
    /// manager sends an update only when a result changes.
    #[allow(clippy::too_many_arguments)]
    pub fn handle_probe_result(
        &mut self,
        id: u64,
        name: &str,
        kind: ProbeKind,
        outcome: &ProbeOutcome,
        ctx: &mut Ctx,
    ) -> bool {
        let now = ctx.now;
        let grace = self.grace_seconds;
        if self.term.is_some() {
            return false;
        }
        let current = self.containers.iter().any(|c| {
            c.name() == name
                && c.probes
                    .iter()
                    .any(|w| w.kind == kind && w.inflight == Some(id))
        });
        if !current {
            return false;
        }
        let kind_name = match kind {
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Startup => "Startup",
        };
        if let ProbeOutcome::Failure(output) = outcome {
            // Upstream prober: Unhealthy "<Kind> probe failed: <output>" on every failure.
            let msg = format!("{kind_name} probe failed: {output}");
            self.event(ctx, name, EventType::Warning, "Unhealthy", msg);
        }
        let mut killing = false;
        let pod_ref = || PodRef {
            key: self.key.clone(),
            uid: self.uid.clone(),
        };
        let Some(c) = self.containers.iter_mut().find(|c| c.name() == name) else {
            return false;
        };
        let Some(w) = c
            .probes
            .iter_mut()
            .find(|w| w.kind == kind && w.inflight == Some(id))
        else {
            return false;
        };
        let ok = *outcome == ProbeOutcome::Success;
        let verdict = w.record(ok);
        let probe_grace = w.probe.termination_grace_period_seconds;
        let mut changed = true;
        match (kind, verdict) {
            (_, Verdict::Unchanged) | (ProbeKind::Liveness, Verdict::Succeeded) => changed = false,
            (ProbeKind::Readiness, v) => {
                let ready = v == Verdict::Succeeded && c.started;
                changed = c.ready != ready;
                c.ready = ready;
            }
            (ProbeKind::Startup, Verdict::Succeeded) => {
                c.started = true;
                if !c.has_probe(ProbeKind::Readiness) {
                    c.ready = true;
                }
                for w in c.probes.iter_mut().filter(|w| w.kind != ProbeKind::Startup) {
                    w.next_at = w.next_at.min(now);
                }
            }
            (ProbeKind::Liveness | ProbeKind::Startup, Verdict::Failed) => {
                let pod = pod_ref();
                tracing::info!(pod = %pod.key, container = name, ?kind, ?outcome, "probe failed, killing container");
                let grace_ms = probe_grace.unwrap_or(grace).max(0) * 1000;
                c.ready = false;
                c.stop_probes();
                c.kill = Some(Kill {
                    kill_at: now + span_ms(grace_ms),
                    kill_sent: grace_ms == 0,
                });
                let signal = if grace_ms == 0 {
                    Signal::Kill
                } else {
                    Signal::Term
                };
                ctx.out.commands.push_back(RuntimeCommand::Signal {
                    pod,
                    container: name.to_string(),
                    signal,
                });
                killing = true;
            }
        }
        if killing {
            // Upstream `computePodActions` → `killContainer` with the probe's message.
            let msg = format!(
                "Container {name} failed {} probe, will be restarted",
                kind_name.to_lowercase()
            );
            self.event(ctx, name, EventType::Normal, "Killing", msg);
        }
        changed
    }

    /// Record an event about container `container` of this pod (kubelet source, this node).
    fn event(
        &self,
        ctx: &mut Ctx,
        container: &str,
        type_: EventType,
        reason: &'static str,
        message: String,
    ) {
        let involved = match ctx.cache.pods.get(&self.key) {
            Some(p) if p.metadata.uid.as_deref() == Some(self.uid.as_str()) => {
                events::container_ref(p, container)
            }
            _ => ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                namespace: Some(self.key.namespace.clone()),
                name: Some(self.key.name.clone()),
                uid: Some(self.uid.clone()),
                field_path: Some(format!("spec.containers{{{container}}}")),
                ..ObjectReference::default()
            },
        };
        let rec = EventRecord::new(
            events::source::KUBELET,
            involved,
            type_,
            reason,
            message,
            ctx.now,
        );
        ctx.out.writes.push_event(rec.on_host(&ctx.cfg.node_name));
    }

    /// A pod write (status or delete) finished.
    pub fn handle_write_result(
        &mut self,
        action: &Action,
        result: &Result<(), WriteError>,
        now: Moment,
    ) {
        match action {
            Action::UpdateStatus(obj) => {
                let posted_not_ready = match obj {
                    runtime::Object::Pod(p) => !runtime::pod_is_ready(p),
                    _ => false,
                };
                if result.is_ok()
                    && posted_not_ready
                    && let Some(t) = self.term.as_mut()
                {
                    t.not_ready_posted = true;
                }
                self.status.handle_write_result(obj, result, now);
            }
            Action::Delete { .. } => match result {
                Ok(()) | Err(WriteError::NotFound) | Err(WriteError::Conflict) => {}
                Err(e) => {
                    tracing::warn!(pod = %self.key, error = ?e, "pod delete failed; retrying");
                    self.delete_sent = false;
                    self.delete_retry_at = Some(now + STATUS_RETRY);
                }
            },
            _ => {}
        }
    }

    /// The earliest timer of this pod (called after every input: no allocation).
    pub fn poll_timeout(&self) -> Option<Moment> {
        let mut min: Option<Moment> = None;
        self.timers(|t, _| min = Some(min.map_or(t, |m| m.min(t))));
        min
    }

    /// Whether the timers due at `now` are only probe sends of a running pod (the steady
    /// state: a 1 s readiness probe): then [`PodState::send_probes`] does all a sync would.
    pub fn only_probes_due(&self, now: Moment) -> bool {
        if self.term.is_some() || self.net != NetState::Ready || self.ip.is_none() {
            return false;
        }
        let (mut probes, mut others) = (false, false);
        self.timers(|t, probe| {
            if t <= now {
                if probe {
                    probes = true;
                } else {
                    others = true;
                }
            }
        });
        probes && !others
    }

    /// Send the probes due (the part of [`PodState::sync`] a probe timer needs).
    pub fn send_probes(&mut self, ctx: &mut Ctx) {
        let Some(ip) = self.ip else { return };
        let pod = self.pod_ref();
        for c in self.containers.iter_mut() {
            if let CPhase::Running { .. } = c.phase {
                send_due_probes(c, &pod, ip, ctx);
            }
        }
    }

    /// Every armed timer of this pod: `f(when, is_a_probe_send)`.
    fn timers(&self, mut f: impl FnMut(Moment, bool)) {
        if let NetState::Failed { retry_at, .. } = self.net {
            f(retry_at, false);
        }
        if let Some(t) = &self.term {
            if !t.term_sent {
                f(t.began + NOT_READY_WAIT, false);
            }
            if !t.kill_sent {
                f(t.kill_at, false);
            }
        }
        if let Some(t) = self.delete_retry_at.filter(|_| !self.delete_sent) {
            f(t, false);
        }
        // A (re)start waits for the pod network (and never happens once terminating): until
        // then only the runtime's answer moves the pod, so no timer may be due.
        let can_start = self.term.is_none() && matches!(self.net, NetState::Ready);
        for c in &self.containers {
            if let CPhase::Waiting {
                restart_at: Some(t),
                ..
            } = c.phase
                && can_start
            {
                f(t, false);
            }
            if let Some(k) = c.kill.filter(|k| !k.kill_sent) {
                f(k.kill_at, false);
            }
            if matches!(c.phase, CPhase::Running { .. }) {
                for t in c.probes.iter().filter_map(ProbeWorker::wakeup) {
                    f(t, true);
                }
            }
        }
        if let Some(t) = self.status.wakeup() {
            f(t, false);
        }
    }
}

/// A container's start came due: start it (recording `StandIn` on a stand-in's first start)
/// or, for a refused image, fail its pull. Returns the Events to record.
fn start_or_refuse(
    c: &mut ContainerState,
    pod: &PodRef,
    env: Vec<(String, String)>,
    ctx: &mut Ctx,
) -> Vec<(EventType, &'static str, String)> {
    match c.plan.clone() {
        Plan::Refuse { image } => refuse_pull(c, &image, ctx)
            .into_iter()
            .map(|(reason, msg)| {
                let t = if reason == "Failed" {
                    EventType::Warning
                } else {
                    EventType::Normal
                };
                (t, reason, msg)
            })
            .collect(),
        plan => {
            let mut out = Vec::new();
            if let Plan::StandIn { image, ports } = plan
                && !c.stand_in_announced
            {
                c.stand_in_announced = true;
                let msg = standin::stand_in_message(&image, &ports);
                out.push((EventType::Normal, standin::STAND_IN_REASON, msg));
            }
            start_container(c, pod, env, ctx);
            out
        }
    }
}
