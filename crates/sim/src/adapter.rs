//! Every call the simulator makes on the controller interface, in one place, so a rename of
//! the trait's methods is a change here only. Start at [`Controllers`].

use controllers::events::EventRecord;
use controllers::{Action, Cache, Change, Controller, Moment, WriteError};

/// The controller-manager's controllers, driven through the trait.
pub struct Controllers {
    list: Vec<Box<dyn Controller>>,
}

impl Controllers {
    pub fn new(list: Vec<Box<dyn Controller>>) -> Controllers {
        Controllers { list }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The informers have listed.
    pub fn synced(&mut self, cache: &Cache, now: Moment) {
        self.list
            .iter_mut()
            .for_each(|c| c.handle_synced(cache, now));
    }

    /// An informer change (already applied to `cache`).
    pub fn change(&mut self, cache: &Cache, change: &Change, now: Moment) {
        self.list
            .iter_mut()
            .for_each(|c| c.handle_change(cache, change, now));
    }

    /// Run every controller whose wake-up is due.
    pub fn timeout(&mut self, cache: &Cache, now: Moment) {
        for c in self.list.iter_mut() {
            if c.poll_timeout().is_some_and(|w| w <= now) {
                c.handle_timeout(cache, now);
            }
        }
    }

    /// The earliest wake-up any controller asked for.
    pub fn next_wakeup(&self) -> Option<Moment> {
        self.list.iter().filter_map(|c| c.poll_timeout()).min()
    }

    /// Every pending write as `(controller index, action)`, and the Events recorded.
    pub fn poll(&mut self, actions: &mut Vec<(usize, Action)>, events: &mut Vec<EventRecord>) {
        for (i, c) in self.list.iter_mut().enumerate() {
            while let Some(a) = c.poll_action() {
                actions.push((i, a));
            }
            while let Some(e) = c.poll_event() {
                events.push(e);
            }
        }
    }

    /// A write of controller `i` failed.
    pub fn write_failed(&mut self, i: usize, action: &Action, error: &WriteError, now: Moment) {
        if let Some(c) = self.list.get_mut(i) {
            c.handle_write_failed(action, error, now);
        }
    }
}
