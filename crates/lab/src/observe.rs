//! Watch changes -> timeline events, shared by the live run's watches and the simulator:
//! node readiness and taints, pod binding, readiness and deletion, and the ready endpoints of
//! each target Service by node. Pure: typed objects in, [`EventKind`]s out, the caller stamps
//! them with its clock.
//!
//! Start at [`NodeObserver`], [`PodObserver`] and [`SliceObserver`] (one per watch), and
//! [`ProxySyncObserver`] for the proxies' syncs.

mod proxy;

pub use proxy::{Programmed, ProxySets, ProxySyncObserver};

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use runtime::labels::{SERVICE_NAME_LABEL, node_ready_status, pod_is_ready};

use crate::EventKind;

/// `namespace/name` (just the name for cluster-scoped objects), as the timeline names objects.
pub fn key_of(meta: &ObjectMeta) -> String {
    runtime::Key::of(meta).to_string()
}

/// Node readiness and taints, by node.
#[derive(Debug, Default)]
pub struct NodeObserver {
    seen: BTreeMap<String, (String, Vec<String>)>,
}

impl NodeObserver {
    /// The keys seen (for a relist: what it no longer lists is [`NodeObserver::gone`]).
    pub fn keys(&self) -> Vec<String> {
        self.seen.keys().cloned().collect()
    }

    /// A node deleted (during a watch gap or not): forgotten; the timeline has no node
    /// deletion.
    pub fn gone(&mut self, key: &str) {
        self.seen.remove(key);
    }

    /// A node added or changed.
    pub fn changed(&mut self, n: &Node, out: &mut Vec<EventKind>) {
        let key = key_of(&n.metadata);
        let name = n.metadata.name.clone().unwrap_or_default();
        let ready = node_ready_status(n).unwrap_or("Unknown").to_string();
        let taints: Vec<String> = n
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .map(|t| {
                t.iter()
                    .map(|t| format!("{}:{}", t.key, t.effect))
                    .collect()
            })
            .unwrap_or_default();
        let old = self.seen.insert(key, (ready.clone(), taints.clone()));
        if old.as_ref().map(|o| &o.0) != Some(&ready) {
            out.push(EventKind::NodeReady {
                node: name.clone(),
                ready,
            });
        }
        if old.as_ref().map_or(!taints.is_empty(), |o| o.1 != taints) {
            out.push(EventKind::NodeTaints { node: name, taints });
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq)]
struct PodSeen {
    node: String,
    ready: bool,
    deleting: bool,
}

/// Pod binding, readiness, deletion timestamps and deletion, by pod.
#[derive(Debug, Default)]
pub struct PodObserver {
    seen: BTreeMap<String, PodSeen>,
}

impl PodObserver {
    pub fn keys(&self) -> Vec<String> {
        self.seen.keys().cloned().collect()
    }

    /// A pod no longer listed after a watch gap: deleted.
    pub fn gone(&mut self, key: &str, out: &mut Vec<EventKind>) {
        if let Some(old) = self.seen.remove(key) {
            out.push(EventKind::PodDeleted {
                pod: key.to_string(),
                node: old.node,
            });
        }
    }

    /// A pod added, changed (`deleted` false) or deleted.
    pub fn changed(&mut self, p: &Pod, deleted: bool, out: &mut Vec<EventKind>) {
        let key = key_of(&p.metadata);
        let now = PodSeen {
            node: p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default(),
            ready: pod_is_ready(p),
            deleting: p.metadata.deletion_timestamp.is_some(),
        };
        let old = self.seen.get(&key).cloned().unwrap_or_default();
        let (pod, node) = (key.clone(), now.node.clone());
        if deleted {
            self.seen.remove(&key);
            out.push(EventKind::PodDeleted { pod, node });
            return;
        }
        if old.node.is_empty() && !now.node.is_empty() {
            out.push(EventKind::PodBound {
                pod: pod.clone(),
                node: node.clone(),
                daemon: daemon_pod(p),
            });
        }
        if old.ready != now.ready {
            out.push(EventKind::PodReady {
                pod: pod.clone(),
                node: node.clone(),
                ready: now.ready,
            });
        }
        if !old.deleting && now.deleting {
            out.push(EventKind::PodDeleting { pod, node });
        }
        self.seen.insert(key, now);
    }
}

/// Whether a DaemonSet controls the pod (its controller owner reference).
fn daemon_pod(p: &Pod) -> bool {
    p.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.kind == "DaemonSet")
}

/// Ready endpoint IPs of the target Services by node, from their EndpointSlices.
#[derive(Debug, Default)]
pub struct SliceObserver {
    services: Vec<String>,
    /// slice key -> (service, ready IPs by node).
    by_slice: BTreeMap<String, (String, BTreeMap<String, Vec<String>>)>,
    /// What was recorded last per service.
    last: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

impl SliceObserver {
    /// Observes the slices of `services` (`namespace/name` each).
    pub fn new(services: Vec<String>) -> SliceObserver {
        SliceObserver {
            services,
            ..Default::default()
        }
    }

