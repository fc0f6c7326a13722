//! Pod and pod-template defaulting and validation (upstream `SetDefaults_PodSpec`,
//! `SetDefaults_Pod`, the DefaultTolerationSeconds and Priority admission defaults,
//! `ValidatePodSpec`, `ValidatePodUpdate`).
//!
//! Start at [`default_pod`] / [`default_pod_spec`] and [`validate_pod_spec`].

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::container::{default_container, validate_containers};
use super::util::{
    arr, child, each_obj_mut, ensure_obj, enum_field, idx, invalid_each, s, set_if_absent,
    set_if_zero,
};
use crate::names;
use crate::status::Cause;

/// Default `terminationGracePeriodSeconds` (upstream `DefaultTerminationGracePeriodSeconds`).
pub const TERMINATION_GRACE_DEFAULT_S: i64 = 30;
/// Seconds a pod tolerates a not-ready or unreachable node before eviction (upstream
/// DefaultTolerationSeconds admission plugin, `--default-not-ready-toleration-seconds` and
/// `--default-unreachable-toleration-seconds`, both 300).
pub const DEFAULT_TOLERATION_S: i64 = 300;
/// Default scheduler name (upstream `DefaultSchedulerName`).
pub const DEFAULT_SCHEDULER: &str = "default-scheduler";
/// Default mode of configMap/secret/projected/downwardAPI volume files (upstream 0644).
pub const VOLUME_DEFAULT_MODE: i64 = 0o644;

const RESTART_POLICIES: &[&str] = &["Always", "Never", "OnFailure"];
const DNS_POLICIES: &[&str] = &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"];
const TOLERATION_OPS: &[&str] = &["Equal", "Exists"];
const TAINT_EFFECTS: &[&str] = &["NoExecute", "NoSchedule", "PreferNoSchedule"];
const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";

/// Upstream `SetDefaults_PodSpec` (also applied to Deployment and ReplicaSet templates).
pub fn default_pod_spec(spec: &mut Map<String, Value>) {
    set_if_zero(spec, "dnsPolicy", json!("ClusterFirst"));
    set_if_zero(spec, "restartPolicy", json!("Always"));
    set_if_absent(
        spec,
        "terminationGracePeriodSeconds",
        json!(TERMINATION_GRACE_DEFAULT_S),
    );
    set_if_absent(spec, "securityContext", json!({}));
    set_if_zero(spec, "schedulerName", json!(DEFAULT_SCHEDULER));
    let host_network = spec
        .get("hostNetwork")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    for list in ["initContainers", "containers"] {
        for c in each_obj_mut(spec, list) {
            default_container(c, host_network);
        }
    }
    for vol in each_obj_mut(spec, "volumes") {
        default_volume(vol);
    }
}

/// Upstream `SetDefaults_Volume` and the per-source `defaultMode` defaults.
fn default_volume(vol: &mut Map<String, Value>) {
    let sources = ["configMap", "secret", "projected", "downwardAPI"];
    let has_source = vol.keys().any(|k| k != "name");
    if !has_source {
        vol.insert("emptyDir".into(), json!({}));
    }
    for src in sources {
        if let Some(m) = vol.get_mut(src).and_then(Value::as_object_mut) {
            set_if_absent(m, "defaultMode", json!(VOLUME_DEFAULT_MODE));
        }
    }
}

