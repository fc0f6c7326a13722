//! Informer relists, shared by every live driver (controllers, kubelet, kube-proxy, the run's
//! timeline watches): a relist (after start, a watch gap or a 410) is buffered until complete
//! and then replaces the driver's view as one step, as upstream's reflector `Replace` does, so
//! objects deleted while nobody was watching are delivered as deletions.
//!
//! Start at [`RelistBuffer::on_event`] (watch events → [`Step`]s) and [`diff`] (a relist
//! against the keys a driver holds → upserts + deletions). Both are pure; [`steps`] is the
//! one thin stream adapter (kube-runtime's watcher with its default backoff) the drivers use.

use std::collections::BTreeSet;

use futures::{Stream, StreamExt};
use kube::runtime::{WatchStreamExt, watcher};

use crate::cache::Key;

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

/// Buffers the objects of a relist between the watcher's `Init` and `InitDone`.
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
    pub fn on_event(&mut self, ev: watcher::Event<T>) -> Option<Step<T>> {
        match ev {
            watcher::Event::Init => {
                self.listing = Some(Vec::new());
                None
            }
            watcher::Event::InitApply(o) => match self.listing.as_mut() {
                Some(l) => {
                    l.push(o);
                    None
                }
                // An InitApply outside a relist cannot happen with kube's watcher; treat it
                // as an ordinary change rather than lose it.
                None => Some(Step::Apply(o)),
            },
            watcher::Event::InitDone => {
                Some(Step::Relisted(self.listing.take().unwrap_or_default()))
            }
            watcher::Event::Apply(o) => Some(Step::Apply(o)),
            watcher::Event::Delete(o) => Some(Step::Delete(o)),
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

/// The key of any Kubernetes object (`namespace/name`, namespace empty when cluster-scoped).
pub fn key_of<K: kube::Resource>(o: &K) -> Key {
    Key::of(o.meta())
}

/// List + watch `api` as [`Step`]s: kube-runtime's watcher (relists on 410 and errors) with
/// its default backoff (`DefaultBackoff`: exponential from 800 ms to 30 s with jitter, reset
/// after 120 s of health). Errors are logged (`what` names the watch) and waited out.
pub fn steps<K>(
    api: kube::Api<K>,
    cfg: watcher::Config,
    what: &'static str,
) -> impl Stream<Item = Step<K>> + Send + 'static
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let mut buffer = RelistBuffer::default();
    watcher(api, cfg).default_backoff().filter_map(move |ev| {
        let step = match ev {
            Ok(ev) => buffer.on_event(ev),
            Err(e) => {
                tracing::warn!("{what} watch: {e}; retrying with backoff");
                None
            }
        };
        futures::future::ready(step)
    })
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
            b.on_event(watcher::Event::Apply(pod("x"))),
            Some(Step::Apply(pod("x")))
        );
        assert_eq!(b.on_event(watcher::Event::Init), None);
        assert_eq!(b.on_event(watcher::Event::InitApply(pod("a"))), None);
        assert_eq!(b.on_event(watcher::Event::InitApply(pod("b"))), None);
        assert_eq!(
            b.on_event(watcher::Event::InitDone),
            Some(Step::Relisted(vec![pod("a"), pod("b")]))
        );
        assert_eq!(
            b.on_event(watcher::Event::Delete(pod("a"))),
            Some(Step::Delete(pod("a")))
        );
        // An empty relist is still a relist: it deletes everything held.
        assert_eq!(b.on_event(watcher::Event::Init), None);
        assert_eq!(
            b.on_event(watcher::Event::InitDone),
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
        let r = diff(cached, vec![pod("b"), pod("d")], key_of);
        assert_eq!(r.upserts, vec![pod("b"), pod("d")]);
        assert_eq!(
            r.deletions,
            vec![Key::new("default", "a"), Key::new("default", "c")]
        );
        let none = diff(Vec::new(), vec![pod("a")], key_of);
        assert!(none.deletions.is_empty());
    }
}
