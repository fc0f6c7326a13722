//! ObjectMeta, label, annotation and label-selector validation (upstream `ValidateObjectMeta*`,
//! `ValidateLabels`, `ValidateLabelSelector`) plus selector matching for template checks.
//!
//! Start at [`validate_meta`] (create) and [`validate_meta_update`] (update).

use serde_json::Value;

use super::util::{arr, child, idx, immutable, invalid_each, obj, s};
use crate::names;
use crate::resources::ResourceInfo;
use crate::status::Cause;

/// Upstream `TotalAnnotationSizeLimitB`: 256 KiB over all keys and values.
pub const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

/// The name rule for `kind`: Services use DNS-1035 labels, Namespaces DNS-1123 labels
/// (upstream `ValidateServiceName`, `ValidateNamespaceName`, and `ValidateStatefulSetName`: a
/// StatefulSet's name prefixes its pods' host names), everything else subdomains.
pub fn name_errs(kind: &str, name: &str) -> Vec<String> {
    match kind {
        "Service" => names::dns1035_label_errs(name),
        "Namespace" | "StatefulSet" => names::dns1123_label_errs(name),
        "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding" => {
            super::rbac::path_segment_errs(name)
        }
        _ => names::dns1123_subdomain_errs(name),
    }
}

/// Upstream `ValidateObjectMeta` for a new object of `res`.
pub fn validate_meta(res: &ResourceInfo, obj_v: &Value) -> Vec<Cause> {
    let empty = Value::Object(Default::default());
    let meta = obj_v
        .get("metadata")
        .filter(|m| m.is_object())
        .unwrap_or(&empty);
    let mut out = Vec::new();
    let name = s(meta, "name");
    let generate = s(meta, "generateName");
    if !generate.is_empty() {
        let msgs = name_errs(res.kind, &names::mask_trailing_dash(generate));
        out.extend(invalid_each(
            "metadata.generateName",
            &Value::from(generate),
            msgs,
        ));
    }
    if name.is_empty() {
        if generate.is_empty() {
            out.push(Cause::required(
                "metadata.name",
                "name or generateName is required",
            ));
        }
    } else {
        out.extend(invalid_each(
            "metadata.name",
            &Value::from(name),
            name_errs(res.kind, name),
        ));
    }
    let ns = s(meta, "namespace");
    if res.namespaced {
        if !ns.is_empty() {
            out.extend(invalid_each(
                "metadata.namespace",
                &Value::from(ns),
                names::dns1123_label_errs(ns),
            ));
        }
    } else if !ns.is_empty() {
        out.push(Cause::forbidden(
            "metadata.namespace",
            "not allowed on this type",
        ));
    }
    out.extend(validate_labels(meta.get("labels"), "metadata.labels"));
    out.extend(validate_annotations(
        meta.get("annotations"),
        "metadata.annotations",
    ));
    for (i, f) in arr(meta, "finalizers").iter().enumerate() {
        let f = f.as_str().unwrap_or("");
        out.extend(invalid_each(
            &idx("metadata.finalizers", i),
            &Value::from(f),
            names::qualified_name_errs(f),
        ));
    }
    out.extend(validate_owner_refs(meta));
    out
}

fn validate_owner_refs(meta: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    for (i, r) in arr(meta, "ownerReferences").iter().enumerate() {
        let p = idx("metadata.ownerReferences", i);
        let checks = [
            ("apiVersion", "version must not be empty"),
            ("kind", "kind must not be empty"),
            ("name", "name must not be empty"),
            ("uid", "uid must not be empty"),
        ];
        for (key, msg) in checks {
            if s(r, key).is_empty() {
                out.push(Cause::invalid(child(&p, key), &Value::from(s(r, key)), msg));
            }
        }
    }
    out
}

/// Upstream `ValidateObjectMetaUpdate`: the identity fields may not change.
pub fn validate_meta_update(res: &ResourceInfo, new: &Value, old: &Value) -> Vec<Cause> {
    let mut out = validate_meta(res, new);
    let empty = Value::Object(Default::default());
    let nm = new.get("metadata").unwrap_or(&empty);
    let om = old.get("metadata").unwrap_or(&empty);
    for key in ["name", "namespace"] {
        immutable(nm, om, key, "metadata", &mut out);
    }
    for key in ["uid", "creationTimestamp"] {
        if !s(nm, key).is_empty() {
            immutable(nm, om, key, "metadata", &mut out);
        }
    }
    out
}

/// Upstream `ValidateLabels`: keys are qualified names, values label values; both reported at
/// the map's own path.
pub fn validate_labels(labels: Option<&Value>, path: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    for (k, v) in labels.and_then(Value::as_object).into_iter().flatten() {
        out.extend(invalid_each(
            path,
            &Value::from(k.as_str()),
            names::qualified_name_errs(k),
        ));
        if let Some(v) = v.as_str() {
            out.extend(invalid_each(
                path,
                &Value::from(v),
                names::label_value_errs(v),
            ));
        }
    }
    out
}

