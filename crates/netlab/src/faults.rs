//! Fault injection as a desired state rendered to nftables: start at [`FaultState`] and
//! [`router_script`]/[`node_script`].
//!
//! The lab owns one table, `inet zonelab-faults`, in the router namespace and in each node
//! namespace; kube-proxy's tables are never touched. Every change re-renders the whole table
//! and replaces it atomically (`table ...; delete table ...; table ... { ... }` in one `nft -f`
//! transaction), so the rules always equal the fault state and healing is just rendering less.
//!
//! All faults are silent drops, so peers see timeouts, never resets:
//! - isolated node: the router's forward hook drops everything to/from the node IP and its
//!   pod CIDR (cross-zone and control-plane traffic); the node's own table drops everything
//!   entering or leaving through its uplink `eth0` in input, output and forward (same-zone
//!   traffic is switched by the zone bridge, so only the node itself can stop it). Loopback and
//!   node-local pod traffic keep working, as they would on a cut-off machine.
//! - partitioned zone: the router's forward hook drops between the zone's subnet and pod CIDRs
//!   and every other zone and the control plane; the zone keeps talking to itself.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

use crate::exec::Cmd;
use crate::topology::Topology;

/// The table the lab owns in every namespace it injects faults into.
pub const FAULT_TABLE: &str = "zonelab-faults";
/// Hook priority of fault chains: before conntrack (-200) and kube-proxy's chains, so a
/// dropped packet never creates state.
const PRIORITY: i32 = -300;

/// Which faults are active.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultState {
    /// Nodes (and zone control-plane hosts, by namespace name) cut off from the network (also
    /// set while powered off).
    pub isolated_nodes: BTreeSet<String>,
    /// Zones partitioned from the rest of the lab.
    pub partitioned_zones: BTreeSet<String>,
}

/// `nft -f -` inside `netns` running `script` (entered with `nsenter`: no mount-table copy).
pub fn apply_cmd(netns: &str, script: String) -> Cmd {
    Cmd::in_netns(netns, &["nft", "-f", "-"]).with_stdin(script)
}

/// The router's fault table for `state` (an empty state renders a script that removes it).
pub fn router_script(topo: &Topology, state: &FaultState) -> String {
    let mut rules = Vec::new();
    let hosts = topo
        .nodes
        .iter()
        .map(|n| &n.name)
        .chain(topo.zone_control_planes.iter().map(|c| &c.netns));
    for set in hosts
        .filter(|h| state.isolated_nodes.contains(*h))
        .filter_map(|h| topo.isolation_set(h))
    {
        rules.push(format!("ip saddr {set} drop"));
        rules.push(format!("ip daddr {set} drop"));
    }
    for zone in topo
        .zones
        .iter()
        .filter(|z| state.partitioned_zones.contains(&z.name))
    {
        let (inside, outside) = zone_sets(topo, &zone.name);
        rules.push(format!("ip saddr {inside} ip daddr {outside} drop"));
        rules.push(format!("ip saddr {outside} ip daddr {inside} drop"));
    }
    if rules.is_empty() {
        return remove_only();
    }
    replace_with(&[("forward", "forward", rules)])
}

/// A node's own fault table: drop everything through its uplink while isolated.
pub fn node_script(isolated: bool) -> String {
    if !isolated {
        return remove_only();
    }
    replace_with(&[
        ("input", "input", vec!["iifname \"eth0\" drop".to_string()]),
        (
            "output",
            "output",
            vec!["oifname \"eth0\" drop".to_string()],
        ),
        (
            "forward",
            "forward",
            vec![
                "iifname \"eth0\" drop".to_string(),
                "oifname \"eth0\" drop".to_string(),
            ],
        ),
    ])
}

/// Make sure the table exists, then delete it: a no-op when absent, removal when present.
fn remove_only() -> String {
    format!("table inet {FAULT_TABLE}\ndelete table inet {FAULT_TABLE}\n")
}

