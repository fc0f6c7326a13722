//! The rule plan: a pure function from tracked Services and endpoints to what every service
//! port should do (chain names, Cluster and Local endpoints, internal and external
//! no-endpoint verdicts). Both renderers and the simulator's data plane read it. Start at
//! [`Plan::build`] and [`Plan::update`].

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;
use std::sync::{Arc, OnceLock};

use crate::hash;
use crate::model::{
    Cidr, Endpoint, Protocol, ServiceKey, ServicePort, ServicePortName, TrafficPolicy,
};
use crate::tracker::Tracker;

/// What the plan needs to know about this node.
#[derive(Debug, Clone, Default)]
pub struct PlanConfig {
    /// This node's name: endpoints with this `nodeName` are local (Local traffic policy).
    pub node_name: Option<String>,
    /// This node's `topology.kubernetes.io/zone` label: Cluster-policy endpoints are the
    /// ones hinted for it when hints apply (upstream `topologyModeFromHints`).
    pub zone: Option<String>,
}

/// Verdict for traffic to a service port without usable endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoEndpoints {
    /// No endpoints at all: ICMP port unreachable.
    Reject,
    /// Local policy and no local endpoints while others exist: silent drop.
    Drop,
}

/// An endpoint the service port load-balances to. Its chain names are hashed on first use:
/// the shared-map layout needs none for most Services, nftables mode no iptables name.
#[derive(Debug, Clone)]
pub struct PlannedEndpoint {
    pub endpoint: Endpoint,
    port: Arc<ServicePortName>,
    nft_base: OnceLock<String>,
    ipt_chain: OnceLock<String>,
}

impl PlannedEndpoint {
    /// An endpoint of service port `port`.
    pub fn new(port: Arc<ServicePortName>, endpoint: Endpoint) -> PlannedEndpoint {
        PlannedEndpoint {
            endpoint,
            port,
            nft_base: OnceLock::new(),
            ipt_chain: OnceLock::new(),
        }
    }

    /// `<HASH8>-ns/svc/proto/port__ip/port` (chain `endpoint-<base>`, set `affinity-<base>`).
    pub fn nft_base(&self) -> &str {
        self.nft_base
            .get_or_init(|| hash::nft_endpoint_base(&self.port, &self.endpoint))
    }

    /// `KUBE-SEP-<HASH16>`.
    pub fn ipt_chain(&self) -> &str {
        self.ipt_chain
            .get_or_init(|| hash::ipt_endpoint_chain(&self.port, &self.endpoint))
    }
}

/// Equal when the endpoint and its service port are (the names follow from them).
impl PartialEq for PlannedEndpoint {
    fn eq(&self, other: &Self) -> bool {
        self.endpoint == other.endpoint && self.port == other.port
    }
}

impl Eq for PlannedEndpoint {}

/// The plan of one service port (upstream `CategorizeEndpoints` plus the per-policy
/// verdicts of `syncProxyRules`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePlan {
    pub port: ServicePort,
    /// `<HASH8>-ns/svc/proto/port`.
    pub nft_base: String,
    /// `KUBE-SVC-*` (Cluster) or `KUBE-SVL-*` (Local internal traffic policy): where
    /// ClusterIP traffic goes.
    pub ipt_chain: String,
    /// Endpoints for ClusterIP traffic, sorted by the string `IP:port` as upstream.
    pub endpoints: Vec<PlannedEndpoint>,
    /// Set exactly when `endpoints` is empty.
    pub no_endpoints: Option<NoEndpoints>,
    /// Endpoints of the `Cluster` policy chain (`service-*`, `KUBE-SVC-*`); empty when the
    /// port never uses it.
    pub cluster_endpoints: Vec<PlannedEndpoint>,
    /// Endpoints of the `Local` policy chain (`local-*`, `KUBE-SVL-*`): this node's; empty
    /// when the port never uses it.
    pub local_endpoints: Vec<PlannedEndpoint>,
    /// Usable endpoints exist somewhere in the cluster (upstream `hasEndpoints`).
    pub has_endpoints: bool,
    /// For an externally accessible port: the verdict for external traffic no chain DNATs
    /// (no endpoints at all: reject; `externalTrafficPolicy: Local` without local endpoints:
    /// drop). `None` when external traffic has endpoints or the port has no external
    /// destinations.
    pub external_no_endpoints: Option<NoEndpoints>,
}

