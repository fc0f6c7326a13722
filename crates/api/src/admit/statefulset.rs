//! StatefulSet and ControllerRevision defaulting and validation (upstream apps/v1
//! `SetDefaults_StatefulSet`, `ValidateStatefulSetSpec`, `ValidateStatefulSetUpdate`,
//! `ValidateControllerRevision`), with upstream's field paths and texts.
//!
//! Start at [`default_statefulset`] and [`validate_statefulset`].

use serde_json::{Map, Value, json};

use super::apps::{REPLICAS_DEFAULT, REVISION_HISTORY_DEFAULT};
use super::meta::{
    selector_is_empty, selector_matches, validate_annotations, validate_label_selector,
    validate_labels,
};
use super::pod::default_pod_spec;
use super::util::{
    ensure_obj, go_label_selector, go_str, go_string_map, has, invalid_raw, nonnegative, s,
    set_if_absent, set_if_zero,
};
use crate::status::Cause;

/// `spec.podManagementPolicy` values (upstream `PodManagementPolicyType`).
pub const ORDERED_READY: &str = "OrderedReady";
pub const PARALLEL: &str = "Parallel";
/// `spec.updateStrategy.type` values (upstream `StatefulSetUpdateStrategyType`).
pub const ROLLING_UPDATE: &str = "RollingUpdate";
pub const ON_DELETE: &str = "OnDelete";
/// `persistentVolumeClaimRetentionPolicy` values; `Retain` is the default of both fields.
pub const RETAIN: &str = "Retain";
pub const DELETE: &str = "Delete";

