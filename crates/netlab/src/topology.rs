//! Pure address and name plan of a lab: `LabSpec` -> `Topology` (start at [`Topology::new`]).
//!
//! # Layout
//!
//! ```text
//!                         <prefix>-rt  (router, ip_forward=1)
//!        br-0 172.20.0.1/24    br-1 172.20.1.1/24  ...   br-cp 172.20.250.1/24
//!          |  vn0  vn1            |  vn2  vn3                 |  vcp
//!   <prefix>-a-1  <prefix>-a-2  <prefix>-b-1 ...        <prefix>-cp 172.20.250.2/24
//!   eth0 172.20.0.11            eth0 172.20.1.11
//!   pods 10.244.0.0/24          pods 10.244.2.0/24
//!     |  zv<hash8>  (route <podIP>/32 dev zv<hash8>, proxy_arp=1)
//!   <prefix>-p-<hash8>: eth0 <podIP>/32, 169.254.1.1 dev eth0 scope link, default via 169.254.1.1
//! ```
//!
//! Zone `z` (index in `LabSpec::zones`) owns `172.20.z.0/24` with the gateway `.1` on the
//! router's bridge `br-z`; node `n` (1-based) of zone `z` is `172.20.z.(10+n)`. Node `g`
//! (global index, zone-major) gets the pod CIDR `10.244.g.0/24` and the router routes that
//! CIDR via the node IP.
//!
//! Load-balancer node addresses are `172.20.251.<n>` ([`load_balancer_address`]), local to the
//! router namespace where `zonelab balancer` runs; every lab namespace already routes there.
//!
//! Node and control-plane addresses live in 172.20.0.0/16 on purpose: kube-proxy drops new
//! connections to unallocated addresses of the service range (10.96.0.0/12 covers
//! 10.96.0.0 – 10.111.255.255), so node addresses inside it would cut nodes off from the
//! control plane and from each other as soon as the first proxy sync lands.
//!
//! # Why pods are routed /32 (Calico style) and not bridged
//!
//! A pod is attached to its node by a veth pair with no bridge: the pod holds its IP as a /32
//! and reaches everything through the link-local next hop `169.254.1.1`, which the node's end
//! of the veth answers by proxy ARP. Every packet a pod sends or receives is therefore routed
//! at L3 by the node namespace, including traffic between two pods of the same node. That
//! matters for kube-proxy: its DNAT (prerouting) and conntrack see both directions of every
//! connection, so the reply of a same-node backend is un-NATed correctly (with a bridge, the
//! reply would be switched at L2 straight back to the client pod, skipping conntrack, and the
//! client would see the backend's pod IP instead of the ClusterIP and reset the connection).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// Longest allowed lab prefix; it starts every namespace name.
pub const MAX_PREFIX_LEN: usize = 5;
/// Zone subnets are `172.20.<zone>.0/24`; 250 is the control plane, so at most 250 zones.
pub const MAX_ZONES: usize = 250;
/// Node `n` of a zone is `.10+n`, the last usable host is `.254`.
pub const MAX_NODES_PER_ZONE: u32 = 244;
/// Pod CIDRs are `10.244.<global node index>.0/24`.
pub const MAX_NODES: u32 = 256;
/// Third octet of the control-plane subnet `172.20.250.0/24`.
pub const CONTROL_PLANE_OCTET: u8 = 250;
/// Host number of a zone's control-plane host (`172.20.<zone>.10`): below the first node (`.11`).
pub const ZONE_CONTROL_PLANE_HOST: u8 = 10;
/// Third octet of the load balancers' addresses `172.20.251.0/24`: the LB nodes' addresses,
/// held by the namespace the balancer runs in (the router's), routed to by nobody else.
pub const LOAD_BALANCER_OCTET: u8 = 251;

/// Address `host` (1-254) of the load-balancer range `172.20.251.0/24`.
pub fn load_balancer_address(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(172, 20, LOAD_BALANCER_OCTET, host)
}

/// Hosts of that range the load-balancer controller hands to Services' LB nodes; `.1`-`.15`
/// stay for the lab's own balancers (the API endpoint is `.1`).
pub const LOAD_BALANCER_SERVICE_HOSTS: std::ops::RangeInclusive<u8> = 16..=254;

