//! Deployment and ReplicaSet defaulting and validation (upstream apps/v1 `SetDefaults_*`,
//! `ValidateDeploymentSpec`, `ValidateReplicaSetSpec`, `ValidatePodTemplateSpecForReplicaSet`).
//!
//! Start at [`default_deployment`] and [`validate_deployment`].

use serde_json::{Value, json};

use super::meta::{
    selector_is_empty, selector_matches, validate_annotations, validate_label_selector,
    validate_labels,
};
use super::pod::{default_pod_spec, validate_pod_spec};
use super::util::{
    child, ensure_obj, go_int_or_string, go_label_selector, go_string_map, invalid_each,
    invalid_raw, nonnegative, s, set_if_absent, set_if_zero,
};
use crate::names;
use crate::status::Cause;

/// Default `spec.replicas` (upstream apps/v1 `SetDefaults_Deployment`/`_ReplicaSet`).
pub const REPLICAS_DEFAULT: i64 = 1;
/// Default `maxSurge` and `maxUnavailable` (upstream apps/v1 `SetDefaults_Deployment`).
pub const ROLLING_DEFAULT: &str = "25%";
/// Default `spec.revisionHistoryLimit` (upstream apps/v1 `SetDefaults_Deployment`).
pub const REVISION_HISTORY_DEFAULT: i64 = 10;
/// Default `spec.progressDeadlineSeconds` (upstream apps/v1 `SetDefaults_Deployment`).
pub const PROGRESS_DEADLINE_DEFAULT_S: i64 = 600;

fn default_template(spec: &mut serde_json::Map<String, Value>) {
    let pod_spec = ensure_obj(spec, "template").and_then(|t| ensure_obj(t, "spec"));
    if let Some(ps) = pod_spec {
        default_pod_spec(ps);
    }
}

/// Upstream apps/v1 `SetDefaults_Deployment` + pod template defaults.
pub fn default_deployment(obj: &mut Value) {
    let Some(spec) = obj.as_object_mut().and_then(|o| ensure_obj(o, "spec")) else {
        return;
    };
    set_if_absent(spec, "replicas", json!(REPLICAS_DEFAULT));
    if let Some(strategy) = ensure_obj(spec, "strategy") {
        set_if_zero(strategy, "type", json!("RollingUpdate"));
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(ru) = ensure_obj(strategy, "rollingUpdate")
        {
            set_if_absent(ru, "maxUnavailable", json!(ROLLING_DEFAULT));
            set_if_absent(ru, "maxSurge", json!(ROLLING_DEFAULT));
        }
    }
    set_if_absent(
        spec,
        "revisionHistoryLimit",
        json!(REVISION_HISTORY_DEFAULT),
    );
    set_if_absent(
        spec,
        "progressDeadlineSeconds",
        json!(PROGRESS_DEADLINE_DEFAULT_S),
    );
    default_template(spec);
}

/// Upstream apps/v1 `SetDefaults_ReplicaSet` + pod template defaults.
pub fn default_replicaset(obj: &mut Value) {
    let Some(spec) = obj.as_object_mut().and_then(|o| ensure_obj(o, "spec")) else {
        return;
    };
    set_if_absent(spec, "replicas", json!(REPLICAS_DEFAULT));
    default_template(spec);
}

/// Selector + template checks shared by Deployments and ReplicaSets.
fn validate_selector_and_template(spec: &Value, out: &mut Vec<Cause>) {
    nonnegative(spec, "replicas", "spec", out);
    nonnegative(spec, "minReadySeconds", "spec", out);
    let selector = spec.get("selector").filter(|v| v.is_object());
    match selector {
        None => out.push(Cause::required("spec.selector", "")),
        Some(sel) => {
            out.extend(validate_label_selector(sel, "spec.selector"));
            if selector_is_empty(sel) {
                out.push(invalid_raw(
                    "spec.selector",
                    &go_label_selector(Some(sel)),
                    "empty selector is invalid for deployment",
                ));
            }
        }
    }
    let Some(template) = spec.get("template").filter(|v| v.is_object()) else {
        out.push(Cause::required("spec.template", ""));
        return;
    };
    let empty = json!({});
    let tmeta = template.get("metadata").unwrap_or(&empty);
    if let Some(sel) = selector.filter(|s| !selector_is_empty(s))
        && !selector_matches(sel, tmeta.get("labels"))
    {
        out.push(invalid_raw(
            "spec.template.metadata.labels",
            &go_string_map(tmeta.get("labels")),
            "`selector` does not match template `labels`",
        ));
    }
    validate_template(template, "ReplicaSet", out);
}

