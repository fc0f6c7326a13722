//! Informer relists, pure: a relist (after start, a watch gap or a 410) is buffered until
//! complete and then replaces a driver's view as one step, as upstream's reflector `Replace`
//! does, so objects deleted while nobody was watching are delivered as deletions.
//!
//! Start at [`RelistBuffer::on_event`] (watch events → [`Step`]s) and [`diff`] (a relist
//! against the keys a driver holds → upserts + deletions). The live drivers feed these from
//! kube-runtime's watcher (`controllers::relist::steps`); the simulator from its own store.

use std::collections::BTreeSet;

use crate::Kind;
use crate::cache::{Cache, Change, Key, Object};

/// One event of a list-then-watch stream (kube-runtime's `watcher::Event`, without kube).
#[derive(Clone, Debug, PartialEq)]
pub enum WatchEvent<T> {
    /// A (re)list starts.
    Init,
    /// One object of the (re)list.
    InitApply(T),
    /// The (re)list is complete.
    InitDone,
    /// Added or modified while watching.
    Apply(T),
    /// Deleted while watching (the last state the server sent).
    Delete(T),
}

/// What a driver does with one watch event, once relists are buffered.
#[derive(Clone, Debug, PartialEq)]
pub enum Step<T> {
    /// Added or modified.
    Apply(T),
    /// Deleted (the last state the server sent).
    Delete(T),
    /// A complete relist: everything that exists now. Reconcile it with [`diff`].
    Relisted(Vec<T>),
}

/// Buffers the objects of a relist between [`WatchEvent::Init`] and [`WatchEvent::InitDone`].
#[derive(Debug)]
pub struct RelistBuffer<T> {
    listing: Option<Vec<T>>,
}

impl<T> Default for RelistBuffer<T> {
    fn default() -> Self {
        RelistBuffer { listing: None }
    }
}

impl<T> RelistBuffer<T> {
    /// Follow one watch event; returns the step to apply, if the event completes one.
    pub fn on_event(&mut self, ev: WatchEvent<T>) -> Option<Step<T>> {
        match ev {
            WatchEvent::Init => {
                self.listing = Some(Vec::new());
                None
            }
            WatchEvent::InitApply(o) => match self.listing.as_mut() {
                Some(l) => {
                    l.push(o);
                    None
                }
                // An InitApply outside a relist cannot happen with kube's watcher; treat it
                // as an ordinary change rather than lose it.
                None => Some(Step::Apply(o)),
            },
            WatchEvent::InitDone => Some(Step::Relisted(self.listing.take().unwrap_or_default())),
            WatchEvent::Apply(o) => Some(Step::Apply(o)),
            WatchEvent::Delete(o) => Some(Step::Delete(o)),
        }
    }
}

/// A relist reconciled with what a driver held before it.
#[derive(Clone, Debug, PartialEq)]
pub struct Relisted<T> {
    /// Every listed object (each an add or a modify).
    pub upserts: Vec<T>,
    /// Keys the driver held that the relist no longer has: deleted during the gap, in key
    /// order.
    pub deletions: Vec<Key>,
}

/// Reconcile a relist: `cached` are the keys the driver holds now, `listed` what the server
/// has. Pure: no I/O, deterministic order.
pub fn diff<T>(
    cached: impl IntoIterator<Item = Key>,
    listed: Vec<T>,
    key: impl Fn(&T) -> Key,
) -> Relisted<T> {
    let present: BTreeSet<Key> = listed.iter().map(&key).collect();
    let mut deletions: Vec<Key> = cached
        .into_iter()
        .filter(|k| !present.contains(k))
        .collect();
    deletions.sort();
    deletions.dedup();
    Relisted {
        upserts: listed,
        deletions,
    }
}

/// Reconcile a relist of `kind` with `cache`: apply it and return the changes to hand to
/// components, deletions (objects gone during a watch gap) first.
pub fn apply_relist(cache: &mut Cache, kind: Kind, listed: Vec<Object>) -> Vec<Change> {
    let cached = cache.objects(kind).into_iter().map(|o| o.key());
    let r = diff(cached, listed, Object::key);
    let mut changes = Vec::with_capacity(r.deletions.len() + r.upserts.len());
    for key in r.deletions {
        if let Some(obj) = cache.get(kind, &key) {
            changes.push(cache.apply(obj, true));
        }
    }
    for obj in r.upserts {
        changes.push(cache.apply(obj, false));
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    fn pod(name: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.metadata.namespace = Some("default".into());
        p
    }

    #[test]
    fn a_relist_is_buffered_until_done() {
        let mut b = RelistBuffer::default();
        assert_eq!(
            b.on_event(WatchEvent::Apply(pod("x"))),
            Some(Step::Apply(pod("x")))
        );
        assert_eq!(b.on_event(WatchEvent::Init), None);
        assert_eq!(b.on_event(WatchEvent::InitApply(pod("a"))), None);
        assert_eq!(b.on_event(WatchEvent::InitApply(pod("b"))), None);
        assert_eq!(
            b.on_event(WatchEvent::InitDone),
            Some(Step::Relisted(vec![pod("a"), pod("b")]))
        );
        assert_eq!(
            b.on_event(WatchEvent::Delete(pod("a"))),
            Some(Step::Delete(pod("a")))
        );
        // An empty relist is still a relist: it deletes everything held.
        assert_eq!(b.on_event(WatchEvent::Init), None);
        assert_eq!(
            b.on_event(WatchEvent::InitDone),
            Some(Step::Relisted(Vec::new()))
        );
    }

    #[test]
    fn a_relist_deletes_what_it_no_longer_lists() {
        let cached = vec![
            Key::new("default", "c"),
            Key::new("default", "a"),
            Key::new("default", "b"),
        ];
        let key = |p: &Pod| Key::of(&p.metadata);
        let r = diff(cached, vec![pod("b"), pod("d")], key);
        assert_eq!(r.upserts, vec![pod("b"), pod("d")]);
        assert_eq!(
            r.deletions,
            vec![Key::new("default", "a"), Key::new("default", "c")]
        );
        let none = diff(Vec::new(), vec![pod("a")], key);
        assert!(none.deletions.is_empty());
    }

    #[test]
    fn a_relist_applied_to_the_cache_deletes_first_then_upserts() {
        use std::sync::Arc;
        let mut cache = Cache::new();
        cache.apply(Object::Pod(Arc::new(pod("a"))), false);
        cache.apply(Object::Pod(Arc::new(pod("b"))), false);
        let listed = vec![
            Object::Pod(Arc::new(pod("b"))),
            Object::Pod(Arc::new(pod("c"))),
        ];
        let changes = apply_relist(&mut cache, Kind::Pod, listed);
        let keys: Vec<(bool, Key)> = changes
            .iter()
            .map(|c| (matches!(c, Change::Deleted(_)), c.object().key()))
            .collect();
        assert_eq!(
            keys,
            vec![
                (true, Key::new("default", "a")),
                (false, Key::new("default", "b")),
                (false, Key::new("default", "c")),
            ]
        );
        assert!(matches!(&changes[1], Change::Applied { old: Some(_), .. }));
        assert_eq!(cache.pods.len(), 2);
    }
}
