//! policy/v1 PodDisruptionBudget validation (upstream `ValidatePodDisruptionBudget`,
//! `ValidatePodDisruptionBudgetSpec`, `ValidatePodDisruptionBudgetStatusUpdate`, v1.33 texts).
//!
//! Start at [`validate_pdb`].

use serde_json::{Value, json};

use super::apps::validate_int_or_percent;
use super::meta::validate_label_selector;
use super::util::{go_int_or_string, invalid_raw, nonnegative, s};
use crate::status::Cause;

/// Upstream `supportedUnhealthyPodEvictionPolicies`.
pub const UNHEALTHY_POD_EVICTION_POLICIES: &[&str] = &["AlwaysAllow", "IfHealthyBudget"];

/// Go `%#v` of the internal `policy.PodDisruptionBudgetSpec`, as v1.33 prints it in the
/// "cannot be both set" error. Go prints the pointers' addresses, which differ on every
/// request; we print one fixed address in their place.
fn go_pdb_spec(spec: &Value) -> String {
    let ptr = |key: &str, ty: &str| match spec.get(key) {
        Some(v) if !v.is_null() => format!("(*{ty})(0xc000000000)"),
        _ => format!("(*{ty})(nil)"),
    };
    format!(
        "policy.PodDisruptionBudgetSpec{{MinAvailable:{}, Selector:{}, MaxUnavailable:{}, UnhealthyPodEvictionPolicy:{}}}",
        ptr("minAvailable", "intstr.IntOrString"),
        ptr("selector", "v1.LabelSelector"),
        ptr("maxUnavailable", "intstr.IntOrString"),
        ptr(
            "unhealthyPodEvictionPolicy",
            "policy.UnhealthyPodEvictionPolicyType"
        ),
    )
}

/// Upstream `IsNotMoreThan100Percent`.
fn not_over_100_percent(v: Option<&Value>, path: &str, out: &mut Vec<Cause>) {
    if let Some(Value::String(p)) = v
        && p.strip_suffix('%')
            .and_then(|n| n.parse::<i64>().ok())
            .is_some_and(|n| n > 100)
    {
        out.push(invalid_raw(
            path,
            &go_int_or_string(v),
            "must not be greater than 100%",
        ));
    }
}

/// Upstream `ValidatePodDisruptionBudget`: at most one of `minAvailable` / `maxUnavailable`,
/// each a non-negative integer or a percentage up to 100%, a valid selector, a supported
/// `unhealthyPodEvictionPolicy`; status counters non-negative.
pub fn validate_pdb(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let empty = json!({});
    let spec = obj.get("spec").unwrap_or(&empty);
    let min = spec.get("minAvailable").filter(|v| !v.is_null());
    let max = spec.get("maxUnavailable").filter(|v| !v.is_null());
    if min.is_some() && max.is_some() {
        out.push(invalid_raw(
            "spec",
            &go_pdb_spec(spec),
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    for (v, path) in [(min, "spec.minAvailable"), (max, "spec.maxUnavailable")] {
        if v.is_some() {
            validate_int_or_percent(v, path, &mut out);
            not_over_100_percent(v, path, &mut out);
        }
    }
    if let Some(sel) = spec.get("selector").filter(|v| v.is_object()) {
        out.extend(validate_label_selector(sel, "spec.selector"));
    }
    let policy = s(spec, "unhealthyPodEvictionPolicy");
    if spec
        .get("unhealthyPodEvictionPolicy")
        .is_some_and(|v| !v.is_null())
        && !UNHEALTHY_POD_EVICTION_POLICIES.contains(&policy)
    {
        out.push(Cause::not_supported(
            "spec.unhealthyPodEvictionPolicy",
            &json!(policy),
            UNHEALTHY_POD_EVICTION_POLICIES,
        ));
    }
    if let Some(status) = obj.get("status") {
        for key in [
            "disruptionsAllowed",
            "currentHealthy",
            "desiredHealthy",
            "expectedPods",
        ] {
            nonnegative(status, key, "status", &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::admit::cause_lines as lines;

    #[test]
    fn both_bounds_are_rejected_with_upstreams_text() {
        let pdb = json!({"spec": {"minAvailable": 1, "maxUnavailable": "50%",
                                  "selector": {"matchLabels": {"app": "web"}}}});
        assert_eq!(
            lines(&validate_pdb(&pdb)),
            vec![
                "spec: Invalid value: policy.PodDisruptionBudgetSpec{MinAvailable:(*intstr.IntOrString)(0xc000000000), Selector:(*v1.LabelSelector)(0xc000000000), MaxUnavailable:(*intstr.IntOrString)(0xc000000000), UnhealthyPodEvictionPolicy:(*policy.UnhealthyPodEvictionPolicyType)(nil)}: minAvailable and maxUnavailable cannot be both set"
            ]
        );
    }

    #[test]
    fn bounds_policy_and_status() {
        let pdb = json!({"spec": {"minAvailable": "150%", "unhealthyPodEvictionPolicy": "Never"},
                         "status": {"disruptionsAllowed": -1}});
        assert_eq!(
            lines(&validate_pdb(&pdb)),
            vec![
                "spec.minAvailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"150%\"}: must not be greater than 100%",
                "spec.unhealthyPodEvictionPolicy: Unsupported value: \"Never\": supported values: \"AlwaysAllow\", \"IfHealthyBudget\"",
                "status.disruptionsAllowed: Invalid value: -1: must be greater than or equal to 0",
            ]
        );
        let neg = json!({"spec": {"maxUnavailable": -2}});
        assert_eq!(
            lines(&validate_pdb(&neg)),
            vec!["spec.maxUnavailable: Invalid value: -2: must be greater than or equal to 0"]
        );
        assert!(validate_pdb(&json!({"spec": {"maxUnavailable": "20%"}})).is_empty());
    }
}