impl ServicePlan {
    /// nft chain ClusterIP traffic jumps to: `service-<base>` or `local-<base>`.
    pub fn nft_chain(&self) -> String {
        match self.port.internal_traffic_policy {
            TrafficPolicy::Cluster => self.nft_cluster_chain(),
            TrafficPolicy::Local => self.nft_local_chain(),
        }
    }

    /// `service-<base>`: the Cluster policy chain.
    pub fn nft_cluster_chain(&self) -> String {
        format!("service-{}", self.nft_base)
    }

    /// `local-<base>`: the Local policy chain.
    pub fn nft_local_chain(&self) -> String {
        format!("local-{}", self.nft_base)
    }

    /// `external-<base>`: where NodePort, external-IP and load-balancer traffic goes.
    pub fn nft_external_chain(&self) -> String {
        format!("external-{}", self.nft_base)
    }

    /// `firewall-<base>`: the `loadBalancerSourceRanges` check.
    pub fn nft_firewall_chain(&self) -> String {
        format!("firewall-{}", self.nft_base)
    }

    /// The chain external traffic ends in after the external chain's special cases.
    pub fn nft_external_policy_chain(&self) -> String {
        if self.port.external_policy_local() {
            self.nft_local_chain()
        } else {
            self.nft_cluster_chain()
        }
    }

    /// `KUBE-SVC-*`.
    pub fn ipt_cluster_chain(&self) -> String {
        hash::ipt_service_chain(&self.port.name)
    }

    /// `KUBE-SVL-*`.
    pub fn ipt_local_chain(&self) -> String {
        hash::ipt_local_chain(&self.port.name)
    }

    /// `KUBE-EXT-*`.
    pub fn ipt_external_chain(&self) -> String {
        hash::ipt_external_chain(&self.port.name)
    }

    /// `KUBE-FW-*`.
    pub fn ipt_firewall_chain(&self) -> String {
        hash::ipt_firewall_chain(&self.port.name)
    }

    /// `KUBE-SVL-*` with external `Local` policy, else `KUBE-SVC-*`.
    pub fn ipt_external_policy_chain(&self) -> String {
        if self.port.external_policy_local() {
            self.ipt_local_chain()
        } else {
            self.ipt_cluster_chain()
        }
    }

    /// External traffic has endpoints to go to (upstream `hasExternalEndpoints`).
    pub fn has_external_endpoints(&self) -> bool {
        self.has_endpoints
            && !(self.port.external_policy_local() && self.local_endpoints.is_empty())
    }

    /// The external chain exists: endpoints somewhere and an external destination (upstream
    /// `usesExternalTrafficChain`; it holds the short-circuit rules even without local
    /// endpoints).
    pub fn uses_external_chain(&self) -> bool {
        self.has_endpoints && self.port.externally_accessible()
    }

    /// Every endpoint some chain of this port DNATs to (upstream
    /// `allLocallyReachableEndpoints`), each once.
    pub fn reachable_endpoints(&self) -> Vec<&PlannedEndpoint> {
        let mut out: Vec<&PlannedEndpoint> = self.cluster_endpoints.iter().collect();
        for ep in &self.local_endpoints {
            if !out
                .iter()
                .any(|e| e.endpoint.ip == ep.endpoint.ip && e.endpoint.port == ep.endpoint.port)
            {
                out.push(ep);
            }
        }
        out
    }
}

