//! Consistent, paged lists at a revision; start at [`list_at`].
//!
//! The state at revision `r` is the current key map with every history event after `r` undone:
//! walking the history newest-first and recording each touched key's `prev` leaves, per key,
//! the value it had at `r`. That small overlay is merged with the current map in key order, so
//! a list costs one pass over the keys under the prefix plus the events after `r`.

use std::collections::{BTreeMap, VecDeque};
use std::iter::Peekable;
use std::ops::Bound;

use super::Entry;
use crate::{Event, KeyValue, ListOptions, ListResult, Revision};

/// One key of the merged view, borrowed until it is returned.
enum Item<'a> {
    Current(&'a str, &'a Entry),
    Old(&'a KeyValue),
}

impl Item<'_> {
    fn to_kv(&self) -> KeyValue {
        match self {
            Item::Current(key, entry) => entry.to_kv(key),
            Item::Old(kv) => (*kv).clone(),
        }
    }
}

/// Lists keys under `prefix` as of `revision` (already checked to be kept and not in the future).
pub(super) fn list_at(
    kv: &BTreeMap<String, Entry>,
    history: &VecDeque<Event>,
    prefix: &str,
    opts: &ListOptions,
    revision: Revision,
) -> ListResult {
    let lower: Bound<&str> = match &opts.start_after {
        Some(after) => Bound::Excluded(after.as_str()),
        None => Bound::Included(prefix),
    };
    let overlay = undo_overlay(history, prefix, lower, revision);
    let current = kv
        .range::<str, _>((lower, Bound::Unbounded))
        .take_while(|(k, _)| k.starts_with(prefix))
        .map(|(k, e)| (k.as_str(), e));
    let mut merged = Merge {
        current: current.peekable(),
        overlay: overlay.into_iter().peekable(),
    };
    let limit = match opts.limit {
        None | Some(0) => usize::MAX,
        Some(n) => n,
    };
    let items: Vec<KeyValue> = merged.by_ref().take(limit).map(|i| i.to_kv()).collect();
    let remaining = merged.count() as u64;
    ListResult {
        items,
        revision,
        remaining,
    }
}

/// Per key under `prefix` above `lower` touched after `revision`: its value at `revision`
/// (`None`: it did not exist then).
fn undo_overlay<'a>(
    history: &'a VecDeque<Event>,
    prefix: &str,
    lower: Bound<&str>,
    revision: Revision,
) -> BTreeMap<&'a str, Option<&'a KeyValue>> {
    let mut overlay = BTreeMap::new();
    for event in history.iter().rev() {
        if event.kv.mod_revision <= revision {
            break;
        }
        let key = event.kv.key.as_str();
        let above = match lower {
            Bound::Excluded(after) => key > after,
            _ => true,
        };
        if above && key.starts_with(prefix) {
            // Newest first: the last write here is the oldest event's `prev`, the state at `revision`.
            overlay.insert(key, event.prev.as_ref());
        }
    }
    overlay
}

/// Merges the current keys with the overlay in key order; the overlay wins on equal keys and
/// its `None`s hide keys.
struct Merge<'a, C: Iterator<Item = (&'a str, &'a Entry)>> {
    current: Peekable<C>,
    overlay: Peekable<std::collections::btree_map::IntoIter<&'a str, Option<&'a KeyValue>>>,
}

impl<'a, C: Iterator<Item = (&'a str, &'a Entry)>> Iterator for Merge<'a, C> {
    type Item = Item<'a>;

    fn next(&mut self) -> Option<Item<'a>> {
        loop {
            let cur_key = self.current.peek().map(|(k, _)| *k);
            let old_key = self.overlay.peek().map(|(k, _)| *k);
            let take_old = match (cur_key, old_key) {
                (None, None) => return None,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some(c), Some(o)) => {
                    if c == o {
                        self.current.next();
                    }
                    o <= c
                }
            };
            if take_old {
                if let Some((_, Some(old))) = self.overlay.next() {
                    return Some(Item::Old(old));
                }
                // The key did not exist at the revision: skip it.
            } else if let Some((k, e)) = self.current.next() {
                return Some(Item::Current(k, e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::EventKind;

    fn kv(key: &str, value: &'static [u8], c: Revision, m: Revision) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Bytes::from_static(value),
            create_revision: c,
            mod_revision: m,
        }
    }

    fn entry(kv: &KeyValue) -> (String, Entry) {
        let e = Entry {
            value: kv.value.clone(),
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
        };
        (kv.key.clone(), e)
    }

    /// rev1: create a, rev2: create b, rev3: update a, rev4: delete b, rev5: create c.
    fn fixture() -> (BTreeMap<String, Entry>, VecDeque<Event>) {
        let a1 = kv("p/a", b"1", 1, 1);
        let b2 = kv("p/b", b"1", 2, 2);
        let a3 = kv("p/a", b"2", 1, 3);
        let b4 = kv("p/b", b"1", 2, 4);
        let c5 = kv("p/c", b"1", 5, 5);
        let history = VecDeque::from(vec![
            Event {
                kind: EventKind::Added,
                kv: a1.clone(),
                prev: None,
            },
            Event {
                kind: EventKind::Added,
                kv: b2.clone(),
                prev: None,
            },
            Event {
                kind: EventKind::Modified,
                kv: a3.clone(),
                prev: Some(a1),
            },
            Event {
                kind: EventKind::Deleted,
                kv: b4,
                prev: Some(b2),
            },
            Event {
                kind: EventKind::Added,
                kv: c5.clone(),
                prev: None,
            },
        ]);
        let map = [entry(&a3), entry(&c5)].into_iter().collect();
        (map, history)
    }

    fn keys_at(rev: Revision, opts: ListOptions) -> (Vec<(String, Revision)>, u64) {
        let (map, history) = fixture();
        let res = list_at(&map, &history, "p/", &opts, rev);
        let keys = res
            .items
            .into_iter()
            .map(|kv| (kv.key, kv.mod_revision))
            .collect();
        (keys, res.remaining)
    }

    #[test]
    fn state_at_each_revision() {
        let o = ListOptions::default;
        assert_eq!(keys_at(0, o()).0, vec![]);
        assert_eq!(keys_at(1, o()).0, vec![("p/a".into(), 1)]);
        assert_eq!(
            keys_at(2, o()).0,
            vec![("p/a".into(), 1), ("p/b".into(), 2)]
        );
        assert_eq!(
            keys_at(3, o()).0,
            vec![("p/a".into(), 3), ("p/b".into(), 2)]
        );
        assert_eq!(keys_at(4, o()).0, vec![("p/a".into(), 3)]);
        assert_eq!(
            keys_at(5, o()).0,
            vec![("p/a".into(), 3), ("p/c".into(), 5)]
        );
    }

    #[test]
    fn paging_counts_remaining() {
        let first = ListOptions {
            limit: Some(1),
            ..ListOptions::default()
        };
        assert_eq!(keys_at(3, first), (vec![("p/a".into(), 3)], 1));
        let next = ListOptions {
            limit: Some(1),
            start_after: Some("p/a".into()),
            ..ListOptions::default()
        };
        assert_eq!(keys_at(3, next.clone()), (vec![("p/b".into(), 2)], 0));
        assert_eq!(keys_at(5, next), (vec![("p/c".into(), 5)], 0));
    }
}
