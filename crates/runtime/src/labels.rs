//! Well-known labels, annotations and taints, and the predicates on typed objects every
//! component asks: is the pod ready, is the node ready, does a toleration tolerate a taint,
//! does a label selector select these labels. One copy each, upstream semantics.
//!
//! Start at [`tolerates`] and [`label_selector_matches`].

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod, Service, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// The zone label every node carries (`v1.LabelTopologyZone`).
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// The region label (`v1.LabelTopologyRegion`).
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";
/// The hostname label every node carries (`v1.LabelHostname`).
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// The OS label the kubelet sets (`v1.LabelOSStable`).
pub const OS_LABEL: &str = "kubernetes.io/os";
/// The label tying an EndpointSlice to its Service (`discovery/v1.LabelServiceName`).
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// `endpoints.kubernetes.io/last-change-trigger-time` (k8s.io/api core/v1
/// `EndpointsLastChangeTriggerTime`): when the change that caused an EndpointSlice write
/// happened, the start of kube-proxy's network programming latency.
pub const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// `node.kubernetes.io/not-ready` (`v1.TaintNodeNotReady`).
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// `node.kubernetes.io/unreachable` (`v1.TaintNodeUnreachable`).
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// `node.kubernetes.io/unschedulable` (`v1.TaintNodeUnschedulable`).
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// True if the pod's `Ready` condition is `True` (upstream `podutil.IsPodReady`).
pub fn pod_is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// True for pods in phase Succeeded or Failed (they hold no node resources and are never
/// endpoints: upstream `ShouldPodBeInEndpoints`, the scheduler's and kubelet's terminal check).
pub fn pod_is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The pod's IPv4 address: the first of `status.podIPs` that parses, else `status.podIP`.
/// Rust's parser accepts only the canonical dotted form (no leading zeros), so an address that
/// parses is already what upstream's re-stringified one would be.
pub fn pod_ipv4(pod: &Pod) -> Option<&str> {
    let status = pod.status.as_ref()?;
    let from_list = status.pod_ips.iter().flatten().map(|p| p.ip.as_str());
    from_list
        .chain(status.pod_ip.as_deref())
        .find(|raw| raw.parse::<std::net::Ipv4Addr>().is_ok())
}

/// The Service's selector if it selects pods. An empty selector is treated as absent (the API
/// server stores `selector: {}` as no selector, and upstream skips Services without one), and
/// an `ExternalName` Service selects nothing.
pub fn service_selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref().filter(|s| !s.is_empty())
}

/// The node's `Ready` condition status (`True`, `False`, `Unknown`), if any.
pub fn node_ready_status(node: &Node) -> Option<&str> {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.as_str())
}

/// The node's zone label ([`ZONE_LABEL`]), if it has one.
pub fn node_zone(node: &Node) -> Option<&str> {
    node.metadata
        .labels
        .as_ref()?
        .get(ZONE_LABEL)
        .map(String::as_str)
}

/// True if the node's `Ready` condition is `True`.
pub fn node_is_ready(node: &Node) -> bool {
    node_ready_status(node) == Some("True")
}

/// Upstream `Toleration.ToleratesTaint`: an empty effect or key matches any; operator
/// `Equal` (or empty) compares values, `Exists` ignores them, any other operator matches
/// nothing.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    if let Some(key) = toleration.key.as_deref().filter(|k| !k.is_empty())
        && key != taint.key
    {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("") {
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        "Exists" => true,
        _ => false,
    }
}

/// True for a selector with neither `matchLabels` nor `matchExpressions`.
pub fn label_selector_is_empty(sel: &LabelSelector) -> bool {
    sel.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
        && sel.match_expressions.as_ref().is_none_or(Vec::is_empty)
}