/// Where a packet to a destination goes according to the plan (the modelled data plane).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// DNAT to one of these endpoints, chosen uniformly at random (or by affinity).
    Dnat(&'a ServicePlan),
    /// Service port without endpoints.
    NoEndpoints(NoEndpoints),
    /// An allocated ClusterIP on a port it does not serve: reject.
    RejectPort,
    /// An unallocated address of the service CIDR: drop.
    DropUnallocated,
    /// Not service traffic: untouched.
    Pass,
}

/// The rule plan for all service ports.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    services: BTreeMap<ServicePortName, ServicePlan>,
    by_dest: BTreeMap<(Ipv4Addr, Protocol, u16), ServicePortName>,
    cluster_ips: BTreeMap<Ipv4Addr, usize>,
    external: external::ExternalIndex,
    /// Running totals kept by `insert`/`remove`, so a partial sync never walks every port.
    totals: Totals,
}

/// Sums over all service ports, maintained incrementally.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    endpoints: usize,
    no_local_internal: usize,
    no_local_external: usize,
}

impl Totals {
    fn add(&mut self, plan: &ServicePlan, sign: isize) {
        let drops = |v: Option<NoEndpoints>| isize::from(v == Some(NoEndpoints::Drop));
        let step = |t: &mut usize, n: isize| *t = t.saturating_add_signed(sign * n);
        step(&mut self.endpoints, plan.endpoints.len() as isize);
        step(&mut self.no_local_internal, drops(plan.no_endpoints));
        step(
            &mut self.no_local_external,
            drops(plan.external_no_endpoints),
        );
    }
}

impl Plan {
    /// Plans every tracked service port.
    pub fn build(tracker: &Tracker, cfg: &PlanConfig) -> Plan {
        let mut plan = Plan::default();
        for (_, ports) in tracker.services() {
            for port in ports {
                plan.insert(plan_port(tracker, cfg, port));
            }
        }
        plan
    }

    /// Re-plans the ports of `changed` Services; returns every service port added, changed
    /// or removed.
    pub fn update(
        &mut self,
        tracker: &Tracker,
        cfg: &PlanConfig,
        changed: &BTreeSet<ServiceKey>,
    ) -> BTreeSet<ServicePortName> {
        let mut affected = BTreeSet::new();
        for svc in changed {
            let old: Vec<ServicePortName> =
                self.ports_of(svc).map(|p| p.port.name.clone()).collect();
            let mut old_plans = BTreeMap::new();
            for name in old {
                if let Some(p) = self.remove(&name) {
                    old_plans.insert(name, p);
                }
            }
            for port in tracker.ports_of(svc) {
                let new = plan_port(tracker, cfg, port);
                if old_plans.remove(&new.port.name).as_ref() != Some(&new) {
                    affected.insert(new.port.name.clone());
                }
                self.insert(new);
            }
            affected.extend(old_plans.into_keys());
        }
        affected
    }

    fn insert(&mut self, plan: ServicePlan) {
        let dest = (
            plan.port.cluster_ip,
            plan.port.name.protocol,
            plan.port.port,
        );
        self.by_dest.insert(dest, plan.port.name.clone());
        *self.cluster_ips.entry(plan.port.cluster_ip).or_default() += 1;
        external::index(&mut self.external, &plan);
        self.totals.add(&plan, 1);
        if let Some(old) = self.services.insert(plan.port.name.clone(), plan) {
            self.totals.add(&old, -1);
        }
    }

    fn remove(&mut self, name: &ServicePortName) -> Option<ServicePlan> {
        let plan = self.services.remove(name)?;
        self.totals.add(&plan, -1);
        external::unindex(&mut self.external, &plan);
        let dest = (
            plan.port.cluster_ip,
            plan.port.name.protocol,
            plan.port.port,
        );
        if self.by_dest.get(&dest) == Some(name) {
            self.by_dest.remove(&dest);
        }
        if let Some(n) = self.cluster_ips.get_mut(&plan.port.cluster_ip) {
            *n -= 1;
            if *n == 0 {
                self.cluster_ips.remove(&plan.port.cluster_ip);
            }
        }
        Some(plan)
    }

