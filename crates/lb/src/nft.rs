//! nftables renderer for one balancer: [`Routes`] -> one `nft -f` transaction that replaces the
//! balancer's own table `ip zonelab-lb-<name>`. Pure text, golden-tested.
//!
//! Start at [`render`]. The table DNATs new connections to a listener (node address, port) to a
//! random target (`numgen random mod N vmap`, as kube-proxy picks an endpoint) in `prerouting`
//! and in `output` (so processes in the balancer's namespace can use it too). Conntrack keeps
//! an established connection on its target, so replacing the whole table (a target removed,
//! draining, or unhealthy) moves only new connections. A listener without targets has no rule:
//! the address is local to the namespace and nothing listens there, so the kernel answers the
//! SYN with a reset. Groups that do not preserve client IPs mark the packet in the target chain
//! and `postrouting` masquerades it, so replies return through the balancer even when client
//! and target share a subnet.

use std::fmt::Write as _;

use crate::routing::Routes;

/// Prefix of every balancer's table name.
pub const TABLE_PREFIX: &str = "zonelab-lb-";
/// Packet mark bit asking `postrouting` to masquerade (bit 16; kube-proxy uses bits 14-15).
pub const MASQUERADE_MARK: u32 = 0x0001_0000;

/// `zonelab-lb-<name>`.
pub fn table_name(balancer: &str) -> String {
    format!("{TABLE_PREFIX}{balancer}")
}

/// A script that deletes the table if it exists and does nothing otherwise.
pub fn remove_script(balancer: &str) -> String {
    let t = table_name(balancer);
    format!("table ip {t}\ndelete table ip {t}\n")
}

/// The whole table for `routes`, replacing any previous version in one transaction.
pub fn render(balancer: &str, routes: &Routes) -> String {
    let t = table_name(balancer);
    let mut s = remove_script(balancer);
    let _ = writeln!(s, "table ip {t} {{");
    // dstnat is -100; nft 1.0 accepts the name only on prerouting (kube-proxy writes -100).
    for (chain, hook) in [("prerouting", "prerouting"), ("output", "output")] {
        let _ = writeln!(s, "\tchain {chain} {{");
        let _ = writeln!(s, "\t\ttype nat hook {hook} priority -100; policy accept;");
        s.push_str("\t\tjump listeners\n\t}\n");
    }
    let masquerade = routes
        .nodes
        .iter()
        .flat_map(|n| &n.listeners)
        .any(|l| l.masquerade && !l.targets.is_empty());
    if masquerade {
        s.push_str("\tchain postrouting {\n");
        s.push_str("\t\ttype nat hook postrouting priority 100; policy accept;\n");
        let _ = writeln!(
            s,
            "\t\tmeta mark & {MASQUERADE_MARK:#010x} == {MASQUERADE_MARK:#010x} masquerade"
        );
        s.push_str("\t}\n");
    }
    s.push_str("\tchain listeners {\n");
    for n in &routes.nodes {
        for l in n.listeners.iter().filter(|l| !l.targets.is_empty()) {
            let _ = writeln!(
                s,
                "\t\tip daddr {} tcp dport {} goto {}",
                n.address,
                l.port,
                listener_chain(n.address, l.port)
            );
        }
    }
    s.push_str("\t}\n");
    let mut target_chains = std::collections::BTreeMap::new();
    for n in &routes.nodes {
        for l in n.listeners.iter().filter(|l| !l.targets.is_empty()) {
            let _ = writeln!(s, "\tchain {} {{", listener_chain(n.address, l.port));
            let arms: Vec<String> = l
                .targets
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let chain = target_chain(&l.target_group, *a);
                    target_chains.insert(chain.clone(), (*a, l.masquerade));
                    format!("{i} : goto {chain}")
                })
                .collect();
            let _ = writeln!(
                s,
                "\t\tnumgen random mod {} vmap {{ {} }}",
                arms.len(),
                arms.join(", ")
            );
            s.push_str("\t}\n");
        }
    }
    for (chain, (addr, masq)) in target_chains {
        let _ = writeln!(s, "\tchain {chain} {{");
        if masq {
            let _ = writeln!(s, "\t\tmeta mark set meta mark | {MASQUERADE_MARK:#010x}");
        }
        let _ = writeln!(s, "\t\tmeta l4proto tcp dnat to {addr}");
        s.push_str("\t}\n");
    }
    s.push_str("}\n");
    s
}

