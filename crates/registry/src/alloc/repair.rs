//! Rebuild the allocators from the stored Services at start-up (upstream repair loops,
//! `ipallocator/controller/repair.go` and `portallocator/controller/repair.go`).
//!
//! Start at [`ServiceAllocations::rebuild`]; problems come back as [`RepairIssue`]s carrying
//! upstream's event reason and message, never as a panic.

use std::fmt;
use std::net::IpAddr;

use serde_json::Value;

use super::ip::{IpAllocError, IpRange};
use super::port::{PortAllocError, PortRange};
use super::service::ServiceAllocations;
use super::spec::ServiceView;

/// One problem found while rebuilding, worded as upstream's repair-loop Warning event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepairIssue {
    pub namespace: String,
    pub name: String,
    /// Event reason, e.g. `ClusterIPAlreadyAllocated`, `ClusterIPOutOfRange`,
    /// `ClusterIPNotValid`, `PortAlreadyAllocated`, `PortOutOfRange`.
    pub reason: &'static str,
    pub message: String,
}

impl fmt::Display for RepairIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "service {}/{}: {}: {}",
            self.namespace, self.name, self.reason, self.message
        )
    }
}

impl ServiceAllocations {
    /// Fresh allocators with every stored Service's ClusterIP, node ports and health-check
    /// node port marked. Duplicates, out-of-range and malformed values are reported (first
    /// holder in iteration order keeps the address), not fatal.
    pub fn rebuild<'a>(
        ip_range: IpRange,
        port_range: PortRange,
        services: impl IntoIterator<Item = &'a Value>,
    ) -> (ServiceAllocations, Vec<RepairIssue>) {
        let mut alloc = ServiceAllocations::new(ip_range, port_range);
        let mut issues = Vec::new();
        for svc in services {
            let view = ServiceView::of(svc);
            let mut report = |reason: &'static str, message: String| {
                issues.push(RepairIssue {
                    namespace: view.namespace.clone(),
                    name: view.name.clone(),
                    reason,
                    message,
                });
            };
            if view.needs_cluster_ip()
                && !view.is_headless()
                && let Some((reason, message)) = alloc.mark_ip(&view)
            {
                report(reason, message);
            }
            // Spec order, each number once (a port shared by TCP and UDP is one allocation).
            let mut ports: Vec<i64> = Vec::new();
            let listed = view.ports.iter().map(|p| p.node_port);
            for port in listed.chain([view.health_check_node_port]) {
                if port != 0 && !ports.contains(&port) {
                    ports.push(port);
                }
            }
            for port in ports {
                if let Some((reason, message)) = alloc.mark_port(port) {
                    report(reason, message);
                }
            }
        }
        (alloc, issues)
    }

    fn mark_ip(&mut self, view: &ServiceView) -> Option<(&'static str, String)> {
        let text = view.cluster_ips.first()?;
        let Ok(ip) = text.parse::<IpAddr>() else {
            return Some((
                "ClusterIPNotValid",
                format!("Cluster IP {text} is not a valid IP; please recreate service"),
            ));
        };
        match self.ips.allocate(ip) {
            Ok(()) | Err(IpAllocError::Full) => None,
            Err(IpAllocError::Allocated) => Some((
                "ClusterIPAlreadyAllocated",
                format!(
                    "Cluster IP [{}]:{ip} was assigned to multiple services; please recreate service",
                    family(ip)
                ),
            )),
            Err(IpAllocError::NotInRange { range, .. }) => Some((
                "ClusterIPOutOfRange",
                format!(
                    "Cluster IP [{}]:{ip} is not within the service CIDR {range}; please recreate service",
                    family(ip)
                ),
            )),
        }
    }

    fn mark_port(&mut self, port: i64) -> Option<(&'static str, String)> {
        let as_u32 = u32::try_from(port).unwrap_or(u32::MAX);
        match self.ports.allocate(as_u32) {
            Ok(()) | Err(PortAllocError::Full) => None,
            Err(PortAllocError::Allocated) => Some((
                "PortAlreadyAllocated",
                format!("Port {port} was assigned to multiple services; please recreate service"),
            )),
            Err(PortAllocError::NotInRange(range)) => Some((
                "PortOutOfRange",
                format!(
                    "Port {port} is not within the port range {range}; please recreate service"
                ),
            )),
        }
    }
}

fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
}
