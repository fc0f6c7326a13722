//! The cluster autoscaler's side of a run, from the timeline: the nodes the node groups added
//! (launch requested, Ready), failed launches, when autoscaling halted, and the phases
//! `scale_up_requested_s` and `nodes_provisioned_s`.
//!
//! Start at [`compute`].

use std::collections::BTreeMap;

use crate::report::{AutoscalerReport, LaunchFailed, NodeAdded};
use crate::timeline::{Event, EventKind};

/// The autoscaler's report and its two phases (ms since the epoch, before `rel`); `None` when
/// the run had no node groups (no cloud or autoscaler event on the timeline).
pub struct Computed {
    pub report: AutoscalerReport,
    pub scale_up_requested_ms: Option<f64>,
    pub nodes_provisioned_ms: Option<f64>,
}

/// One pass over the sorted timeline; `fault_ms` is the primary fault's time.
pub fn compute(
    events: &[Event],
    fault_ms: Option<f64>,
    rel: impl Fn(f64) -> f64,
) -> Option<Computed> {
    let mut seen = false;
    let mut launched: BTreeMap<&str, (f64, &str)> = BTreeMap::new();
    let mut running: Vec<&str> = Vec::new();
    let mut failed: Vec<LaunchFailed> = Vec::new();
    let mut ready: BTreeMap<&str, f64> = BTreeMap::new();
    let mut halts: Vec<(f64, bool)> = Vec::new();
    let mut scale_up_requested_ms = None;
    for e in events {
        match &e.kind {
            EventKind::CloudInstance {
                node, zone, state, ..
            } => {
                seen = true;
                match state.as_str() {
                    "launched" => {
                        launched.insert(node, (e.at, zone));
                    }
                    "running" => running.push(node),
                    "launch-failed" => failed.push(LaunchFailed {
                        name: node.clone(),
                        zone: zone.clone(),
                        requested_s: launched.get(node.as_str()).map(|l| rel(l.0)),
                        failed_s: rel(e.at),
                    }),
                    _ => {}
                }
            }
            EventKind::ScaleUpRequested { .. } => {
                seen = true;
                if scale_up_requested_ms.is_none() && fault_ms.is_none_or(|f| e.at >= f) {
                    scale_up_requested_ms = Some(e.at);
                }
            }
            EventKind::AutoscalerHalted { halted } => {
                seen = true;
                halts.push((e.at, *halted));
            }
            EventKind::NodeReady { node, ready: r } if r == "True" => {
                ready.entry(node.as_str()).or_insert(e.at);
            }
            _ => {}
        }
    }
    if !seen {
        return None;
    }
    let mut nodes_added = Vec::new();
    let mut provisioned: Option<f64> = None;
    let mut all_ready = true;
    for node in running {
        let Some(&(requested, zone)) = launched.get(node) else {
            continue;
        };
        let ready_ms = ready.get(node).copied().filter(|r| *r >= requested);
        if fault_ms.is_none_or(|f| requested >= f) {
            match ready_ms {
                Some(r) => provisioned = Some(provisioned.map_or(r, |p: f64| p.max(r))),
                None => all_ready = false,
            }
        }
        nodes_added.push(NodeAdded {
            name: node.to_string(),
            zone: zone.to_string(),
            requested_s: rel(requested),
            ready_s: ready_ms.map(&rel),
        });
    }
    let halted_s = halts.iter().find(|(_, h)| *h).map(|(at, _)| rel(*at));
    Some(Computed {
        report: AutoscalerReport {
            nodes_added,
            launches_failed: failed,
            halted_s,
        },
        scale_up_requested_ms,
        nodes_provisioned_ms: provisioned.filter(|_| all_ready),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(at: f64, kind: EventKind) -> Event {
        Event { at, kind }
    }

    fn inst(at: f64, node: &str, zone: &str, state: &str) -> Event {
        ev(
            at,
            EventKind::CloudInstance {
                group: format!("ng-{zone}"),
                node: node.into(),
                zone: zone.into(),
                state: state.into(),
            },
        )
    }

    fn ready(at: f64, node: &str) -> Event {
        ev(
            at,
            EventKind::NodeReady {
                node: node.into(),
                ready: "True".into(),
            },
        )
    }

    #[test]
    fn added_nodes_failed_launches_halt_and_phases() {
        let rel = |ms: f64| (ms - 1000.0) / 1e3;
        let events = vec![
            ready(500.0, "zl-a-1"),
            ev(
                30_000.0,
                EventKind::ScaleUpRequested {
                    group: "ng-a".into(),
                    delta: 1,
                },
            ),
            inst(30_100.0, "zl-a-2", "a", "launched"),
            inst(33_100.0, "zl-a-2", "a", "launch-failed"),
            ev(34_000.0, EventKind::AutoscalerHalted { halted: true }),
            ev(35_000.0, EventKind::AutoscalerHalted { halted: false }),
            ev(
                36_000.0,
                EventKind::ScaleUpRequested {
                    group: "ng-b".into(),
                    delta: 2,
                },
            ),
            inst(36_100.0, "zl-b-2", "b", "launched"),
            inst(36_100.0, "zl-b-3", "b", "launched"),
            inst(42_100.0, "zl-b-2", "b", "running"),
            inst(42_100.0, "zl-b-3", "b", "running"),
            ready(44_000.0, "zl-b-3"),
            ready(45_000.0, "zl-b-2"),
        ];
        let c = compute(&events, Some(10_000.0), rel).expect("node groups");
        assert_eq!(c.scale_up_requested_ms, Some(30_000.0));
        assert_eq!(c.nodes_provisioned_ms, Some(45_000.0));
        let r = &c.report;
        assert_eq!(r.halted_s, Some(33.0));
        assert_eq!(r.nodes_added.len(), 2);
        assert_eq!(r.nodes_added[0].name, "zl-b-2");
        assert_eq!(r.nodes_added[0].requested_s, 35.1);
        assert_eq!(r.nodes_added[0].ready_s, Some(44.0));
        assert_eq!(r.launches_failed.len(), 1);
        assert_eq!(r.launches_failed[0].zone, "a");
        assert_eq!(r.launches_failed[0].failed_s, 32.1);
        // A node still booting at the end: not provisioned.
        let c = compute(&events[..12], Some(10_000.0), rel).expect("node groups");
        assert_eq!(c.nodes_provisioned_ms, None);
        assert_eq!(c.report.nodes_added[0].ready_s, None);
        // No node groups: no section.
        assert!(compute(&events[..1], Some(10_000.0), rel).is_none());
    }
}
