//! DaemonSet defaulting and validation (upstream apps/v1 `SetDefaults_DaemonSet`,
//! `ValidateDaemonSetSpec`, `ValidateDaemonSetUpdateStrategy`, `ValidateRollingUpdateDaemonSet`)
//! and the template generation the API server keeps for it.
//!
//! Start at [`default_daemonset`], [`validate_daemonset`] and [`set_template_generation`].

use serde_json::{Value, json};

use super::apps::validate_int_or_percent;
use super::meta::{selector_is_empty, selector_matches, validate_label_selector};
use super::pod::default_pod_spec;
use super::util::{
    child, ensure_obj, go_int_or_string, go_label_selector, go_string_map, invalid_raw,
    nonnegative, s, set_if_absent, set_if_zero,
};
use crate::status::Cause;

/// Default `updateStrategy.rollingUpdate.maxUnavailable` (upstream apps/v1
/// `SetDefaults_DaemonSet`: `intstr.FromInt32(1)`).
pub const MAX_UNAVAILABLE_DEFAULT: i64 = 1;
/// Default `updateStrategy.rollingUpdate.maxSurge` (upstream apps/v1 `SetDefaults_DaemonSet`).
pub const MAX_SURGE_DEFAULT: i64 = 0;
/// Default `spec.revisionHistoryLimit` (upstream apps/v1 `SetDefaults_DaemonSet`).
pub const REVISION_HISTORY_DEFAULT: i64 = 10;
/// The annotation apps/v1 carries the internal `spec.templateGeneration` in (upstream
/// `appsv1.DeprecatedTemplateGeneration`); the DaemonSet controller copies it into its pods'
/// `pod-template-generation` label.
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";

/// Upstream apps/v1 `SetDefaults_DaemonSet` + pod template defaults.
pub fn default_daemonset(obj: &mut Value) {
    let Some(spec) = obj.as_object_mut().and_then(|o| ensure_obj(o, "spec")) else {
        return;
    };
    if let Some(strategy) = ensure_obj(spec, "updateStrategy") {
        set_if_zero(strategy, "type", json!("RollingUpdate"));
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(ru) = ensure_obj(strategy, "rollingUpdate")
        {
            set_if_absent(ru, "maxUnavailable", json!(MAX_UNAVAILABLE_DEFAULT));
            set_if_absent(ru, "maxSurge", json!(MAX_SURGE_DEFAULT));
        }
    }
    set_if_absent(
        spec,
        "revisionHistoryLimit",
        json!(REVISION_HISTORY_DEFAULT),
    );
    let pod_spec = ensure_obj(spec, "template").and_then(|t| ensure_obj(t, "spec"));
    if let Some(ps) = pod_spec {
        default_pod_spec(ps);
    }
}

/// Upstream `ValidateDaemonSetSpec`.
pub fn validate_daemonset(obj: &Value) -> Vec<Cause> {
    let empty = json!({});
    let spec = obj.get("spec").unwrap_or(&empty);
    let mut out = Vec::new();
    let selector = spec.get("selector").filter(|v| v.is_object());
    if let Some(sel) = selector {
        out.extend(validate_label_selector(sel, "spec.selector"));
    }
    let template = spec.get("template").unwrap_or(&empty);
    let tmeta = template.get("metadata").unwrap_or(&empty);
    // A nil selector matches nothing (`LabelSelectorAsSelector(nil)` is `labels.Nothing()`).
    if selector.is_none_or(|sel| !selector_matches(sel, tmeta.get("labels"))) {
        out.push(invalid_raw(
            "spec.template.metadata.labels",
            &go_string_map(tmeta.get("labels")),
            "`selector` does not match template `labels`",
        ));
    }
    if let Some(sel) = selector.filter(|s| selector_is_empty(s)) {
        out.push(invalid_raw(
            "spec.selector",
            &go_label_selector(Some(sel)),
            "empty selector is invalid for daemonset",
        ));
    }
    super::apps::validate_template(template, "DaemonSet", &mut out);
    nonnegative(spec, "minReadySeconds", "spec", &mut out);
    validate_update_strategy(spec.get("updateStrategy").unwrap_or(&empty), &mut out);
    nonnegative(spec, "revisionHistoryLimit", "spec", &mut out);
    out
}

