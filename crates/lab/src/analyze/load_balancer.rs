//! The Service load balancer's side of a run: its health-check settings, every target state
//! change, when the failed nodes' targets were all out of rotation (`lb_targets_unhealthy_s`),
//! and the breakdown by client kind.
//!
//! Start at [`compute`]; the records are the balancer's status lines as the run turned them
//! into timeline events ([`EventKind::LbTarget`], [`EventKind::LoadBalancer`]).

use std::collections::{BTreeMap, BTreeSet};

use super::{Meta, PrimaryFault, round3, traffic};
use crate::report::{HealthCheck, LbTransition, LoadBalancer, MAX_LB_TRANSITIONS, ZoneReport};
use crate::timeline::{Event, EventKind, Request};

/// What [`compute`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Computed {
    pub report: Option<LoadBalancer>,
    /// When every target on a failed node was out of rotation (ms since the epoch).
    pub targets_unhealthy_ms: Option<f64>,
}

/// States in which a target gets no new connection while others are healthy.
fn out_of_rotation(state: &str) -> bool {
    matches!(state, "unhealthy" | "draining" | "unused")
}

/// The load balancer of the run from the sorted `events` (the first one configured, if
/// several).
pub fn compute(meta: &Meta, events: &[Event], fault: Option<&PrimaryFault>) -> Computed {
    let Some(setup) = events.iter().find_map(|e| match &e.kind {
        EventKind::LoadBalancer(s) => Some(s),
        _ => None,
    }) else {
        return Computed::default();
    };
    let rel = |ms: f64| round3((ms - meta.t0_ms) / 1e3);
    let changes: Vec<(f64, &str, &str, Option<&str>, &str)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::LbTarget {
                service,
                target,
                zone,
                node,
                to,
                ..
            } if *service == setup.service => Some((
                e.at,
                target.as_str(),
                zone.as_str(),
                node.as_deref(),
                to.as_str(),
            )),
            _ => None,
        })
        .collect();
    let mut final_states = BTreeMap::new();
    for (_, target, _, _, to) in &changes {
        final_states.insert(target.to_string(), to.to_string());
    }
    let transitions = changes
        .iter()
        .take(MAX_LB_TRANSITIONS)
        .map(|(at, target, zone, _, to)| LbTransition {
            t_s: rel(*at),
            target: target.to_string(),
            zone: zone.to_string(),
            to: to.to_string(),
        })
        .collect();
    Computed {
        targets_unhealthy_ms: fault.and_then(|f| dead_targets_out(meta, &changes, f)),
        report: Some(LoadBalancer {
            service: setup.service.clone(),
            name: setup.name.clone(),
            health_check: HealthCheck {
                interval_s: setup.interval_s,
                timeout_s: setup.timeout_s,
                healthy_threshold: setup.healthy_threshold,
                unhealthy_threshold: setup.unhealthy_threshold,
            },
            cross_zone: setup.cross_zone,
            nodes: setup.nodes.clone(),
            transitions,
            final_states,
        }),
    }
}

/// The first moment from the fault on at which every target on a failed node (by its node; a
/// target without one by its zone, when the fault took every node of that zone) was out of
/// rotation; `None` when no target was on a failed node or they never all were.
fn dead_targets_out(
    meta: &Meta,
    changes: &[(f64, &str, &str, Option<&str>, &str)],
    fault: &PrimaryFault,
) -> Option<f64> {
    let dead_zones: BTreeSet<&str> = meta
        .node_zones
        .values()
        .map(String::as_str)
        .filter(|z| {
            meta.node_zones
                .iter()
                .filter(|(_, nz)| nz.as_str() == *z)
                .all(|(n, _)| fault.nodes.contains(n))
        })
        .collect();
    let dead: BTreeSet<&str> = changes
        .iter()
        .filter(|(_, _, zone, node, _)| match node {
            Some(n) => fault.nodes.contains(*n),
            None => dead_zones.contains(zone),
        })
        .map(|(_, target, ..)| *target)
        .collect();
    if dead.is_empty() {
        return None;
    }
    let mut state: BTreeMap<&str, &str> = BTreeMap::new();
    let all_out = |state: &BTreeMap<&str, &str>| {
        dead.iter()
            .all(|t| state.get(t).is_some_and(|s| out_of_rotation(s)))
    };
    let mut checked_at_fault = false;
    for (at, target, _, _, to) in changes {
        if *at >= fault.at_ms && !checked_at_fault {
            checked_at_fault = true;
            if all_out(&state) {
                return Some(fault.at_ms);
            }
        }
        state.insert(target, to);
        if *at >= fault.at_ms && all_out(&state) {
            return Some(*at);
        }
    }
    None
}