/// Upstream apps/v1 `SetDefaults_StatefulSet` + pod template defaults.
pub fn default_statefulset(obj: &mut Value) {
    let Some(spec) = obj.as_object_mut().and_then(|o| ensure_obj(o, "spec")) else {
        return;
    };
    set_if_zero(spec, "podManagementPolicy", json!(ORDERED_READY));
    if let Some(strategy) = ensure_obj(spec, "updateStrategy") {
        if super::util::is_zero(strategy.get("type")) {
            strategy.insert("type".into(), json!(ROLLING_UPDATE));
            set_if_absent(strategy, "rollingUpdate", json!({}));
        }
        if strategy.get("type").and_then(Value::as_str) == Some(ROLLING_UPDATE)
            && let Some(ru) = strategy
                .get_mut("rollingUpdate")
                .and_then(Value::as_object_mut)
        {
            set_if_absent(ru, "partition", json!(0));
        }
    }
    if let Some(policy) = ensure_obj(spec, "persistentVolumeClaimRetentionPolicy") {
        set_if_zero(policy, "whenDeleted", json!(RETAIN));
        set_if_zero(policy, "whenScaled", json!(RETAIN));
    }
    set_if_absent(spec, "replicas", json!(REPLICAS_DEFAULT));
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

/// Go `%#v` of a `*apps.RollingUpdateStatefulSetStrategy` as upstream prints it in a cause.
fn go_rolling_update(ru: &Value) -> String {
    let partition = ru.get("partition").and_then(Value::as_i64).unwrap_or(0);
    format!(
        "&apps.RollingUpdateStatefulSetStrategy{{Partition:{partition}, MaxUnavailable:(*intstr.IntOrString)(nil)}}"
    )
}

/// Go `%#v` of an `apps.StatefulSetUpdateStrategy`.
fn go_update_strategy(strategy: &Value) -> String {
    let ru = match strategy.get("rollingUpdate").filter(|v| !v.is_null()) {
        Some(ru) => go_rolling_update(ru),
        None => "(*apps.RollingUpdateStatefulSetStrategy)(nil)".to_string(),
    };
    format!(
        "apps.StatefulSetUpdateStrategy{{Type:{}, RollingUpdate:{ru}}}",
        go_str(s(strategy, "type"))
    )
}

fn validate_update_strategy(spec: &Value, out: &mut Vec<Cause>) {
    let empty = json!({});
    let strategy = spec.get("updateStrategy").unwrap_or(&empty);
    let ru = strategy.get("rollingUpdate").filter(|v| !v.is_null());
    match s(strategy, "type") {
        "" => out.push(Cause::required("spec.updateStrategy", "")),
        ON_DELETE => {
            if let Some(ru) = ru {
                out.push(invalid_raw(
                    "spec.updateStrategy.rollingUpdate",
                    &go_rolling_update(ru),
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        ROLLING_UPDATE => {
            if let Some(ru) = ru {
                nonnegative(ru, "partition", "spec.updateStrategy.rollingUpdate", out);
            }
        }
        _ => out.push(invalid_raw(
            "spec.updateStrategy",
            &go_update_strategy(strategy),
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
}

fn validate_retention_policy(spec: &Value, out: &mut Vec<Cause>) {
    let Some(policy) = spec
        .get("persistentVolumeClaimRetentionPolicy")
        .filter(|v| !v.is_null())
    else {
        return;
    };
    for field in ["whenDeleted", "whenScaled"] {
        let v = s(policy, field);
        if v != RETAIN && v != DELETE {
            out.push(Cause::not_supported(
                format!("spec.persistentVolumeClaimRetentionPolicy.{field}"),
                &json!(v),
                &[RETAIN, DELETE],
            ));
        }
    }
}

fn validate_selector_and_template(spec: &Value, out: &mut Vec<Cause>) {
    let selector = spec.get("selector").filter(|v| v.is_object());
    match selector {
        None => out.push(Cause::required("spec.selector", "")),
        Some(sel) => {
            out.extend(validate_label_selector(sel, "spec.selector"));
            if selector_is_empty(sel) {
                out.push(invalid_raw(
                    "spec.selector",
                    &go_label_selector(Some(sel)),
                    "empty selector is invalid for statefulset",
                ));
            }
        }
    }
    // Upstream `ValidatePodTemplateSpecForStatefulSet`: labels and annotations only; the pod
    // spec itself is checked when the controller creates each pod.
    let empty = json!({});
    let template = spec.get("template").unwrap_or(&empty);
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
    out.extend(validate_labels(tmeta.get("labels"), "spec.template.labels"));
    out.extend(validate_annotations(
        tmeta.get("annotations"),
        "spec.template.annotations",
    ));
    let pspec = template.get("spec").unwrap_or(&empty);
    let rp = s(pspec, "restartPolicy");
    if rp != "Always" {
        out.push(Cause::not_supported(
            "spec.template.spec.restartPolicy",
            &json!(rp),
            &["Always"],
        ));
    }
    if has(pspec, "activeDeadlineSeconds") {
        out.push(Cause::forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            "activeDeadlineSeconds in StatefulSet is not Supported",
        ));
    }
}

/// Upstream `ValidateStatefulSetSpec`.
pub fn validate_statefulset(obj: &Value) -> Vec<Cause> {
    let empty = json!({});
    let spec = obj.get("spec").unwrap_or(&empty);
    let mut out = Vec::new();
    match s(spec, "podManagementPolicy") {
        "" => out.push(Cause::required("spec.podManagementPolicy", "")),
        ORDERED_READY | PARALLEL => {}
        other => out.push(Cause::invalid(
            "spec.podManagementPolicy",
            &json!(other),
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    validate_update_strategy(spec, &mut out);
    validate_retention_policy(spec, &mut out);
    nonnegative(spec, "replicas", "spec", &mut out);
    nonnegative(spec, "minReadySeconds", "spec", &mut out);
    if let Some(start) = spec
        .get("ordinals")
        .and_then(|o| o.get("start"))
        .and_then(Value::as_i64)
        .filter(|n| *n < 0)
    {
        out.push(Cause::invalid(
            "spec.ordinals.start",
            &json!(start),
            "must be greater than or equal to 0",
        ));
    }
    validate_selector_and_template(spec, &mut out);
    out
}

/// The spec fields an update may change (upstream `ValidateStatefulSetUpdate`).
const MUTABLE_SPEC: [&str; 6] = [
    "replicas",
    "template",
    "updateStrategy",
    "minReadySeconds",
    "ordinals",
    "persistentVolumeClaimRetentionPolicy",
];

fn without_mutable(spec: Option<&Value>) -> Map<String, Value> {
    let mut m = spec.and_then(Value::as_object).cloned().unwrap_or_default();
    for k in MUTABLE_SPEC {
        m.remove(k);
    }
    m.retain(|_, v| !v.is_null());
    m
}

/// Upstream `ValidateStatefulSetUpdate`: everything but the mutable fields is frozen.
pub fn validate_statefulset_update(new: &Value, old: &Value) -> Vec<Cause> {
    if without_mutable(new.get("spec")) == without_mutable(old.get("spec")) {
        return Vec::new();
    }
    vec![Cause::forbidden(
        "spec",
        "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
    )]
}

/// Upstream `ValidateControllerRevision`.
pub fn validate_controller_revision(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    if !has(obj, "data") {
        out.push(Cause::required("data", "data is mandatory"));
    }
    nonnegative(obj, "revision", "", &mut out);
    out
}

/// Upstream `ValidateControllerRevisionUpdate`: `data` is immutable.
pub fn validate_controller_revision_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    super::util::immutable(new, old, "data", "", &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admit::cause_lines as lines;

    fn minimal() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
               "spec": {"serviceName": "web", "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}})
    }

    #[test]
    fn defaults_as_upstream() {
        let mut sts = minimal();
        default_statefulset(&mut sts);
        let spec = &sts["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(spec["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            spec["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
        assert_eq!(
            spec["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "Always");
        assert!(validate_statefulset(&sts).is_empty());
        // OnDelete gets no rollingUpdate.
        let mut sts = minimal();
        sts["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
        default_statefulset(&mut sts);
        assert_eq!(sts["spec"]["updateStrategy"], json!({"type": "OnDelete"}));
    }

    #[test]
    fn selector_must_match_template() {
        let mut sts = minimal();
        sts["spec"]["selector"] = json!({"matchLabels": {"app": "db"}});
        default_statefulset(&mut sts);
        assert_eq!(
            lines(&validate_statefulset(&sts)),
            vec![
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`"
            ]
        );
    }

    #[test]
    fn bad_fields_with_upstream_texts() {
        let mut sts = minimal();
        sts["spec"]["replicas"] = json!(-1);
        sts["spec"]["podManagementPolicy"] = json!("Random");
        sts["spec"]["updateStrategy"] =
            json!({"type": "OnDelete", "rollingUpdate": {"partition": 2}});
        sts["spec"]["persistentVolumeClaimRetentionPolicy"] = json!({"whenDeleted": "Keep"});
        sts["spec"]["selector"] = json!({});
        default_statefulset(&mut sts);
        assert_eq!(
            lines(&validate_statefulset(&sts)),
            vec![
                "spec.podManagementPolicy: Invalid value: \"Random\": must be 'OrderedReady' or 'Parallel'",
                "spec.updateStrategy.rollingUpdate: Invalid value: &apps.RollingUpdateStatefulSetStrategy{Partition:2, MaxUnavailable:(*intstr.IntOrString)(nil)}: only allowed for updateStrategy 'RollingUpdate'",
                "spec.persistentVolumeClaimRetentionPolicy.whenDeleted: Unsupported value: \"Keep\": supported values: \"Retain\", \"Delete\"",
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for statefulset",
            ]
        );
        let mut sts = minimal();
        sts["spec"]["updateStrategy"] =
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": -1}});
        default_statefulset(&mut sts);
        assert_eq!(
            lines(&validate_statefulset(&sts)),
            vec![
                "spec.updateStrategy.rollingUpdate.partition: Invalid value: -1: must be greater than or equal to 0"
            ]
        );
    }

    #[test]
    fn update_may_change_only_upstream_fields() {
        let mut old = minimal();
        default_statefulset(&mut old);
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(5);
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.28");
        assert!(validate_statefulset_update(&new, &old).is_empty());
        new["spec"]["serviceName"] = json!("other");
        assert_eq!(
            lines(&validate_statefulset_update(&new, &old)),
            vec![
                "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
            ]
        );
    }
}
