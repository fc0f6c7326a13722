//! Strict field checking: walks an object against its kind's schema and lists the fields the
//! schema does not know, as upstream strict decoding reports them (`spec.ports[0].bogus`).
//!
//! Start at [`unknown_fields`].

use serde_json::{Map, Value};

use super::defs::{Flavor, definition_name};
use crate::resources::ResourceInfo;

/// How deep `$ref`/`allOf` chains are followed before giving up (the served schemas nest far
/// less; this only bounds a malformed document).
const MAX_REF_HOPS: usize = 16;

/// Every field of `obj` unknown to the schema of `res`, as a path without a leading dot
/// (`spec.foo`, `spec.ports[0].bogus`); render each as `unknown field "<path>"`.
///
/// Map-valued fields (labels, annotations, selectors) accept any key; int-or-string and
/// quantity fields accept strings and numbers; free-form objects (`fieldsV1`, raw extensions)
/// accept anything. Keys are visited in serde_json's map order (sorted), so the result is
/// deterministic but, unlike upstream, not in document order.
pub fn unknown_fields(res: &ResourceInfo, obj: &Value) -> Vec<String> {
    let defs = super::definitions_v3();
    let mut out = Vec::new();
    if let Some(root) = defs.get(&definition_name(res)) {
        walk(defs, root, obj, "", &mut out);
    }
    out
}

/// Follows `$ref` and single-element `allOf` wrappers to the schema that has the content.
fn resolve<'a>(defs: &'a Map<String, Value>, mut schema: &'a Value) -> &'a Value {
    let prefix = Flavor::V3.ref_prefix();
    for _ in 0..MAX_REF_HOPS {
        if let Some(name) = schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix(prefix))
        {
            match defs.get(name) {
                Some(next) => schema = next,
                None => return schema,
            }
        } else if let Some(first) = schema
            .get("allOf")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
        {
            schema = first;
        } else {
            return schema;
        }
    }
    schema
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(defs: &Map<String, Value>, schema: &Value, v: &Value, path: &str, out: &mut Vec<String>) {
    let schema = resolve(defs, schema);
    let flag = |k: &str| schema.get(k).and_then(Value::as_bool).unwrap_or(false);
    if flag("x-kubernetes-int-or-string") || flag("x-kubernetes-preserve-unknown-fields") {
        return;
    }
    match v {
        Value::Object(m) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, val) in m {
                    match props.get(k) {
                        Some(ps) => walk(defs, ps, val, &join(path, k), out),
                        None => out.push(join(path, k)),
                    }
                }
            } else if let Some(ap) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for (k, val) in m {
                    walk(defs, ap, val, &join(path, k), out);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, x) in items.iter().enumerate() {
                    walk(defs, item_schema, x, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}
