//! The scheduling queue, after upstream's `PriorityQueue`: an active queue (priority, then
//! arrival order), a backoff queue (1 s doubling to 10 s per failed attempt) and an
//! unschedulable pool that cluster events or a 5-minute timeout flush.
//!
//! Start at [`SchedulingQueue::pop`]; every transition takes `now`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::{Key, Moment};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Active,
    Backoff(Moment),
    Unschedulable(Moment),
    /// Popped, being scheduled.
    InFlight,
}

#[derive(Clone, Debug)]
struct Entry {
    priority: i32,
    seq: u64,
    attempts: u32,
    last_failure: Moment,
    place: Place,
}

/// Timing knobs (from [`super::SchedulerConfig`]).
#[derive(Clone, Copy, Debug)]
pub struct QueueTiming {
    pub initial_backoff_ms: Duration,
    pub max_backoff_ms: Duration,
    pub max_in_unschedulable_ms: Duration,
}

/// Pending pods this scheduler is responsible for.
#[derive(Debug)]
pub struct SchedulingQueue {
    timing: QueueTiming,
    entries: BTreeMap<Key, Entry>,
    active: BTreeSet<(Reverse<i32>, u64, Key)>,
    backoff: BTreeSet<(Moment, Key)>,
    unschedulable: BTreeSet<(Moment, Key)>,
    seq: u64,
}

impl SchedulingQueue {
    pub fn new(timing: QueueTiming) -> SchedulingQueue {
        SchedulingQueue {
            timing,
            entries: BTreeMap::new(),
            active: BTreeSet::new(),
            backoff: BTreeSet::new(),
            unschedulable: BTreeSet::new(),
            seq: 0,
        }
    }

