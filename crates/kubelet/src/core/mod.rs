//! The sans-IO kubelet: node registration and status, the node Lease, pod lifecycle, probes
//! and graceful node shutdown, in the quinn-proto style. Start at [`Kubelet`].
//!
//! Inputs: informer [`Change`]s (its Node, its Lease, pods bound to it), [`RuntimeEvent`]s,
//! probe results, write results and the time. Outputs: API writes ([`Kubelet::poll_action`]),
//! runtime commands ([`Kubelet::poll_command`]), probes to run ([`Kubelet::poll_probe`]) and
//! the next wake-up ([`Kubelet::poll_timeout`]). It never reads a clock or does I/O.

mod annotate;
pub mod config;
mod container;
mod env;
pub mod ipam;
pub mod logs;
mod node;
mod pod;
mod probe;
pub mod standin;
mod status;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests_node;
#[cfg(test)]
mod tests_pods;
#[cfg(test)]
mod tests_standin;

use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Container;
use runtime::{Action, Cache, Change, Key, Kind, Moment, Object, WriteError};

pub use config::KubeletConfig;
pub use ipam::{Ipam, IpamError};

use node::NodeAgent;
pub use node::initial_node;
use pod::PodState;

/// Events held between polls at most (older ones are dropped first).
pub use runtime::outbox::MAX_PENDING_EVENTS;

/// Namespace of node leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// A pod as the runtime knows it: its API key and its UID (runtime state is keyed by UID, so
/// a pod recreated under the same name never meets the old one's processes).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodRef {
    pub key: Key,
    pub uid: String,
}

/// A signal for a container's main process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Term,
    Kill,
}

/// Work for the pod runtime.
#[derive(Clone, Debug, PartialEq)]
pub enum RuntimeCommand {
    /// Create the pod's network namespace with address `ip`; answer with
    /// [`RuntimeEvent::PodNetworkReady`] or [`RuntimeEvent::PodNetworkFailed`].
    SetupNetwork { pod: PodRef, ip: Ipv4Addr },
    /// Start one container in the pod's namespace; answer with `ContainerStarted` (then
    /// `ContainerExited` when it ends) or `ContainerStartFailed`.
    StartContainer {
        pod: PodRef,
        container: Box<Container>,
        env: Vec<(String, String)>,
        /// Which instance this is (the container's restart count): its log file's name.
        attempt: i32,
        /// What to run: the built-in echo, the container's command, or the echo standing in.
        plan: standin::Plan,
    },
    /// Remove the pod's container logs (the pod is gone from the API and the node).
    RemoveLogs { pod: PodRef },
    /// Signal a container's main process.
    Signal {
        pod: PodRef,
        container: String,
        signal: Signal,
    },
    /// Remove the pod's namespace (killing anything left); answer with `PodNetworkTornDown`.
    TeardownNetwork { pod: PodRef },
}

/// What the pod runtime reports.
#[derive(Clone, Debug, PartialEq)]
pub enum RuntimeEvent {
    PodNetworkReady {
        pod: PodRef,
        ip: Ipv4Addr,
    },
    PodNetworkFailed {
        pod: PodRef,
        message: String,
    },
    ContainerStarted {
        pod: PodRef,
        container: String,
        pid: u32,
    },
    ContainerStartFailed {
        pod: PodRef,
        container: String,
        message: String,
    },
    /// The container's process ended; killed by signal N reports `128 + N`.
    ContainerExited {
        pod: PodRef,
        container: String,
        code: i32,
    },
    PodNetworkTornDown {
        pod: PodRef,
    },
}

/// Which probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProbeKind {
    Readiness,
    Liveness,
    Startup,
}

/// What to probe, resolved against the pod (host = pod IP, named ports resolved).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeAction {
    HttpGet {
        host: String,
        port: u16,
        path: String,
        scheme: String,
        headers: Vec<(String, String)>,
    },
    TcpSocket {
        host: String,
        port: u16,
    },
    /// Run `command` inside the pod's network namespace.
    Exec {
        command: Vec<String>,
    },
}

/// A probe for the driver to run; answer with [`Kubelet::handle_probe_result`] and `id`.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeRequest {
    pub id: u64,
    pub pod: PodRef,
    pub container: String,
    pub kind: ProbeKind,
    pub action: ProbeAction,
    /// `timeoutSeconds` in milliseconds.
    pub timeout: Duration,
}