/// The load-balancer controller's address pool, lowest first.
pub fn load_balancer_service_addresses() -> impl Iterator<Item = Ipv4Addr> {
    LOAD_BALANCER_SERVICE_HOSTS.map(load_balancer_address)
}
/// Longest DNS-1123 label (node names are labels).
const MAX_LABEL_LEN: usize = 63;
/// Pod-side link-local next hop, as Calico uses.
pub const POD_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// First and last host number handed to pods inside a node's /24.
pub const FIRST_POD_HOST: u8 = 2;
pub const LAST_POD_HOST: u8 = 254;

/// What the user asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabSpec {
    /// Per-lab name prefix, `[a-z][a-z0-9]{0,4}`.
    pub prefix: String,
    /// Zone names (DNS-1123 labels), e.g. `["a", "b", "c"]`.
    pub zones: Vec<String>,
    pub nodes_per_zone: u32,
}

/// A spec the address plan cannot hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    #[error("lab prefix {0:?} must match [a-z][a-z0-9]{{0,4}}")]
    BadPrefix(String),
    #[error("zone name {0:?} is not a DNS-1123 label")]
    BadZoneName(String),
    #[error("zone {0:?} is listed twice")]
    DuplicateZone(String),
    #[error("a lab needs at least one zone and one node per zone")]
    Empty,
    #[error("{0} zones do not fit the address plan (at most {MAX_ZONES})")]
    TooManyZones(usize),
    #[error("{0} nodes per zone do not fit the address plan (at most {MAX_NODES_PER_ZONE})")]
    TooManyNodesPerZone(u32),
    #[error("{0} nodes do not fit the pod CIDR plan (at most {MAX_NODES})")]
    TooManyNodes(u64),
    #[error("node name {0:?} is longer than {MAX_LABEL_LEN} characters")]
    NodeNameTooLong(String),
    #[error("unknown zone {0:?}")]
    UnknownZone(String),
    #[error("node name {0:?} is not <prefix>-<zone>-<n> of this lab")]
    BadNodeName(String),
    #[error("node {0:?} is already in the lab")]
    NodeExists(String),
}

/// One zone: its router bridge and subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneNet {
    pub name: String,
    pub index: u8,
    /// Bridge in the router namespace, `br-<index>`.
    pub bridge: String,
    /// `172.20.<index>.1`, on the bridge, /24.
    pub gateway: Ipv4Addr,
    /// `172.20.<index>.0`, /24.
    pub subnet: Ipv4Addr,
}

/// One node: its namespace, uplink and pod CIDR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeNet {
    /// Node name and network namespace name, `<prefix>-<zone>-<n>`.
    pub name: String,
    pub zone: String,
    pub zone_index: u8,
    /// 1-based number inside the zone.
    pub number: u32,
    /// Zone-major index over all nodes; the third octet of the pod CIDR.
    pub global_index: u8,
    /// `172.20.<zone>.<10+n>` on `eth0`, /24.
    pub ip: Ipv4Addr,
    /// Zone gateway, the node's default route.
    pub gateway: Ipv4Addr,
    /// Router-side veth name, `vn<global_index>`.
    pub router_veth: String,
    /// `10.244.<global_index>.0`, /24.
    pub pod_cidr: Ipv4Addr,
}

/// The control-plane namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlPlaneNet {
    pub netns: String,
    pub bridge: String,
    pub router_veth: String,
    /// `172.20.250.2`, /24.
    pub ip: Ipv4Addr,
    /// `172.20.250.1` on `br-cp`.
    pub gateway: Ipv4Addr,
    pub subnet: Ipv4Addr,
}

/// A zone's control-plane host (an etcd member and an API server), wired to the zone's bridge
/// like a node, so zone faults hit it. It holds its address as a /32 routed via the zone
/// gateway: everything it sends, to same-zone nodes too, goes through the router, so replies to
/// connections the router DNATed to it (a load balancer's) are un-NATed there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneControlPlaneNet {
    pub zone: String,
    pub zone_index: u8,
    /// `<prefix>-cp-<zone>`.
    pub netns: String,
    /// `172.20.<zone>.10`, /32 on `eth0`.
    pub ip: Ipv4Addr,
    /// The zone gateway, on link.
    pub gateway: Ipv4Addr,
    /// Router-side veth, `vc<zone index>`.
    pub router_veth: String,
}