/// Defaults of a Pod object: the pod spec, plus what upstream's `SetDefaults_Pod` and default
/// admission plugins add to Pods only (enableServiceLinks, priority, preemptionPolicy). The
/// not-ready/unreachable tolerations are admission with flags: see [`default_tolerations`].
pub fn default_pod(obj: &mut Value) {
    let Some(spec) = obj.as_object_mut().and_then(|o| ensure_obj(o, "spec")) else {
        return;
    };
    default_pod_spec(spec);
    set_if_absent(spec, "enableServiceLinks", json!(true));
    set_if_absent(spec, "priority", json!(0));
    set_if_absent(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
}

/// The DefaultTolerationSeconds admission plugin: a pod tolerates not-ready and unreachable
/// nodes for the given seconds (upstream default [`DEFAULT_TOLERATION_S`] each) unless it
/// already tolerates them for NoExecute.
pub fn default_tolerations(pod: &mut Value, not_ready_s: i64, unreachable_s: i64) {
    let Some(spec) = pod.as_object_mut().and_then(|o| ensure_obj(o, "spec")) else {
        return;
    };
    let existing = spec
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let tolerates = |key: &str| {
        existing.iter().any(|t| {
            let effect = s(t, "effect");
            (effect.is_empty() || effect == "NoExecute")
                && (s(t, "key") == key || (s(t, "key").is_empty() && s(t, "operator") == "Exists"))
        })
    };
    let mut add = Vec::new();
    for (key, seconds) in [
        (NOT_READY_TAINT, not_ready_s),
        (UNREACHABLE_TAINT, unreachable_s),
    ] {
        if !tolerates(key) {
            add.push(
                json!({"key": key, "operator": "Exists", "effect": "NoExecute",
                            "tolerationSeconds": seconds}),
            );
        }
    }
    if add.is_empty() {
        return;
    }
    let mut all = existing;
    all.extend(add);
    spec.insert("tolerations".into(), Value::Array(all));
}

/// Upstream `ValidatePodSpec` (the parts zonelab serves) at `path` (`spec` or
/// `spec.template.spec`).
pub fn validate_pod_spec(spec: &Value, path: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    let mut names_seen = BTreeSet::new();
    let mut port_names = BTreeSet::new();
    let containers = arr(spec, "containers");
    let cpath = child(path, "containers");
    if containers.is_empty() {
        out.push(Cause::required(cpath.clone(), ""));
    }
    out.extend(validate_containers(
        containers,
        &cpath,
        &mut names_seen,
        &mut port_names,
        false,
    ));
    let init = arr(spec, "initContainers");
    out.extend(validate_containers(
        init,
        &child(path, "initContainers"),
        &mut names_seen,
        &mut port_names,
        true,
    ));
    enum_field(
        spec,
        "restartPolicy",
        path,
        RESTART_POLICIES,
        true,
        &mut out,
    );
    enum_field(spec, "dnsPolicy", path, DNS_POLICIES, true, &mut out);
    if let Some(ads) = spec.get("activeDeadlineSeconds").and_then(Value::as_i64)
        && !(1..=i64::from(u32::MAX)).contains(&ads)
    {
        let msg = names::inclusive_range_error(1, i64::from(u32::MAX));
        out.push(Cause::invalid(
            child(path, "activeDeadlineSeconds"),
            &json!(ads),
            &msg,
        ));
    }
    for key in ["nodeName", "serviceAccountName"] {
        let v = s(spec, key);
        if !v.is_empty() {
            out.extend(invalid_each(
                &child(path, key),
                &json!(v),
                names::dns1123_subdomain_errs(v),
            ));
        }
    }
    for key in ["hostname", "subdomain"] {
        let v = s(spec, key);
        if !v.is_empty() {
            out.extend(invalid_each(
                &child(path, key),
                &json!(v),
                names::dns1123_label_errs(v),
            ));
        }
    }
    out.extend(super::meta::validate_labels(
        spec.get("nodeSelector"),
        &child(path, "nodeSelector"),
    ));
    out.extend(validate_tolerations(spec, path));
    out.extend(validate_volumes(spec, path));
    out
}

fn validate_tolerations(spec: &Value, path: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    for (i, t) in arr(spec, "tolerations").iter().enumerate() {
        let tp = idx(&child(path, "tolerations"), i);
        let key = s(t, "key");
        if !key.is_empty() {
            out.extend(invalid_each(
                &child(&tp, "key"),
                &json!(key),
                names::qualified_name_errs(key),
            ));
        }
        let op = s(t, "operator");
        if key.is_empty() && op != "Exists" {
            out.push(Cause::invalid(
                child(&tp, "operator"),
                &json!(op),
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if op == "Exists" && !s(t, "value").is_empty() {
            out.push(Cause::invalid(
                child(&tp, "operator"),
                &json!(s(t, "value")),
                "value must be empty when `operator` is 'Exists'",
            ));
        }
        enum_field(t, "operator", &tp, TOLERATION_OPS, false, &mut out);
        enum_field(t, "effect", &tp, TAINT_EFFECTS, false, &mut out);
        if t.get("tolerationSeconds").is_some_and(|v| !v.is_null()) && s(t, "effect") != "NoExecute"
        {
            out.push(Cause::invalid(
                child(&tp, "effect"),
                &json!(s(t, "effect")),
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
    }
    out
}

fn validate_volumes(spec: &Value, path: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, v) in arr(spec, "volumes").iter().enumerate() {
        let vp = idx(&child(path, "volumes"), i);
        let name = s(v, "name");
        if name.is_empty() {
            out.push(Cause::required(child(&vp, "name"), ""));
        } else {
            out.extend(invalid_each(
                &child(&vp, "name"),
                &json!(name),
                names::dns1123_label_errs(name),
            ));
            if !seen.insert(name) {
                out.push(Cause::duplicate(child(&vp, "name"), &json!(name)));
            }
        }
    }
    out
}

/// Upstream's list of what a pod update may change (`ValidatePodUpdate`, v1.33).
pub const POD_UPDATE_FORBIDDEN_MSG: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// Upstream `ValidatePodUpdate`: only images, activeDeadlineSeconds (set or lowered) and
/// toleration additions may change in a pod's spec.
pub fn validate_pod_update(new: &Value, old: &Value) -> Vec<Cause> {
    let empty = json!({});
    let ns = new.get("spec").unwrap_or(&empty);
    let os = old.get("spec").unwrap_or(&empty);
    let mut out = Vec::new();
    if let (Some(n), Some(o)) = (
        ns.get("activeDeadlineSeconds").and_then(Value::as_i64),
        os.get("activeDeadlineSeconds").and_then(Value::as_i64),
    ) && n > o
    {
        out.push(Cause::invalid(
            "spec.activeDeadlineSeconds",
            &json!(n),
            "must be less than or equal to previous value",
        ));
    }
    let old_tols = arr(os, "tolerations");
    let kept_all = old_tols.iter().all(|t| arr(ns, "tolerations").contains(t));
    let munged = munge_spec(ns, os);
    let mut changed: Vec<String> = Vec::new();
    for (k, v) in munged.as_object().into_iter().flatten() {
        if os.get(k) != Some(v) {
            changed.push(format!("spec.{k}"));
        }
    }
    for k in os.as_object().into_iter().flatten().map(|(k, _)| k) {
        if munged.get(k).is_none() {
            changed.push(format!("spec.{k}"));
        }
    }
    if !kept_all {
        changed.push("spec.tolerations".to_string());
    }
    changed.sort();
    changed.dedup();
    if !changed.is_empty() {
        let msg = format!(
            "{POD_UPDATE_FORBIDDEN_MSG}\n  changed: {}",
            changed.join(", ")
        );
        out.push(Cause::forbidden("spec", &msg));
    }
    out
}

/// The new spec with every field a pod update may change copied back from the old one.
fn munge_spec(ns: &Value, os: &Value) -> Value {
    let mut m = ns.clone();
    let Some(mm) = m.as_object_mut() else {
        return m;
    };
    for list in ["containers", "initContainers"] {
        let old_list = arr(os, list);
        for (i, c) in each_obj_mut(mm, list).enumerate() {
            match old_list.get(i).and_then(|o| o.get("image")) {
                Some(img) => c.insert("image".into(), img.clone()),
                None => c.remove("image"),
            };
        }
    }
    for key in ["activeDeadlineSeconds", "tolerations"] {
        match os.get(key) {
            Some(v) => mm.insert(key.into(), v.clone()),
            None => mm.remove(key),
        };
    }
    let old_grace = os
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64);
    if old_grace.is_some_and(|g| g < 0)
        && mm.get("terminationGracePeriodSeconds") == Some(&json!(1))
    {
        mm.insert("terminationGracePeriodSeconds".into(), json!(old_grace));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::admit::cause_lines as lines;

    fn minimal() -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
               "spec": {"containers": [{"name": "web", "image": "nginx"}]}})
    }

    #[test]
    fn defaults_minimal_pod() {
        let mut pod = minimal();
        default_pod(&mut pod);
        let spec = &pod["spec"];
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["securityContext"], json!({}));
        assert_eq!(spec["enableServiceLinks"], true);
        assert_eq!(spec["priority"], 0);
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(
            spec["containers"][0]["terminationMessagePath"],
            "/dev/termination-log"
        );
        assert_eq!(spec["containers"][0]["terminationMessagePolicy"], "File");
        assert!(spec.get("tolerations").is_none());
        assert!(validate_pod_spec(spec, "spec").is_empty());
    }

    #[test]
    fn default_tolerations_use_the_flags_and_respect_existing_ones() {
        let mut pod = minimal();
        default_tolerations(&mut pod, 300, 40);
        assert_eq!(
            pod["spec"]["tolerations"],
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 40},
            ])
        );
        default_tolerations(&mut pod, 1, 1);
        assert_eq!(pod["spec"]["tolerations"].as_array().map(Vec::len), Some(2));
        let mut tolerant = minimal();
        tolerant["spec"]["tolerations"] = json!([{"operator": "Exists"}]);
        default_tolerations(&mut tolerant, 300, 300);
        assert_eq!(
            tolerant["spec"]["tolerations"].as_array().map(Vec::len),
            Some(1)
        );
    }

    #[test]
    fn spec_rules() {
        let spec = json!({"restartPolicy": "Sometimes", "dnsPolicy": "ClusterFirst", "activeDeadlineSeconds": 0});
        assert_eq!(
            lines(&validate_pod_spec(&spec, "spec")),
            vec![
                "spec.containers: Required value",
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"Never\", \"OnFailure\"",
                "spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 4294967295, inclusive",
            ]
        );
    }

    #[test]
    fn update_allows_image_only() {
        let mut old = minimal();
        default_pod(&mut old);
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("nginx:1.27");
        if let Some(t) = new["spec"]["tolerations"].as_array_mut() {
            t.push(json!({"key": "x", "operator": "Exists"}));
        }
        assert!(validate_pod_update(&new, &old).is_empty());
        new["spec"]["restartPolicy"] = json!("Never");
        let errs = lines(&validate_pod_update(&new, &old));
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`"));
        assert!(errs[0].ends_with("changed: spec.restartPolicy"));
    }
}