/// A probe's outcome (upstream treats errors and timeouts as failures).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeOutcome {
    Success,
    Failure(String),
}

/// The kubelet could not be built.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error(transparent)]
    Ipam(#[from] IpamError),
}

/// Everything the state machine hands out, in order.
#[derive(Default)]
pub(crate) struct Outbox {
    pub commands: VecDeque<RuntimeCommand>,
    pub probes: VecDeque<ProbeRequest>,
    /// API writes and Events to record (upstream `recorder.Eventf`; at most
    /// [`MAX_PENDING_EVENTS`], the oldest dropped past it).
    pub writes: runtime::Outbox,
    probe_seq: u64,
    /// Probe id -> (pod uid, container, kind).
    pub inflight_probes: BTreeMap<u64, (String, String, ProbeKind)>,
    /// Probes that succeed without running (a stand-in's exec probes), fed back at once.
    pub instant_successes: VecDeque<u64>,
}

impl Outbox {
    pub fn next_probe_id(&mut self) -> u64 {
        self.probe_seq += 1;
        self.probe_seq
    }
}

/// The node agent's state machine.
pub struct Kubelet {
    cfg: KubeletConfig,
    cache: Cache,
    synced: bool,
    node: NodeAgent,
    /// Pods by UID.
    pods: BTreeMap<String, PodState>,
    ipam: Ipam,
    shutdown: Option<Moment>,
    out: Outbox,
}

impl Kubelet {
    /// A kubelet for `cfg` (fails only on an unusable pod CIDR).
    pub fn new(cfg: KubeletConfig) -> Result<Kubelet, KubeletError> {
        let ipam = Ipam::new(&cfg.pod_cidr)?;
        Ok(Kubelet {
            node: NodeAgent::default(),
            cfg,
            cache: Cache::new(),
            synced: false,
            pods: BTreeMap::new(),
            ipam,
            shutdown: None,
            out: Outbox::default(),
        })
    }

    pub fn config(&self) -> &KubeletConfig {
        &self.cfg
    }

    /// The kubelet's view: its Node, its Lease and the pods bound to it.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// An informer event. Objects that are not this node, its lease or its pods are ignored.
    pub fn handle_change(&mut self, change: &Change, now: Moment) {
        let (obj, deleted) = match change {
            Change::Applied { new, .. } => (new, false),
            Change::Deleted(o) => (o, true),
        };
        if !self.relevant(obj) {
            return;
        }
        self.cache.apply(obj.clone(), deleted);
        if !self.synced {
            return;
        }
        match obj {
            Object::Node(_) => self
                .node
                .handle_node_change(&self.cfg, &self.cache, &mut self.out),
            Object::Pod(p) => {
                let key = Key::of(&p.metadata);
                self.sync_pods_of(&key, now);
            }
            _ => {}
        }
    }

    fn relevant(&self, obj: &Object) -> bool {
        let me = self.cfg.node_name.as_str();
        match obj {
            Object::Node(n) => n.metadata.name.as_deref() == Some(me),
            Object::Lease(l) => {
                l.metadata.name.as_deref() == Some(me)
                    && l.metadata.namespace.as_deref() == Some(LEASE_NAMESPACE)
            }
            Object::Pod(p) => {
                p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(me)
                    || self.cache.pods.contains_key(&Key::of(&p.metadata))
            }
            _ => false,
        }
    }

    /// Informers have listed: register the node, start the lease, adopt the pods.
    pub fn handle_synced(&mut self, now: Moment) {
        if self.synced {
            return;
        }
        self.synced = true;
        self.node.start(&self.cfg, &self.cache, now, &mut self.out);
        let keys: Vec<Key> = self.cache.pods.keys().cloned().collect();
        for key in keys {
            self.sync_pods_of(&key, now);
        }
    }

    /// A report from the pod runtime.
    pub fn handle_event(&mut self, event: RuntimeEvent, now: Moment) {
        let uid = match &event {
            RuntimeEvent::PodNetworkReady { pod, .. }
            | RuntimeEvent::PodNetworkFailed { pod, .. }
            | RuntimeEvent::ContainerStarted { pod, .. }
            | RuntimeEvent::ContainerStartFailed { pod, .. }
            | RuntimeEvent::ContainerExited { pod, .. }
            | RuntimeEvent::PodNetworkTornDown { pod } => pod.uid.clone(),
        };
        if !self.pods.contains_key(&uid) {
            tracing::debug!(?event, "runtime event for an unknown pod");
            return;
        }
        self.with_pod(&uid, now, |st, ctx| st.on_event(event, ctx));
    }

