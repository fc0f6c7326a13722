//! The desired balancer of one Service, as the `lb` crate's own [`BalancerConfig`]: a listener
//! and a target group per Service port, instance targets (every eligible node's InternalIP +
//! the port's NodePort) or ip targets (ready endpoints of the Service's EndpointSlices), one LB
//! node per zone that has nodes.
//!
//! Start at [`build`]; node eligibility is [`node_is_eligible`], zones [`zones`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Node, Service, ServicePort};
use lb::config::{
    BalancerConfig, ListenerConfig, NodeConfig, Protocol, TargetConfig, TargetGroupConfig,
    TargetType,
};

use super::annotations::{BuildError, Template};
use crate::{Cache, Key};
use runtime::labels::node_zone;

/// Node labels that keep a node out of every load balancer (LBC
/// `defaultTrafficProxyNodeLabelSelector`, pkg/backend/endpoint_utils.go; the first is the
/// upstream well-known label the service controller honours too).
pub const EXCLUDE_LABELS: &[&str] = &[
    "node.kubernetes.io/exclude-from-external-load-balancers",
    "alpha.service-controller.kubernetes.io/exclude-balancer",
    "node-role.kubernetes.io/master",
];
/// Fargate "nodes" cannot be instance targets (LBC: `eks.amazonaws.com/compute-type NotIn
/// (fargate)`).
pub const COMPUTE_TYPE_LABEL: &str = "eks.amazonaws.com/compute-type";
/// The cluster autoscaler's taint on a node it is about to delete (LBC
/// `IsNodeSuitableAsTrafficProxy`).
pub const TO_BE_DELETED_TAINT: &str = "ToBeDeletedByClusterAutoscaler";

/// LBC's instance-target eligibility (`defaultTrafficProxyNodeLabelSelector` plus
/// `IsNodeSuitableAsTrafficProxy`). Unready and cordoned nodes stay registered and the target
/// group's health check decides: current LBC no longer filters on Ready or `unschedulable`
/// (its first releases did), and upstream's service controller stopped dropping NotReady
/// nodes too (KEP-3458, `StableLoadBalancerNodeSet`).
pub fn node_is_eligible(node: &Node) -> bool {
    let labels = node.metadata.labels.as_ref();
    let has = |l: &str| labels.is_some_and(|ls| ls.contains_key(l));
    if EXCLUDE_LABELS.iter().any(|l| has(l)) {
        return false;
    }
    if labels
        .and_then(|ls| ls.get(COMPUTE_TYPE_LABEL))
        .map(String::as_str)
        == Some("fargate")
    {
        return false;
    }
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_ref());
    !taints.is_some_and(|ts| ts.iter().any(|t| t.key == TO_BE_DELETED_TAINT))
}

/// A node's first `InternalIP` (IPv4).
pub fn internal_ip(node: &Node) -> Option<Ipv4Addr> {
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .filter(|a| a.type_ == "InternalIP")
        .find_map(|a| a.address.parse().ok())
}

/// Zones with at least one node (any state): where the balancer has an LB node. A zone whose
/// nodes are all powered off keeps its LB node (its targets fail their checks); a zone with no
/// Node objects gets none.
pub fn zones(cache: &Cache) -> BTreeSet<String> {
    cache
        .nodes
        .values()
        .filter_map(|n| node_zone(n).map(str::to_string))
        .collect()
}

/// The balancer's name: `k8s-` and 7 hex digits of SHA-256 of `namespace/name` (the balancer
/// allows 11 characters; LBC's `k8s-<ns>-<name>-<hash>` does not fit).
pub fn balancer_name(key: &Key) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{}/{}", key.namespace, key.name).as_bytes());
    let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("k8s-{}", &hex[..7])
}

fn instance_targets(cache: &Cache, node_port: u16) -> Vec<TargetConfig> {
    cache
        .nodes
        .values()
        .filter(|n| node_is_eligible(n))
        .filter_map(|n| {
            Some(TargetConfig {
                ip: internal_ip(n)?,
                port: node_port,
                zone: node_zone(n)?.to_string(),
            })
        })
        .collect()
}

