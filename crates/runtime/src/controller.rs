//! The component interface, in quinn-proto's calling convention: the driver hands a
//! component its inputs (`handle_*`), then polls its outputs (`poll_action`, `poll_event`)
//! until empty, and asks when to call it next (`poll_timeout`). Nothing here reads a clock:
//! `now` is an argument, wall clock live, virtual time in the simulator.
//!
//! Start at [`Controller`].

use crate::action::{Action, Kind, WriteError};
use crate::cache::{Cache, Change};
use crate::events::EventRecord;
use crate::outbox::Outbox;
use crate::time::Moment;

/// A sans-IO controller. After every `handle_*` call the driver drains `poll_action` and
/// `poll_event` until they return `None`, then sleeps until `poll_timeout` (or the next input)
/// and calls `handle_timeout` once it has passed. Spurious `handle_timeout` calls are no-ops.
pub trait Controller: Send {
    /// A short name for logs and metrics, e.g. `endpointslice`.
    fn name(&self) -> &'static str;

    /// The kinds whose informers it reads (the driver lists and watches only the union of its
    /// controllers', so a component's user needs no more than its role grants). Default: all.
    fn kinds(&self) -> &'static [Kind] {
        &Kind::ALL
    }

    /// Called once all informers have listed (the cache is complete), before any change.
    fn handle_synced(&mut self, cache: &Cache, now: Moment) {
        let _ = (cache, now);
    }

    /// An object changed; `cache` already reflects it.
    fn handle_change(&mut self, cache: &Cache, change: &Change, now: Moment);

    /// Time passed: do timed work due at or before `now`.
    fn handle_timeout(&mut self, cache: &Cache, now: Moment) {
        let _ = (cache, now);
    }

    /// When `handle_timeout` should next run (`None`: only on inputs). May change after any
    /// `handle_*` call.
    fn poll_timeout(&self) -> Option<Moment> {
        None
    }

    /// Where the component queues its writes and Events; `poll_action` and `poll_event` take
    /// from it.
    fn outbox(&mut self) -> &mut Outbox;

    /// The next write to make, oldest first.
    fn poll_action(&mut self) -> Option<Action> {
        self.outbox().poll_action()
    }

    /// The next Event recorded (upstream `recorder.Eventf`); the driver hands it to the event
    /// recorder.
    fn poll_event(&mut self) -> Option<EventRecord> {
        self.outbox().poll_event()
    }

    /// A write this controller asked for failed; typically requeue the key.
    fn handle_write_failed(&mut self, action: &Action, error: &WriteError, now: Moment) {
        let _ = (action, error, now);
    }
}
