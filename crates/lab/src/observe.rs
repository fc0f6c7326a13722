//! Watch changes -> timeline events, shared by the live run's watches and the simulator:
//! node readiness and taints, pod binding, readiness and deletion, and the ready endpoints of
//! each target Service by node. Pure: typed objects in, [`EventKind`]s out, the caller stamps
//! them with its clock.
//!
//! Start at [`NodeObserver`], [`PodObserver`] and [`SliceObserver`] (one per watch), and
//! [`ProxySyncObserver`] for the proxies' syncs.

mod proxy;

pub use proxy::{Programmed, ProxySets, ProxySyncObserver};

use std::collections::{BTreeMap, BTreeSet};

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

/// Ready endpoint IPs of the target Services by node, from their EndpointSlices. Each
/// Service's first record lists them all, later ones what was added and removed: a change
/// costs the size of the changed slice, not of the Service.
#[derive(Debug, Default)]
pub struct SliceObserver {
    services: BTreeSet<String>,
    /// slice key -> (service, ready IPs by node).
    by_slice: BTreeMap<String, (String, BTreeMap<String, Vec<String>>)>,
    /// service -> (node, IP) -> how many of its slices list it ready.
    counts: BTreeMap<String, BTreeMap<(String, String), u32>>,
    /// Services with a first (full) record.
    recorded: BTreeSet<String>,
}

impl SliceObserver {
    /// Observes the slices of `services` (`namespace/name` each).
    pub fn new(services: Vec<String>) -> SliceObserver {
        SliceObserver {
            services: services.into_iter().collect(),
            ..Default::default()
        }
    }

    pub fn keys(&self) -> Vec<String> {
        self.by_slice.keys().cloned().collect()
    }

    /// A slice no longer listed after a watch gap.
    pub fn gone(&mut self, key: &str, out: &mut Vec<EventKind>) {
        if let Some((svc, old)) = self.by_slice.remove(key) {
            self.update(&svc, &old, &BTreeMap::new(), out);
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
        let now = if deleted {
            BTreeMap::new()
        } else {
            ready_by_node(s)
        };
        let old = if deleted {
            self.by_slice.remove(&key)
        } else {
            self.by_slice.insert(key, (svc.clone(), now.clone()))
        };
        // A slice relabelled to another Service leaves its old one.
        let (old_svc, old) = old.unwrap_or_else(|| (svc.clone(), BTreeMap::new()));
        if old_svc != svc {
            self.update(&old_svc, &old, &BTreeMap::new(), out);
            self.update(&svc, &BTreeMap::new(), &now, out);
        } else {
            self.update(&svc, &old, &now, out);
        }
    }

    /// One slice of `svc` went from listing `old` to `now`: records what the Service gained
    /// and lost (all of it, the first time).
    fn update(
        &mut self,
        svc: &str,
        old: &BTreeMap<String, Vec<String>>,
        now: &BTreeMap<String, Vec<String>>,
        out: &mut Vec<EventKind>,
    ) {
        let counts = self.counts.entry(svc.to_string()).or_default();
        let mut added: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut removed: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (node, ip) in pairs(now) {
            let n = counts.entry((node.clone(), ip.clone())).or_default();
            *n += 1;
            if *n == 1 {
                added.entry(node).or_default().push(ip);
            }
        }
        for (node, ip) in pairs(old) {
            let pair = (node, ip);
            let Some(n) = counts.get_mut(&pair) else {
                continue;
            };
            *n -= 1;
            if *n == 0 {
                counts.remove(&pair);
                let (node, ip) = pair;
                // Listed again by `now`: it was counted as added above; it never left.
                let again = added.get_mut(&node).and_then(|v| {
                    let i = v.iter().position(|x| *x == ip)?;
                    Some(v.remove(i))
                });
                if again.is_none() {
                    removed.entry(node).or_default().push(ip);
                }
            }
        }
        added.retain(|_, v| !v.is_empty());
        if self.recorded.insert(svc.to_string()) {
            let mut ready: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (node, ip) in counts.keys() {
                ready.entry(node.clone()).or_default().push(ip.clone());
            }
            out.push(EventKind::endpoints_full(svc, ready));
        } else if !added.is_empty() || !removed.is_empty() {
            added.values_mut().for_each(|v| v.sort());
            removed.values_mut().for_each(|v| v.sort());
            out.push(EventKind::Endpoints {
                service: svc.to_string(),
                ready: None,
                added,
                removed,
            });
        }
    }
}

/// (node, IP) of every endpoint in a by-node map.
fn pairs(by_node: &BTreeMap<String, Vec<String>>) -> Vec<(String, String)> {
    by_node
        .iter()
        .flat_map(|(node, ips)| ips.iter().map(move |ip| (node.clone(), ip.clone())))
        .collect()
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

    fn slice(name: &str, eps: &[(&str, &str, bool)]) -> EndpointSlice {
        let eps: Vec<serde_json::Value> = eps
            .iter()
            .map(|(ip, node, ready)| {
                serde_json::json!({"addresses": [ip], "nodeName": node,
                                   "conditions": {"ready": ready}})
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "default",
                         "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4",
            "endpoints": eps
        }))
        .expect("slice")
    }

