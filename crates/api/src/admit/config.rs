//! ConfigMap, Secret and ServiceAccount: the decode step every write goes through (base64
//! `[]byte` fields checked, Secret `stringData` folded into `data`, as upstream's JSON decoding
//! and v1 → internal conversion do), defaulting (`SetDefaults_Secret`) and validation
//! (`ValidateConfigMap`, `ValidateSecret`, their updates, `ValidateServiceAccount`).
//!
//! Start at [`convert`] (runs before defaulting; its errors are 400 BadRequest), then
//! [`validate_configmap`] and [`validate_secret`].

use serde_json::{Map, Value, json};

use super::base64go;
use super::util::{arr, immutable, invalid_each, s};
use crate::names;
use crate::resources::ResourceInfo;
use crate::status::{Cause, StatusError};

/// Upstream `core.MaxSecretSize`: 1 MiB over all values of a Secret or ConfigMap.
pub const MAX_SECRET_BYTES: usize = 1024 * 1024;

/// Upstream `SecretTypeOpaque`, the default `type`.
pub const SECRET_TYPE_OPAQUE: &str = "Opaque";

const CONFIG_KEY_FMT: &str = "[-._a-zA-Z0-9]+";
const CONFIG_KEY_MSG: &str =
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'";

/// Upstream `IsConfigMapKey`: the rule for ConfigMap and Secret keys.
pub fn config_key_errs(key: &str) -> Vec<String> {
    let mut out = Vec::new();
    if key.len() > names::SUBDOMAIN_MAX_LEN {
        out.push(names::max_len_error(names::SUBDOMAIN_MAX_LEN));
    }
    let ok = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        out.push(names::regex_error(
            CONFIG_KEY_MSG,
            CONFIG_KEY_FMT,
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    match key {
        "." => out.push("must not be '.'".into()),
        ".." => out.push("must not be '..'".into()),
        k if k.starts_with("..") => out.push("must not start with '..'".into()),
        _ => {}
    }
    out
}

/// `data[key]`: upstream's `Path.Key`.
fn key_path(base: &str, key: &str) -> String {
    format!("{base}[{key}]")
}

/// The JSON type name Go's decoder reports in `cannot unmarshal X into ...`.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Upstream's decode failure as the handler reports it (`transformDecodeError`).
fn decode_error(res: &ResourceInfo, obj: &Value, err: &str) -> StatusError {
    let kind = res.kind;
    if obj.get("kind").and_then(Value::as_str).is_some() {
        return StatusError::bad_request(format!(
            "{kind} in version \"{}\" cannot be handled as a {kind}: {err}",
            res.version
        ));
    }
    let text = obj.to_string();
    let summary = match text.char_indices().nth(30) {
        Some((cut, _)) => format!("{} ...", &text[..cut]),
        None => text,
    };
    StatusError::bad_request(format!(
        "the object provided is unrecognized (must be of type {kind}): {err} ({summary})"
    ))
}

/// Checks a `map[string][]byte` field and rewrites its values in canonical base64.
fn bytes_map(res: &ResourceInfo, obj: &mut Value, field: &str) -> Result<(), StatusError> {
    let go_field = format!("{}.{field}", res.kind);
    let Some(v) = obj.get(field) else {
        return Ok(());
    };
    let map = match v {
        Value::Null => return Ok(()),
        Value::Object(m) => m.clone(),
        other => {
            let e = format!(
                "json: cannot unmarshal {} into Go struct field {go_field} of type map[string][]uint8",
                json_type(other)
            );
            return Err(decode_error(res, obj, &e));
        }
    };
    let mut out = Map::new();
    for (k, val) in map {
        let canonical = match &val {
            Value::Null => Value::Null,
            Value::String(text) => match base64go::decode(text.as_bytes()) {
                Ok(bytes) => json!(base64go::encode(&bytes)),
                Err(e) => return Err(decode_error(res, obj, &e.to_string())),
            },
            other => {
                let e = format!(
                    "json: cannot unmarshal {} into Go struct field {go_field} of type []uint8",
                    json_type(other)
                );
                return Err(decode_error(res, obj, &e));
            }
        };
        out.insert(k, canonical);
    }
    obj[field] = Value::Object(out);
    Ok(())
}

/// Checks a `map[string]string` field.
fn string_map(res: &ResourceInfo, obj: &Value, field: &str) -> Result<(), StatusError> {
    let go_field = format!("{}.{field}", res.kind);
    let bad = match obj.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => m
            .values()
            .find(|v| !v.is_string() && !v.is_null())
            .map(|v| format!("of type string: {}", json_type(v))),
        Some(other) => Some(format!("of type map[string]string: {}", json_type(other))),
    };
    match bad {
        None => Ok(()),
        Some(detail) => {
            let (ty, got) = detail.rsplit_once(": ").unwrap_or((&detail, ""));
            let e = format!("json: cannot unmarshal {got} into Go struct field {go_field} {ty}");
            Err(decode_error(res, obj, &e))
        }
    }
}

/// The decode step of a write: what upstream's JSON decoder and the v1 → internal conversion
/// do before any admission. Secret `data` and ConfigMap `binaryData` must be base64 (400
/// `... cannot be handled as a Secret: illegal base64 data at input byte N` otherwise); Secret
/// `stringData` is folded into `data` (a `stringData` key wins) and dropped.
pub fn convert(res: &ResourceInfo, obj: &mut Value) -> Result<(), StatusError> {
    if !res.group.is_empty() || !obj.is_object() {
        return Ok(());
    }
    match res.kind {
        "ConfigMap" => {
            string_map(res, obj, "data")?;
            bytes_map(res, obj, "binaryData")
        }
        "Secret" => {
            bytes_map(res, obj, "data")?;
            string_map(res, obj, "stringData")?;
            fold_string_data(obj);
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Upstream `Convert_v1_Secret_To_core_Secret`: each `stringData` entry overwrites `data`.
fn fold_string_data(obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else { return };
    let Some(Value::Object(strings)) = o.remove("stringData") else {
        return;
    };
    if strings.is_empty() {
        return;
    }
    let data = o.entry("data").or_insert_with(|| json!({}));
    if !data.is_object() {
        *data = json!({});
    }
    if let Some(d) = data.as_object_mut() {
        for (k, v) in strings {
            let text = v.as_str().unwrap_or("");
            d.insert(k, json!(base64go::encode(text.as_bytes())));
        }
    }
}

/// Upstream `SetDefaults_Secret`: `type` defaults to `Opaque`.
pub fn default_secret(obj: &mut Value) {
    if let Some(o) = obj.as_object_mut()
        && o.get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
    {
        o.insert("type".into(), json!(SECRET_TYPE_OPAQUE));
    }
}

/// Decoded length of a canonical base64 value (0 for null).
fn byte_len(v: &Value) -> usize {
    v.as_str()
        .and_then(|t| base64go::decode(t.as_bytes()).ok())
        .map_or(0, |b| b.len())
}

/// Upstream `ValidateConfigMap` (the part after metadata).
pub fn validate_configmap(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let empty = Map::new();
    let data = obj.get("data").and_then(Value::as_object).unwrap_or(&empty);
    let binary = obj
        .get("binaryData")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut total = 0;
    for (key, v) in data {
        let p = key_path("data", key);
        out.extend(invalid_each(&p, &json!(key), config_key_errs(key)));
        if binary.contains_key(key) {
            out.push(Cause::invalid(
                p,
                &json!(key),
                "duplicate of key present in binaryData",
            ));
        }
        total += v.as_str().map_or(0, str::len);
    }
    for (key, v) in binary {
        let p = key_path("binaryData", key);
        out.extend(invalid_each(&p, &json!(key), config_key_errs(key)));
        if data.contains_key(key) {
            out.push(Cause::invalid(
                p,
                &json!(key),
                "duplicate of key present in data",
            ));
        }
        total += byte_len(v);
    }
    if total > MAX_SECRET_BYTES {
        out.push(Cause::too_long("", MAX_SECRET_BYTES));
    }
    out
}

/// Upstream `ValidateSecret` (the part after metadata), with the per-type required keys.
pub fn validate_secret(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let empty = Map::new();
    let data = obj.get("data").and_then(Value::as_object).unwrap_or(&empty);
    let mut total = 0;
    for (key, v) in data {
        out.extend(invalid_each(
            &key_path("data", key),
            &json!(key),
            config_key_errs(key),
        ));
        total += byte_len(v);
    }
    if total > MAX_SECRET_BYTES {
        out.push(Cause::too_long("data", MAX_SECRET_BYTES));
    }
    let require = |keys: &[&str], out: &mut Vec<Cause>| {
        for k in keys {
            out.push(Cause::required(key_path("data", k), ""));
        }
    };
    let has = |k: &str| data.contains_key(k);
    match s(obj, "type") {
        "kubernetes.io/service-account-token" => {
            let key = "kubernetes.io/service-account.name";
            let named = obj
                .get("metadata")
                .and_then(|m| m.get("annotations"))
                .and_then(|a| a.get(key))
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            if !named {
                out.push(Cause::required(format!("metadata.annotations[{key}]"), ""));
            }
        }
        "kubernetes.io/dockercfg" if !has(".dockercfg") => require(&[".dockercfg"], &mut out),
        "kubernetes.io/dockerconfigjson" if !has(".dockerconfigjson") => {
            require(&[".dockerconfigjson"], &mut out)
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            require(&["username", "password"], &mut out)
        }
        "kubernetes.io/ssh-auth" if data.get("ssh-privatekey").is_none_or(|v| byte_len(v) == 0) => {
            require(&["ssh-privatekey"], &mut out)
        }
        "kubernetes.io/tls" => {
            for k in ["tls.crt", "tls.key"] {
                if !has(k) {
                    require(&[k], &mut out);
                }
            }
        }
        _ => {}
    }
    out
}

fn is_immutable(obj: &Value) -> bool {
    obj.get("immutable").and_then(Value::as_bool) == Some(true)
}

/// Upstream `ValidateSecretUpdate` / `ValidateConfigMapUpdate`: `type` is immutable, and once
/// `immutable: true` is set neither it nor the data may change.
pub fn validate_update(kind: &str, new: &Value, old: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    if kind == "Secret" {
        immutable(new, old, "type", "", &mut out);
    }
    if is_immutable(old) {
        const WHY: &str = "field is immutable when `immutable` is set";
        if !is_immutable(new) {
            out.push(Cause::forbidden("immutable", WHY));
        }
        let fields: &[&str] = if kind == "Secret" {
            &["data"]
        } else {
            &["data", "binaryData"]
        };
        for f in fields {
            if new.get(*f) != old.get(*f) {
                out.push(Cause::forbidden(*f, WHY));
            }
        }
    }
    out
}

/// Upstream `ValidateServiceAccount`: secret references name objects in the namespace.
pub fn validate_serviceaccount(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    for (i, r) in arr(obj, "imagePullSecrets").iter().enumerate() {
        if s(r, "name").is_empty() {
            out.push(Cause::required(format!("imagePullSecrets[{i}].name"), ""));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::by_plural;

    use crate::admit::cause_lines as lines;

    #[test]
    fn secret_string_data_folds_into_data_and_wins() {
        let res = by_plural("", "secrets").unwrap();
        let mut s = json!({"kind": "Secret", "data": {"a": "b2xk", "b": "Yg=="},
                           "stringData": {"a": "new", "c": "see"}});
        convert(res, &mut s).unwrap();
        default_secret(&mut s);
        assert_eq!(
            s,
            json!({"kind": "Secret", "type": "Opaque",
                   "data": {"a": "bmV3", "b": "Yg==", "c": "c2Vl"}})
        );
    }

    #[test]
    fn invalid_base64_is_upstreams_bad_request() {
        let res = by_plural("", "secrets").unwrap();
        let mut s = json!({"kind": "Secret", "data": {"k": "not base64!"}});
        let e = convert(res, &mut s).unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(e.reason, "BadRequest");
        assert_eq!(
            e.message,
            "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data at input byte 3"
        );
        let mut n = json!({"data": {"k": 5}});
        let e = convert(res, &mut n).unwrap_err();
        assert!(e.message.starts_with("the object provided is unrecognized (must be of type Secret): json: cannot unmarshal number into Go struct field Secret.data of type []uint8"), "{}", e.message);
        let cm = by_plural("", "configmaps").unwrap();
        let mut c = json!({"kind": "ConfigMap", "data": {"k": 1}});
        assert_eq!(
            convert(cm, &mut c).unwrap_err().message,
            "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: json: cannot unmarshal number into Go struct field ConfigMap.data of type string"
        );
    }

    #[test]
    fn keys_sizes_and_duplicates() {
        let cm = json!({"data": {"ok.key": "v", "bad key": "v", "..x": "v"},
                        "binaryData": {"ok.key": "dg=="}});
        assert_eq!(
            lines(&validate_configmap(&cm)),
            vec![
                "data[..x]: Invalid value: \"..x\": must not start with '..'",
                "data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                "data[ok.key]: Invalid value: \"ok.key\": duplicate of key present in binaryData",
                "binaryData[ok.key]: Invalid value: \"ok.key\": duplicate of key present in data",
            ]
        );
        let big = "x".repeat(MAX_SECRET_BYTES + 1);
        let secret = json!({"type": "Opaque", "data": {"k": base64go::encode(big.as_bytes())}});
        assert_eq!(
            lines(&validate_secret(&secret)),
            vec!["data: Too long: may not be more than 1048576 bytes"]
        );
        let tls = json!({"type": "kubernetes.io/tls", "data": {"tls.crt": ""}});
        assert_eq!(
            lines(&validate_secret(&tls)),
            vec!["data[tls.key]: Required value"]
        );
    }

    #[test]
    fn strict_field_validation_knows_the_new_kinds() {
        let secret = by_plural("", "secrets").unwrap();
        let s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                       "type": "Opaque", "stringData": {"a": "b"}, "immutable": true, "bogus": 1});
        assert_eq!(crate::schema::unknown_fields(secret, &s), vec!["bogus"]);
        let pdb = crate::resources::by_plural("policy", "poddisruptionbudgets").unwrap();
        let p = json!({"spec": {"minAvailable": "50%", "maxUnavailble": 1,
                       "selector": {"matchLabels": {"a": "b"}}}});
        assert_eq!(
            crate::schema::unknown_fields(pdb, &p),
            vec!["spec.maxUnavailble"]
        );
        let sa = by_plural("", "serviceaccounts").unwrap();
        let a = json!({"automountServiceAccountToken": false, "imagePullSecrets": [{"name": "r"}]});
        assert!(crate::schema::unknown_fields(sa, &a).is_empty());
    }

    #[test]
    fn immutable_secrets_keep_their_data() {
        let old = json!({"type": "Opaque", "immutable": true, "data": {"a": "YQ=="}});
        let new = json!({"type": "kubernetes.io/tls", "immutable": false, "data": {"a": "Yg=="}});
        assert_eq!(
            lines(&validate_update("Secret", &new, &old)),
            vec![
                "type: Invalid value: \"kubernetes.io/tls\": field is immutable",
                "immutable: Forbidden: field is immutable when `immutable` is set",
                "data: Forbidden: field is immutable when `immutable` is set",
            ]
        );
        assert!(validate_update("ConfigMap", &old, &old).is_empty());
    }
}
