//! The EndpointSlice controller's topology cache for `service.kubernetes.io/topology-mode:
//! Auto`: each zone's share of the allocatable CPU of Ready nodes, and the zone hints last
//! allocated per Service (upstream `staging/src/k8s.io/endpointslice/topologycache`). Start at
//! [`TopologyCache`]; applying hints to slices is in `hints`.
//!
//! Nodes are kept one entry each, updated as node events arrive, so a change costs O(log N)
//! plus O(zones) to re-derive the ratios (upstream re-lists every node on a node add, delete,
//! Ready change or zone-label change; the result is the same). Zones iterate in name order,
//! where upstream iterates Go maps, so ties are broken by zone name.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Node;

use crate::cache::Key;
use crate::scheduler::parse_milli;

/// core/v1 `AnnotationTopologyMode`.
pub const TOPOLOGY_MODE_ANNOTATION: &str = "service.kubernetes.io/topology-mode";
/// core/v1 `DeprecatedAnnotationTopologyAwareHints`.
pub const DEPRECATED_TOPOLOGY_AWARE_HINTS_ANNOTATION: &str =
    "service.kubernetes.io/topology-aware-hints";

/// The controller's Event source (kube-controller-manager's EndpointSlice controller
/// recorder: `v1.EventSource{Component: "endpoint-slice-controller"}`).
pub(crate) const EVENT_SOURCE: &str = "endpoint-slice-controller";

/// Upstream `overloadThreshold`: the most any endpoint may be overloaded by the allocation
/// (20 %).
pub(crate) const OVERLOAD_THRESHOLD: f64 = 0.2;

/// Upstream's event messages (topologycache/event.go).
pub(crate) mod msg {
    pub const NO_ZONE_SPECIFIED: &str = "One or more endpoints do not have a zone specified";
    pub const NO_ALLOCATED_HINTS_FOR_ZONES: &str = "No hints allocated for zones";
    pub const ENABLED: &str = "Topology Aware Hints has been enabled";
    pub const DISABLED: &str = "Topology Aware Hints has been disabled";
    pub const INSUFFICIENT_NODE_INFO: &str =
        "Insufficient Node information: allocatable CPU or zone not specified on one or more nodes";
    pub const NODES_READY_IN_ONE_ZONE_ONLY: &str = "Nodes only ready in one zone";
    pub const INSUFFICIENT_NUMBER_OF_ENDPOINTS: &str = "Insufficient number of endpoints";
    pub const MIN_ALLOCATION_EXCEEDS_OVERLOAD_THRESHOLD: &str = "Unable to allocate minimum required endpoints to each zone without exceeding overload threshold";
}

/// Labels whose presence keeps a node out of the capacity count (upstream
/// `hasExcludedLabels`).
const EXCLUDED_LABELS: [&str; 2] = [
    "node-role.kubernetes.io/control-plane",
    "node-role.kubernetes.io/master",
];

/// What one node contributes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NodeInfo {
    /// Excluded by label, or not Ready: ignored.
    Ignored,
    /// Ready but without a zone label or allocatable CPU: hints are off cluster-wide.
    Insufficient,
    /// Ready with `milli` allocatable CPU in `zone`.
    Capacity { zone: String, milli: i64 },
}

fn node_info(node: &Node) -> NodeInfo {
    let labels = node.metadata.labels.as_ref();
    if labels.is_some_and(|l| EXCLUDED_LABELS.iter().any(|x| l.contains_key(*x))) {
        return NodeInfo::Ignored;
    }
    if !runtime::labels::node_is_ready(node) {
        return NodeInfo::Ignored;
    }
    let zone = labels
        .and_then(|l| l.get(crate::ZONE_LABEL))
        .filter(|z| !z.is_empty());
    let milli = node
        .status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref())
        .and_then(|a| a.get("cpu"))
        .and_then(|q| parse_milli(&q.0))
        .map_or(0, |m| m.clamp(0, i64::MAX as i128) as i64);
    match zone {
        Some(zone) if milli > 0 => NodeInfo::Capacity {
            zone: zone.clone(),
            milli,
        },
        _ => NodeInfo::Insufficient,
    }
}

