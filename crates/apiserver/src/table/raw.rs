//! A Table list written from stored bytes: each row's embedded object (PartialObjectMetadata or
//! the whole object) is spliced from the stored JSON instead of decoded and re-encoded, and the
//! cells are rendered from a decode that keeps only what the printer reads
//! ([`super::project`]). The output is byte-identical to [`crate::render::table`] of the
//! decoded objects.
//!
//! Start at [`list_bytes`].

use std::ops::Range;

use api::resources::ResourceInfo;
use api::status::StatusError;
use chrono::{DateTime, Utc};
use serde::de::IgnoredAny;
use serde_json::Value;
use store::KeyValue;

use crate::objects;
use crate::render::ListMeta;

/// A `meta.k8s.io/v1` Table of `items` as JSON bytes, with column definitions.
pub fn list_bytes(
    res: &ResourceInfo,
    items: &[KeyValue],
    meta: &ListMeta,
    now: DateTime<Utc>,
    include_object: &str,
) -> Result<Vec<u8>, StatusError> {
    let total: usize = items.iter().map(|kv| kv.value.len() / 2 + 96).sum();
    let mut out = Vec::with_capacity(total + 4096);
    out.extend_from_slice(b"{\"apiVersion\":\"meta.k8s.io/v1\",\"columnDefinitions\":");
    write_json(&mut out, &super::column_definitions(res));
    out.extend_from_slice(b",\"kind\":\"Table\",\"metadata\":");
    write_json(&mut out, &crate::render::list_meta_json(meta));
    out.extend_from_slice(b",\"rows\":[");
    let keep = super::project::for_kind(res.group, res.kind);
    for (i, kv) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let obj = super::project::decode(&kv.value, keep)
            .map_err(|e| StatusError::internal(format!("corrupt object at {}: {e}", kv.key)))?;
        out.extend_from_slice(b"{\"cells\":");
        write_json(&mut out, &Value::Array(super::row_cells(res, &obj, now)));
        out.extend_from_slice(b",\"object\":");
        embed(kv, include_object, &mut out);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}

fn write_json(out: &mut Vec<u8>, v: &Value) {
    // Writing a `Value` into a Vec cannot fail.
    serde_json::to_writer(&mut *out, v).unwrap_or_default();
}

/// The row's `object`: `null` (`None`), the object (`Object`), else its PartialObjectMetadata,
/// with `metadata.resourceVersion` set from the store revision at its sorted place.
fn embed(kv: &KeyValue, include_object: &str, out: &mut Vec<u8>) {
    let bytes = &kv.value[..];
    let meta = metadata_member(bytes);
    match include_object {
        "None" => out.extend_from_slice(b"null"),
        "Object" => match meta {
            Some(m) => {
                out.extend_from_slice(&bytes[..m.value.start]);
                splice_metadata(&bytes[m.value.clone()], kv.mod_revision, out);
                out.extend_from_slice(&bytes[m.value.end..]);
            }
            // No `metadata` to splice into: as rare as it is, decode and add it.
            None => match objects::decode(kv) {
                Ok(v) => write_json(out, &v),
                Err(_) => out.extend_from_slice(bytes),
            },
        },
        _ => {
            out.extend_from_slice(
                b"{\"apiVersion\":\"meta.k8s.io/v1\",\"kind\":\"PartialObjectMetadata\",\"metadata\":",
            );
            match meta {
                Some(m) => splice_metadata(&bytes[m.value.clone()], kv.mod_revision, out),
                None => splice_metadata(b"{}", kv.mod_revision, out),
            }
            out.push(b'}');
        }
    }
}

/// Writes the stored `metadata` object with `"resourceVersion":"<rev>"` inserted before the
/// first key that sorts after it (stored objects keep their keys sorted). Anything but an
/// object is replaced, as [`objects::set_resource_version`] does.
fn splice_metadata(meta: &[u8], rev: u64, out: &mut Vec<u8>) {
    let field = format!("\"resourceVersion\":\"{rev}\"");
    let Some(members) = collect_members(meta, 0) else {
        out.push(b'{');
        out.extend_from_slice(field.as_bytes());
        out.push(b'}');
        return;
    };
    let after = members
        .iter()
        .position(|m| &meta[m.key.clone()] > b"\"resourceVersion\"".as_slice());
    match after {
        Some(i) => {
            let at = members[i].key.start;
            out.extend_from_slice(&meta[..at]);
            out.extend_from_slice(field.as_bytes());
            out.push(b',');
            out.extend_from_slice(&meta[at..]);
        }
        None => {
            let close = meta.iter().rposition(|&b| b == b'}').unwrap_or(meta.len());
            out.extend_from_slice(&meta[..close]);
            if !members.is_empty() {
                out.push(b',');
            }
            out.extend_from_slice(field.as_bytes());
            out.extend_from_slice(&meta[close..]);
        }
    }
}

