//! Tests of the OpenAPI documents and of strict field checking.

use serde_json::{Value, json};

use super::*;
use crate::resources::by_kind;

fn res(api_version: &str, kind: &str) -> &'static ResourceInfo {
    by_kind(api_version, kind).expect("served kind")
}

#[test]
fn v2_has_service_with_gvk() {
    let doc = openapi_v2();
    assert_eq!(doc["swagger"], "2.0");
    let svc = &doc["definitions"]["io.k8s.api.core.v1.Service"];
    assert_eq!(
        svc["x-kubernetes-group-version-kind"],
        json!([{"group": "", "kind": "Service", "version": "v1"}])
    );
    assert_eq!(
        svc["properties"]["spec"]["$ref"],
        "#/definitions/io.k8s.api.core.v1.ServiceSpec"
    );
    assert!(doc["definitions"]["io.k8s.api.apps.v1.DeploymentList"].is_object());
    let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/services/{name}"]["patch"];
    let names: Vec<&str> = patch["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(
        names.contains(&"fieldValidation")
            && names.contains(&"dryRun")
            && names.contains(&"fieldManager")
    );
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        json!({"group": "", "kind": "Service", "version": "v1"})
    );
    // Every $ref resolves inside the document.
    let mut refs = Vec::new();
    defs::refs_in(doc, "#/definitions/", &mut refs);
    for r in refs {
        assert!(doc["definitions"].get(&r).is_some(), "dangling ref {r}");
    }
}

#[test]
fn v2_patch_extensions() {
    let doc = openapi_v2();
    let containers = &doc["definitions"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    let ports = &doc["definitions"]["io.k8s.api.core.v1.ServiceSpec"]["properties"]["ports"];
    assert_eq!(
        ports["x-kubernetes-list-map-keys"],
        json!(["port", "protocol"])
    );
}

#[test]
fn v3_index_and_documents() {
    let index = openapi_v3_index();
    for gv in [
        "api/v1",
        "apis/apps/v1",
        "apis/discovery.k8s.io/v1",
        "apis/coordination.k8s.io/v1",
    ] {
        let url = index["paths"][gv]["serverRelativeURL"]
            .as_str()
            .unwrap_or_default();
        assert!(
            url.starts_with(&format!("/openapi/v3/{gv}?hash=")),
            "{gv}: {url}"
        );
        let doc = openapi_v3(gv).expect("document");
        assert_eq!(doc["openapi"], "3.0.0");
        let mut refs = Vec::new();
        defs::refs_in(doc, "#/components/schemas/", &mut refs);
        for r in refs {
            assert!(
                doc["components"]["schemas"].get(&r).is_some(),
                "{gv}: dangling ref {r}"
            );
        }
    }
    assert!(openapi_v3("apis/batch/v1").is_none());
    let apps = openapi_v3("/apis/apps/v1/").expect("apps");
    let dep = &apps["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        dep["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
    );
    assert!(
        apps["components"]["schemas"]
            .get("io.k8s.api.core.v1.Service")
            .is_none()
    );
}

/// What kubectl's `supportsQueryParamV3` checks: some PATCH operation for the GVK lists
/// `fieldValidation` among its own parameters.
fn supports_field_validation(doc: &Value, group: &str, version: &str, kind: &str) -> bool {
    let want = json!({"group": group, "kind": kind, "version": version});
    doc["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .any(|(_, item)| {
            let op = &item["patch"];
            op["x-kubernetes-group-version-kind"] == want
                && op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p["name"] == "fieldValidation")
        })
}