/// One pod's network: its namespace, /32 address and host-side veth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodNet {
    pub pod_key: String,
    pub node: String,
    /// `<prefix>-p-<hash8>`.
    pub netns: String,
    pub ip: Ipv4Addr,
    /// Node-side veth, `zv<hash8>`.
    pub host_veth: String,
    /// Pod-side interface name, always `eth0`.
    pub pod_if: String,
}

/// The full, deterministic plan of a lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    pub prefix: String,
    pub router_netns: String,
    pub zones: Vec<ZoneNet>,
    pub nodes: Vec<NodeNet>,
    pub control_plane: ControlPlaneNet,
    /// One control-plane host per zone (empty unless [`Topology::with_zone_control_planes`]).
    #[serde(default)]
    pub zone_control_planes: Vec<ZoneControlPlaneNet>,
}

impl Topology {
    /// Validate `spec` and compute every name and address.
    pub fn new(spec: &LabSpec) -> Result<Topology, TopologyError> {
        validate(spec)?;
        let prefix = spec.prefix.clone();
        let mut zones = Vec::with_capacity(spec.zones.len());
        let mut nodes = Vec::new();
        for (zi, zone) in spec.zones.iter().enumerate() {
            let z = u8::try_from(zi).map_err(|_| TopologyError::TooManyZones(spec.zones.len()))?;
            zones.push(ZoneNet {
                name: zone.clone(),
                index: z,
                bridge: format!("br-{z}"),
                gateway: Ipv4Addr::new(172, 20, z, 1),
                subnet: Ipv4Addr::new(172, 20, z, 0),
            });
            for n in 1..=spec.nodes_per_zone {
                let g = u32::from(z) * spec.nodes_per_zone + (n - 1);
                let g = u8::try_from(g).map_err(|_| TopologyError::TooManyNodes(u64::from(g)))?;
                let host = u8::try_from(10 + n)
                    .map_err(|_| TopologyError::TooManyNodesPerZone(spec.nodes_per_zone))?;
                nodes.push(NodeNet {
                    name: node_name(&prefix, zone, n),
                    zone: zone.clone(),
                    zone_index: z,
                    number: n,
                    global_index: g,
                    ip: Ipv4Addr::new(172, 20, z, host),
                    gateway: Ipv4Addr::new(172, 20, z, 1),
                    router_veth: format!("vn{g}"),
                    pod_cidr: Ipv4Addr::new(10, 244, g, 0),
                });
            }
        }
        let control_plane = ControlPlaneNet {
            netns: format!("{prefix}-cp"),
            bridge: "br-cp".to_string(),
            router_veth: "vcp".to_string(),
            ip: Ipv4Addr::new(172, 20, CONTROL_PLANE_OCTET, 2),
            gateway: Ipv4Addr::new(172, 20, CONTROL_PLANE_OCTET, 1),
            subnet: Ipv4Addr::new(172, 20, CONTROL_PLANE_OCTET, 0),
        };
        Ok(Topology {
            router_netns: format!("{prefix}-rt"),
            prefix,
            zones,
            nodes,
            control_plane,
            zone_control_planes: Vec::new(),
        })
    }

    /// The same plan with a control-plane host in every zone.
    pub fn with_zone_control_planes(mut self) -> Topology {
        self.zone_control_planes = self
            .zones
            .iter()
            .map(|z| ZoneControlPlaneNet {
                zone: z.name.clone(),
                zone_index: z.index,
                netns: format!("{}-cp-{}", self.prefix, z.name),
                ip: Ipv4Addr::new(172, 20, z.index, ZONE_CONTROL_PLANE_HOST),
                gateway: z.gateway,
                router_veth: format!("vc{}", z.index),
            })
            .collect();
        self
    }

