//! The live event writer: one tokio task owning an [`EventRecorder`], fed through a bounded
//! channel by [`EventSink::record`] (which never blocks: a full queue drops, as upstream's
//! broadcaster does), writing Events through the API (POST, merge PATCH for count updates).
//!
//! Start at [`spawn`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::wall_clock;
use controllers::events::EventRecord;
use controllers::events::recorder::{
    EventRecorder, EventWrite, RecorderConfig, WriteId, WriteOutcome,
};

/// Upstream `maxQueuedEvents` of the event broadcaster.
pub const QUEUE_BOUND: usize = 1000;
/// Event writes in flight at once.
const MAX_INFLIGHT: usize = 8;
/// After every sink is gone, pending writes still due within this long are made before the
/// task ends.
const FINAL_FLUSH_MS: Duration = Duration::from_secs(5);

/// A cheap, cloneable handle components' drivers record events through.
#[derive(Clone, Debug)]
pub struct EventSink {
    tx: mpsc::Sender<EventRecord>,
    dropped: Arc<AtomicU64>,
}

impl EventSink {
    /// Queue one occurrence; never blocks. A full queue drops it (counted, logged every 100).
    pub fn record(&self, rec: EventRecord) {
        if self.tx.try_send(rec).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n % 100 == 1 {
                tracing::warn!(dropped = n, "event queue full: dropping events");
            }
        }
    }

    /// Occurrences dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Start the writer task on the current runtime; it ends once every [`EventSink`] is dropped
/// and its last writes are made.
pub fn spawn(client: kube::Client, cfg: RecorderConfig) -> EventSink {
    let (tx, rx) = mpsc::channel(QUEUE_BOUND);
    tokio::spawn(run(client, EventRecorder::new(cfg), rx));
    EventSink {
        tx,
        dropped: Arc::new(AtomicU64::new(0)),
    }
}

async fn run(client: kube::Client, mut rec: EventRecorder, mut rx: mpsc::Receiver<EventRecord>) {
    let mut inflight: JoinSet<(WriteId, WriteOutcome)> = JoinSet::new();
    let mut closed = false;
    loop {
        let now = wall_clock();
        while inflight.len() < MAX_INFLIGHT {
            let Some(w) = rec.poll_write(now) else { break };
            let client = client.clone();
            inflight.spawn(async move {
                let outcome = apply(&client, &w).await;
                (w.id().clone(), outcome)
            });
        }
        let wake = rec.poll_timeout();
        if closed
            && inflight.is_empty()
            && wake.is_none_or(|w| w.saturating_since(now) > FINAL_FLUSH_MS)
        {
            return;
        }
        let sleep_for = match wake {
            Some(w) if inflight.len() < MAX_INFLIGHT => {
                w.saturating_since(now).min(Duration::from_secs(60))
            }
            _ => Duration::from_secs(60),
        };
        tokio::select! {
            got = rx.recv(), if !closed => match got {
                Some(e) => {
                    rec.record(e, wall_clock());
                    while let Ok(e) = rx.try_recv() {
                        rec.record(e, wall_clock());
                    }
                }
                None => closed = true,
            },
            Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                if let Ok((id, outcome)) = done {
                    if let WriteOutcome::Rejected(why) | WriteOutcome::Unavailable(why) = &outcome {
                        tracing::warn!("event write failed: {why}");
                    }
                    rec.handle_write_result(&id, outcome, wall_clock());
                }
            }
            _ = tokio::time::sleep(sleep_for) => {}
        }
    }
}

/// Make one event write through the API (also what tests drive the recorder with).
pub async fn apply(client: &kube::Client, write: &EventWrite) -> WriteOutcome {
    let r = match write {
        EventWrite::Create { event, .. } => {
            let ns = event.metadata.namespace.clone().unwrap_or_default();
            let api: Api<Event> = Api::namespaced(client.clone(), &ns);
            api.create(&PostParams::default(), event).await.map(|_| ())
        }
        EventWrite::Patch {
            namespace,
            name,
            patch,
            ..
        } => {
            let api: Api<Event> = Api::namespaced(client.clone(), namespace);
            api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map(|_| ())
        }
    };
    match r {
        Ok(()) => WriteOutcome::Ok,
        Err(kube::Error::Api(s)) if s.code == 404 => WriteOutcome::NotFound,
        Err(kube::Error::Api(s)) if s.code == 409 && s.reason == "AlreadyExists" => {
            WriteOutcome::AlreadyExists
        }
        Err(kube::Error::Api(s)) if s.code == 429 || s.code >= 500 => {
            WriteOutcome::Unavailable(format!("{} {}: {}", s.code, s.reason, s.message))
        }
        Err(kube::Error::Api(s)) => {
            WriteOutcome::Rejected(format!("{} {}: {}", s.code, s.reason, s.message))
        }
        Err(e) => WriteOutcome::Unavailable(e.to_string()),
    }
}
