//! The proxy's input model: service ports and endpoints as kube-proxy sees them, with
//! upstream's names and defaults. Start at [`ServicePort`] and [`Endpoint`]; the
//! [`crate::tracker::Tracker`] builds them from Service and EndpointSlice objects.

use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Milliseconds since the Unix epoch, passed in by the driver (wall clock live, virtual in
/// the simulator): the runtime crate's, shared with the controllers and the kubelet.
pub use runtime::Moment;

/// Default ClientIP session-affinity timeout: 10800 s (k8s.io/api core/v1
/// `DefaultClientIPServiceAffinitySeconds`; docs virtual-ips.md).
pub const DEFAULT_AFFINITY_TIMEOUT_S: u32 = 10_800;

/// L4 protocol of a service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// Parses the Kubernetes spelling (`TCP`, `UDP`, `SCTP`); `None` defaults to TCP as the API does.
    pub fn from_k8s(p: Option<&str>) -> Option<Protocol> {
        match p.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// Lower-case name as used in nft (`tcp`) and in upstream's chain-name hashes.
    pub fn lower(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// `namespace/name` of a Service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    pub namespace: String,
    pub name: String,
}

impl ServiceKey {
    pub fn new(namespace: &str, name: &str) -> ServiceKey {
        ServiceKey {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One port of a Service: upstream's `ServicePortName` plus the protocol.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServicePortName {
    pub service: ServiceKey,
    /// The port's name (`""` for a single unnamed port).
    pub port: String,
    pub protocol: Protocol,
}

impl ServicePortName {
    pub fn new(namespace: &str, name: &str, port: &str, protocol: Protocol) -> ServicePortName {
        ServicePortName {
            service: ServiceKey::new(namespace, name),
            port: port.to_string(),
            protocol,
        }
    }
}

/// `ns/svc:port` (`ns/svc` when the port is unnamed), upstream `ServicePortName.String()`.
impl fmt::Display for ServicePortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.port.is_empty() {
            write!(f, "{}", self.service)
        } else {
            write!(f, "{}:{}", self.service, self.port)
        }
    }
}

/// `Cluster` or `Local` traffic policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TrafficPolicy {
    #[default]
    Cluster,
    Local,
}

impl TrafficPolicy {
    fn from_k8s(p: Option<&str>) -> TrafficPolicy {
        match p {
            Some("Local") => TrafficPolicy::Local,
            _ => TrafficPolicy::Cluster,
        }
    }
}

/// A service port the proxy programs: its ClusterIP and, for NodePort and LoadBalancer
/// Services, its external destinations (upstream `BaseServicePortInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServicePort {
    pub name: ServicePortName,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    /// ClientIP session affinity timeout in seconds; `None` without affinity.
    pub affinity_timeout_s: Option<u32>,
    pub internal_traffic_policy: TrafficPolicy,
    /// `Local` only for externally accessible Services (upstream `ExternalPolicyLocal`).
    pub external_traffic_policy: TrafficPolicy,
    /// `spec.ports[].nodePort` (`None` when 0).
    pub node_port: Option<u16>,
    /// `spec.externalIPs` (IPv4 ones).
    pub external_ips: Vec<Ipv4Addr>,
    /// `status.loadBalancer.ingress[].ip` of a `type: LoadBalancer` Service (ingress points
    /// with `ipMode: Proxy` excluded, as upstream).
    pub load_balancer_ips: Vec<Ipv4Addr>,
    /// `spec.loadBalancerSourceRanges` that parse (surrounding blanks ignored, as upstream).
    pub load_balancer_source_ranges: Vec<Cidr>,
    /// `spec.healthCheckNodePort` of a LoadBalancer with `externalTrafficPolicy: Local`
    /// (upstream `NeedsHealthCheck`), else `None`.
    pub health_check_node_port: Option<u16>,
}

impl ServicePort {
    /// Has a NodePort, an external IP or a load-balancer IP (upstream
    /// `servicePortInfo.ExternallyAccessible`).
    pub fn externally_accessible(&self) -> bool {
        self.node_port.is_some()
            || !self.external_ips.is_empty()
            || !self.load_balancer_ips.is_empty()
    }