/// How many endpoints a zone should get (upstream `allocation`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Allocation {
    pub minimum: usize,
    pub maximum: usize,
    pub desired: f64,
}

/// An Event the controller records on the Service: type Warning unless `normal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HintEvent {
    pub normal: bool,
    pub reason: &'static str,
    pub message: String,
}

impl HintEvent {
    pub fn disabled(message: String) -> HintEvent {
        HintEvent {
            normal: false,
            reason: "TopologyAwareHintsDisabled",
            message,
        }
    }
}

/// Upstream `FormatWithAddressType`.
pub(crate) fn with_address_type(s: &str) -> String {
    format!("{s}, addressType: {}", super::ADDRESS_TYPE)
}

/// Endpoints allocated per zone for one Service (upstream `EndpointZoneInfo`).
pub(crate) type ZoneCounts = BTreeMap<String, usize>;

/// The topology cache (upstream `TopologyCache`); see the module docs.
#[derive(Debug, Default)]
pub(crate) struct TopologyCache {
    nodes: BTreeMap<String, NodeInfo>,
    /// Allocatable CPU per zone over `Capacity` nodes.
    cpu_by_zone: BTreeMap<String, i64>,
    /// Nodes in the `Insufficient` state.
    insufficient: usize,
    /// Hints last allocated per Service (upstream `endpointsByService`, IPv4 only).
    endpoints_by_service: BTreeMap<Key, ZoneCounts>,
    /// Services whose slices carry hints from this cache (upstream `hintsPopulatedByService`).
    populated: BTreeSet<Key>,
}

impl TopologyCache {
    /// A node was added or changed (`Some`) or deleted (`None`). True if its contribution
    /// changed (the caller then re-queues overloaded Services, as upstream's
    /// `checkNodeTopologyDistribution`).
    pub fn set_node(&mut self, name: &str, node: Option<&Node>) -> bool {
        let new = node.map_or(NodeInfo::Ignored, node_info);
        let old = self.nodes.get(name).cloned().unwrap_or(NodeInfo::Ignored);
        if old == new {
            return false;
        }
        self.account(&old, -1);
        self.account(&new, 1);
        if new == NodeInfo::Ignored {
            self.nodes.remove(name);
        } else {
            self.nodes.insert(name.to_string(), new);
        }
        true
    }

    fn account(&mut self, info: &NodeInfo, sign: i64) {
        match info {
            NodeInfo::Ignored => {}
            NodeInfo::Insufficient => {
                self.insufficient = self.insufficient.saturating_add_signed(sign as isize);
            }
            NodeInfo::Capacity { zone, milli } => {
                let sum = self.cpu_by_zone.entry(zone.clone()).or_default();
                *sum += sign * milli;
                if *sum <= 0 {
                    self.cpu_by_zone.remove(zone);
                }
            }
        }
    }

    /// Each zone's share of the allocatable CPU, or `None` when node information is
    /// insufficient: some Ready node lacks a zone or CPU, no CPU at all, or fewer than two
    /// zones (upstream `SetNodes` then clears `cpuRatiosByZone`).
    pub fn cpu_ratios(&self) -> Option<BTreeMap<String, f64>> {
        let total: i64 = self.cpu_by_zone.values().sum();
        if self.insufficient > 0 || total <= 0 || self.cpu_by_zone.len() < 2 {
            return None;
        }
        Some(
            self.cpu_by_zone
                .iter()
                .map(|(z, c)| (z.clone(), *c as f64 / total as f64))
                .collect(),
        )
    }