/// Upstream `metav1.LabelSelectorAsSelector(sel).Matches(labels)`: every `matchLabels` pair
/// and every expression holds. An empty selector selects everything; an unknown operator
/// (which validation rejects) selects nothing. Callers with nil-selector rules decide before.
pub fn label_selector_matches(
    sel: &LabelSelector,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    let get = |k: &str| labels.and_then(|l| l.get(k));
    if let Some(ml) = sel.match_labels.as_ref()
        && !ml.iter().all(|(k, v)| get(k) == Some(v))
    {
        return false;
    }
    sel.match_expressions.iter().flatten().all(|req| {
        let values = req.values.as_deref().unwrap_or(&[]);
        let have = get(&req.key);
        match req.operator.as_str() {
            "In" => have.is_some_and(|v| values.contains(v)),
            "NotIn" => have.is_none_or(|v| !values.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        }
    })
}

/// Upstream `labels.SelectorFromSet(set).Matches(labels)` (a Service's `spec.selector`):
/// every pair is present. An empty set selects everything.
pub fn set_selects(
    set: &BTreeMap<String, String>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    set.iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tol(v: serde_json::Value) -> Toleration {
        serde_json::from_value(v).unwrap()
    }

    fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: value.map(Into::into),
            effect: effect.into(),
            time_added: None,
        }
    }

    #[test]
    fn tolerations_follow_upstream_for_node_lifecycle_taints() {
        // The node lifecycle controller's cases: NoExecute taints with tolerationSeconds.
        let nt = |key: &str| taint(key, None, "NoExecute");
        let exists = tol(
            json!({"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}),
        );
        let wildcard = tol(json!({"operator": "Exists"}));
        let other_effect =
            tol(json!({"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoSchedule"}));
        let equal = tol(json!({"key": "k", "value": "v", "effect": "NoExecute"}));
        assert!(tolerates(&exists, &nt(TAINT_UNREACHABLE)));
        assert!(!tolerates(&exists, &nt(TAINT_NOT_READY)));
        assert!(tolerates(&wildcard, &nt(TAINT_NOT_READY)));
        assert!(!tolerates(&other_effect, &nt(TAINT_UNREACHABLE)));
        assert!(!tolerates(&equal, &nt("k")));
        assert!(tolerates(&equal, &taint("k", Some("v"), "NoExecute")));
    }

    #[test]
    fn tolerations_follow_upstream_for_scheduling_taints() {
        // The scheduler's cases: key/value/effect, operator omitted, Exists, unknown operator.
        let t = taint("k", Some("v"), "NoSchedule");
        assert!(tolerates(&tol(json!({"key": "k", "value": "v"})), &t));
        assert!(tolerates(
            &tol(json!({"key": "k", "operator": "Equal", "value": "v"})),
            &t
        ));
        assert!(tolerates(
            &tol(json!({"key": "k", "operator": "Exists", "effect": "NoSchedule"})),
            &t
        ));
        assert!(tolerates(&tol(json!({"operator": "Exists"})), &t));
        assert!(!tolerates(&tol(json!({"key": "k", "value": "w"})), &t));
        assert!(!tolerates(&tol(json!({"key": "k"})), &t), "empty value ≠ v");
        assert!(!tolerates(
            &tol(json!({"key": "k", "operator": "Exists", "effect": "NoExecute"})),
            &t
        ));
        assert!(!tolerates(
            &tol(json!({"key": "k", "operator": "Gt", "value": "v"})),
            &t
        ));
    }

    #[test]
    fn label_selectors_follow_upstream() {
        let labels: BTreeMap<String, String> = [
            ("app".to_string(), "web".to_string()),
            ("tier".to_string(), "fe".to_string()),
        ]
        .into();
        let sel = |v: serde_json::Value| -> LabelSelector { serde_json::from_value(v).unwrap() };
        assert!(label_selector_matches(
            &sel(json!({"matchLabels": {"app": "web"}})),
            Some(&labels)
        ));
        assert!(!label_selector_matches(
            &sel(json!({"matchLabels": {"app": "db"}})),
            Some(&labels)
        ));
        let empty = sel(json!({}));
        assert!(label_selector_is_empty(&empty));
        assert!(label_selector_matches(&empty, Some(&labels)));
        assert!(label_selector_matches(&empty, None));
        let e = json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]},
                                             {"key": "x", "operator": "DoesNotExist"}]});
        assert!(label_selector_matches(&sel(e), Some(&labels)));
        let e =
            json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["fe"]}]});
        assert!(!label_selector_matches(&sel(e), Some(&labels)));
        let e = json!({"matchExpressions": [{"key": "app", "operator": "Exists"}]});
        assert!(label_selector_matches(&sel(e.clone()), Some(&labels)));
        assert!(!label_selector_matches(&sel(e), None));
        let bad = json!({"matchExpressions": [{"key": "app", "operator": "Gt", "values": ["1"]}]});
        assert!(!label_selector_matches(&sel(bad), Some(&labels)));

        let set: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        assert!(set_selects(&set, Some(&labels)));
        assert!(!set_selects(&set, None));
        assert!(set_selects(&BTreeMap::new(), None));
    }

    #[test]
    fn readiness_reads_the_ready_condition() {
        let pod: Pod = serde_json::from_value(json!({"status": {"conditions": [
            {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}]}}))
        .unwrap();
        assert!(!pod_is_ready(&pod));
        let pod: Pod = serde_json::from_value(
            json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        )
        .unwrap();
        assert!(pod_is_ready(&pod));
        assert!(!pod_is_ready(&Pod::default()));
        let node: Node = serde_json::from_value(
            json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
        )
        .unwrap();
        assert_eq!(node_ready_status(&node), Some("Unknown"));
        assert!(!node_is_ready(&node));
        assert_eq!(node_ready_status(&Node::default()), None);
    }
}
