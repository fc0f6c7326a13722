//! Where each LB node sends new connections, as a pure function of the configuration and the
//! targets' states: NLB's per-zone routing with cross-zone load balancing off or on, fail-open,
//! and which nodes DNS would return.
//!
//! Start at [`compute`]. Rules, per node and listener (target group `g`):
//! - *registered* targets are `initial`, `healthy` or `unhealthy` (never `draining` or
//!   `unused`: a draining target gets no new connections);
//! - the node's *scope* is the registered targets of its own zone (cross-zone off, NLB's
//!   default), or of every zone (cross-zone on, or a node without a zone);
//! - if no registered target of `g` is healthy in any zone, `g` fails open: the node routes to
//!   every target in its scope whatever its health (this also covers a new group whose targets
//!   are all still `initial`);
//! - otherwise the node routes to the healthy targets in its scope; if there are none (cross-
//!   zone off, the zone's targets all unhealthy) the node is `unhealthy`: AWS removes its
//!   address from DNS (while some of them are still `initial` the node waits for their
//!   verdict, so a zone whose checks conclude a moment later than another's does not blink out
//!   of DNS at start-up). Its data path keeps sending to its zone's registered targets (it has
//!   nowhere else to send; clients that still use a cached address see what those targets do).

use std::net::{Ipv4Addr, SocketAddrV4};

use serde::{Deserialize, Serialize};

use crate::config::BalancerConfig;
use crate::target::{TargetKey, TargetState};

/// One target as routing sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetView<'a> {
    pub group: &'a str,
    pub key: TargetKey,
    pub zone: &'a str,
    pub state: TargetState,
}

/// Whether DNS returns an LB node's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Healthy,
    Unhealthy,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Healthy => "healthy",
            NodeState::Unhealthy => "unhealthy",
        }
    }
}

/// Every node's routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    pub nodes: Vec<NodeRoute>,
}

/// One LB node: its state and its listeners' targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRoute {
    pub address: Ipv4Addr,
    pub zone: Option<String>,
    pub state: NodeState,
    /// Why it is unhealthy.
    pub reason: Option<String>,
    pub listeners: Vec<ListenerRoute>,
}

/// One listener on one node: the targets new connections are spread over (sorted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerRoute {
    pub port: u16,
    pub target_group: String,
    pub targets: Vec<SocketAddrV4>,
    /// Routing ignores health (no healthy target to choose from).
    pub fail_open: bool,
    /// Source NAT to the balancer (the group does not preserve client IPs).
    pub masquerade: bool,
}

impl Routes {
    /// The addresses DNS would answer with: the healthy nodes', or every node's when none is
    /// healthy (the load balancer fails open).
    pub fn dns(&self) -> Vec<Ipv4Addr> {
        let healthy: Vec<Ipv4Addr> = self
            .nodes
            .iter()
            .filter(|n| n.state == NodeState::Healthy)
            .map(|n| n.address)
            .collect();
        if healthy.is_empty() {
            self.nodes.iter().map(|n| n.address).collect()
        } else {
            healthy
        }
    }

    pub fn node(&self, address: Ipv4Addr) -> Option<&NodeRoute> {
        self.nodes.iter().find(|n| n.address == address)
    }
}

/// Routes of every node of `config` given the targets' states.
pub fn compute(config: &BalancerConfig, targets: &[TargetView<'_>]) -> Routes {
    let nodes = config
        .nodes
        .iter()
        .map(|node| {
            let mut reasons = Vec::new();
            let listeners = config
                .listeners
                .iter()
                .map(|l| {
                    let (route, reason) = listener_route(config, node.zone.as_deref(), l, targets);
                    reasons.extend(reason);
                    route
                })
                .collect();
            if let Some(z) = node.zone.as_deref().filter(|z| shifted(config, z)) {
                reasons.insert(0, format!("zonal shift away from zone {z}"));
            }
            NodeRoute {
                address: node.address,
                zone: node.zone.clone(),
                state: if reasons.is_empty() {
                    NodeState::Healthy
                } else {
                    NodeState::Unhealthy
                },
                reason: (!reasons.is_empty()).then(|| reasons.join("; ")),
                listeners,
            }
        })
        .collect();
    Routes { nodes }
}

fn listener_route(
    config: &BalancerConfig,
    zone: Option<&str>,
    listener: &crate::config::ListenerConfig,
    targets: &[TargetView<'_>],
) -> (ListenerRoute, Option<String>) {
    let group = listener.target_group.as_str();
    let registered: Vec<&TargetView<'_>> = targets
        .iter()
        .filter(|t| t.group == group)
        .filter(|t| {
            matches!(
                t.state,
                TargetState::Initial | TargetState::Healthy | TargetState::Unhealthy
            )
        })
        .collect();
    // A shifted zone's targets serve only its own LB node (out of DNS, for clients that still
    // hold its address, as ARC's shift only changes DNS); every other node avoids them.
    let in_scope = |t: &&&TargetView<'_>| {
        let own = zone == Some(t.zone);
        (config.cross_zone || zone.is_none() || own) && (own || !shifted(config, t.zone))
    };
    let scope: Vec<SocketAddrV4> = registered
        .iter()
        .filter(in_scope)
        .map(|t| t.key.addr())
        .collect();
    let healthy: Vec<SocketAddrV4> = registered
        .iter()
        .filter(in_scope)
        .filter(|t| t.state == TargetState::Healthy)
        .map(|t| t.key.addr())
        .collect();
    let group_has_healthy = registered.iter().any(|t| t.state == TargetState::Healthy);
    let where_ = zone.map_or_else(|| "any zone".to_string(), |z| format!("zone {z}"));
    let (mut chosen, fail_open, reason) = if !group_has_healthy {
        let reason = scope
            .is_empty()
            .then(|| format!("target group {group} has no registered target in {where_}"));
        (scope, true, reason)
    } else if healthy.is_empty() {
        let pending = registered
            .iter()
            .filter(in_scope)
            .any(|t| t.state == TargetState::Initial);
        let reason =
            (!pending).then(|| format!("target group {group} has no healthy target in {where_}"));
        (scope, true, reason)
    } else {
        (healthy, false, None)
    };
    chosen.sort();
    let masquerade = config
        .group(group)
        .is_some_and(|g| !g.preserves_client_ip());
    let route = ListenerRoute {
        port: listener.port,
        target_group: group.to_string(),
        targets: chosen,
        fail_open,
        masquerade,
    };
    (route, reason)
}

/// Whether `zone` is under a zonal shift.
fn shifted(config: &BalancerConfig, zone: &str) -> bool {
    config.zonal_shift_away_from.iter().any(|z| z == zone)
}
