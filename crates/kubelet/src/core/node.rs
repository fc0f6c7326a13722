//! Node registration, node status (posted when changed, else every report period) and the
//! node Lease (renewed every quarter of its duration, retried with backoff). Start at
//! [`NodeAgent::start`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use runtime::events::{self, EventRecord, EventType};
use runtime::time::{duration_ms, to_time};
use runtime::{Action, Cache, HOSTNAME_LABEL, Key, Moment, Object, WriteError, ZONE_LABEL};

use super::{KubeletConfig, LEASE_NAMESPACE, Outbox};

/// The OS label every node carries.
pub use runtime::labels::OS_LABEL;
/// Delay before re-posting a node write that lost a race (the watch brings the newer node).
const NODE_RETRY: Duration = Duration::from_millis(1_000);

/// Lease renewal state.
#[derive(Debug, Default)]
struct LeaseState {
    due: Moment,
    inflight: bool,
    /// Current retry delay after failures (`None` after a success).
    backoff: Option<Duration>,
    /// An update lost a race (`Conflict`, `NotFound`): read the Lease again (handed out once
    /// by [`NodeAgent::poll_lease_read`]).
    read_wanted: bool,
    /// Upstream's `latestLease`: the server's answer to the last write or read, the base of
    /// the next renewal instead of the watch's copy, which lags under load (`Some(None)`: the
    /// Lease is gone, create it; `None`: no copy, use the watch's).
    latest: Option<Option<Arc<Lease>>>,
}

/// Registration, status and lease bookkeeping.
#[derive(Debug, Default)]
pub(crate) struct NodeAgent {
    started: bool,
    create_inflight: bool,
    meta_inflight: bool,
    status_inflight: bool,
    /// A status computation was skipped because a write was in flight: redo it right after.
    status_repost: bool,
    status_due: Moment,
    last_report: Option<Moment>,
    lease: LeaseState,
}

impl NodeAgent {
    /// Informers synced: register (or reconcile) the node and renew the lease now.
    pub fn start(&mut self, cfg: &KubeletConfig, cache: &Cache, now: Moment, out: &mut Outbox) {
        self.started = true;
        // Upstream `kl.recordEvent(…, events.StartingKubelet, "Starting kubelet.")`.
        node_event(cfg, now, out, "Starting", "Starting kubelet.".to_string());
        self.lease.due = now;
        self.status_due = now;
        self.handle_node_change(cfg, cache, out);
        self.tick(cfg, cache, false, now, out);
    }

    /// Our Node changed (or appeared/disappeared): make sure labels and pod CIDR are ours.
    pub fn handle_node_change(&mut self, cfg: &KubeletConfig, cache: &Cache, out: &mut Outbox) {
        if !self.started || self.meta_inflight {
            return;
        }
        let Some(node) = cache.nodes.get(&cfg.node_name) else {
            return;
        };
        let mut want = (**node).clone();
        let labels = want.metadata.labels.get_or_insert_with(BTreeMap::new);
        for (k, v) in node_labels(cfg) {
            labels.insert(k, v);
        }
        let spec = want.spec.get_or_insert_with(NodeSpec::default);
        if spec.pod_cidr.is_none() {
            spec.pod_cidr = Some(cfg.pod_cidr.clone());
            spec.pod_cidrs = Some(vec![cfg.pod_cidr.clone()]);
        }
        if want != **node {
            self.meta_inflight = true;
            out.writes
                .push_action(Action::Update(Object::Node(Arc::new(want))));
        }
    }

    /// Timed work: lease renewal and node status.
    pub fn tick(
        &mut self,
        cfg: &KubeletConfig,
        cache: &Cache,
        shutting_down: bool,
        now: Moment,
        out: &mut Outbox,
    ) {
        if !self.started {
            return;
        }
        if !self.lease.inflight && self.lease.due <= now {
            self.renew_lease(cfg, cache, now, out);
        }
        if self.status_due <= now {
            self.tick_now(cfg, cache, shutting_down, now, out);
        }
    }

