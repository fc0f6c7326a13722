//! The timeline's API side: watches on Nodes, Pods and the target Services' EndpointSlices,
//! turned into [`lab::Event`]s (stamped when the change arrives) by the shared
//! [`lab::observe`] observers (the simulator uses the same ones). Start at [`spawn`].

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::watcher;
use lab::observe::{NodeObserver, PodObserver, SliceObserver};
use lab::{Event, EventKind};
use live::relist::{self, Step};
use runtime::Key;

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
fn changes<K: kube::Resource>(step: Step<K>, known: &[String]) -> (Vec<(K, bool)>, Vec<String>) {
    match step {
        Step::Apply(o) => (vec![(o, false)], Vec::new()),
        Step::Delete(o) => (vec![(o, true)], Vec::new()),
        Step::Relisted(list) => {
            let cached: Vec<Key> = known.iter().map(|k| parse_key(k)).collect();
            let r = relist::diff(cached, list, relist::key_of);
            let gone = r.deletions.iter().map(label).collect();
            (r.upserts.into_iter().map(|o| (o, false)).collect(), gone)
        }
    }
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
    let mut obs = NodeObserver::default();
    let mut stream = watch(api, "timeline Node");
    let mut out = Vec::new();
    while let Some(step) = stream.next().await {
        let (changed, gone) = changes(step, &obs.keys());
        for key in gone {
            obs.gone(&key);
        }
        for (n, _) in changed {
            obs.changed(&n, &mut out);
        }
        out.drain(..).for_each(|k| record(&tl, k));
    }
}

async fn pods(api: Api<Pod>, tl: Timeline) {
    let mut obs = PodObserver::default();
    let mut stream = watch(api, "timeline Pod");
    let mut out = Vec::new();
    while let Some(step) = stream.next().await {
        let (changed, gone) = changes(step, &obs.keys());
        for key in gone {
            obs.gone(&key, &mut out);
        }
        for (p, deleted) in changed {
            obs.changed(&p, deleted, &mut out);
        }
        out.drain(..).for_each(|k| record(&tl, k));
    }
}

async fn slices(api: Api<EndpointSlice>, tl: Timeline, services: Vec<String>) {
    let mut obs = SliceObserver::new(services);
    let mut stream = watch(api, "timeline EndpointSlice");
    let mut out = Vec::new();
    while let Some(step) = stream.next().await {
        let (changed, gone) = changes(step, &obs.keys());
        for key in gone {
            obs.gone(&key, &mut out);
        }
        for (s, deleted) in changed {
            obs.changed(&s, deleted, &mut out);
        }
        out.drain(..).for_each(|k| record(&tl, k));
    }
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
        let known = vec!["default/a".to_string(), "default/b".to_string()];
        let (changed, gone) = changes(Step::Apply(pod("c")), &known);
        assert_eq!(changed.len(), 1);
        assert!(gone.is_empty());
        let (changed, gone) = changes(Step::Relisted(vec![pod("b")]), &known);
        assert_eq!(changed, vec![(pod("b"), false)]);
        assert_eq!(gone, vec!["default/a".to_string()]);
    }
}
