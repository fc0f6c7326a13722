//! The write executor of the live drivers (controllers and kubelet): actions queue here and run
//! against the API server at most `max_inflight` at a time; each outcome comes back to the
//! driver loop. The loop never waits for a free slot, so a drain of any size cannot block the
//! loop that reads the outcomes (the old semaphore did, past permits + channel bound).
//!
//! Start at [`Writes::submit`] and [`Writes::next_done`].

use std::collections::VecDeque;

use tokio::sync::mpsc;

use super::execute_explained;
use controllers::cache::Key;
use controllers::{Action, WriteError};

/// One finished write.
#[derive(Debug)]
pub struct Done<T> {
    /// Whatever the driver tagged the write with (e.g. which controller asked).
    pub tag: T,
    pub action: Action,
    pub result: Result<(), WriteError>,
    /// On failure, the server's words (the `Status` message), for logs; empty on success.
    pub detail: String,
}

/// Queued and in-flight writes (see the module docs).
pub struct Writes<T> {
    client: kube::Client,
    max_inflight: usize,
    queue: VecDeque<(T, Action)>,
    inflight: usize,
    done_tx: mpsc::Sender<Done<T>>,
    done_rx: mpsc::Receiver<Done<T>>,
}

impl<T: Send + 'static> Writes<T> {
    /// An executor running at most `max_inflight` (>= 1) writes at once.
    pub fn new(client: kube::Client, max_inflight: usize) -> Writes<T> {
        let max_inflight = max_inflight.max(1);
        // One slot per write in flight: a finished write never waits to report.
        let (done_tx, done_rx) = mpsc::channel(max_inflight);
        Writes {
            client,
            max_inflight,
            queue: VecDeque::new(),
            inflight: 0,
            done_tx,
            done_rx,
        }
    }

    /// Queue a write; it starts at once if a slot is free.
    pub fn submit(&mut self, tag: T, action: Action) {
        self.queue.push_back((tag, action));
        self.start_ready();
    }

    /// Writes queued or in flight.
    pub fn pending(&self) -> usize {
        self.queue.len() + self.inflight
    }

    /// The next finished write (pending forever while none is pending). Cancel-safe: use it
    /// in `tokio::select!`.
    pub async fn next_done(&mut self) -> Done<T> {
        if self.pending() == 0 {
            std::future::pending::<()>().await;
        }
        // The executor holds a sender, so the channel never closes.
        let Some(done) = self.done_rx.recv().await else {
            return std::future::pending().await;
        };
        self.inflight -= 1;
        self.start_ready();
        done
    }

    fn start_ready(&mut self) {
        while self.inflight < self.max_inflight {
            let Some((tag, action)) = self.queue.pop_front() else {
                return;
            };
            self.inflight += 1;
            let (client, done) = (self.client.clone(), self.done_tx.clone());
            tokio::spawn(async move {
                let (result, detail) = match execute_explained(&client, &action).await {
                    Ok(()) => (Ok(()), String::new()),
                    Err((e, detail)) => (Err(e), detail),
                };
                let _ = done
                    .send(Done {
                        tag,
                        action,
                        result,
                        detail,
                    })
                    .await;
            });
        }
    }
}

/// A short description of a write for logs: `update status Pod default/web-1`.
pub fn describe(action: &Action) -> String {
    let (verb, kind, key): (&str, String, Key) = match action {
        Action::Create(o) => ("create", format!("{:?}", o.kind()), o.key()),
        Action::Update(o) => ("update", format!("{:?}", o.kind()), o.key()),
        Action::UpdateStatus(o) => ("update status", format!("{:?}", o.kind()), o.key()),
        Action::Delete { kind, key, .. } => ("delete", format!("{kind:?}"), key.clone()),
        Action::Bind { pod, node } => {
            return format!("bind Pod {pod} to {node}");
        }
    };
    format!("{verb} {kind} {key}")
}
