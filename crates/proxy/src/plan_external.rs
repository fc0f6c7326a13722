//! The modelled data plane for external traffic: what the rules do with a new connection to a
//! NodePort, an external IP or a load-balancer IP, by source (pod, the node itself, outside),
//! mirroring the `external-*` / `KUBE-EXT-*` chains, the firewall and the no-endpoint verdicts
//! (not modelled: a source range holding the node IP also admitting the LB IPs as sources).
//! Start at [`Plan::lookup_external`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::{NoEndpoints, Plan, PlannedEndpoint, ServicePlan};
use crate::model::{Protocol, ServicePort, ServicePortName};

/// An external destination: an address and port, or (`None`) a NodePort on this node.
pub(crate) type ExternalKey = (Option<Ipv4Addr>, Protocol, u16);

/// Service ports claiming each external destination (the lowest name wins, as the
/// renderers' element stores do).
pub(super) type ExternalIndex = BTreeMap<ExternalKey, BTreeSet<ServicePortName>>;

/// Where a connection comes from, as the external chain distinguishes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A pod of the cluster CIDR ("short-circuit pod traffic").
    Pod,
    /// An address of this node ("short-circuit local traffic", masqueraded).
    Node,
    /// Anything else: external clients, load balancers, other nodes.
    Outside,
}

/// The outcome for one new external connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExternalVerdict<'a> {
    /// DNAT to one of `endpoints` at random; `masquerade`: the source is rewritten to the
    /// node's address (Cluster policy, or node-originated traffic).
    Dnat {
        plan: &'a ServicePlan,
        endpoints: &'a [PlannedEndpoint],
        masquerade: bool,
    },
    /// No endpoints (reject) or none on this node for a Local policy (drop).
    NoEndpoints(NoEndpoints),
    /// Dropped by `loadBalancerSourceRanges`.
    Firewall,
    /// Not an external destination of any Service.
    Pass,
}

/// The external destinations of a service port.
pub(crate) fn keys(port: &ServicePort) -> Vec<ExternalKey> {
    let (proto, number) = (port.name.protocol, port.port);
    let ips = port.external_ips.iter().chain(&port.load_balancer_ips);
    let mut out: Vec<ExternalKey> = ips.map(|ip| (Some(*ip), proto, number)).collect();
    if let Some(np) = port.node_port {
        out.push((None, proto, np));
    }
    out
}

pub(super) fn index(idx: &mut ExternalIndex, plan: &ServicePlan) {
    for k in keys(&plan.port) {
        idx.entry(k).or_default().insert(plan.port.name.clone());
    }
}

pub(super) fn unindex(idx: &mut ExternalIndex, plan: &ServicePlan) {
    for k in keys(&plan.port) {
        if let Some(names) = idx.get_mut(&k) {
            names.remove(&plan.port.name);
            if names.is_empty() {
                idx.remove(&k);
            }
        }
    }
}

impl Plan {
    /// What the rules do with a new connection from `src_ip` (of kind `src`) to
    /// `dst:port/protocol`, where `dst` is an external or load-balancer IP, or (`dst = None`)
    /// this node's NodePort.
    pub fn lookup_external(
        &self,
        dst: Option<Ipv4Addr>,
        protocol: Protocol,
        port: u16,
        src_ip: Ipv4Addr,
        src: Source,
    ) -> ExternalVerdict<'_> {
        let Some(sp) = self
            .external
            .get(&(dst, protocol, port))
            .and_then(|names| names.first())
            .and_then(|n| self.services.get(n))
        else {
            return ExternalVerdict::Pass;
        };
        let chains = ExternalChains {
            port: &sp.port,
            has_endpoints: sp.has_endpoints,
            cluster: &sp.cluster_endpoints,
            local: &sp.local_endpoints,
        };
        let (endpoints, masquerade) = match chains.decide(dst, src_ip, src) {
            Ok(dnat) => dnat,
            Err(Blocked::Firewall) => return ExternalVerdict::Firewall,
            Err(Blocked::NoEndpoints(v)) => return ExternalVerdict::NoEndpoints(v),
        };
        ExternalVerdict::Dnat {
            plan: sp,
            endpoints,
            masquerade,
        }
    }
}

/// Why external traffic is not DNATed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Blocked {
    Firewall,
    NoEndpoints(NoEndpoints),
}

/// One port's external chains, over any endpoint type (the live plan's or the shared
/// model's): the decision both data planes make.
pub(crate) struct ExternalChains<'a, E> {
    pub port: &'a ServicePort,
    pub has_endpoints: bool,
    pub cluster: &'a [E],
    pub local: &'a [E],
}

impl<'a, E> ExternalChains<'a, E> {
    /// The source-range firewall (LB IPs only), no endpoints at all (reject), then the
    /// policy: Cluster masquerades and uses every endpoint; Local short-circuits pod traffic
    /// (not masqueraded) and node traffic (masqueraded) to the Cluster chain and keeps the
    /// rest on this node's endpoints (drop without).
    pub fn decide(
        &self,
        dst: Option<Ipv4Addr>,
        src_ip: Ipv4Addr,
        src: Source,
    ) -> Result<(&'a [E], bool), Blocked> {
        let is_lb = dst.is_some_and(|ip| self.port.load_balancer_ips.contains(&ip));
        let ranges = &self.port.load_balancer_source_ranges;
        if is_lb && !ranges.is_empty() && !ranges.iter().any(|r| r.contains(src_ip)) {
            return Err(Blocked::Firewall);
        }
        if !self.has_endpoints {
            return Err(Blocked::NoEndpoints(NoEndpoints::Reject));
        }
        match (self.port.external_policy_local(), src) {
            (false, _) => Ok((self.cluster, true)),
            (true, Source::Pod) => Ok((self.cluster, false)),
            (true, Source::Node) => Ok((self.cluster, true)),
            (true, Source::Outside) if self.local.is_empty() => {
                Err(Blocked::NoEndpoints(NoEndpoints::Drop))
            }
            (true, Source::Outside) => Ok((self.local, false)),
        }
    }
}
