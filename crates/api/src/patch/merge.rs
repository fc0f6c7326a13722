//! RFC 7386 JSON merge patch; start at [`merge_patch`].

use serde_json::{Map, Value};

/// Apply an RFC 7386 merge patch: objects merge recursively, `null` removes a key, anything else
/// (arrays included) replaces the target value.
pub fn merge_patch(target: &Value, patch: &Value) -> Value {
    let Value::Object(patch) = patch else {
        return patch.clone();
    };
    let mut out = match target {
        Value::Object(t) => t.clone(),
        _ => Map::new(),
    };
    for (k, v) in patch {
        if v.is_null() {
            out.remove(k);
        } else {
            let merged = merge_patch(out.get(k).unwrap_or(&Value::Null), v);
            out.insert(k.clone(), merged);
        }
    }
    Value::Object(out)
}