    /// Compute the node status now and post it if it changed or the report period passed;
    /// register the node if it does not exist.
    pub fn tick_now(
        &mut self,
        cfg: &KubeletConfig,
        cache: &Cache,
        shutting_down: bool,
        now: Moment,
        out: &mut Outbox,
    ) {
        self.status_due = now + cfg.node_status_update_frequency;
        let Some(node) = cache.nodes.get(&cfg.node_name) else {
            if !self.create_inflight {
                self.create_inflight = true;
                let node = initial_node(cfg, shutting_down, now);
                if node.status.as_ref().and_then(ready_of) == Some("True") {
                    let msg = format!("Node {} status is now: NodeReady", cfg.node_name);
                    node_event(cfg, now, out, "NodeReady", msg);
                }
                out.writes
                    .push_action(Action::Create(Object::Node(Arc::new(node))));
            }
            return;
        };
        if self.status_inflight {
            self.status_repost = true;
            return;
        }
        let none = NodeStatus::default();
        let old = node.status.as_ref().unwrap_or(&none);
        let new = node_status(cfg, Some(old), shutting_down, now);
        let (was, is) = (ready_of(old), ready_of(&new));
        if was != is {
            // Upstream `ReadyCondition` setter: NodeReady / NodeNotReady on a flip.
            let reason = if is == Some("True") {
                "NodeReady"
            } else {
                "NodeNotReady"
            };
            let msg = format!("Node {} status is now: {reason}", cfg.node_name);
            node_event(cfg, now, out, reason, msg);
        }
        let report_due = self
            .last_report
            .is_none_or(|t| now >= t + cfg.node_status_report_frequency);
        if !status_changed(old, &new) && !report_due {
            return;
        }
        let mut node = (**node).clone();
        node.status = Some(new);
        self.status_inflight = true;
        self.last_report = Some(now);
        out.writes
            .push_action(Action::UpdateStatus(Object::Node(Arc::new(node))));
    }

