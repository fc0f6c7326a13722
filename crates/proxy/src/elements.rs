//! A local cache of nftables set/map elements (like upstream's `nftElementStorage`): owners
//! claim elements, and the cache reports only the adds and deletes that change the kernel's
//! contents. Start at [`ElementStore::set_owner`].

use std::collections::{BTreeMap, BTreeSet};

use crate::model::ServicePortName;

/// Adds and deletes for one set or map, in key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementDiff<K> {
    pub deleted: Vec<K>,
    /// Key and the text following it inside `{ }` (e.g. ` : goto service-...`).
    pub added: Vec<(K, String)>,
}

impl<K> Default for ElementDiff<K> {
    fn default() -> Self {
        ElementDiff {
            deleted: Vec::new(),
            added: Vec::new(),
        }
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

    /// Replaces what `owner` wants with `elements` and appends the resulting kernel changes
    /// to `diff` (a changed value is a delete then an add, as upstream).
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
            let new = self.current(&k);
            if old.as_ref() == new {
                continue;
            }
            let new = new.cloned();
            if old.is_some() {
                diff.deleted.push(k.clone());
            }
            if let Some(v) = new {
                diff.added.push((k, v));
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
        assert_eq!(d.added, vec![(1, String::new())]);
        assert!(d.deleted.is_empty());

        let mut d = ElementDiff::default();
        s.set_owner(&owner("a"), vec![], &mut d);
        assert_eq!(d, ElementDiff::default());
        s.set_owner(&owner("b"), vec![], &mut d);
        assert_eq!(d.deleted, vec![1]);
        assert!(s.is_empty());

        let mut d = ElementDiff::default();
        s.set_owner(&owner("a"), vec![(2, "x".into())], &mut d);
        s.set_owner(&owner("a"), vec![(2, "y".into())], &mut d);
        assert_eq!(d.deleted, vec![2]);
        assert_eq!(d.added, vec![(2, "x".to_string()), (2, "y".to_string())]);
    }
}
