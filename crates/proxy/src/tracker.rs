//! Tracks Services and EndpointSlices and merges endpoints per service port with upstream
//! kube-proxy's parsing rules (endpointslicecache.go), recording what changed since the last
//! sync. Start at [`Tracker`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::model::{
    Endpoint, Moment, Protocol, ServiceKey, ServicePort, ServicePortName, service_ports,
};

/// Label naming a slice's Service; slices without it are ignored (upstream
/// endpointslicecache.go `newEndpointSliceInfo` requires `discovery.LabelServiceName`), and the
/// annotation with the time of the change that triggered the slice write: the runtime crate's.
pub use runtime::labels::{SERVICE_NAME_LABEL, TRIGGER_TIME_ANNOTATION};

/// One slice, parsed: its ports (name, protocol, number) and endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ParsedSlice {
    ports: Vec<(String, Protocol, u16)>,
    endpoints: Vec<SliceEndpoint>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SliceEndpoint {
    ip: Ipv4Addr,
    ready: bool,
    serving: bool,
    terminating: bool,
    node_name: Option<Arc<str>>,
    zone: Option<Arc<str>>,
    zone_hints: Option<Arc<[Arc<str>]>>,
}

/// Merged endpoints of one Service per (port name, protocol).
type PortEndpoints = BTreeMap<(String, Protocol), Vec<Endpoint>>;

/// What changed since the last [`Tracker::take_changes`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Services whose ports or endpoints changed.
    pub services: BTreeSet<ServiceKey>,
    /// `last-change-trigger-time` of every slice write seen, for the programming-latency metric.
    pub trigger_times: Vec<Moment>,
    /// Number of Service and EndpointSlice events that changed something.
    pub service_events: u64,
    pub slice_events: u64,
}

/// Services and EndpointSlices as the proxy sees them.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    services: BTreeMap<ServiceKey, Vec<ServicePort>>,
    slices: BTreeMap<ServiceKey, BTreeMap<String, ParsedSlice>>,
    endpoints: BTreeMap<ServiceKey, PortEndpoints>,
    changes: Changes,
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<ServiceKey> {
    Some(ServiceKey::new(
        meta.namespace.as_deref().unwrap_or("default"),
        meta.name.as_deref()?,
    ))
}

impl Tracker {
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// A Service was added or updated.
    pub fn apply_service(&mut self, svc: &Service) {
        let Some(key) = key_of(&svc.metadata) else {
            return;
        };
        let ports = service_ports(svc);
        if self.services.get(&key) == Some(&ports) {
            return;
        }
        if ports.is_empty() {
            self.services.remove(&key);
        } else {
            self.services.insert(key.clone(), ports);
        }
        self.changes.service_events += 1;
        self.changes.services.insert(key);
    }

    /// A Service was deleted.
    pub fn delete_service(&mut self, svc: &Service) {
        let Some(key) = key_of(&svc.metadata) else {
            return;
        };
        if self.services.remove(&key).is_some() {
            self.changes.service_events += 1;
            self.changes.services.insert(key);
        }
    }

    /// An EndpointSlice was added or updated.
    pub fn apply_slice(&mut self, slice: &EndpointSlice) {
        let Some((svc, slice_name)) = slice_owner(slice) else {
            return;
        };
        if let Some(t) = trigger_time(slice) {
            self.changes.trigger_times.push(t);
        }
        let parsed = parse_slice(slice);
        let slices = self.slices.entry(svc.clone()).or_default();
        if slices.get(&slice_name) == Some(&parsed) {
            return;
        }
        slices.insert(slice_name, parsed);
        self.remerge(&svc);
    }

    /// An EndpointSlice was deleted.
    pub fn delete_slice(&mut self, slice: &EndpointSlice) {
        let Some((svc, slice_name)) = slice_owner(slice) else {
            return;
        };
        let Some(slices) = self.slices.get_mut(&svc) else {
            return;
        };
        if slices.remove(&slice_name).is_none() {
            return;
        }
        if slices.is_empty() {
            self.slices.remove(&svc);
        }
        self.remerge(&svc);
    }

    fn remerge(&mut self, svc: &ServiceKey) {
        let merged = self.slices.get(svc).map(merge_slices).unwrap_or_default();
        let unchanged = match self.endpoints.get(svc) {
            Some(old) => *old == merged,
            None => merged.is_empty(),
        };
        if unchanged {
            return;
        }
        if merged.is_empty() {
            self.endpoints.remove(svc);
        } else {
            self.endpoints.insert(svc.clone(), merged);
        }
        self.changes.slice_events += 1;
        self.changes.services.insert(svc.clone());
    }

    /// Returns and clears what changed since the last call.
    pub fn take_changes(&mut self) -> Changes {
        std::mem::take(&mut self.changes)
    }

