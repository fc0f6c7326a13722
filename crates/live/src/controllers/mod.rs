//! The live driver: informers (list + watch through the API) feed one shared [`Cache`] and the
//! controllers; their actions become API writes; the wall clock supplies `now`.
//!
//! Start at [`run`]. Thin on purpose: all decisions live in the controllers.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::watcher;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::relist::{self, Step};
use controllers::cache::{Cache, Key, Object};
pub mod elected;
pub mod event_writer;
pub mod fence;
pub mod writes;

use controllers::{Action, Controller, Kind, Moment, WriteError};
use writes::{Writes, describe};

/// Writes in flight at once.
const MAX_INFLIGHT_WRITES: usize = 64;
/// Informer events buffered between the watch tasks and the controller loop.
const EVENT_BUFFER: usize = 4096;

/// The wall clock as controllers see it.
pub fn wall_clock() -> Moment {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| Moment::from_millis(d.as_millis() as i64))
        .unwrap_or(Moment::EPOCH)
}

/// What a watch task reports (shared with the kubelet's driver).
pub enum Feed {
    /// Added or modified.
    Upsert(Object),
    Deleted(Object),
    /// A complete (re)list of `kind`: reconcile it with [`crate::relist::diff`].
    Relisted(Kind, Vec<Object>),
}

/// Spawn an informer: list + watch `api` (relisting on errors and 410, with kube-runtime's
/// default backoff), reporting every object wrapped as an [`Object`] of `kind`.
pub fn spawn_informer<K, F>(
    api: Api<K>,
    cfg: watcher::Config,
    kind: Kind,
    wrap: F,
    tx: mpsc::Sender<Feed>,
) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    F: Fn(K) -> Object + Send + 'static,
{
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(relist::steps(api, cfg, kind_name(kind)));
        while let Some(step) = stream.next().await {
            let feed = match step {
                Step::Apply(o) => Feed::Upsert(wrap(o)),
                Step::Delete(o) => Feed::Deleted(wrap(o)),
                Step::Relisted(list) => Feed::Relisted(kind, list.into_iter().map(&wrap).collect()),
            };
            if tx.send(feed).await.is_err() {
                return;
            }
        }
    })
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Pod => "Pod",
        Kind::Node => "Node",
        Kind::Service => "Service",
        Kind::EndpointSlice => "EndpointSlice",
        Kind::Lease => "Lease",
        Kind::Deployment => "Deployment",
        Kind::ReplicaSet => "ReplicaSet",
        Kind::PodDisruptionBudget => "PodDisruptionBudget",
        Kind::Namespace => "Namespace",
        Kind::ServiceAccount => "ServiceAccount",
        Kind::StatefulSet => "StatefulSet",
        Kind::ControllerRevision => "ControllerRevision",
        Kind::DaemonSet => "DaemonSet",
    }
}

