//! The timeline's Kubernetes Events: a watch on core/v1 Events in every namespace, each
//! created Event and each count change recorded as a [`lab::EventKind::KubeEvent`].
//!
//! Start at [`spawn`].

use std::collections::BTreeMap;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Event;
use kube::api::Api;
use kube::runtime::watcher;
use lab::EventKind;
use lab::timeline::KubeEvent;
use live::relist::{self, Step};

use super::watch::{Timeline, record};

/// Start the watch; abort the handle to stop it.
pub fn spawn(client: &kube::Client, tl: &Timeline) -> tokio::task::JoinHandle<()> {
    tokio::spawn(watch(Api::all(client.clone()), std::sync::Arc::clone(tl)))
}

/// Every Event created or updated (its count grew) goes on the timeline once per version seen;
/// deletions (TTL) and relists of unchanged Events do not. The shared relist helper waits out
/// errors with kube-runtime's default backoff.
async fn watch(api: Api<Event>, tl: Timeline) {
    let mut seen: BTreeMap<String, i32> = BTreeMap::new();
    let mut stream = std::pin::pin!(relist::steps(
        api,
        watcher::Config::default(),
        "timeline events"
    ));
    while let Some(step) = stream.next().await {
        let events = match step {
            Step::Apply(e) => vec![e],
            Step::Delete(e) => {
                seen.remove(&KubeEvent::of(&e).name);
                continue;
            }
            Step::Relisted(list) => list,
        };
        for e in events {
            let rec = KubeEvent::of(&e);
            if seen.insert(rec.name.clone(), rec.count) != Some(rec.count) {
                record(&tl, EventKind::KubeEvent(rec));
            }
        }
    }
}
