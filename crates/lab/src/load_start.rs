//! When a run's load may start, shared by the live runner and the simulator: once the
//! workloads are available, every client pod's node must have a kube-proxy that programmed the
//! endpoints it will keep for the client's Service. That is at least one endpoint (else the
//! first connections are refused by the `reject` rule of a Service without endpoints:
//! start-up refusals that say nothing about the fault), programmed by a sync that knew every
//! ready endpoint of the Service: as many as the API's Ready pods the Service selects
//! ([`ready_pods`]). Programming some endpoint is not enough: with zone hints
//! (`trafficDistribution: PreferClose`) a zone whose endpoint is not yet in the proxy's
//! EndpointSlices has no hinted endpoint, so its nodes use every endpoint until the slice
//! update arrives and the next sync narrows the set to the zone. Checked every [`POLL_MS`],
//! given up after [`CAP_MS`] (a Service that has no ready endpoint at start; the run then
//! starts anyway); t0 is [`SETTLE_MS`] after it opened.
//!
//! Start at [`LoadGate::pending`].

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Pod, Service};

/// How often the gate is checked (ms).
pub const POLL_MS: i64 = 100;
/// The longest wait for the proxies after the workloads are available (ms).
pub const CAP_MS: i64 = 10_000;
/// Between the gate opening and t0, when the client pods are created: the live run's wait for
/// its watches (ms).
pub const SETTLE_MS: i64 = 500;

/// What a node's latest successful proxy sync shows of one Service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxySeen {
    /// Endpoints its applied rules send the Service's ClusterIP traffic to.
    pub programmed: usize,
    /// Ready endpoints (distinct addresses) of the Service the proxy knew at that sync, from
    /// its EndpointSlices, whether or not its rules use them. `None`: the proxy does not say
    /// (a `proxy-sync` line of an older agent): only the programmed count is checked.
    pub known_ready: Option<usize>,
}

/// Why a `(node, Service)` pair holds the load back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// The node's proxy programmed no endpoint of the Service.
    NoEndpoint,
    /// The node's proxy knew `known` of the Service's `ready` ready endpoints: the endpoints
    /// its rules use may still change (zone hints).
    Partial { known: usize, ready: usize },
}

/// The first pair the load waits for, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pending<'a> {
    pub node: &'a str,
    pub service: &'a str,
    pub why: Why,
}

impl std::fmt::Display for Pending<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (node, svc) = (self.node, self.service);
        match self.why {
            Why::NoEndpoint => write!(f, "the proxy of {node} programmed no endpoint of {svc}"),
            Why::Partial { known, ready } => write!(
                f,
                "the proxy of {node} knew {known} of the {ready} ready endpoints of {svc}"
            ),
        }
    }
}

/// The `(node, Service)` pairs the load waits for: each client pod's node and its Service
/// (`namespace/name`).
#[derive(Clone, Debug, Default)]
pub struct LoadGate {
    pairs: BTreeSet<(String, String)>,
}

impl LoadGate {
    /// The gate of clients on `(node, service)` pairs (duplicates count once).
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> LoadGate {
        LoadGate {
            pairs: pairs.into_iter().collect(),
        }
    }

    /// The first pair (in order) whose node's proxy has not yet programmed the endpoints it
    /// will keep, given `ready(service)`, the Service's ready pods in the API
    /// ([`ready_pods`]), and `seen(node, service)`, what the node's latest sync shows
    /// ([`ProxySeen`]). A pair passes when the proxy programmed an endpoint and knew at least
    /// the ready pods' count of ready endpoints. `ready` is asked once per Service and only
    /// for pairs that programmed an endpoint. `None`: the load may start.
    pub fn pending(
        &self,
        ready: impl Fn(&str) -> usize,
        seen: impl Fn(&str, &str) -> ProxySeen,
    ) -> Option<Pending<'_>> {
        let mut counted: BTreeMap<&str, usize> = BTreeMap::new();
        self.pairs.iter().find_map(|(node, service)| {
            let s = seen(node, service);
            let why = match s.known_ready {
                _ if s.programmed == 0 => Why::NoEndpoint,
                // An older agent's line: the programmed endpoint is all it tells.
                None => return None,
                Some(known) => {
                    let ready = *counted
                        .entry(service.as_str())
                        .or_insert_with(|| ready(service));
                    if known >= ready {
                        return None;
                    }
                    Why::Partial { known, ready }
                }
            };
            Some(Pending { node, service, why })
        })
    }

    /// No client waits (external clients only, or none).
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The Services the clients target (`namespace/name`), each once, in order.
    pub fn services(&self) -> BTreeSet<&str> {
        self.pairs.iter().map(|(_, s)| s.as_str()).collect()
    }
}

/// How many ready endpoints (distinct addresses) Service `svc`'s EndpointSlices will list once
/// the endpoint controller has seen `pods` (any pods; those of other namespaces or labels do
/// not count): the pods its selector selects, not terminal, with an IPv4 address, Ready (or
/// any, with `publishNotReadyAddresses`) and not terminating (upstream `podToEndpoint`). 0 for
/// a Service without a selector.
pub fn ready_pods<'a>(svc: &Service, pods: impl IntoIterator<Item = &'a Pod>) -> usize {
    let Some(selector) = runtime::labels::service_selector(svc) else {
        return 0;
    };
    let publish = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        == Some(true);
    let mut ips = BTreeSet::new();
    for pod in pods {
        if pod.metadata.namespace != svc.metadata.namespace
            || !runtime::labels::set_selects(selector, pod.metadata.labels.as_ref())
            || pod.metadata.deletion_timestamp.is_some()
            || !(publish || runtime::labels::pod_is_ready(pod))
            || runtime::labels::pod_is_terminal(pod)
        {
            continue;
        }
        if let Some(ip) = runtime::labels::pod_ipv4(pod) {
            ips.insert(ip);
        }
    }
    ips.len()
}

#[cfg(test)]
#[path = "load_start_tests.rs"]
mod tests;
