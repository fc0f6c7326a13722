//! The desired endpoints of a Service: which pods become endpoints, with which conditions and
//! which resolved ports (upstream `podToEndpoint`, `getEndpointPorts`, `FindPort`,
//! `ShouldPodBeInEndpoints`). Start at [`desired_groups`].
//!
//! Desired endpoints borrow from the cache; an `Endpoint` object is only built for endpoints
//! that are actually written, so a no-op reconcile of a large Service allocates little.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::cache::{Cache, Key};
use crate::time::from_time;
use crate::zonalshift::ShiftedZones;
use crate::{Moment, pod_is_ready};

/// One pod as an endpoint, borrowing from the cache.
#[derive(Debug)]
pub(crate) struct DesiredEndpoint<'a> {
    pub pod: &'a Pod,
    pub name: &'a str,
    pub ip: Cow<'a, str>,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    pub node: Option<&'a str>,
    pub zone: Option<&'a str>,
    pub hostname: Option<&'a str>,
}

/// A port list normalised for comparison: sorted `(name, port, protocol, appProtocol)`.
pub(crate) type PortKey = Vec<(String, i32, String, Option<String>)>;

/// Endpoints that share one resolved port list (upstream: one slice group per port map).
#[derive(Debug)]
pub(crate) struct PortGroup<'a> {
    /// The ports to write, in Service port order.
    pub ports: Vec<EndpointPort>,
    pub key: PortKey,
    /// Endpoints in pod key order.
    pub endpoints: Vec<DesiredEndpoint<'a>>,
}

/// Everything the reconciler needs to know about the desired state of one Service.
#[derive(Debug, Default)]
pub(crate) struct Desired<'a> {
    pub groups: Vec<PortGroup<'a>>,
    /// Some pod referenced a node that is not in the cache and was skipped (upstream returns
    /// an error so the Service is retried).
    pub missing_node: bool,
}

const PROTOCOL_DEFAULT: &str = "TCP";

pub(crate) use runtime::labels::service_selector as selector;

/// True if every selector label is on the pod.
pub(crate) fn selects(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    runtime::labels::set_selects(selector, pod.metadata.labels.as_ref())
}

/// The `lastTransitionTime` of the pod's Ready condition (upstream `getPodTriggerTime`).
pub(crate) fn ready_transition(pod: &Pod) -> Option<Moment> {
    let conds = pod.status.as_ref()?.conditions.as_ref()?;
    let ready = conds.iter().find(|c| c.type_ == "Ready")?;
    ready.last_transition_time.as_ref().map(from_time)
}

/// The pod's IPv4 address ([`runtime::labels::pod_ipv4`]).
pub(crate) fn pod_ipv4(pod: &Pod) -> Option<Cow<'_, str>> {
    runtime::labels::pod_ipv4(pod).map(Cow::Borrowed)
}

/// Upstream `ShouldSetHostname`: the pod's hostname when its subdomain is the Service.
fn hostname<'a>(pod: &'a Pod, svc: &Service) -> Option<&'a str> {
    let spec = pod.spec.as_ref()?;
    let host = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    let same_ns = pod.metadata.namespace == svc.metadata.namespace;
    (same_ns && spec.subdomain.as_deref() == svc.metadata.name.as_deref()).then_some(host)
}

fn port_protocol(p: &ServicePort) -> &str {
    p.protocol.as_deref().unwrap_or(PROTOCOL_DEFAULT)
}

/// Upstream `FindPort`: a numeric targetPort as is (absent: the service port, as the API
/// server defaults it); a named one looked up in the containers' ports (and restartable init
/// containers), matching name and protocol.
pub(crate) fn resolve_port(pod: &Pod, sp: &ServicePort) -> Option<i32> {
    let name = match &sp.target_port {
        None => return Some(sp.port),
        Some(IntOrString::Int(n)) => return Some(*n),
        Some(IntOrString::String(name)) => name.as_str(),
    };
    let spec = pod.spec.as_ref()?;
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    let proto = port_protocol(sp);
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| {
            p.name.as_deref() == Some(name)
                && p.protocol.as_deref().unwrap_or(PROTOCOL_DEFAULT) == proto
        })
        .map(|p| p.container_port)
}

fn is_named(sp: &ServicePort) -> bool {
    matches!(sp.target_port, Some(IntOrString::String(_)))
}

/// Normalise a port list for comparison (absent name is "", absent protocol TCP).
pub(crate) fn port_key(ports: &[EndpointPort]) -> PortKey {
    let mut key: PortKey = ports
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or(0),
                p.protocol
                    .clone()
                    .unwrap_or_else(|| PROTOCOL_DEFAULT.to_string()),
                p.app_protocol.clone(),
            )
        })
        .collect();
    key.sort();
    key
}