fn replace_with(chains: &[(&str, &str, Vec<String>)]) -> String {
    let mut s = remove_only();
    s.push_str(&format!("table inet {FAULT_TABLE} {{\n"));
    for (name, hook, rules) in chains {
        s.push_str(&format!("  chain {name} {{\n"));
        s.push_str(&format!(
            "    type filter hook {hook} priority {PRIORITY}; policy accept;\n"
        ));
        for r in rules {
            s.push_str(&format!("    {r}\n"));
        }
        s.push_str("  }\n");
    }
    s.push_str("}\n");
    s
}

/// (addresses of `zone`, addresses of every other zone and the control plane) as nft sets.
fn zone_sets(topo: &Topology, zone: &str) -> (String, String) {
    let mut inside: Vec<String> = Vec::new();
    let mut outside: Vec<String> = Vec::new();
    for z in &topo.zones {
        let target = if z.name == zone {
            &mut inside
        } else {
            &mut outside
        };
        target.push(format!("{}/24", z.subnet));
        target.extend(
            topo.nodes_in_zone(&z.name)
                .map(|n| format!("{}/24", n.pod_cidr)),
        );
    }
    outside.push(format!("{}/24", topo.control_plane.subnet));
    (braced(&inside), braced(&outside))
}

fn braced(items: &[String]) -> String {
    format!("{{ {} }}", items.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::LabSpec;

    fn topo() -> Topology {
        let spec = LabSpec {
            prefix: "zl1".into(),
            zones: vec!["a".into(), "b".into()],
            nodes_per_zone: 2,
        };
        Topology::new(&spec).expect("valid")
    }

    #[test]
    fn empty_state_removes_the_table() {
        let s = router_script(&topo(), &FaultState::default());
        assert_eq!(
            s,
            "table inet zonelab-faults\ndelete table inet zonelab-faults\n"
        );
        assert_eq!(node_script(false), s);
    }

    #[test]
    fn isolated_node_drops_its_ip_and_pod_cidr() {
        let mut st = FaultState::default();
        st.isolated_nodes.insert("zl1-b-1".into());
        let s = router_script(&topo(), &st);
        assert!(s.contains("type filter hook forward priority -300; policy accept;"));
        assert!(s.contains("ip saddr { 172.20.1.11, 10.244.2.0/24 } drop\n"));
        assert!(s.contains("ip daddr { 172.20.1.11, 10.244.2.0/24 } drop\n"));
        let n = node_script(true);
        assert!(n.contains("chain input {") && n.contains("iifname \"eth0\" drop"));
        assert!(n.contains("chain output {") && n.contains("oifname \"eth0\" drop"));
    }

    #[test]
    fn partitioned_zone_drops_against_other_zones_and_control_plane() {
        let mut st = FaultState::default();
        st.partitioned_zones.insert("b".into());
        let s = router_script(&topo(), &st);
        let inside = "{ 172.20.1.0/24, 10.244.2.0/24, 10.244.3.0/24 }";
        let outside = "{ 172.20.0.0/24, 10.244.0.0/24, 10.244.1.0/24, 172.20.250.0/24 }";
        assert!(s.contains(&format!("ip saddr {inside} ip daddr {outside} drop\n")));
        assert!(s.contains(&format!("ip saddr {outside} ip daddr {inside} drop\n")));
        assert!(!s.contains("zl1"));
    }

    #[test]
    fn isolated_zone_control_plane_host_drops_its_address() {
        let t = topo().with_zone_control_planes();
        let mut st = FaultState::default();
        st.isolated_nodes.insert("zl1-cp-a".into());
        let s = router_script(&t, &st);
        assert!(s.contains("ip saddr { 172.20.0.10 } drop\n"), "{s}");
        assert!(s.contains("ip daddr { 172.20.0.10 } drop\n"), "{s}");
        assert!(!s.contains("172.20.1.10"));
    }

    #[test]
    fn apply_runs_nft_in_the_namespace() {
        let c = apply_cmd("zl1-rt", node_script(false));
        assert_eq!(c.to_string(), "nsenter --net=/run/netns/zl1-rt nft -f -");
    }
}
