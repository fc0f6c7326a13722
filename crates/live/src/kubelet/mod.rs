//! The live driver: watches this node's Node and pods (`fieldSelector spec.nodeName=<node>`),
//! reads its Lease with GETs (at start and after a renewal lost a race: the Node authorizer
//! lets a node get, create and update its Lease but not list or watch Leases, as upstream's
//! kubelet only GETs it) and renews it from the server's answer to its last write, feeds the
//! [`Kubelet`], executes its writes through the API, its
//! runtime commands through a [`Runtime`] and its probes through a [`Prober`], on the wall
//! clock. Start at [`Agent::start`] (or [`run`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::controllers::wall_clock;
use crate::controllers::writes::{Writes, describe};
use crate::relist;
use controllers::{Action, Change, Key, Kind, Moment, Object, WriteError};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::runtime::watcher;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use kubelet::core::{
    Kubelet, KubeletConfig, KubeletError, LEASE_NAMESPACE, ProbeOutcome, RuntimeEvent,
};
use logserver::LogQuery;

pub mod logserver;
pub mod logwriter;
pub mod pod_runtime;
pub mod prober;

pub use pod_runtime::{FakeRuntime, ProcessRuntime, ProcessRuntimeConfig, Runtime};
pub use prober::{NetProber, Prober};

/// Writes in flight at once.
const MAX_INFLIGHT_WRITES: usize = 16;
/// Bound of every channel into the loop.
const CHANNEL_BOUND: usize = 1024;
/// After a shutdown began, the loop ends at the latest this long after the grace period.
const SHUTDOWN_SLACK: Duration = Duration::from_millis(10_000);

/// The agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error(transparent)]
    Kubelet(#[from] KubeletError),
    #[error("the agent task failed: {0}")]
    Join(String),
}

use crate::controllers::{Feed, spawn_informer as spawn_watch};

fn start_watches(client: &kube::Client, node: &str, tx: &mpsc::Sender<Feed>) {
    let by_name = watcher::Config::default().fields(&format!("metadata.name={node}"));
    spawn_watch::<Node, _>(
        Api::all(client.clone()),
        by_name,
        Kind::Node,
        |o| Object::Node(Arc::new(o)),
        tx.clone(),
    );
    spawn_lease_get(client, node, tx);
    spawn_watch::<Pod, _>(
        Api::all(client.clone()),
        watcher::Config::default().fields(&format!("spec.nodeName={node}")),
        Kind::Pod,
        |o| Object::Pod(Arc::new(o)),
        tx.clone(),
    );
}

/// The answer to the kubelet's Lease read: the Lease, `None` when it does not exist.
type LeaseRead = Result<Option<Arc<Lease>>, WriteError>;

/// A heartbeat request finished: a Lease read, or a Lease write with the stored object.
enum Heartbeat {
    Read(LeaseRead),
    Written(Action, Result<Arc<Lease>, (WriteError, String)>),
}

/// GET the kubelet's Lease (after an update lost a race). No per-request timeout: over
/// HTTP/1.1 giving up on an answer costs the connection (client-go's HTTP/2 only resets a
/// stream), and the transport already drops a dead server (`zonelab::client`); one request at
/// a time, the kubelet's in-flight flag keeps them from piling up.
async fn read_lease(client: kube::Client, key: Key, tx: mpsc::Sender<Heartbeat>) {
    let api: Api<Lease> = Api::namespaced(client, &key.namespace);
    let read = api
        .get_opt(&key.name)
        .await
        .map(|l| l.map(Arc::new))
        .map_err(|e| WriteError::Other(e.to_string()));
    if let Err(e) = &read {
        tracing::warn!(error = %e, "reading the node Lease failed");
    }
    let _ = tx.send(Heartbeat::Read(read)).await;
}

/// Create or update the kubelet's Lease, keeping the server's answer (upstream's lease
/// controller renews from it: `c.latestLease = lease`).
async fn write_lease(client: kube::Client, action: Action, tx: mpsc::Sender<Heartbeat>) {
    let (Action::Create(Object::Lease(l)) | Action::Update(Object::Lease(l))) = &action else {
        return;
    };
    let ns = l.metadata.namespace.as_deref().unwrap_or(LEASE_NAMESPACE);
    let api: Api<Lease> = Api::namespaced(client, ns);
    let pp = kube::api::PostParams::default();
    let answer = match &action {
        Action::Create(_) => api.create(&pp, l).await,
        _ => {
            let name = l.metadata.name.as_deref().unwrap_or_default();
            api.replace(name, &pp, l).await
        }
    };
    let result = answer.map(Arc::new).map_err(crate::controllers::explain);
    let _ = tx.send(Heartbeat::Written(action, result)).await;
}

