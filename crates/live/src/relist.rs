//! Informers for every live driver (controllers, kubelet, kube-proxy, the run's timeline
//! watches): kube-runtime's watcher turned into relist-aware [`Step`]s. The pure part (what a
//! step is, [`diff`] of a relist against what a driver holds) lives with the logic; this is
//! the kube-bound part.
//!
//! Start at [`steps`] (the one thin stream adapter the drivers use), then
//! [`RelistBuffer::on_event`] (watch events → steps).

use futures::{Stream, StreamExt};
use kube::runtime::{WatchStreamExt, watcher};

pub use controllers::relist::{Relisted, Step, diff};

use controllers::cache::Key;

/// Buffers the objects of a relist between the watcher's `Init` and `InitDone`, so a relist
/// (after start, a watch gap or a 410) replaces the driver's view as one step, as upstream's
/// reflector `Replace` does, and objects deleted while nobody was watching are delivered as
/// deletions.
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
    fn key_of_is_namespace_and_name() {
        assert_eq!(key_of(&pod("a")), Key::new("default", "a"));
        let mut node = k8s_openapi::api::core::v1::Node::default();
        node.metadata.name = Some("n-1".into());
        assert_eq!(key_of(&node), Key::new("", "n-1"));
    }
}
