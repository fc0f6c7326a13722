//! Unit tests of the watch lines: spliced lines equal decoded ones, selectors turn changes into
//! ADDED / DELETED, JSON watchers share one buffer per event and type.

use super::*;
use api::resources::by_plural;
use serde_json::json;
use std::collections::BTreeMap;

fn kv(name: &str, rev: u64, labels: Value) -> KeyValue {
    let obj = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "d", "labels": labels}, "spec": {}});
    KeyValue {
        key: format!("/registry/core/services/d/{name}"),
        value: objects::encode(&obj),
        create_revision: 1,
        mod_revision: rev,
    }
}

fn filter(key: &str, sel: &str) -> Filter {
    let svc = by_plural("", "services").unwrap();
    let q: BTreeMap<String, String> = [(key.to_string(), sel.to_string())].into();
    Filter::from_query(svc, &q).unwrap()
}

fn spec(filter: Filter, out: Output, shared: &Arc<SharedEvents>) -> WatchSpec {
    WatchSpec {
        filter,
        out,
        include: String::new(),
        bookmarks: false,
        res: by_plural("", "services").unwrap(),
        metrics: Arc::default(),
        shared: Arc::clone(shared),
    }
}

/// The old per-watcher path: decode, then encode `{"type", "object"}`.
fn decoded_line(t: &str, kv: &KeyValue) -> Value {
    json!({"type": t, "object": objects::decode(kv).unwrap()})
}

#[test]
fn spliced_lines_equal_decoded_lines() {
    let shared = Arc::new(SharedEvents::default());
    let all = spec(filter("labelSelector", ""), Output::Json, &shared);
    let named = spec(
        filter("fieldSelector", "metadata.name=a"),
        Output::Json,
        &shared,
    );
    assert!(!named.filter.needs_object());
    assert!(filter("fieldSelector", "metadata.name!=a").needs_object());
    for (kind, t, prev) in [
        (EventKind::Added, "ADDED", None),
        (EventKind::Modified, "MODIFIED", Some(kv("a", 2, json!({})))),
        (EventKind::Deleted, "DELETED", Some(kv("a", 2, json!({})))),
    ] {
        let ev = Event {
            kind,
            kv: kv("a", 3, json!({})),
            prev,
        };
        for s in [&all, &named] {
            let line = s.event_line(&ev, &mut true).unwrap();
            let got: Value = serde_json::from_slice(&line).unwrap();
            assert_eq!(got, decoded_line(t, &ev.kv));
        }
    }
    let other = Event {
        kind: EventKind::Added,
        kv: kv("ab", 3, json!({})),
        prev: None,
    };
    assert!(named.event_line(&other, &mut true).is_none());
    assert!(all.event_line(&other, &mut true).is_some());
}

#[test]
fn json_watchers_share_one_buffer_and_selector_watchers_their_own_types() {
    let shared = Arc::new(SharedEvents::default());
    let plain = spec(filter("labelSelector", ""), Output::Json, &shared);
    let plain2 = spec(filter("labelSelector", ""), Output::Json, &shared);
    let app_x = spec(filter("labelSelector", "app=x"), Output::Json, &shared);
    let meta = spec(filter("labelSelector", ""), Output::Metadata, &shared);
    // `a` leaves the selection app=x.
    let left = Event {
        kind: EventKind::Modified,
        kv: kv("a", 5, json!({"app": "y"})),
        prev: Some(kv("a", 4, json!({"app": "x"}))),
    };
    let p1 = plain.event_line(&left, &mut true).unwrap();
    let p2 = plain2.event_line(&left, &mut true).unwrap();
    assert_eq!(
        p1.as_ptr(),
        p2.as_ptr(),
        "one buffer for both JSON watchers"
    );
    let sel = app_x.event_line(&left, &mut true).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&sel).unwrap(),
        decoded_line("DELETED", &left.kv)
    );
    let m: Value = serde_json::from_slice(&meta.event_line(&left, &mut true).unwrap()).unwrap();
    assert_eq!(m["type"], "MODIFIED");
    assert_eq!(m["object"]["kind"], "PartialObjectMetadata");
    assert!(m["object"].get("spec").is_none());
    // ... and comes back: ADDED for the selector, MODIFIED for the others.
    let back = Event {
        kind: EventKind::Modified,
        kv: kv("a", 6, json!({"app": "x"})),
        prev: Some(kv("a", 5, json!({"app": "y"}))),
    };
    let sel = app_x.event_line(&back, &mut true).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&sel).unwrap()["type"],
        "ADDED"
    );
    // A change that stays outside the selection is not seen; a delete of a matching object is.
    let outside = Event {
        kind: EventKind::Modified,
        kv: kv("b", 7, json!({"app": "z"})),
        prev: Some(kv("b", 3, json!({"app": "y"}))),
    };
    assert!(app_x.event_line(&outside, &mut true).is_none());
    let deleted = Event {
        kind: EventKind::Deleted,
        kv: kv("a", 8, json!({"app": "x"})),
        prev: Some(kv("a", 6, json!({"app": "x"}))),
    };
    let d = app_x.event_line(&deleted, &mut true).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&d).unwrap(),
        decoded_line("DELETED", &deleted.kv)
    );
}

#[test]
fn table_watch_sends_column_definitions_once() {
    let shared = Arc::new(SharedEvents::default());
    let table = spec(filter("labelSelector", ""), Output::Table, &shared);
    let mut headers = true;
    let ev = |rev| Event {
        kind: EventKind::Modified,
        kv: kv("a", rev, json!({})),
        prev: Some(kv("a", rev - 1, json!({}))),
    };
    let first: Value =
        serde_json::from_slice(&table.event_line(&ev(3), &mut headers).unwrap()).unwrap();
    let second: Value =
        serde_json::from_slice(&table.event_line(&ev(4), &mut headers).unwrap()).unwrap();
    assert_eq!(first["object"]["kind"], "Table");
    assert!(
        !first["object"]["columnDefinitions"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(
        second["object"]["columnDefinitions"]
            .as_array()
            .is_none_or(Vec::is_empty)
    );
}