/// Upstream `ValidateAnnotations`: lower-cased keys are qualified names; total size <= 256 KiB.
pub fn validate_annotations(ann: Option<&Value>, path: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    let mut total = 0usize;
    for (k, v) in ann.and_then(Value::as_object).into_iter().flatten() {
        out.extend(invalid_each(
            path,
            &Value::from(k.as_str()),
            names::qualified_name_errs(&k.to_lowercase()),
        ));
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > ANNOTATIONS_MAX_BYTES {
        out.push(Cause::too_long(path, ANNOTATIONS_MAX_BYTES));
    }
    out
}

/// Upstream `ValidateLabelSelector` (metav1 validation).
pub fn validate_label_selector(sel: &Value, path: &str) -> Vec<Cause> {
    let mut out = validate_labels(sel.get("matchLabels"), &child(path, "matchLabels"));
    for (i, e) in arr(sel, "matchExpressions").iter().enumerate() {
        let p = idx(&child(path, "matchExpressions"), i);
        let op = s(e, "operator");
        let has_values = !arr(e, "values").is_empty();
        match op {
            "In" | "NotIn" if !has_values => out.push(Cause::required(
                child(&p, "values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if has_values => out.push(Cause::forbidden(
                child(&p, "values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => out.push(Cause::invalid(
                child(&p, "operator"),
                &Value::from(other),
                "not a valid selector operator",
            )),
        }
        let key = s(e, "key");
        out.extend(invalid_each(
            &child(&p, "key"),
            &Value::from(key),
            names::qualified_name_errs(key),
        ));
    }
    out
}

/// Whether a selector has no requirements at all (matches everything).
pub fn selector_is_empty(sel: &Value) -> bool {
    obj(sel, "matchLabels").is_none_or(|m| m.is_empty()) && arr(sel, "matchExpressions").is_empty()
}

/// Whether `labels` satisfies a metav1 `LabelSelector`.
pub fn selector_matches(sel: &Value, labels: Option<&Value>) -> bool {
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    let labels_ok = obj(sel, "matchLabels")
        .into_iter()
        .flatten()
        .all(|(k, v)| get(k) == v.as_str());
    labels_ok
        && arr(sel, "matchExpressions").iter().all(|e| {
            let have = get(s(e, "key"));
            let in_values =
                have.is_some_and(|h| arr(e, "values").iter().any(|v| v.as_str() == Some(h)));
            match s(e, "operator") {
                "In" => in_values,
                "NotIn" => !in_values,
                "Exists" => have.is_some(),
                "DoesNotExist" => have.is_none(),
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resources::by_kind;

    fn svc() -> &'static ResourceInfo {
        by_kind("v1", "Service").expect("served")
    }

    #[test]
    fn name_required_unless_generate_name() {
        let errs = validate_meta(svc(), &json!({"metadata": {}}));
        assert_eq!(
            errs[0].to_line(),
            "metadata.name: Required value: name or generateName is required"
        );
        assert!(validate_meta(svc(), &json!({"metadata": {"generateName": "web-"}})).is_empty());
    }

    #[test]
    fn bad_labels_and_annotations() {
        let errs = validate_meta(
            svc(),
            &json!({"metadata": {"name": "a", "labels": {"bad key!": "ok", "k": "bad value"}, "annotations": {"big": "x".repeat(300_000)}}}),
        );
        let lines: Vec<String> = errs.iter().map(Cause::to_line).collect();
        assert!(
            lines[0].starts_with(
                "metadata.labels: Invalid value: \"bad key!\": name part must consist"
            )
        );
        assert!(
            lines[1]
                .starts_with("metadata.labels: Invalid value: \"bad value\": a valid label must")
        );
        assert_eq!(
            lines[2],
            "metadata.annotations: Too long: may not be more than 262144 bytes"
        );
    }

    #[test]
    fn selectors() {
        let sel = json!({"matchLabels": {"app": "a"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]});
        assert!(selector_matches(
            &sel,
            Some(&json!({"app": "a", "tier": "web"}))
        ));
        assert!(!selector_matches(&sel, Some(&json!({"app": "a"}))));
        let bad = json!({"matchExpressions": [{"key": "x", "operator": "In"}, {"key": "y", "operator": "Near"}]});
        let lines: Vec<String> = validate_label_selector(&bad, "spec.selector")
            .iter()
            .map(Cause::to_line)
            .collect();
        assert_eq!(
            lines,
            vec![
                "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
                "spec.selector.matchExpressions[1].operator: Invalid value: \"Near\": not a valid selector operator",
            ]
        );
    }
}