fn group_ports(svc_ports: &[ServicePort], resolved: &[Option<i32>]) -> Vec<EndpointPort> {
    svc_ports
        .iter()
        .zip(resolved)
        .filter_map(|(sp, n)| {
            n.map(|port| EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(port),
                protocol: Some(port_protocol(sp).to_string()),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect()
}

fn new_group<'a>(svc_ports: &[ServicePort], resolved: &[Option<i32>]) -> PortGroup<'a> {
    let ports = group_ports(svc_ports, resolved);
    let key = port_key(&ports);
    PortGroup {
        ports,
        key,
        endpoints: Vec::new(),
    }
}

/// One endpoint for `pod`, or `None` if the pod is not eligible (terminal, no IPv4 address)
/// or its node is unknown (then `missing_node` is set, unless addresses are published anyway).
fn endpoint_of<'a>(
    cache: &'a Cache,
    svc: &Service,
    pod: &'a Pod,
    missing_node: &mut bool,
    shifted: &ShiftedZones,
) -> Option<DesiredEndpoint<'a>> {
    if runtime::labels::pod_is_terminal(pod) {
        return None;
    }
    let ip = pod_ipv4(pod)?;
    let publish = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("");
    let node_obj = cache.nodes.get(node);
    if node_obj.is_none() && !publish {
        *missing_node = true;
        return None;
    }
    let zone = node_obj
        .and_then(|n| n.metadata.labels.as_ref())
        .and_then(|l| l.get(crate::ZONE_LABEL))
        .map(String::as_str)
        .filter(|z| !z.is_empty());
    // A zonal shift away from the zone takes its Pod endpoints out of every slice (EKS zonal
    // shift: east-west ClusterIP traffic avoids the zone; `crate::zonalshift`).
    if zone.is_some_and(|z| shifted.contains(z)) {
        return None;
    }
    let serving = pod_is_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    Some(DesiredEndpoint {
        pod,
        name: pod.metadata.name.as_deref().unwrap_or(""),
        ip,
        ready: publish || (serving && !terminating),
        serving,
        terminating,
        node: (!node.is_empty()).then_some(node),
        zone,
        hostname: hostname(pod, svc),
    })
}

/// The desired endpoints of `svc` among the pods named `names` (the pods it selects for a
/// full sync, the changed ones for a partial sync), grouped by resolved port list, groups in
/// order of first appearance and endpoints in `names` order (pod key order; the reconcile
/// takes groups in port-list order).
pub(crate) fn desired_groups<'a, 'n>(
    cache: &'a Cache,
    svc: &'a Service,
    names: impl Iterator<Item = &'n String>,
    shifted: &ShiftedZones,
) -> Desired<'a> {
    let mut out = Desired::default();
    let Some(sel) = selector(svc) else { return out };
    let namespace = svc.metadata.namespace.as_deref().unwrap_or("");
    let pods = names.filter_map(|n| cache.pods.get(&Key::new(namespace, n)));
    // A headless Service may have no ports: its endpoints then have an empty port list.
    let svc_ports: &[ServicePort] = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or(&[]);
    let named = svc_ports.iter().any(is_named);
    let mut by_resolution: BTreeMap<Vec<Option<i32>>, usize> = BTreeMap::new();
    let mut scratch: Vec<Option<i32>> = Vec::with_capacity(svc_ports.len());
    for pod in pods {
        if !selects(sel, pod) {
            continue;
        }
        let Some(ep) = endpoint_of(cache, svc, pod, &mut out.missing_node, shifted) else {
            continue;
        };
        let idx = if named || out.groups.is_empty() {
            scratch.clear();
            scratch.extend(svc_ports.iter().map(|sp| resolve_port(pod, sp)));
            match by_resolution.get(scratch.as_slice()) {
                Some(&i) => i,
                None => {
                    out.groups.push(new_group(svc_ports, &scratch));
                    by_resolution.insert(scratch.clone(), out.groups.len() - 1);
                    out.groups.len() - 1
                }
            }
        } else {
            0
        };
        out.groups[idx].endpoints.push(ep);
    }
    out
}

impl DesiredEndpoint<'_> {
    /// True if the existing endpoint already says exactly what this one would (upstream
    /// `EndpointsEqualBeyondHash` plus the identity fields). Hints are not compared: they
    /// are the `hints` module's, applied after placement, as upstream.
    pub(crate) fn matches(&self, ep: &Endpoint) -> bool {
        let conds_ok = ep.conditions.as_ref().is_some_and(|c| {
            c.ready == Some(self.ready)
                && c.serving == Some(self.serving)
                && c.terminating == Some(self.terminating)
        });
        let target_ok = ep.target_ref.as_ref().is_some_and(|t| {
            t.kind.as_deref() == Some("Pod")
                && t.name.as_deref() == Some(self.name)
                && t.namespace == self.pod.metadata.namespace
                && t.uid == self.pod.metadata.uid
                && t.api_version.is_none()
                && t.resource_version.is_none()
                && t.field_path.is_none()
        });
        conds_ok
            && target_ok
            && ep.addresses.len() == 1
            && ep.addresses[0] == self.ip
            && ep.node_name.as_deref() == self.node
            && ep.zone.as_deref() == self.zone
            && ep.hostname.as_deref() == self.hostname
            && ep.deprecated_topology.is_none()
    }

    /// The identity upstream hashes an endpoint by: target pod name and address.
    pub(crate) fn identity(&self) -> (&str, &str) {
        (self.name, &self.ip)
    }

    /// The Endpoint object to write.
    pub(crate) fn to_endpoint(&self) -> Endpoint {
        Endpoint {
            addresses: vec![self.ip.to_string()],
            conditions: Some(EndpointConditions {
                ready: Some(self.ready),
                serving: Some(self.serving),
                terminating: Some(self.terminating),
            }),
            hostname: self.hostname.map(str::to_string),
            node_name: self.node.map(str::to_string),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".to_string()),
                namespace: self.pod.metadata.namespace.clone(),
                name: Some(self.name.to_string()),
                uid: self.pod.metadata.uid.clone(),
                ..ObjectReference::default()
            }),
            zone: self.zone.map(str::to_string),
            ..Endpoint::default()
        }
    }
}

/// The identity of an existing endpoint (see [`DesiredEndpoint::identity`]).
pub(crate) fn existing_identity(ep: &Endpoint) -> Option<(&str, &str)> {
    let name = ep.target_ref.as_ref()?.name.as_deref()?;
    let addr = ep.addresses.first()?;
    Some((name, addr.as_str()))
}