    /// The control-plane host of `zone`, if the lab has them.
    pub fn zone_control_plane(&self, zone: &str) -> Option<&ZoneControlPlaneNet> {
        self.zone_control_planes.iter().find(|c| c.zone == zone)
    }

    /// Every namespace a fault on `zone` isolates and powers off: its nodes and its
    /// control-plane host.
    pub fn zone_hosts(&self, zone: &str) -> Vec<String> {
        let mut out: Vec<String> = self.nodes_in_zone(zone).map(|n| n.name.clone()).collect();
        out.extend(self.zone_control_plane(zone).map(|c| c.netns.clone()));
        out
    }

    /// The addresses to drop while `host` (a node or a zone control-plane host) is isolated,
    /// as an nft set; `None` for an unknown name.
    pub fn isolation_set(&self, host: &str) -> Option<String> {
        if let Some(n) = self.node(host) {
            return Some(format!("{{ {}, {}/24 }}", n.ip, n.pod_cidr));
        }
        self.zone_control_planes
            .iter()
            .find(|c| c.netns == host)
            .map(|c| format!("{{ {} }}", c.ip))
    }

    pub fn node(&self, name: &str) -> Option<&NodeNet> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn zone(&self, name: &str) -> Option<&ZoneNet> {
        self.zones.iter().find(|z| z.name == name)
    }

    pub fn nodes_in_zone<'a>(&'a self, zone: &'a str) -> impl Iterator<Item = &'a NodeNet> + 'a {
        self.nodes.iter().filter(move |n| n.zone == zone)
    }

    /// Plan one more node in `zone` named `name` (a node group's new instance, `<prefix>-<zone>-<n>`):
    /// the lowest free host address of the zone's subnet from `.11` and the lowest free global
    /// index (its pod CIDR `10.244.<g>.0/24` and router veth `vn<g>`). The plan is added to
    /// `self.nodes` and returned; nothing is built.
    pub fn add_node(&mut self, zone: &str, name: &str) -> Result<NodeNet, TopologyError> {
        let z = self
            .zone(zone)
            .ok_or_else(|| TopologyError::UnknownZone(zone.to_string()))?
            .clone();
        let number = name
            .strip_prefix(&format!("{}-{zone}-", self.prefix))
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|n| *n >= 1 && is_lab_netns(&self.prefix, name))
            .ok_or_else(|| TopologyError::BadNodeName(name.to_string()))?;
        if self.node(name).is_some() {
            return Err(TopologyError::NodeExists(name.to_string()));
        }
        let hosts: BTreeSet<u8> = self.nodes_in_zone(zone).map(|n| n.ip.octets()[3]).collect();
        let host = (11..=254u8)
            .find(|h| !hosts.contains(h))
            .ok_or(TopologyError::TooManyNodesPerZone(hosts.len() as u32 + 1))?;
        let used: BTreeSet<u8> = self.nodes.iter().map(|n| n.global_index).collect();
        let g = (0..=255u8)
            .find(|g| !used.contains(g))
            .ok_or(TopologyError::TooManyNodes(self.nodes.len() as u64 + 1))?;
        let node = NodeNet {
            name: name.to_string(),
            zone: zone.to_string(),
            zone_index: z.index,
            number,
            global_index: g,
            ip: Ipv4Addr::new(172, 20, z.index, host),
            gateway: z.gateway,
            router_veth: format!("vn{g}"),
            pod_cidr: Ipv4Addr::new(10, 244, g, 0),
        };
        self.nodes.push(node.clone());
        Ok(node)
    }

    /// Drop `name` from the plan (its addresses become free again); the removed node, if any.
    pub fn remove_node(&mut self, name: &str) -> Option<NodeNet> {
        let i = self.nodes.iter().position(|n| n.name == name)?;
        Some(self.nodes.remove(i))
    }

    /// Every namespace of the lab except pods: router, control plane, nodes.
    pub fn infra_namespaces(&self) -> Vec<String> {
        let mut out = vec![self.router_netns.clone(), self.control_plane.netns.clone()];
        out.extend(self.nodes.iter().map(|n| n.name.clone()));
        out.extend(self.zone_control_planes.iter().map(|c| c.netns.clone()));
        out
    }

    /// True when `netns` carries this lab's prefix (`<prefix>-...`).
    pub fn owns_netns(&self, netns: &str) -> bool {
        is_lab_netns(&self.prefix, netns)
    }

    /// Pod namespace name for `pod_key` (any string, e.g. `namespace/name` or a UID).
    pub fn pod_netns(&self, pod_key: &str) -> String {
        format!("{}-p-{}", self.prefix, hash8(pod_key))
    }

    /// The pod network for `pod_key` on `node` with host number `host` in the node's pod CIDR.
    pub fn pod_net(&self, node: &NodeNet, pod_key: &str, host: u8) -> PodNet {
        let h = hash8(pod_key);
        let [a, b, c, _] = node.pod_cidr.octets();
        PodNet {
            pod_key: pod_key.to_string(),
            node: node.name.clone(),
            netns: format!("{}-p-{h}", self.prefix),
            ip: Ipv4Addr::new(a, b, c, host),
            host_veth: format!("zv{h}"),
            pod_if: "eth0".to_string(),
        }
    }
}

