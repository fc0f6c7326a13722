//! Validation of the RBAC kinds (upstream `pkg/apis/rbac/validation`): rules, role references
//! and subjects, with upstream's field paths and texts. Start at [`validate_rbac`].

use serde_json::{Value, json};

use crate::status::Cause;

/// The RBAC API group.
pub const GROUP: &str = "rbac.authorization.k8s.io";

fn strs(v: &Value, key: &str) -> Vec<Value> {
    v.get(key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// Upstream `path.IsValidPathSegmentName`: how RBAC objects and role references are named
/// (`system:node` is fine).
pub fn path_segment_errs(name: &str) -> Vec<String> {
    if name == "." || name == ".." {
        return vec![format!("may not be '{name}'")];
    }
    ["/", "%"]
        .iter()
        .filter(|c| name.contains(**c))
        .map(|c| format!("may not contain '{c}'"))
        .collect()
}

/// Upstream `ValidatePolicyRule`.
fn validate_rule(rule: &Value, namespaced: bool, path: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    if strs(rule, "verbs").is_empty() {
        out.push(Cause::required(
            format!("{path}.verbs"),
            "verbs must contain at least one value",
        ));
    }
    let urls = strs(rule, "nonResourceURLs");
    if !urls.is_empty() {
        let field = format!("{path}.nonResourceURLs");
        if namespaced {
            out.push(Cause::invalid(
                field.clone(),
                &json!(urls),
                "namespaced rules cannot apply to non-resource URLs",
            ));
        }
        if !strs(rule, "apiGroups").is_empty() || !strs(rule, "resources").is_empty() {
            out.push(Cause::invalid(
                field,
                &json!(urls),
                "rules cannot apply to both regular resources and non-resource URLs",
            ));
        }
        return out;
    }
    if strs(rule, "apiGroups").is_empty() {
        out.push(Cause::required(
            format!("{path}.apiGroups"),
            "resource rules must supply at least one api group",
        ));
    }
    if strs(rule, "resources").is_empty() {
        out.push(Cause::required(
            format!("{path}.resources"),
            "resource rules must supply at least one resource",
        ));
    }
    out
}

fn validate_rules(obj: &Value, namespaced: bool) -> Vec<Cause> {
    strs(obj, "rules")
        .iter()
        .enumerate()
        .flat_map(|(i, r)| validate_rule(r, namespaced, &format!("rules[{i}]")))
        .collect()
}

/// Upstream `ValidateRoleBindingSubject`.
fn validate_subject(s: &Value, namespaced: bool, path: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    if text(s, "name").is_empty() {
        out.push(Cause::required(format!("{path}.name"), ""));
    }
    let group = s.get("apiGroup").cloned().unwrap_or(json!(""));
    match text(s, "kind") {
        "ServiceAccount" => {
            if group != json!("") {
                out.push(Cause::not_supported(
                    format!("{path}.apiGroup"),
                    &group,
                    &[""],
                ));
            }
            if !namespaced && text(s, "namespace").is_empty() {
                out.push(Cause::required(format!("{path}.namespace"), ""));
            }
        }
        "User" | "Group" => {
            if group != json!(GROUP) {
                out.push(Cause::not_supported(
                    format!("{path}.apiGroup"),
                    &group,
                    &[GROUP],
                ));
            }
        }
        other => out.push(Cause::not_supported(
            format!("{path}.kind"),
            &json!(other),
            &["ServiceAccount", "User", "Group"],
        )),
    }
    out
}

/// Upstream `ValidateRoleBinding` / `ValidateClusterRoleBinding`.
fn validate_binding(obj: &Value, namespaced: bool) -> Vec<Cause> {
    let mut out = Vec::new();
    let empty = json!({});
    let role_ref = obj.get("roleRef").unwrap_or(&empty);
    let group = role_ref.get("apiGroup").cloned().unwrap_or(json!(""));
    if group != json!(GROUP) {
        out.push(Cause::not_supported("roleRef.apiGroup", &group, &[GROUP]));
    }
    let kinds: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    let kind = text(role_ref, "kind");
    if !kinds.contains(&kind) {
        out.push(Cause::not_supported("roleRef.kind", &json!(kind), kinds));
    }
    let name = text(role_ref, "name");
    if name.is_empty() {
        out.push(Cause::required("roleRef.name", ""));
    } else {
        for msg in path_segment_errs(name) {
            out.push(Cause::invalid("roleRef.name", &json!(name), &msg));
        }
    }
    for (i, s) in strs(obj, "subjects").iter().enumerate() {
        out.extend(validate_subject(s, namespaced, &format!("subjects[{i}]")));
    }
    out
}

/// The kind-specific rules of a Role, ClusterRole, RoleBinding or ClusterRoleBinding.
pub fn validate_rbac(kind: &str, obj: &Value) -> Vec<Cause> {
    match kind {
        "Role" => validate_rules(obj, true),
        "ClusterRole" => {
            let mut out = validate_rules(obj, false);
            if let Some(agg) = obj.get("aggregationRule").filter(|a| !a.is_null())
                && strs(agg, "clusterRoleSelectors").is_empty()
            {
                out.push(Cause::required(
                    "aggregationRule.clusterRoleSelectors",
                    "at least one clusterRoleSelector required if aggregationRule is non-nil",
                ));
            }
            out
        }
        "RoleBinding" => validate_binding(obj, true),
        "ClusterRoleBinding" => validate_binding(obj, false),
        _ => Vec::new(),
    }
}

/// A binding's `roleRef` cannot change (upstream `ValidateRoleBindingUpdate`).
pub fn validate_binding_update(obj: &Value, old: &Value) -> Vec<Cause> {
    match (obj.get("roleRef"), old.get("roleRef")) {
        (new, prev) if new != prev => vec![Cause::invalid(
            "roleRef",
            new.unwrap_or(&Value::Null),
            "cannot change roleRef",
        )],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admit::cause_lines;

    #[test]
    fn rules_need_verbs_groups_and_resources() {
        let role = json!({"rules": [{"verbs": [], "resources": ["pods"]}]});
        assert_eq!(
            cause_lines(&validate_rbac("Role", &role)),
            vec![
                "rules[0].verbs: Required value: verbs must contain at least one value",
                "rules[0].apiGroups: Required value: resource rules must supply at least one api group",
            ]
        );
        let ns = json!({"rules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]});
        assert_eq!(
            cause_lines(&validate_rbac("Role", &ns)),
            vec![
                "rules[0].nonResourceURLs: Invalid value: [\"/healthz\"]: namespaced rules cannot apply to non-resource URLs"
            ]
        );
        assert!(validate_rbac("ClusterRole", &ns).is_empty());
    }

    #[test]
    fn bindings_check_role_ref_and_subjects() {
        let b = json!({
            "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "r"},
            "subjects": [{"kind": "User", "name": "alice", "apiGroup": GROUP},
                         {"kind": "ServiceAccount", "name": "sa"},
                         {"kind": "Robot", "name": "x"}],
        });
        assert_eq!(
            cause_lines(&validate_rbac("RoleBinding", &b)),
            vec![
                "subjects[2].kind: Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\""
            ]
        );
        let lines = cause_lines(&validate_rbac("ClusterRoleBinding", &b));
        assert!(
            lines[0].starts_with("roleRef.kind: Unsupported value: \"Role\""),
            "{lines:?}"
        );
        assert_eq!(lines[1], "subjects[1].namespace: Required value");
        let changed = json!({"roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "other"}});
        assert_eq!(validate_binding_update(&changed, &b).len(), 1);
        assert!(validate_binding_update(&b, &b).is_empty());
    }
}