    /// The plans of one Service's ports.
    pub fn ports_of<'a>(
        &'a self,
        svc: &'a ServiceKey,
    ) -> impl Iterator<Item = &'a ServicePlan> + 'a {
        let start = ServicePortName {
            service: svc.clone(),
            port: String::new(),
            protocol: Protocol::Tcp,
        };
        self.services
            .range(start..)
            .take_while(move |(k, _)| &k.service == svc)
            .map(|(_, v)| v)
    }

    /// Every service port plan in name order.
    pub fn services(&self) -> impl Iterator<Item = &ServicePlan> {
        self.services.values()
    }

    /// One service port's plan.
    pub fn get(&self, name: &ServicePortName) -> Option<&ServicePlan> {
        self.services.get(name)
    }

    /// Total endpoints across all service ports.
    pub fn endpoint_count(&self) -> usize {
        self.totals.endpoints
    }

    /// Service ports whose Local policy finds no endpoint on this node while others exist:
    /// `(internal, external)`, upstream's `serviceNoLocalEndpointsTotal{Internal,External}`.
    pub fn no_local_endpoints(&self) -> (usize, usize) {
        (self.totals.no_local_internal, self.totals.no_local_external)
    }

    /// Number of service ports.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    /// True without service ports.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// What the rules do with a new connection to `dst:port/protocol` (the modelled data
    /// plane; mirrors `services`, `service-endpoints-check` and `cluster-ips-check`).
    pub fn lookup(
        &self,
        dst: Ipv4Addr,
        protocol: Protocol,
        port: u16,
        service_cidrs: &[Cidr],
    ) -> Verdict<'_> {
        if let Some(plan) = self
            .by_dest
            .get(&(dst, protocol, port))
            .and_then(|n| self.services.get(n))
        {
            return match plan.no_endpoints {
                Some(v) => Verdict::NoEndpoints(v),
                None => Verdict::Dnat(plan),
            };
        }
        if self.cluster_ips.contains_key(&dst) {
            return Verdict::RejectPort;
        }
        if service_cidrs.iter().any(|c| c.contains(dst)) {
            return Verdict::DropUnallocated;
        }
        Verdict::Pass
    }
}

/// Picks upstream's endpoints: ready ones; if none, serving and terminating ones; sorted by
/// the string `IP:port` as upstream.
fn usable<'a>(eps: impl Iterator<Item = &'a Endpoint> + Clone) -> Vec<Endpoint> {
    let mut out: Vec<Endpoint> = eps.clone().filter(|e| e.ready).cloned().collect();
    if out.is_empty() {
        out = eps
            .filter(|e| e.serving && e.terminating)
            .cloned()
            .collect();
    }
    out.sort_by_cached_key(Endpoint::addr_string);
    out
}

/// The node-independent part of one service port's plan: the port and its usable endpoints,
/// cluster-wide and per node. One of these serves every node's plan of the port (the live
/// [`Plan`] builds it per sync; the simulator's shared model keeps one per port for all
/// nodes). Start at [`SharedPort::new`].
#[derive(Debug, Clone)]
pub struct SharedPort {
    pub port: ServicePort,
    /// Usable endpoints anywhere (ready ones, else serving and terminating ones), sorted:
    /// the Cluster policy chain's endpoints.
    pub usable: Vec<Endpoint>,
    /// Per node name, that node's usable endpoints (the same rule applied to the node's
    /// endpoints alone), sorted; filled only for ports that use the Local policy.
    pub local: BTreeMap<Arc<str>, Vec<Endpoint>>,
    /// Per zone, the ready endpoints hinted for it, sorted: the Cluster policy chain's
    /// endpoints on a node of that zone. Filled only when zone hints apply (the port uses
    /// Cluster endpoints and every ready endpoint has a zone hint); one list per zone, shared
    /// by every node in it. See [`crate::topology`].
    pub zoned: BTreeMap<Arc<str>, Vec<Endpoint>>,
    /// A hash of the port, whether it has endpoints and its Cluster chain's endpoints,
    /// computed on first use: different fingerprints prove a
    /// node-independent change without comparing every endpoint (equal ones are then
    /// compared in full).
    fingerprint: OnceLock<u64>,
}

