//! ClusterIP and NodePort changes on Service update (upstream `storage/alloc.go`
//! `allocateUpdate`, `patchAllocatedValues` and `dropTypeDependentFields`).
//!
//! Start at [`ServiceAllocations::allocate_for_update`]; it returns an [`UpdateAllocation`]
//! that the caller finishes with [`ServiceAllocations::commit_update`] once the store write
//! succeeded, or [`ServiceAllocations::abort_update`] if it failed.

use std::collections::BTreeSet;

use api::status::{Cause, StatusError};
use rand::Rng;
use serde_json::{Map, Value, json};

use super::service::{Allocated, ServiceAllocations, init_ip_families};
use super::spec::{
    ServiceView, clear_cluster_ip_fields, invalid, set_cluster_ips, set_health_check_node_port,
    set_node_port, spec_mut,
};

/// The allocator side of one Service update.
///
/// `allocated` was taken now: give it back with [`ServiceAllocations::abort_update`] if the
/// store write fails. `release_on_commit` is still held and must be released with
/// [`ServiceAllocations::commit_update`] only after the write succeeded (upstream releases
/// deferred values at commit, so a failed write never frees an address still in use).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpdateAllocation {
    pub allocated: Allocated,
    pub release_on_commit: Allocated,
}

impl ServiceAllocations {
    /// Applies an update's allocation changes to `new` (carrying over clusterIP and node ports
    /// the client left empty, clearing type-dependent fields on a type change, allocating what
    /// the new type needs). On error nothing changed and `new` is untouched.
    pub fn allocate_for_update(
        &mut self,
        old: &Value,
        new: &mut Value,
        rng: &mut impl Rng,
    ) -> Result<UpdateAllocation, StatusError> {
        let mut work = new.clone();
        let mut out = UpdateAllocation::default();
        match self.update_into(old, &mut work, rng, &mut out) {
            Ok(()) => {
                *new = work;
                Ok(out)
            }
            Err(e) => {
                self.release(&out.allocated);
                Err(e)
            }
        }
    }

    /// The store write succeeded: release what the old object held and the new one does not.
    pub fn commit_update(&mut self, update: &UpdateAllocation) {
        self.release(&update.release_on_commit);
    }

    /// The store write failed: give back what the update allocated.
    pub fn abort_update(&mut self, update: &UpdateAllocation) {
        self.release(&update.allocated);
    }

    fn update_into(
        &mut self,
        old_svc: &Value,
        new_svc: &mut Value,
        rng: &mut impl Rng,
        out: &mut UpdateAllocation,
    ) -> Result<(), StatusError> {
        let old = ServiceView::of(old_svc);
        {
            let view = ServiceView::of(new_svc);
            let spec = spec_mut(new_svc)?;
            drop_type_dependent_fields(spec, &old, &view);
        }
        {
            let view = ServiceView::of(new_svc);
            let spec = spec_mut(new_svc)?;
            patch_allocated_values(spec, &old, &view);
        }
        self.update_cluster_ips(&old, new_svc, rng, out)?;
        let view = ServiceView::of(new_svc);
        let spec = spec_mut(new_svc)?;
        if old.needs_node_ports() && !view.needs_node_ports() {
            for port in old.node_ports() {
                push_port(&mut out.release_on_commit, port);
            }
        }
        if view.needs_node_ports() {
            self.update_node_ports(spec, &old, &view, rng, out)?;
        }
        self.update_health_check(spec, &old, &view, rng, out)
    }

    fn update_cluster_ips(
        &mut self,
        old: &ServiceView,
        new_svc: &mut Value,
        rng: &mut impl Rng,
        out: &mut UpdateAllocation,
    ) -> Result<(), StatusError> {
        let view = ServiceView::of(new_svc);
        let spec = spec_mut(new_svc)?;
        if !old.needs_cluster_ip() {
            if view.needs_cluster_ip() {
                init_ip_families(spec, &view)?;
                self.alloc_cluster_ips(spec, &view, rng, &mut out.allocated)?;
            }
            return Ok(());
        }
        if !view.needs_cluster_ip() {
            if !old.is_headless()
                && let Some(ip) = old.primary_ipv4()
            {
                out.release_on_commit.cluster_ips.push(ip);
            }
            return Ok(());
        }
        let (old_ip, new_ip) = (old.cluster_ips.first(), view.cluster_ips.first());
        if old_ip.is_some() && old_ip != new_ip {
            let shown = new_ip.cloned().unwrap_or_default();
            let cause = Cause::invalid(
                "spec.clusterIPs[0]",
                &json!(shown),
                "may not change once set",
            );
            return Err(invalid(&view.name, vec![cause]));
        }
        for key in ["ipFamilies", "ipFamilyPolicy"] {
            if !spec.contains_key(key)
                && let Some(v) = old_field(old, key)
            {
                spec.insert(key.into(), v);
            }
        }
        Ok(())
    }

