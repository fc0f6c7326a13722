//! UDP conntrack cleanup, as upstream kube-proxy does after a sync: UDP has no connection to
//! close, so a flow DNATed to an endpoint that is gone would keep being sent there, and a flow
//! that hit the "no endpoints" reject before endpoints appeared would keep being rejected.
//! TCP entries are never flushed (upstream leaves them to time out).
//!
//! Start at [`cleanup_commands`]: pure, from the UDP endpoints before and after a sync.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use proxy::Protocol;
use proxy::plan::Plan;

/// UDP service ports and their endpoint IPs: (cluster IP, port) -> endpoints.
pub type UdpView = BTreeMap<(Ipv4Addr, u16), BTreeSet<Ipv4Addr>>;

/// The UDP part of a plan.
pub fn udp_view(plan: &Plan) -> UdpView {
    plan.services()
        .filter(|s| s.port.name.protocol == Protocol::Udp)
        .map(|s| {
            (
                (s.port.cluster_ip, s.port.port),
                s.endpoints.iter().map(|e| e.endpoint.ip).collect(),
            )
        })
        .collect()
}

/// `conntrack` invocations for the change from `before` to `after`: flows to removed endpoints
/// (`--orig-dst <clusterIP> --dst-nat <endpoint>`) and, for service ports that had no endpoints
/// and now have some, every flow to the ClusterIP (stale rejects).
pub fn cleanup_commands(before: &UdpView, after: &UdpView) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for ((ip, port), now) in after {
        let was = before.get(&(*ip, *port));
        if !now.is_empty() && was.is_none_or(BTreeSet::is_empty) {
            out.push(args(&[
                "-D",
                "-p",
                "udp",
                "--orig-dst",
                &ip.to_string(),
                "--orig-port-dst",
                &port.to_string(),
            ]));
        }
    }
    for ((ip, port), was) in before {
        let now = after.get(&(*ip, *port));
        for ep in was.iter().filter(|ep| now.is_none_or(|n| !n.contains(ep))) {
            out.push(args(&[
                "-D",
                "-p",
                "udp",
                "--orig-dst",
                &ip.to_string(),
                "--orig-port-dst",
                &port.to_string(),
                "--dst-nat",
                &ep.to_string(),
            ]));
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
        let svc = (ip("10.96.0.10"), 53);
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
}
