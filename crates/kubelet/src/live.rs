//! The live driver: watches this node's Node, Lease and pods (`fieldSelector
//! spec.nodeName=<node>`), feeds the [`Kubelet`], executes its writes through the API, its
//! runtime commands through a [`Runtime`] and its probes through a [`Prober`], on the wall
//! clock. Start at [`Agent::start`] (or [`run`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use controllers::live::{execute, wall_clock};
use controllers::{Action, Change, Key, Kind, Millis, Object, WriteError};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::runtime::watcher;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use crate::core::{
    Kubelet, KubeletConfig, KubeletError, LEASE_NAMESPACE, ProbeOutcome, RuntimeEvent,
};
use crate::prober::Prober;
use crate::runtime::Runtime;

/// Writes in flight at once.
const MAX_INFLIGHT_WRITES: usize = 16;
/// Bound of every channel into the loop.
const CHANNEL_BOUND: usize = 1024;
/// After a shutdown began, the loop ends at the latest this long after the grace period.
const SHUTDOWN_SLACK: Millis = 10_000;

/// The agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error(transparent)]
    Kubelet(#[from] KubeletError),
    #[error("the agent task failed: {0}")]
    Join(String),
}

use controllers::live::{Feed, spawn_informer as spawn_watch};

fn start_watches(client: &kube::Client, node: &str, tx: &mpsc::Sender<Feed>) {
    let by_name = watcher::Config::default().fields(&format!("metadata.name={node}"));
    spawn_watch::<Node, _>(
        Api::all(client.clone()),
        by_name.clone(),
        Kind::Node,
        |o| Object::Node(Arc::new(o)),
        tx.clone(),
    );
    spawn_watch::<Lease, _>(
        Api::namespaced(client.clone(), LEASE_NAMESPACE),
        by_name,
        Kind::Lease,
        |o| Object::Lease(Arc::new(o)),
        tx.clone(),
    );
    spawn_watch::<Pod, _>(
        Api::all(client.clone()),
        watcher::Config::default().fields(&format!("spec.nodeName={node}")),
        Kind::Pod,
        |o| Object::Pod(Arc::new(o)),
        tx.clone(),
    );
}

/// A running agent: stop it gracefully with [`Agent::shutdown`].
pub struct Agent {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), LiveError>>,
}

impl Agent {
    /// Spawn [`run`] on the current tokio runtime.
    pub fn start(
        client: kube::Client,
        cfg: KubeletConfig,
        runtime: Arc<dyn Runtime>,
        prober: Arc<dyn Prober>,
    ) -> Agent {
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(run(client, cfg, runtime, prober, rx));
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
    mut stop: watch::Receiver<bool>,
) -> Result<(), LiveError> {
    let shutdown_bound = cfg.shutdown_grace_period + SHUTDOWN_SLACK;
    let mut k = Kubelet::new(cfg)?;
    let (feed_tx, mut feed_rx) = mpsc::channel::<Feed>(CHANNEL_BOUND);
    start_watches(&client, &k.config().node_name, &feed_tx);
    let (ev_tx, mut ev_rx) = mpsc::channel::<RuntimeEvent>(CHANNEL_BOUND);
    let (probe_tx, mut probe_rx) = mpsc::channel::<(u64, ProbeOutcome)>(CHANNEL_BOUND);
    let (done_tx, mut done_rx) = mpsc::channel::<(Action, Result<(), WriteError>)>(CHANNEL_BOUND);
    let permits = Arc::new(Semaphore::new(MAX_INFLIGHT_WRITES));
    let mut relisting: BTreeMap<Kind, BTreeSet<Key>> = BTreeMap::new();
    let mut synced: BTreeSet<Kind> = BTreeSet::new();
    let mut writes_inflight = 0usize;
    let mut shutdown_at: Option<Millis> = None;
    let events = controllers::events::writer::spawn(client.clone(), Default::default());
    loop {
        let sleep_ms = k
            .next_wakeup()
            .map_or(60_000, |w| w.saturating_sub(wall_clock()).clamp(0, 60_000));
        tokio::select! {
            feed = feed_rx.recv() => {
                let Some(feed) = feed else { return Ok(()) };
                let now = wall_clock();
                match feed {
                    Feed::RelistStart(kind) => { relisting.insert(kind, BTreeSet::new()); }
                    Feed::Upsert(obj, during_relist) => {
                        if during_relist && let Some(seen) = relisting.get_mut(&obj.kind()) {
                            seen.insert(obj.key());
                        }
                        k.handle_change(&Change::Applied { new: obj, old: None }, now);
                    }
                    Feed::Deleted(obj) => k.handle_change(&Change::Deleted(obj), now),
                    Feed::RelistDone(kind) => {
                        let seen = relisting.remove(&kind).unwrap_or_default();
                        for obj in k.cache().objects(kind) {
                            if !seen.contains(&obj.key()) {
                                k.handle_change(&Change::Deleted(obj), now);
                            }
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
            Some((action, result)) = done_rx.recv() => {
                writes_inflight = writes_inflight.saturating_sub(1);
                if let Err(e) = &result {
                    tracing::debug!(error = ?e, "kubelet write failed");
                }
                k.handle_write_result(&action, result, wall_clock());
            }
            changed = stop.changed(), if shutdown_at.is_none() => {
                if changed.is_err() || *stop.borrow() {
                    let now = wall_clock();
                    shutdown_at = Some(now);
                    k.begin_shutdown(now);
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(sleep_ms as u64)) => {
                k.handle_timeout(wall_clock());
            }
        }
        // Writes first (a pod is marked not ready before its processes are signalled).
        while let Some(action) = k.poll_action() {
            let permit = Arc::clone(&permits).acquire_owned().await;
            let (client, done) = (client.clone(), done_tx.clone());
            writes_inflight += 1;
            tokio::spawn(async move {
                let _permit = permit;
                let result = execute(&client, &action).await;
                let _ = done.send((action, result)).await;
            });
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
            let done = k.shutdown_complete() && writes_inflight == 0;
            if done || wall_clock() - t > shutdown_bound {
                tracing::info!(complete = done, "kubelet shutdown finished");
                return Ok(());
            }
        }
    }
}
