//! Stored-object plumbing: storage keys and encode/decode with `resourceVersion`. The write
//! rules (metadata, strategies, generation) live in the `registry` crate; re-exported here.
//!
//! Start at [`key`]. Everything here is pure.

use api::resources::ResourceInfo;
use api::status::StatusError;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::Value;
use store::KeyValue;

pub use registry::meta::{
    generate_suffix, meta_str, metadata_mut, name_of, new_uid, resource_version,
    set_resource_version,
};
pub use registry::strategy::{UpdateScope, prepare_update};

/// The storage key prefix of a collection: all namespaces when `namespace` is `None`. A resource
/// that is another version of a stored kind (`events.k8s.io/v1` Events) uses that kind's prefix,
/// as upstream stores both Event versions under one etcd prefix.
pub fn prefix(res: &ResourceInfo, namespace: Option<&str>) -> String {
    let res = api::resources::storage_alias_of(res).unwrap_or(res);
    let group = if res.group.is_empty() {
        "core"
    } else {
        res.group
    };
    match namespace {
        Some(ns) if res.namespaced => format!("/registry/{group}/{}/{ns}/", res.plural),
        _ => format!("/registry/{group}/{}/", res.plural),
    }
}

/// The storage key of one object.
pub fn key(res: &ResourceInfo, namespace: Option<&str>, name: &str) -> String {
    format!("{}{name}", prefix(res, namespace))
}

/// Serialize an object for storage (without `resourceVersion`: the store's revision is it).
pub fn encode(obj: &Value) -> Bytes {
    let mut obj = obj.clone();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    Bytes::from(serde_json::to_vec(&obj).unwrap_or_default())
}

/// Decode a stored object and set its `resourceVersion` from the store revision.
pub fn decode(kv: &KeyValue) -> Result<Value, StatusError> {
    let mut obj: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| StatusError::internal(format!("corrupt object at {}: {e}", kv.key)))?;
    set_resource_version(&mut obj, kv.mod_revision);
    Ok(obj)
}

/// The stored bytes of an object with `metadata.resourceVersion` spliced in, without decoding:
/// stored objects are serde_json output of an object whose top-level keys come in sorted order,
/// so the first `"metadata":{` before any other `{` is the top-level one. Falls back to a full
/// decode and encode for anything else.
pub fn splice_resource_version(kv: &KeyValue, out: &mut Vec<u8>) {
    const NEEDLE: &[u8] = b"\"metadata\":{";
    let bytes = &kv.value[..];
    let at = bytes.windows(NEEDLE.len()).position(|w| w == NEEDLE);
    let depth_one =
        at.is_some_and(|i| bytes.first() == Some(&b'{') && !bytes[1..i].contains(&b'{'));
    match at {
        Some(i) if depth_one => {
            let cut = i + NEEDLE.len();
            out.extend_from_slice(&bytes[..cut]);
            out.extend_from_slice(b"\"resourceVersion\":\"");
            out.extend_from_slice(kv.mod_revision.to_string().as_bytes());
            out.push(b'"');
            if bytes.get(cut) != Some(&b'}') {
                out.push(b',');
            }
            out.extend_from_slice(&bytes[cut..]);
        }
        _ => {
            if let Ok(v) = decode(kv) {
                out.extend_from_slice(&serde_json::to_vec(&v).unwrap_or_default());
            }
        }
    }
}

/// RFC 3339 with seconds, as Kubernetes `metav1.Time` marshals.
pub fn timestamp(now: DateTime<Utc>) -> String {
    registry::meta::timestamp(registry::Moment::from_millis(now.timestamp_millis()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::resources::by_plural;
    use serde_json::json;

    #[test]
    fn keys_and_prefixes() {
        let svc = by_plural("", "services").unwrap();
        assert_eq!(
            key(svc, Some("default"), "web"),
            "/registry/core/services/default/web"
        );
        assert_eq!(prefix(svc, None), "/registry/core/services/");
        let node = by_plural("", "nodes").unwrap();
        assert_eq!(key(node, Some("ignored"), "n1"), "/registry/core/nodes/n1");
        let dep = by_plural("apps", "deployments").unwrap();
        assert_eq!(prefix(dep, Some("a")), "/registry/apps/deployments/a/");
        let ev = by_plural("events.k8s.io", "events").unwrap();
        assert_eq!(key(ev, Some("d"), "e"), "/registry/core/events/d/e");
    }

    #[test]
    fn splicing_the_resource_version_matches_decoding() {
        for obj in [
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "labels": {"x": "{"}}, "spec": {"ports": [{"port": 80}]}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {}, "spec": {}}),
            json!({"kind": "Weird", "spec": {"metadata": {"name": "inner"}}, "metadata": {"name": "outer"}}),
        ] {
            let kv = KeyValue {
                key: "k".into(),
                value: encode(&obj),
                create_revision: 1,
                mod_revision: 42,
            };
            let mut out = Vec::new();
            splice_resource_version(&kv, &mut out);
            let spliced: Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(spliced, decode(&kv).unwrap(), "{obj}");
            assert_eq!(spliced["metadata"]["resourceVersion"], "42");
        }
    }

    #[test]
    fn encode_drops_resource_version_and_decode_sets_it() {
        let obj = json!({"metadata": {"name": "a", "resourceVersion": "3"}});
        let bytes = encode(&obj);
        assert!(!String::from_utf8_lossy(&bytes).contains("resourceVersion"));
        let kv = KeyValue {
            key: "k".into(),
            value: bytes,
            create_revision: 1,
            mod_revision: 7,
        };
        assert_eq!(decode(&kv).unwrap()["metadata"]["resourceVersion"], "7");
    }
}
