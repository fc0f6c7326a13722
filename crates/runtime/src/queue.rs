//! Delay queues: keys due at a time, earliest first, one entry per key, bounded
//! ([`DelayQueue`]); and the controllers' work queue with per-key exponential backoff built on
//! it ([`WorkQueue`], upstream's rate-limited workqueue). Both are sans-IO: `now` is passed in
//! and the next due time is what a component's `poll_timeout` reports.
//!
//! Start at [`DelayQueue::add_at`] and [`DelayQueue::pop_due`].

use std::collections::{BTreeMap, BTreeSet};

use crate::cache::Key;
use std::time::Duration;

use crate::time::{Moment, duration_ms};

/// How many distinct keys a queue built with `Default` holds: above the simulator's largest
/// cluster (150,000 pods).
pub const DEFAULT_CAPACITY: usize = 1 << 20;

/// A key was not queued: the queue holds its capacity of distinct keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("delay queue full ({capacity} keys)")]
pub struct QueueFull {
    pub capacity: usize,
}

/// Keys due at a time. Each key is queued at most once; [`pop_due`](Self::pop_due) yields the
/// earliest first (ties in key order). `add_at`, `pop_due`, `remove` and `next_due` are
/// O(log n).
#[derive(Clone, Debug)]
pub struct DelayQueue<K> {
    by_time: BTreeSet<(Moment, K)>,
    by_key: BTreeMap<K, Moment>,
    capacity: usize,
}

impl<K: Ord + Clone> Default for DelayQueue<K> {
    fn default() -> Self {
        DelayQueue::new(DEFAULT_CAPACITY)
    }
}

impl<K: Ord + Clone> DelayQueue<K> {
    /// An empty queue holding at most `capacity` distinct keys.
    pub fn new(capacity: usize) -> DelayQueue<K> {
        DelayQueue {
            by_time: BTreeSet::new(),
            by_key: BTreeMap::new(),
            capacity,
        }
    }

    /// Queue `key` at `at`; if it is queued already the earlier time wins.
    pub fn add_at(&mut self, key: K, at: Moment) -> Result<(), QueueFull> {
        match self.by_key.get(&key) {
            Some(&t) if t <= at => Ok(()),
            Some(_) => {
                self.set_at(key, at);
                Ok(())
            }
            None => self.insert_new(key, at),
        }
    }

    /// Queue `key` at `at`, replacing any time it had (later or earlier).
    pub fn schedule(&mut self, key: K, at: Moment) -> Result<(), QueueFull> {
        if self.by_key.contains_key(&key) {
            self.set_at(key, at);
            Ok(())
        } else {
            self.insert_new(key, at)
        }
    }

    fn insert_new(&mut self, key: K, at: Moment) -> Result<(), QueueFull> {
        if self.by_key.len() >= self.capacity {
            return Err(QueueFull {
                capacity: self.capacity,
            });
        }
        self.by_time.insert((at, key.clone()));
        self.by_key.insert(key, at);
        Ok(())
    }

    fn set_at(&mut self, key: K, at: Moment) {
        if let Some(old) = self.by_key.insert(key.clone(), at) {
            self.by_time.remove(&(old, key.clone()));
        }
        self.by_time.insert((at, key));
    }

    /// Unqueue `key`; returns when it was due.
    pub fn remove(&mut self, key: &K) -> Option<Moment> {
        let at = self.by_key.remove(key)?;
        self.by_time.remove(&(at, key.clone()));
        Some(at)
    }

    /// Remove and return the earliest key due at or before `now`.
    pub fn pop_due(&mut self, now: Moment) -> Option<(Moment, K)> {
        let first = self.by_time.first()?;
        if first.0 > now {
            return None;
        }
        let (at, key) = self.by_time.pop_first()?;
        self.by_key.remove(&key);
        Some((at, key))
    }

    /// The earliest due time (what `poll_timeout` reports).
    pub fn next_due(&self) -> Option<Moment> {
        self.by_time.first().map(|(t, _)| *t)
    }

    /// When `key` is due, if queued.
    pub fn due_at(&self, key: &K) -> Option<Moment> {
        self.by_key.get(key).copied()
    }

    pub fn contains(&self, key: &K) -> bool {
        self.by_key.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Queued keys with their due times, earliest first.
    pub fn iter(&self) -> impl Iterator<Item = (Moment, &K)> {
        self.by_time.iter().map(|(t, k)| (*t, k))
    }
}

/// How many distinct keys a [`WorkQueue`] holds; a key past it is counted in
/// [`WorkQueue::overflowed`] and queued again by the next change to its object.
pub const WORK_QUEUE_CAPACITY: usize = DEFAULT_CAPACITY;

/// Keys due at a time, with per-key exponential backoff for retries (upstream's default
/// controller rate limiter: 5ms doubling to 1000s).
#[derive(Debug)]
pub struct WorkQueue {
    due: DelayQueue<Key>,
    failures: BTreeMap<Key, u32>,
    base: Duration,
    max: Duration,
    overflowed: u64,
}

impl Default for WorkQueue {
    fn default() -> Self {
        WorkQueue::new(Duration::ZERO, Duration::ZERO)
    }
}

impl WorkQueue {
    pub fn new(base: Duration, max: Duration) -> WorkQueue {
        WorkQueue {
            due: DelayQueue::new(WORK_QUEUE_CAPACITY),
            failures: BTreeMap::new(),
            base,
            max,
            overflowed: 0,
        }
    }

