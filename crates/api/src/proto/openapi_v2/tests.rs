//! Tests of the gnostic encoding: the served document read back with the wire reader, checked
//! the way kube-openapi's `NewOpenAPIData` and kubectl's query-parameter check read it.
//!
//! Start at `served_document_reads_back_as_kube_openapi_needs`.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::*;
use crate::proto::wire::{FIXED32, LEN, Reader, VARINT};

/// Every field of a message: `(number, payload or varint/fixed value as bytes)`.
fn fields(buf: &[u8]) -> Vec<(u32, Vec<u8>)> {
    let mut r = Reader::new(buf);
    let mut out = Vec::new();
    while !r.at_end() {
        let (n, wt) = r.key().expect("key");
        let v = match wt {
            LEN => r.bytes().expect("len").to_vec(),
            VARINT => r.varint().expect("varint").to_le_bytes().to_vec(),
            FIXED64 => r.fixed64().expect("fixed64").to_le_bytes().to_vec(),
            FIXED32 => r.fixed32().expect("fixed32").to_le_bytes().to_vec(),
            other => panic!("wire type {other}"),
        };
        out.push((n, v));
    }
    out
}

fn all(buf: &[u8], n: u32) -> Vec<Vec<u8>> {
    fields(buf)
        .into_iter()
        .filter(|(k, _)| *k == n)
        .map(|(_, v)| v)
        .collect()
}

fn one(buf: &[u8], n: u32) -> Vec<u8> {
    let mut found = all(buf, n);
    assert_eq!(found.len(), 1, "field {n} once");
    found.remove(0)
}

fn text(buf: &[u8], n: u32) -> String {
    String::from_utf8(one(buf, n)).expect("utf-8")
}

fn strings(buf: &[u8], n: u32) -> Vec<String> {
    all(buf, n)
        .into_iter()
        .map(|b| String::from_utf8(b).expect("utf-8"))
        .collect()
}

/// The `Named…` entries of field `n`: name → value bytes.
fn named_entries(buf: &[u8], n: u32) -> Vec<(String, Vec<u8>)> {
    all(buf, n)
        .iter()
        .map(|e| (text(e, 1), all(e, 2).pop().unwrap_or_default()))
        .collect()
}

fn entry(buf: &[u8], n: u32, name: &str) -> Vec<u8> {
    named_entries(buf, n)
        .into_iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("no entry {name}"))
        .1
}

/// A vendor extension's value, parsed back from its `Any.yaml`.
fn extension(buf: &[u8], n: u32, name: &str) -> Value {
    let any = entry(buf, n, name);
    serde_json::from_slice(&one(&any, 2)).expect("yaml is JSON text")
}

/// kube-openapi's ParseSchema rules: a `_ref` names a definition, an array has exactly one
/// item schema, a single type is object/array or a known primitive.
fn check_schema(s: &[u8], names: &BTreeSet<String>, path: &str) {
    if !all(s, 1).is_empty() {
        let r = text(s, 1);
        let target = r.strip_prefix("#/definitions/").expect("local ref");
        assert!(names.contains(target), "{path}: unknown model {r}");
        return;
    }
    let types = all(s, 22).pop().map_or(vec![], |t| strings(&t, 1));
    match types.first().map(String::as_str) {
        Some("array") => {
            let items = all(&one(s, 23), 1);
            assert_eq!(items.len(), 1, "{path}: array with one sub-item");
            check_schema(&items[0], names, &format!("{path}[]"));
        }
        Some("object") | None => {
            for (k, v) in all(s, 25).pop().map_or(vec![], |p| named_entries(&p, 1)) {
                check_schema(&v, names, &format!("{path}.{k}"));
            }
            let map_value = all(s, 21).pop().and_then(|ap| all(&ap, 1).pop());
            if let Some(inner) = map_value {
                check_schema(&inner, names, &format!("{path}{{}}"));
            }
        }
        Some(t) => assert!(
            ["string", "number", "integer", "boolean"].contains(&t),
            "{path}: unknown primitive type {t}"
        ),
    }
}