/// True when `netns` has a name this lab could have made: `<prefix>-rt`, `<prefix>-cp`,
/// `<prefix>-cp-<zone>`,
/// `<prefix>-p-<8 hex>` or `<prefix>-<zone>-<n>`. Cleanup deletes only such names, so a
/// prefix that happens to match someone else's namespaces (`cni-<uuid>`) spares most of them.
pub fn is_lab_netns(prefix: &str, netns: &str) -> bool {
    let Some(rest) = netns.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    if rest == "rt" || rest == "cp" {
        return true;
    }
    if let Some(zone) = rest.strip_prefix("cp-") {
        return is_dns_label(zone);
    }
    if let Some(h) = rest.strip_prefix("p-") {
        return h.len() == 8 && h.chars().all(|c| c.is_ascii_hexdigit());
    }
    match rest.rsplit_once('-') {
        Some((zone, n)) => {
            is_dns_label(zone)
                && (1..=3).contains(&n.len())
                && n.chars().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

/// Node (and namespace) name: `<prefix>-<zone>-<n>`.
pub fn node_name(prefix: &str, zone: &str, n: u32) -> String {
    format!("{prefix}-{zone}-{n}")
}

/// 8 hex digits of FNV-1a 64 over `key`, folded to 32 bits; stable across runs and builds.
pub fn hash8(key: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:08x}", (h ^ (h >> 32)) as u32)
}

fn validate(spec: &LabSpec) -> Result<(), TopologyError> {
    let p = &spec.prefix;
    let ok_prefix = !p.is_empty()
        && p.len() <= MAX_PREFIX_LEN
        && p.starts_with(|c: char| c.is_ascii_lowercase())
        && p.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !ok_prefix {
        return Err(TopologyError::BadPrefix(p.clone()));
    }
    if spec.zones.is_empty() || spec.nodes_per_zone == 0 {
        return Err(TopologyError::Empty);
    }
    if spec.zones.len() > MAX_ZONES {
        return Err(TopologyError::TooManyZones(spec.zones.len()));
    }
    if spec.nodes_per_zone > MAX_NODES_PER_ZONE {
        return Err(TopologyError::TooManyNodesPerZone(spec.nodes_per_zone));
    }
    let total = spec.zones.len() as u64 * u64::from(spec.nodes_per_zone);
    if total > u64::from(MAX_NODES) {
        return Err(TopologyError::TooManyNodes(total));
    }
    let mut seen = BTreeSet::new();
    for z in &spec.zones {
        if !is_dns_label(z) {
            return Err(TopologyError::BadZoneName(z.clone()));
        }
        if !seen.insert(z.as_str()) {
            return Err(TopologyError::DuplicateZone(z.clone()));
        }
        let longest = node_name(p, z, spec.nodes_per_zone);
        if longest.len() > MAX_LABEL_LEN {
            return Err(TopologyError::NodeNameTooLong(longest));
        }
    }
    Ok(())
}

/// RFC 1123 label: lowercase alphanumerics and '-', alphanumeric at both ends, <= 63 chars.
fn is_dns_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    let edge_ok = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    !s.is_empty()
        && s.len() <= MAX_LABEL_LEN
        && edge_ok(bytes.first())
        && edge_ok(bytes.last())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(prefix: &str, zones: &[&str], n: u32) -> LabSpec {
        LabSpec {
            prefix: prefix.to_string(),
            zones: zones.iter().map(|z| z.to_string()).collect(),
            nodes_per_zone: n,
        }
    }

    #[test]
    fn names_and_addresses_of_a_2x2_lab() {
        let t = Topology::new(&spec("zl1", &["a", "b"], 2)).expect("valid");
        assert_eq!(t.router_netns, "zl1-rt");
        assert_eq!(t.control_plane.netns, "zl1-cp");
        assert_eq!(t.control_plane.ip, Ipv4Addr::new(172, 20, 250, 2));
        let names: Vec<_> = t.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["zl1-a-1", "zl1-a-2", "zl1-b-1", "zl1-b-2"]);
        let b2 = t.node("zl1-b-2").expect("node");
        assert_eq!(b2.ip, Ipv4Addr::new(172, 20, 1, 12));
        assert_eq!(b2.gateway, Ipv4Addr::new(172, 20, 1, 1));
        assert_eq!(b2.pod_cidr, Ipv4Addr::new(10, 244, 3, 0));
        assert_eq!(b2.router_veth, "vn3");
        assert_eq!(t.zones[1].bridge, "br-1");
        assert_eq!(t.nodes_in_zone("a").count(), 2);
        assert_eq!(t.infra_namespaces().len(), 6);
    }

    #[test]
    fn added_nodes_take_the_lowest_free_host_and_pod_cidr() {
        let mut t = Topology::new(&spec("zl1", &["a", "b"], 2)).expect("valid");
        let a3 = t.add_node("a", "zl1-a-3").expect("a-3");
        assert_eq!(a3.ip, Ipv4Addr::new(172, 20, 0, 13));
        assert_eq!(a3.pod_cidr, Ipv4Addr::new(10, 244, 4, 0));
        assert_eq!(a3.router_veth, "vn4");
        assert_eq!(a3.number, 3);
        assert_eq!(t.nodes_in_zone("a").count(), 3);
        // A removed node's addresses are reused; names are the caller's (never reused).
        t.remove_node("zl1-a-1").expect("a-1");
        let a4 = t.add_node("a", "zl1-a-4").expect("a-4");
        assert_eq!(a4.ip, Ipv4Addr::new(172, 20, 0, 11));
        assert_eq!(a4.pod_cidr, Ipv4Addr::new(10, 244, 0, 0));
        assert_eq!(
            t.add_node("a", "zl1-a-4"),
            Err(TopologyError::NodeExists("zl1-a-4".into()))
        );
        assert_eq!(
            t.add_node("c", "zl1-c-1"),
            Err(TopologyError::UnknownZone("c".into()))
        );
        assert_eq!(
            t.add_node("a", "zl1-b-9"),
            Err(TopologyError::BadNodeName("zl1-b-9".into()))
        );
        assert_eq!(
            t.isolation_set("zl1-a-4").as_deref(),
            Some("{ 172.20.0.11, 10.244.0.0/24 }")
        );
    }

    #[test]
    fn zone_control_plane_hosts_sit_on_their_zone_below_the_nodes() {
        let t = Topology::new(&spec("zl1", &["a", "b"], 2))
            .expect("valid")
            .with_zone_control_planes();
        let b = t.zone_control_plane("b").expect("host of b");
        assert_eq!(b.netns, "zl1-cp-b");
        assert_eq!(b.ip, Ipv4Addr::new(172, 20, 1, 10));
        assert_eq!(b.router_veth, "vc1");
        assert!(is_lab_netns("zl1", "zl1-cp-b"));
        assert!(!is_lab_netns("zl1", "zl1-cp-B"));
        assert_eq!(t.zone_hosts("b"), ["zl1-b-1", "zl1-b-2", "zl1-cp-b"]);
        assert_eq!(
            t.isolation_set("zl1-cp-b").as_deref(),
            Some("{ 172.20.1.10 }")
        );
        assert_eq!(
            t.isolation_set("zl1-b-1").as_deref(),
            Some("{ 172.20.1.11, 10.244.2.0/24 }")
        );
        assert_eq!(t.isolation_set("zl1-cp-q"), None);
        assert_eq!(t.infra_namespaces().len(), 8);
        let plain = Topology::new(&spec("zl1", &["a"], 1)).expect("valid");
        assert!(plain.zone_hosts("a") == ["zl1-a-1"] && plain.zone_control_planes.is_empty());
    }

    #[test]
    fn pod_names_are_stable_and_short() {
        let t = Topology::new(&spec("zl1", &["a"], 1)).expect("valid");
        let p = t.pod_net(&t.nodes[0], "default/web-1", 7);
        assert_eq!(p.netns, t.pod_netns("default/web-1"));
        assert!(p.netns.starts_with("zl1-p-") && p.netns.len() == "zl1-p-".len() + 8);
        assert!(p.host_veth.len() <= 15 && p.host_veth.starts_with("zv"));
        assert_eq!(p.ip, Ipv4Addr::new(10, 244, 0, 7));
        assert_eq!(hash8("default/web-1"), hash8("default/web-1"));
        assert_ne!(hash8("default/web-1"), hash8("default/web-2"));
    }

    #[test]
    fn prefix_ownership_does_not_match_longer_prefixes() {
        assert!(is_lab_netns("zl1", "zl1-a-1"));
        assert!(!is_lab_netns("zl1", "zl10-a-1"));
        assert!(!is_lab_netns("zl1", "zl1"));
        assert!(is_lab_netns("zl1", "zl1-rt") && is_lab_netns("zl1", "zl1-cp"));
        assert!(is_lab_netns("zl1", "zl1-zone-b-12"));
        assert!(is_lab_netns("zl1", "zl1-p-0123abcd"));
        assert!(!is_lab_netns("zl1", "zl1-p-xyz"));
        assert!(!is_lab_netns(
            "cni",
            "cni-8c3f1a2b-1234-4e2a-9b1c-0a1b2c3d4e5f"
        ));
    }

    #[test]
    fn bad_specs_are_rejected() {
        let e = |s: LabSpec| Topology::new(&s).expect_err("invalid");
        assert_eq!(
            e(spec("toolong", &["a"], 1)),
            TopologyError::BadPrefix("toolong".into())
        );
        assert_eq!(
            e(spec("1ab", &["a"], 1)),
            TopologyError::BadPrefix("1ab".into())
        );
        assert_eq!(
            e(spec("zl", &["A"], 1)),
            TopologyError::BadZoneName("A".into())
        );
        assert_eq!(
            e(spec("zl", &["a-"], 1)),
            TopologyError::BadZoneName("a-".into())
        );
        assert_eq!(
            e(spec("zl", &["a", "a"], 1)),
            TopologyError::DuplicateZone("a".into())
        );
        assert_eq!(e(spec("zl", &[], 1)), TopologyError::Empty);
        assert_eq!(e(spec("zl", &["a"], 0)), TopologyError::Empty);
        assert_eq!(
            e(spec("zl", &["a"], 245)),
            TopologyError::TooManyNodesPerZone(245)
        );
        assert_eq!(
            e(spec("zl", &["a", "b", "c"], 100)),
            TopologyError::TooManyNodes(300)
        );
        let long = "z".repeat(60);
        assert!(matches!(
            e(spec("zl", &[&long], 10)),
            TopologyError::NodeNameTooLong(_)
        ));
    }

    #[test]
    fn largest_plan_fits() {
        let zones: Vec<String> = (0..4).map(|i| format!("z{i}")).collect();
        let zones: Vec<&str> = zones.iter().map(String::as_str).collect();
        let t = Topology::new(&spec("zl", &zones, 64)).expect("256 nodes fit");
        let last = t.nodes.last().expect("nodes");
        assert_eq!(last.global_index, 255);
        assert_eq!(last.ip, Ipv4Addr::new(172, 20, 3, 74));
    }
}