/// List and watch every kind in `kinds`.
fn start_informers(
    client: &kube::Client,
    tx: &mpsc::Sender<Feed>,
    kinds: &BTreeSet<Kind>,
) -> Informers {
    let cfg = watcher::Config::default;
    let handles: Vec<tokio::task::JoinHandle<()>> = kinds
        .iter()
        .map(|kind| match kind {
            Kind::Pod => spawn_informer::<Pod, _>(
                Api::all(client.clone()),
                cfg(),
                Kind::Pod,
                |o| Object::Pod(Arc::new(o)),
                tx.clone(),
            ),
            Kind::Node => spawn_informer::<Node, _>(
                Api::all(client.clone()),
                cfg(),
                Kind::Node,
                |o| Object::Node(Arc::new(o)),
                tx.clone(),
            ),
            Kind::Service => spawn_informer::<Service, _>(
                Api::all(client.clone()),
                cfg(),
                Kind::Service,
                |o| Object::Service(Arc::new(o)),
                tx.clone(),
            ),
            Kind::EndpointSlice => spawn_informer::<EndpointSlice, _>(
                Api::all(client.clone()),
                cfg(),
                Kind::EndpointSlice,
                |o| Object::EndpointSlice(Arc::new(o)),
                tx.clone(),
            ),
            Kind::Lease => spawn_informer::<Lease, _>(
                Api::all(client.clone()),
                cfg(),
                Kind::Lease,
                |o| Object::Lease(Arc::new(o)),
                tx.clone(),
            ),
            Kind::Deployment => spawn_informer::<Deployment, _>(
                Api::all(client.clone()),
                cfg(),
                Kind::Deployment,
                |o| Object::Deployment(Arc::new(o)),
                tx.clone(),
            ),
            Kind::ReplicaSet => spawn_informer::<ReplicaSet, _>(
                Api::all(client.clone()),
                cfg(),
                Kind::ReplicaSet,
                |o| Object::ReplicaSet(Arc::new(o)),
                tx.clone(),
            ),
            Kind::PodDisruptionBudget => spawn_informer::<PodDisruptionBudget, _>(
                Api::all(client.clone()),
                cfg(),
                Kind::PodDisruptionBudget,
                |o| Object::PodDisruptionBudget(Arc::new(o)),
                tx.clone(),
            ),
            Kind::Namespace => spawn_informer::<Namespace, _>(
                Api::all(client.clone()),
                cfg(),
                Kind::Namespace,
                |o| Object::Namespace(Arc::new(o)),
                tx.clone(),
            ),
            Kind::ServiceAccount => spawn_informer::<ServiceAccount, _>(
                Api::all(client.clone()),
                cfg(),
                Kind::ServiceAccount,
                |o| Object::ServiceAccount(Arc::new(o)),
                tx.clone(),
            ),
            Kind::StatefulSet => spawn_informer::<StatefulSet, _>(
                Api::all(client.clone()),
                cfg(),
                Kind::StatefulSet,
                |o| Object::StatefulSet(Arc::new(o)),
                tx.clone(),
            ),
            Kind::ControllerRevision => spawn_informer::<ControllerRevision, _>(
                Api::all(client.clone()),
                cfg(),
                Kind::ControllerRevision,
                |o| Object::ControllerRevision(Arc::new(o)),
                tx.clone(),
            ),
            Kind::DaemonSet => spawn_informer::<DaemonSet, _>(
                Api::all(client.clone()),
                cfg(),
                Kind::DaemonSet,
                |o| Object::DaemonSet(Arc::new(o)),
                tx.clone(),
            ),
        })
        .collect();
    Informers(
        handles
            .iter()
            .map(tokio::task::JoinHandle::abort_handle)
            .collect(),
    )
}

/// The informer tasks of one driver run; dropping it stops them.
pub struct Informers(Vec<tokio::task::AbortHandle>);

impl Drop for Informers {
    fn drop(&mut self) {
        self.0.iter().for_each(tokio::task::AbortHandle::abort);
    }
}