fn is_lease_write(a: &Action) -> bool {
    matches!(
        a,
        Action::Create(Object::Lease(_)) | Action::Update(Object::Lease(_))
    )
}

/// First retry of a failed Lease GET; doubled up to [`LEASE_GET_RETRY_MAX`].
const LEASE_GET_RETRY: Duration = Duration::from_millis(100);
const LEASE_GET_RETRY_MAX: Duration = Duration::from_secs(5);

/// GET this node's Lease (retrying until it answers) and report it as a relist of Leases: the
/// Lease, or none when it does not exist yet.
fn spawn_lease_get(client: &kube::Client, node: &str, tx: &mpsc::Sender<Feed>) {
    let api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let (node, tx) = (node.to_string(), tx.clone());
    tokio::spawn(async move {
        let mut delay = LEASE_GET_RETRY;
        loop {
            match api.get_opt(&node).await {
                Ok(lease) => {
                    let list = lease
                        .map(|l| Object::Lease(Arc::new(l)))
                        .into_iter()
                        .collect();
                    let _ = tx.send(Feed::Relisted(Kind::Lease, list)).await;
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading the node Lease failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(LEASE_GET_RETRY_MAX);
                }
            }
        }
    });
}

/// A running agent: stop it gracefully with [`Agent::shutdown`].
pub struct Agent {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), LiveError>>,
}

impl Agent {
    /// Spawn [`run`] on the current tokio runtime.
    /// `logs` answers the log endpoint's questions (see [`logserver`]).
    pub fn start(
        client: kube::Client,
        cfg: KubeletConfig,
        runtime: Arc<dyn Runtime>,
        prober: Arc<dyn Prober>,
        logs: Option<mpsc::Receiver<LogQuery>>,
    ) -> Agent {
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(run_with_logs(client, cfg, runtime, prober, rx, logs));
        Agent { stop, task }
    }

    /// Graceful node shutdown: report not ready, stop every pod, then return.
    pub async fn shutdown(self) -> Result<(), LiveError> {
        let _ = self.stop.send(true);
        self.wait().await
    }

    /// Wait until the agent ends (after a shutdown, or an error).
    pub async fn wait(self) -> Result<(), LiveError> {
        self.task
            .await
            .map_err(|e| LiveError::Join(e.to_string()))?
    }
}

/// Run the kubelet for `cfg.node_name` until `stop` turns true and the graceful shutdown has
/// finished (or its bound passed).
pub async fn run(
    client: kube::Client,
    cfg: KubeletConfig,
    runtime: Arc<dyn Runtime>,
    prober: Arc<dyn Prober>,
    stop: watch::Receiver<bool>,
) -> Result<(), LiveError> {
    run_with_logs(client, cfg, runtime, prober, stop, None).await
}

