//! Glue between the write path and the Service allocators: every ClusterIP/NodePort the API
//! server takes or gives back goes through here, under the server's allocator lock, and is
//! reserved in the store in the same transaction as the Service ([`crate::reservations`]).
//!
//! Start at [`create_stored`], [`write_update`] and [`delete_stored`]; the local bitmaps are a
//! cache of the store's reservations ([`adopt_stored`] at start-up).

use std::collections::BTreeSet;

use api::resources::ResourceInfo;
use api::status::StatusError;
use chrono::Utc;
use registry::admission::is_service;
use serde_json::Value;
use store::{KeyValue, Op, Revision, StoreError};

use crate::alloc::{Allocated, IpRange, PortRange, ServiceAllocations, UpdateAllocation};
use crate::reservations::{self, Reserved};
use crate::server::Server;

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

/// Bound on re-allocations after a value turned out to be reserved by another server.
const MAX_RESERVE_ATTEMPTS: usize = 32;

fn new_uid(server: &Server) -> Result<String, StatusError> {
    let mut rng = server
        .rng
        .lock()
        .map_err(|_| StatusError::internal("rng lock poisoned"))?;
    Ok(crate::objects::new_uid(&mut *rng))
}

/// The reservation `err` failed on, when a store write lost a value to another server.
pub fn reserved_elsewhere(err: &StoreError) -> Option<Reserved> {
    match err {
        StoreError::AlreadyExists { key } => reservations::parse_key(key),
        _ => None,
    }
}

/// Refresh the bitmaps from the store's reservations (they are a cache of them). `reset`:
/// replace their content (frees values other servers gave back, but also the bits of this
/// server's writes in flight); otherwise only add the store's reservations.
async fn refresh(server: &Server, reset: bool) -> Result<(), StoreError> {
    let taken = reservations::list(&*server.store).await?;
    if let Ok(mut a) = lock(server) {
        if reset {
            a.reset_to(&taken);
        } else {
            a.mark(&taken);
        }
    }
    Ok(())
}

/// Store a new object; for a Service, allocate and create its reservations in the same
/// transaction, re-allocating (bounded) when another server holds a value it picked.
pub async fn create_stored(
    server: &Server,
    res: &ResourceInfo,
    key: &str,
    obj: &mut Value,
    map_store: impl Fn(StoreError) -> StatusError,
) -> Result<KeyValue, StatusError> {
    let original = obj.clone();
    let mut reset = false;
    let mut lost = 0;
    for _ in 0..MAX_RESERVE_ATTEMPTS {
        let mut work = original.clone();
        let taken = match for_create(server, res, &mut work) {
            Ok(t) => t,
            // Full, or a requested value taken: the bitmap may hold values another server
            // freed. Refresh it from the store once and try again.
            Err(_) if is_service(res) && !reset => {
                reset = true;
                refresh(server, true).await.map_err(&map_store)?;
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut ops = vec![Op::Create {
            key: key.to_string(),
            value: crate::objects::encode(&work),
        }];
        ops.extend(reservations::create_ops(
            &taken,
            &work,
            &new_uid(server)?,
            Utc::now(),
        ));
        let e = match server.store.txn(ops).await {
            Ok(mut kvs) => {
                *obj = work;
                return Ok(kvs.remove(0));
            }
            Err(e) => e,
        };
        rollback(server, taken);
        let Some(r) = reserved_elsewhere(&e) else {
            return Err(map_store(e));
        };
        if let Ok(mut a) = lock(server) {
            a.mark(&r.as_allocated());
        }
        // Losing again and again: other servers hold values this bitmap does not know.
        lost += 1;
        if lost % 2 == 0 {
            refresh(server, false).await.map_err(&map_store)?;
        }
    }
    Err(StatusError::internal(
        "failed to allocate a serviceIP or nodePort: every value tried was taken by another API server",
    ))
}

/// Write an update of a stored object at `expected` (or delete it when `finalized`), with the
/// reservation changes of `change` (or the release of everything it held) in the same
/// transaction.
#[allow(clippy::too_many_arguments)]
pub async fn write_update(
    server: &Server,
    res: &ResourceInfo,
    key: &str,
    expected: Revision,
    encoded: bytes::Bytes,
    finalized: bool,
    old: &Value,
    new: &Value,
    change: &Change,
) -> Result<KeyValue, StoreError> {
    if finalized {
        return delete_stored(server, res, key, Some(expected), &[old, new]).await;
    }
    let mut ops = vec![Op::Update {
        key: key.to_string(),
        value: encoded,
        expected: Some(expected),
    }];
    if let Some(u) = &change.0 {
        let uid = new_uid(server).map_err(|e| StoreError::Invalid(e.message.clone()))?;
        ops.extend(reservations::create_ops(
            &u.allocated,
            new,
            &uid,
            Utc::now(),
        ));
        ops.extend(reservations::release_ops(&*server.store, &u.release_on_commit, old).await?);
    }
    Ok(server.store.txn(ops).await?.remove(0))
}

/// An update lost a value to another server: give back what it took and mark that value.
pub fn reserved_elsewhere_on_update(server: &Server, c: Change, r: Reserved) {
    rollback_change(server, c);
    if let Ok(mut a) = lock(server) {
        a.mark(&r.as_allocated());
    }
}

/// Delete a stored object at `expected` (any revision if `None`); for a Service, release the
/// reservations `objs` (its versions) hold in the same transaction.
pub async fn delete_stored(
    server: &Server,
    res: &ResourceInfo,
    key: &str,
    expected: Option<Revision>,
    objs: &[&Value],
) -> Result<KeyValue, StoreError> {
    let mut ops = vec![Op::Delete {
        key: key.to_string(),
        expected,
    }];
    if is_service(res) {
        for obj in objs {
            let held = lock(server)
                .map_err(|e| StoreError::Invalid(e.message.clone()))?
                .held_by(obj);
            for op in reservations::release_ops(&*server.store, &held, obj).await? {
                if !ops.iter().any(|o| o.key() == op.key()) {
                    ops.push(op);
                }
            }
        }
    }
    Ok(server.store.txn(ops).await?.remove(0))
}

/// At start-up: create the reservations missing for stored Services (data written before
/// reservations existed), then load the bitmaps from the store's reservations. Idempotent.
pub async fn adopt_stored(server: &Server, services: &[Value]) -> Result<(), StoreError> {
    let existing = reservations::list(&*server.store).await?;
    let known_ips: BTreeSet<_> = existing.cluster_ips.iter().collect();
    let known_ports: BTreeSet<_> = existing.node_ports.iter().collect();
    let now = Utc::now();
    for svc in services {
        let held = lock(server)
            .map_err(|e| StoreError::Invalid(e.message.clone()))?
            .held_by(svc);
        let missing = crate::alloc::Allocated {
            cluster_ips: (held.cluster_ips.iter())
                .filter(|ip| !known_ips.contains(ip))
                .copied()
                .collect(),
            node_ports: (held.node_ports.iter())
                .filter(|p| !known_ports.contains(p))
                .copied()
                .collect(),
        };
        let uid = new_uid(server).map_err(|e| StoreError::Invalid(e.message.clone()))?;
        for op in reservations::create_ops(&missing, svc, &uid, now) {
            match server.store.txn(vec![op]).await {
                Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let taken = reservations::list(&*server.store).await?;
    if let Ok(mut a) = lock(server) {
        a.mark(&taken);
    }
    Ok(())
}