    /// The outcome of the probe `id` handed out by [`Kubelet::poll_probe`].
    pub fn handle_probe_result(&mut self, id: u64, outcome: ProbeOutcome, now: Moment) {
        let Some((uid, container, kind)) = self.out.inflight_probes.remove(&id) else {
            return;
        };
        let Some(st) = self.pods.get_mut(&uid) else {
            return;
        };
        let mut ctx = pod::Ctx {
            cfg: &self.cfg,
            cache: &self.cache,
            ipam: &mut self.ipam,
            out: &mut self.out,
            shutdown: self.shutdown,
            now,
        };
        // An unchanged result (the steady state of every periodic probe) needs no pod sync.
        if st.handle_probe_result(id, &container, kind, &outcome, &mut ctx) {
            self.sync_uid(&uid, now);
        }
    }

    /// Whether a success of the probe `id` handed out by [`Kubelet::poll_probe`] would change
    /// nothing (no readiness change, no pod sync, no Event): a driver that knows the answer
    /// when it sends the probe may then hand it back at once
    /// ([`Kubelet::handle_probe_result`]) instead of after the probe's round trip, since
    /// nothing the kubelet reports depends on when it arrives.
    pub fn probe_settled(&self, id: u64) -> bool {
        let Some((uid, container, kind)) = self.out.inflight_probes.get(&id) else {
            return false;
        };
        self.pods
            .get(uid)
            .is_some_and(|st| st.probe_settled(id, container, *kind))
    }

    /// How an action handed out by [`Kubelet::poll_action`] went.
    pub fn handle_write_result(
        &mut self,
        action: &Action,
        result: Result<(), WriteError>,
        now: Moment,
    ) {
        let (kind, uid) = match action {
            Action::Create(o) | Action::Update(o) | Action::UpdateStatus(o) => {
                (o.kind(), o.meta().uid.clone())
            }
            Action::Delete { kind, uid, .. } => (*kind, uid.clone()),
            Action::Bind { .. } => return,
        };
        match kind {
            Kind::Node | Kind::Lease => self
                .node
                .handle_write_result(&self.cfg, action, &result, now),
            Kind::Pod => {
                let Some(uid) = uid else { return };
                if let Some(st) = self.pods.get_mut(&uid) {
                    st.handle_write_result(action, &result, now);
                    self.sync_uid(&uid, now);
                }
            }
            _ => {}
        }
    }

