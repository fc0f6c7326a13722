//! Stored-object plumbing: storage keys, encode/decode with `resourceVersion`, and the per-kind
//! create/update strategies (metadata, status subresource rules, generation).
//!
//! Start at [`key`] and [`prepare_create`]. Everything here is pure: time and randomness are
//! arguments.

use api::resources::ResourceInfo;
use api::status::StatusError;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use rand::Rng;
use serde_json::{Map, Value, json};
use store::KeyValue;

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

pub fn set_resource_version(obj: &mut Value, rev: u64) {
    if let Some(meta) = metadata_mut(obj) {
        meta.insert("resourceVersion".into(), json!(rev.to_string()));
    }
}

/// `metadata` as a mutable map, creating it if missing (returns `None` if `obj` is no object).
pub fn metadata_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    let o = obj.as_object_mut()?;
    let meta = o.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    meta.as_object_mut()
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

pub fn name_of(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or("")
}

/// The object's `resourceVersion` as a number: `Ok(None)` when unset.
pub fn resource_version(obj: &Value) -> Result<Option<u64>, StatusError> {
    match meta_str(obj, "resourceVersion") {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| StatusError::bad_request(format!("invalid resourceVersion: {s:?}"))),
    }
}

/// RFC 3339 with seconds, as Kubernetes `metav1.Time` marshals.
pub fn timestamp(now: DateTime<Utc>) -> String {
    now.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A random UUID (version 4) string.
pub fn new_uid(rng: &mut impl Rng) -> String {
    let mut b: [u8; 16] = rng.random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Upstream's generateName suffix: 5 characters from an alphabet without vowels.
pub fn generate_suffix(rng: &mut impl Rng) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Kinds whose `metadata.generation` tracks spec changes.
fn tracks_generation(res: &ResourceInfo) -> bool {
    matches!(
        res.kind,
        "Deployment" | "ReplicaSet" | "PodDisruptionBudget" | "DaemonSet"
    )
}

/// Kinds whose status may be set on create (upstream node strategy keeps it; most reset it).
fn keeps_status_on_create(res: &ResourceInfo) -> bool {
    matches!(res.kind, "Node" | "Event" | "EndpointSlice" | "Lease")
}

/// Fill in server-owned metadata and reset fields the client may not set on create.
/// `namespace` is the request's namespace (already checked against the body).
pub fn prepare_create(
    res: &ResourceInfo,
    obj: &mut Value,
    namespace: Option<&str>,
    now: DateTime<Utc>,
    rng: &mut impl Rng,
) {
    let kind = res.kind;
    let api_version = res.api_version();
    if let Some(o) = obj.as_object_mut() {
        o.insert("kind".into(), json!(kind));
        o.insert("apiVersion".into(), json!(api_version));
    }
    let generation = tracks_generation(res);
    let Some(meta) = metadata_mut(obj) else {
        return;
    };
    let has_name = meta
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    if !has_name && let Some(g) = meta.get("generateName").and_then(Value::as_str) {
        let name = format!("{g}{}", generate_suffix(rng));
        meta.insert("name".into(), json!(name));
    }
    match namespace {
        Some(ns) if res.namespaced => {
            meta.insert("namespace".into(), json!(ns));
        }
        _ => {
            meta.remove("namespace");
        }
    }
    meta.insert("uid".into(), json!(new_uid(rng)));
    meta.insert("creationTimestamp".into(), json!(timestamp(now)));
    meta.remove("resourceVersion");
    meta.remove("deletionTimestamp");
    meta.remove("deletionGracePeriodSeconds");
    meta.remove("selfLink");
    if generation {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    if !keeps_status_on_create(res)
        && let Some(o) = obj.as_object_mut()
    {
        o.remove("status");
        if let Some(s) = initial_status(res) {
            o.insert("status".into(), s);
        }
    }
}

/// The status a new object starts with, as upstream strategies set it.
fn initial_status(res: &ResourceInfo) -> Option<Value> {
    match res.kind {
        "Pod" => Some(json!({"phase": "Pending", "qosClass": "BestEffort"})),
        "Service" => Some(json!({"loadBalancer": {}})),
        "Namespace" => Some(json!({"phase": "Active"})),
        "Deployment" | "ReplicaSet" => Some(json!({})),
        // apps/v1 DaemonSetStatus: these four counts are not omitempty.
        "DaemonSet" => Some(
            json!({"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0, "numberReady": 0}),
        ),
        "PodDisruptionBudget" => Some(
            json!({"currentHealthy": 0, "desiredHealthy": 0, "disruptionsAllowed": 0, "expectedPods": 0}),
        ),
        _ => None,
    }
}

/// Which part of an object a write may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateScope {
    /// The main resource: `status` is kept from the old object (when a status subresource exists).
    Main,
    /// The `status` subresource: only `status` (and nothing in spec) changes.
    Status,
}

/// What a `status` write may change, per kind, as upstream's status strategies decide: the spec
/// always comes from the stored object; Deployments and ReplicaSets also keep their labels, pods
/// their owner references (old kubelets corrupted them); annotations may change (the deployment
/// controller writes its revision annotation through `status`).
fn status_strategy(res: &ResourceInfo, new: &mut Value, old: &Value) {
    let keep_meta: &[&str] = match res.kind {
        "Deployment" | "ReplicaSet" => &["labels"],
        "Pod" => &["ownerReferences"],
        _ => &[],
    };
    let Some(o) = new.as_object_mut() else { return };
    match old.get("spec") {
        Some(spec) => o.insert("spec".into(), spec.clone()),
        None => o.remove("spec"),
    };
    if let Some(meta) = metadata_mut(new) {
        for field in keep_meta {
            match old.get("metadata").and_then(|m| m.get(*field)) {
                Some(v) => meta.insert((*field).into(), v.clone()),
                None => meta.remove(*field),
            };
        }
    }
}

/// Carry server-owned fields from `old` into `new` and apply the subresource rule.
pub fn prepare_update(res: &ResourceInfo, new: &mut Value, old: &Value, scope: UpdateScope) {
    if let Some(o) = new.as_object_mut() {
        o.insert("kind".into(), json!(res.kind));
        o.insert("apiVersion".into(), json!(res.api_version()));
    }
    let has_status_sub = res.subresources.contains(&"status");
    match scope {
        UpdateScope::Status => status_strategy(res, new, old),
        UpdateScope::Main if has_status_sub => {
            if let Some(o) = new.as_object_mut() {
                match old.get("status") {
                    Some(s) => o.insert("status".into(), s.clone()),
                    None => o.remove("status"),
                };
            }
        }
        UpdateScope::Main => {}
    }
    let spec_changed = new.get("spec") != old.get("spec");
    let old_meta = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let Some(meta) = metadata_mut(new) else {
        return;
    };
    for field in [
        "uid",
        "creationTimestamp",
        "namespace",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        match old_meta.get(field) {
            Some(v) => meta.insert(field.into(), v.clone()),
            None => meta.remove(field),
        };
    }
    meta.remove("selfLink");
    if tracks_generation(res) {
        let g = old_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let g = if spec_changed && scope == UpdateScope::Main {
            g + 1
        } else {
            g
        };
        meta.insert("generation".into(), json!(g));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::resources::by_plural;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

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
    fn create_fills_metadata_and_resets_status() {
        let dep = by_plural("apps", "deployments").unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        let mut obj = json!({"metadata": {"generateName": "web-", "resourceVersion": "9"}, "status": {"replicas": 3}});
        let now = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        prepare_create(dep, &mut obj, Some("ns"), now, &mut rng);
        let name = obj["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with("web-") && name.len() == 9, "{name}");
        assert_eq!(obj["metadata"]["namespace"], "ns");
        assert_eq!(obj["metadata"]["generation"], 1);
        assert_eq!(obj["metadata"]["creationTimestamp"], "2026-01-02T03:04:05Z");
        assert_eq!(obj["metadata"]["uid"].as_str().unwrap().len(), 36);
        assert!(obj["metadata"].get("resourceVersion").is_none());
        assert_eq!(obj["status"], json!({}));
        assert_eq!(obj["kind"], "Deployment");
        assert_eq!(obj["apiVersion"], "apps/v1");
    }

    #[test]
    fn status_scope_changes_only_status_and_main_keeps_status() {
        let dep = by_plural("apps", "deployments").unwrap();
        let old = json!({"metadata": {"name": "a", "uid": "u", "generation": 2}, "spec": {"replicas": 1}, "status": {"replicas": 1}});
        let mut new =
            json!({"metadata": {"name": "a"}, "spec": {"replicas": 5}, "status": {"replicas": 4}});
        prepare_update(dep, &mut new, &old, UpdateScope::Status);
        assert_eq!(new["spec"]["replicas"], 1);
        assert_eq!(new["status"]["replicas"], 4);
        assert_eq!(new["metadata"]["generation"], 2);

        let mut main =
            json!({"metadata": {"name": "a"}, "spec": {"replicas": 5}, "status": {"replicas": 4}});
        prepare_update(dep, &mut main, &old, UpdateScope::Main);
        assert_eq!(main["spec"]["replicas"], 5);
        assert_eq!(main["status"]["replicas"], 1);
        assert_eq!(main["metadata"]["generation"], 3);
        assert_eq!(main["metadata"]["uid"], "u");
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
