//! The component interface: a sans-IO controller fed informer changes and the time.
//!
//! Start at [`Controller`].

use crate::action::{Action, WriteError};
use crate::cache::{Cache, Change};
use crate::events::EventRecord;
use crate::time::Millis;

/// A sans-IO controller. The driver calls `on_change` for every informer event (after applying
/// it to the cache), `on_tick` once `next_wakeup` has passed, and drains actions after each.
pub trait Controller: Send {
    /// A short name for logs and metrics, e.g. `endpointslice`.
    fn name(&self) -> &'static str;

    /// Called once all informers have listed (the cache is complete), before any change.
    fn on_synced(&mut self, cache: &Cache, now: Millis) {
        let _ = (cache, now);
    }

    /// An object changed; `cache` already reflects it.
    fn on_change(&mut self, cache: &Cache, change: &Change, now: Millis);

    /// Time passed: do timed work due at or before `now`.
    fn on_tick(&mut self, cache: &Cache, now: Millis) {
        let _ = (cache, now);
    }

    /// When `on_tick` should next run (`None`: only on changes).
    fn next_wakeup(&self) -> Option<Millis> {
        None
    }

    /// Move pending writes into `out`.
    fn drain_actions(&mut self, out: &mut Vec<Action>);

    /// Move the Events recorded since the last call into `out` (upstream `recorder.Eventf`);
    /// the driver hands them to the event recorder.
    fn drain_events(&mut self, out: &mut Vec<EventRecord>) {
        let _ = out;
    }

    /// A write this controller asked for failed; typically requeue the key.
    fn on_write_failed(&mut self, action: &Action, error: &WriteError, now: Millis) {
        let _ = (action, error, now);
    }
}