/// Upstream `ValidateDaemonSetUpdateStrategy`.
fn validate_update_strategy(strategy: &Value, out: &mut Vec<Cause>) {
    let path = "spec.updateStrategy";
    match s(strategy, "type") {
        "OnDelete" => {}
        "RollingUpdate" => match strategy.get("rollingUpdate").filter(|v| !v.is_null()) {
            None => out.push(Cause::required(child(path, "rollingUpdate"), "")),
            Some(ru) => validate_rolling_update(ru, &child(path, "rollingUpdate"), out),
        },
        other => out.push(Cause {
            reason: "FieldValueNotSupported",
            field: path.into(),
            // Upstream passes the whole strategy struct; Go prints it with `%#v`.
            message: format!(
                "Unsupported value: apps.DaemonSetUpdateStrategy{{Type:\"{other}\", RollingUpdate:(*apps.RollingUpdateDaemonSet)(nil)}}: supported values: \"RollingUpdate\", \"OnDelete\""
            ),
        }),
    }
}

/// The value an int-or-percent stands for in upstream's `getIntOrPercentValue` (a malformed
/// percentage counts as 0; validation reports it).
fn int_or_percent_value(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
            .unwrap_or(0),
        _ => 0,
    }
}

fn more_than_100_percent(v: Option<&Value>, path: &str, out: &mut Vec<Cause>) {
    if let Some(Value::String(s)) = v
        && s.strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
            .is_some_and(|n| n > 100)
    {
        out.push(Cause::invalid(
            path,
            &json!(s),
            "must not be greater than 100%",
        ));
    }
}

/// Upstream `ValidateRollingUpdateDaemonSet`: exactly one of `maxUnavailable` and `maxSurge`
/// is non-zero.
fn validate_rolling_update(ru: &Value, path: &str, out: &mut Vec<Cause>) {
    let unavailable = ru.get("maxUnavailable");
    let surge = ru.get("maxSurge");
    let up = child(path, "maxUnavailable");
    let sp = child(path, "maxSurge");
    validate_int_or_percent(unavailable, &up, out);
    validate_int_or_percent(surge, &sp, out);
    more_than_100_percent(unavailable, &up, out);
    more_than_100_percent(surge, &sp, out);
    let has_unavailable = int_or_percent_value(unavailable) != 0;
    let has_surge = int_or_percent_value(surge) != 0;
    if has_unavailable && has_surge {
        out.push(invalid_raw(
            sp,
            &go_int_or_string(surge),
            "may not be set when maxUnavailable is non-zero",
        ));
    } else if !has_unavailable && !has_surge {
        out.push(Cause::required(up, "cannot be 0 when maxSurge is 0"));
    }
}

/// Upstream `ValidateDaemonSetUpdate`: `spec.selector` is immutable.
pub fn validate_daemonset_update(new: &Value, old: &Value) -> Vec<Cause> {
    super::apps::validate_selector_update(new, old)
}