    fn resolve(out: &[EventKind]) -> BTreeMap<String, Vec<String>> {
        let mut track = crate::analyze::EndpointTrack::default();
        for k in out {
            track.apply(k);
        }
        track.by_service.remove("default/web").unwrap_or_default()
    }

    #[test]
    fn slices_merge_per_service_and_record_only_changes() {
        let mut o = SliceObserver::new(vec!["default/web".into()]);
        let mut out = Vec::new();
        o.changed(&slice("s1", &[("10.0.0.1", "a-1", true)]), false, &mut out);
        o.changed(&slice("s2", &[("10.0.0.2", "b-1", true)]), false, &mut out);
        o.changed(&slice("s2", &[("10.0.0.2", "b-1", true)]), false, &mut out);
        assert_eq!(out.len(), 2, "the repeated slice changes nothing");
        assert!(
            matches!(&out[1], EventKind::Endpoints { ready: None, added, removed, .. }
                if added.len() == 1 && removed.is_empty()),
            "the second record lists only the added endpoint: {out:?}"
        );
        assert_eq!(resolve(&out).len(), 2);
        o.changed(&slice("s1", &[("10.0.0.1", "a-1", false)]), false, &mut out);
        assert_eq!(resolve(&out).keys().collect::<Vec<_>>(), vec!["b-1"]);
        let other = {
            let mut s = slice("x", &[("10.0.0.9", "a-1", true)]);
            s.metadata.labels = Some([(SERVICE_NAME_LABEL.to_string(), "db".to_string())].into());
            s
        };
        let before = out.len();
        o.changed(&other, false, &mut out);
        assert_eq!(
            out.len(),
            before,
            "slices of other Services are not recorded"
        );
    }

    #[test]
    fn a_change_in_a_large_service_records_only_the_change() {
        let mut o = SliceObserver::new(vec!["default/web".into()]);
        let mut out = Vec::new();
        let ips: Vec<String> = (0..1_000)
            .map(|i| format!("10.0.{}.{}", i / 200, i % 200))
            .collect();
        let node = |i: usize| format!("n-{}", i % 50);
        let nodes: Vec<String> = (0..1_000).map(node).collect();
        let group = |k: usize, ready_at: Option<usize>| -> EndpointSlice {
            let eps: Vec<(&str, &str, bool)> = (k * 100..(k + 1) * 100)
                .map(|i| (ips[i].as_str(), nodes[i].as_str(), Some(i) != ready_at))
                .collect();
            slice(&format!("s{k}"), &eps)
        };
        for k in 0..10 {
            o.changed(&group(k, None), false, &mut out);
        }
        out.clear();
        o.changed(&group(3, Some(345)), false, &mut out);
        let [
            EventKind::Endpoints {
                ready: None,
                added,
                removed,
                ..
            },
        ] = &out[..]
        else {
            panic!("{out:?}")
        };
        assert!(added.is_empty());
        assert_eq!(
            removed,
            &BTreeMap::from([(node(345), vec![ips[345].clone()])])
        );
        // Moving an endpoint between slices (deleted from one, then added to another) records
        // its removal and its return; listed in both at once, it never left.
        out.clear();
        o.changed(
            &slice("s10", &[(ips[0].as_str(), nodes[0].as_str(), true)]),
            false,
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        o.changed(&group(0, None), true, &mut out);
        let [EventKind::Endpoints { added, removed, .. }] = &out[..] else {
            panic!("{out:?}")
        };
        assert!(added.is_empty());
        assert_eq!(removed.values().map(Vec::len).sum::<usize>(), 99);
    }

    #[test]
    fn old_timelines_with_the_full_map_on_every_record_still_resolve() {
        let lines = [
            r#"{"at":1.0,"event":"endpoints","service":"default/web","ready":{"a-1":["10.0.0.1"],"b-1":["10.0.0.2"]}}"#,
            r#"{"at":2.0,"event":"endpoints","service":"default/web","ready":{"b-1":["10.0.0.2"]}}"#,
        ];
        let events: Vec<crate::Event> = lines
            .iter()
            .map(|l| serde_json::from_str(l).expect("old record"))
            .collect();
        let kinds: Vec<EventKind> = events.into_iter().map(|e| e.kind).collect();
        assert_eq!(resolve(&kinds[..1]).len(), 2);
        assert_eq!(resolve(&kinds).keys().collect::<Vec<_>>(), vec!["b-1"]);
        let new = serde_json::to_string(&kinds[1]).expect("json");
        assert!(!new.contains("added") && !new.contains("removed"), "{new}");
    }
}
