//! Where a DaemonSet's pods belong (upstream pkg/controller/daemon `NodeShouldRunDaemonPod`
//! and pkg/controller/daemon/util): the automatic tolerations, the pod pinned to one node by
//! required node affinity, and the pod's target node.
//!
//! Start at [`node_should_run`] and [`new_pod`].

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::nodelifecycle::taints::{
    NO_EXECUTE, NO_SCHEDULE, TAINT_DISK_PRESSURE, TAINT_MEMORY_PRESSURE, TAINT_NETWORK_UNAVAILABLE,
    TAINT_NOT_READY, TAINT_PID_PRESSURE, TAINT_UNREACHABLE, TAINT_UNSCHEDULABLE,
};
use crate::scheduler::selectors::{RequiredNodeAffinity, first_untolerated, tolerates};
use crate::workloads::util::owner_ref;

/// Label with the DaemonSet's template hash on its pods (upstream
/// `apps.DefaultDaemonSetUniqueLabelKey` = `ControllerRevisionHashLabelKey`).
pub const CONTROLLER_REVISION_HASH: &str = "controller-revision-hash";
/// Label with the DaemonSet's template generation on its pods (upstream
/// `extensions.DaemonSetTemplateGenerationKey`).
pub const POD_TEMPLATE_GENERATION: &str = "pod-template-generation";
/// The annotation the API server keeps a DaemonSet's template generation in (upstream
/// `appsv1.DeprecatedTemplateGeneration`; bumped when `spec.template` changes).
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";
/// The field a DaemonSet pod's node affinity pins it by (upstream `metav1.ObjectNameField`).
pub const OBJECT_NAME_FIELD: &str = "metadata.name";

fn exists(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.to_string()),
        operator: Some("Exists".to_string()),
        effect: Some(effect.to_string()),
        ..Toleration::default()
    }
}

/// Upstream `MatchToleration`: same key, operator, value and effect (the seconds may differ).
fn same_toleration(a: &Toleration, b: &Toleration) -> bool {
    a.key == b.key && a.operator == b.operator && a.value == b.value && a.effect == b.effect
}

/// Upstream `AddOrUpdateTolerationInPodSpec`: replace a matching toleration, else append.
fn add_or_update(spec: &mut PodSpec, t: Toleration) {
    let list = spec.tolerations.get_or_insert_with(Vec::new);
    match list.iter_mut().find(|have| same_toleration(have, &t)) {
        Some(have) => *have = t,
        None => list.push(t),
    }
}

/// Upstream `AddOrUpdateDaemonPodTolerations`: a daemon pod tolerates not-ready and
/// unreachable nodes forever (NoExecute without `tolerationSeconds`, so the taint eviction
/// controller never evicts it), node pressure and cordons (NoSchedule), and, with host
/// networking, an unavailable pod network.
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    add_or_update(spec, exists(TAINT_NOT_READY, NO_EXECUTE));
    add_or_update(spec, exists(TAINT_UNREACHABLE, NO_EXECUTE));
    add_or_update(spec, exists(TAINT_DISK_PRESSURE, NO_SCHEDULE));
    add_or_update(spec, exists(TAINT_MEMORY_PRESSURE, NO_SCHEDULE));
    add_or_update(spec, exists(TAINT_PID_PRESSURE, NO_SCHEDULE));
    add_or_update(spec, exists(TAINT_UNSCHEDULABLE, NO_SCHEDULE));
    if spec.host_network == Some(true) {
        add_or_update(spec, exists(TAINT_NETWORK_UNAVAILABLE, NO_SCHEDULE));
    }
}

/// Upstream `ReplaceDaemonSetPodNodeNameNodeAffinity`: the pod's required node affinity
/// becomes the single term `metadata.name In [node]` (other required terms are replaced; the
/// DaemonSet controller already checked them against this node).
pub fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let selector = NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: OBJECT_NAME_FIELD.to_string(),
                operator: "In".to_string(),
                values: Some(vec![node.to_string()]),
            }]),
            match_expressions: None,
        }],
    };
    let mut affinity = affinity.unwrap_or_default();
    let na = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    na.required_during_scheduling_ignored_during_execution = Some(selector);
    affinity
}

/// Upstream `NewPod`: the pod the DaemonSet would run on `node`, for the placement checks.
fn pod_for_checks(ds: &DaemonSet, node: &str) -> Pod {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    spec.node_name = Some(node.to_string());
    add_daemon_tolerations(&mut spec);
    Pod {
        metadata: template.metadata.unwrap_or_default(),
        spec: Some(spec),
        status: None,
    }
}

fn node_taints(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[])
}

/// Upstream `NodeShouldRunDaemonPod`: (should run, should continue running). A node the
/// template's `nodeName`, `nodeSelector` or required node affinity excludes gets neither; a
/// node with an untolerated NoSchedule/NoExecute taint gets no new pod, and an existing pod
/// stays unless some NoExecute taint is untolerated (so an unreachable node keeps its pod).
pub fn node_should_run(node: &Node, ds: &DaemonSet) -> (bool, bool) {
    let name = node.metadata.name.as_deref().unwrap_or("");
    let template_node = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("");
    if !template_node.is_empty() && template_node != name {
        return (false, false);
    }
    let pod = pod_for_checks(ds, name);
    if !RequiredNodeAffinity::of(&pod).matches(node) {
        return (false, false);
    }
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[]);
    let taints = node_taints(node);
    if first_untolerated(taints, tolerations).is_none() {
        return (true, true);
    }
    let untolerated_no_execute = taints
        .iter()
        .filter(|t| t.effect == NO_EXECUTE)
        .any(|taint| !tolerations.iter().any(|t| tolerates(t, taint)));
    (false, !untolerated_no_execute)
}

/// Upstream `CreatePodTemplate` + `GetPodFromTemplate` + the node pin: the pod to create for
/// `node`, labelled with the template `generation` and `hash`, owned by `ds`.
pub fn new_pod(ds: &DaemonSet, node: &str, generation: Option<i64>, hash: &str) -> Pod {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    add_daemon_tolerations(&mut spec);
    spec.affinity = Some(pin_to_node(spec.affinity.take(), node));
    let mut labels: BTreeMap<String, String> = tmeta.labels.unwrap_or_default();
    if let Some(g) = generation {
        labels.insert(POD_TEMPLATE_GENERATION.to_string(), g.to_string());
    }
    if !hash.is_empty() {
        labels.insert(CONTROLLER_REVISION_HASH.to_string(), hash.to_string());
    }
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", ds.metadata.name.as_deref().unwrap_or(""))),
            namespace: ds.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![owner_ref("apps/v1", "DaemonSet", &ds.metadata)]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// Upstream `GetTargetNodeName`: `spec.nodeName`, or for a pod not yet bound the node its
/// required affinity pins it to (`metadata.name In [node]`).
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(n.to_string());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == OBJECT_NAME_FIELD && r.operator == "In")
        .and_then(|r| r.values.as_ref().filter(|v| v.len() == 1))
        .map(|v| v[0].clone())
}

/// Upstream `IsPodUpdated`: the pod carries the DaemonSet's current hash or template
/// generation.
pub fn pod_is_updated(pod: &Pod, hash: &str, generation: Option<i64>) -> bool {
    let labels = pod.metadata.labels.as_ref();
    let get = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    let hash_matches = !hash.is_empty() && get(CONTROLLER_REVISION_HASH) == Some(hash);
    let generation_matches =
        generation.is_some_and(|g| get(POD_TEMPLATE_GENERATION) == Some(g.to_string().as_str()));
    hash_matches || generation_matches
}
