//! A local cache of nftables set/map elements (like upstream's `nftElementStorage`): owners
//! claim elements, and the cache reports only the adds and deletes that change the kernel's
//! contents over a whole transaction (two owners of one key changed in the same transaction
//! give one delete at most). Start at [`ElementStore::set_owner`].

use std::collections::{BTreeMap, BTreeSet};

use crate::model::ServicePortName;

/// Adds and deletes for one set or map in one transaction, in key order: per key touched,
/// the element the kernel held before the transaction and the one it holds after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementDiff<K> {
    changes: BTreeMap<K, (Option<String>, Option<String>)>,
}

impl<K> Default for ElementDiff<K> {
    fn default() -> Self {
        ElementDiff {
            changes: BTreeMap::new(),
        }
    }
}

impl<K: Ord> ElementDiff<K> {
    fn record(&mut self, key: K, before: Option<String>, after: Option<String>) {
        self.changes.entry(key).or_insert((before, None)).1 = after;
    }

    /// Keys to delete: held before and gone or changed (a changed value is a delete then an
    /// add, as upstream).
    pub fn deleted(&self) -> impl Iterator<Item = &K> {
        self.changes
            .iter()
            .filter(|(_, (b, a))| b.is_some() && b != a)
            .map(|(k, _)| k)
    }

    /// Keys to add with the text following the key inside `{ }` (e.g. ` : goto service-...`).
    pub fn added(&self) -> impl Iterator<Item = (&K, &String)> {
        self.changes.iter().filter_map(|(k, (b, a))| match a {
            Some(v) if b.as_ref() != Some(v) => Some((k, v)),
            _ => None,
        })
    }
}

/// Elements of one set or map with the service ports that want them.
#[derive(Debug, Clone)]
pub struct ElementStore<K> {
    claims: BTreeMap<K, BTreeMap<ServicePortName, String>>,
    by_owner: BTreeMap<ServicePortName, Vec<K>>,
}

impl<K> Default for ElementStore<K> {
    fn default() -> Self {
        ElementStore {
            claims: BTreeMap::new(),
            by_owner: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone> ElementStore<K> {
    /// The element as the kernel holds it: the lowest-named owner's value wins conflicts.
    fn current(&self, key: &K) -> Option<&String> {
        self.claims.get(key)?.values().next()
    }

    /// Replaces what `owner` wants with `elements` and records the resulting kernel changes
    /// in `diff`.
    pub fn set_owner(
        &mut self,
        owner: &ServicePortName,
        elements: Vec<(K, String)>,
        diff: &mut ElementDiff<K>,
    ) {
        let old_keys = self.by_owner.remove(owner).unwrap_or_default();
        let mut touched: BTreeSet<K> = old_keys.iter().cloned().collect();
        touched.extend(elements.iter().map(|(k, _)| k.clone()));
        let before: Vec<Option<String>> =
            touched.iter().map(|k| self.current(k).cloned()).collect();
        for k in &old_keys {
            if let Some(c) = self.claims.get_mut(k) {
                c.remove(owner);
                if c.is_empty() {
                    self.claims.remove(k);
                }
            }
        }
        let mut keys = Vec::with_capacity(elements.len());
        for (k, v) in elements {
            self.claims
                .entry(k.clone())
                .or_default()
                .insert(owner.clone(), v);
            keys.push(k);
        }
        if !keys.is_empty() {
            self.by_owner.insert(owner.clone(), keys);
        }
        for (k, old) in touched.into_iter().zip(before) {
            let new = self.current(&k).cloned();
            if old != new {
                diff.record(k, old, new);
            }
        }
    }

    /// Forgets everything (the kernel set was flushed or recreated).
    pub fn clear(&mut self) {
        self.claims.clear();
        self.by_owner.clear();
    }

    /// Number of elements the kernel holds.
    pub fn len(&self) -> usize {
        self.claims.len()
    }

    /// True when the kernel set is empty.
    pub fn is_empty(&self) -> bool {
        self.claims.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;

    fn owner(n: &str) -> ServicePortName {
        ServicePortName::new("ns", n, "p", Protocol::Tcp)
    }

    #[test]
    fn shared_keys_are_refcounted_and_values_diffed() {
        let mut s: ElementStore<u32> = ElementStore::default();
        let mut d = ElementDiff::default();
        s.set_owner(&owner("a"), vec![(1, String::new())], &mut d);
        s.set_owner(&owner("b"), vec![(1, String::new())], &mut d);
        let empty = String::new();
        assert_eq!(d.added().collect::<Vec<_>>(), vec![(&1, &empty)]);
        assert_eq!(d.deleted().count(), 0);

        let mut d = ElementDiff::default();
        s.set_owner(&owner("a"), vec![], &mut d);
        assert_eq!(d, ElementDiff::default());
        s.set_owner(&owner("b"), vec![], &mut d);
        assert_eq!(d.deleted().collect::<Vec<_>>(), vec![&1]);
        assert!(s.is_empty());

        let mut d = ElementDiff::default();
        s.set_owner(&owner("a"), vec![(2, "x".into())], &mut d);
        s.set_owner(&owner("a"), vec![(2, "y".into())], &mut d);
        // One transaction: only its end state counts.
        assert_eq!(d.deleted().count(), 0);
        assert_eq!(d.added().collect::<Vec<_>>(), vec![(&2, &"y".to_string())]);
        let mut d = ElementDiff::default();
        s.set_owner(&owner("a"), vec![(2, "z".into())], &mut d);
        assert_eq!(d.deleted().collect::<Vec<_>>(), vec![&2]);
        assert_eq!(d.added().collect::<Vec<_>>(), vec![(&2, &"z".to_string())]);
    }

    #[test]
    fn two_owners_of_one_key_leaving_in_one_transaction_delete_it_once() {
        let mut s: ElementStore<u32> = ElementStore::default();
        let mut d = ElementDiff::default();
        s.set_owner(&owner("a"), vec![(7, " : goto a".into())], &mut d);
        s.set_owner(&owner("b"), vec![(7, " : goto b".into())], &mut d);
        let mut d = ElementDiff::default();
        // a leaves: b's value takes over (a change); then b leaves too.
        s.set_owner(&owner("a"), vec![], &mut d);
        s.set_owner(&owner("b"), vec![], &mut d);
        assert_eq!(d.deleted().collect::<Vec<_>>(), vec![&7]);
        assert_eq!(d.added().count(), 0);
    }
}