    pub fn keys(&self) -> Vec<String> {
        self.by_slice.keys().cloned().collect()
    }

    /// A slice no longer listed after a watch gap.
    pub fn gone(&mut self, key: &str, out: &mut Vec<EventKind>) {
        if let Some((svc, _)) = self.by_slice.remove(key) {
            self.emit(&svc, out);
        }
    }

    /// A slice added, changed or deleted.
    pub fn changed(&mut self, s: &EndpointSlice, deleted: bool, out: &mut Vec<EventKind>) {
        let ns = s.metadata.namespace.clone().unwrap_or_default();
        let Some(svc) = s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .map(|n| format!("{ns}/{n}"))
        else {
            return;
        };
        if !self.services.contains(&svc) {
            return;
        }
        let key = key_of(&s.metadata);
        if deleted {
            self.by_slice.remove(&key);
        } else {
            self.by_slice.insert(key, (svc.clone(), ready_by_node(s)));
        }
        self.emit(&svc, out);
    }

    /// Records `svc`'s ready endpoints if they changed.
    fn emit(&mut self, svc: &str, out: &mut Vec<EventKind>) {
        let mut merged: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (owner, ready) in self.by_slice.values() {
            if owner == svc {
                for (node, ips) in ready {
                    merged
                        .entry(node.clone())
                        .or_default()
                        .extend(ips.iter().cloned());
                }
            }
        }
        merged.values_mut().for_each(|v| v.sort());
        if self.last.get(svc) != Some(&merged) {
            self.last.insert(svc.to_string(), merged.clone());
            out.push(EventKind::Endpoints {
                service: svc.to_string(),
                ready: merged,
            });
        }
    }
}

/// Ready endpoint IPs of one slice by node.
fn ready_by_node(s: &EndpointSlice) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for ep in &s.endpoints {
        let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
        if ready {
            let node = ep.node_name.clone().unwrap_or_default();
            out.entry(node)
                .or_default()
                .extend(ep.addresses.iter().cloned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).expect("pod")
    }

    #[test]
    fn a_pod_is_bound_then_ready_then_deleting_then_deleted() {
        let mut o = PodObserver::default();
        let mut out = Vec::new();
        let base = serde_json::json!({"metadata": {"name": "w", "namespace": "default"}});
        o.changed(&pod(base.clone()), false, &mut out);
        assert!(out.is_empty(), "an unbound, unready pod records nothing");
        let bound = serde_json::json!({"metadata": {"name": "w", "namespace": "default"},
            "spec": {"nodeName": "a-1", "containers": []},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        o.changed(&pod(bound.clone()), false, &mut out);
        assert_eq!(out.len(), 2);
        assert!(
            matches!(&out[0], EventKind::PodBound { pod, node, daemon: false } if pod == "default/w" && node == "a-1")
        );
        assert!(matches!(&out[1], EventKind::PodReady { ready: true, .. }));
        out.clear();
        let mut deleting = bound.clone();
        deleting["metadata"]["deletionTimestamp"] = "2027-01-15T08:00:00Z".into();
        o.changed(&pod(deleting.clone()), false, &mut out);
        assert!(matches!(&out[..], [EventKind::PodDeleting { .. }]));
        out.clear();
        o.gone("default/w", &mut out);
        assert!(matches!(&out[..], [EventKind::PodDeleted { node, .. }] if node == "a-1"));
    }

    #[test]
    fn slices_merge_per_service_and_record_only_changes() {
        let mut o = SliceObserver::new(vec!["default/web".into()]);
        let slice = |name: &str, ip: &str, node: &str, ready: bool| -> EndpointSlice {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "default",
                             "labels": {SERVICE_NAME_LABEL: "web"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": [ip], "nodeName": node,
                               "conditions": {"ready": ready}}]
            }))
            .expect("slice")
        };
        let mut out = Vec::new();
        o.changed(&slice("s1", "10.0.0.1", "a-1", true), false, &mut out);
        o.changed(&slice("s2", "10.0.0.2", "b-1", true), false, &mut out);
        o.changed(&slice("s2", "10.0.0.2", "b-1", true), false, &mut out);
        assert_eq!(out.len(), 2, "the repeated slice changes nothing");
        let EventKind::Endpoints { ready, .. } = &out[1] else {
            panic!("{out:?}")
        };
        assert_eq!(ready.len(), 2);
        out.clear();
        o.changed(&slice("s1", "10.0.0.1", "a-1", false), false, &mut out);
        let EventKind::Endpoints { ready, .. } = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(ready.keys().collect::<Vec<_>>(), vec!["b-1"]);
        let other = {
            let mut s = slice("x", "10.0.0.9", "a-1", true);
            s.metadata.labels = Some([(SERVICE_NAME_LABEL.to_string(), "db".to_string())].into());
            s
        };
        out.clear();
        o.changed(&other, false, &mut out);
        assert!(out.is_empty(), "slices of other Services are not recorded");
    }
}
