//! ClusterIP and NodePort allocation for Service create and delete (upstream `storage/alloc.go`).
//!
//! Start at [`ServiceAllocations::allocate_for_create`]; updates live in `update.rs` and the
//! start-up rebuild in `repair.rs`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use api::status::{Cause, StatusError};
use rand::Rng;
use serde_json::{Map, Value, json};

use super::ip::{IpAllocator, IpRange, first_ip};
use super::port::{PortAllocator, PortRange};
use super::spec::{
    CLUSTER_IP_NONE, ServiceView, cluster_ips_cause, invalid, set_cluster_ips,
    set_health_check_node_port, set_node_port, spec_mut,
};

/// What one request took from the allocators, so it can be given back
/// ([`ServiceAllocations::release`]) if the store write fails.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allocated {
    pub cluster_ips: Vec<Ipv4Addr>,
    /// Service node ports and the health-check node port.
    pub node_ports: Vec<u16>,
}

impl Allocated {
    /// Whether nothing was taken.
    pub fn is_empty(&self) -> bool {
        self.cluster_ips.is_empty() && self.node_ports.is_empty()
    }
}

/// The ClusterIP and NodePort allocators of one API server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAllocations {
    pub(super) ips: IpAllocator,
    pub(super) ports: PortAllocator,
}

/// Namespace and name of the Service that gets [`first_ip`] (upstream bootstrap controller).
pub const KUBERNETES_SERVICE: (&str, &str) = ("default", "kubernetes");

const INVALID_IP_DETAIL: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";

impl ServiceAllocations {
    /// Empty allocators for the two ranges.
    pub fn new(ip_range: IpRange, port_range: PortRange) -> ServiceAllocations {
        ServiceAllocations {
            ips: IpAllocator::new(ip_range),
            ports: PortAllocator::new(port_range),
        }
    }

    /// The ClusterIP allocator (read-only).
    pub fn ips(&self) -> &IpAllocator {
        &self.ips
    }

    /// The NodePort allocator (read-only).
    pub fn ports(&self) -> &PortAllocator {
        &self.ports
    }

    /// The `kubernetes` Service's ClusterIP: the first usable address of the range. A create of
    /// `default/kubernetes` without a clusterIP is given this address instead of a random one.
    pub fn kubernetes_ip(&self) -> Ipv4Addr {
        first_ip(self.ips.range())
    }

    /// Allocates for a new Service and writes `spec.clusterIP(s)`, `spec.ipFamilies`,
    /// `spec.ipFamilyPolicy` and node ports into `svc`. On error nothing stays allocated and
    /// `svc` is unchanged. Release the result with [`Self::release`] if the store write fails.
    pub fn allocate_for_create(
        &mut self,
        svc: &mut Value,
        rng: &mut impl Rng,
    ) -> Result<Allocated, StatusError> {
        let mut work = svc.clone();
        let mut taken = Allocated::default();
        match self.create_into(&mut work, rng, &mut taken) {
            Ok(()) => {
                *svc = work;
                Ok(taken)
            }
            Err(e) => {
                self.release(&taken);
                Err(e)
            }
        }
    }

    fn create_into(
        &mut self,
        svc: &mut Value,
        rng: &mut impl Rng,
        taken: &mut Allocated,
    ) -> Result<(), StatusError> {
        let view = ServiceView::of(svc);
        if view.needs_cluster_ip() {
            let spec = spec_mut(svc)?;
            init_ip_families(spec, &view)?;
            self.alloc_cluster_ips(spec, &view, rng, taken)?;
        }
        let spec = spec_mut(svc)?;
        if view.needs_node_ports() {
            self.init_node_ports(spec, &view, rng, taken)?;
        }
        if view.needs_health_check() {
            self.alloc_health_check(spec, view.health_check_node_port, rng, taken)?;
        }
        Ok(())
    }

    /// Gives back everything in `allocated` (e.g. after a failed store write).
    pub fn release(&mut self, allocated: &Allocated) {
        for ip in &allocated.cluster_ips {
            self.ips.release(IpAddr::V4(*ip));
        }
        for port in &allocated.node_ports {
            self.ports.release(u32::from(*port));
        }
    }

    /// Releases a deleted Service's ClusterIP, node ports and health-check node port.
    pub fn release_service(&mut self, svc: &Value) {
        let view = ServiceView::of(svc);
        if view.needs_cluster_ip()
            && let Some(ip) = view.primary_ipv4()
        {
            self.ips.release(IpAddr::V4(ip));
        }
        for port in view.node_ports() {
            self.release_port(port);
        }
        if view.needs_health_check() && view.health_check_node_port != 0 {
            self.release_port(view.health_check_node_port);
        }
    }