/// [`run`], also answering the log endpoint's [`LogQuery`]s.
pub async fn run_with_logs(
    client: kube::Client,
    cfg: KubeletConfig,
    runtime: Arc<dyn Runtime>,
    prober: Arc<dyn Prober>,
    mut stop: watch::Receiver<bool>,
    logs: Option<mpsc::Receiver<LogQuery>>,
) -> Result<(), LiveError> {
    let (_no_logs, idle) = mpsc::channel::<LogQuery>(1);
    let mut logs = logs.unwrap_or(idle);
    let shutdown_bound = cfg.shutdown_grace_period + SHUTDOWN_SLACK;
    let mut k = Kubelet::new(cfg)?;
    let (feed_tx, mut feed_rx) = mpsc::channel::<Feed>(CHANNEL_BOUND);
    start_watches(&client, &k.config().node_name, &feed_tx);
    let (ev_tx, mut ev_rx) = mpsc::channel::<RuntimeEvent>(CHANNEL_BOUND);
    let (probe_tx, mut probe_rx) = mpsc::channel::<(u64, ProbeOutcome)>(CHANNEL_BOUND);
    let mut writes: Writes<()> = Writes::new(client.clone(), MAX_INFLIGHT_WRITES);
    let mut synced: BTreeSet<Kind> = BTreeSet::new();
    let mut shutdown_at: Option<Moment> = None;
    // Lease writes in flight (sent outside `writes` to keep the server's answer).
    let mut heartbeats = 0usize;
    let events = crate::controllers::event_writer::spawn(client.clone(), Default::default());
    let (lease_tx, mut lease_rx) = mpsc::channel::<Heartbeat>(CHANNEL_BOUND);
    loop {
        let sleep_for = k.poll_timeout().map_or(Duration::from_secs(60), |w| {
            w.saturating_since(wall_clock())
                .min(Duration::from_secs(60))
        });
        tokio::select! {
            feed = feed_rx.recv() => {
                let Some(feed) = feed else { return Ok(()) };
                let now = wall_clock();
                match feed {
                    Feed::Upsert(obj) => k.handle_change(&Change::Applied { new: obj, old: None }, now),
                    Feed::Deleted(obj) => k.handle_change(&Change::Deleted(obj), now),
                    Feed::Relisted(kind, list) => {
                        let cached = k.cache().objects(kind).into_iter().map(|o| o.key());
                        let r = relist::diff(cached, list, Object::key);
                        for key in r.deletions {
                            if let Some(obj) = k.cache().get(kind, &key) {
                                k.handle_change(&Change::Deleted(obj), now);
                            }
                        }
                        for obj in r.upserts {
                            k.handle_change(&Change::Applied { new: obj, old: None }, now);
                        }
                        synced.insert(kind);
                        if synced.len() == 3 {
                            k.handle_synced(now);
                        }
                    }
                }
            }
            Some(ev) = ev_rx.recv() => k.handle_event(ev, wall_clock()),
            Some((id, outcome)) = probe_rx.recv() => k.handle_probe_result(id, outcome, wall_clock()),
            Some(beat) = lease_rx.recv() => match beat {
                Heartbeat::Read(read) => k.handle_lease_read(read, wall_clock()),
                Heartbeat::Written(action, result) => {
                    heartbeats -= 1;
                    match result {
                        Ok(lease) => {
                            k.handle_write_result(&action, Ok(()), wall_clock());
                            k.handle_lease_written(lease);
                        }
                        Err((e, detail)) => {
                            tracing::warn!(error = ?e, "kubelet write failed: {}: {detail}", describe(&action));
                            k.handle_write_result(&action, Err(e), wall_clock());
                        }
                    }
                }
            },
            Some(q) = logs.recv() => {
                let answer = k.container_log_target(&q.namespace, &q.pod, &q.container, q.previous);
                let _ = q.reply.send(answer);
            }
            done = writes.next_done() => {
                if let Err(e) = &done.result {
                    tracing::warn!(error = ?e, "kubelet write failed: {}: {}", describe(&done.action), done.detail);
                }
                k.handle_write_result(&done.action, done.result, wall_clock());
            }
            changed = stop.changed(), if shutdown_at.is_none() => {
                if changed.is_err() || *stop.borrow() {
                    let now = wall_clock();
                    shutdown_at = Some(now);
                    k.begin_shutdown(now);
                }
            }
            _ = tokio::time::sleep(sleep_for) => {
                k.handle_timeout(wall_clock());
            }
        }
        // Writes first (a pod is marked not ready before its processes are signalled).
        while let Some(action) = k.poll_action() {
            if is_lease_write(&action) {
                heartbeats += 1;
                tokio::spawn(write_lease(client.clone(), action, lease_tx.clone()));
            } else {
                writes.submit((), action);
            }
        }
        while let Some(key) = k.poll_lease_read() {
            tokio::spawn(read_lease(client.clone(), key, lease_tx.clone()));
        }
        while let Some(cmd) = k.poll_command() {
            runtime.execute(cmd, ev_tx.clone());
        }
        while let Some(req) = k.poll_probe() {
            prober.probe(req, probe_tx.clone());
        }
        while let Some(ev) = k.poll_event() {
            events.record(ev);
        }
        if let Some(t) = shutdown_at {
            let done = k.shutdown_complete() && writes.pending() == 0 && heartbeats == 0;
            if done || wall_clock().saturating_since(t) > shutdown_bound {
                tracing::info!(complete = done, "kubelet shutdown finished");
                return Ok(());
            }
        }
    }
}
