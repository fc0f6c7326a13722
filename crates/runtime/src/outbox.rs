//! What a component hands out between calls: bounded queues of writes ([`Action`]s) and
//! Events, drained by the driver with `poll_action` / `poll_event` after every `handle_*`
//! call. A pending update of an object can be replaced by a newer one before the driver takes
//! it ([`Outbox::push_coalesced`]), so a component writes each object at most once per turn.
//!
//! Start at [`Outbox::push_action`] and [`Outbox::poll_action`].

use std::collections::{BTreeMap, VecDeque};

use crate::action::{Action, Kind};
use crate::cache::Key;
use crate::events::EventRecord;

/// Writes an outbox holds at most (above the 150,000 binds of the largest simulated start-up).
/// Drivers drain after every call, so this only bounds a
/// component gone wrong; a write past it is dropped and counted (the component's
/// expectations expire and it resyncs, as after a lost watch event).
pub const MAX_PENDING_ACTIONS: usize = 1 << 20;
/// Events an outbox holds at most; the oldest is dropped past it (Events are best effort,
/// as upstream's recorder).
pub const MAX_PENDING_EVENTS: usize = 1000;

/// A component's pending writes and Events.
#[derive(Clone, Debug)]
pub struct Outbox {
    /// Pending writes, each with its coalescing slot (if pushed with `push_coalesced`).
    actions: VecDeque<(Option<(Kind, Key)>, Action)>,
    /// How many writes were taken so far: `actions[i]` has sequence number `taken + i`.
    taken: u64,
    /// Slot -> sequence number of the pending write that holds it.
    slots: BTreeMap<(Kind, Key), u64>,
    events: VecDeque<EventRecord>,
    max_actions: usize,
    max_events: usize,
    dropped_actions: u64,
    dropped_events: u64,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox::with_bounds(MAX_PENDING_ACTIONS, MAX_PENDING_EVENTS)
    }
}

impl Outbox {
    pub fn new() -> Outbox {
        Outbox::default()
    }

    /// An outbox holding at most `max_actions` writes and `max_events` Events.
    pub fn with_bounds(max_actions: usize, max_events: usize) -> Outbox {
        Outbox {
            actions: VecDeque::new(),
            taken: 0,
            slots: BTreeMap::new(),
            events: VecDeque::new(),
            max_actions,
            max_events,
            dropped_actions: 0,
            dropped_events: 0,
        }
    }

    /// Queue a write.
    pub fn push_action(&mut self, action: Action) {
        if self.actions.len() >= self.max_actions {
            self.dropped_actions += 1;
            return;
        }
        self.actions.push_back((None, action));
    }

    /// Queue a write; an `Update`/`UpdateStatus` replaces (in place) a pending update of the
    /// same kind and object pushed this way, so only the newest state is written.
    pub fn push_coalesced(&mut self, action: Action) {
        let slot = match &action {
            Action::Update(o) | Action::UpdateStatus(o) => (o.kind(), o.key()),
            _ => return self.push_action(action),
        };
        if let Some(&seq) = self.slots.get(&slot) {
            let i = (seq - self.taken) as usize;
            self.actions[i].1 = action;
            return;
        }
        if self.actions.len() >= self.max_actions {
            self.dropped_actions += 1;
            return;
        }
        self.slots
            .insert(slot.clone(), self.taken + self.actions.len() as u64);
        self.actions.push_back((Some(slot), action));
    }

    /// True if an update of `kind`/`key` pushed with `push_coalesced` is still pending.
    pub fn has_pending_update(&self, kind: Kind, key: &Key) -> bool {
        self.slots.contains_key(&(kind, key.clone()))
    }

    /// Queue an Event, dropping the oldest past the bound.
    pub fn push_event(&mut self, event: EventRecord) {
        if self.max_events == 0 {
            self.dropped_events += 1;
            return;
        }
        if self.events.len() >= self.max_events {
            self.events.pop_front();
            self.dropped_events += 1;
        }
        self.events.push_back(event);
    }

