//! The load-balancer controller's cloud off the controller loop: a [`Background`] hands each
//! action to one worker thread that applies them in order (a balancer stop may wait 5 s for
//! its child) and queues the results for the controller's next turn.
//!
//! Start at [`Background::spawn`]. Bounded: at most [`MAX_QUEUED`] actions wait; one more is
//! answered at once with an error (the controller retries it with backoff). Dropping the
//! `Background` (the controllers' term as leader ended) stops the worker after the action it
//! is applying: queued actions are dropped unapplied, so a deposed leader's fleet stops acting.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use controllers::loadbalancer::CloudAction;
use controllers::loadbalancer::cloud::{Apply, Cloud, CloudResult};

/// Actions waiting for the worker at most.
pub const MAX_QUEUED: usize = 64;

/// A [`Cloud`] whose actions an [`Apply`] runs on a thread of its own.
pub struct Background {
    tx: Option<SyncSender<CloudAction>>,
    done: Arc<Mutex<Vec<CloudResult>>>,
    stopped: Arc<AtomicBool>,
    /// Results refused at submission (queue full, worker gone), reported at the next poll.
    refused: Vec<CloudResult>,
    in_flight: usize,
}

impl Background {
    /// Start the worker thread that owns `apply`.
    pub fn spawn<A: Apply + 'static>(apply: A) -> std::io::Result<Background> {
        let (tx, rx) = sync_channel::<CloudAction>(MAX_QUEUED);
        let done = Arc::new(Mutex::new(Vec::new()));
        let stopped = Arc::new(AtomicBool::new(false));
        let (d, s) = (Arc::clone(&done), Arc::clone(&stopped));
        std::thread::Builder::new()
            .name("lb-cloud".into())
            .spawn(move || work(apply, rx, d, s))?;
        Ok(Background {
            tx: Some(tx),
            done,
            stopped,
            refused: Vec::new(),
            in_flight: 0,
        })
    }
}

fn work<A: Apply>(
    mut apply: A,
    rx: Receiver<CloudAction>,
    done: Arc<Mutex<Vec<CloudResult>>>,
    stopped: Arc<AtomicBool>,
) {
    while let Ok(action) = rx.recv() {
        if stopped.load(Ordering::SeqCst) {
            return;
        }
        let result = apply.apply(&action);
        match done.lock() {
            Ok(mut d) => d.push((action, result)),
            Err(_) => return,
        }
    }
}

impl Cloud for Background {
    fn submit(&mut self, action: CloudAction) {
        let Some(tx) = &self.tx else {
            self.refused
                .push((action, Err("the cloud worker stopped".into())));
            return;
        };
        match tx.try_send(action) {
            Ok(()) => self.in_flight += 1,
            Err(TrySendError::Full(a)) => self.refused.push((
                a,
                Err(format!(
                    "the cloud is busy: {MAX_QUEUED} actions queued; retried"
                )),
            )),
            Err(TrySendError::Disconnected(a)) => {
                self.refused
                    .push((a, Err("the cloud worker stopped".into())));
            }
        }
    }

    fn poll_results(&mut self, out: &mut Vec<CloudResult>) {
        out.append(&mut self.refused);
        if let Ok(mut d) = self.done.lock() {
            self.in_flight = self.in_flight.saturating_sub(d.len());
            out.append(&mut d);
        }
    }

    fn in_flight(&self) -> usize {
        self.in_flight + self.refused.len()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.tx = None;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::channel;
    use std::time::Duration;

    use runtime::Key;

    use super::*;

    /// Applies an action only when the test says so, and records what it applied.
    struct Gated {
        go: Receiver<()>,
        applied: Arc<Mutex<Vec<String>>>,
    }

    impl Apply for Gated {
        fn apply(&mut self, action: &CloudAction) -> Result<(), String> {
            self.go.recv().map_err(|e| e.to_string())?;
            let CloudAction::DeleteLoadBalancer { name, .. } = action else {
                return Err("unexpected".into());
            };
            self.applied.lock().expect("lock").push(name.clone());
            Ok(())
        }
    }

    fn delete(name: &str) -> CloudAction {
        CloudAction::DeleteLoadBalancer {
            service: Key::new("default", name),
            name: name.into(),
        }
    }

    fn wait_results(b: &mut Background, n: usize) -> Vec<CloudResult> {
        let mut out = Vec::new();
        for _ in 0..500 {
            b.poll_results(&mut out);
            if out.len() >= n {
                return out;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("only {} of {n} results", out.len());
    }

    #[test]
    fn submit_returns_at_once_and_results_come_back_in_order() {
        let (go, gate) = channel();
        let applied = Arc::new(Mutex::new(Vec::new()));
        let mut b = Background::spawn(Gated {
            go: gate,
            applied: Arc::clone(&applied),
        })
        .expect("spawn");
        // The worker blocks on the gate: submitting must not.
        b.submit(delete("one"));
        b.submit(delete("two"));
        assert_eq!(b.in_flight(), 2);
        let mut none = Vec::new();
        b.poll_results(&mut none);
        assert!(none.is_empty(), "nothing applied yet");
        go.send(()).expect("gate");
        go.send(()).expect("gate");
        let out = wait_results(&mut b, 2);
        let names: Vec<&str> = out
            .iter()
            .map(|(a, r)| {
                assert!(r.is_ok(), "{r:?}");
                match a {
                    CloudAction::DeleteLoadBalancer { name, .. } => name.as_str(),
                    _ => "?",
                }
            })
            .collect();
        assert_eq!(names, ["one", "two"]);
        assert_eq!(b.in_flight(), 0);
    }

    #[test]
    fn a_full_queue_refuses_with_an_error_instead_of_blocking() {
        let (go, gate) = channel();
        let mut b = Background::spawn(Gated {
            go: gate,
            applied: Default::default(),
        })
        .expect("spawn");
        // One in the worker's hands (blocked), MAX_QUEUED waiting, then one too many.
        for i in 0..MAX_QUEUED + 2 {
            b.submit(delete(&format!("s{i}")));
        }
        let mut out = Vec::new();
        for _ in 0..500 {
            b.poll_results(&mut out);
            if !out.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let refused: Vec<&String> = out.iter().filter_map(|(_, r)| r.as_ref().err()).collect();
        assert!(!refused.is_empty(), "{out:?}");
        assert!(refused[0].contains("busy"), "{refused:?}");
        drop(go);
    }

    #[test]
    fn dropping_stops_the_worker_before_queued_actions() {
        let (go, gate) = channel();
        let applied = Arc::new(Mutex::new(Vec::new()));
        let mut b = Background::spawn(Gated {
            go: gate,
            applied: Arc::clone(&applied),
        })
        .expect("spawn");
        b.submit(delete("current"));
        b.submit(delete("queued"));
        // Wait until the worker holds "current" (the queue has one left).
        std::thread::sleep(Duration::from_millis(50));
        drop(b);
        // Let the current action finish: the queued one must not run after the drop.
        let _ = go.send(());
        let _ = go.send(());
        std::thread::sleep(Duration::from_millis(100));
        let applied = applied.lock().expect("lock").clone();
        assert!(
            !applied.contains(&"queued".to_string()),
            "a deposed leader's queued action ran: {applied:?}"
        );
    }
}
