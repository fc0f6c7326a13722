//! Glue between the write path and the Service allocators: every ClusterIP/NodePort the API
//! server takes or gives back goes through here, under the server's allocator lock.
//!
//! Start at [`for_create`]; a write that fails after allocating calls [`rollback`].

use api::resources::ResourceInfo;
use api::status::StatusError;
use serde_json::Value;

use crate::alloc::{Allocated, IpRange, PortRange, ServiceAllocations, UpdateAllocation};
use crate::server::Server;

fn is_service(res: &ResourceInfo) -> bool {
    res.group.is_empty() && res.kind == "Service"
}

fn lock(server: &Server) -> Result<std::sync::MutexGuard<'_, ServiceAllocations>, StatusError> {
    server
        .alloc
        .lock()
        .map_err(|_| StatusError::internal("allocator lock poisoned"))
}

/// Build the allocators from flags and the stored Services.
pub fn rebuild<'a>(
    ip_range: &str,
    port_range: (u16, u16),
    services: impl Iterator<Item = &'a Value>,
) -> Result<(ServiceAllocations, Vec<String>), String> {
    let ips = IpRange::parse(ip_range).map_err(|e| e.to_string())?;
    let ports =
        PortRange::parse(&format!("{}-{}", port_range.0, port_range.1)).map_err(|e| e.0.clone())?;
    let (alloc, issues) = ServiceAllocations::rebuild(ips, ports, services);
    Ok((alloc, issues.into_iter().map(|i| i.to_string()).collect()))
}

/// The `kubernetes` Service's address.
pub fn first_ip(server: &Server) -> Result<String, StatusError> {
    Ok(lock(server)?.kubernetes_ip().to_string())
}

/// Allocate for a new object (a no-op for anything but Services).
pub fn for_create(
    server: &Server,
    res: &ResourceInfo,
    obj: &mut Value,
) -> Result<Allocated, StatusError> {
    if !is_service(res) {
        return Ok(Allocated::default());
    }
    let mut rng = server
        .rng
        .lock()
        .map_err(|_| StatusError::internal("rng lock poisoned"))?;
    lock(server)?.allocate_for_create(obj, &mut *rng)
}

/// Give back what a failed create took.
pub fn rollback(server: &Server, taken: Allocated) {
    if !taken.is_empty()
        && let Ok(mut a) = lock(server)
    {
        a.release(&taken);
    }
}

/// What an update took (to roll back on failure) and freed (to release once it commits).
#[derive(Debug, Default)]
pub struct Change(Option<UpdateAllocation>);

/// Allocate for an update of a Service (type changes, carried-over ClusterIP).
pub fn for_update(
    server: &Server,
    res: &ResourceInfo,
    old: &Value,
    new: &mut Value,
) -> Result<Change, StatusError> {
    if !is_service(res) {
        return Ok(Change::default());
    }
    let mut rng = server
        .rng
        .lock()
        .map_err(|_| StatusError::internal("rng lock poisoned"))?;
    let u = lock(server)?.allocate_for_update(old, new, &mut *rng)?;
    Ok(Change(Some(u)))
}

/// The update was stored: release what the old object held and the new one does not.
pub fn commit_change(server: &Server, c: Change) {
    if let Some(u) = c.0
        && let Ok(mut a) = lock(server)
    {
        a.commit_update(&u);
    }
}

/// The update failed: give back what it took.
pub fn rollback_change(server: &Server, c: Change) {
    if let Some(u) = c.0
        && let Ok(mut a) = lock(server)
    {
        a.abort_update(&u);
    }
}

/// Free a deleted Service's addresses and ports.
pub fn release_service(server: &Server, res: &ResourceInfo, obj: &Value) {
    if is_service(res)
        && let Ok(mut a) = lock(server)
    {
        a.release_service(obj);
    }
}
