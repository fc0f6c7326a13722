//! Tests for strategic merge patch: per-kind merge keys, directives and kubectl's patches.

use serde_json::{Value, json};

use super::{PatchError, merge_key_for, strategic_merge_patch};

fn smp(target: Value, patch: Value, kind: &str) -> Value {
    strategic_merge_patch(&target, &patch, kind).unwrap_or_else(|e| panic!("{patch}: {e}"))
}

fn pod(containers: Value) -> Value {
    json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"app":"web","tier":"fe"}},
           "spec":{"containers":containers}})
}

#[test]
fn table_has_upstream_merge_keys() {
    assert_eq!(
        merge_key_for("Pod", &["spec", "containers"]),
        Some(("merge", Some("name")))
    );
    assert_eq!(
        merge_key_for(
            "Deployment",
            &["spec", "template", "spec", "containers", "env"]
        ),
        Some(("merge", Some("name")))
    );
    assert_eq!(
        merge_key_for("Pod", &["spec", "initContainers", "ports"]),
        Some(("merge", Some("containerPort")))
    );
    assert_eq!(
        merge_key_for("Service", &["spec", "ports"]),
        Some(("merge", Some("port")))
    );
    assert_eq!(
        merge_key_for("Node", &["spec", "podCIDRs"]),
        Some(("merge", None))
    );
    assert_eq!(
        merge_key_for("Node", &["status", "addresses"]),
        Some(("merge", Some("type")))
    );
    assert_eq!(
        merge_key_for("Lease", &["metadata", "finalizers"]),
        Some(("merge", None))
    );
    assert_eq!(
        merge_key_for("Pod", &["metadata", "ownerReferences"]),
        Some(("merge", Some("uid")))
    );
    assert_eq!(
        merge_key_for("Deployment", &["spec", "strategy"]),
        Some(("retainKeys", None))
    );
    assert_eq!(merge_key_for("Pod", &["spec", "tolerations"]), None);
    assert_eq!(
        merge_key_for("Pod", &["spec", "containers", "resizePolicy"]),
        None
    );
    assert_eq!(merge_key_for("EndpointSlice", &["endpoints"]), None);
    assert_eq!(merge_key_for("Widget", &["spec"]), None);
}

#[test]
fn containers_and_env_merge_by_name() {
    let live = pod(json!([
        {"name":"app","image":"app:1","env":[{"name":"A","value":"1"},{"name":"B","value":"2"}]},
        {"name":"side","image":"side:1"}
    ]));
    let patch = json!({"spec":{"containers":[
        {"name":"app","image":"app:2","env":[{"name":"B","value":"3"},{"name":"C","value":"4"}]}
    ]}});
    let out = smp(live, patch, "Pod");
    assert_eq!(
        out["spec"]["containers"],
        json!([
            {"name":"app","image":"app:2","env":[{"name":"A","value":"1"},{"name":"B","value":"3"},{"name":"C","value":"4"}]},
            {"name":"side","image":"side:1"}
        ])
    );
}

#[test]
fn new_list_items_and_replaced_lists() {
    let live =
        pod(json!([{"name":"app","image":"a","args":["x","y"],"ports":[{"containerPort":80}]}]));
    let patch = json!({"spec":{
        "containers":[{"name":"app","args":["z"],"ports":[{"containerPort":443,"name":"https"}]},
                      {"name":"new","image":"n"}],
        "tolerations":[{"key":"k","operator":"Exists"}]}});
    let out = smp(live, patch, "Pod");
    let c = &out["spec"]["containers"];
    // Patch items come first, then live-only items (upstream's order rule without $setElementOrder).
    assert_eq!(c[0]["name"], "app");
    assert_eq!(c[1]["name"], "new");
    assert_eq!(c[0]["args"], json!(["z"]), "untagged lists are replaced");
    assert_eq!(
        c[0]["ports"],
        json!([{"containerPort":443,"name":"https"},{"containerPort":80}])
    );
    assert_eq!(
        out["spec"]["tolerations"],
        json!([{"key":"k","operator":"Exists"}])
    );
}

#[test]
fn patch_delete_directive_in_list_and_map() {
    let live = pod(json!([{"name":"app","image":"a"},{"name":"side","image":"s"}]));
    let out = smp(
        live.clone(),
        json!({"spec":{"containers":[{"$patch":"delete","name":"side"}]}}),
        "Pod",
    );
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name":"app","image":"a"}])
    );
    let out = smp(
        live.clone(),
        json!({"metadata":{"labels":{"$patch":"delete"}}}),
        "Pod",
    );
    assert_eq!(out["metadata"]["labels"], json!({}));
    let out = smp(
        live.clone(),
        json!({"metadata":{"labels":{"$patch":"replace","x":"y"}}}),
        "Pod",
    );
    assert_eq!(out["metadata"]["labels"], json!({"x":"y"}));
    let out = smp(
        live.clone(),
        json!({"spec":{"containers":[{"name":"only","image":"o"},{"$patch":"replace"}]}}),
        "Pod",
    );
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name":"only","image":"o"}])
    );
    let err = strategic_merge_patch(
        &live,
        &json!({"spec":{"containers":[{"$patch":"delete"}]}}),
        "Pod",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "map: {\"$patch\":\"delete\"} does not contain declared merge key: name"
    );
    let err =
        strategic_merge_patch(&live, &json!({"metadata":{"$patch":"frob"}}), "Pod").unwrap_err();
    assert!(
        err.to_string().starts_with("unknown patch type: \"frob\""),
        "{err}"
    );
    assert_eq!(err.to_status_error().code, 400);
}

