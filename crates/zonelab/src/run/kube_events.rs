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

/// The timeline record of one version of an Event.
fn timeline_record(e: &Event) -> KubeEvent {
    let i = &e.involved_object;
    let kind = i.kind.as_deref().unwrap_or("").to_lowercase();
    let src = e.source.as_ref();
    let component = src
        .and_then(|s| s.component.clone())
        .or_else(|| e.reporting_component.clone())
        .unwrap_or_default();
    let source = match src
        .and_then(|s| s.host.as_deref())
        .filter(|h| !h.is_empty())
    {
        Some(host) => format!("{component}, {host}"),
        None => component,
    };
    let meta = &e.metadata;
    KubeEvent {
        name: format!(
            "{}/{}",
            meta.namespace.as_deref().unwrap_or("default"),
            meta.name.as_deref().unwrap_or("")
        ),
        type_: e.type_.clone().unwrap_or_default(),
        reason: e.reason.clone().unwrap_or_default(),
        object: format!("{kind}/{}", i.name.as_deref().unwrap_or("")),
        message: e.message.clone().unwrap_or_default(),
        source,
        count: e.count.unwrap_or(1),
    }
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
                seen.remove(&timeline_record(&e).name);
                continue;
            }
            Step::Relisted(list) => list,
        };
        for e in events {
            let rec = timeline_record(&e);
            if seen.insert(rec.name.clone(), rec.count) != Some(rec.count) {
                record(&tl, EventKind::KubeEvent(rec));
            }
        }
    }
}
