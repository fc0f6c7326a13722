//! OpenAPI documents (v2 and v3) for the served resources and strict unknown-field checking
//! against the same schemas.
//!
//! Start at [`openapi_v2`], [`openapi_v3_index`] / [`openapi_v3`] and [`unknown_fields`]. The
//! schemas come from k8s-openapi's `JsonSchema` impls ([`defs`]); the paths and operations
//! from [`paths`]. Everything is built once, on first use.

pub mod defs;
pub mod paths;
mod walk;

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde_json::{Map, Value, json};

pub use defs::definition_name;
use defs::{BINDING, DELETE_OPTIONS, EVICTION, Flavor, PATCH, SCALE, STATUS, closure};
pub use walk::unknown_fields;

use crate::resources::{RESOURCES, ResourceInfo};

/// The Kubernetes version the documents describe (the k8s-openapi feature in use).
pub const KUBERNETES_VERSION: &str = "v1.33.0";

static DEFS_V3: LazyLock<Map<String, Value>> = LazyLock::new(|| defs::definitions(Flavor::V3));
static V2: LazyLock<Value> = LazyLock::new(build_v2);
static V3: LazyLock<BTreeMap<String, (Value, String)>> = LazyLock::new(build_v3);
static V2_PROTOBUF: LazyLock<Vec<u8>> =
    LazyLock::new(|| crate::proto::openapi_v2::encode_document(&V2));

/// The v3 (`#/components/schemas/`) definitions, keyed by upstream name.
pub(crate) fn definitions_v3() -> &'static Map<String, Value> {
    &DEFS_V3
}

/// The definitions every document carries besides the kinds' own.
fn shared_roots() -> Vec<String> {
    [
        STATUS,
        DELETE_OPTIONS,
        PATCH,
        "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn roots_for(res: &ResourceInfo) -> Vec<String> {
    let name = definition_name(res);
    let mut roots = vec![format!("{name}List"), name];
    if res.subresources.contains(&"scale") {
        roots.push(SCALE.to_string());
    }
    if res.subresources.contains(&"binding") {
        roots.push(BINDING.to_string());
    }
    if res.subresources.contains(&"eviction") {
        roots.push(EVICTION.to_string());
    }
    roots
}

fn build_v2() -> Value {
    let defs = defs::definitions(Flavor::V2);
    let mut roots = shared_roots();
    let mut paths = Map::new();
    for res in RESOURCES {
        roots.extend(roots_for(res));
        for (p, item) in paths::paths_for(Flavor::V2, res) {
            paths.insert(p, item);
        }
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
        "paths": paths,
        "definitions": closure(&defs, &roots, Flavor::V2.ref_prefix()),
        "securityDefinitions": {"BearerToken": {"description": "Bearer Token authentication", "type": "apiKey", "name": "authorization", "in": "header"}},
        "security": [{"BearerToken": []}],
    })
}

/// `api/v1` or `apis/apps/v1`: the key of a group version in the v3 index.
fn gv_key(res: &ResourceInfo) -> String {
    paths::gv_prefix(res).trim_start_matches('/').to_string()
}

/// 64-bit FNV-1a, rendered as upper-case hex: the content hash in the v3 index URLs (upstream
/// uses SHA-512; clients only use it as a cache key).
fn content_hash(doc: &Value) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in doc.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016X}")
}

fn build_v3() -> BTreeMap<String, (Value, String)> {
    let mut grouped: BTreeMap<String, Vec<&ResourceInfo>> = BTreeMap::new();
    for res in RESOURCES {
        grouped.entry(gv_key(res)).or_default().push(res);
    }
    let prefix = Flavor::V3.ref_prefix();
    grouped
        .into_iter()
        .map(|(key, members)| {
            let mut roots = shared_roots();
            let mut paths = Map::new();
            for res in &members {
                roots.extend(roots_for(res));
                for (p, item) in paths::paths_for(Flavor::V3, res) {
                    paths.insert(p, item);
                }
            }
            let doc = json!({
                "openapi": "3.0.0",
                "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
                "paths": paths,
                "components": {
                    "schemas": closure(&DEFS_V3, &roots, prefix),
                    "securitySchemes": {"BearerToken": {"type": "apiKey", "description": "Bearer Token authentication", "name": "authorization", "in": "header"}},
                },
                "security": [{"BearerToken": []}],
            });
            let hash = content_hash(&doc);
            (key, (doc, hash))
        })
        .collect()
}

/// `GET /openapi/v2` (JSON).
pub fn openapi_v2() -> &'static Value {
    &V2
}

/// `GET /openapi/v2` as gnostic's `openapi.v2.Document` protobuf (see
/// [`crate::proto::openapi_v2`]): the same document as [`openapi_v2`].
pub fn openapi_v2_protobuf() -> &'static [u8] {
    &V2_PROTOBUF
}

/// `GET /openapi/v3`: each group version with its content-addressed URL.
pub fn openapi_v3_index() -> Value {
    let paths: Map<String, Value> = V3
        .iter()
        .map(|(k, (_, hash))| {
            (
                k.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{k}?hash={hash}")}),
            )
        })
        .collect();
    json!({"paths": paths})
}

/// `GET /openapi/v3/<path>` for `path` like `api/v1` or `apis/apps/v1`.
pub fn openapi_v3(path: &str) -> Option<&'static Value> {
    V3.get(path.trim_matches('/')).map(|(doc, _)| doc)
}

#[cfg(test)]
mod tests;
