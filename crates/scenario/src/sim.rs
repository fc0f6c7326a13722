//! What the simulator (`zonelab run --sim`) accepts beyond and short of the live lab: larger
//! topologies (the live address plan's limits do not apply), and no live-only features
//! (external clients and load balancers, node groups, an etcd control plane, flags it does
//! not model). Start at [`check`].

use crate::locate::Seg;
use crate::model::{ClientFrom, ClientVia, ETCD_LEADER, Scenario, Store};
use crate::validate::Problem;

/// Which lab a scenario is checked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// The live lab (network namespaces on this machine).
    #[default]
    Live,
    /// The simulator.
    Sim,
}

/// Most nodes the simulator takes in all (its pod CIDRs are the `/24`s of 100.64.0.0/10).
pub const MAX_SIM_NODES: u64 = 16_384;

/// Server and agent flags the simulator models; others are live-only.
pub const SIM_FLAGS: [&str; 15] = [
    "node-monitor-period",
    "node-monitor-grace-period",
    "node-startup-grace-period",
    "node-eviction-rate",
    "secondary-node-eviction-rate",
    "unhealthy-zone-threshold",
    "large-cluster-size-threshold",
    "max-endpoints-per-slice",
    "default-not-ready-toleration-seconds",
    "default-unreachable-toleration-seconds",
    "node-lease-duration-seconds",
    "min-sync-period",
    "sync-period",
    "conntrack-tcp-timeout-syn-sent",
    "image-policy",
];

fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

fn live_only(path: Vec<Seg>, what: &str) -> Problem {
    Problem {
        path,
        message: format!(
            "{what} is live-only: the simulator does not model it (run without --sim)"
        ),
    }
}

/// The simulator's size limit and its live-only features.
pub fn check(s: &Scenario) -> Result<(), Problem> {
    let t = &s.topology;
    let total = t.zones.len() as u64 * u64::from(t.nodes_per_zone);
    if t.nodes_per_zone == 0 || total > MAX_SIM_NODES {
        return Err(Problem {
            path: vec![key("topology"), key("nodesPerZone")],
            message: format!(
                "expected 1 or more nodes per zone and at most {MAX_SIM_NODES} nodes in all, found {} x {} zones",
                t.nodes_per_zone,
                t.zones.len()
            ),
        });
    }
    if !s.node_groups.is_empty() {
        return Err(live_only(
            vec![key("nodeGroups")],
            "nodeGroups (the cluster autoscaler)",
        ));
    }
    if s.control_plane.store == Store::Etcd {
        return Err(live_only(
            vec![key("controlPlane"), key("store")],
            "store: etcd (a control plane in the zones)",
        ));
    }
    for (i, c) in s.clients.iter().enumerate() {
        if c.from == ClientFrom::External {
            return Err(live_only(
                vec![key("clients"), Seg::Index(i), key("from")],
                "from: external (clients outside the cluster)",
            ));
        }
        if c.via == Some(ClientVia::LoadBalancer) {
            return Err(live_only(
                vec![key("clients"), Seg::Index(i), key("via")],
                "via: load-balancer",
            ));
        }
    }
    for (i, f) in s.faults.iter().enumerate() {
        if f.target == ETCD_LEADER {
            return Err(live_only(
                vec![key("faults"), Seg::Index(i), key("target")],
                "target: etcd-leader",
            ));
        }
    }
    for name in s.flags.keys() {
        let bare = name.trim_start_matches('-');
        if !SIM_FLAGS.contains(&bare) {
            return Err(Problem {
                path: vec![key("flags"), key(name)],
                message: format!(
                    "flag {bare} is not modelled by the simulator (modelled: {}); run without --sim",
                    SIM_FLAGS.join(", ")
                ),
            });
        }
    }
    Ok(())
}
