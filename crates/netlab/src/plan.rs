//! Pure command plans: the `ip`/`sysctl` lines that build a lab, add or remove a pod, or clear
//! leftovers. Start at [`up_steps`]; `lab.rs` runs the steps in order through a `Runner`.

use crate::exec::Cmd;
use crate::topology::{NodeNet, PodNet, Topology, is_lab_netns};

/// Sysctls of the router: forward, and no ICMP redirects (same-zone node-to-node traffic via
/// the router stays routed instead of being redirected to a direct L2 path).
const ROUTER_SYSCTLS: &[&str] = &[
    "net.ipv4.ip_forward=1",
    "net.ipv4.conf.all.send_redirects=0",
    "net.ipv4.conf.default.send_redirects=0",
    "net.ipv4.conf.all.rp_filter=0",
    "net.ipv4.conf.default.rp_filter=0",
];

/// Sysctls of a node. `conf.default.proxy_arp=1` is inherited by every pod host veth created
/// afterwards (Calico sets it per interface); `eth0` is then set back to no proxy ARP
/// explicitly. `ip_forward` comes first because proxy ARP only answers on forwarding
/// interfaces. (`neigh.default` is not exposed outside the initial namespace, so proxy ARP
/// keeps its reply delay; pods therefore get a permanent neighbour entry for the gateway, see
/// [`HOST_VETH_MAC`], and proxy ARP is only the fallback.)
const NODE_SYSCTLS: &[&str] = &[
    "net.ipv4.ip_forward=1",
    "net.ipv4.conf.all.rp_filter=0",
    "net.ipv4.conf.default.rp_filter=0",
    "net.ipv4.conf.default.proxy_arp=1",
    "net.ipv4.conf.eth0.proxy_arp=0",
];

/// MAC of every pod host veth (as Calico does); pods hold a permanent neighbour entry
/// `169.254.1.1 -> HOST_VETH_MAC`, so they never wait for a (delayed) proxy ARP answer.
pub const HOST_VETH_MAC: &str = "ee:ee:ee:ee:ee:ee";

