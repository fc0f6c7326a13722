//! The cluster autoscaler's live driver (`zonelab autoscaler`): Pod and Node informers (the
//! controllers' live pattern) feed a [`Cache`]; at every `--scan-interval` the sans-IO
//! [`ClusterAutoscaler`] reads it and the node groups (the cloud's HTTP API), and its actions
//! become cloud calls, API writes (taints, pod deletions),
//! the status ConfigMap `kube-system/cluster-autoscaler-status` and Events.
//!
//! Start at [`run`].

use runtime::Moment;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use controllers::autoscaler::{AutoscalerAction, AutoscalerConfig, ClusterAutoscaler};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use live::controllers::{Feed, event_writer, execute_explained, spawn_informer, wall_clock};
use runtime::{Cache, Kind, Object};
use tokio::sync::mpsc;

use super::http::HttpCloud;

/// Informer events buffered between the watch tasks and the loop.
const FEED_BUFFER: usize = 4096;
/// Bound on one API write of the autoscaler.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// The priority expander's ConfigMap (upstream's name), in kube-system.
const PRIORITY_CONFIG_MAP: &str = "cluster-autoscaler-priority-expander";

/// Run the autoscaler against the API server `client` talks to and the cloud API `cloud`,
/// until the task is aborted.
pub async fn run(client: kube::Client, config: AutoscalerConfig, cloud: HttpCloud) {
    let mut ca = match ClusterAutoscaler::new(config) {
        Ok(ca) => ca,
        Err(e) => {
            tracing::error!("cluster autoscaler not started: {e}");
            return;
        }
    };
    tracing::info!(flags = ?ca.config().flags(), "cluster autoscaler starting");
    let (tx, mut rx) = mpsc::channel::<Feed>(FEED_BUFFER);
    let cfg = watcher::Config::default;
    let informers = [
        spawn_informer::<Pod, _>(
            Api::all(client.clone()),
            cfg(),
            Kind::Pod,
            |o| Object::Pod(Arc::new(o)),
            tx.clone(),
        ),
        spawn_informer::<Node, _>(
            Api::all(client.clone()),
            cfg(),
            Kind::Node,
            |o| Object::Node(Arc::new(o)),
            tx.clone(),
        ),
    ];
    let _stop = AbortOnDrop(informers.iter().map(|h| h.abort_handle()).collect());
    let events = event_writer::spawn(client.clone(), Default::default());
    let mut cache = Cache::new();
    let mut synced: BTreeSet<Kind> = BTreeSet::new();
    let mut halted = false;
    loop {
        let wake = ca.poll_timeout().unwrap_or(Moment::MAX);
        let sleep_for = wake
            .saturating_since(wall_clock())
            .min(Duration::from_secs(60));
        tokio::select! {
            feed = rx.recv() => {
                let Some(feed) = feed else { return };
                match feed {
                    Feed::Upsert(o) => { cache.apply(o, false); }
                    Feed::Deleted(o) => { cache.apply(o, true); }
                    Feed::Relisted(kind, list) => {
                        synced.insert(kind);
                        runtime::relist::apply_relist(&mut cache, kind, list);
                    }
                }
                continue;
            }
            _ = tokio::time::sleep(sleep_for) => {}
        }
        if synced.len() < 2 {
            continue;
        }
        if ca.config().expander == controllers::autoscaler::ExpanderKind::Priority {
            load_priorities(&client, &mut ca).await;
        }
        let views = match cloud.views().await {
            Ok(v) => v,
            Err(e) => {
                // Try again a second later (a bounded retry rate).
                tracing::warn!("listing node groups failed; scan skipped: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let now = wall_clock();
        ca.handle_timeout(&cache, &views, now);
        if ca.halted_since().is_some() != halted {
            halted = !halted;
            tracing::info!(halted, "cluster autoscaler halted or resumed");
        }
        while let Some(e) = ca.poll_event() {
            events.record(e);
        }
        while let Some(action) = ca.poll_action() {
            apply(&client, &cloud, &mut ca, action).await;
        }
    }
}

struct AbortOnDrop(Vec<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.iter().for_each(tokio::task::AbortHandle::abort);
    }
}

async fn apply(
    client: &kube::Client,
    cloud: &HttpCloud,
    ca: &mut ClusterAutoscaler,
    action: AutoscalerAction,
) {
    match &action {
        AutoscalerAction::Cloud(call) => {
            if let Err(e) = cloud.call(call).await {
                tracing::warn!(?call, "cloud call failed: {e}");
            }
        }
        AutoscalerAction::Api(a) => {
            let r = tokio::time::timeout(WRITE_TIMEOUT, execute_explained(client, a)).await;
            let failed = match r {
                Ok(Ok(())) => None,
                Ok(Err((_, text))) => Some(text),
                Err(_) => Some(format!("no answer within {WRITE_TIMEOUT:?}")),
            };
            if let Some(text) = failed {
                tracing::warn!(
                    "autoscaler write failed: {}: {text}",
                    live::controllers::writes::describe(a)
                );
                ca.handle_write_failed(&action, wall_clock());
            }
        }
        AutoscalerAction::WriteStatus(cm) => {
            if let Err(e) = tokio::time::timeout(WRITE_TIMEOUT, upsert(client, cm)).await {
                tracing::warn!("writing the status ConfigMap: no answer within {e}");
            }
        }
    }
}

/// Create or replace the status ConfigMap in kube-system.
async fn upsert(client: &kube::Client, cm: &ConfigMap) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    let name = cm.metadata.name.clone().unwrap_or_default();
    let pp = PostParams::default();
    let r = match api.get_opt(&name).await {
        Ok(Some(old)) => {
            let mut new = cm.clone();
            new.metadata.resource_version = old.metadata.resource_version;
            api.replace(&name, &pp, &new).await.map(drop)
        }
        Ok(None) => api.create(&pp, cm).await.map(drop),
        Err(e) => Err(e),
    };
    if let Err(e) = r {
        tracing::warn!("writing the status ConfigMap {name}: {e}");
    }
}

/// Feed the priority expander's ConfigMap (read before each scan; upstream watches it).
async fn load_priorities(client: &kube::Client, ca: &mut ClusterAutoscaler) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    match api.get_opt(PRIORITY_CONFIG_MAP).await {
        Ok(cm) => {
            let data = cm.and_then(|c| c.data);
            if let Err(e) = ca.set_priority_config(data.as_ref()) {
                tracing::warn!("{PRIORITY_CONFIG_MAP}: {e}");
            }
        }
        Err(e) => tracing::warn!("reading {PRIORITY_CONFIG_MAP}: {e}"),
    }
}