/// The `per_zone` fields per client kind (`clusterip`, `external`); `requests` sorted by start.
pub fn per_client_kind(
    requests: &[&Request],
    fault: Option<&PrimaryFault>,
) -> BTreeMap<String, ZoneReport> {
    let mut kinds: BTreeMap<&str, Vec<&Request>> = BTreeMap::new();
    for r in requests {
        kinds.entry(r.client_kind.as_str()).or_default().push(r);
    }
    kinds
        .into_iter()
        .map(|(kind, rs)| (kind.to_string(), traffic::breakdown(&rs, fault)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use crate::timeline::{ConnKind, LoadBalancerSetup, Outcome};

    const T0: f64 = 1_000_000.0;

    fn at(s: f64) -> f64 {
        T0 + s * 1e3
    }

    fn setup() -> Event {
        Event {
            at: at(0.0),
            kind: EventKind::LoadBalancer(LoadBalancerSetup {
                service: "default/web".into(),
                name: "k8s-abc1234".into(),
                cross_zone: false,
                interval_s: 1.0,
                timeout_s: 1.0,
                healthy_threshold: 3,
                unhealthy_threshold: 3,
                nodes: [("a", "172.20.251.16"), ("b", "172.20.251.17")]
                    .iter()
                    .map(|(z, a)| (z.to_string(), a.to_string()))
                    .collect(),
            }),
        }
    }

    fn target(s: f64, node: &str, to: &str) -> Event {
        let ip = match node {
            "a-1" => "172.20.1.11",
            "a-2" => "172.20.1.12",
            _ => "172.20.2.11",
        };
        Event {
            at: at(s),
            kind: EventKind::LbTarget {
                service: "default/web".into(),
                target: format!("{ip}:30080"),
                zone: node[..1].into(),
                node: Some(node.into()),
                to: to.into(),
                reason: None,
            },
        }
    }

    fn zone_a_down(s: f64) -> PrimaryFault {
        PrimaryFault {
            at_ms: at(s),
            kind: "zone-power-off".into(),
            nodes: ["a-1", "a-2"].iter().map(|n| n.to_string()).collect(),
            next_fault_ms: None,
        }
    }

    #[test]
    fn the_phase_is_when_the_last_dead_target_left_rotation() {
        let meta = fixtures::meta("lb", T0, 60.0);
        let events = vec![
            setup(),
            target(1.0, "a-1", "healthy"),
            target(1.0, "a-2", "healthy"),
            target(1.0, "b-1", "healthy"),
            target(13.2, "a-1", "unhealthy"),
            target(13.9, "a-2", "unhealthy"),
        ];
        let c = compute(&meta, &events, Some(&zone_a_down(10.0)));
        assert_eq!(c.targets_unhealthy_ms, Some(at(13.9)));
        let r = c.report.expect("a load balancer");
        assert_eq!(r.health_check.unhealthy_threshold, 3);
        assert_eq!(r.transitions.len(), 5);
        assert_eq!(r.transitions[3].t_s, 13.2);
        assert_eq!(r.final_states["172.20.2.11:30080"], "healthy");
        assert_eq!(r.final_states["172.20.1.12:30080"], "unhealthy");
    }

    #[test]
    fn no_phase_while_a_dead_target_is_still_in_rotation_or_without_dead_targets() {
        let meta = fixtures::meta("lb", T0, 60.0);
        let events = vec![
            setup(),
            target(1.0, "a-1", "healthy"),
            target(1.0, "a-2", "healthy"),
            target(13.2, "a-1", "unhealthy"),
        ];
        let c = compute(&meta, &events, Some(&zone_a_down(10.0)));
        assert_eq!(c.targets_unhealthy_ms, None);
        // A fault on a node that holds no target: nothing to wait for.
        let mut other = zone_a_down(10.0);
        other.nodes = ["c-1".to_string()].into();
        assert_eq!(
            compute(&meta, &events, Some(&other)).targets_unhealthy_ms,
            None
        );
        // No load balancer at all: no section.
        assert_eq!(compute(&meta, &events[1..], None), Computed::default());
    }

    #[test]
    fn client_kinds_are_counted_apart() {
        let mk = |kind: &str, ok: bool| Request {
            client: kind.into(),
            client_zone: "b".into(),
            client_node: "b-1".into(),
            client_kind: kind.into(),
            service: "default/web".into(),
            start: at(1.0),
            end: at(1.1),
            outcome: if ok { Outcome::Ok } else { Outcome::Timeout },
            conn: ConnKind::New,
            conn_opened: at(1.0),
            local_port: 0,
            connected: ok,
            pod: None,
            node: None,
            zone: None,
        };
        let reqs = [
            mk("external", true),
            mk("external", false),
            mk("clusterip", true),
        ];
        let refs: Vec<&Request> = reqs.iter().collect();
        let by = per_client_kind(&refs, None);
        assert_eq!(by["external"].requests, 2);
        assert_eq!(by["external"].failed, 1);
        assert_eq!(by["external"].availability, 50.0);
        assert_eq!(by["clusterip"].availability, 100.0);
    }
}