    /// What a stored Service holds in this server's ranges: its primary ClusterIP, node ports
    /// and health-check node port (the values [`Self::release_service`] gives back).
    pub fn held_by(&self, svc: &Value) -> Allocated {
        let view = ServiceView::of(svc);
        let mut held = Allocated::default();
        if view.needs_cluster_ip()
            && let Some(ip) = view.primary_ipv4()
            && self.ips.contains(IpAddr::V4(ip))
        {
            held.cluster_ips.push(ip);
        }
        let mut ports = view.node_ports();
        if view.needs_health_check() && view.health_check_node_port != 0 {
            ports.insert(view.health_check_node_port);
        }
        held.node_ports = ports
            .into_iter()
            .filter_map(|p| u16::try_from(p).ok())
            .filter(|&p| self.ports.contains(u32::from(p)))
            .collect();
        held
    }

    /// Replaces the bitmaps' contents with `taken` (the reservations in the store): the bitmaps
    /// are a cache of the store's reservations, refreshed when they disagree with it.
    pub fn reset_to(&mut self, taken: &Allocated) {
        self.ips = IpAllocator::new(*self.ips.range());
        self.ports = PortAllocator::new(*self.ports.range());
        self.mark(taken);
    }

    /// Marks `taken` as in use (already held elsewhere; values outside the ranges are ignored).
    pub fn mark(&mut self, taken: &Allocated) {
        for ip in &taken.cluster_ips {
            let _ = self.ips.allocate(IpAddr::V4(*ip));
        }
        for port in &taken.node_ports {
            let _ = self.ports.allocate(u32::from(*port));
        }
    }

    pub(super) fn release_port(&mut self, port: i64) {
        if let Ok(p) = u32::try_from(port) {
            self.ports.release(p);
        }
    }

    /// Allocates the primary ClusterIP (requested or dynamic) unless headless.
    pub(super) fn alloc_cluster_ips(
        &mut self,
        spec: &mut Map<String, Value>,
        view: &ServiceView,
        rng: &mut impl Rng,
        taken: &mut Allocated,
    ) -> Result<(), StatusError> {
        if view.is_headless() {
            set_cluster_ips(spec, &[CLUSTER_IP_NONE.to_string()]);
            return Ok(());
        }
        let requested = view.cluster_ips.first().map(String::as_str).unwrap_or("");
        let is_kubernetes = (view.namespace.as_str(), view.name.as_str()) == KUBERNETES_SERVICE;
        let ip = if requested.is_empty() && !is_kubernetes {
            let ip = self.ips.allocate_next(rng).map_err(|e| {
                StatusError::internal(format!("failed to allocate a serviceIP: {e}"))
            })?;
            IpAddr::V4(ip)
        } else {
            let text = if requested.is_empty() {
                self.kubernetes_ip().to_string()
            } else {
                requested.to_string()
            };
            let ip: IpAddr = text.parse().map_err(|_| {
                invalid(
                    &view.name,
                    vec![Cause::invalid(
                        "spec.clusterIPs[0]",
                        &json!(text),
                        INVALID_IP_DETAIL,
                    )],
                )
            })?;
            self.ips.allocate(ip).map_err(|e| {
                let shown = if view.cluster_ips.is_empty() {
                    vec![text.clone()]
                } else {
                    view.cluster_ips.clone()
                };
                let detail = format!("failed to allocate IP {text}: {e}");
                invalid(
                    &view.name,
                    vec![cluster_ips_cause("spec.clusterIPs", &shown, &detail)],
                )
            })?;
            ip
        };
        if let IpAddr::V4(v4) = ip {
            taken.cluster_ips.push(v4);
        }
        set_cluster_ips(spec, &[ip.to_string()]);
        Ok(())
    }

