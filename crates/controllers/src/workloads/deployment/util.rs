//! Deployment helpers after upstream pkg/controller/deployment/util/deployment_util.go: the
//! pod-template hash, surge/unavailable fenceposts, replica annotations, conditions.
//!
//! Start at [`compute_hash`] and [`resolve_fenceposts`].

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::Moment;
use crate::time::to_time;

/// Label carrying the pod-template hash on ReplicaSets and their pods.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// Revision of a ReplicaSet (and of the Deployment: its newest).
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Deployment replicas when the ReplicaSet was last scaled.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// Deployment replicas + maxSurge when the ReplicaSet was last scaled.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// Annotations never copied from a Deployment to its ReplicaSets (upstream `skipCopyAnnotation`).
const SKIP_COPY: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// Upstream defaults applied by the API server (pkg/apis/apps/v1/defaults.go).
pub const DEFAULT_MAX_SURGE: &str = "25%";
pub const DEFAULT_MAX_UNAVAILABLE: &str = "25%";
pub const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;

/// Upstream `rand.SafeEncodeString`: map each byte onto consonants and digits that cannot
/// spell words.
pub fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// The pod-template hash: FNV-32a over the template, then `collisionCount` (little-endian
/// u32) if set, rendered as upstream (decimal, then [`safe_encode`]). Upstream hashes Go's
/// `spew` printing of the struct; here the canonical JSON form is hashed, so values differ
/// from upstream's but are stable and deterministic.
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    feed(&serde_json::to_vec(template).unwrap_or_default());
    if let Some(c) = collision_count {
        feed(&(c as u32).to_le_bytes());
    }
    safe_encode(&h.to_string())
}

/// Templates equal apart from the `pod-template-hash` label (upstream `EqualIgnoreHash`).
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let strip = |t: &PodTemplateSpec| {
        let mut t = t.clone();
        if let Some(m) = t.metadata.as_mut()
            && let Some(l) = m.labels.as_mut()
        {
            l.remove(POD_TEMPLATE_HASH);
            if l.is_empty() {
                m.labels = None;
            }
        }
        t
    };
    strip(a) == strip(b)
}

/// Upstream `GetScaledValueFromIntOrPercent`.
pub(crate) fn scaled(v: &IntOrString, total: i32, round_up: bool) -> i32 {
    match v {
        IntOrString::Int(i) => *i,
        IntOrString::String(s) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let x = pct * i64::from(total);
            let r = if round_up {
                (x + 99).div_euclid(100)
            } else {
                x.div_euclid(100)
            };
            r as i32
        }
    }
}

pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn is_recreate(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate")
}

/// Upstream `ResolveFenceposts`: (maxSurge rounded up, maxUnavailable rounded down), never
/// both zero.
pub fn resolve_fenceposts(d: &Deployment) -> (i32, i32) {
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let surge = ru
        .and_then(|r| r.max_surge.clone())
        .unwrap_or(IntOrString::String(DEFAULT_MAX_SURGE.into()));
    let unav = ru
        .and_then(|r| r.max_unavailable.clone())
        .unwrap_or(IntOrString::String(DEFAULT_MAX_UNAVAILABLE.into()));
    let desired = replicas(d);
    let s = scaled(&surge, desired, true).max(0);
    let mut u = scaled(&unav, desired, false).max(0);
    if s == 0 && u == 0 {
        u = 1;
    }
    (s, u)
}

/// Upstream `MaxSurge` (0 for Recreate).
pub fn max_surge(d: &Deployment) -> i32 {
    if is_recreate(d) {
        0
    } else {
        resolve_fenceposts(d).0
    }
}

/// Upstream `MaxUnavailable` (0 for Recreate or no replicas; at most `replicas`).
pub fn max_unavailable(d: &Deployment) -> i32 {
    let r = replicas(d);
    if is_recreate(d) || r == 0 {
        return 0;
    }
    resolve_fenceposts(d).1.min(r)
}

pub fn annotation<'a>(rs: &'a ReplicaSet, name: &str) -> Option<&'a str> {
    rs.metadata
        .annotations
        .as_ref()?
        .get(name)
        .map(String::as_str)
}

pub fn revision(rs: &ReplicaSet) -> i64 {
    annotation(rs, REVISION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Set desired/max replica annotations; true if anything changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (k, v) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let v = v.to_string();
        if a.get(k) != Some(&v) {
            a.insert(k.to_string(), v);
            changed = true;
        }
    }
    changed
}

/// Upstream `SetNewReplicaSetAnnotations` (without revision-history): copy the Deployment's
/// annotations and raise the revision to `new_revision`. True if anything changed.
pub fn set_new_rs_annotations(d: &Deployment, rs: &mut ReplicaSet, new_revision: i64) -> bool {
    let old_revision = revision(rs);
    let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if SKIP_COPY.contains(&k.as_str()) || a.get(k) == Some(v) {
            continue;
        }
        a.insert(k.clone(), v.clone());
        changed = true;
    }
    if old_revision < new_revision {
        a.insert(REVISION.to_string(), new_revision.to_string());
        changed = true;
    }
    changed
}

/// A condition stamped at `now`.
pub fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Moment,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message),
        last_update_time: Some(to_time(now)),
        last_transition_time: Some(to_time(now)),
    }
}

pub fn get_condition<'a>(
    status: &'a DeploymentStatus,
    type_: &str,
) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

pub fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(cs) = status.conditions.as_mut() {
        cs.retain(|c| c.type_ != type_);
    }
}

/// Upstream `SetDeploymentCondition`: no-op if status and reason are unchanged; keeps the
/// transition time if only the reason changed.
pub fn set_condition(status: &mut DeploymentStatus, mut cond: DeploymentCondition) {
    if let Some(cur) = get_condition(status, &cond.type_) {
        if cur.status == cond.status && cur.reason == cond.reason {
            return;
        }
        if cur.status == cond.status {
            cond.last_transition_time = cur.last_transition_time.clone();
        }
    }
    remove_condition(status, &cond.type_);
    status.conditions.get_or_insert_with(Vec::new).push(cond);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy(replicas: i32, surge: serde_json::Value, unav: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({"metadata": {"name": "d"}, "spec": {"replicas": replicas,
            "selector": {"matchLabels": {"a": "b"}}, "template": {},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unav}}}}))
        .unwrap()
    }

    #[test]
    fn fenceposts_round_as_upstream() {
        assert_eq!(
            resolve_fenceposts(&deploy(6, json!("25%"), json!("25%"))),
            (2, 1)
        );
        assert_eq!(
            resolve_fenceposts(&deploy(10, json!("25%"), json!("25%"))),
            (3, 2)
        );
        assert_eq!(
            resolve_fenceposts(&deploy(3, json!(0), json!("10%"))),
            (0, 1)
        );
        assert_eq!(resolve_fenceposts(&deploy(4, json!(1), json!(0))), (1, 0));
        assert_eq!(max_unavailable(&deploy(2, json!(0), json!(5))), 2);
    }

    #[test]
    fn hash_is_stable_and_safe() {
        let t: PodTemplateSpec =
            serde_json::from_value(json!({"metadata": {"labels": {"app": "x"}}})).unwrap();
        let h = compute_hash(&t, None);
        assert_eq!(h, compute_hash(&t.clone(), None));
        assert_ne!(h, compute_hash(&t, Some(1)));
        assert!(h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
        assert_eq!(safe_encode("0123456789"), "456789bcdf");
    }
}
