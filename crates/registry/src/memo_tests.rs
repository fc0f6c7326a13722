//! The create memo against the create rules run every time: the same objects, changes and
//! errors, for the JSON store and the typed store.

use api::resources::{ResourceInfo, by_plural};
use serde_json::{Value, json};

use super::*;
use crate::typed::Obj;

fn res(group: &str, plural: &str) -> &'static ResourceInfo {
    by_plural(group, plural).unwrap()
}

/// A ReplicaSet's pod body: `generateName`, owner, template labels; `image` varies the template.
fn templated(rs: &str, image: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": format!("{rs}-"), "labels": {"app": rs},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs,
                "uid": format!("uid-{rs}"), "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"containers": [{"name": "c", "image": image, "ports": [{"containerPort": 8080}]}]}})
}

/// Two stores with the same seed, one with the memo and one without, given the same creates.
fn same_results<S: Stored + PartialEq + std::fmt::Debug>(body: impl Fn(&Value) -> S) {
    let new = || {
        MemApi::<S>::new(
            MemConfig {
                check_namespaces: true,
                ..MemConfig::default()
            },
            7,
        )
        .unwrap()
    };
    let (mut memo, mut plain) = (new(), new());
    plain.memo.cap = 0;
    let nss = res("", "namespaces");
    let pods = res("", "pods");
    for api in [&mut memo, &mut plain] {
        for ns in ["a", "b"] {
            api.create(
                nss,
                None,
                &body(&json!({"metadata": {"name": ns}})),
                Moment::EPOCH,
            )
            .unwrap();
        }
    }
    // Interleaved templates and namespaces, a named pod, a body that changes in one
    // namespace, a namespace that does not exist, an invalid template, time moving on.
    let mut creates: Vec<(&str, Value)> = Vec::new();
    for i in 0..6 {
        creates.push(("a", templated("web", "echo")));
        creates.push(("b", templated("web", "echo")));
        if i % 2 == 0 {
            creates.push(("a", templated("api", "echo")));
        }
        if i == 3 {
            creates.push(("a", templated("web", "echo:2")));
            creates.push(("a", json!({"metadata": {"name": "solo"}, "spec": {"containers": [{"name": "c", "image": "i"}]}})));
            creates.push(("zz", templated("web", "echo")));
            creates.push(("a", templated("bad", "")));
        }
        if i == 4 {
            // Namespace b goes: its next memoized create is refused as the rules refuse it.
            creates.push(("-b", Value::Null));
        }
    }
    for (i, (ns, v)) in creates.iter().enumerate() {
        let now = Moment::from_millis(1_800_000_000_000 + 700 * i as i64);
        if let Some(gone) = ns.strip_prefix('-') {
            for api in [&mut memo, &mut plain] {
                api.delete(nss, None, gone, &DeleteOptions::default(), now)
                    .unwrap();
            }
            continue;
        }
        let a = memo.create(pods, Some(ns), &body(v), now);
        let b = plain.create(pods, Some(ns), &body(v), now);
        match (a, b) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.object, b.object, "create {i}");
                assert_eq!(a.changes.len(), b.changes.len());
                assert_eq!(a.changes[0].object, b.changes[0].object);
            }
            (Err(a), Err(b)) => assert_eq!(a, b, "create {i}"),
            (a, b) => panic!("create {i}: {a:?} vs {b:?}"),
        }
    }
    let all = |api: &MemApi<S>| api.list(pods, None).cloned().collect::<Vec<S>>();
    assert_eq!(all(&memo), all(&plain));
    assert_eq!(memo.revision(), plain.revision());
    assert!(memo.create_memo_hits() >= 10, "{}", memo.create_memo_hits());
    assert_eq!(plain.create_memo_hits(), 0);
}

#[test]
fn memoized_creates_store_what_the_rules_store_json() {
    same_results(|v| v.clone());
}

#[test]
fn memoized_creates_store_what_the_rules_store_typed() {
    same_results(|v| {
        let kind = v["kind"].as_str().unwrap_or("Namespace");
        let r = if kind == "Pod" {
            res("", "pods")
        } else {
            res("", "namespaces")
        };
        Obj::from_value(r, v.clone()).unwrap()
    });
}

#[test]
fn the_memo_holds_at_most_its_cap() {
    let mut api = MemApi::<Value>::new(
        MemConfig {
            check_namespaces: false,
            ..MemConfig::default()
        },
        1,
    )
    .unwrap();
    api.memo.cap = 3;
    for ns in ["a", "b", "c", "d", "e"] {
        api.create(
            res("", "pods"),
            Some(ns),
            &templated("web", "echo"),
            Moment::EPOCH,
        )
        .unwrap();
    }
    assert_eq!((api.memo.last.len(), api.memo.order.len()), (3, 3));
    // "a" went first: a miss, then a hit.
    api.create(
        res("", "pods"),
        Some("a"),
        &templated("web", "echo"),
        Moment::EPOCH,
    )
    .unwrap();
    assert_eq!(api.create_memo_hits(), 0);
    api.create(
        res("", "pods"),
        Some("a"),
        &templated("web", "echo"),
        Moment::EPOCH,
    )
    .unwrap();
    assert_eq!(api.create_memo_hits(), 1);
}
