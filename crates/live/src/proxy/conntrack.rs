//! UDP conntrack cleanup, as upstream kube-proxy does after a sync, for ClusterIPs, external
//! and load-balancer IPs and NodePorts: UDP has no connection to close, so a flow DNATed to an
//! endpoint that is gone would keep being sent there, and a flow that hit the "no endpoints"
//! reject before endpoints appeared would keep being rejected.
//! TCP entries are never flushed (upstream leaves them to time out).
//!
//! Start at [`cleanup_commands`]: pure, from the UDP endpoints before and after a sync.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use proxy::Protocol;
use proxy::plan::Plan;

/// Where UDP service traffic arrives: an address (ClusterIP, external IP, load-balancer IP)
/// and port, or a NodePort (`None`: any of the node's addresses).
pub type UdpDest = (Option<Ipv4Addr>, u16);

/// UDP service destinations and the endpoint IPs their rules DNAT to.
pub type UdpView = BTreeMap<UdpDest, BTreeSet<Ipv4Addr>>;

/// The UDP part of a plan: ClusterIPs with their ClusterIP endpoints; external IPs,
/// load-balancer IPs and NodePorts with the endpoints external traffic can reach.
pub fn udp_view(plan: &Plan) -> UdpView {
    let mut view = UdpView::new();
    for s in plan
        .services()
        .filter(|s| s.port.name.protocol == Protocol::Udp)
    {
        let internal = s.endpoints.iter().map(|e| e.endpoint.ip).collect();
        view.insert((Some(s.port.cluster_ip), s.port.port), internal);
        let external: BTreeSet<Ipv4Addr> = if s.has_external_endpoints() {
            s.reachable_endpoints()
                .iter()
                .map(|e| e.endpoint.ip)
                .collect()
        } else {
            BTreeSet::new()
        };
        let ips = s.port.external_ips.iter().chain(&s.port.load_balancer_ips);
        for ip in ips {
            view.insert((Some(*ip), s.port.port), external.clone());
        }
        if let Some(np) = s.port.node_port {
            view.insert((None, np), external.clone());
        }
    }
    view
}

/// `-D -p udp [--orig-dst IP] --orig-port-dst PORT`.
fn delete_args((ip, port): &UdpDest) -> Vec<String> {
    let mut a = args(&["-D", "-p", "udp"]);
    if let Some(ip) = ip {
        a.extend(args(&["--orig-dst", &ip.to_string()]));
    }
    a.extend(args(&["--orig-port-dst", &port.to_string()]));
    a
}

/// `conntrack` invocations for the change from `before` to `after` (upstream
/// `CleanStaleEntries`): flows to removed endpoints (`--dst-nat <endpoint>`) and, for
/// destinations that had no endpoints and now have some, every flow to them (stale rejects).
pub fn cleanup_commands(before: &UdpView, after: &UdpView) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (dest, now) in after {
        let was = before.get(dest);
        if !now.is_empty() && was.is_none_or(BTreeSet::is_empty) {
            out.push(delete_args(dest));
        }
    }
    for (dest, was) in before {
        let now = after.get(dest);
        for ep in was.iter().filter(|ep| now.is_none_or(|n| !n.contains(ep))) {
            let mut a = delete_args(dest);
            a.extend(args(&["--dst-nat", &ep.to_string()]));
            out.push(a);
        }
    }
    out
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// Run the commands (in this process's network namespace). "0 flow entries" exits 1: fine.
pub fn run(commands: &[Vec<String>]) {
    for c in commands {
        match std::process::Command::new("conntrack").args(c).output() {
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("conntrack cleanup skipped: {e}");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn removed_endpoints_and_first_endpoints_are_flushed() {
        let svc = (Some(ip("10.96.0.10")), 53);
        let before: UdpView = [(
            svc,
            [ip("10.244.0.2"), ip("10.244.1.2")].into_iter().collect(),
        )]
        .into_iter()
        .collect();
        let after: UdpView = [(svc, [ip("10.244.1.2")].into_iter().collect())]
            .into_iter()
            .collect();
        let cmds = cleanup_commands(&before, &after);
        assert_eq!(cmds.len(), 1);
        assert_eq!(
            cmds[0].join(" "),
            "-D -p udp --orig-dst 10.96.0.10 --orig-port-dst 53 --dst-nat 10.244.0.2"
        );

        let empty: UdpView = [(svc, BTreeSet::new())].into_iter().collect();
        let cmds = cleanup_commands(&empty, &after);
        assert_eq!(
            cmds,
            vec![args(&[
                "-D",
                "-p",
                "udp",
                "--orig-dst",
                "10.96.0.10",
                "--orig-port-dst",
                "53"
            ])]
        );
        assert!(cleanup_commands(&after, &after).is_empty());
        // A deleted service: every endpoint's flows go.
        assert_eq!(cleanup_commands(&before, &UdpView::new()).len(), 2);
    }

    #[test]
    fn node_ports_and_load_balancer_ips_are_cleaned_too() {
        use proxy::fixtures::{ep, service_json, slice};
        let dns: &[(&str, u16, &str)] = &[("dns", 53, "UDP")];
        let mut t = proxy::Tracker::new();
        t.apply_service(&service_json(
            "ns",
            "dns",
            serde_json::json!({"type": "LoadBalancer", "clusterIP": "10.96.0.10",
                "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}]}),
            serde_json::json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.7"}]}}),
        ));
        let cfg = proxy::PlanConfig::default();
        let none = udp_view(&proxy::Plan::build(&t, &cfg));
        t.apply_slice(&slice("ns", "dns", "a", dns, vec![ep("10.244.0.2")]));
        let one = udp_view(&proxy::Plan::build(&t, &cfg));
        let lines: Vec<String> = cleanup_commands(&none, &one)
            .iter()
            .map(|c| c.join(" "))
            .collect();
        assert_eq!(
            lines,
            [
                "-D -p udp --orig-port-dst 30053",
                "-D -p udp --orig-dst 10.96.0.10 --orig-port-dst 53",
                "-D -p udp --orig-dst 192.0.2.7 --orig-port-dst 53",
            ]
        );
        let lines: Vec<String> = cleanup_commands(&one, &none)
            .iter()
            .map(|c| c.join(" "))
            .collect();
        assert_eq!(
            lines,
            [
                "-D -p udp --orig-port-dst 30053 --dst-nat 10.244.0.2",
                "-D -p udp --orig-dst 10.96.0.10 --orig-port-dst 53 --dst-nat 10.244.0.2",
                "-D -p udp --orig-dst 192.0.2.7 --orig-port-dst 53 --dst-nat 10.244.0.2",
            ]
        );
    }
}