fn listener_chain(address: std::net::Ipv4Addr, port: u16) -> String {
    format!("listener-{address}/{port}")
}

fn target_chain(group: &str, addr: std::net::SocketAddrV4) -> String {
    format!("target-{group}__{}/{}", addr.ip(), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::{ListenerRoute, NodeRoute, NodeState};
    use std::net::{Ipv4Addr, SocketAddrV4};

    fn node(last: u8, zone: &str, listeners: Vec<ListenerRoute>) -> NodeRoute {
        NodeRoute {
            address: Ipv4Addr::new(172, 20, 251, last),
            zone: Some(zone.into()),
            state: NodeState::Healthy,
            reason: None,
            listeners,
        }
    }

    fn listener(port: u16, masquerade: bool, targets: &[(u8, u8)]) -> ListenerRoute {
        ListenerRoute {
            port,
            target_group: "web".into(),
            targets: targets
                .iter()
                .map(|&(z, h)| SocketAddrV4::new(Ipv4Addr::new(172, 20, z, h), 30080))
                .collect(),
            fail_open: false,
            masquerade,
        }
    }

    #[test]
    fn golden_two_zones_instance_targets() {
        let routes = Routes {
            nodes: vec![
                node(1, "a", vec![listener(80, false, &[(0, 11), (0, 12)])]),
                node(2, "b", vec![listener(80, false, &[(1, 11)])]),
                node(3, "c", vec![listener(80, false, &[])]),
            ],
        };
        let want = "\
table ip zonelab-lb-web
delete table ip zonelab-lb-web
table ip zonelab-lb-web {
\tchain prerouting {
\t\ttype nat hook prerouting priority -100; policy accept;
\t\tjump listeners
\t}
\tchain output {
\t\ttype nat hook output priority -100; policy accept;
\t\tjump listeners
\t}
\tchain listeners {
\t\tip daddr 172.20.251.1 tcp dport 80 goto listener-172.20.251.1/80
\t\tip daddr 172.20.251.2 tcp dport 80 goto listener-172.20.251.2/80
\t}
\tchain listener-172.20.251.1/80 {
\t\tnumgen random mod 2 vmap { 0 : goto target-web__172.20.0.11/30080, 1 : goto target-web__172.20.0.12/30080 }
\t}
\tchain listener-172.20.251.2/80 {
\t\tnumgen random mod 1 vmap { 0 : goto target-web__172.20.1.11/30080 }
\t}
\tchain target-web__172.20.0.11/30080 {
\t\tmeta l4proto tcp dnat to 172.20.0.11:30080
\t}
\tchain target-web__172.20.0.12/30080 {
\t\tmeta l4proto tcp dnat to 172.20.0.12:30080
\t}
\tchain target-web__172.20.1.11/30080 {
\t\tmeta l4proto tcp dnat to 172.20.1.11:30080
\t}
}
";
        assert_eq!(render("web", &routes), want);
    }

    #[test]
    fn golden_masquerade_for_groups_without_client_ip_preservation() {
        let routes = Routes {
            nodes: vec![node(9, "a", vec![listener(443, true, &[(0, 11)])])],
        };
        let want = "\
table ip zonelab-lb-api
delete table ip zonelab-lb-api
table ip zonelab-lb-api {
\tchain prerouting {
\t\ttype nat hook prerouting priority -100; policy accept;
\t\tjump listeners
\t}
\tchain output {
\t\ttype nat hook output priority -100; policy accept;
\t\tjump listeners
\t}
\tchain postrouting {
\t\ttype nat hook postrouting priority 100; policy accept;
\t\tmeta mark & 0x00010000 == 0x00010000 masquerade
\t}
\tchain listeners {
\t\tip daddr 172.20.251.9 tcp dport 443 goto listener-172.20.251.9/443
\t}
\tchain listener-172.20.251.9/443 {
\t\tnumgen random mod 1 vmap { 0 : goto target-web__172.20.0.11/30080 }
\t}
\tchain target-web__172.20.0.11/30080 {
\t\tmeta mark set meta mark | 0x00010000
\t\tmeta l4proto tcp dnat to 172.20.0.11:30080
\t}
}
";
        assert_eq!(render("api", &routes), want);
    }

    #[test]
    fn remove_script_tolerates_an_absent_table() {
        assert_eq!(
            remove_script("web"),
            "table ip zonelab-lb-web\ndelete table ip zonelab-lb-web\n"
        );
    }
}