    /// External traffic goes only to node-local endpoints.
    pub fn external_policy_local(&self) -> bool {
        self.external_traffic_policy == TrafficPolicy::Local
    }

    /// Sends some traffic by the `Cluster` policy (upstream `UsesClusterEndpoints`: also with
    /// an external `Local` policy, for the short-circuit of pod and host traffic).
    pub fn uses_cluster_endpoints(&self) -> bool {
        self.internal_traffic_policy == TrafficPolicy::Cluster || self.externally_accessible()
    }

    /// Sends some traffic by the `Local` policy (upstream `UsesLocalEndpoints`).
    pub fn uses_local_endpoints(&self) -> bool {
        self.internal_traffic_policy == TrafficPolicy::Local
            || (self.external_policy_local() && self.externally_accessible())
    }
}

/// One endpoint of a service port, parsed with upstream kube-proxy's rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    /// Shared by every copy of the endpoint (tracker, merged endpoints, plans).
    pub node_name: Option<Arc<str>>,
    pub zone: Option<Arc<str>>,
    /// `hints.forZones[].name` (upstream `ZoneHints()`); `None` without hints (an empty
    /// list counts as none, as upstream's empty set).
    pub zone_hints: Option<Arc<[Arc<str>]>>,
}

impl Endpoint {
    /// `IP:port`, the string upstream sorts endpoints by.
    pub fn addr_string(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }
}

/// An IPv4 CIDR such as `10.0.0.0/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

/// A CIDR string that is not `a.b.c.d/n` with n <= 32.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid IPv4 CIDR {0:?}")]
pub struct CidrError(pub String);

impl Cidr {
    /// Parses `a.b.c.d/n` (host bits are masked off).
    pub fn parse(s: &str) -> Result<Cidr, CidrError> {
        let err = || CidrError(s.to_string());
        let (ip, len) = s.trim().split_once('/').ok_or_else(err)?;
        let addr: Ipv4Addr = ip.parse().map_err(|_| err())?;
        let prefix: u8 = len.parse().map_err(|_| err())?;
        if prefix > 32 {
            return Err(err());
        }
        Ok(Cidr {
            addr: Ipv4Addr::from(u32::from(addr) & Cidr::mask(prefix)),
            prefix,
        })
    }

    fn mask(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        }
    }

    /// True if `ip` is inside this CIDR.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Cidr::mask(self.prefix) == u32::from(self.addr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Parses the ports of a Service into [`ServicePort`]s. Services without an IPv4 ClusterIP
/// (headless, ExternalName, IPv6) yield none: this proxy programs the `ip` family only.
pub fn service_ports(svc: &k8s_openapi::api::core::v1::Service) -> Vec<ServicePort> {
    let namespace = svc.metadata.namespace.as_deref().unwrap_or("default");
    let Some(name) = svc.metadata.name.as_deref() else {
        return Vec::new();
    };
    let Some(spec) = svc.spec.as_ref() else {
        return Vec::new();
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Vec::new();
    }
    let Some(cluster_ip) = spec
        .cluster_ip
        .as_deref()
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
    else {
        return Vec::new();
    };
    let affinity_timeout_s = if spec.session_affinity.as_deref() == Some("ClientIP") {
        let configured = spec
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok());
        Some(configured.unwrap_or(DEFAULT_AFFINITY_TIMEOUT_S))
    } else {
        None
    };
    let internal = TrafficPolicy::from_k8s(spec.internal_traffic_policy.as_deref());
    let ext = external_fields(svc);
    let mut out = Vec::new();
    for p in spec.ports.iter().flatten() {
        let Some(protocol) = Protocol::from_k8s(p.protocol.as_deref()) else {
            continue;
        };
        let Ok(port) = u16::try_from(p.port) else {
            continue;
        };
        out.push(ServicePort {
            name: ServicePortName::new(namespace, name, p.name.as_deref().unwrap_or(""), protocol),
            cluster_ip,
            port,
            affinity_timeout_s,
            internal_traffic_policy: internal,
            external_traffic_policy: ext.policy,
            node_port: p
                .node_port
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| *n != 0),
            external_ips: ext.external_ips.clone(),
            load_balancer_ips: ext.load_balancer_ips.clone(),
            load_balancer_source_ranges: ext.source_ranges.clone(),
            health_check_node_port: ext.health_check_node_port,
        });
    }
    out
}