    fn renew_lease(&mut self, cfg: &KubeletConfig, cache: &Cache, now: Moment, out: &mut Outbox) {
        let key = Key::new(LEASE_NAMESPACE, &cfg.node_name);
        let owner = cache.nodes.get(&cfg.node_name).and_then(|n| {
            Some(OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: cfg.node_name.clone(),
                uid: n.metadata.uid.clone()?,
                ..OwnerReference::default()
            })
        });
        let spec = LeaseSpec {
            holder_identity: Some(cfg.node_name.clone()),
            lease_duration_seconds: Some(cfg.node_lease_duration_seconds),
            renew_time: Some(micro_time(now)),
            ..LeaseSpec::default()
        };
        // Upstream's lease controller updates from its own latest copy and re-reads the Lease
        // after a Conflict (`backoffEnsureLease`); the watch's copy may be the stale one.
        let base = match &self.lease.latest {
            Some(latest) => latest.clone(),
            None => cache.leases.get(&key).cloned(),
        };
        let action = match base {
            Some(l) => {
                let mut lease = (*l).clone();
                if lease.metadata.owner_references.is_none() {
                    lease.metadata.owner_references = owner.map(|o| vec![o]);
                }
                let old = lease.spec.take().unwrap_or_default();
                lease.spec = Some(LeaseSpec {
                    acquire_time: old.acquire_time,
                    lease_transitions: old.lease_transitions,
                    ..spec
                });
                Action::Update(Object::Lease(Arc::new(lease)))
            }
            None => Action::Create(Object::Lease(Arc::new(Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.node_name.clone()),
                    namespace: Some(LEASE_NAMESPACE.into()),
                    owner_references: owner.map(|o| vec![o]),
                    ..ObjectMeta::default()
                },
                spec: Some(spec),
            }))),
        };
        self.lease.inflight = true;
        out.writes.push_action(action);
    }

    /// A node or lease write finished.
    pub fn handle_write_result(
        &mut self,
        cfg: &KubeletConfig,
        action: &Action,
        result: &Result<(), WriteError>,
        now: Moment,
    ) {
        match action {
            Action::Create(Object::Lease(_)) | Action::Update(Object::Lease(_)) => {
                self.lease.inflight = false;
                match result {
                    Ok(()) => {
                        self.lease.backoff = None;
                        self.lease.due = now + cfg.lease_renew_interval();
                    }
                    Err(e) => {
                        if matches!(e, WriteError::Conflict | WriteError::NotFound) {
                            self.lease.latest = None;
                            self.lease.read_wanted = true;
                        }
                        let delay = self.lease.backoff.map_or(cfg.lease_retry_initial, |d| {
                            (d * 2).min(cfg.lease_retry_max)
                        });
                        tracing::warn!(error = ?e, retry_ms = duration_ms(delay), "lease renew failed");
                        self.lease.backoff = Some(delay);
                        self.lease.due = now + delay;
                    }
                }
            }
            Action::Create(Object::Node(_)) => {
                self.create_inflight = false;
                if result.is_ok() {
                    // The registration carried a full status.
                    self.last_report = Some(now);
                }
                if let Err(e) = result
                    && *e != WriteError::AlreadyExists
                {
                    tracing::warn!(error = ?e, "node registration failed");
                    self.status_due = self.status_due.min(now + NODE_RETRY);
                }
            }
            Action::Update(Object::Node(_)) => self.meta_inflight = false,
            Action::UpdateStatus(Object::Node(_)) => {
                self.status_inflight = false;
                if std::mem::take(&mut self.status_repost) {
                    self.status_due = self.status_due.min(now);
                }
                if result.is_err() {
                    self.last_report = None;
                    self.status_due = self.status_due.min(now + NODE_RETRY);
                }
            }
            _ => {}
        }
    }

    /// The Lease to read again after a `Conflict`, once per Conflict.
    pub fn poll_lease_read(&mut self) -> bool {
        std::mem::take(&mut self.lease.read_wanted)
    }

    /// The answer to a [`NodeAgent::poll_lease_read`]: `Ok(None)` when the Lease is gone. A copy
    /// renews at once (upstream retries the update right after its re-read, up to
    /// `maxUpdateRetries` 5 per renewal: here the backoff bounds the pace); a failed read
    /// leaves the backoff retry in place.
    pub fn handle_lease_read(&mut self, read: Result<Option<Arc<Lease>>, WriteError>, now: Moment) {
        let Ok(lease) = read else {
            return;
        };
        self.lease.latest = Some(lease);
        if !self.lease.inflight {
            self.lease.due = self.lease.due.min(now);
        }
    }

    /// The server's answer to a successful Lease write (the object as stored): the next
    /// renewal updates it rather than the watch's copy (upstream `c.latestLease = lease`).
    pub fn handle_lease_written(&mut self, lease: Arc<Lease>) {
        self.lease.latest = Some(Some(lease));
    }

    pub fn poll_timeout(&self) -> Option<Moment> {
        if !self.started {
            return None;
        }
        let lease = (!self.lease.inflight).then_some(self.lease.due);
        [Some(self.status_due), lease].into_iter().flatten().min()
    }
}

/// The Ready condition's status.
fn ready_of(status: &NodeStatus) -> Option<&str> {
    let conds = status.conditions.as_ref()?;
    conds
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str())
}

/// Record an event about this node (upstream `kl.nodeRef`: uid = node name).
fn node_event(
    cfg: &KubeletConfig,
    now: Moment,
    out: &mut Outbox,
    reason: &'static str,
    msg: String,
) {
    let involved = events::node_ref(&cfg.node_name, &cfg.node_name);
    let rec = EventRecord::new(
        events::source::KUBELET,
        involved,
        EventType::Normal,
        reason,
        msg,
        now,
    );
    out.writes.push_event(rec.on_host(&cfg.node_name));
}

