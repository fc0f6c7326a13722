//! The stand-in annotation: a pod with stand-in containers carries
//! `zonelab.io/stand-in: web=nginx:1.25,…` so `kubectl get pod -o yaml` shows what the lab
//! did. Written with the pod's status (`pods/status`: a node may not update its pods, only
//! their status, whose strategy keeps annotations), so it shares the status write's conflict
//! and retry handling. Start at [`pending`].

use k8s_openapi::api::core::v1::Pod;

use super::pod::PodState;
use super::standin::{Plan, STAND_IN_ANNOTATION};

/// The annotation's value for `st` (`None` without stand-ins).
pub(crate) fn desired(st: &PodState) -> Option<String> {
    let entries: Vec<String> = st
        .containers
        .iter()
        .filter_map(|c| match &c.plan {
            Plan::StandIn { image, .. } => Some(format!("{}={image}", c.spec.name)),
            _ => None,
        })
        .collect();
    (!entries.is_empty()).then(|| entries.join(","))
}

/// The annotation `pod`'s next status write carries: the desired value when it is missing or
/// stale (`None` without stand-ins, or once the pod terminates).
pub(crate) fn pending(st: &PodState, pod: &Pod) -> Option<String> {
    let want = desired(st)?;
    if st.term.is_some() || pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let have = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(STAND_IN_ANNOTATION));
    (have != Some(&want)).then_some(want)
}

/// Put the annotation `value` on `pod`.
pub(crate) fn set(pod: &mut Pod, value: String) {
    pod.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(STAND_IN_ANNOTATION.into(), value);
}
