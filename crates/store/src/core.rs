//! The in-memory engine shared by both backends: keys, revisions, bounded history and watch
//! fan-out under one mutex. Start at [`Core::txn`].
//!
//! Two revisions matter. `applied` is the revision of the last write applied to the key map (so
//! compare-and-swap sees it at once). `published` is the revision up to which writes are visible:
//! reads, lists, watches and [`Core::current_revision`] answer at `published`. [`MemStore`]
//! publishes each write as it applies it; [`DurableStore`] publishes a revision only once it is
//! on disk, so no reader or watcher ever sees a write a crash could lose. Events between the two
//! stay in the history and are undone on the fly for reads.
//!
//! [`MemStore`]: crate::MemStore
//! [`DurableStore`]: crate::DurableStore

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

use crate::watchers::Watchers;
use crate::{
    Event, EventKind, KeyValue, ListOptions, ListResult, Op, Revision, StoreError, StoreOptions,
    Watcher,
};

mod list;

/// One stored key's value and revisions (the key is the map key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) value: Bytes,
    pub(crate) create_revision: Revision,
    pub(crate) mod_revision: Revision,
}

impl Entry {
    fn to_kv(&self, key: &str) -> KeyValue {
        KeyValue {
            key: key.to_string(),
            value: self.value.clone(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
        }
    }
}

/// Everything behind the lock.
struct State {
    kv: BTreeMap<String, Entry>,
    /// Revision of the last applied write.
    applied: Revision,
    /// Revision up to which writes are visible (<= `applied`).
    published: Revision,
    /// The revision just before the oldest kept event.
    compacted: Revision,
    /// Events in revision order: every event after `compacted`, including unpublished ones.
    history: VecDeque<Event>,
    watchers: Watchers,
    /// Set once memory and disk may have diverged; all further writes fail.
    poisoned: Option<String>,
}

/// The engine. All methods take the one lock for their whole duration.
pub(crate) struct Core {
    state: Mutex<State>,
    history_capacity: usize,
    /// The published revision, for [`Core::wait_published`].
    published_tx: tokio::sync::watch::Sender<Revision>,
}

impl Core {
    /// An engine holding `kv` at `revision`, with an empty history (compacted = `revision`).
    pub(crate) fn new(
        opts: &StoreOptions,
        kv: BTreeMap<String, Entry>,
        revision: Revision,
    ) -> Self {
        let state = State {
            kv,
            applied: revision,
            published: revision,
            compacted: revision,
            history: VecDeque::new(),
            watchers: Watchers::new(opts.watcher_capacity),
            poisoned: None,
        };
        Core {
            state: Mutex::new(state),
            history_capacity: opts.history_capacity,
            published_tx: tokio::sync::watch::Sender::new(revision),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No code panics while holding the lock, so a poisoned mutex still holds a valid state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Validates `ops`, applies them at one new revision and appends their events to the history.
    /// Then, still under the lock, calls `after_apply(revision, events)` (the durable backend
    /// hands the write to its committer there, so commits are queued in revision order) and, if
    /// `publish`, makes the revision visible and fans it out. If `after_apply` fails the store is
    /// poisoned (the write stays unpublished) and its error is returned.
    pub(crate) fn txn<T>(
        &self,
        ops: Vec<Op>,
        publish: bool,
        after_apply: impl FnOnce(Revision, &[Event]) -> Result<T, StoreError>,
    ) -> Result<(Vec<KeyValue>, T), StoreError> {
        let mut st = self.lock();
        if let Some(why) = &st.poisoned {
            return Err(poisoned_error(why));
        }
        validate(&st.kv, &ops)?;
        let revision = st.applied + 1;
        let (results, events) = apply(&mut st.kv, ops, revision);
        st.applied = revision;
        let out = after_apply(revision, &events);
        st.history.extend(events);
        let extra = match out {
            Ok(extra) => extra,
            Err(err) => {
                poison_locked(&mut st, &err.to_string());
                return Err(err);
            }
        };
        if publish {
            self.publish_locked(&mut st, revision);
        }
        Ok((results, extra))
    }

    /// Returns once `revision` is published (reads see it), or at once if it already is.
    pub(crate) async fn wait_published(&self, revision: Revision) {
        let mut rx = self.published_tx.subscribe();
        // The sender lives as long as `self`, so this cannot fail while we are borrowed.
        let _ = rx.wait_for(|published| *published >= revision).await;
    }

    /// Makes every applied write up to `revision` visible and sends its events to watchers.
    pub(crate) fn publish(&self, revision: Revision) {
        let mut st = self.lock();
        self.publish_locked(&mut st, revision);
    }

    fn publish_locked(&self, st: &mut State, revision: Revision) {
        let revision = revision.min(st.applied);
        if revision <= st.published {
            return;
        }
        let start = st
            .history
            .partition_point(|e| e.kv.mod_revision <= st.published);
        let end = st
            .history
            .partition_point(|e| e.kv.mod_revision <= revision);
        let State {
            history, watchers, ..
        } = st;
        for event in history.range(start..end) {
            watchers.send_event(event);
        }
        st.published = revision;
        self.published_tx.send_replace(revision);
        self.trim_locked(st);
    }

    /// Drops the oldest published events beyond the history capacity.
    fn trim_locked(&self, st: &mut State) {
        while st.history.len() > self.history_capacity {
            match st.history.front() {
                Some(e) if e.kv.mod_revision <= st.published => {
                    st.compacted = e.kv.mod_revision;
                    st.history.pop_front();
                }
                _ => break,
            }
        }
    }

    /// Refuses all further writes (memory and disk diverged) and ends every watcher.
    pub(crate) fn poison(&self, why: &str) {
        let mut st = self.lock();
        poison_locked(&mut st, why);
    }

    /// Why the store refuses writes, if it does.
    pub(crate) fn refusing_writes(&self) -> Result<(), StoreError> {
        match &self.lock().poisoned {
            Some(why) => Err(poisoned_error(why)),
            None => Ok(()),
        }
    }

    /// The visible value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<KeyValue> {
        let st = self.lock();
        let mut found = st.kv.get(key).map(|e| e.to_kv(key));
        // Undo unpublished writes to this key (newest first, so the oldest one's `prev` wins).
        for event in st.history.iter().rev() {
            if event.kv.mod_revision <= st.published {
                break;
            }
            if event.kv.key == key {
                found = event.prev.clone();
            }
        }
        found
    }

    /// Keys under `prefix` at `opts.revision` (default: the visible revision), paged.
    pub(crate) fn list(&self, prefix: &str, opts: &ListOptions) -> Result<ListResult, StoreError> {
        let st = self.lock();
        let revision = opts.revision.unwrap_or(st.published);
        check_revision(&st, revision)?;
        if let Some(after) = &opts.start_after
            && !after.starts_with(prefix)
        {
            return Err(StoreError::Invalid(format!(
                "start_after {after:?} does not lie under prefix {prefix:?}"
            )));
        }
        Ok(list::list_at(&st.kv, &st.history, prefix, opts, revision))
    }

    /// Registers a watcher for `prefix` and queues the kept events after `after` under the same
    /// lock, so nothing is missed or duplicated between replay and live events.
    pub(crate) fn watch(&self, prefix: &str, after: Revision) -> Result<Watcher, StoreError> {
        let mut st = self.lock();
        check_revision(&st, after)?;
        let start = st.history.partition_point(|e| e.kv.mod_revision <= after);
        let end = st
            .history
            .partition_point(|e| e.kv.mod_revision <= st.published);
        let replay: Vec<Event> = st
            .history
            .range(start..end)
            .filter(|e| e.kv.key.starts_with(prefix))
            .cloned()
            .collect();
        Ok(st.watchers.register(prefix, replay))
    }

    /// Sends `Progress(visible revision)` to every watcher.
    pub(crate) fn request_progress(&self) {
        let mut st = self.lock();
        let revision = st.published;
        st.watchers.progress(revision);
    }

    /// The latest visible revision.
    pub(crate) fn current_revision(&self) -> Revision {
        self.lock().published
    }

    /// The revision just before the oldest kept event.
    pub(crate) fn compacted_revision(&self) -> Revision {
        self.lock().compacted
    }

    #[cfg(test)]
    fn history_len(&self) -> usize {
        self.lock().history.len()
    }
}

fn poisoned_error(why: &str) -> StoreError {
    StoreError::Io(format!("store refuses writes after a failed commit: {why}"))
}

fn poison_locked(st: &mut State, why: &str) {
    if st.poisoned.is_none() {
        st.poisoned = Some(why.to_string());
    }
    st.watchers.close_all();
}

/// `revision` must lie in `compacted..=published`.
fn check_revision(st: &State, revision: Revision) -> Result<(), StoreError> {
    if revision > st.published {
        return Err(StoreError::FutureRevision {
            requested: revision,
            current: st.published,
        });
    }
    if revision < st.compacted {
        return Err(StoreError::Compacted {
            requested: revision,
            compacted: st.compacted,
        });
    }
    Ok(())
}

/// The shape every backend requires of a transaction: non-empty, with distinct, non-empty keys.
pub(crate) fn validate_shape(ops: &[Op]) -> Result<(), StoreError> {
    if ops.is_empty() {
        return Err(StoreError::Invalid("empty transaction".to_string()));
    }
    let mut keys = BTreeSet::new();
    for op in ops {
        if op.key().is_empty() {
            return Err(StoreError::Invalid("empty key".to_string()));
        }
        if !keys.insert(op.key()) {
            return Err(StoreError::Invalid(format!(
                "key {} appears twice",
                op.key()
            )));
        }
    }
    Ok(())
}

/// Checks every precondition; the error names the first failing op.
fn validate(kv: &BTreeMap<String, Entry>, ops: &[Op]) -> Result<(), StoreError> {
    validate_shape(ops)?;
    for op in ops {
        let existing = kv.get(op.key());
        let expected = match op {
            Op::Create { key, .. } => {
                if existing.is_some() {
                    return Err(StoreError::AlreadyExists { key: key.clone() });
                }
                continue;
            }
            Op::Update { expected, .. } | Op::Delete { expected, .. } => *expected,
        };
        let Some(entry) = existing else {
            return Err(StoreError::NotFound {
                key: op.key().to_string(),
            });
        };
        if let Some(expected) = expected
            && expected != entry.mod_revision
        {
            let key = op.key().to_string();
            return Err(StoreError::Conflict {
                key,
                expected,
                actual: entry.mod_revision,
            });
        }
    }
    Ok(())
}

/// Applies validated `ops` at `revision`; returns per-op results and the events.
fn apply(
    kv: &mut BTreeMap<String, Entry>,
    ops: Vec<Op>,
    revision: Revision,
) -> (Vec<KeyValue>, Vec<Event>) {
    let mut results = Vec::with_capacity(ops.len());
    let mut events = Vec::with_capacity(ops.len());
    for op in ops {
        let event = match op {
            Op::Create { key, value } => {
                let entry = Entry {
                    value,
                    create_revision: revision,
                    mod_revision: revision,
                };
                let kv_new = entry.to_kv(&key);
                kv.insert(key, entry);
                Event {
                    kind: EventKind::Added,
                    kv: kv_new,
                    prev: None,
                }
            }
            Op::Update { key, value, .. } => {
                let prev = kv.get(&key).map(|e| e.to_kv(&key));
                let create_revision = prev.as_ref().map_or(revision, |p| p.create_revision);
                let entry = Entry {
                    value,
                    create_revision,
                    mod_revision: revision,
                };
                let kv_new = entry.to_kv(&key);
                kv.insert(key, entry);
                Event {
                    kind: EventKind::Modified,
                    kv: kv_new,
                    prev,
                }
            }
            Op::Delete { key, .. } => {
                let removed = kv.remove(&key);
                let prev = removed.as_ref().map(|e| e.to_kv(&key));
                let mut last = prev.clone().unwrap_or_else(|| KeyValue {
                    key: key.clone(),
                    value: Bytes::new(),
                    create_revision: revision,
                    mod_revision: revision,
                });
                last.mod_revision = revision;
                Event {
                    kind: EventKind::Deleted,
                    kv: last,
                    prev,
                }
            }
        };
        results.push(event.kv.clone());
        events.push(event);
    }
    (results, events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WatchMessage;

    fn core(history: usize) -> Core {
        let opts = StoreOptions {
            history_capacity: history,
            ..StoreOptions::default()
        };
        Core::new(&opts, BTreeMap::new(), 0)
    }

    fn create(key: &str, value: &'static [u8]) -> Op {
        Op::Create {
            key: key.to_string(),
            value: Bytes::from_static(value),
        }
    }

    #[test]
    fn unpublished_writes_are_invisible_but_seen_by_cas() {
        let c = core(100);
        c.txn(vec![create("a", b"1")], true, |_, _| Ok(()))
            .expect("create");
        let upd = Op::Update {
            key: "a".into(),
            value: Bytes::from_static(b"2"),
            expected: Some(1),
        };
        c.txn(vec![upd], false, |_, _| Ok(())).expect("update");
        c.txn(vec![create("b", b"1")], false, |_, _| Ok(()))
            .expect("create b");
        assert_eq!(c.current_revision(), 1);
        assert_eq!(
            c.get("a").map(|kv| kv.value),
            Some(Bytes::from_static(b"1"))
        );
        assert_eq!(c.get("b"), None);
        let listed = c.list("", &ListOptions::default()).expect("list");
        assert_eq!(listed.items.len(), 1);
        let stale = Op::Delete {
            key: "a".into(),
            expected: Some(1),
        };
        let err = c.txn(vec![stale], false, |_, _| Ok(())).expect_err("stale");
        assert_eq!(
            err,
            StoreError::Conflict {
                key: "a".into(),
                expected: 1,
                actual: 2
            }
        );
        c.publish(3);
        assert_eq!(c.current_revision(), 3);
        assert_eq!(c.get("a").map(|kv| kv.mod_revision), Some(2));
    }

    #[tokio::test]
    async fn publish_fans_out_in_order_and_trims() {
        let c = core(2);
        let mut w = c.watch("", 0).expect("watch");
        for (i, key) in ["a", "b", "c"].iter().enumerate() {
            c.txn(vec![create(key, b"v")], false, |rev, _| {
                assert_eq!(rev, i as u64 + 1);
                Ok(())
            })
            .expect("txn");
        }
        assert_eq!(c.history_len(), 3, "unpublished events are never trimmed");
        c.publish(3);
        for rev in 1..=3 {
            match w.next().await {
                Some(Ok(WatchMessage::Event(e))) => assert_eq!(e.kv.mod_revision, rev),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(c.history_len(), 2);
        assert_eq!(c.compacted_revision(), 1);
    }

    #[test]
    fn failed_after_apply_poisons() {
        let c = core(10);
        let err = c
            .txn(
                vec![create("a", b"1")],
                false,
                |_, _| -> Result<(), StoreError> { Err(StoreError::Io("disk gone".into())) },
            )
            .expect_err("fails");
        assert_eq!(err, StoreError::Io("disk gone".into()));
        let again = c.txn(vec![create("b", b"1")], true, |_, _| Ok(()));
        assert!(matches!(again, Err(StoreError::Io(_))));
        assert_eq!(c.get("a"), None);
        assert_eq!(c.current_revision(), 0);
    }
}