    /// Minimum and maximum endpoints per zone for `n` ready endpoints, or the Event saying
    /// why hints cannot be allocated (upstream `getAllocations`).
    pub fn allocations(&self, n: usize) -> Result<BTreeMap<String, Allocation>, HintEvent> {
        let Some(ratios) = self.cpu_ratios() else {
            return Err(HintEvent::disabled(msg::INSUFFICIENT_NODE_INFO.to_string()));
        };
        if ratios.len() < 2 {
            return Err(HintEvent::disabled(
                msg::NODES_READY_IN_ONE_ZONE_ONLY.to_string(),
            ));
        }
        let zones = ratios.len();
        if zones > n {
            return Err(HintEvent::disabled(format!(
                "{} ({n} endpoints, {zones} zones)",
                msg::INSUFFICIENT_NUMBER_OF_ENDPOINTS
            )));
        }
        let mut remaining = n as i64;
        let mut min_total = 0;
        let mut out = BTreeMap::new();
        for (zone, ratio) in ratios {
            let desired = ratio * n as f64;
            let minimum = (desired * (1.0 / (1.0 + OVERLOAD_THRESHOLD))).ceil() as usize;
            out.insert(
                zone,
                Allocation {
                    minimum,
                    maximum: 0,
                    desired: desired.max(minimum as f64),
                },
            );
            min_total += minimum;
            remaining -= minimum as i64;
            if remaining < 0 {
                return Err(HintEvent::disabled(format!(
                    "{} ({n} endpoints, {zones} zones)",
                    msg::MIN_ALLOCATION_EXCEEDS_OVERLOAD_THRESHOLD
                )));
            }
        }
        for a in out.values_mut() {
            a.maximum = a.minimum + n - min_total;
        }
        Ok(out)
    }

    /// Services with hints from this cache that some zone would now overload (upstream
    /// `GetOverloadedServices`), in key order.
    pub fn overloaded_services(&self) -> Vec<Key> {
        let ratios = self.cpu_ratios().unwrap_or_default();
        self.endpoints_by_service
            .iter()
            .filter(|(_, counts)| service_overloaded(counts, &ratios))
            .map(|(k, _)| k.clone())
            .collect()
    }

    pub fn has_populated_hints(&self, key: &Key) -> bool {
        self.populated.contains(key)
    }

    /// Record the hints allocated for `key` (upstream `SetHints`).
    pub fn set_hints(&mut self, key: &Key, counts: ZoneCounts) {
        self.endpoints_by_service.insert(key.clone(), counts);
        self.populated.insert(key.clone());
    }

    /// Forget `key`'s hints (upstream `RemoveHints`).
    pub fn remove_hints(&mut self, key: &Key) {
        self.endpoints_by_service.remove(key);
        self.populated.remove(key);
    }
}

/// True if a zone has fewer of the Service's endpoints than its CPU share less the
/// overload threshold allows, or none (upstream `serviceOverloaded`).
pub(crate) fn service_overloaded(counts: &ZoneCounts, ratios: &BTreeMap<String, f64>) -> bool {
    if counts.is_empty() {
        return false;
    }
    if ratios.is_empty() {
        return true;
    }
    let total: usize = counts.values().sum();
    ratios.iter().any(|(zone, ratio)| match counts.get(zone) {
        None => true,
        Some(&have) => {
            let min = (total as f64 * ratio * (1.0 / (1.0 + OVERLOAD_THRESHOLD))).ceil();
            (have as f64) < min
        }
    })
}

/// `service.kubernetes.io/topology-aware-hints` (deprecated; wins when both are set) or
/// `service.kubernetes.io/topology-mode` is `Auto` or `auto` (upstream `hintsEnabled`).
pub(crate) fn hints_enabled(annotations: Option<&BTreeMap<String, String>>) -> bool {
    let Some(a) = annotations else { return false };
    let value = a
        .get(DEPRECATED_TOPOLOGY_AWARE_HINTS_ANNOTATION)
        .or_else(|| a.get(TOPOLOGY_MODE_ANNOTATION));
    matches!(value.map(String::as_str), Some("Auto" | "auto"))
}