/// Equal when port and endpoints are (the fingerprint follows from them).
impl PartialEq for SharedPort {
    fn eq(&self, other: &Self) -> bool {
        self.port == other.port
            && self.usable == other.usable
            && self.local == other.local
            && self.zoned == other.zoned
    }
}

impl Eq for SharedPort {}

impl SharedPort {
    /// Plans `port` over all its merged endpoints `all`.
    pub fn new(port: &ServicePort, all: &[Endpoint]) -> SharedPort {
        let mut local = BTreeMap::new();
        if port.uses_local_endpoints() {
            let mut by_node: BTreeMap<&Arc<str>, Vec<&Endpoint>> = BTreeMap::new();
            for e in all {
                if let Some(n) = &e.node_name {
                    by_node.entry(n).or_default().push(e);
                }
            }
            for (node, eps) in by_node {
                let mine = usable(eps.into_iter());
                if !mine.is_empty() {
                    local.insert(node.clone(), mine);
                }
            }
        }
        let usable = usable(all.iter());
        let zoned = if port.uses_cluster_endpoints() {
            crate::topology::zoned_endpoints(all, &usable)
        } else {
            BTreeMap::new()
        };
        SharedPort {
            port: port.clone(),
            usable,
            local,
            zoned,
            fingerprint: OnceLock::new(),
        }
    }

    fn fingerprint(&self) -> u64 {
        *self.fingerprint.get_or_init(|| {
            // SipHash with fixed keys: the same on every run.
            let mut h = std::hash::DefaultHasher::new();
            (&self.port, self.has_endpoints(), self.cluster_endpoints()).hash(&mut h);
            h.finish()
        })
    }

    /// Usable endpoints exist somewhere in the cluster (upstream `hasEndpoints`).
    pub fn has_endpoints(&self) -> bool {
        !self.usable.is_empty()
    }

    /// Endpoints of the Cluster policy chain, ignoring topology: empty when the port never
    /// uses it.
    pub fn cluster_endpoints(&self) -> &[Endpoint] {
        if self.port.uses_cluster_endpoints() {
            &self.usable
        } else {
            &[]
        }
    }

    /// Endpoints of the Cluster policy chain on a node in `zone`: the ones hinted for the
    /// zone when hints apply and one is hinted for it, else all usable ones (upstream
    /// `CategorizeEndpoints`' `clusterEndpoints`).
    pub fn cluster_endpoints_in(&self, zone: Option<&str>) -> &[Endpoint] {
        match zone.and_then(|z| self.zoned.get(z)) {
            Some(eps) => eps,
            None => self.cluster_endpoints(),
        }
    }