#[test]
fn v3_documents_offer_field_validation() {
    // The access reviews are create-only: nothing to patch.
    for r in RESOURCES
        .iter()
        .filter(|r| !crate::resources::is_create_only(r))
    {
        let gv = if r.group.is_empty() {
            format!("api/{}", r.version)
        } else {
            format!("apis/{}/{}", r.group, r.version)
        };
        let doc = openapi_v3(&gv).expect("document");
        assert!(
            supports_field_validation(doc, r.group, r.version, r.kind),
            "{}",
            r.kind
        );
    }
    let core = openapi_v3("api/v1").expect("core");
    let post = &core["paths"]["/api/v1/namespaces/{namespace}/services"]["post"];
    assert!(
        post["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["name"] == "fieldValidation")
    );
    assert_eq!(
        post["requestBody"]["content"]["*/*"]["schema"]["$ref"],
        "#/components/schemas/io.k8s.api.core.v1.Service"
    );
    assert!(
        core["paths"]
            .get("/api/v1/namespaces/{namespace}/pods/{name}/binding")
            .is_some()
    );
    assert!(core["paths"].get("/api/v1/nodes/{name}/status").is_some());
}

#[test]
fn unknown_fields_found() {
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "bogusMeta": 1},
                     "spec": {"foo": 1, "ports": [{"port": 80, "bogus": true}]}});
    assert_eq!(
        unknown_fields(res("v1", "Service"), &svc),
        vec!["metadata.bogusMeta", "spec.foo", "spec.ports[0].bogus"]
    );
    let dep = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                     "spec": {"selector": {"matchLabels": {"a": "b"}},
                              "template": {"metadata": {"labels": {"a": "b"}},
                                           "spec": {"containers": [{"name": "c", "imagee": "nginx"}]}}}});
    assert_eq!(
        unknown_fields(res("apps/v1", "Deployment"), &dep),
        vec!["spec.template.spec.containers[0].imagee"]
    );
}

#[test]
fn unknown_fields_accepts_valid_objects() {
    let svc = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "a", "labels": {"app": "x", "example.com/tier": "web"}, "annotations": {"note": "hi"},
                     "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {"f:ports": {}}}}]},
        "spec": {"selector": {"app": "x"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}, {"name": "b", "port": 81, "targetPort": 8081}],
                 "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10}}},
        "status": {"loadBalancer": {}}});
    assert!(unknown_fields(res("v1", "Service"), &svc).is_empty());
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "nginx",
            "resources": {"limits": {"cpu": "500m", "memory": 128974848}, "requests": {"cpu": 0.5}},
            "readinessProbe": {"httpGet": {"port": "http", "path": "/"}}, "env": [{"name": "A", "value": "1"}]}],
            "nodeSelector": {"zone": "a"}, "tolerations": [{"operator": "Exists"}]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    assert!(unknown_fields(res("v1", "Pod"), &pod).is_empty());
    let dep = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}},
                 "selector": {"matchExpressions": [{"key": "a", "operator": "In", "values": ["b"]}]},
                 "template": {"spec": {"containers": []}}}});
    assert!(unknown_fields(res("apps/v1", "Deployment"), &dep).is_empty());
    let eps = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "e"},
        "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": true}, "zone": "a"}],
        "ports": [{"name": "", "port": 80, "protocol": "TCP"}]});
    assert!(unknown_fields(res("discovery.k8s.io/v1", "EndpointSlice"), &eps).is_empty());
}

/// Prints how long building every document takes (run with `--ignored --nocapture`, in debug
/// and with `--release`). Not a timing assertion.
#[test]
#[ignore = "measurement; run explicitly"]
fn measure_build_time() {
    let t = std::time::Instant::now();
    let v3 = defs::definitions(Flavor::V3);
    let defs_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = std::time::Instant::now();
    let v2 = build_v2();
    let v2_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = std::time::Instant::now();
    let docs = build_v3();
    let v3_ms = t.elapsed().as_secs_f64() * 1e3;
    let bytes: usize = v2.to_string().len()
        + docs
            .values()
            .map(|(d, _)| d.to_string().len())
            .sum::<usize>();
    println!(
        "definitions(v3): {defs_ms:.1} ms ({} defs); v2 doc: {v2_ms:.1} ms; v3 docs: {v3_ms:.1} ms ({} docs); {bytes} bytes of JSON",
        v3.len(),
        docs.len()
    );
}