    /// Do everything due at or before `now`.
    pub fn handle_timeout(&mut self, now: Moment) {
        if !self.synced {
            return;
        }
        let shutting_down = self.shutdown.is_some();
        self.node
            .tick(&self.cfg, &self.cache, shutting_down, now, &mut self.out);
        let due: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, st)| st.poll_timeout().is_some_and(|w| w <= now))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in due {
            if self
                .pods
                .get(&uid)
                .is_some_and(|st| st.only_probes_due(now))
            {
                self.probe_uid(&uid, now);
            } else {
                self.sync_uid(&uid, now);
            }
        }
    }

    /// Graceful node shutdown: report the node not ready and terminate every pod (not ready
    /// first, then SIGTERM, SIGKILL after the grace bounded by `shutdown_grace_period`).
    pub fn begin_shutdown(&mut self, now: Moment) {
        if self.shutdown.is_some() {
            return;
        }
        self.shutdown = Some(now);
        tracing::info!(node = %self.cfg.node_name, "graceful node shutdown");
        self.node
            .tick_now(&self.cfg, &self.cache, true, now, &mut self.out);
        let uids: Vec<String> = self.pods.keys().cloned().collect();
        for uid in uids {
            self.sync_uid(&uid, now);
        }
    }

    /// True once a shutdown began and every pod's processes and network are gone.
    pub fn shutdown_complete(&self) -> bool {
        self.shutdown.is_some() && self.pods.values().all(PodState::is_quiescent)
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.out.writes.poll_action()
    }

    /// The key of this node's Lease when the driver should GET it (after an update lost a race
    /// with `Conflict`); answer with [`Kubelet::handle_lease_read`]. A driver that never reads
    /// keeps the retry from the watch's copy.
    pub fn poll_lease_read(&mut self) -> Option<Key> {
        self.node
            .poll_lease_read()
            .then(|| Key::new(LEASE_NAMESPACE, &self.cfg.node_name))
    }

    /// A Lease write handed out by [`Kubelet::poll_action`] succeeded and the server answered
    /// with `lease` (call after [`Kubelet::handle_write_result`]): renewals start from it, as
    /// upstream's lease controller does, instead of the watch's possibly older copy. A driver
    /// that drops answers leaves renewals on the watch's copy (re-read after a `Conflict`).
    pub fn handle_lease_written(
        &mut self,
        lease: std::sync::Arc<k8s_openapi::api::coordination::v1::Lease>,
    ) {
        self.node.handle_lease_written(lease);
    }

    /// The answer to [`Kubelet::poll_lease_read`]'s GET: the Lease, `Ok(None)` on NotFound.
    pub fn handle_lease_read(
        &mut self,
        read: Result<Option<std::sync::Arc<k8s_openapi::api::coordination::v1::Lease>>, WriteError>,
        now: Moment,
    ) {
        self.node.handle_lease_read(read, now);
    }

    pub fn poll_command(&mut self) -> Option<RuntimeCommand> {
        self.out.commands.pop_front()
    }

    pub fn poll_probe(&mut self) -> Option<ProbeRequest> {
        self.out.probes.pop_front()
    }

    /// The next Event to record (the driver hands it to the event writer).
    pub fn poll_event(&mut self) -> Option<runtime::events::EventRecord> {
        self.out.writes.poll_event()
    }

    /// When [`Kubelet::handle_timeout`] should next run.
    pub fn poll_timeout(&self) -> Option<Moment> {
        if !self.synced {
            return None;
        }
        let pods = self.pods.values().filter_map(PodState::poll_timeout).min();
        [self.node.poll_timeout(), pods].into_iter().flatten().min()
    }

    /// Sync every pod state for `key` (old UIDs and the cached one).
    fn sync_pods_of(&mut self, key: &Key, now: Moment) {
        let mut uids: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, st)| &st.key == key)
            .map(|(uid, _)| uid.clone())
            .collect();
        if let Some(uid) = self
            .cache
            .pods
            .get(key)
            .and_then(|p| p.metadata.uid.clone())
            && !uids.contains(&uid)
            && let Some(st) = PodState::admit(&self.cache, key, &uid, self.cfg.image_policy, now)
        {
            self.pods.insert(uid.clone(), st);
            uids.push(uid);
        }
        for uid in uids {
            self.sync_uid(&uid, now);
        }
    }

    /// Drive one pod state forward; drop it once it is finished.
    fn sync_uid(&mut self, uid: &str, now: Moment) {
        self.with_pod(uid, now, |_, _| {});
    }

    /// Only send pod `uid`'s due probes: no status built, nothing copied (a pod with
    /// nothing else due; see [`PodState::only_probes_due`]).
    fn probe_uid(&mut self, uid: &str, now: Moment) {
        let Some(st) = self.pods.get_mut(uid) else {
            return;
        };
        let mut ctx = pod::Ctx {
            cfg: &self.cfg,
            cache: &self.cache,
            ipam: &mut self.ipam,
            out: &mut self.out,
            shutdown: self.shutdown,
            now,
        };
        st.send_probes(&mut ctx);
        while let Some(id) = self.out.instant_successes.pop_front() {
            self.handle_probe_result(id, ProbeOutcome::Success, now);
        }
    }

    /// Run `f` on pod `uid`, then sync it; drop it once it is finished.
    fn with_pod(&mut self, uid: &str, now: Moment, f: impl FnOnce(&mut PodState, &mut pod::Ctx)) {
        let Some(st) = self.pods.get_mut(uid) else {
            return;
        };
        let mut ctx = pod::Ctx {
            cfg: &self.cfg,
            cache: &self.cache,
            ipam: &mut self.ipam,
            out: &mut self.out,
            shutdown: self.shutdown,
            now,
        };
        f(st, &mut ctx);
        st.sync(&mut ctx);
        if st.finished() {
            self.ipam.release(uid);
            self.out.inflight_probes.retain(|_, (u, _, _)| u != uid);
            self.out
                .commands
                .push_back(RuntimeCommand::RemoveLogs { pod: st.pod_ref() });
            self.pods.remove(uid);
        }
        // Each such probe was sent once for its period, so this ends.
        while let Some(id) = self.out.instant_successes.pop_front() {
            self.handle_probe_result(id, ProbeOutcome::Success, now);
        }
    }
}