/// Run `controllers` against the API server `client` talks to, until the process ends.
pub async fn run(client: kube::Client, mut controllers: Vec<Box<dyn Controller>>) {
    let (tx, mut rx) = mpsc::channel::<Feed>(EVENT_BUFFER);
    let kinds: BTreeSet<Kind> = controllers
        .iter()
        .flat_map(|c| c.kinds())
        .copied()
        .collect();
    let _informers = start_informers(&client, &tx, &kinds);
    let mut writes: Writes<usize> = Writes::new(client.clone(), MAX_INFLIGHT_WRITES);
    let mut cache = Cache::new();
    let mut synced: BTreeSet<Kind> = BTreeSet::new();
    let mut started = false;
    let events = event_writer::spawn(client.clone(), Default::default());
    loop {
        let wake = if started {
            controllers.iter().filter_map(|c| c.poll_timeout()).min()
        } else {
            None
        };
        let sleep_for = wake
            .map(|w| {
                w.saturating_since(wall_clock())
                    .min(Duration::from_secs(60))
            })
            .unwrap_or(Duration::from_secs(60));
        tokio::select! {
            feed = rx.recv() => {
                let Some(feed) = feed else { return };
                let now = wall_clock();
                let changes = match feed {
                    Feed::Upsert(obj) => vec![cache.apply(obj, false)],
                    Feed::Deleted(obj) => vec![cache.apply(obj, true)],
                    Feed::Relisted(kind, list) => {
                        synced.insert(kind);
                        runtime::relist::apply_relist(&mut cache, kind, list)
                    }
                };
                if started {
                    for change in &changes {
                        controllers.iter_mut().for_each(|c| c.handle_change(&cache, change, now));
                    }
                } else if kinds.iter().all(|k| synced.contains(k)) {
                    started = true;
                    tracing::info!("informers synced; starting {} controllers", controllers.len());
                    controllers.iter_mut().for_each(|c| c.handle_synced(&cache, now));
                }
            }
            done = writes.next_done() => {
                if let Err(err) = &done.result {
                    let c = &mut controllers[done.tag];
                    tracing::warn!(controller = c.name(), error = ?err, "write failed: {}: {}", describe(&done.action), done.detail);
                    c.handle_write_failed(&done.action, err, wall_clock());
                }
            }
            _ = tokio::time::sleep(sleep_for) => {
                let now = wall_clock();
                for c in controllers.iter_mut() {
                    if c.poll_timeout().is_some_and(|w| w <= now) {
                        c.handle_timeout(&cache, now);
                    }
                }
            }
        }
        for (i, c) in controllers.iter_mut().enumerate() {
            while let Some(e) = c.poll_event() {
                events.record(e);
            }
            while let Some(action) = c.poll_action() {
                writes.submit(i, action);
            }
        }
    }
}

/// The [`WriteError`] of a failed API call.
fn classify(e: kube::Error) -> WriteError {
    match e {
        kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists" => {
            WriteError::AlreadyExists
        }
        kube::Error::Api(s) if s.code == 409 => WriteError::Conflict,
        kube::Error::Api(s) if s.code == 404 => WriteError::NotFound,
        kube::Error::Api(s) if s.code == 422 => WriteError::Invalid(s.message),
        other => WriteError::Other(other.to_string()),
    }
}

fn namespaced<K>(client: &kube::Client, namespace: &str) -> Api<K>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    Api::namespaced(client.clone(), namespace)
}

fn ns_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.namespace.clone().unwrap_or_default()
}

async fn write_object<K>(api: Api<K>, obj: &K, op: Op) -> Result<(), kube::Error>
where
    K: kube::Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let pp = PostParams::default();
    match op {
        Op::Create => api.create(&pp, obj).await.map(|_| ()),
        Op::Update => api.replace(&name, &pp, obj).await.map(|_| ()),
        Op::Status => api.replace_status(&name, &pp, obj).await.map(|_| ()),
    }
}

#[derive(Clone, Copy)]
enum Op {
    Create,
    Update,
    Status,
}

async fn write(client: &kube::Client, obj: &Object, op: Op) -> Result<(), kube::Error> {
    let c = client;
    match obj {
        Object::Pod(o) => write_object(namespaced(c, &ns_of(&o.metadata)), o.as_ref(), op).await,
        Object::Node(o) => write_object(Api::all(c.clone()), o.as_ref(), op).await,
        Object::Service(o) => {
            write_object(namespaced(c, &ns_of(&o.metadata)), o.as_ref(), op).await
        }
        Object::EndpointSlice(o) => {
            write_object(namespaced(c, &ns_of(&o.metadata)), o.as_ref(), op).await
        }
        Object::Lease(o) => write_object(namespaced(c, &ns_of(&o.metadata)), o.as_ref(), op).await,
        Object::Deployment(o) => {
            write_object(namespaced(c, &ns_of(&o.metadata)), o.as_ref(), op).await
        }
        Object::ReplicaSet(o) => {
            write_object(namespaced(c, &ns_of(&o.metadata)), o.as_ref(), op).await
        }
        Object::PodDisruptionBudget(o) => {
            write_object(namespaced(c, &ns_of(&o.metadata)), o.as_ref(), op).await
        }
        Object::Namespace(o) => write_object(Api::all(c.clone()), o.as_ref(), op).await,
        Object::ServiceAccount(o) => {
            write_object(namespaced(c, &ns_of(&o.metadata)), o.as_ref(), op).await
        }
        Object::StatefulSet(o) => {
            write_object(namespaced(c, &ns_of(&o.metadata)), o.as_ref(), op).await
        }
        Object::ControllerRevision(o) => {
            write_object(namespaced(c, &ns_of(&o.metadata)), o.as_ref(), op).await
        }
        Object::DaemonSet(o) => {
            write_object(namespaced(c, &ns_of(&o.metadata)), o.as_ref(), op).await
        }
    }
}

