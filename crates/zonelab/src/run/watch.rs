//! The timeline's API side: watches on Nodes, Pods and the target Services' EndpointSlices,
//! turned into [`lab::Event`]s (stamped when the change arrives) for only the changes the
//! analysis needs: node readiness and taints, pod binding, readiness and deletion, and the
//! ready endpoints of each target Service by node.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::watcher;
use lab::{Event, EventKind};
use live::relist::{self, Step};
use runtime::Key;
use runtime::labels::{SERVICE_NAME_LABEL, node_ready_status, pod_is_ready};

use crate::clock::epoch_ms;

/// Events collected so far (shared with the run loop, which analyses them while it runs).
pub type Timeline = Arc<Mutex<Vec<Event>>>;

/// Adds an event stamped now.
pub fn record(tl: &Timeline, kind: EventKind) {
    if let Ok(mut v) = tl.lock() {
        v.push(Event {
            at: epoch_ms(),
            kind,
        });
    }
}

/// Starts the three watches; abort the handles to stop them.
pub fn spawn(
    client: &kube::Client,
    tl: &Timeline,
    services: &[String],
) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        tokio::spawn(nodes(Api::all(client.clone()), Arc::clone(tl))),
        tokio::spawn(pods(Api::all(client.clone()), Arc::clone(tl))),
        tokio::spawn(slices(
            Api::all(client.clone()),
            Arc::clone(tl),
            services.to_vec(),
        )),
    ]
}

/// The watch of `api` as relist-aware steps (kube-runtime's watcher with its default backoff;
/// errors are waited out, the watcher relists by itself once the server answers again).
fn watch<K>(api: Api<K>, what: &'static str) -> futures::stream::BoxStream<'static, Step<K>>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    relist::steps(api, watcher::Config::default(), what).boxed()
}

/// The changes a step carries: `(object, deleted)`; for a relist, the keys of `known` it no
/// longer lists come back separately (deleted during a watch gap).
fn changes<K: kube::Resource, V>(
    step: Step<K>,
    known: &BTreeMap<String, V>,
) -> (Vec<(K, bool)>, Vec<String>) {
    match step {
        Step::Apply(o) => (vec![(o, false)], Vec::new()),
        Step::Delete(o) => (vec![(o, true)], Vec::new()),
        Step::Relisted(list) => {
            let cached: Vec<Key> = known.keys().map(|k| parse_key(k)).collect();
            let r = relist::diff(cached, list, relist::key_of);
            let gone = r.deletions.iter().map(label).collect();
            (r.upserts.into_iter().map(|o| (o, false)).collect(), gone)
        }
    }
}

/// `namespace/name` (just the name for cluster-scoped objects).
fn key_of<K: kube::Resource>(o: &K) -> String {
    label(&relist::key_of(o))
}

fn label(k: &Key) -> String {
    k.to_string()
}

/// The inverse of [`label`].
fn parse_key(label: &str) -> Key {
    let (ns, name) = label.split_once('/').unwrap_or(("", label));
    Key::new(ns, name)
}

async fn nodes(api: Api<Node>, tl: Timeline) {
    let mut seen: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    let mut stream = watch(api, "timeline Node");
    while let Some(step) = stream.next().await {
        // A node deleted during a gap is simply forgotten (the timeline has no node deletion).
        let (changed, gone) = changes(step, &seen);
        for name in gone {
            seen.remove(&name);
        }
        for (n, _) in changed {
            let key = key_of(&n);
            let name = n.metadata.name.clone().unwrap_or_default();
            let ready = node_ready_status(&n).unwrap_or("Unknown").to_string();
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
            let old = seen.insert(key, (ready.clone(), taints.clone()));
            if old.as_ref().map(|o| &o.0) != Some(&ready) {
                record(
                    &tl,
                    EventKind::NodeReady {
                        node: name.clone(),
                        ready,
                    },
                );
            }
            if old.as_ref().map_or(!taints.is_empty(), |o| o.1 != taints) {
                record(&tl, EventKind::NodeTaints { node: name, taints });
            }
        }
    }
}

