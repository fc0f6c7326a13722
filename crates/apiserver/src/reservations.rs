//! Store keys that reserve ClusterIPs and NodePorts, written in the same store transaction as
//! the Service that holds them, so API servers sharing one store never hand out a value twice.
//!
//! Start at [`create_ops`] (reserve what a write took) and [`release_ops`] (give back what a
//! Service held). A ClusterIP is an upstream `networking.k8s.io/v1` IPAddress object (with
//! `spec.parentRef` to the Service) stored where this server keeps that resource's objects
//! (`/registry/networking.k8s.io/ipaddresses/<ip>`; upstream: `/registry/ipaddresses/<ip>`);
//! a NodePort is one key per port under `/registry/core/servicenodeports/<port>` (upstream
//! keeps one bitmap key `/registry/ranges/servicenodeports` updated by compare-and-swap).

use std::net::Ipv4Addr;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use store::{ListOptions, Op, Store, StoreError};

use crate::alloc::Allocated;
use crate::objects;

/// IPAddress objects, in this server's key layout (`/registry/<group>/<plural>/`).
pub const IP_PREFIX: &str = "/registry/networking.k8s.io/ipaddresses/";
/// One key per reserved node port (ours; see the module doc).
pub const NODE_PORT_PREFIX: &str = "/registry/core/servicenodeports/";

/// Upstream `ipallocator.ControllerName`, the IPAddress `managed-by` label value.
const MANAGED_BY: &str = "ipallocator.k8s.io";

/// One reserved value, as named by its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reserved {
    Ip(Ipv4Addr),
    Port(u16),
}

impl Reserved {
    /// As an [`Allocated`] of one value.
    pub fn as_allocated(self) -> Allocated {
        match self {
            Reserved::Ip(ip) => Allocated {
                cluster_ips: vec![ip],
                node_ports: vec![],
            },
            Reserved::Port(p) => Allocated {
                cluster_ips: vec![],
                node_ports: vec![p],
            },
        }
    }
}

pub fn ip_key(ip: Ipv4Addr) -> String {
    format!("{IP_PREFIX}{ip}")
}

pub fn port_key(port: u16) -> String {
    format!("{NODE_PORT_PREFIX}{port}")
}

/// The value a reservation key names, `None` for any other key.
pub fn parse_key(key: &str) -> Option<Reserved> {
    if let Some(ip) = key.strip_prefix(IP_PREFIX) {
        return ip.parse().ok().map(Reserved::Ip);
    }
    key.strip_prefix(NODE_PORT_PREFIX)?
        .parse()
        .ok()
        .map(Reserved::Port)
}

/// Upstream IPAddress `spec.parentRef` to a Service.
fn parent_ref(svc: &Value) -> Value {
    json!({
        "group": "",
        "resource": "services",
        "namespace": objects::meta_str(svc, "namespace").unwrap_or(""),
        "name": objects::name_of(svc),
    })
}

/// The IPAddress object reserving `ip` for `svc` (upstream `ipallocator.createIPAddress`).
pub fn ip_address(ip: Ipv4Addr, svc: &Value, uid: &str, now: DateTime<Utc>) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IPAddress",
        "metadata": {
            "name": ip.to_string(),
            "uid": uid,
            "creationTimestamp": objects::timestamp(now),
            "labels": {
                "ipaddress.kubernetes.io/ip-family": "IPv4",
                "ipaddress.kubernetes.io/managed-by": MANAGED_BY,
            },
        },
        "spec": {"parentRef": parent_ref(svc)},
    })
}

fn port_reservation(port: u16, svc: &Value) -> Value {
    json!({"port": port, "parentRef": parent_ref(svc)})
}

/// `Create` ops reserving everything in `taken` for `svc`; each fails with
/// [`StoreError::AlreadyExists`] if another server holds the value.
pub fn create_ops(taken: &Allocated, svc: &Value, uid: &str, now: DateTime<Utc>) -> Vec<Op> {
    let ips = taken.cluster_ips.iter().map(|&ip| Op::Create {
        key: ip_key(ip),
        value: encode(&ip_address(ip, svc, uid, now)),
    });
    let ports = taken.node_ports.iter().map(|&p| Op::Create {
        key: port_key(p),
        value: encode(&port_reservation(p, svc)),
    });
    ips.chain(ports).collect()
}

fn encode(v: &Value) -> Bytes {
    Bytes::from(v.to_string())
}

/// `Delete` ops (guarded by `mod_revision`) for the reservations of `held` that exist and name
/// `svc` as their parent; a reservation of another Service or a missing one is left alone.
pub async fn release_ops(
    store: &dyn Store,
    held: &Allocated,
    svc: &Value,
) -> Result<Vec<Op>, StoreError> {
    let parent = parent_ref(svc);
    let keys = held
        .cluster_ips
        .iter()
        .map(|&ip| ip_key(ip))
        .chain(held.node_ports.iter().map(|&p| port_key(p)));
    let mut ops = Vec::new();
    for key in keys {
        let Some(kv) = store.get(&key).await? else {
            continue;
        };
        let body: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
        let owner = body["spec"]
            .get("parentRef")
            .or_else(|| body.get("parentRef"));
        if owner == Some(&parent) && !ops.iter().any(|o: &Op| o.key() == key) {
            ops.push(Op::Delete {
                key,
                expected: Some(kv.mod_revision),
            });
        }
    }
    Ok(ops)
}

/// Every reservation in the store.
pub async fn list(store: &dyn Store) -> Result<Allocated, StoreError> {
    let mut all = Allocated::default();
    for prefix in [IP_PREFIX, NODE_PORT_PREFIX] {
        let page = store.list(prefix, ListOptions::default()).await?;
        for kv in &page.items {
            match parse_key(&kv.key) {
                Some(Reserved::Ip(ip)) => all.cluster_ips.push(ip),
                Some(Reserved::Port(p)) => all.node_ports.push(p),
                None => {}
            }
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_other_keys_are_not_reservations() {
        let ip: Ipv4Addr = "10.96.0.10".parse().unwrap();
        assert_eq!(
            ip_key(ip),
            "/registry/networking.k8s.io/ipaddresses/10.96.0.10"
        );
        assert_eq!(parse_key(&ip_key(ip)), Some(Reserved::Ip(ip)));
        assert_eq!(parse_key(&port_key(30080)), Some(Reserved::Port(30080)));
        assert_eq!(parse_key("/registry/core/services/default/a"), None);
        assert_eq!(parse_key("/registry/networking.k8s.io/ipaddresses/x"), None);
    }

    #[test]
    fn the_ip_address_names_its_service() {
        let svc = json!({"metadata": {"name": "web", "namespace": "team"}});
        let ip: Ipv4Addr = "10.96.0.10".parse().unwrap();
        let a = ip_address(ip, &svc, "u", Utc::now());
        assert_eq!(a["metadata"]["name"], "10.96.0.10");
        assert_eq!(a["spec"]["parentRef"]["resource"], "services");
        assert_eq!(a["spec"]["parentRef"]["namespace"], "team");
        assert_eq!(a["spec"]["parentRef"]["name"], "web");
    }
}