async fn delete<K>(api: Api<K>, key: &Key, dp: &DeleteParams) -> Result<(), kube::Error>
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    api.delete(&key.name, dp).await.map(|_| ())
}

/// Execute one controller write against the API server (also used by the kubelet's driver).
pub async fn execute(client: &kube::Client, action: &Action) -> Result<(), WriteError> {
    execute_explained(client, action).await.map_err(|(e, _)| e)
}

/// [`execute`], keeping the server's words on failure (e.g. the `Status` message) for logs.
pub async fn execute_explained(
    client: &kube::Client,
    action: &Action,
) -> Result<(), (WriteError, String)> {
    send(client, action).await.map_err(explain)
}

/// A failed write as the sans-IO components take it: its class and the client's text.
pub(crate) fn explain(e: kube::Error) -> (WriteError, String) {
    let text = e.to_string();
    (classify(e), text)
}

async fn send(client: &kube::Client, action: &Action) -> Result<(), kube::Error> {
    match action {
        Action::Create(o) => write(client, o, Op::Create).await,
        Action::Update(o) => write(client, o, Op::Update).await,
        Action::UpdateStatus(o) => write(client, o, Op::Status).await,
        Action::Delete {
            kind,
            key,
            uid,
            grace_period_seconds,
        } => {
            let dp = DeleteParams {
                grace_period_seconds: grace_period_seconds.map(|g| g.max(0) as u32),
                preconditions: uid.clone().map(|u| Preconditions {
                    uid: Some(u),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            let ns = &key.namespace;
            match kind {
                Kind::Pod => delete::<Pod>(namespaced(client, ns), key, &dp).await,
                Kind::Node => delete::<Node>(Api::all(client.clone()), key, &dp).await,
                Kind::Service => delete::<Service>(namespaced(client, ns), key, &dp).await,
                Kind::EndpointSlice => {
                    delete::<EndpointSlice>(namespaced(client, ns), key, &dp).await
                }
                Kind::Lease => delete::<Lease>(namespaced(client, ns), key, &dp).await,
                Kind::Deployment => delete::<Deployment>(namespaced(client, ns), key, &dp).await,
                Kind::ReplicaSet => delete::<ReplicaSet>(namespaced(client, ns), key, &dp).await,
                Kind::PodDisruptionBudget => {
                    delete::<PodDisruptionBudget>(namespaced(client, ns), key, &dp).await
                }
                Kind::Namespace => delete::<Namespace>(Api::all(client.clone()), key, &dp).await,
                Kind::ServiceAccount => {
                    delete::<ServiceAccount>(namespaced(client, ns), key, &dp).await
                }
                Kind::StatefulSet => delete::<StatefulSet>(namespaced(client, ns), key, &dp).await,
                Kind::ControllerRevision => {
                    delete::<ControllerRevision>(namespaced(client, ns), key, &dp).await
                }
                Kind::DaemonSet => delete::<DaemonSet>(namespaced(client, ns), key, &dp).await,
            }
        }
        Action::Bind { pod, node } => {
            let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace);
            let binding = serde_json::json!({
                "apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": pod.name, "namespace": pod.namespace},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node},
            });
            api.create_subresource::<serde_json::Value, serde_json::Value>(
                "binding",
                &pod.name,
                &PostParams::default(),
                &binding,
            )
            .await
            .map(|_| ())
        }
    }
}
