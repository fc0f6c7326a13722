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

/// Events collected so far (shared with the run loop, which analyses them while it runs).
pub type Timeline = Arc<Mutex<Vec<Event>>>;

/// Milliseconds since the Unix epoch, as a float.
pub fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1e3)
        .unwrap_or(0.0)
}

/// Adds an event stamped now.
pub fn record(tl: &Timeline, kind: EventKind) {
    if let Ok(mut v) = tl.lock() {
        v.push(Event { at: now_ms(), kind });
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

fn changes<K>(ev: watcher::Event<K>) -> Vec<(K, bool)> {
    match ev {
        watcher::Event::Apply(o) | watcher::Event::InitApply(o) => vec![(o, false)],
        watcher::Event::Delete(o) => vec![(o, true)],
        watcher::Event::Init | watcher::Event::InitDone => Vec::new(),
    }
}

async fn nodes(api: Api<Node>, tl: Timeline) {
    let mut seen: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    let mut stream = watcher(api, watcher::Config::default()).boxed();
    while let Some(ev) = stream.next().await {
        let Ok(ev) = ev else {
            // The watcher relists by itself; do not spin while the server is away.
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            continue;
        };
        for (n, _) in changes(ev) {
            let name = n.metadata.name.clone().unwrap_or_default();
            let status = n.status.as_ref();
            let ready = status
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                .map_or("Unknown".to_string(), |c| c.status.clone());
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
            let old = seen.insert(name.clone(), (ready.clone(), taints.clone()));
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
    let mut stream = watcher(api, watcher::Config::default()).boxed();
    while let Some(ev) = stream.next().await {
        let Ok(ev) = ev else {
            // The watcher relists by itself; do not spin while the server is away.
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            continue;
        };
        for (p, deleted) in changes(ev) {
            let key = format!(
                "{}/{}",
                p.metadata.namespace.as_deref().unwrap_or("default"),
                p.metadata.name.as_deref().unwrap_or_default()
            );
            let now = PodSeen {
                node: p
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_default(),
                ready: p
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True")),
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
    // slice key -> (service, ready IPs by node)
    let mut by_slice: BTreeMap<String, (String, BTreeMap<String, Vec<String>>)> = BTreeMap::new();
    let mut last: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut stream = watcher(api, watcher::Config::default()).boxed();
    while let Some(ev) = stream.next().await {
        let Ok(ev) = ev else {
            // The watcher relists by itself; do not spin while the server is away.
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            continue;
        };
        for (s, deleted) in changes(ev) {
            let ns = s.metadata.namespace.clone().unwrap_or_default();
            let Some(svc) = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name"))
                .map(|n| format!("{ns}/{n}"))
            else {
                continue;
            };
            if !services.contains(&svc) {
                continue;
            }
            let key = format!("{ns}/{}", s.metadata.name.as_deref().unwrap_or_default());
            if deleted {
                by_slice.remove(&key);
            } else {
                by_slice.insert(key, (svc.clone(), ready_by_node(&s)));
            }
            let mut merged: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (owner, ready) in by_slice.values() {
                if *owner == svc {
                    for (node, ips) in ready {
                        merged
                            .entry(node.clone())
                            .or_default()
                            .extend(ips.iter().cloned());
                    }
                }
            }
            merged.values_mut().for_each(|v| v.sort());
            if last.get(&svc) != Some(&merged) {
                last.insert(svc.clone(), merged.clone());
                record(
                    &tl,
                    EventKind::Endpoints {
                        service: svc,
                        ready: merged,
                    },
                );
            }
        }
    }
}