    /// Endpoints of the Local policy chain on node `node`: empty when the port never uses
    /// it or the node has none.
    pub fn local_endpoints(&self, node: Option<&str>) -> &[Endpoint] {
        node.and_then(|n| self.local.get(n))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Endpoints for ClusterIP traffic from node `node` in `zone` (by the internal traffic
    /// policy).
    pub fn internal_endpoints(&self, node: Option<&str>, zone: Option<&str>) -> &[Endpoint] {
        match self.port.internal_traffic_policy {
            TrafficPolicy::Cluster => self.cluster_endpoints_in(zone),
            TrafficPolicy::Local => self.local_endpoints(node),
        }
    }

    /// The verdict when a chain with `has` endpoints has none: `None` when it has some;
    /// drop when others exist elsewhere (a Local policy), reject when none exist at all.
    pub fn no_endpoints_verdict(&self, has: bool) -> Option<NoEndpoints> {
        no_endpoints_verdict(has, self.has_endpoints())
    }

    /// The plan of the port on node `node` in `zone` is the same from both (as the live
    /// plan compares a port's plans before and after a change). Without zone hints on
    /// either side, different fingerprints prove a change at once.
    pub fn same_for_node(
        &self,
        other: &SharedPort,
        node: Option<&str>,
        zone: Option<&str>,
    ) -> bool {
        let untopological = self.zoned.is_empty() && other.zoned.is_empty();
        if untopological && self.fingerprint() != other.fingerprint() {
            return false;
        }
        self.local_endpoints(node) == other.local_endpoints(node)
            && self.port == other.port
            && self.has_endpoints() == other.has_endpoints()
            && self.cluster_endpoints_in(zone) == other.cluster_endpoints_in(zone)
    }

    /// For an externally accessible port, the verdict for external traffic that no chain
    /// DNATs (see [`ServicePlan::external_no_endpoints`]); `None` otherwise.
    pub fn external_no_endpoints(&self, node: Option<&str>) -> Option<NoEndpoints> {
        if !self.port.externally_accessible() {
            return None;
        }
        let local_missing =
            self.port.external_policy_local() && self.local_endpoints(node).is_empty();
        self.no_endpoints_verdict(self.has_endpoints() && !local_missing)
    }
}

/// A chain with (`has`) or without endpoints: without, drop when the port has endpoints
/// elsewhere (a Local policy), reject when it has none at all.
fn no_endpoints_verdict(has: bool, has_endpoints: bool) -> Option<NoEndpoints> {
    if has {
        None
    } else if has_endpoints {
        Some(NoEndpoints::Drop)
    } else {
        Some(NoEndpoints::Reject)
    }
}

fn planned(port: &Arc<ServicePortName>, eps: Vec<Endpoint>) -> Vec<PlannedEndpoint> {
    eps.into_iter()
        .map(|ep| PlannedEndpoint::new(port.clone(), ep))
        .collect()
}

fn plan_port(tracker: &Tracker, cfg: &PlanConfig, port: &ServicePort) -> ServicePlan {
    node_plan(
        SharedPort::new(port, tracker.endpoints_of(&port.name)),
        cfg.node_name.as_deref(),
        cfg.zone.as_deref(),
    )
}

/// One node's plan of a service port from its shared part.
fn node_plan(mut shared: SharedPort, node: Option<&str>, zone: Option<&str>) -> ServicePlan {
    let external_no_endpoints = shared.external_no_endpoints(node);
    let has_endpoints = shared.has_endpoints();
    let port = &shared.port;
    let name = Arc::new(port.name.clone());
    let local = match node {
        Some(n) if port.uses_local_endpoints() => shared.local.remove(n).unwrap_or_default(),
        _ => Vec::new(),
    };
    let local = planned(&name, local);
    let cluster = if port.uses_cluster_endpoints() {
        let zoned = zone.and_then(|z| shared.zoned.remove(z));
        planned(
            &name,
            zoned.unwrap_or_else(|| std::mem::take(&mut shared.usable)),
        )
    } else {
        Vec::new()
    };
    let (endpoints, ipt_chain) = match port.internal_traffic_policy {
        TrafficPolicy::Cluster => (cluster.clone(), hash::ipt_service_chain(&port.name)),
        TrafficPolicy::Local => (local.clone(), hash::ipt_local_chain(&port.name)),
    };
    let no_endpoints = no_endpoints_verdict(!endpoints.is_empty(), has_endpoints);
    ServicePlan {
        nft_base: hash::nft_service_base(&port.name),
        ipt_chain,
        no_endpoints,
        endpoints,
        cluster_endpoints: cluster,
        local_endpoints: local,
        has_endpoints,
        external_no_endpoints,
        port: shared.port,
    }
}

#[path = "plan_external.rs"]
mod external;
pub(crate) use external::{Blocked, ExternalChains, ExternalKey, keys as external_keys};
pub use external::{ExternalVerdict, Source};

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