    pub fn contains(&self, key: &Key) -> bool {
        self.entries.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Pods waiting in the unschedulable pool.
    pub fn unschedulable_len(&self) -> usize {
        self.unschedulable.len()
    }

    fn unplace(&mut self, key: &Key) {
        let Some(e) = self.entries.get(key) else {
            return;
        };
        match e.place {
            Place::Active => {
                self.active
                    .remove(&(Reverse(e.priority), e.seq, key.clone()));
            }
            Place::Backoff(t) => {
                self.backoff.remove(&(t, key.clone()));
            }
            Place::Unschedulable(t) => {
                self.unschedulable.remove(&(t, key.clone()));
            }
            Place::InFlight => {}
        }
    }

    fn place(&mut self, key: &Key, place: Place) {
        self.unplace(key);
        self.seq += 1;
        let seq = self.seq;
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        e.place = place;
        match place {
            Place::Active => {
                e.seq = seq;
                self.active.insert((Reverse(e.priority), seq, key.clone()));
            }
            Place::Backoff(t) => {
                self.backoff.insert((t, key.clone()));
            }
            Place::Unschedulable(t) => {
                self.unschedulable.insert((t, key.clone()));
            }
            Place::InFlight => {}
        }
    }

    /// A new pending pod: straight to the active queue.
    pub fn add(&mut self, key: &Key, priority: i32) {
        if self.entries.contains_key(key) {
            return;
        }
        let entry = Entry {
            priority,
            seq: 0,
            attempts: 0,
            last_failure: Moment::EPOCH,
            place: Place::Active,
        };
        self.entries.insert(key.clone(), entry);
        self.place(key, Place::Active);
    }

    /// The pod is no longer ours to schedule (bound, deleted, handed to another scheduler).
    pub fn forget(&mut self, key: &Key) {
        self.unplace(key);
        self.entries.remove(key);
    }

    /// The next pod to schedule, highest priority first, then first in.
    pub fn pop(&mut self) -> Option<Key> {
        let (_, _, key) = self.active.pop_first()?;
        if let Some(e) = self.entries.get_mut(&key) {
            e.place = Place::InFlight;
        }
        Some(key)
    }

    fn backoff_until(&self, e: &Entry) -> Moment {
        let shift = e.attempts.saturating_sub(1).min(30);
        let backoff = self
            .timing
            .initial_backoff_ms
            .saturating_mul(1 << shift)
            .min(self.timing.max_backoff_ms);
        e.last_failure + backoff
    }

    /// The scheduling attempt found no node: park the pod until an event or the timeout.
    pub fn unschedulable(&mut self, key: &Key, now: Moment) {
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        e.attempts += 1;
        e.last_failure = now;
        self.place(key, Place::Unschedulable(now));
    }

    /// The attempt failed for another reason (a write error): retry after the backoff.
    pub fn errored(&mut self, key: &Key, now: Moment) {
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        e.attempts += 1;
        e.last_failure = now;
        let until = self.backoff_until(&self.entries[key]);
        self.place(key, Place::Backoff(until));
    }

    /// Move one pod to backoff (if its backoff has not expired) or active.
    fn activate(&mut self, key: &Key, now: Moment) {
        let Some(e) = self.entries.get(key) else {
            return;
        };
        let until = self.backoff_until(e);
        self.place(
            key,
            if until > now {
                Place::Backoff(until)
            } else {
                Place::Active
            },
        );
    }

    /// A cluster event that may make parked pods schedulable (node added or changed, an
    /// assigned pod deleted): move every unschedulable pod to backoff or active.
    pub fn move_all_unschedulable(&mut self, now: Moment) {
        let keys: Vec<Key> = self.unschedulable.iter().map(|(_, k)| k.clone()).collect();
        for k in keys {
            self.activate(&k, now);
        }
    }

    /// The pod's spec or labels changed while it waited: retry it (upstream moves an updated
    /// unschedulable pod out of the pool).
    pub fn updated(&mut self, key: &Key, priority: i32, now: Moment) {
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        e.priority = priority;
        if matches!(e.place, Place::Unschedulable(_)) {
            self.activate(key, now);
        } else if e.place == Place::Active {
            self.place(key, Place::Active);
        }
    }

    /// Timed transitions due at `now`: expired backoffs become active; pods parked longer
    /// than `podMaxInUnschedulablePodsDuration` are retried.
    pub fn tick(&mut self, now: Moment) {
        while let Some((t, key)) = self.backoff.first().cloned() {
            if t > now {
                break;
            }
            self.place(&key, Place::Active);
        }
        let limit = self.timing.max_in_unschedulable_ms;
        while let Some((since, key)) = self.unschedulable.first().cloned() {
            if since + limit > now {
                break;
            }
            self.activate(&key, now);
            if self
                .entries
                .get(&key)
                .is_some_and(|e| matches!(e.place, Place::Unschedulable(_)))
            {
                break;
            }
        }
    }

    pub fn has_active(&self) -> bool {
        !self.active.is_empty()
    }

    /// When [`SchedulingQueue::tick`] has work next.
    pub fn next_wakeup(&self) -> Option<Moment> {
        let b = self.backoff.first().map(|(t, _)| *t);
        let u = self
            .unschedulable
            .first()
            .map(|(t, _)| *t + self.timing.max_in_unschedulable_ms);
        b.into_iter().chain(u).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q() -> SchedulingQueue {
        SchedulingQueue::new(QueueTiming {
            initial_backoff_ms: Duration::from_millis(1000),
            max_backoff_ms: Duration::from_millis(10_000),
            max_in_unschedulable_ms: Duration::from_millis(300_000),
        })
    }

    #[test]
    fn priority_then_fifo() {
        let mut q = q();
        q.add(&Key::new("d", "a"), 0);
        q.add(&Key::new("d", "b"), 10);
        q.add(&Key::new("d", "c"), 0);
        assert_eq!(q.pop(), Some(Key::new("d", "b")));
        assert_eq!(q.pop(), Some(Key::new("d", "a")));
        assert_eq!(q.pop(), Some(Key::new("d", "c")));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_timeout_flushes() {
        let mut q = q();
        let k = Key::new("d", "a");
        q.add(&k, 0);
        let mut now = Moment::EPOCH;
        let mut waits = Vec::new();
        for _ in 0..6 {
            assert_eq!(q.pop(), Some(k.clone()));
            q.unschedulable(&k, now);
            q.move_all_unschedulable(now);
            let w = q.next_wakeup().unwrap();
            waits.push(w.saturating_since(now).as_millis());
            now = w;
            q.tick(now);
        }
        assert_eq!(waits, vec![1000, 2000, 4000, 8000, 10_000, 10_000]);
        assert_eq!(q.pop(), Some(k.clone()));
        q.unschedulable(&k, now);
        let timeout = now + Duration::from_millis(300_000);
        assert_eq!(q.next_wakeup(), Some(timeout));
        q.tick(timeout);
        assert_eq!(q.pop(), Some(k));
    }
}
