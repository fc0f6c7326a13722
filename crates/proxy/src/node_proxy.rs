//! One simulated node's kube-proxy in "no text" mode: a [`Pacer`] over the shared
//! [`SharedModel`], whose syncs render no nftables or iptables text but record the model
//! version (an `Arc<Snapshot>`) and the node's own plan inputs; once applied, that snapshot is
//! what the node's rules do, answered by [`NodeView::lookup`] exactly as the rules would.
//! Calling convention as quinn's: `handle_*` for inputs, [`NodeProxy::poll_timeout`], and
//! [`NodeProxy::poll_transaction`] for the next sync to apply. Its metrics are the pacer's
//! (sync durations, failures, programming latency); the no-local-endpoints gauges, which the
//! live syncer reads off its whole plan, are not kept. Start at [`NodeProxy`].

use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::apply::ApplyError;
use crate::metrics::ProxyMetrics;
use crate::model::{Cidr, Endpoint, Moment, Protocol};
use crate::pacer::{Pacer, PacerConfig, SyncKind};
use crate::plan::{Blocked, ExternalChains, NoEndpoints, SharedPort, Source};
use crate::shared_model::{ModelChange, SharedModel, Snapshot, Version};

/// Most model versions a partial sync looks through for a change to this node's rules; past
/// it, the sync is applied without looking (bounds the per-node work in a burst of changes).
pub const MAX_UNCHANGED_CHECK: Version = 64;

/// The node-specific inputs of a node's plan (upstream's proxier fields that differ per
/// node), shared by all its syncs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInputs {
    /// This node's name: endpoints with this `nodeName` are local (Local traffic policies,
    /// the health-check node port's answer).
    pub node_name: String,
    /// The node's IP (NodePort destination, `fib saddr type local`).
    pub node_ip: Option<Ipv4Addr>,
    /// The node's `topology.kubernetes.io/zone` label: with zone hints, Cluster-policy
    /// traffic goes to the endpoints hinted for it (see [`crate::topology`]).
    pub zone: Option<String>,
    /// `--service-cluster-ip-range`: unallocated addresses in it are dropped.
    pub service_cidrs: Vec<Cidr>,
}

/// A sync for the driver to apply, then report with [`NodeProxy::handle_applied`]: the
/// model version and node inputs it programs, no rule text.
#[derive(Debug, Clone)]
pub struct NoTextSync {
    pub kind: SyncKind,
    pub started_at: Moment,
    /// The model as this sync programs it.
    pub snapshot: Arc<Snapshot>,
    pub inputs: Arc<NodeInputs>,
}

impl NoTextSync {
    /// The model version this sync programs.
    pub fn version(&self) -> Version {
        self.snapshot.version()
    }
}

/// One node's proxy over the shared model; see the module doc. A driver's loop:
///
/// ```
/// use proxy::fixtures::{ep, service, slice};
/// use proxy::node_proxy::{Candidates, NodeInputs, NodeProxy};
/// use proxy::pacer::PacerConfig;
/// use proxy::shared_model::SharedModel;
/// use proxy::syncer::Change;
/// use proxy::Protocol;
/// use runtime::time::Moment;
/// use std::time::Duration;
///
/// const P80: &[(&str, u16, &str)] = &[("http", 80, "TCP")];
/// let mut model = SharedModel::new();
/// let mut node = NodeProxy::new(
///     NodeInputs { node_name: "n1".into(), node_ip: None, zone: None, service_cidrs: Vec::new() },
///     PacerConfig::default(),
/// );
/// let changes = [
///     model.handle_service(Change::Applied(&service("ns", "web", "172.30.0.10", P80))),
///     model.handle_slice(Change::Applied(&slice("ns", "web", "web-1", P80, vec![ep("10.1.0.5")]))),
/// ];
/// // Tell the node (a driver may skip nodes that are already pending).
/// for change in changes.iter().flatten() {
///     node.handle_change(change);
/// }
/// node.handle_initial_sync_done(Moment::EPOCH);
/// let now = node.poll_timeout().expect("a sync is due");
/// let sync = node.poll_transaction(now, &model).expect("the first sync");
/// assert_eq!(sync.version(), model.version());
/// // The driver models how long applying takes.
/// node.handle_applied(Ok(()), now + Duration::from_millis(20));
/// let view = node.view().expect("programmed");
/// let Candidates::Endpoints(eps) = view.lookup("172.30.0.10".parse()?, Protocol::Tcp, 80) else {
///     panic!("the Service has an endpoint");
/// };
/// assert_eq!(eps[0].ip.to_string(), "10.1.0.5");
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
#[derive(Debug, Clone)]
pub struct NodeProxy {
    inputs: Arc<NodeInputs>,
    pacer: Pacer,
    /// The version the node's pacer last heard of (what a sync now would program).
    seen: Version,
    /// What the node's rules do: the snapshot of the last applied sync.
    programmed: Option<Arc<Snapshot>>,
    in_flight: Option<Arc<Snapshot>>,
}