/// Ready IPv4 endpoints for the Service port `sp` (slice ports match by name, as kube-proxy
/// does), with the endpoint's zone (or its node's).
fn ip_targets(cache: &Cache, key: &Key, sp: &ServicePort) -> Vec<TargetConfig> {
    let mut out = BTreeSet::new();
    for slice in cache.slices_of(key) {
        if slice.address_type != "IPv4" {
            continue;
        }
        let Some(port) = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == sp.name.as_deref().unwrap_or("")
                && p.protocol.as_deref().unwrap_or("TCP") == "TCP"
        }) else {
            continue;
        };
        let Some(port) = port.port.and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        for ep in &slice.endpoints {
            if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            let zone = ep.zone.clone().or_else(|| {
                let node = ep.node_name.as_deref()?;
                cache.zone_of(node).map(str::to_string)
            });
            let Some(zone) = zone else { continue };
            for addr in &ep.addresses {
                if let Ok(ip) = addr.parse() {
                    out.insert(TargetConfig {
                        ip,
                        port,
                        zone: zone.clone(),
                    });
                }
            }
        }
    }
    out.into_iter().collect()
}

/// The target group name of a Service port: `port-<port>`.
pub fn group_name(port: i32) -> String {
    format!("port-{port}")
}

/// The balancer for `svc`: its listeners, target groups and targets, on the LB nodes
/// `addresses` (zone → address). Errors are LBC's `FailedBuildModel` causes.
pub fn build(
    cache: &Cache,
    svc: &Service,
    tmpl: &Template,
    addresses: &BTreeMap<String, Ipv4Addr>,
) -> Result<BalancerConfig, BuildError> {
    let key = Key::of(&svc.metadata);
    let ports = svc.spec.as_ref().and_then(|s| s.ports.as_ref());
    let mut listeners = Vec::new();
    let mut target_groups = Vec::new();
    for sp in ports.into_iter().flatten() {
        let protocol = sp.protocol.as_deref().unwrap_or("TCP");
        if protocol != "TCP" {
            return Err(BuildError::Protocol {
                port: sp.port,
                protocol: protocol.to_string(),
            });
        }
        let targets = match tmpl.target_type {
            TargetType::Instance => {
                let node_port = sp.node_port.and_then(|p| u16::try_from(p).ok());
                let node_port = node_port.filter(|p| *p != 0);
                instance_targets(cache, node_port.ok_or(BuildError::UnallocatedNodePort)?)
            }
            TargetType::Ip => ip_targets(cache, &key, sp),
        };
        let name = group_name(sp.port);
        listeners.push(ListenerConfig {
            port: u16::try_from(sp.port).unwrap_or(0),
            protocol: Protocol::Tcp,
            target_group: name.clone(),
        });
        target_groups.push(TargetGroupConfig {
            name,
            target_type: tmpl.target_type,
            preserve_client_ip: tmpl.preserve_client_ip,
            health_check: tmpl.health_check.clone(),
            deregistration_delay: tmpl
                .deregistration_delay
                .unwrap_or(lb::config::DEFAULT_DEREGISTRATION_DELAY),
            targets,
        });
    }
    Ok(BalancerConfig {
        name: balancer_name(&key),
        cross_zone: tmpl.cross_zone,
        nodes: addresses
            .iter()
            .map(|(zone, address)| NodeConfig {
                zone: Some(zone.clone()),
                address: *address,
            })
            .collect(),
        listeners,
        target_groups,
        zonal_shift_away_from: zonal_shifts(cache, addresses),
    })
}

/// Zones with an active zonal shift that have an LB node (`crate::zonalshift`).
fn zonal_shifts(cache: &Cache, addresses: &BTreeMap<String, Ipv4Addr>) -> Vec<String> {
    crate::zonalshift::shifted_zones(cache)
        .into_iter()
        .filter(|z| addresses.contains_key(z))
        .collect()
}