/// `ValidatePodTemplateSpec` plus the apps rules on restart policy and deadlines; `owner`
/// names the kind in upstream's message (Deployments share ReplicaSet's).
pub(crate) fn validate_template(template: &Value, owner: &str, out: &mut Vec<Cause>) {
    let empty = json!({});
    let tmeta = template.get("metadata").unwrap_or(&empty);
    out.extend(validate_labels(
        tmeta.get("labels"),
        "spec.template.metadata.labels",
    ));
    out.extend(validate_annotations(
        tmeta.get("annotations"),
        "spec.template.metadata.annotations",
    ));
    let pspec = template.get("spec").unwrap_or(&empty);
    out.extend(validate_pod_spec(pspec, "spec.template.spec"));
    let rp = s(pspec, "restartPolicy");
    if !rp.is_empty() && rp != "Always" {
        out.push(Cause::not_supported(
            "spec.template.spec.restartPolicy",
            &json!(rp),
            &["Always"],
        ));
    }
    if pspec
        .get("activeDeadlineSeconds")
        .is_some_and(|v| !v.is_null())
    {
        out.push(Cause::forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            &format!("activeDeadlineSeconds in {owner} is not Supported"),
        ));
    }
}

/// Upstream `ValidateReplicaSetSpec`.
pub fn validate_replicaset(obj: &Value) -> Vec<Cause> {
    let empty = json!({});
    let mut out = Vec::new();
    validate_selector_and_template(obj.get("spec").unwrap_or(&empty), &mut out);
    out
}

/// Upstream `ValidateDeploymentSpec`.
pub fn validate_deployment(obj: &Value) -> Vec<Cause> {
    let empty = json!({});
    let spec = obj.get("spec").unwrap_or(&empty);
    let mut out = Vec::new();
    validate_selector_and_template(spec, &mut out);
    validate_strategy(spec.get("strategy").unwrap_or(&empty), &mut out);
    nonnegative(spec, "revisionHistoryLimit", "spec", &mut out);
    nonnegative(spec, "progressDeadlineSeconds", "spec", &mut out);
    if let Some(pd) = spec.get("progressDeadlineSeconds").and_then(Value::as_i64) {
        let min_ready = spec
            .get("minReadySeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if pd <= min_ready {
            out.push(Cause::invalid(
                "spec.progressDeadlineSeconds",
                &json!(pd),
                "must be greater than minReadySeconds",
            ));
        }
    }
    out
}

fn validate_strategy(strategy: &Value, out: &mut Vec<Cause>) {
    let path = "spec.strategy.rollingUpdate";
    let ru = strategy.get("rollingUpdate").filter(|v| !v.is_null());
    match s(strategy, "type") {
        "Recreate" if ru.is_some() => out.push(Cause::forbidden(
            path,
            "may not be specified when strategy `type` is 'Recreate'",
        )),
        "Recreate" => {}
        "RollingUpdate" => match ru {
            None => out.push(Cause::required(
                path,
                "this should be defaulted and never be nil",
            )),
            Some(ru) => validate_rolling_update(ru, path, out),
        },
        other => out.push(Cause::not_supported(
            "spec.strategy.type",
            &json!(other),
            &["Recreate", "RollingUpdate"],
        )),
    }
}

/// The integer value an int-or-percent stands for when compared against zero.
fn int_or_percent_is_zero(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Number(n)) => n.as_i64() == Some(0),
        Some(Value::String(s)) => s.trim_end_matches('%').parse::<i64>().is_ok_and(|n| n == 0),
        _ => true,
    }
}

pub(crate) fn validate_int_or_percent(v: Option<&Value>, path: &str, out: &mut Vec<Cause>) {
    match v {
        Some(Value::String(s)) => {
            out.extend(invalid_each(path, &json!(s), names::percent_errs(s)));
        }
        Some(Value::Number(n)) if n.as_i64().is_some_and(|n| n < 0) => {
            out.push(Cause::invalid(
                path,
                &json!(n),
                "must be greater than or equal to 0",
            ));
        }
        _ => {}
    }
}