impl NodeProxy {
    pub fn new(inputs: NodeInputs, pacing: PacerConfig) -> NodeProxy {
        NodeProxy {
            inputs: Arc::new(inputs),
            pacer: Pacer::new(pacing, "simulated"),
            seen: 0,
            programmed: None,
            in_flight: None,
        }
    }

    /// The shared model changed: a sync is wanted (every node programs every Service).
    /// A driver with many nodes may skip nodes that [`NodeProxy::is_pending`] already: their
    /// next sync programs the newest version anyway, and only the skipped change's trigger
    /// time goes unobserved in the node's network-programming histogram.
    pub fn handle_change(&mut self, change: &ModelChange) {
        self.seen = self.seen.max(change.version);
        self.pacer.handle_change(change.trigger);
    }

    /// A change is already waiting for this node's next sync.
    pub fn is_pending(&self) -> bool {
        self.pacer.is_pending()
    }

    /// Both informers have listed: syncing may start.
    pub fn handle_initial_sync_done(&mut self, now: Moment) {
        self.pacer.handle_initial_sync_done(now);
    }

    /// When [`NodeProxy::poll_transaction`] next has a sync to hand out.
    pub fn poll_timeout(&self) -> Option<Moment> {
        self.pacer.poll_timeout()
    }

    /// The sync due at `now`, if any, programming the model's current version. A partial
    /// sync that would change none of this node's rules finishes at once (nothing to
    /// apply), like the live syncer's empty transaction.
    pub fn poll_transaction(&mut self, now: Moment, model: &SharedModel) -> Option<NoTextSync> {
        self.poll_transaction_at(now, model, model.snapshot())
    }

    /// As [`NodeProxy::poll_transaction`], but programming `snapshot`, an earlier version of
    /// `model` kept by a driver whose nodes hear of changes at different times (the
    /// simulator: a node programs only the versions its watch has delivered).
    pub fn poll_transaction_at(
        &mut self,
        now: Moment,
        model: &SharedModel,
        snapshot: Arc<Snapshot>,
    ) -> Option<NoTextSync> {
        while let Some(kind) = self.pacer.poll_sync(now) {
            let snapshot = snapshot.clone();
            if kind == SyncKind::Partial && self.rules_unchanged(model, &snapshot) {
                // Nothing to apply; the node's rules are those of the new version too.
                self.pacer.finish_empty(now);
                self.programmed = Some(snapshot);
                continue;
            }
            self.seen = self.seen.max(snapshot.version());
            self.pacer.start(kind, now);
            self.in_flight = Some(snapshot.clone());
            return Some(NoTextSync {
                kind,
                started_at: now,
                snapshot,
                inputs: self.inputs.clone(),
            });
        }
        None
    }

    /// True if programming `next` would change none of this node's rules: every Service
    /// changed since the programmed version plans the same for this node. More than
    /// [`MAX_UNCHANGED_CHECK`] changes are taken as a change without looking.
    fn rules_unchanged(&self, model: &SharedModel, next: &Snapshot) -> bool {
        let Some(programmed) = self.programmed.as_deref() else {
            return false;
        };
        if programmed.version() == next.version() {
            return true;
        }
        if next.version().saturating_sub(programmed.version()) > MAX_UNCHANGED_CHECK {
            return false;
        }
        let node = Some(self.inputs.node_name.as_str());
        let zone = self.inputs.zone.as_deref();
        model
            .changed_since(programmed.version())
            .is_some_and(|mut svcs| svcs.all(|s| programmed.same_for_node(next, s, node, zone)))
    }

    /// The driver applied the sync in flight (`now` = when it finished): on success its
    /// snapshot becomes what the node's rules do; a failure keeps the old rules and forces a
    /// full sync (see [`Pacer::handle_applied`]).
    pub fn handle_applied(&mut self, result: Result<(), ApplyError>, now: Moment) {
        let snapshot = self.in_flight.take();
        if let Some(f) = self.pacer.handle_applied(result, now)
            && f.ok
        {
            self.programmed = snapshot;
        }
    }

    /// What this node's rules do now; `None` before its first sync is applied.
    pub fn view(&self) -> Option<NodeView<'_>> {
        Some(NodeView {
            snapshot: self.programmed.as_deref()?,
            inputs: &self.inputs,
        })
    }

    /// The model version this node's rules program.
    pub fn programmed_version(&self) -> Option<Version> {
        self.programmed.as_ref().map(|s| s.version())
    }

    /// The newest model version this node has heard of.
    pub fn seen_version(&self) -> Version {
        self.seen
    }

    pub fn inputs(&self) -> &NodeInputs {
        &self.inputs
    }

    pub fn metrics(&self) -> &ProxyMetrics {
        self.pacer.metrics()
    }
}

