//! Tests for RFC 7386 merge patch and RFC 6902 JSON patch (the RFC appendix examples).

use serde_json::{Value, json};

use super::{PatchError, PatchType, apply, json_patch, merge_patch};

#[test]
fn rfc7386_appendix_a() {
    let cases = [
        (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
        (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
        (json!({"a":"b"}), json!({"a":null}), json!({})),
        (
            json!({"a":"b","b":"c"}),
            json!({"a":null}),
            json!({"b":"c"}),
        ),
        (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
        (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
        (
            json!({"a":{"b":"c"}}),
            json!({"a":{"b":"d","c":null}}),
            json!({"a":{"b":"d"}}),
        ),
        (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
        (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
        (json!({"a":"b"}), json!(["c"]), json!(["c"])),
        (json!({"a":"foo"}), json!(null), json!(null)),
        (json!({"a":"foo"}), json!("bar"), json!("bar")),
        (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
        (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
        (
            json!({}),
            json!({"a":{"bb":{"ccc":null}}}),
            json!({"a":{"bb":{}}}),
        ),
    ];
    for (target, patch, want) in cases {
        assert_eq!(merge_patch(&target, &patch), want, "{target} + {patch}");
    }
}

#[test]
fn kubectl_scale_merge_patch() {
    let d =
        json!({"kind":"Deployment","spec":{"replicas":1,"selector":{"matchLabels":{"app":"web"}}}});
    let out = apply(
        PatchType::Merge,
        &d,
        &json!({"spec":{"replicas":3}}),
        "Deployment",
    )
    .unwrap();
    assert_eq!(out["spec"]["replicas"], 3);
    assert_eq!(out["spec"]["selector"]["matchLabels"]["app"], "web");
}

fn ok(doc: Value, ops: Value) -> Value {
    json_patch(&doc, &ops).unwrap_or_else(|e| panic!("{ops}: {e}"))
}

#[test]
fn rfc6902_appendix_a_successes() {
    // A.1 .. A.8, A.10, A.11, A.14, A.16
    assert_eq!(
        ok(
            json!({"foo":"bar"}),
            json!([{"op":"add","path":"/baz","value":"qux"}])
        ),
        json!({"baz":"qux","foo":"bar"})
    );
    assert_eq!(
        ok(
            json!({"foo":["bar","baz"]}),
            json!([{"op":"add","path":"/foo/1","value":"qux"}])
        ),
        json!({"foo":["bar","qux","baz"]})
    );
    assert_eq!(
        ok(
            json!({"baz":"qux","foo":"bar"}),
            json!([{"op":"remove","path":"/baz"}])
        ),
        json!({"foo":"bar"})
    );
    assert_eq!(
        ok(
            json!({"foo":["bar","qux","baz"]}),
            json!([{"op":"remove","path":"/foo/1"}])
        ),
        json!({"foo":["bar","baz"]})
    );
    assert_eq!(
        ok(
            json!({"baz":"qux","foo":"bar"}),
            json!([{"op":"replace","path":"/baz","value":"boo"}])
        ),
        json!({"baz":"boo","foo":"bar"})
    );
    assert_eq!(
        ok(
            json!({"foo":{"bar":"baz","waldo":"fred"},"qux":{"corge":"grault"}}),
            json!([{"op":"move","from":"/foo/waldo","path":"/qux/thud"}])
        ),
        json!({"foo":{"bar":"baz"},"qux":{"corge":"grault","thud":"fred"}})
    );
    assert_eq!(
        ok(
            json!({"foo":["all","grass","cows","eat"]}),
            json!([{"op":"move","from":"/foo/1","path":"/foo/3"}])
        ),
        json!({"foo":["all","cows","eat","grass"]})
    );
    let doc = json!({"baz":"qux","foo":["a",2,"c"]});
    assert_eq!(
        ok(
            doc.clone(),
            json!([{"op":"test","path":"/baz","value":"qux"},{"op":"test","path":"/foo/1","value":2.0}])
        ),
        doc
    );
    assert_eq!(
        ok(
            json!({"foo":"bar"}),
            json!([{"op":"add","path":"/child","value":{"grandchild":{}}}])
        ),
        json!({"foo":"bar","child":{"grandchild":{}}})
    );
    assert_eq!(
        ok(
            json!({"foo":"bar"}),
            json!([{"op":"add","path":"/baz","value":"qux","xyz":123}])
        ),
        json!({"foo":"bar","baz":"qux"})
    );
    let esc = json!({"/":9,"~1":10});
    assert_eq!(
        ok(esc.clone(), json!([{"op":"test","path":"/~01","value":10}])),
        esc
    );
    assert_eq!(
        ok(
            json!({"foo":["bar"]}),
            json!([{"op":"add","path":"/foo/-","value":["abc","def"]}])
        ),
        json!({"foo":["bar",["abc","def"]]})
    );
    assert_eq!(
        ok(
            json!({"a":1}),
            json!([{"op":"replace","path":"","value":[1]}])
        ),
        json!([1])
    );
    assert_eq!(
        ok(
            json!({"a":{"b":1}}),
            json!([{"op":"copy","from":"/a","path":"/c"}])
        ),
        json!({"a":{"b":1},"c":{"b":1}})
    );
    assert_eq!(
        ok(
            json!({"metadata":{"labels":{"a/b":"x"}}}),
            json!([{"op":"remove","path":"/metadata/labels/a~1b"}])
        ),
        json!({"metadata":{"labels":{}}})
    );
}

#[test]
fn rfc6902_failures_leave_target_unchanged() {
    let doc = json!({"baz":"qux","foo":["a"]});
    let failing = [
        json!([{"op":"test","path":"/baz","value":"bar"}]), // A.9
        json!([{"op":"add","path":"/baz/bat","value":"qux"}]), // A.12
        json!([{"op":"test","path":"/~01","value":"10"}]),  // A.15 (missing here)
        json!([{"op":"replace","path":"/baz","value":1},{"op":"remove","path":"/nope"}]),
        json!([{"op":"add","path":"/foo/5","value":1}]),
        json!([{"op":"add","path":"/foo/01","value":1}]),
        json!([{"op":"remove","path":"/foo/1"}]),
        json!([{"op":"replace","path":"/missing","value":1}]),
        json!([{"op":"move","from":"/foo","path":"/foo/0"}]),
        json!([{"op":"copy","from":"/nope","path":"/x"}]),
    ];
    for ops in failing {
        let before = doc.clone();
        let err = json_patch(&doc, &ops).unwrap_err();
        assert!(
            matches!(err, PatchError::OperationFailed { .. }),
            "{ops}: {err:?}"
        );
        assert_eq!(err.to_status_error().code, 422);
        assert_eq!(doc, before);
    }
    let esc = json!({"/":9,"~1":10});
    assert!(json_patch(&esc, &json!([{"op":"test","path":"/~01","value":"10"}])).is_err());
    let err = json_patch(
        &doc,
        &json!([{"op":"replace","path":"/baz","value":1},{"op":"test","path":"/baz","value":2}]),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "json patch operation 1 (test) does not apply: test failed: value at \"/baz\" differs"
    );
}

#[test]
fn malformed_json_patches_are_bad_requests() {
    let doc = json!({});
    let bad = [
        json!({"op":"add"}),
        json!([{"path":"/a","value":1}]),
        json!([{"op":"frob","path":"/a"}]),
        json!([{"op":"add","value":1}]),
        json!([{"op":"add","path":"a","value":1}]),
        json!([{"op":"add","path":"/a~2","value":1}]),
        json!([{"op":"add","path":"/a"}]),
        json!([{"op":"move","path":"/a"}]),
        json!(["add"]),
    ];
    for ops in bad {
        let err = json_patch(&doc, &ops).unwrap_err();
        assert!(!matches!(err, PatchError::OperationFailed { .. }), "{ops}");
        assert_eq!(err.to_status_error().code, 400, "{ops}");
    }
    let e = json_patch(&doc, &json!([{"op":"add","value":1}])).unwrap_err();
    assert_eq!(e.to_string(), "json patch operation 0: missing 'path'");
}

#[test]
fn content_types_select_patch_type() {
    assert_eq!(
        PatchType::from_content_type("application/json-patch+json"),
        Some(PatchType::Json)
    );
    assert_eq!(
        PatchType::from_content_type("application/merge-patch+json; charset=utf-8"),
        Some(PatchType::Merge)
    );
    assert_eq!(
        PatchType::from_content_type("application/strategic-merge-patch+json"),
        Some(PatchType::StrategicMerge)
    );
    assert_eq!(
        PatchType::from_content_type("application/apply-patch+yaml"),
        None
    );
}