    /// True if something changed since the last [`Tracker::take_changes`].
    pub fn has_changes(&self) -> bool {
        !self.changes.services.is_empty()
    }

    /// All tracked Services with their ports, in key order.
    pub fn services(&self) -> impl Iterator<Item = (&ServiceKey, &Vec<ServicePort>)> {
        self.services.iter()
    }

    /// The ports of one Service (empty if unknown).
    pub fn ports_of(&self, svc: &ServiceKey) -> &[ServicePort] {
        self.services.get(svc).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Merged endpoints of one service port, in slice order (the plan sorts them).
    pub fn endpoints_of(&self, port: &ServicePortName) -> &[Endpoint] {
        self.endpoints
            .get(&port.service)
            .and_then(|m| m.get(&(port.port.clone(), port.protocol)))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Number of Services tracked.
    pub fn service_count(&self) -> usize {
        self.services.len()
    }
}

fn slice_owner(slice: &EndpointSlice) -> Option<(ServiceKey, String)> {
    let svc_name = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    let ns = slice.metadata.namespace.as_deref().unwrap_or("default");
    Some((ServiceKey::new(ns, svc_name), slice.metadata.name.clone()?))
}

fn trigger_time(slice: &EndpointSlice) -> Option<Moment> {
    let raw = slice
        .metadata
        .annotations
        .as_ref()?
        .get(TRIGGER_TIME_ANNOTATION)?;
    let ts: k8s_openapi::jiff::Timestamp = raw.parse().ok()?;
    Some(Moment::from_millis(ts.as_millisecond()))
}

/// Parses a slice with upstream's rules: IPv4 slices only; ready nil = true, serving nil =
/// true, terminating nil = false; only `addresses[0]`; ports without a number are skipped.
fn parse_slice(slice: &EndpointSlice) -> ParsedSlice {
    if slice.address_type != "IPv4" {
        return ParsedSlice {
            ports: Vec::new(),
            endpoints: Vec::new(),
        };
    }
    let ports = slice
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            let protocol = Protocol::from_k8s(p.protocol.as_deref())?;
            let port = u16::try_from(p.port?).ok()?;
            Some((p.name.clone().unwrap_or_default(), protocol, port))
        })
        .collect();
    let endpoints = slice
        .endpoints
        .iter()
        .filter_map(|e| {
            let ip = e.addresses.first()?.parse::<Ipv4Addr>().ok()?;
            let c = e.conditions.as_ref();
            Some(SliceEndpoint {
                ip,
                ready: c.and_then(|c| c.ready).unwrap_or(true),
                serving: c.and_then(|c| c.serving).unwrap_or(true),
                terminating: c.and_then(|c| c.terminating).unwrap_or(false),
                node_name: e.node_name.as_deref().map(Arc::from),
                zone: e.zone.as_deref().map(Arc::from),
                zone_hints: zone_hints(e),
            })
        })
        .collect();
    ParsedSlice { ports, endpoints }
}

/// An endpoint's `hints.forZones` names (upstream `newEndpointInfo` keeps them as a set);
/// `None` when there are none.
fn zone_hints(e: &k8s_openapi::api::discovery::v1::Endpoint) -> Option<Arc<[Arc<str>]>> {
    let zones = e.hints.as_ref()?.for_zones.as_ref()?;
    let mut names: Vec<Arc<str>> = zones.iter().map(|z| Arc::from(z.name.as_str())).collect();
    names.sort();
    names.dedup();
    (!names.is_empty()).then(|| names.into())
}

/// Merges a Service's slices into endpoints per service port; the same `IP:port` from two
/// slices keeps the non-terminating one.
fn merge_slices(slices: &BTreeMap<String, ParsedSlice>) -> PortEndpoints {
    let mut by_port: BTreeMap<(String, Protocol), BTreeMap<(Ipv4Addr, u16), Endpoint>> =
        BTreeMap::new();
    for slice in slices.values() {
        for (name, protocol, port) in &slice.ports {
            let set = by_port.entry((name.clone(), *protocol)).or_default();
            for e in &slice.endpoints {
                let ep = Endpoint {
                    ip: e.ip,
                    port: *port,
                    ready: e.ready,
                    serving: e.serving,
                    terminating: e.terminating,
                    node_name: e.node_name.clone(),
                    zone: e.zone.clone(),
                    zone_hints: e.zone_hints.clone(),
                };
                match set.get(&(e.ip, *port)) {
                    Some(existing) if !existing.terminating || ep.terminating => {}
                    _ => {
                        set.insert((e.ip, *port), ep);
                    }
                }
            }
        }
    }
    by_port
        .into_iter()
        .filter(|(_, eps)| !eps.is_empty())
        .map(|(key, eps)| (key, eps.into_values().collect()))
        .collect()
}