    /// Run `key` at `at` (the earlier time wins if already queued).
    pub fn add_at(&mut self, key: Key, at: Moment) {
        if self.due.add_at(key, at).is_err() {
            self.overflowed += 1;
        }
    }

    /// Requeue `key` after a failure, with exponential backoff.
    pub fn retry(&mut self, key: Key, now: Moment) {
        let n = self.failures.entry(key.clone()).or_insert(0);
        let delay_ms = duration_ms(self.base)
            .saturating_mul(1i64 << (*n).min(40))
            .min(duration_ms(self.max));
        let delay = Duration::from_millis(delay_ms.max(0) as u64);
        *n = n.saturating_add(1);
        self.add_at(key, now + delay);
    }

    /// Reset the backoff of `key` (a sync made no writes: it is in its desired state).
    pub fn forget(&mut self, key: &Key) {
        self.failures.remove(key);
    }

    /// Drop everything about `key` (the object is gone).
    pub fn remove(&mut self, key: &Key) {
        self.failures.remove(key);
        self.due.remove(key);
    }

    /// Remove and return the keys due at or before `now`, in key order (a sync pass handles
    /// them all at once).
    pub fn pop_due(&mut self, now: Moment) -> Vec<Key> {
        let mut keys = Vec::new();
        while let Some((_, k)) = self.due.pop_due(now) {
            keys.push(k);
        }
        keys.sort();
        keys
    }

    /// The earliest due time.
    pub fn next(&self) -> Option<Moment> {
        self.due.next_due()
    }

    /// Keys not queued because the queue was full.
    pub fn overflowed(&self) -> u64 {
        self.overflowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> Moment {
        Moment::from_millis(ms)
    }

    #[test]
    fn keys_come_out_earliest_first_once_each() {
        let mut q = DelayQueue::new(8);
        q.add_at("b", t(30)).unwrap();
        q.add_at("a", t(20)).unwrap();
        q.add_at("c", t(20)).unwrap();
        q.add_at("b", t(10)).unwrap(); // earlier wins
        q.add_at("a", t(50)).unwrap(); // later loses
        assert_eq!(q.len(), 3);
        assert_eq!(q.next_due(), Some(t(10)));
        assert_eq!(q.pop_due(t(9)), None);
        assert_eq!(q.pop_due(t(100)), Some((t(10), "b")));
        assert_eq!(q.pop_due(t(100)), Some((t(20), "a")));
        assert_eq!(q.pop_due(t(100)), Some((t(20), "c")));
        assert_eq!(q.pop_due(t(100)), None);
        assert!(q.is_empty());
    }

    #[test]
    fn schedule_replaces_and_remove_unqueues() {
        let mut q = DelayQueue::new(8);
        q.add_at("a", t(10)).unwrap();
        q.schedule("a", t(40)).unwrap();
        assert_eq!(q.due_at(&"a"), Some(t(40)));
        assert_eq!(q.iter().count(), 1);
        assert_eq!(q.pop_due(t(39)), None);
        assert_eq!(q.remove(&"a"), Some(t(40)));
        assert_eq!(q.remove(&"a"), None);
        assert_eq!(q.next_due(), None);
    }

    #[test]
    fn a_full_queue_refuses_new_keys_but_moves_queued_ones() {
        let mut q = DelayQueue::new(2);
        q.add_at("a", t(10)).unwrap();
        q.add_at("b", t(10)).unwrap();
        assert_eq!(q.add_at("c", t(5)), Err(QueueFull { capacity: 2 }));
        assert!(!q.contains(&"c"));
        q.add_at("b", t(1)).unwrap();
        q.schedule("a", t(0)).unwrap();
        assert_eq!(q.pop_due(t(100)), Some((t(0), "a")));
        q.add_at("c", t(5)).unwrap();
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn work_queue_backoff_doubles_and_caps() {
        let mut q = WorkQueue::new(Duration::from_millis(5), Duration::from_millis(20));
        let k = Key::new("ns", "a");
        q.retry(k.clone(), t(0));
        assert_eq!(q.next(), Some(t(5)));
        assert_eq!(q.pop_due(t(5)), vec![k.clone()]);
        q.retry(k.clone(), t(0));
        q.retry(k.clone(), t(0));
        assert_eq!(q.next(), Some(t(10)));
        q.pop_due(t(100));
        q.retry(k.clone(), t(0));
        q.retry(k.clone(), t(100));
        assert_eq!(q.next(), Some(t(20)));
        q.forget(&k);
        q.pop_due(t(1000));
        q.retry(k, t(1000));
        assert_eq!(q.next(), Some(t(1005)));
    }

    #[test]
    fn work_queue_pops_due_keys_in_key_order() {
        let mut q = WorkQueue::new(Duration::from_millis(5), Duration::from_millis(20));
        q.add_at(Key::new("ns", "b"), t(1));
        q.add_at(Key::new("ns", "a"), t(2));
        q.add_at(Key::new("ns", "c"), t(9));
        assert_eq!(
            q.pop_due(t(5)),
            vec![Key::new("ns", "a"), Key::new("ns", "b")]
        );
        assert_eq!(q.next(), Some(t(9)));
        q.remove(&Key::new("ns", "c"));
        assert_eq!(q.next(), None);
        assert_eq!(q.overflowed(), 0);
    }
}