    /// Upstream `updateNodePorts`: reserve newly requested node ports, allocate missing ones,
    /// and release (at commit) old ones no longer used.
    fn update_node_ports(
        &mut self,
        spec: &mut Map<String, Value>,
        old: &ServiceView,
        view: &ServiceView,
        rng: &mut impl Rng,
        out: &mut UpdateAllocation,
    ) -> Result<(), StatusError> {
        let old_numbers = if old.needs_node_ports() {
            old.node_ports()
        } else {
            BTreeSet::new()
        };
        let mut taken_now: BTreeSet<i64> = BTreeSet::new();
        let mut seen: BTreeSet<(String, i64)> = BTreeSet::new();
        let mut new_numbers = BTreeSet::new();
        for (i, p) in view.ports.iter().enumerate() {
            if p.node_port == 0 && !view.should_allocate_node_ports() {
                continue;
            }
            let np = if p.node_port != 0 {
                if !old_numbers.contains(&p.node_port) && !taken_now.contains(&p.node_port) {
                    self.take_port(p.node_port, i, &view.name, &mut out.allocated)?;
                    taken_now.insert(p.node_port);
                }
                p.node_port
            } else {
                let np = self.take_next_port(rng, &mut out.allocated)?;
                set_node_port(spec, i, np);
                np
            };
            if !seen.insert((p.protocol.clone(), np)) {
                let field = format!("spec.ports[{i}].nodePort");
                return Err(invalid(
                    &view.name,
                    vec![Cause::duplicate(field, &json!(np))],
                ));
            }
            new_numbers.insert(np);
        }
        for port in old_numbers.difference(&new_numbers) {
            push_port(&mut out.release_on_commit, *port);
        }
        Ok(())
    }

    /// Upstream `updateHealthCheckNodePort`.
    fn update_health_check(
        &mut self,
        spec: &mut Map<String, Value>,
        old: &ServiceView,
        view: &ServiceView,
        rng: &mut impl Rng,
        out: &mut UpdateAllocation,
    ) -> Result<(), StatusError> {
        let (before, after) = (old.needs_health_check(), view.needs_health_check());
        let (old_port, new_port) = (old.health_check_node_port, view.health_check_node_port);
        match (before, after) {
            (false, true) => {
                self.alloc_health_check(spec, new_port, rng, &mut out.allocated)?;
            }
            (true, false) if old_port != 0 => push_port(&mut out.release_on_commit, old_port),
            (true, true) if old_port != new_port && new_port != 0 => {
                self.alloc_health_check(spec, new_port, rng, &mut out.allocated)?;
                if old_port != 0 {
                    push_port(&mut out.release_on_commit, old_port);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn push_port(into: &mut Allocated, port: i64) {
    if let Ok(p) = u16::try_from(port) {
        into.node_ports.push(p);
    }
}

fn old_field(old: &ServiceView, key: &str) -> Option<Value> {
    match key {
        "ipFamilies" if !old.ip_families.is_empty() => Some(json!(old.ip_families)),
        "ipFamilyPolicy" => old.ip_family_policy.as_ref().map(|p| json!(p)),
        _ => None,
    }
}

/// Upstream `dropTypeDependentFields`: when the new type no longer needs a field and the
/// client left it as it was, wipe it (so ClusterIP -> ExternalName and NodePort -> ClusterIP
/// updates work with a full PUT of the old object).
fn drop_type_dependent_fields(spec: &mut Map<String, Value>, old: &ServiceView, new: &ServiceView) {
    if old.needs_cluster_ip() && !new.needs_cluster_ip() && old.cluster_ips == new.cluster_ips {
        clear_cluster_ip_fields(spec);
    }
    let same_node_ports = old
        .ports
        .iter()
        .map(|p| p.node_port)
        .eq(new.ports.iter().map(|p| p.node_port));
    if old.needs_node_ports() && !new.needs_node_ports() && same_node_ports {
        for i in 0..new.ports.len() {
            set_node_port(spec, i, 0);
        }
    }
    if old.needs_health_check()
        && !new.needs_health_check()
        && old.health_check_node_port == new.health_check_node_port
    {
        set_health_check_node_port(spec, 0);
    }
}

/// Upstream `patchAllocatedValues`: values the client omitted are carried over from the old
/// object (clusterIP(s), node ports matched by port name, health-check node port).
fn patch_allocated_values(spec: &mut Map<String, Value>, old: &ServiceView, new: &ServiceView) {
    if old.needs_cluster_ip()
        && new.needs_cluster_ip()
        && new.cluster_ips.is_empty()
        && !old.cluster_ips.is_empty()
    {
        set_cluster_ips(spec, &old.cluster_ips);
    }
    if old.needs_node_ports() && new.needs_node_ports() {
        let used: BTreeSet<i64> = old
            .node_ports()
            .intersection(&new.node_ports())
            .copied()
            .collect();
        for (i, p) in new.ports.iter().enumerate() {
            if p.node_port != 0 {
                continue;
            }
            let old_value = old
                .ports
                .iter()
                .rev()
                .find(|o| o.name == p.name)
                .map_or(0, |o| o.node_port);
            if old_value != 0 && !used.contains(&old_value) {
                set_node_port(spec, i, old_value);
            }
        }
    }
    if old.needs_health_check() && new.needs_health_check() && new.health_check_node_port == 0 {
        set_health_check_node_port(spec, old.health_check_node_port);
    }
}
