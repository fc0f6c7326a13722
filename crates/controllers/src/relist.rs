//! Informer relists, pure: what a live driver does with one watch event once relists are
//! buffered ([`Step`]), and how a complete relist is reconciled with the keys the driver holds
//! ([`diff`]: objects deleted while nobody was watching come out as deletions, as upstream's
//! reflector `Replace` does). The kube-bound watcher that produces the steps is `live::relist`.
//!
//! Start at [`diff`].

use std::collections::BTreeSet;

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
    fn a_relist_deletes_what_it_no_longer_lists() {
        let cached = vec![
            Key::new("default", "c"),
            Key::new("default", "a"),
            Key::new("default", "b"),
        ];
        let r = diff(cached, vec![pod("b"), pod("d")], |p| Key::of(&p.metadata));
        assert_eq!(r.upserts, vec![pod("b"), pod("d")]);
        assert_eq!(
            r.deletions,
            vec![Key::new("default", "a"), Key::new("default", "c")]
        );
        let none = diff(Vec::new(), vec![pod("a")], |p| Key::of(&p.metadata));
        assert!(none.deletions.is_empty());
    }
}