/// `ip netns list` output -> namespace names (first word of each line).
pub fn parse_netns_list(stdout: &str) -> Vec<String> {
    let mut names: Vec<String> = stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

/// Namespaces in `existing` that carry `prefix`.
pub fn owned_namespaces(prefix: &str, existing: &[String]) -> Vec<String> {
    existing
        .iter()
        .filter(|n| is_lab_netns(prefix, n))
        .cloned()
        .collect()
}

/// `ip -force -batch -` deleting `namespaces` (failures of single lines do not stop the rest).
pub fn delete_namespaces(namespaces: &[String]) -> Option<Cmd> {
    if namespaces.is_empty() {
        return None;
    }
    let lines: Vec<String> = namespaces
        .iter()
        .map(|n| format!("netns del {n}"))
        .collect();
    let mut cmd = Cmd::ip_batch(None, &lines);
    cmd.args.insert(0, "-force".to_string());
    Some(cmd)
}

/// `sysctl -qw ...` run inside `netns`.
pub fn sysctls(netns: &str, settings: &[&str]) -> Cmd {
    let mut argv = vec!["sysctl", "-qw"];
    argv.extend_from_slice(settings);
    Cmd::in_netns(netns, &argv)
}

/// Every command that builds `topo`, in order (namespaces must not exist yet).
pub fn up_steps(topo: &Topology) -> Vec<Cmd> {
    let mut steps = Vec::new();
    let adds: Vec<String> = topo
        .infra_namespaces()
        .iter()
        .map(|n| format!("netns add {n}"))
        .collect();
    steps.push(Cmd::ip_batch(None, &adds));
    steps.push(Cmd::ip_batch(Some(&topo.router_netns), &router_links(topo)));
    for node in &topo.nodes {
        steps.push(Cmd::ip_batch(Some(&node.name), &node_lines(node)));
    }
    let cp = &topo.control_plane;
    let cp_lines = uplink_lines(&cp.ip.to_string(), &cp.gateway.to_string());
    steps.push(Cmd::ip_batch(Some(&cp.netns), &cp_lines));
    for zcp in &topo.zone_control_planes {
        let lines = routed_host_lines(&zcp.ip.to_string(), &zcp.gateway.to_string());
        steps.push(Cmd::ip_batch(Some(&zcp.netns), &lines));
    }
    steps.push(sysctls(&topo.router_netns, ROUTER_SYSCTLS));
    for node in &topo.nodes {
        steps.push(sysctls(&node.name, NODE_SYSCTLS));
    }
    if !topo.nodes.is_empty() {
        steps.push(Cmd::ip_batch(
            Some(&topo.router_netns),
            &router_routes(topo),
        ));
    }
    steps
}

/// Commands that build one more node of a running lab (a node group's instance): its
/// namespace, the router's veth to the zone bridge, the node's uplink, sysctls, and the
/// router's route to its pod CIDR. The namespace must not exist yet.
pub fn add_node_steps(topo: &Topology, node: &NodeNet) -> Vec<Cmd> {
    let bridge = format!("br-{}", node.zone_index);
    vec![
        Cmd::ip_batch(None, &[format!("netns add {}", node.name)]),
        Cmd::ip_batch(
            Some(&topo.router_netns),
            &veth_to(&node.router_veth, &node.name, &bridge),
        ),
        Cmd::ip_batch(Some(&node.name), &node_lines(node)),
        sysctls(&node.name, NODE_SYSCTLS),
        Cmd::ip_batch(
            Some(&topo.router_netns),
            &[format!("route add {}/24 via {}", node.pod_cidr, node.ip)],
        ),
    ]
}

/// Commands that remove one node of a running lab (its processes must be gone): the router's
/// route and veth (the node's `eth0` goes with it), then the namespace. Run with `run`: any
/// of them may already be gone.
pub fn remove_node_steps(topo: &Topology, node: &NodeNet) -> Vec<Cmd> {
    vec![
        Cmd::new(
            "ip",
            [
                "-n",
                &topo.router_netns,
                "route",
                "del",
                &format!("{}/24", node.pod_cidr),
            ],
        ),
        Cmd::new(
            "ip",
            ["-n", &topo.router_netns, "link", "del", &node.router_veth],
        ),
        Cmd::new("ip", ["netns", "del", &node.name]),
    ]
}

/// Router namespace: bridges with zone gateways, the control-plane bridge, one veth per node
/// whose peer is created directly as `eth0` inside the node namespace.
fn router_links(topo: &Topology) -> Vec<String> {
    let mut l = vec!["link set lo up".to_string()];
    for z in &topo.zones {
        l.push(bridge_add(&z.bridge, z.gateway));
        l.push(format!("addr add {}/24 dev {}", z.gateway, z.bridge));
        l.push(format!("link set {} up", z.bridge));
    }
    let cp = &topo.control_plane;
    l.push(bridge_add(&cp.bridge, cp.gateway));
    l.push(format!("addr add {}/24 dev {}", cp.gateway, cp.bridge));
    l.push(format!("link set {} up", cp.bridge));
    for n in &topo.nodes {
        let bridge = format!("br-{}", n.zone_index);
        l.extend(veth_to(&n.router_veth, &n.name, &bridge));
    }
    l.extend(veth_to(&cp.router_veth, &cp.netns, &cp.bridge));
    for zcp in &topo.zone_control_planes {
        let bridge = format!("br-{}", zcp.zone_index);
        l.extend(veth_to(&zcp.router_veth, &zcp.netns, &bridge));
    }
    l
}

/// A bridge with a fixed MAC: without one Linux gives the bridge the lowest MAC among its
/// ports, so a node added later with a lower MAC changes the gateway's MAC and every node
/// keeps sending to the old one until its neighbour entry is re-probed (~5 s of loss).
fn bridge_add(name: &str, gateway: std::net::Ipv4Addr) -> String {
    format!(
        "link add {name} address {} type bridge",
        bridge_mac(gateway)
    )
}

/// The locally administered MAC of the bridge holding `gateway`: `02:5a:4c` ("ZL") and the
/// gateway's last three octets.
pub fn bridge_mac(gateway: std::net::Ipv4Addr) -> String {
    let [_, b, c, d] = gateway.octets();
    format!("02:5a:4c:{b:02x}:{c:02x}:{d:02x}")
}

fn veth_to(router_if: &str, peer_ns: &str, bridge: &str) -> [String; 3] {
    [
        format!("link add {router_if} type veth peer name eth0 netns {peer_ns}"),
        format!("link set {router_if} master {bridge}"),
        format!("link set {router_if} up"),
    ]
}

/// Router routes to every node's pod CIDR (after the uplinks are up).
fn router_routes(topo: &Topology) -> Vec<String> {
    topo.nodes
        .iter()
        .map(|n| format!("route add {}/24 via {}", n.pod_cidr, n.ip))
        .collect()
}

/// A host holding `ip` as a /32 with every route via the gateway on link (see
/// [`crate::topology::ZoneControlPlaneNet`]).
fn routed_host_lines(ip: &str, gateway: &str) -> Vec<String> {
    vec![
        "link set lo up".to_string(),
        format!("addr add {ip}/32 dev eth0"),
        "link set eth0 up".to_string(),
        format!("route add {gateway} dev eth0 scope link"),
        format!("route add default via {gateway} dev eth0"),
    ]
}

fn uplink_lines(ip: &str, gateway: &str) -> Vec<String> {
    vec![
        "link set lo up".to_string(),
        format!("addr add {ip}/24 dev eth0"),
        "link set eth0 up".to_string(),
        format!("route add default via {gateway} dev eth0"),
    ]
}

fn node_lines(node: &NodeNet) -> Vec<String> {
    uplink_lines(&node.ip.to_string(), &node.gateway.to_string())
}

/// Pod namespaces wired to a node, found from the kernel: every `zv<hash8>` interface listed
/// by `ip -o link show` in the node namespace belongs to the pod namespace `<prefix>-p-<hash8>`.
pub fn pod_namespaces_from_links(prefix: &str, ip_link_stdout: &str) -> Vec<String> {
    let mut out: Vec<String> = ip_link_stdout
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .filter_map(|name| name.split('@').next())
        .filter_map(|name| name.strip_prefix("zv"))
        .filter(|h| h.len() == 8 && h.chars().all(|c| c.is_ascii_hexdigit()))
        .map(|h| format!("{prefix}-p-{h}"))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The MAC of a pod's interface: `0a:58:` and the four bytes of its IP (as the CNI bridge
/// plugin derives it), so the node can hold a permanent neighbour entry for it.
pub fn pod_mac(ip: std::net::Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("0a:58:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// Commands that wire `pod` to its node (the pod namespace must not exist yet).
pub fn add_pod_steps(pod: &PodNet) -> Vec<Cmd> {
    let mac = pod_mac(pod.ip);
    let node_lines = vec![
        format!(
            "link add {} address {HOST_VETH_MAC} type veth peer name {} address {mac} netns {}",
            pod.host_veth, pod.pod_if, pod.netns
        ),
        format!("link set {} up", pod.host_veth),
        format!("route add {}/32 dev {} scope link", pod.ip, pod.host_veth),
        // Permanent, so the node never ARPs for its pods: the kernel's ARP table is one for
        // all namespaces, and its garbage-collected entries stop at gc_thresh3 (1,024 by
        // default) machine-wide; past it (~900 pods) new pods were unreachable from their
        // node ("neighbor table overflow", their readiness probes timed out). Permanent
        // entries do not count against that limit.
        format!(
            "neigh add {} lladdr {mac} dev {} nud permanent",
            pod.ip, pod.host_veth
        ),
    ];
    let gw = crate::topology::POD_GATEWAY;
    let pod_lines = vec![
        "link set lo up".to_string(),
        format!("addr add {}/32 dev {}", pod.ip, pod.pod_if),
        format!("link set {} up", pod.pod_if),
        format!(
            "neigh add {gw} lladdr {HOST_VETH_MAC} dev {} nud permanent",
            pod.pod_if
        ),
        format!("route add {gw} dev {} scope link", pod.pod_if),
        format!("route add default via {gw} dev {}", pod.pod_if),
    ];
    // The node's and the pod's batches enter their namespace with `nsenter` rather than
    // `ip -n`, which would copy the whole mount table (a netns bind mount per pod) per call.
    vec![
        Cmd::new("ip", ["netns", "add", &pod.netns]),
        Cmd::ip_batch(Some(&pod.node), &node_lines),
        Cmd::ip_batch(Some(&pod.netns), &pod_lines),
    ]
}

/// Commands that unwire `pod`: delete the host veth (its peer and the /32 route go with it),
/// then the namespace. Run with `run` (not `run_ok`): either may already be gone.
pub fn remove_pod_steps(pod: &PodNet) -> Vec<Cmd> {
    vec![
        Cmd::in_netns(&pod.node, &["ip", "link", "del", &pod.host_veth]),
        Cmd::new("ip", ["netns", "del", &pod.netns]),
    ]
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
    fn parse_and_filter_netns_list() {
        let out = "zl1-rt (id: 3)\nzl10-rt (id: 4)\nother\nzl1-a-1\n";
        let names = parse_netns_list(out);
        assert_eq!(names, ["other", "zl1-a-1", "zl1-rt", "zl10-rt"]);
        assert_eq!(owned_namespaces("zl1", &names), ["zl1-a-1", "zl1-rt"]);
        let del = delete_namespaces(&owned_namespaces("zl1", &names)).expect("some");
        assert_eq!(del.to_string(), "ip -force -batch -");
        assert_eq!(
            del.stdin.as_deref(),
            Some("netns del zl1-a-1\nnetns del zl1-rt\n")
        );
        assert!(delete_namespaces(&[]).is_none());
    }

    #[test]
    fn up_creates_namespaces_then_links_then_routes() {
        let t = topo();
        let steps = up_steps(&t);
        let first = steps[0].stdin.as_deref().expect("batch");
        assert_eq!(
            first,
            "netns add zl1-rt\nnetns add zl1-cp\nnetns add zl1-a-1\nnetns add zl1-a-2\n\
             netns add zl1-b-1\nnetns add zl1-b-2\n"
        );
        let router = steps[1].stdin.as_deref().expect("batch");
        assert!(router.contains("addr add 172.20.1.1/24 dev br-1\n"));
        assert!(router.contains("link add vn2 type veth peer name eth0 netns zl1-b-1\n"));
        assert!(router.contains("link set vn2 master br-1\n"));
        assert!(router.contains("link add vcp type veth peer name eth0 netns zl1-cp\n"));
        let b1 = steps[4].stdin.as_deref().expect("batch");
        assert_eq!(steps[4].args[0], "--net=/run/netns/zl1-b-1");
        assert!(b1.contains("addr add 172.20.1.11/24 dev eth0\n"));
        assert!(b1.contains("route add default via 172.20.1.1 dev eth0\n"));
        let last = steps.last().expect("steps");
        assert_eq!(last.args[0], "--net=/run/netns/zl1-rt");
        assert!(
            last.stdin
                .as_deref()
                .expect("batch")
                .contains("route add 10.244.3.0/24 via 172.20.1.12\n")
        );
        let sysctl_lines: Vec<String> = steps.iter().map(ToString::to_string).collect();
        assert!(sysctl_lines.contains(
            &"nsenter --net=/run/netns/zl1-a-1 sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 \
              net.ipv4.conf.default.rp_filter=0 net.ipv4.conf.default.proxy_arp=1 \
              net.ipv4.conf.eth0.proxy_arp=0"
                .to_string()
        ));
    }

    #[test]
    fn zone_control_plane_hosts_are_routed_slash_32_on_their_zone_bridge() {
        let t = topo().with_zone_control_planes();
        let steps = up_steps(&t);
        let first = steps[0].stdin.as_deref().expect("batch");
        assert!(
            first.ends_with("netns add zl1-cp-a\nnetns add zl1-cp-b\n"),
            "{first}"
        );
        let router = steps[1].stdin.as_deref().expect("batch");
        assert!(router.contains("link add vc1 type veth peer name eth0 netns zl1-cp-b\n"));
        assert!(router.contains("link set vc1 master br-1\n"));
        let host = steps
            .iter()
            .find(|c| c.args.first().map(String::as_str) == Some("--net=/run/netns/zl1-cp-b"))
            .and_then(|c| c.stdin.as_deref())
            .expect("the host's batch");
        assert_eq!(
            host,
            "link set lo up\naddr add 172.20.1.10/32 dev eth0\nlink set eth0 up\n\
             route add 172.20.1.1 dev eth0 scope link\nroute add default via 172.20.1.1 dev eth0\n"
        );
    }

    #[test]
    fn pod_namespaces_are_found_from_host_veths() {
        let out = "1: lo: <LOOPBACK,UP> mtu 65536\n\
                   2: eth0@if7: <BROADCAST> mtu 1500\n\
                   3: zv0a1b2c3d@if2: <BROADCAST> mtu 1500\n\
                   4: zvshort@if2: <BROADCAST> mtu 1500\n";
        assert_eq!(pod_namespaces_from_links("zl1", out), ["zl1-p-0a1b2c3d"]);
    }

    #[test]
    fn pod_wiring_is_routed_slash_32() {
        let t = topo();
        let pod = t.pod_net(&t.nodes[0], "default/web", 2);
        let steps = add_pod_steps(&pod);
        let lines: Vec<String> = steps.iter().map(ToString::to_string).collect();
        // Three processes, none of which copies the mount table (`ip -n`/`ip netns exec`).
        assert_eq!(
            lines,
            [
                format!("ip netns add {}", pod.netns),
                format!("nsenter --net=/run/netns/{} ip -batch -", pod.node),
                format!("nsenter --net=/run/netns/{} ip -batch -", pod.netns),
            ]
        );
        let node = steps[1].stdin.as_deref().expect("batch");
        assert!(node.contains(&format!(
            "route add 10.244.0.2/32 dev {} scope link",
            pod.host_veth
        )));
        assert_eq!(pod_mac(pod.ip), "0a:58:0a:f4:00:02");
        assert!(node.contains(&format!(
            "peer name eth0 address 0a:58:0a:f4:00:02 netns {}",
            pod.netns
        )));
        assert!(node.contains(&format!(
            "neigh add 10.244.0.2 lladdr 0a:58:0a:f4:00:02 dev {} nud permanent",
            pod.host_veth
        )));
        let p = steps[2].stdin.as_deref().expect("batch");
        assert!(p.contains("addr add 10.244.0.2/32 dev eth0\n"));
        assert!(p.contains("route add 169.254.1.1 dev eth0 scope link\n"));
        assert!(
            p.contains("neigh add 169.254.1.1 lladdr ee:ee:ee:ee:ee:ee dev eth0 nud permanent\n")
        );
        assert!(p.contains("route add default via 169.254.1.1 dev eth0\n"));
        let rm: Vec<String> = remove_pod_steps(&pod)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            rm,
            [
                format!(
                    "nsenter --net=/run/netns/{} ip link del {}",
                    pod.node, pod.host_veth
                ),
                format!("ip netns del {}", pod.netns)
            ]
        );
    }
}
