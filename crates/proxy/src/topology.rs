//! Topology-aware routing in kube-proxy: which Cluster-policy endpoints a node in a zone uses,
//! from the EndpointSlice zone hints (upstream `pkg/proxy/topology.go`,
//! `topologyModeFromHints` and `availableForTopology`). Start at [`zoned_endpoints`].
//!
//! Upstream's rule, per service port and node: if every *ready* endpoint has a zone hint and
//! at least one is hinted for the node's zone (`topology.kubernetes.io/zone` of the proxy's own
//! Node), the Cluster chain uses just the ready endpoints hinted for that zone; otherwise (some
//! ready endpoint without hints, no ready endpoints at all, no hint for the zone, or the node
//! has no zone label) it uses every usable endpoint. There is no fallback after choosing the
//! zone: if the zone has hinted endpoints, they are all ready. The `Local` policy chain and
//! the serving-terminating fallback do not look at hints. Node hints (`forNodes`,
//! `PreferSameNode`) belong to the `PreferSameTrafficDistribution` gate, alpha and off by
//! default in 1.33, and are ignored as upstream then does.
//!
//! Instead of deciding per node, the decision is computed once per zone: the map from each
//! hinted zone to its endpoints. A node whose zone is in the map uses that list, any other node
//! every usable endpoint: the same answer, with work and memory O(endpoints) per port however
//! many nodes share it.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::model::Endpoint;

/// Per zone, the endpoints a node in that zone sends Cluster-policy traffic to, when zone
/// hints apply to the port; empty when they do not (then every node uses `usable`).
///
/// `all` are the port's merged endpoints, `usable` its usable ones sorted as upstream sorts
/// them (ready ones when there are any). The lists keep that order.
pub fn zoned_endpoints(all: &[Endpoint], usable: &[Endpoint]) -> BTreeMap<Arc<str>, Vec<Endpoint>> {
    let mut out: BTreeMap<Arc<str>, Vec<Endpoint>> = BTreeMap::new();
    let mut ready = all.iter().filter(|e| e.ready).peekable();
    if ready.peek().is_none() || ready.any(|e| e.zone_hints.is_none()) {
        return out;
    }
    for ep in usable.iter().filter(|e| e.ready) {
        for zone in ep.zone_hints.iter().flat_map(|z| z.iter()) {
            out.entry(zone.clone()).or_default().push(ep.clone());
        }
    }
    out
}

#[cfg(test)]
#[path = "topology_tests.rs"]
mod tests;