/// The Service-wide external fields every port shares.
struct ExternalFields {
    policy: TrafficPolicy,
    external_ips: Vec<Ipv4Addr>,
    load_balancer_ips: Vec<Ipv4Addr>,
    source_ranges: Vec<Cidr>,
    health_check_node_port: Option<u16>,
}

/// Upstream `newBaseServiceInfo`: external IPs, load-balancer VIPs (type LoadBalancer only,
/// not `ipMode: Proxy`), source ranges, the external policy (Local only when externally
/// accessible: type NodePort/LoadBalancer or external IPs) and `healthCheckNodePort`
/// (`NeedsHealthCheck`: LoadBalancer + Local).
fn external_fields(svc: &k8s_openapi::api::core::v1::Service) -> ExternalFields {
    let spec = svc.spec.as_ref();
    let ty = spec.and_then(|s| s.type_.as_deref()).unwrap_or("ClusterIP");
    let external_ips: Vec<Ipv4Addr> = spec
        .and_then(|s| s.external_ips.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|ip| ip.trim().parse().ok())
        .collect();
    let load_balancer_ips: Vec<Ipv4Addr> = if ty == "LoadBalancer" {
        svc.status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter(|i| i.ip_mode.as_deref() != Some("Proxy"))
            .filter_map(|i| i.ip.as_deref()?.parse().ok())
            .collect()
    } else {
        Vec::new()
    };
    let source_ranges = spec
        .and_then(|s| s.load_balancer_source_ranges.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|r| Cidr::parse(r.trim()).ok())
        .collect();
    let accessible = matches!(ty, "NodePort" | "LoadBalancer")
        || (ty == "ClusterIP" && !external_ips.is_empty());
    let policy = if accessible {
        TrafficPolicy::from_k8s(spec.and_then(|s| s.external_traffic_policy.as_deref()))
    } else {
        TrafficPolicy::Cluster
    };
    let health_check_node_port = (ty == "LoadBalancer" && policy == TrafficPolicy::Local)
        .then(|| spec.and_then(|s| s.health_check_node_port))
        .flatten()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0);
    ExternalFields {
        policy,
        external_ips,
        load_balancer_ips,
        source_ranges,
        health_check_node_port,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_name_display_omits_empty_port() {
        let named = ServicePortName::new("ns1", "svc1", "p80", Protocol::Tcp);
        assert_eq!(named.to_string(), "ns1/svc1:p80");
        let unnamed = ServicePortName::new("ns1", "svc1", "", Protocol::Udp);
        assert_eq!(unnamed.to_string(), "ns1/svc1");
    }

    #[test]
    fn cidr_parse_and_contains() {
        let c = Cidr::parse("172.30.0.0/16").expect("cidr");
        assert!(c.contains("172.30.0.50".parse().expect("ip")));
        assert!(!c.contains("172.31.0.1".parse().expect("ip")));
        assert_eq!(
            Cidr::parse("10.1.2.3/8").expect("cidr").to_string(),
            "10.0.0.0/8"
        );
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("10.0.0.0").is_err());
    }

    #[test]
    fn service_parsing_defaults() {
        let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "ns5", "name": "svc5"},
            "spec": {"clusterIP": "172.30.0.45", "sessionAffinity": "ClientIP",
                     "ports": [{"name": "p80", "port": 80}, {"name": "d", "port": 53, "protocol": "UDP"}]}
        }))
        .expect("service");
        let ports = service_ports(&svc);
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[0].affinity_timeout_s, Some(10_800));
        assert_eq!(ports[0].name.protocol, Protocol::Tcp);
        assert_eq!(ports[1].name.protocol, Protocol::Udp);
        let headless: k8s_openapi::api::core::v1::Service =
            serde_json::from_value(serde_json::json!({
                "metadata": {"namespace": "a", "name": "b"},
                "spec": {"clusterIP": "None", "ports": [{"port": 80}]}
            }))
            .expect("service");
        assert!(service_ports(&headless).is_empty());
    }
}
