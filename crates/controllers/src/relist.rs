//! Informer relists for the live drivers (controllers, kubelet, kube-proxy, the run's timeline
//! watches): kube-runtime's watcher turned into the pure relist steps of `runtime::relist`
//! (re-exported here), so a relist replaces a driver's view as one step, deletions included.
//!
//! Start at [`steps`] (the one thin stream adapter the drivers use); the pure parts are
//! [`RelistBuffer`] and [`diff`].

use futures::{Stream, StreamExt};
use kube::runtime::{WatchStreamExt, watcher};

pub use runtime::relist::{RelistBuffer, Relisted, Step, WatchEvent, diff};

use crate::cache::Key;

/// kube-runtime's watcher event as the pure [`WatchEvent`].
pub fn watch_event<T>(ev: watcher::Event<T>) -> WatchEvent<T> {
    match ev {
        watcher::Event::Init => WatchEvent::Init,
        watcher::Event::InitApply(o) => WatchEvent::InitApply(o),
        watcher::Event::InitDone => WatchEvent::InitDone,
        watcher::Event::Apply(o) => WatchEvent::Apply(o),
        watcher::Event::Delete(o) => WatchEvent::Delete(o),
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
            Ok(ev) => buffer.on_event(watch_event(ev)),
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
    use k8s_openapi::api::core::v1::Namespace;

    /// A cluster-scoped object: its key has an empty namespace.
    fn ns(name: &str) -> Namespace {
        let mut n = Namespace::default();
        n.metadata.name = Some(name.into());
        n
    }

    #[test]
    fn kube_watch_events_map_onto_relist_steps() {
        let mut b = RelistBuffer::default();
        let mut feed = |ev| b.on_event(watch_event(ev));
        assert_eq!(feed(watcher::Event::Init), None);
        assert_eq!(feed(watcher::Event::InitApply(ns("a"))), None);
        assert_eq!(
            feed(watcher::Event::InitDone),
            Some(Step::Relisted(vec![ns("a")]))
        );
        assert_eq!(
            feed(watcher::Event::Apply(ns("b"))),
            Some(Step::Apply(ns("b")))
        );
        assert_eq!(
            feed(watcher::Event::Delete(ns("b"))),
            Some(Step::Delete(ns("b")))
        );
        assert_eq!(key_of(&ns("a")), Key::new("", "a"));
        assert_eq!(key_of(&ns("a")).to_string(), "a");
    }
}