/// The template generation of a DaemonSet write (upstream's DaemonSet strategy:
/// `TemplateGeneration = 1` on create, `+1` when an update changes `spec.template`), kept in
/// the apps/v1 annotation [`TEMPLATE_GENERATION_ANNOTATION`]. Call after defaulting; `old` is
/// the stored object of an update. Other kinds are left alone.
pub fn set_template_generation(kind: &str, new: &mut Value, old: Option<&Value>) {
    if kind != "DaemonSet" {
        return;
    }
    let generation = match old {
        None => 1,
        Some(old) => {
            let stored = old["metadata"]["annotations"][TEMPLATE_GENERATION_ANNOTATION]
                .as_str()
                .and_then(|g| g.parse::<i64>().ok())
                .unwrap_or(1);
            if new["spec"].get("template") != old["spec"].get("template") {
                stored + 1
            } else {
                stored
            }
        }
    };
    let Some(meta) = new.as_object_mut().and_then(|o| ensure_obj(o, "metadata")) else {
        return;
    };
    if let Some(ann) = ensure_obj(meta, "annotations") {
        ann.insert(
            TEMPLATE_GENERATION_ANNOTATION.into(),
            json!(generation.to_string()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::admit::cause_lines as lines;

    fn minimal() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
               "spec": {"selector": {"matchLabels": {"app": "agent"}},
                        "template": {"metadata": {"labels": {"app": "agent"}},
                                     "spec": {"containers": [{"name": "a", "image": "fluentd:1.16"}]}}}})
    }

    #[test]
    fn defaults_rolling_update_one_unavailable_no_surge() {
        let mut d = minimal();
        default_daemonset(&mut d);
        assert_eq!(
            d["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
        assert!(validate_daemonset(&d).is_empty());
        let mut od = minimal();
        od["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
        default_daemonset(&mut od);
        assert_eq!(od["spec"]["updateStrategy"], json!({"type": "OnDelete"}));
    }

    #[test]
    fn selector_must_match_template_and_not_be_empty() {
        let mut d = minimal();
        d["spec"]["selector"]["matchLabels"]["app"] = json!("other");
        default_daemonset(&mut d);
        assert_eq!(
            lines(&validate_daemonset(&d)),
            vec![
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"agent\"}: `selector` does not match template `labels`"
            ]
        );
        let mut d = minimal();
        d["spec"]["selector"] = json!({});
        default_daemonset(&mut d);
        assert_eq!(
            lines(&validate_daemonset(&d)),
            vec![
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for daemonset"
            ]
        );
        let mut d = minimal();
        d["spec"].as_object_mut().map(|s| s.remove("selector"));
        default_daemonset(&mut d);
        assert_eq!(
            lines(&validate_daemonset(&d)),
            vec![
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"agent\"}: `selector` does not match template `labels`"
            ]
        );
    }

    #[test]
    fn rolling_update_needs_exactly_one_of_unavailable_and_surge() {
        let check = |d: &Value| {
            let mut d = d.clone();
            default_daemonset(&mut d);
            lines(&validate_daemonset(&d))
        };
        let mut d = minimal();
        d["spec"]["updateStrategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "0%"}});
        assert_eq!(
            check(&d),
            vec![
                "spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"
            ]
        );
        d["spec"]["updateStrategy"]["rollingUpdate"] =
            json!({"maxUnavailable": 1, "maxSurge": "150%"});
        assert_eq!(
            check(&d),
            vec![
                "spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: \"150%\": must not be greater than 100%",
                "spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"150%\"}: may not be set when maxUnavailable is non-zero",
            ]
        );
        d["spec"]["updateStrategy"] = json!({"type": "Recreate"});
        assert_eq!(
            check(&d),
            vec![
                "spec.updateStrategy: Unsupported value: apps.DaemonSetUpdateStrategy{Type:\"Recreate\", RollingUpdate:(*apps.RollingUpdateDaemonSet)(nil)}: supported values: \"RollingUpdate\", \"OnDelete\""
            ]
        );
    }

    #[test]
    fn restart_policy_and_deadline() {
        let mut d = minimal();
        d["spec"]["template"]["spec"]["restartPolicy"] = json!("OnFailure");
        d["spec"]["template"]["spec"]["activeDeadlineSeconds"] = json!(5);
        default_daemonset(&mut d);
        assert_eq!(
            lines(&validate_daemonset(&d)),
            vec![
                "spec.template.spec.restartPolicy: Unsupported value: \"OnFailure\": supported values: \"Always\"",
                "spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in DaemonSet is not Supported",
            ]
        );
    }

    #[test]
    fn template_generation_counts_template_changes() {
        let mut d = minimal();
        set_template_generation("DaemonSet", &mut d, None);
        assert_eq!(
            d["metadata"]["annotations"][TEMPLATE_GENERATION_ANNOTATION],
            "1"
        );
        let old = d.clone();
        let mut same = d.clone();
        same["spec"]["minReadySeconds"] = json!(3);
        set_template_generation("DaemonSet", &mut same, Some(&old));
        assert_eq!(
            same["metadata"]["annotations"][TEMPLATE_GENERATION_ANNOTATION],
            "1"
        );
        let mut changed = d.clone();
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("fluentd:1.17");
        set_template_generation("DaemonSet", &mut changed, Some(&old));
        assert_eq!(
            changed["metadata"]["annotations"][TEMPLATE_GENERATION_ANNOTATION],
            "2"
        );
    }
}