/// Where the rules send a new connection (the modelled data plane's answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Candidates<'a> {
    /// DNAT to one of these endpoints, uniformly at random (or by ClientIP affinity);
    /// never empty.
    Endpoints(&'a [Endpoint]),
    /// A service port without usable endpoints for this traffic.
    NoEndpoints(NoEndpoints),
    /// An allocated ClusterIP on a port it does not serve: reject.
    RejectPort,
    /// An unallocated address of the service CIDR: drop.
    DropUnallocated,
    /// Not service traffic: untouched.
    Pass,
}

/// Where the rules send a new external connection (NodePort, external or LB IP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExternalCandidates<'a> {
    /// DNAT to one of these endpoints (never empty); `masquerade`: the source becomes the
    /// node's address.
    Endpoints {
        endpoints: &'a [Endpoint],
        masquerade: bool,
    },
    /// No endpoints at all (reject), or none on this node for a Local policy (drop).
    NoEndpoints(NoEndpoints),
    /// Dropped by `loadBalancerSourceRanges`.
    Firewall,
    /// Not an external destination of any Service.
    Pass,
}

/// A node's programmed rules: the shared snapshot plus the node's own inputs.
#[derive(Debug, Clone, Copy)]
pub struct NodeView<'a> {
    snapshot: &'a Snapshot,
    inputs: &'a NodeInputs,
}

impl<'a> NodeView<'a> {
    /// The view of `snapshot` from the node `inputs` describes.
    pub fn new(snapshot: &'a Snapshot, inputs: &'a NodeInputs) -> NodeView<'a> {
        NodeView { snapshot, inputs }
    }

    pub fn version(&self) -> Version {
        self.snapshot.version()
    }

    /// What the rules do with a new connection from a pod or this node to
    /// `dst:port/protocol` (the `services` map, `service-endpoints-check` and
    /// `cluster-ips-check` chains): the ready endpoints, else the serving terminating ones;
    /// a Local internal policy keeps this node's (drop when only others have some); a
    /// Cluster one keeps those hinted for this node's zone when zone hints apply (one list
    /// per zone, shared by its nodes); no endpoints at all rejects. The source does not change the set (ClientIP affinity only
    /// picks within it).
    pub fn lookup(&self, dst: Ipv4Addr, protocol: Protocol, port: u16) -> Candidates<'a> {
        if let Some(sp) = self.snapshot.port_at(&(dst, protocol, port)) {
            let eps = sp.internal_endpoints(Some(&self.inputs.node_name), self.zone());
            return match sp.no_endpoints_verdict(!eps.is_empty()) {
                Some(v) => Candidates::NoEndpoints(v),
                None => Candidates::Endpoints(eps),
            };
        }
        if self.snapshot.is_cluster_ip(dst) {
            return Candidates::RejectPort;
        }
        if self.inputs.service_cidrs.iter().any(|c| c.contains(dst)) {
            return Candidates::DropUnallocated;
        }
        Candidates::Pass
    }

    /// What the rules do with a new connection from `src_ip` (of kind `src`) to an external
    /// or load-balancer IP `dst`, or (`dst = None`) this node's NodePort: the
    /// `external-*` chain's choice (see [`crate::plan::Plan::lookup_external`], which the
    /// same decision serves).
    pub fn lookup_external(
        &self,
        dst: Option<Ipv4Addr>,
        protocol: Protocol,
        port: u16,
        src_ip: Ipv4Addr,
        src: Source,
    ) -> ExternalCandidates<'a> {
        let Some(sp) = self.snapshot.external_port_at(&(dst, protocol, port)) else {
            return ExternalCandidates::Pass;
        };
        let chains = ExternalChains {
            port: &sp.port,
            has_endpoints: sp.has_endpoints(),
            cluster: sp.cluster_endpoints_in(self.zone()),
            local: sp.local_endpoints(Some(&self.inputs.node_name)),
        };
        match chains.decide(dst, src_ip, src) {
            Ok((endpoints, masquerade)) => ExternalCandidates::Endpoints {
                endpoints,
                masquerade,
            },
            Err(Blocked::Firewall) => ExternalCandidates::Firewall,
            Err(Blocked::NoEndpoints(v)) => ExternalCandidates::NoEndpoints(v),
        }
    }

    fn zone(&self) -> Option<&'a str> {
        self.inputs.zone.as_deref()
    }

    /// The shared plan of the service port at a ClusterIP destination.
    pub fn port_at(&self, dst: Ipv4Addr, protocol: Protocol, port: u16) -> Option<&'a SharedPort> {
        self.snapshot.port_at(&(dst, protocol, port))
    }

    /// This node's endpoints of a port, for its health-check node port's answer (upstream
    /// `localEndpoints` count served on `healthCheckNodePort`).
    pub fn local_endpoint_count(&self, sp: &SharedPort) -> usize {
        sp.local_endpoints(Some(&self.inputs.node_name)).len()
    }
}

#[cfg(test)]
#[path = "node_proxy_tests.rs"]
mod tests;