fn validate_rolling_update(ru: &Value, path: &str, out: &mut Vec<Cause>) {
    let unavailable = ru.get("maxUnavailable");
    let surge = ru.get("maxSurge");
    let up = child(path, "maxUnavailable");
    validate_int_or_percent(unavailable, &up, out);
    validate_int_or_percent(surge, &child(path, "maxSurge"), out);
    if let Some(Value::String(s)) = unavailable
        && s.trim_end_matches('%')
            .parse::<i64>()
            .is_ok_and(|n| n > 100)
    {
        out.push(Cause::invalid(
            up.clone(),
            &json!(s),
            "must not be greater than 100%",
        ));
    }
    if int_or_percent_is_zero(unavailable) && int_or_percent_is_zero(surge) {
        out.push(invalid_raw(
            up,
            &go_int_or_string(unavailable),
            "may not be 0 when `maxSurge` is 0",
        ));
    }
}

/// Upstream apps/v1 update rule: `spec.selector` is immutable.
pub fn validate_selector_update(new: &Value, old: &Value) -> Vec<Cause> {
    let n = new.get("spec").and_then(|s| s.get("selector"));
    let o = old.get("spec").and_then(|s| s.get("selector"));
    if n == o {
        return Vec::new();
    }
    vec![invalid_raw(
        "spec.selector",
        &go_label_selector(n),
        "field is immutable",
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::admit::cause_lines as lines;

    fn minimal() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
               "spec": {"selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}})
    }

    #[test]
    fn defaults_minimal_deployment() {
        let mut d = minimal();
        default_deployment(&mut d);
        let spec = &d["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(
            spec["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
        );
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(spec["progressDeadlineSeconds"], 600);
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "Always");
        assert_eq!(
            spec["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert!(spec["template"]["spec"].get("enableServiceLinks").is_none());
        assert!(validate_deployment(&d).is_empty());
    }

    #[test]
    fn defaults_replicaset() {
        let mut rs = minimal();
        rs["kind"] = json!("ReplicaSet");
        default_replicaset(&mut rs);
        assert_eq!(rs["spec"]["replicas"], 1);
        assert!(rs["spec"].get("strategy").is_none());
        assert!(validate_replicaset(&rs).is_empty());
    }

    #[test]
    fn selector_rules() {
        let mut d = minimal();
        d["spec"].as_object_mut().map(|s| s.remove("selector"));
        default_deployment(&mut d);
        assert_eq!(
            lines(&validate_deployment(&d)),
            vec!["spec.selector: Required value"]
        );
        let mut d = minimal();
        d["spec"]["selector"]["matchLabels"]["app"] = json!("other");
        default_deployment(&mut d);
        assert_eq!(
            lines(&validate_deployment(&d)),
            vec![
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`"
            ]
        );
        let mut d = minimal();
        d["spec"]["selector"] = json!({});
        default_deployment(&mut d);
        assert_eq!(
            lines(&validate_deployment(&d)),
            vec![
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"
            ]
        );
    }

    #[test]
    fn strategy_and_replicas() {
        let mut d = minimal();
        d["spec"]["replicas"] = json!(-1);
        d["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}});
        default_deployment(&mut d);
        assert_eq!(
            lines(&validate_deployment(&d)),
            vec![
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"0%\"}: may not be 0 when `maxSurge` is 0",
            ]
        );
        let mut d = minimal();
        d["spec"]["strategy"] = json!({"type": "BlueGreen"});
        default_deployment(&mut d);
        assert_eq!(
            lines(&validate_deployment(&d)),
            vec![
                "spec.strategy.type: Unsupported value: \"BlueGreen\": supported values: \"Recreate\", \"RollingUpdate\""
            ]
        );
    }

    #[test]
    fn template_restart_policy_and_selector_immutable() {
        let mut d = minimal();
        d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        default_deployment(&mut d);
        assert_eq!(
            lines(&validate_deployment(&d)),
            vec![
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""
            ]
        );
        let old = minimal();
        let mut new = minimal();
        new["spec"]["selector"]["matchLabels"]["tier"] = json!("x");
        assert_eq!(
            lines(&validate_selector_update(&new, &old)),
            vec![
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\", \"tier\":\"x\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
            ]
        );
    }
}
