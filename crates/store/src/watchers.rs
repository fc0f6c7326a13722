//! The registry of live watchers and the non-blocking fan-out to them; start at [`Watchers`].
//!
//! Every watcher has its own bounded channel. The writer never waits on a watcher: a send that
//! would not fit ends that watcher with [`WatchError::TooSlow`] (one slot is kept in reserve so
//! that the error itself always fits) and the watcher is removed.

use tokio::sync::mpsc;

use crate::{Event, Revision, WatchError, WatchMessage, Watcher};

type Tx = mpsc::Sender<Result<WatchMessage, WatchError>>;

/// One registered watcher.
struct Slot {
    prefix: String,
    tx: Tx,
}

/// All live watchers, in registration order.
pub(crate) struct Watchers {
    slots: Vec<Slot>,
    /// Messages a watcher may fall behind by (beyond its initial replay).
    capacity: usize,
}

impl Watchers {
    pub(crate) fn new(capacity: usize) -> Self {
        Watchers {
            slots: Vec::new(),
            capacity,
        }
    }

    /// Registers a watcher for `prefix` whose channel already holds `replay` (events in
    /// revision order). The channel is sized so the replay always fits.
    pub(crate) fn register(&mut self, prefix: &str, replay: Vec<Event>) -> Watcher {
        // + 1: the reserve slot for the TooSlow error.
        let (tx, rx) = mpsc::channel(self.capacity + replay.len() + 1);
        for event in replay {
            // Cannot fail: the channel is fresh, open and large enough.
            let _ = tx.try_send(Ok(WatchMessage::Event(event)));
        }
        self.slots.push(Slot {
            prefix: prefix.to_string(),
            tx,
        });
        Watcher::new(rx)
    }

    /// Delivers `event` to every watcher whose prefix matches its key.
    pub(crate) fn send_event(&mut self, event: &Event) {
        let capacity = self.capacity;
        let key = event.kv.key.as_str();
        self.slots.retain(|slot| {
            if !key.starts_with(slot.prefix.as_str()) {
                return !slot.tx.is_closed();
            }
            deliver(&slot.tx, WatchMessage::Event(event.clone()), capacity)
        });
    }

    /// Tells every watcher that all its events up to `revision` have been queued.
    pub(crate) fn progress(&mut self, revision: Revision) {
        let capacity = self.capacity;
        self.slots
            .retain(|slot| deliver(&slot.tx, WatchMessage::Progress(revision), capacity));
    }

    /// Ends every watcher with [`WatchError::Closed`] (best effort) and forgets them.
    pub(crate) fn close_all(&mut self) {
        for slot in self.slots.drain(..) {
            let _ = slot.tx.try_send(Err(WatchError::Closed));
        }
    }

    /// How many watchers are registered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }
}

/// Sends `msg` without blocking. Returns whether the watcher stays registered: `false` if its
/// receiver is gone or it fell behind (then it gets `TooSlow` in the reserve slot).
fn deliver(tx: &Tx, msg: WatchMessage, capacity: usize) -> bool {
    if tx.is_closed() {
        return false;
    }
    if tx.capacity() <= 1 {
        let _ = tx.try_send(Err(WatchError::TooSlow { capacity }));
        return false;
    }
    tx.try_send(Ok(msg)).is_ok()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::{EventKind, KeyValue};

    fn event(key: &str, rev: Revision) -> Event {
        let kv = KeyValue {
            key: key.to_string(),
            value: Bytes::from_static(b"v"),
            create_revision: rev,
            mod_revision: rev,
        };
        Event {
            kind: EventKind::Added,
            kv,
            prev: None,
        }
    }

    #[tokio::test]
    async fn slow_watcher_gets_too_slow_after_capacity_messages() {
        let mut w = Watchers::new(2);
        let mut slow = w.register("a/", vec![]);
        for rev in 1..=5 {
            w.send_event(&event("a/x", rev));
        }
        assert_eq!(w.len(), 0);
        for rev in 1..=2 {
            let msg = slow.next().await;
            assert_eq!(msg, Some(Ok(WatchMessage::Event(event("a/x", rev)))));
        }
        assert_eq!(
            slow.next().await,
            Some(Err(WatchError::TooSlow { capacity: 2 }))
        );
        assert_eq!(slow.next().await, None);
    }

    #[tokio::test]
    async fn replay_larger_than_capacity_fits() {
        let mut w = Watchers::new(1);
        let replay: Vec<Event> = (1..=10).map(|r| event("k", r)).collect();
        let mut rx = w.register("", replay);
        w.send_event(&event("k", 11));
        for rev in 1..=11 {
            assert_eq!(
                rx.next().await,
                Some(Ok(WatchMessage::Event(event("k", rev))))
            );
        }
        assert_eq!(w.len(), 1);
    }

    #[tokio::test]
    async fn dropped_receiver_is_forgotten_and_prefix_filters() {
        let mut w = Watchers::new(4);
        let gone = w.register("a/", vec![]);
        let mut b = w.register("b/", vec![]);
        drop(gone);
        w.send_event(&event("a/1", 1));
        w.send_event(&event("b/1", 2));
        assert_eq!(w.len(), 1);
        assert_eq!(
            b.next().await,
            Some(Ok(WatchMessage::Event(event("b/1", 2))))
        );
        w.progress(2);
        assert_eq!(b.next().await, Some(Ok(WatchMessage::Progress(2))));
        w.close_all();
        assert_eq!(b.next().await, Some(Err(WatchError::Closed)));
        assert_eq!(b.next().await, None);
    }
}