/// One `"key":value` member of a JSON object: byte ranges of the quoted key and of the value.
struct Member {
    key: Range<usize>,
    value: Range<usize>,
}

/// The top-level `metadata` member of a stored object; stored keys are sorted, so the scan
/// stops after `apiVersion` and `kind` and never walks `spec` or `status`.
fn metadata_member(bytes: &[u8]) -> Option<Member> {
    let mut found = None;
    object_members(bytes, skip_ws(bytes, 0), |m| {
        let hit = &bytes[m.key.clone()] == b"\"metadata\"";
        if hit {
            found = Some(m);
        }
        !hit
    })?;
    found
}

/// The members of the JSON object starting at `bytes[at]` (which must be `{`), collected.
fn collect_members(bytes: &[u8], at: usize) -> Option<Vec<Member>> {
    let mut members = Vec::new();
    object_members(bytes, at, |m| {
        members.push(m);
        true
    })?;
    Some(members)
}

/// Walks the members of the JSON object starting at `bytes[at]` (which must be `{`) while
/// `each` returns true; `None` if the object is malformed before the walk stops.
fn object_members(bytes: &[u8], at: usize, mut each: impl FnMut(Member) -> bool) -> Option<()> {
    if bytes.get(at) != Some(&b'{') {
        return None;
    }
    let mut i = skip_ws(bytes, at + 1);
    if bytes.get(i) == Some(&b'}') {
        return Some(());
    }
    loop {
        let key_end = skip_string(bytes, i)?;
        let colon = skip_ws(bytes, key_end);
        if bytes.get(colon) != Some(&b':') {
            return None;
        }
        let v = skip_ws(bytes, colon + 1);
        let v_end = skip_value(bytes, v)?;
        if !each(Member {
            key: i..key_end,
            value: v..v_end,
        }) {
            return Some(());
        }
        i = skip_ws(bytes, v_end);
        match bytes.get(i) {
            Some(b',') => i = skip_ws(bytes, i + 1),
            Some(b'}') => return Some(()),
            _ => return None,
        }
    }
}

fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
        i += 1;
    }
    i
}