#[test]
fn served_document_reads_back_as_kube_openapi_needs() {
    let doc = crate::schema::openapi_v2();
    let pb = encode_document(doc);
    assert_eq!(text(&pb, 1), "2.0");
    assert_eq!(text(&one(&pb, 2), 1), "Kubernetes");
    let defs = named_entries(&one(&pb, 9), 1);
    assert_eq!(defs.len(), doc["definitions"].as_object().unwrap().len());
    let names: BTreeSet<String> = defs.iter().map(|(k, _)| k.clone()).collect();
    for (name, schema) in &defs {
        check_schema(schema, &names, name);
    }

    let cm = entry(&one(&pb, 9), 1, "io.k8s.api.core.v1.ConfigMap");
    assert_eq!(
        extension(&cm, 31, "x-kubernetes-group-version-kind"),
        json!([{"group": "", "kind": "ConfigMap", "version": "v1"}])
    );
    assert_eq!(strings(&one(&cm, 22), 1), ["object"]);
    let props = one(&cm, 25);
    assert_eq!(
        text(&entry(&props, 1, "metadata"), 1),
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    let data = entry(&props, 1, "data");
    assert_eq!(strings(&one(&data, 22), 1), ["object"]);
    let value = one(&one(&data, 21), 1);
    assert_eq!(strings(&one(&value, 22), 1), ["string"]);
    assert!(!text(&data, 4).is_empty(), "description kept");

    let pod_spec = entry(&one(&pb, 9), 1, "io.k8s.api.core.v1.PodSpec");
    let containers = entry(&one(&pod_spec, 25), 1, "containers");
    assert_eq!(
        extension(&containers, 31, "x-kubernetes-patch-strategy"),
        "merge"
    );
    assert_eq!(
        extension(&containers, 31, "x-kubernetes-patch-merge-key"),
        "name"
    );
    let container = one(&one(&containers, 23), 1);
    assert_eq!(
        text(&container, 1),
        "#/definitions/io.k8s.api.core.v1.Container"
    );
}

#[test]
fn paths_carry_operations_parameters_and_gvk() {
    let pb = encode_document(crate::schema::openapi_v2());
    let paths = one(&pb, 8);
    let item = entry(&paths, 2, "/api/v1/namespaces/{namespace}/services/{name}");
    let patch = one(&item, 8);
    assert_eq!(
        extension(&patch, 13, "x-kubernetes-group-version-kind"),
        json!({"group": "", "kind": "Service", "version": "v1"})
    );
    let mut query = Vec::new();
    let mut body = None;
    for p in all(&patch, 8) {
        let param = one(&p, 1);
        if let Some(b) = all(&param, 1).pop() {
            body = Some(b);
        } else {
            let q = one(&one(&param, 2), 3);
            assert_eq!(text(&q, 2), "query");
            query.push(text(&q, 4));
        }
    }
    assert!(query.contains(&"fieldValidation".to_string()), "{query:?}");
    let body = body.expect("body parameter");
    assert_eq!(text(&body, 3), "body");
    assert_eq!(
        text(&one(&body, 5), 1),
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
    );
    let ok = entry(&one(&patch, 9), 1, "200");
    let schema = one(&one(&one(&ok, 1), 2), 1);
    assert_eq!(text(&schema, 1), "#/definitions/io.k8s.api.core.v1.Service");
}

#[test]
fn oneofs_scalars_and_extensions_follow_the_json_shape() {
    let doc = json!({
        "swagger": "2.0",
        "paths": {
            "x-top": 1,
            "/a/{name}": {"parameters": [
                {"$ref": "#/parameters/p"},
                {"name": "name", "in": "path", "required": true, "type": "string"},
                {"name": "h", "in": "header", "type": "integer", "maximum": 2.5}
            ]}
        },
        "definitions": {
            "closed": {"type": "object", "additionalProperties": false, "minLength": -1},
            "tuple": {"type": ["string", "null"], "items": [{"type": "string"}, {"type": "integer"}]}
        },
        "securityDefinitions": {"BearerToken": {"type": "apiKey", "name": "authorization", "in": "header"}},
        "security": [{"BearerToken": []}]
    });
    let pb = encode_document(&doc);
    let paths = one(&pb, 8);
    assert_eq!(extension(&paths, 1, "x-top"), json!(1));
    let params = all(&entry(&paths, 2, "/a/{name}"), 9);
    assert_eq!(text(&one(&params[0], 2), 1), "#/parameters/p");
    let path = one(&one(&one(&params[1], 1), 2), 4);
    assert_eq!((text(&path, 4), one(&path, 1)[0]), ("name".into(), 1));
    let header = one(&one(&one(&params[2], 1), 2), 1);
    assert_eq!(text(&header, 5), "integer");
    let max: [u8; 8] = one(&header, 10).try_into().unwrap();
    assert_eq!(f64::from_le_bytes(max), 2.5);

    let defs = one(&pb, 9);
    let closed = entry(&defs, 1, "closed");
    assert_eq!(one(&one(&closed, 21), 2)[0], 0, "boolean false");
    let min: [u8; 8] = one(&closed, 12).try_into().unwrap();
    assert_eq!(i64::from_le_bytes(min), -1);
    let tuple = entry(&defs, 1, "tuple");
    assert_eq!(strings(&one(&tuple, 22), 1), ["string", "null"]);
    assert_eq!(all(&one(&tuple, 23), 1).len(), 2);

    let api_key = one(&entry(&one(&pb, 13), 1, "BearerToken"), 2);
    assert_eq!(text(&api_key, 2), "authorization");
    let requirement = entry(&one(&pb, 12), 1, "BearerToken");
    assert!(strings(&requirement, 1).is_empty());
}
