//! Small helpers shared by the admission modules: field paths, JSON access, defaulting setters
//! and upstream-style (Go `%#v`) value rendering for causes.
//!
//! Start at [`child`] / [`idx`] (paths) and [`set_if_zero`] (defaulting).

use serde_json::{Map, Value};

use crate::status::Cause;

/// `base.name` (or `name` when `base` is empty).
pub(crate) fn child(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{base}.{name}")
    }
}

/// `base[i]`.
pub(crate) fn idx(base: &str, i: usize) -> String {
    format!("{base}[{i}]")
}

/// The string at `v[key]`, or `""`.
pub(crate) fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The array at `v[key]`, or an empty slice.
pub(crate) fn arr<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The object at `v[key]` when present and an object.
pub(crate) fn obj<'a>(v: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    v.get(key).and_then(Value::as_object)
}

/// Whether `v[key]` is present and not null.
pub(crate) fn has(v: &Value, key: &str) -> bool {
    v.get(key).is_some_and(|x| !x.is_null())
}

/// Go's zero value test: absent, null, `""`, `0`, `false`.
pub(crate) fn is_zero(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(Value::Bool(b)) => !b,
        Some(_) => false,
    }
}

/// Upstream defaulting of a non-pointer field: set when it holds Go's zero value.
pub(crate) fn set_if_zero(m: &mut Map<String, Value>, key: &str, val: Value) {
    if is_zero(m.get(key)) {
        m.insert(key.to_string(), val);
    }
}

/// Upstream defaulting of a pointer field: set when absent or null.
pub(crate) fn set_if_absent(m: &mut Map<String, Value>, key: &str, val: Value) {
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.to_string(), val);
    }
}

/// The object at `m[key]`, created as `{}` when absent or null; `None` when it is not an object.
pub(crate) fn ensure_obj<'a>(
    m: &'a mut Map<String, Value>,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    let slot = m.entry(key.to_string()).or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
}

/// Every object element of the array at `m[key]`.
pub(crate) fn each_obj_mut<'a>(
    m: &'a mut Map<String, Value>,
    key: &str,
) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    m.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flat_map(|a| a.iter_mut().filter_map(Value::as_object_mut))
}

/// `Invalid value: <raw>: detail` with a value already rendered upstream-style.
pub(crate) fn invalid_raw(field: impl Into<String>, raw: &str, detail: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid",
        field: field.into(),
        message: format!("Invalid value: {raw}: {detail}"),
    }
}

/// `Too many: <n>: must have at most <max> items`.
pub(crate) fn too_many(field: impl Into<String>, n: usize, max: usize) -> Cause {
    Cause {
        reason: "FieldValueTooMany",
        field: field.into(),
        message: format!("Too many: {n}: must have at most {max} items"),
    }
}

/// One `Invalid` cause per upstream message.
pub(crate) fn invalid_each(field: &str, value: &Value, msgs: Vec<String>) -> Vec<Cause> {
    msgs.iter()
        .map(|m| Cause::invalid(field, value, m))
        .collect()
}

/// A Go `%#v` quoted string.
pub(crate) fn go_str(s: &str) -> String {
    format!("{s:?}")
}

/// Go `%#v` of a `[]string`.
pub(crate) fn go_strings(items: &[String]) -> String {
    let parts: Vec<String> = items.iter().map(|s| go_str(s)).collect();
    format!("[]string{{{}}}", parts.join(", "))
}

/// Go `%#v` of a `map[string]string` (keys sorted, as Go prints them).
pub(crate) fn go_string_map(v: Option<&Value>) -> String {
    match v.and_then(Value::as_object) {
        None => "map[string]string(nil)".to_string(),
        Some(m) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}:{}", go_str(k), go_str(v.as_str().unwrap_or(""))))
                .collect();
            format!("map[string]string{{{}}}", parts.join(", "))
        }
    }
}

/// Go `%#v` of an `intstr.IntOrString`.
pub(crate) fn go_int_or_string(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => format!(
            "intstr.IntOrString{{Type:1, IntVal:0, StrVal:{}}}",
            go_str(s)
        ),
        Some(Value::Number(n)) => format!("intstr.IntOrString{{Type:0, IntVal:{n}, StrVal:\"\"}}"),
        _ => "intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}".to_string(),
    }
}

/// Go `%#v` of a (dereferenced) `v1.LabelSelector`.
pub(crate) fn go_label_selector(v: Option<&Value>) -> String {
    let Some(sel) = v.filter(|v| v.is_object()) else {
        return "(*v1.LabelSelector)(nil)".to_string();
    };
    let labels = go_string_map(sel.get("matchLabels"));
    let exprs = arr(sel, "matchExpressions");
    let exprs = if exprs.is_empty() {
        "[]v1.LabelSelectorRequirement(nil)".to_string()
    } else {
        let items: Vec<String> = exprs
            .iter()
            .map(|e| {
                let vals: Vec<String> = arr(e, "values")
                    .iter()
                    .map(|x| go_str(x.as_str().unwrap_or("")))
                    .collect();
                format!(
                    "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:[]string{{{}}}}}",
                    go_str(s(e, "key")),
                    go_str(s(e, "operator")),
                    vals.join(", ")
                )
            })
            .collect();
        format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
    };
    format!("v1.LabelSelector{{MatchLabels:{labels}, MatchExpressions:{exprs}}}")
}

/// The integer at `v[key]`, if it is one.
pub(crate) fn int(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

/// `must be greater than or equal to 0` when `v[key]` is negative (upstream `ValidateNonnegativeField`).
pub(crate) fn nonnegative(v: &Value, key: &str, path: &str, out: &mut Vec<Cause>) {
    if let Some(n) = int(v, key).filter(|n| *n < 0) {
        out.push(Cause::invalid(
            child(path, key),
            &Value::from(n),
            "must be greater than or equal to 0",
        ));
    }
}

/// `Unsupported value` unless `v[key]` is one of `allowed`; `Required` when empty and `required`.
pub(crate) fn enum_field(
    v: &Value,
    key: &str,
    path: &str,
    allowed: &[&str],
    required: bool,
    out: &mut Vec<Cause>,
) {
    let val = s(v, key);
    if val.is_empty() {
        if required {
            out.push(Cause::required(child(path, key), ""));
        }
    } else if !allowed.contains(&val) {
        out.push(Cause::not_supported(
            child(path, key),
            &Value::from(val),
            allowed,
        ));
    }
}

/// `field is immutable` when `new[key] != old[key]`.
pub(crate) fn immutable(new: &Value, old: &Value, key: &str, path: &str, out: &mut Vec<Cause>) {
    let (n, o) = (
        new.get(key).unwrap_or(&Value::Null),
        old.get(key).unwrap_or(&Value::Null),
    );
    if n != o {
        out.push(Cause::invalid(child(path, key), n, "field is immutable"));
    }
}