#[test]
fn null_removes_a_label_and_unmatched_nulls_are_ignored() {
    let out = smp(
        pod(json!([])),
        json!({"metadata":{"labels":{"tier":null,"gone":null,"new":"v"}}}),
        "Pod",
    );
    assert_eq!(out["metadata"]["labels"], json!({"app":"web","new":"v"}));
    let out = smp(
        pod(json!([])),
        json!({"spec":{"nodeName":"n1","hostname":null},"status":{"phase":"Running"}}),
        "Pod",
    );
    assert_eq!(out["spec"]["nodeName"], "n1");
    assert!(out["spec"].get("hostname").is_none());
    assert_eq!(out["status"]["phase"], "Running");
}

#[test]
fn set_element_order_is_honoured() {
    let live = pod(json!([{"name":"a"},{"name":"b"},{"name":"c"}]));
    let patch = json!({"spec":{
        "$setElementOrder/containers":[{"name":"c"},{"name":"a"},{"name":"b"}],
        "containers":[{"name":"a","image":"a2"}]}});
    let out = smp(live.clone(), patch, "Pod");
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name":"c"},{"name":"a","image":"a2"},{"name":"b"}])
    );
    // A live-only item is placed by its live position relative to the ordered ones (upstream's
    // mergeSortedSlice: `b` was before `c` in the live list).
    let patch = json!({"spec":{"$setElementOrder/containers":[{"name":"c"},{"name":"a"}]}});
    let out = smp(live.clone(), patch, "Pod");
    let names: Vec<&str> = out["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["b", "c", "a"]);
    // Primitive merge lists: finalizers.
    let ns = json!({"metadata":{"name":"n","finalizers":["x","y"]}});
    let out = smp(
        ns,
        json!({"metadata":{"$setElementOrder/finalizers":["y","z","x"],"finalizers":["z"]}}),
        "Namespace",
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["y", "z", "x"]));
    let bad =
        json!({"spec":{"$setElementOrder/containers":[{"name":"a"}],"containers":[{"name":"q"}]}});
    assert!(matches!(
        strategic_merge_patch(&live, &bad, "Pod"),
        Err(PatchError::Strategic(_))
    ));
}

#[test]
fn retain_keys_clears_unlisted_fields() {
    let d = json!({"spec":{"replicas":2,"strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":1}}}});
    let patch = json!({"spec":{"strategy":{"$retainKeys":["type"],"type":"Recreate"}}});
    let out = smp(d.clone(), patch, "Deployment");
    assert_eq!(out["spec"]["strategy"], json!({"type":"Recreate"}));
    let bad = json!({"spec":{"strategy":{"$retainKeys":["type"],"rollingUpdate":{"maxSurge":2}}}});
    let err = strategic_merge_patch(&d, &bad, "Deployment").unwrap_err();
    assert_eq!(err.to_string(), "invalid patch format of retainKeys");
    let live = pod(json!([]));
    let mut live = live;
    live["spec"]["volumes"] = json!([{"name":"v","emptyDir":{}}]);
    let patch = json!({"spec":{"volumes":[{"$retainKeys":["name","hostPath"],"name":"v","hostPath":{"path":"/x"}}]}});
    let out = smp(live, patch, "Pod");
    assert_eq!(
        out["spec"]["volumes"],
        json!([{"name":"v","hostPath":{"path":"/x"}}])
    );
}

#[test]
fn primitive_lists_merge_or_delete() {
    let node =
        json!({"spec":{"podCIDRs":["10.0.0.0/24"],"taints":[{"key":"a","effect":"NoSchedule"}]}});
    let out = smp(
        node.clone(),
        json!({"spec":{"podCIDRs":["fd00::/64","10.0.0.0/24"],"taints":[]}}),
        "Node",
    );
    assert_eq!(out["spec"]["podCIDRs"], json!(["fd00::/64", "10.0.0.0/24"]));
    assert_eq!(out["spec"]["taints"], json!([]));
    let m = json!({"metadata":{"finalizers":["a","b","c"]}});
    let out = smp(
        m,
        json!({"metadata":{"$deleteFromPrimitiveList/finalizers":["b"],"finalizers":["d"]}}),
        "Service",
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["d", "a", "c"]));
}

