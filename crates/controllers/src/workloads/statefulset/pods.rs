//! A StatefulSet's pods: stable names `<set>-<ordinal>`, their identity labels, hostname and
//! subdomain, and the predicates upstream's StatefulSet control loop decides by
//! (pkg/controller/statefulset/stateful_set_utils.go).
//!
//! Start at [`new_pod`] and [`ordinal_of`].

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::Moment;
use crate::pod_is_ready;
use crate::workloads::util::{available_at, owner_ref, phase};

/// Label with the pod's own name (upstream `apps.StatefulSetPodNameLabel`).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// Label with the pod's ordinal (upstream `apps.PodIndexLabel`, on by default since 1.28).
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// Label naming the ControllerRevision a pod was created from (upstream
/// `apps.ControllerRevisionHashLabelKey`).
pub const REVISION_LABEL: &str = "controller-revision-hash";

pub(super) const API_VERSION: &str = "apps/v1";
pub(super) const KIND: &str = "StatefulSet";

/// `<set>-<ordinal>` (upstream `getPodName`).
pub fn pod_name(set: &str, ordinal: i32) -> String {
    format!("{set}-{ordinal}")
}

/// The parent name and ordinal a pod name encodes (upstream `getParentNameAndOrdinal`:
/// `^(.*)-([0-9]+)$`).
pub fn parent_and_ordinal(name: &str) -> Option<(&str, i32)> {
    let (parent, ord) = name.rsplit_once('-')?;
    if ord.is_empty() || !ord.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((parent, ord.parse().ok()?))
}

/// The ordinal of a pod of `set`, if its name belongs to it (upstream `isMemberOf` +
/// `getOrdinal`).
pub fn ordinal_of(set: &StatefulSet, pod: &Pod) -> Option<i32> {
    let name = pod.metadata.name.as_deref()?;
    let (parent, ord) = parent_and_ordinal(name)?;
    (Some(parent) == set.metadata.name.as_deref()).then_some(ord)
}

/// The revision a pod was created from (`controller-revision-hash`), `""` if unlabelled.
pub fn revision_of(pod: &Pod) -> &str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_LABEL))
        .map(String::as_str)
        .unwrap_or("")
}

/// Upstream `identityMatches` for a pod already named `<set>-<ordinal>`: its identity labels.
pub fn identity_matches(pod: &Pod, ordinal: i32) -> bool {
    let labels = pod.metadata.labels.as_ref();
    let get = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    get(POD_NAME_LABEL) == pod.metadata.name.as_deref()
        && get(POD_INDEX_LABEL) == Some(ordinal.to_string().as_str())
}

/// The pod with its identity labels restored (upstream `updateIdentity`; the hostname and
/// subdomain are immutable once the pod exists).
pub fn with_identity(pod: &Pod, ordinal: i32) -> Pod {
    let mut p = pod.clone();
    let name = p.metadata.name.clone().unwrap_or_default();
    let labels = p.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(POD_NAME_LABEL.to_string(), name);
    labels.insert(POD_INDEX_LABEL.to_string(), ordinal.to_string());
    p
}

/// Upstream `isTerminating`.
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Upstream `isRunningAndReady`.
pub fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && pod_is_ready(pod)
}

/// Upstream `isRunningAndAvailable` (ready for `minReadySeconds`).
pub fn is_running_and_available(pod: &Pod, min_ready_seconds: i32, now: Moment) -> bool {
    is_running_and_ready(pod) && available_at(pod, min_ready_seconds).is_some_and(|t| t <= now)
}

/// Upstream `isHealthy`: running, ready and not being deleted.
pub fn is_healthy(pod: &Pod) -> bool {
    is_running_and_ready(pod) && !is_terminating(pod)
}

/// Upstream `isFailed` / `isSucceeded`: the pod ended and must be recreated.
pub fn has_ended(pod: &Pod) -> Option<&'static str> {
    match phase(pod) {
        "Failed" => Some("Failed"),
        "Succeeded" => Some("Succeeded"),
        _ => None,
    }
}

/// A new pod for `ordinal` from `template` (the set's template at `revision`): upstream
/// `newVersionedStatefulSetPod` — the template's labels and annotations, the controller
/// reference, the identity labels, `hostname` = pod name, `subdomain` = `spec.serviceName`, and
/// the revision label.
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, revision: &str, ordinal: i32) -> Pod {
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let name = pod_name(&set_name, ordinal);
    let tmeta = template.metadata.clone().unwrap_or_default();
    let mut labels: BTreeMap<String, String> = tmeta.labels.unwrap_or_default();
    labels.insert(POD_NAME_LABEL.to_string(), name.clone());
    labels.insert(POD_INDEX_LABEL.to_string(), ordinal.to_string());
    labels.insert(REVISION_LABEL.to_string(), revision.to_string());
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.hostname = Some(name.clone());
    spec.subdomain = set
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty());
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![owner_ref(API_VERSION, KIND, &set.metadata)]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_as_upstream() {
        assert_eq!(parent_and_ordinal("web-0"), Some(("web", 0)));
        assert_eq!(parent_and_ordinal("my-db-12"), Some(("my-db", 12)));
        assert_eq!(parent_and_ordinal("web-x"), None);
        assert_eq!(parent_and_ordinal("web"), None);
        assert_eq!(parent_and_ordinal("web-"), None);
    }
}