/// The index after the string starting at `bytes[i]` (a `"`).
fn skip_string(bytes: &[u8], i: usize) -> Option<usize> {
    if bytes.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    loop {
        match bytes.get(j)? {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
}

/// The index after the JSON value starting at `bytes[i]`, found (and validated) by serde_json.
fn skip_value(bytes: &[u8], i: usize) -> Option<usize> {
    let mut values =
        serde_json::Deserializer::from_slice(bytes.get(i..)?).into_iter::<IgnoredAny>();
    match values.next() {
        Some(Ok(_)) => Some(i + values.byte_offset()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::resources::by_plural;
    use serde_json::json;

    fn kv(i: usize, obj: &Value) -> KeyValue {
        KeyValue {
            key: format!("/registry/x/{i}"),
            value: objects::encode(obj),
            create_revision: 1,
            mod_revision: 40 + i as u64,
        }
    }

    /// The old path: decode every object and render the Table as a `Value`.
    fn decoded_table(
        res: &ResourceInfo,
        kvs: &[KeyValue],
        now: DateTime<Utc>,
        inc: &str,
    ) -> Vec<u8> {
        let objs: Vec<Value> = kvs.iter().map(|kv| objects::decode(kv).unwrap()).collect();
        let meta = ListMeta {
            resource_version: 77,
            continue_token: Some("c".into()),
            remaining: Some(3),
        };
        serde_json::to_vec(&crate::render::table(res, &objs, &meta, now, inc, true)).unwrap()
    }

    fn raw_table(res: &ResourceInfo, kvs: &[KeyValue], now: DateTime<Utc>, inc: &str) -> Vec<u8> {
        let meta = ListMeta {
            resource_version: 77,
            continue_token: Some("c".into()),
            remaining: Some(3),
        };
        list_bytes(res, kvs, &meta, now, inc).unwrap()
    }

    fn samples() -> Vec<(&'static str, &'static str, Vec<Value>)> {
        let created = "2026-12-01T10:00:00Z";
        vec![
            (
                "",
                "services",
                vec![
                    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "namespace": "default", "uid": "u1", "creationTimestamp": created, "labels": {"app": "a"}, "annotations": {"x": "y\"}{"}},
                       "spec": {"type": "LoadBalancer", "clusterIPs": ["10.0.0.1"], "ports": [{"port": 80, "nodePort": 30001}], "selector": {"app": "a"}},
                       "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}}),
                    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "z", "zz": 1}, "spec": {}}),
                    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "np", "creationTimestamp": created},
                       "spec": {"type": "NodePort", "clusterIP": "10.0.0.2", "clusterIPs": ["10.0.0.2"], "externalIPs": ["5.6.7.8"],
                                "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "sessionAffinity": "ClientIP",
                                "internalTrafficPolicy": "Cluster", "externalTrafficPolicy": "Local",
                                "ports": [{"name": "h", "port": 80, "protocol": "UDP", "targetPort": 8080, "nodePort": 30002}],
                                "selector": {"b": "2", "a": "1"}}}),
                    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "en"},
                       "spec": {"type": "ExternalName", "externalName": "example.com"}}),
                    json!({"apiVersion": "v1", "kind": "Service", "metadata": {}}),
                    json!({"apiVersion": "v1", "kind": "Service"}),
                ],
            ),
            (
                "",
                "pods",
                vec![json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "creationTimestamp": created, "deletionTimestamp": created},
                "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
                "status": {"phase": "Running", "podIP": "10.1.0.2", "containerStatuses": [{"name": "c", "ready": true, "restartCount": 2}]}})],
            ),
            (
                "",
                "nodes",
                vec![json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "n1", "creationTimestamp": created, "labels": {"node-role.kubernetes.io/control-plane": ""}},
                "spec": {"unschedulable": true},
                "status": {"conditions": [{"type": "Ready", "status": "True"}], "addresses": [{"type": "InternalIP", "address": "10.9.0.1"}]}})],
            ),
            (
                "",
                "configmaps",
                vec![
                    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "creationTimestamp": created}, "data": {"a": "1"}}),
                ],
            ),
        ]
    }

    #[test]
    fn raw_table_is_byte_identical_to_the_decoded_table() {
        let now = "2026-12-05T06:00:00Z".parse().unwrap();
        for (group, plural, objs) in samples() {
            let res = by_plural(group, plural).unwrap();
            let kvs: Vec<KeyValue> = objs.iter().enumerate().map(|(i, o)| kv(i, o)).collect();
            for inc in ["", "Metadata", "Object", "None"] {
                let raw = raw_table(res, &kvs, now, inc);
                let old = decoded_table(res, &kvs, now, inc);
                assert_eq!(
                    String::from_utf8(raw).unwrap(),
                    String::from_utf8(old).unwrap(),
                    "{plural} includeObject={inc}"
                );
            }
        }
    }

    #[test]
    fn metadata_embedding_carries_the_store_revision() {
        let svc = by_plural("", "services").unwrap();
        let kvs = [kv(2, &json!({"metadata": {"name": "a", "uid": "u"}}))];
        let t: Value = serde_json::from_slice(&raw_table(svc, &kvs, Utc::now(), "")).unwrap();
        let obj = &t["rows"][0]["object"];
        assert_eq!(obj["kind"], "PartialObjectMetadata");
        assert_eq!(obj["metadata"]["resourceVersion"], "42");
        assert_eq!(obj["metadata"]["uid"], "u");
        assert_eq!(t["rows"][0]["cells"][0], "a");
    }

    #[test]
    fn corrupt_stored_bytes_are_an_internal_error() {
        let svc = by_plural("", "services").unwrap();
        for bad in [
            &b"{\"metadata\":{"[..],
            b"[1]",
            b"{\"a\":1} x",
            b"{\"spec\":{\"type\":tru}}",
        ] {
            let kvs = [KeyValue {
                key: "/registry/services/default/a".into(),
                value: bad.to_vec().into(),
                create_revision: 1,
                mod_revision: 2,
            }];
            let err = list_bytes(svc, &kvs, &ListMeta::default(), Utc::now(), "").unwrap_err();
            assert!(
                err.to_string()
                    .contains("corrupt object at /registry/services/default/a"),
                "{err}"
            );
        }
    }
}
