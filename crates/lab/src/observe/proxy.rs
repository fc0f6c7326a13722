//! Proxy syncs on the timeline, compactly: each distinct programmed endpoint set is written
//! once, with an id, and every sync names its set by id ([`ProxySyncObserver`], used by the
//! live run and the simulator); [`ProxySets`] resolves the ids again for the analysis.
//!
//! Start at [`ProxySyncObserver::synced`].

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use crate::{Event, EventKind};

/// What one proxy sync programmed: Service `ns/name` -> endpoint IPs.
pub type Programmed = BTreeMap<String, Vec<String>>;

static EMPTY: Programmed = BTreeMap::new();

/// Gives each distinct programmed set an id (in order of first sight, so the same records in
/// the same order give the same ids) and writes a set's endpoints only on its first record.
#[derive(Debug, Default)]
pub struct ProxySyncObserver {
    /// 128-bit fingerprint of a set's content -> its id.
    ids: BTreeMap<(u64, u64), u64>,
}

impl ProxySyncObserver {
    /// Node `node`'s proxy applied rules programming `services`: the set's id and the
    /// `proxy-sync` record (with the endpoints if this set was never recorded before).
    pub fn synced(&mut self, node: &str, services: Programmed) -> (u64, EventKind) {
        let next = self.ids.len() as u64;
        let (id, first) = match self.ids.entry(fingerprint(&services)) {
            std::collections::btree_map::Entry::Occupied(o) => (*o.get(), false),
            std::collections::btree_map::Entry::Vacant(v) => (*v.insert(next), true),
        };
        let kind = EventKind::ProxySync {
            node: node.to_string(),
            set: Some(id),
            services: first.then_some(services),
        };
        (id, kind)
    }

    /// Node `node`'s proxy programmed again the set `id`, which an earlier
    /// [`ProxySyncObserver::synced`] returned.
    pub fn again(node: &str, id: u64) -> EventKind {
        EventKind::ProxySync {
            node: node.to_string(),
            set: Some(id),
            services: None,
        }
    }

    /// How many distinct sets were seen.
    pub fn sets(&self) -> usize {
        self.ids.len()
    }
}

/// Two independent 64-bit SipHashes (fixed keys: deterministic) of the set's content.
fn fingerprint(services: &Programmed) -> (u64, u64) {
    let hash = |salt: u8| {
        let mut h = std::hash::DefaultHasher::new();
        salt.hash(&mut h);
        services.hash(&mut h);
        h.finish()
    };
    (hash(0), hash(1))
}

/// The programmed sets of a timeline by id, to resolve `proxy-sync` records.
#[derive(Debug, Default)]
pub struct ProxySets<'a> {
    by_id: BTreeMap<u64, &'a Programmed>,
}

impl<'a> ProxySets<'a> {
    /// Every set a record of `events` lists (in any order: a set's first record need not
    /// come first once several sources are merged and sorted).
    pub fn new<'e>(events: impl IntoIterator<Item = &'e Event>) -> ProxySets<'a>
    where
        'e: 'a,
    {
        let mut by_id = BTreeMap::new();
        for e in events {
            if let EventKind::ProxySync {
                set: Some(id),
                services: Some(s),
                ..
            } = &e.kind
            {
                by_id.entry(*id).or_insert(s);
            }
        }
        ProxySets { by_id }
    }

    /// A `proxy-sync` record's node, set id (`None`: an older record listing its own
    /// endpoints) and programmed endpoints; `None` for other records.
    pub fn sync(&self, kind: &'a EventKind) -> Option<(&'a str, Option<u64>, &'a Programmed)> {
        let EventKind::ProxySync {
            node,
            set,
            services,
        } = kind
        else {
            return None;
        };
        let programmed = match (set, services) {
            (_, Some(s)) => s,
            (Some(id), None) => self.by_id.get(id).copied().unwrap_or(&EMPTY),
            (None, None) => &EMPTY,
        };
        Some((node.as_str(), *set, programmed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ips: &[&str]) -> Programmed {
        BTreeMap::from([(
            "default/web".to_string(),
            ips.iter().map(|s| s.to_string()).collect(),
        )])
    }

    #[test]
    fn a_set_is_written_once_and_named_by_id_after() {
        let mut o = ProxySyncObserver::default();
        let (a, first) = o.synced("n1", set(&["10.0.0.1", "10.0.0.2"]));
        let (b, second) = o.synced("n2", set(&["10.0.0.1", "10.0.0.2"]));
        let (c, third) = o.synced("n1", set(&["10.0.0.2"]));
        assert_eq!(a, b, "the same endpoints are the same set");
        assert_ne!(a, c);
        assert!(
            matches!(&first, EventKind::ProxySync { services: Some(s), .. } if s["default/web"].len() == 2)
        );
        assert!(
            matches!(&second, EventKind::ProxySync { node, services: None, set: Some(id) } if node == "n2" && *id == a)
        );
        assert!(matches!(
            &third,
            EventKind::ProxySync {
                services: Some(_),
                ..
            }
        ));
        assert_eq!(o.sets(), 2);
        assert_eq!(ProxySyncObserver::again("n3", c), {
            let (_, k) = o.synced("n3", set(&["10.0.0.2"]));
            k
        });
    }

    #[test]
    fn sets_resolve_in_any_order_and_older_records_resolve_to_their_own_list() {
        let mut o = ProxySyncObserver::default();
        let (_, first) = o.synced("n1", set(&["10.0.0.1"]));
        let (_, again) = o.synced("n2", set(&["10.0.0.1"]));
        let old = EventKind::ProxySync {
            node: "n3".into(),
            set: None,
            services: Some(set(&["10.0.0.9"])),
        };
        // Merged sources: the repeat sorts before the record that lists the set.
        let events: Vec<Event> = [again, first, old]
            .into_iter()
            .enumerate()
            .map(|(i, kind)| Event { at: i as f64, kind })
            .collect();
        let sets = ProxySets::new(&events);
        let (node, id, p) = sets.sync(&events[0].kind).expect("a sync");
        assert_eq!((node, id), ("n2", Some(0)));
        assert_eq!(p["default/web"], ["10.0.0.1"]);
        let (_, id, p) = sets.sync(&events[2].kind).expect("a sync");
        assert_eq!(id, None);
        assert_eq!(p["default/web"], ["10.0.0.9"]);
        assert!(
            sets.sync(&EventKind::AutoscalerHalted { halted: true })
                .is_none()
        );
    }
}