    /// Upstream `initNodePorts`: ports sharing a `port` number share a node port; requested
    /// node ports are reserved, missing ones allocated when the type allows it.
    fn init_node_ports(
        &mut self,
        spec: &mut Map<String, Value>,
        view: &ServiceView,
        rng: &mut impl Rng,
        taken: &mut Allocated,
    ) -> Result<(), StatusError> {
        let mut by_port: BTreeMap<i64, i64> = BTreeMap::new();
        for (i, p) in view.ports.iter().enumerate() {
            if p.node_port == 0 && !view.should_allocate_node_ports() {
                continue;
            }
            match by_port.get(&p.port).copied() {
                None => {
                    let requested = view
                        .ports
                        .iter()
                        .find(|q| q.port == p.port && q.node_port != 0)
                        .map(|q| q.node_port);
                    let np = match requested {
                        Some(np) => {
                            self.take_port(np, i, &view.name, taken)?;
                            np
                        }
                        None => self.take_next_port(rng, taken)?,
                    };
                    set_node_port(spec, i, np);
                    by_port.insert(p.port, np);
                }
                Some(shared) if p.node_port != shared => {
                    if p.node_port == 0 {
                        set_node_port(spec, i, shared);
                    } else {
                        self.take_port(p.node_port, i, &view.name, taken)?;
                    }
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Reserves a requested node port; failures are 422 on `spec.ports[i].nodePort`.
    pub(super) fn take_port(
        &mut self,
        port: i64,
        index: usize,
        name: &str,
        taken: &mut Allocated,
    ) -> Result<(), StatusError> {
        let as_u32 = u32::try_from(port).unwrap_or(u32::MAX);
        match self.ports.allocate(as_u32) {
            Ok(()) => {
                taken.node_ports.push(as_u32 as u16);
                Ok(())
            }
            Err(e) => {
                let field = format!("spec.ports[{index}].nodePort");
                Err(invalid(
                    name,
                    vec![Cause::invalid(field, &json!(port), &e.to_string())],
                ))
            }
        }
    }

    /// Allocates any node port; a full range is a 500 as upstream.
    pub(super) fn take_next_port(
        &mut self,
        rng: &mut impl Rng,
        taken: &mut Allocated,
    ) -> Result<i64, StatusError> {
        let port = self
            .ports
            .allocate_next(rng)
            .map_err(|e| StatusError::internal(format!("failed to allocate a nodePort: {e}")))?;
        taken.node_ports.push(port);
        Ok(i64::from(port))
    }

    /// Upstream `allocHealthCheckNodePort`: reserve the requested one or allocate any.
    pub(super) fn alloc_health_check(
        &mut self,
        spec: &mut Map<String, Value>,
        requested: i64,
        rng: &mut impl Rng,
        taken: &mut Allocated,
    ) -> Result<(), StatusError> {
        if requested != 0 {
            let as_u32 = u32::try_from(requested).unwrap_or(u32::MAX);
            self.ports.allocate(as_u32).map_err(|e| {
                StatusError::internal(format!(
                    "failed to allocate requested HealthCheck NodePort {requested}: {e}"
                ))
            })?;
            taken.node_ports.push(as_u32 as u16);
        } else {
            let port = self.ports.allocate_next(rng).map_err(|e| {
                StatusError::internal(format!("failed to allocate a HealthCheck NodePort 0: {e}"))
            })?;
            taken.node_ports.push(port);
            set_health_check_node_port(spec, i64::from(port));
        }
        Ok(())
    }
}

/// Upstream `initIPFamilyFields` for a single-stack IPv4 cluster: defaults `ipFamilyPolicy`
/// and `ipFamilies`, and rejects dual-stack or IPv6 requests with upstream's texts.
pub(super) fn init_ip_families(
    spec: &mut Map<String, Value>,
    view: &ServiceView,
) -> Result<(), StatusError> {
    let headless_selectorless = view.is_headless() && view.selector_empty;
    let policy = view.ip_family_policy.clone().unwrap_or_else(|| {
        if headless_selectorless {
            "RequireDualStack".into()
        } else {
            "SingleStack".into()
        }
    });
    let mut families = view.ip_families.clone();
    let mut causes = Vec::new();
    if policy == "SingleStack" && view.cluster_ips.len() == 2 {
        causes.push(Cause::invalid(
            "spec.ipFamilyPolicy",
            &json!(policy),
            "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified",
        ));
    }
    for (i, ip) in view.cluster_ips.iter().enumerate() {
        if ip == CLUSTER_IP_NONE {
            break;
        }
        if i >= families.len() {
            match ip.parse::<IpAddr>() {
                Ok(IpAddr::V6(_)) => causes.push(cluster_ips_cause(
                    &format!("spec.clusterIPs[{i}]"),
                    &view.cluster_ips,
                    "IPv6 is not configured on this cluster",
                )),
                Ok(IpAddr::V4(_)) => families.push("IPv4".into()),
                Err(_) => causes.push(Cause::invalid(
                    format!("spec.clusterIPs[{i}]"),
                    &json!(ip),
                    INVALID_IP_DETAIL,
                )),
            }
        }
    }
    if !causes.is_empty() {
        return Err(invalid(&view.name, causes));
    }
    if headless_selectorless {
        if families.is_empty() {
            families.push("IPv4".into());
        }
        if families.len() < 2 && policy != "SingleStack" {
            let alt = if families[0] == "IPv4" {
                "IPv6"
            } else {
                "IPv4"
            };
            families.push(alt.into());
        }
    } else {
        if policy == "RequireDualStack" {
            causes.push(Cause::invalid(
                "spec.ipFamilyPolicy",
                &json!(policy),
                "this cluster is not configured for dual-stack services",
            ));
        }
        for (i, family) in families.iter().enumerate() {
            if family != "IPv4" {
                let field = format!("spec.ipFamilies[{i}]");
                causes.push(Cause::invalid(
                    field,
                    &json!(family),
                    "not configured on this cluster",
                ));
            }
        }
        if !causes.is_empty() {
            return Err(invalid(&view.name, causes));
        }
        if families.is_empty() {
            families.push("IPv4".into());
        }
    }
    spec.insert("ipFamilies".into(), json!(families));
    spec.insert("ipFamilyPolicy".into(), json!(policy));
    Ok(())
}