#[derive(Default, Clone, PartialEq)]
struct PodSeen {
    node: String,
    ready: bool,
    deleting: bool,
}

async fn pods(api: Api<Pod>, tl: Timeline) {
    let mut seen: BTreeMap<String, PodSeen> = BTreeMap::new();
    let mut stream = watch(api, "timeline Pod");
    while let Some(step) = stream.next().await {
        let (changed, gone) = changes(step, &seen);
        for gone in gone {
            if let Some(old) = seen.remove(&gone) {
                record(
                    &tl,
                    EventKind::PodDeleted {
                        pod: gone,
                        node: old.node,
                    },
                );
            }
        }
        for (p, deleted) in changed {
            let key = key_of(&p);
            let now = PodSeen {
                node: p
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_default(),
                ready: pod_is_ready(&p),
                deleting: p.metadata.deletion_timestamp.is_some(),
            };
            let old = seen.get(&key).cloned().unwrap_or_default();
            let (pod, node) = (key.clone(), now.node.clone());
            if deleted {
                seen.remove(&key);
                record(&tl, EventKind::PodDeleted { pod, node });
                continue;
            }
            if old.node.is_empty() && !now.node.is_empty() {
                record(
                    &tl,
                    EventKind::PodBound {
                        pod: pod.clone(),
                        node: node.clone(),
                        daemon: daemon_pod(&p),
                    },
                );
            }
            if old.ready != now.ready {
                record(
                    &tl,
                    EventKind::PodReady {
                        pod: pod.clone(),
                        node: node.clone(),
                        ready: now.ready,
                    },
                );
            }
            if !old.deleting && now.deleting {
                record(&tl, EventKind::PodDeleting { pod, node });
            }
            seen.insert(key, now);
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

async fn slices(api: Api<EndpointSlice>, tl: Timeline, services: Vec<String>) {
    let mut st = SliceState::default();
    let mut stream = watch(api, "timeline EndpointSlice");
    while let Some(step) = stream.next().await {
        let (changed, gone) = changes(step, &st.by_slice);
        for gone in gone {
            if let Some((svc, _)) = st.by_slice.remove(&gone) {
                st.emit(&tl, &svc);
            }
        }
        for (s, deleted) in changed {
            let ns = s.metadata.namespace.clone().unwrap_or_default();
            let Some(svc) = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
                .map(|n| format!("{ns}/{n}"))
            else {
                continue;
            };
            if !services.contains(&svc) {
                continue;
            }
            let key = key_of(&s);
            if deleted {
                st.by_slice.remove(&key);
            } else {
                st.by_slice.insert(key, (svc.clone(), ready_by_node(&s)));
            }
            st.emit(&tl, &svc);
        }
    }
}

/// The target Services' slices: slice key -> (service, ready IPs by node), and what was
/// recorded last per service.
#[derive(Default)]
struct SliceState {
    by_slice: BTreeMap<String, (String, BTreeMap<String, Vec<String>>)>,
    last: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

impl SliceState {
    /// Records `svc`'s ready endpoints if they changed.
    fn emit(&mut self, tl: &Timeline, svc: &str) {
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
            record(
                tl,
                EventKind::Endpoints {
                    service: svc.to_string(),
                    ready: merged,
                },
            );
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.metadata.namespace = Some("default".into());
        p
    }

    #[test]
    fn a_relist_reports_what_it_no_longer_lists() {
        let known: BTreeMap<String, ()> = [("default/a", ()), ("default/b", ())]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let (changed, gone) = changes(Step::Apply(pod("c")), &known);
        assert_eq!(changed.len(), 1);
        assert!(gone.is_empty());
        let (changed, gone) = changes(Step::Relisted(vec![pod("b")]), &known);
        assert_eq!(changed, vec![(pod("b"), false)]);
        assert_eq!(gone, vec!["default/a".to_string()]);
    }
}