    /// Take the oldest pending write.
    pub fn poll_action(&mut self) -> Option<Action> {
        let (slot, action) = self.actions.pop_front()?;
        if let Some(slot) = slot
            && self.slots.get(&slot) == Some(&self.taken)
        {
            self.slots.remove(&slot);
        }
        self.taken += 1;
        Some(action)
    }

    /// Take the oldest pending Event.
    pub fn poll_event(&mut self) -> Option<EventRecord> {
        self.events.pop_front()
    }

    /// The pending writes, oldest first.
    pub fn actions(&self) -> impl Iterator<Item = &Action> {
        self.actions.iter().map(|(_, a)| a)
    }

    /// The pending Events, oldest first.
    pub fn events(&self) -> impl Iterator<Item = &EventRecord> {
        self.events.iter()
    }

    pub fn pending_actions(&self) -> usize {
        self.actions.len()
    }

    /// Writes dropped at the bound (a component bug if ever non-zero).
    pub fn dropped_actions(&self) -> u64 {
        self.dropped_actions
    }

    /// Events dropped at the bound.
    pub fn dropped_events(&self) -> u64 {
        self.dropped_events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Object;
    use crate::events::{EventType, node_ref};
    use k8s_openapi::api::core::v1::Pod;
    use std::sync::Arc;

    fn pod(name: &str, rv: &str) -> Object {
        let mut p = Pod::default();
        p.metadata.namespace = Some("ns".into());
        p.metadata.name = Some(name.into());
        p.metadata.resource_version = Some(rv.into());
        Object::Pod(Arc::new(p))
    }

    fn rv(a: &Action) -> String {
        match a {
            Action::Update(o) | Action::UpdateStatus(o) | Action::Create(o) => {
                o.meta().resource_version.clone().unwrap_or_default()
            }
            _ => String::new(),
        }
    }

    #[test]
    fn writes_come_out_in_order_and_coalesced_updates_keep_their_place() {
        let mut out = Outbox::new();
        out.push_coalesced(Action::UpdateStatus(pod("a", "1")));
        out.push_action(Action::Create(pod("b", "c")));
        out.push_coalesced(Action::UpdateStatus(pod("a", "2")));
        assert!(out.has_pending_update(Kind::Pod, &Key::new("ns", "a")));
        assert_eq!(out.pending_actions(), 2);
        let first = out.poll_action().unwrap();
        assert_eq!(
            rv(&first),
            "2",
            "the newer status replaced the older in place"
        );
        assert!(!out.has_pending_update(Kind::Pod, &Key::new("ns", "a")));
        // Taken: a new update of the same object is a new write, after the create.
        out.push_coalesced(Action::UpdateStatus(pod("a", "3")));
        assert_eq!(rv(&out.poll_action().unwrap()), "c");
        assert_eq!(rv(&out.poll_action().unwrap()), "3");
        assert_eq!(out.poll_action(), None);
        // Deletes and creates never coalesce.
        out.push_coalesced(Action::Create(pod("x", "1")));
        out.push_coalesced(Action::Create(pod("x", "1")));
        assert_eq!(out.pending_actions(), 2);
    }

    #[test]
    fn bounds_drop_new_writes_and_old_events() {
        let mut out = Outbox::with_bounds(2, 2);
        for i in 0..3 {
            out.push_action(Action::Create(pod(&format!("p{i}"), "1")));
        }
        out.push_coalesced(Action::Update(pod("q", "1")));
        assert_eq!(out.pending_actions(), 2);
        assert_eq!(out.dropped_actions(), 2);
        let ev = |reason| {
            EventRecord::new(
                "c",
                node_ref("n", "u"),
                EventType::Normal,
                reason,
                String::new(),
                crate::Moment::EPOCH,
            )
        };
        out.push_event(ev("one"));
        out.push_event(ev("two"));
        out.push_event(ev("three"));
        assert_eq!(out.dropped_events(), 1);
        assert_eq!(out.events().count(), 2);
        assert_eq!(out.poll_event().unwrap().reason, "two");
        assert_eq!(out.poll_event().unwrap().reason, "three");
        assert_eq!(out.poll_event(), None);
    }
}