#[test]
fn status_conditions_merge_by_type() {
    let node = json!({"status":{"conditions":[
        {"type":"Ready","status":"True","lastHeartbeatTime":"t0"},
        {"type":"MemoryPressure","status":"False"}],
        "addresses":[{"type":"InternalIP","address":"10.0.0.1"}]}});
    let patch = json!({"status":{"$setElementOrder/conditions":[{"type":"Ready"},{"type":"MemoryPressure"}],
        "conditions":[{"type":"Ready","status":"Unknown","lastHeartbeatTime":"t1"}]}});
    let out = smp(node, patch, "Node");
    assert_eq!(
        out["status"]["conditions"][0],
        json!({"type":"Ready","status":"Unknown","lastHeartbeatTime":"t1"})
    );
    assert_eq!(out["status"]["conditions"][1]["type"], "MemoryPressure");
    assert_eq!(out["status"]["addresses"][0]["address"], "10.0.0.1");
}

#[test]
fn service_ports_merge_by_port() {
    let svc = json!({"spec":{"ports":[{"port":80,"targetPort":8080},{"port":443}],"selector":{"app":"web"}}});
    let out = smp(
        svc,
        json!({"spec":{"ports":[{"port":80,"targetPort":9090}],"selector":{"app":null,"k":"v"}}}),
        "Service",
    );
    assert_eq!(
        out["spec"]["ports"],
        json!([{"port":80,"targetPort":9090},{"port":443}])
    );
    assert_eq!(out["spec"]["selector"], json!({"k":"v"}));
}

#[test]
fn kubectl_patch_and_scale_on_deployment() {
    let d = json!({"kind":"Deployment","spec":{"replicas":1,"template":{"metadata":{"labels":{"app":"web"}},
        "spec":{"containers":[{"name":"web","image":"nginx:1","env":[{"name":"A","value":"1"}]}]}}}});
    // kubectl scale --replicas=3 (a patch of the scale) and kubectl patch -p (strategic by default).
    let out = smp(d.clone(), json!({"spec":{"replicas":3}}), "Deployment");
    assert_eq!(out["spec"]["replicas"], 3);
    let out = smp(
        d,
        json!({"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:2"}]}}}}),
        "Deployment",
    );
    let c = &out["spec"]["template"]["spec"]["containers"];
    assert_eq!(
        c,
        &json!([{"name":"web","image":"nginx:2","env":[{"name":"A","value":"1"}]}])
    );
}

#[test]
fn kubectl_apply_three_way_patch() {
    // Live object: applied earlier with containers [web, log], plus a label added by someone else.
    let last = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1","env":[{"name":"A","value":"1"}]},{"name":"log","image":"fluent"}]}}}}"#;
    let live = json!({"apiVersion":"apps/v1","kind":"Deployment",
        "metadata":{"name":"d","labels":{"owner":"ops"},
                    "annotations":{"kubectl.kubernetes.io/last-applied-configuration":last}},
        "spec":{"replicas":1,"template":{"spec":{"containers":[
            {"name":"web","image":"nginx:1","imagePullPolicy":"IfNotPresent","env":[{"name":"A","value":"1"}]},
            {"name":"log","image":"fluent"}]}}}});
    // New config drops `log`, bumps the image, drops env A and adds B: what kubectl apply sends.
    let patch = json!({
        "metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{...new...}"}},
        "spec":{"template":{"spec":{
            "$setElementOrder/containers":[{"name":"web"}],
            "containers":[
                {"name":"web","image":"nginx:2",
                 "$setElementOrder/env":[{"name":"B"}],
                 "env":[{"name":"B","value":"2"},{"$patch":"delete","name":"A"}]},
                {"$patch":"delete","name":"log"}]}}}});
    let out = smp(live, patch, "Deployment");
    assert_eq!(out["metadata"]["labels"], json!({"owner":"ops"}));
    assert_eq!(
        out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
        "{...new...}"
    );
    assert_eq!(out["spec"]["replicas"], 1);
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([{"name":"web","image":"nginx:2","imagePullPolicy":"IfNotPresent","env":[{"name":"B","value":"2"}]}])
    );
}

#[test]
fn errors_and_unsupported_kinds() {
    let err = strategic_merge_patch(&json!({}), &json!({}), "Widget").unwrap_err();
    assert_eq!(err.to_status_error().code, 415);
    assert!(strategic_merge_patch(&json!({}), &json!([1]), "Pod").is_err());
    let live = pod(json!([{"name":"a"}]));
    let err = strategic_merge_patch(
        &live,
        &json!({"spec":{"containers":[{"image":"x"}]}}),
        "Pod",
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("does not contain declared merge key: name"),
        "{err}"
    );
    let err =
        strategic_merge_patch(&live, &json!({"spec":{"containers":[[1]]}}), "Pod").unwrap_err();
    assert_eq!(err.to_string(), "lists of lists are not supported");
    let err = strategic_merge_patch(
        &live,
        &json!({"spec":{"containers":[{"name":"a","$patch":"merge"}]}}),
        "Pod",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "merging lists cannot yet be specified in the patch"
    );
}
