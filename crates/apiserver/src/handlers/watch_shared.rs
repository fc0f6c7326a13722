//! Work shared by every watch stream that receives the same store event: its JSON watch line per
//! event type, encoded once, and its decoded object, decoded once (upstream's cacher shares one
//! serialization per event among watchers the same way, `cachingObject`).
//!
//! Start at [`SharedEvents`]. An event is named by its key and revision (`mod_revision`: for a
//! delete, the delete's revision), which fixes its bytes on every backend; so watchers share work
//! whether the store hands them one shared event (embedded store) or a copy each (etcd).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use api::status::StatusError;
use bytes::Bytes;
use serde_json::Value;
use store::{KeyValue, Revision};

use crate::objects;

/// How many events (key, revision) are remembered; older ones are encoded again on demand. It
/// only has to cover the events in flight to watchers at one time.
pub(crate) const SHARED_EVENTS: usize = 1024;

/// A watch event type as sent on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What is kept for one event.
#[derive(Default)]
struct Shared {
    /// `{"type":…,"object":…}\n` per [`EventType`] (a selector watch may see a MODIFIED as ADDED
    /// or DELETED; every JSON watcher gets the same bytes for the same type).
    lines: [Option<Bytes>; 3],
    object: Option<Arc<Value>>,
}

/// The remembered events, bounded to [`SHARED_EVENTS`], oldest inserted dropped first.
#[derive(Default)]
struct Inner {
    by_revision: BTreeMap<Revision, Vec<(Box<str>, Shared)>>,
    order: VecDeque<(Revision, Box<str>)>,
}

impl Inner {
    fn get(&mut self, rev: Revision, key: &str) -> Option<&mut Shared> {
        self.by_revision
            .get_mut(&rev)?
            .iter_mut()
            .find(|(k, _)| &**k == key)
            .map(|(_, s)| s)
    }

    fn get_or_insert(&mut self, rev: Revision, key: &str, cap: usize) -> &mut Shared {
        if self.get(rev, key).is_none() {
            while self.order.len() >= cap {
                let Some((r, k)) = self.order.pop_front() else {
                    break;
                };
                if let Some(v) = self.by_revision.get_mut(&r) {
                    v.retain(|(key, _)| *key != k);
                    if v.is_empty() {
                        self.by_revision.remove(&r);
                    }
                }
            }
            self.order.push_back((rev, key.into()));
            self.by_revision
                .entry(rev)
                .or_default()
                .push((key.into(), Shared::default()));
        }
        self.get(rev, key).expect("just inserted")
    }
}

/// Encodings and decodes of recent events, shared by all watch streams of one server.
pub(crate) struct SharedEvents {
    inner: Mutex<Inner>,
    capacity: usize,
}

impl Default for SharedEvents {
    fn default() -> Self {
        SharedEvents::new(SHARED_EVENTS)
    }
}

impl SharedEvents {
    pub(crate) fn new(capacity: usize) -> Self {
        SharedEvents {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Nothing panics under the lock; a poisoned map is still a valid map.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The JSON watch line for `kv` as event type `t`: the stored bytes with
    /// `metadata.resourceVersion` spliced in, built by the first watcher that needs it.
    pub(crate) fn line(&self, kv: &KeyValue, t: EventType) -> Bytes {
        if let Some(b) = self
            .lock()
            .get(kv.mod_revision, &kv.key)
            .and_then(|s| s.lines[t.index()].clone())
        {
            return b;
        }
        // Built outside the lock; two threads racing build the same bytes and keep the first.
        let built = json_line(kv, t);
        let mut inner = self.lock();
        let slot = &mut inner
            .get_or_insert(kv.mod_revision, &kv.key, self.capacity)
            .lines[t.index()];
        slot.get_or_insert(built).clone()
    }

    /// `kv` decoded (with its `resourceVersion`), decoded by the first watcher that needs it.
    pub(crate) fn object(&self, kv: &KeyValue) -> Result<Arc<Value>, StatusError> {
        if let Some(o) = self
            .lock()
            .get(kv.mod_revision, &kv.key)
            .and_then(|s| s.object.clone())
        {
            return Ok(o);
        }
        let decoded = Arc::new(objects::decode(kv)?);
        let mut inner = self.lock();
        let slot = &mut inner
            .get_or_insert(kv.mod_revision, &kv.key, self.capacity)
            .object;
        Ok(Arc::clone(slot.get_or_insert(decoded)))
    }

    /// How many events are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().order.len()
    }
}

/// One JSON watch line spliced from the stored bytes (no decode, no encode).
pub(crate) fn json_line(kv: &KeyValue, t: EventType) -> Bytes {
    let mut out = Vec::with_capacity(kv.value.len() + 64);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(t.as_str().as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    objects::splice_resource_version(kv, &mut out);
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kv(name: &str, rev: u64) -> KeyValue {
        let obj = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}});
        KeyValue {
            key: format!("/registry/core/services/d/{name}"),
            value: objects::encode(&obj),
            create_revision: 1,
            mod_revision: rev,
        }
    }

    #[test]
    fn one_buffer_per_event_and_type() {
        let shared = SharedEvents::new(8);
        let a = shared.line(&kv("a", 2), EventType::Modified);
        let again = shared.line(&kv("a", 2), EventType::Modified);
        // The same allocation, not an equal copy.
        assert_eq!(a.as_ptr(), again.as_ptr());
        let deleted = shared.line(&kv("a", 2), EventType::Deleted);
        assert_ne!(a.as_ptr(), deleted.as_ptr());
        let v: Value = serde_json::from_slice(&deleted).unwrap();
        assert_eq!(v["type"], "DELETED");
        assert_eq!(v["object"]["metadata"]["resourceVersion"], "2");
        // Another revision of the same key is another event.
        let b = shared.line(&kv("a", 3), EventType::Modified);
        assert_ne!(a.as_ptr(), b.as_ptr());
        assert_eq!(
            serde_json::from_slice::<Value>(&b).unwrap()["object"]["metadata"]["resourceVersion"],
            "3"
        );
        let o1 = shared.object(&kv("a", 2)).unwrap();
        let o2 = shared.object(&kv("a", 2)).unwrap();
        assert!(Arc::ptr_eq(&o1, &o2));
        assert_eq!(o1["metadata"]["resourceVersion"], "2");
        assert_eq!(shared.len(), 2);
    }

    #[test]
    fn bounded_oldest_first() {
        let shared = SharedEvents::new(3);
        let first = shared.line(&kv("a", 1), EventType::Added);
        for rev in 2..=10 {
            shared.line(&kv("a", rev), EventType::Modified);
            assert!(shared.len() <= 3);
        }
        assert_eq!(shared.len(), 3);
        // Forgotten: built again, equal bytes in a new buffer.
        let again = shared.line(&kv("a", 1), EventType::Added);
        assert_eq!(first, again);
        assert_ne!(first.as_ptr(), again.as_ptr());
        assert_eq!(shared.len(), 3);
    }
}