fn micro_time(now: Moment) -> MicroTime {
    MicroTime(Timestamp::from_millisecond(now.as_millis()).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn node_labels(cfg: &KubeletConfig) -> Vec<(String, String)> {
    let mut out = cfg.node_labels.clone();
    out.extend([
        (ZONE_LABEL.into(), cfg.zone.clone()),
        (HOSTNAME_LABEL.into(), cfg.node_name.clone()),
        (OS_LABEL.into(), "linux".into()),
        ("kubernetes.io/arch".into(), std::env::consts::ARCH.into()),
    ]);
    out
}

/// The Node the kubelet registers (upstream `initialNode` plus a first status).
pub fn initial_node(cfg: &KubeletConfig, shutting_down: bool, now: Moment) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(cfg.node_name.clone()),
            labels: Some(node_labels(cfg).into_iter().collect()),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: Some(cfg.pod_cidr.clone()),
            pod_cidrs: Some(vec![cfg.pod_cidr.clone()]),
            ..NodeSpec::default()
        }),
        status: Some(node_status(cfg, None, shutting_down, now)),
    }
}

/// The node status the kubelet reports now; `old` keeps lastTransitionTimes of conditions
/// whose status did not flip.
pub fn node_status(
    cfg: &KubeletConfig,
    old: Option<&NodeStatus>,
    shutting_down: bool,
    now: Moment,
) -> NodeStatus {
    let resources: BTreeMap<String, Quantity> = [
        ("cpu", cfg.capacity_cpu.clone()),
        ("memory", cfg.capacity_memory.clone()),
        ("pods", cfg.max_pods.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Quantity(v)))
    .collect();
    let (ready, ready_reason, ready_msg) = if shutting_down {
        ("False", "KubeletNotReady", "node is shutting down")
    } else {
        ("True", "KubeletReady", "kubelet is posting ready status")
    };
    let wanted = [
        (
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        (
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
        (
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        ("Ready", ready, ready_reason, ready_msg),
    ];
    let old_conds = old.and_then(|s| s.conditions.as_ref());
    let conditions = wanted
        .iter()
        .map(|(type_, status, reason, message)| {
            let prev = old_conds.and_then(|cs| cs.iter().find(|c| c.type_ == *type_));
            let since = prev
                .filter(|c| c.status == *status)
                .and_then(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| to_time(now));
            NodeCondition {
                type_: (*type_).into(),
                status: (*status).into(),
                reason: Some((*reason).into()),
                message: Some((*message).into()),
                last_heartbeat_time: Some(to_time(now)),
                last_transition_time: Some(since),
            }
        })
        .collect();
    NodeStatus {
        capacity: Some(resources.clone()),
        allocatable: Some(resources),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: cfg.node_ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: cfg.node_name.clone(),
            },
        ]),
        conditions: Some(conditions),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(cfg.port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: std::env::consts::ARCH.into(),
            operating_system: "linux".into(),
            kubelet_version: cfg.kubelet_version.clone(),
            kube_proxy_version: cfg.kubelet_version.clone(),
            container_runtime_version: "zonelab://0.1".into(),
            ..NodeSystemInfo::default()
        }),
        ..old.cloned().unwrap_or_default()
    }
}

/// Upstream `nodeStatusHasChanged`: equal apart from condition heartbeat times.
fn status_changed(old: &NodeStatus, new: &NodeStatus) -> bool {
    let strip = |s: &NodeStatus| {
        let mut s = s.clone();
        if let Some(cs) = s.conditions.as_mut() {
            for c in cs.iter_mut() {
                c.last_heartbeat_time = None;
            }
            cs.sort_by(|a, b| a.type_.cmp(&b.type_));
        }
        s
    };
    strip(old) != strip(new)
}
