//! DaemonSet controller behaviour in virtual time, with the real scheduler binding the pinned
//! pods, the real taint eviction controller for the failure case, and a tiny fake kubelet.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus};
use serde_json::{Value, json};

use super::placement::{POD_TEMPLATE_GENERATION, target_node};
use super::*;
use crate::fake::{Harness, object};
use crate::nodelifecycle::TaintEvictionController;
use crate::scheduler::{Scheduler, SchedulerConfig};
use crate::time::to_time;
use crate::workloads::util::{node_name, pod_is_active};
use crate::{Key, Kind, Object, pod_is_ready};

fn node_json(name: &str, labels: Value) -> Value {
    let mut l = json!({"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": "a"});
    for (k, v) in labels.as_object().into_iter().flatten() {
        l[k] = v.clone();
    }
    json!({
        "kind": "Node",
        "metadata": {"name": name, "labels": l},
        "spec": {},
        "status": {
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}]
        }
    })
}

fn node(name: &str) -> Object {
    object(node_json(name, json!({})))
}

fn ds_json(template_spec: Value, strategy: Value) -> Value {
    let mut spec = json!({"containers": [{"name": "agent", "image": "fluentd:1.16"}]});
    for (k, v) in template_spec.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    json!({
        "kind": "DaemonSet", "apiVersion": "apps/v1",
        "metadata": {"name": "agent", "namespace": "default", "generation": 1,
                     "annotations": {"deprecated.daemonset.template.generation": "1"}},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "updateStrategy": strategy,
            "template": {"metadata": {"labels": {"app": "agent"}}, "spec": spec}
        }
    })
}

fn rolling(max_unavailable: Value, max_surge: Value) -> Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": max_unavailable, "maxSurge": max_surge}})
}

fn harness(nodes: &[Object], ds: Value) -> Harness {
    let mut h = Harness::new(vec![
        Box::new(DaemonSetController::new(DaemonSetConfig::default())),
        Box::new(Scheduler::new(SchedulerConfig::default())),
        Box::new(TaintEvictionController::new()),
    ]);
    for n in nodes {
        h.api.put(n.clone(), h.now);
    }
    h.api.put(object(ds), h.now);
    h.start();
    h
}

fn daemon_set(h: &Harness) -> Arc<DaemonSet> {
    h.api.cache.daemon_sets[&Key::new("default", "agent")].clone()
}

fn live_pods(h: &Harness) -> Vec<Arc<Pod>> {
    h.api
        .cache
        .pods
        .values()
        .filter(|p| pod_is_active(p))
        .cloned()
        .collect()
}

/// Bound live pods as `(node, pod template generation)`, sorted.
fn placement(h: &Harness) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = live_pods(h)
        .iter()
        .map(|p| {
            let g = p.metadata.labels.as_ref().unwrap()[POD_TEMPLATE_GENERATION].clone();
            (node_name(p).to_string(), g)
        })
        .collect();
    v.sort();
    v
}

/// The kubelets: finish graceful deletions, mark bound pods Running and Ready.
fn kubelet(h: &mut Harness) {
    let gone: Vec<Key> = h
        .api
        .cache
        .pods
        .values()
        .filter(|p| p.metadata.deletion_timestamp.is_some())
        .map(|p| Key::of(&p.metadata))
        .collect();
    for k in gone {
        h.remove(Kind::Pod, &k);
    }
    let unready: Vec<Arc<Pod>> = live_pods(h)
        .into_iter()
        .filter(|p| !node_name(p).is_empty() && !pod_is_ready(p))
        .collect();
    for p in unready {
        let mut p = (*p).clone();
        p.status = Some(PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(to_time(h.now)),
                ..Default::default()
            }]),
            ..Default::default()
        });
        h.put(Object::Pod(Arc::new(p)));
    }
}

fn edit_template(h: &mut Harness, image: &str, template_generation: &str) {
    let mut ds = (*daemon_set(h)).clone();
    let spec = ds.spec.as_mut().unwrap();
    spec.template.spec.as_mut().unwrap().containers[0].image = Some(image.into());
    ds.metadata.generation = Some(ds.metadata.generation.unwrap_or(1) + 1);
    ds.metadata.annotations.as_mut().unwrap().insert(
        "deprecated.daemonset.template.generation".into(),
        template_generation.into(),
    );
    h.put(Object::DaemonSet(Arc::new(ds)));
}

fn status(h: &Harness) -> k8s_openapi::api::apps::v1::DaemonSetStatus {
    daemon_set(h).status.clone().unwrap_or_default()
}

#[test]
fn one_pinned_pod_per_node_placed_by_the_scheduler() {
    let nodes = [node("n1"), node("n2"), node("n3")];
    let mut h = harness(&nodes, ds_json(json!({}), rolling(json!(1), json!(0))));
    kubelet(&mut h);
    let pods = live_pods(&h);
    assert_eq!(pods.len(), 3);
    for p in &pods {
        // Pinned through required node affinity and bound there by the scheduler.
        assert_eq!(target_node(p).as_deref(), Some(node_name(p)));
        let spec = p.spec.as_ref().unwrap();
        let terms = &spec
            .affinity
            .as_ref()
            .unwrap()
            .node_affinity
            .as_ref()
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap()
            .node_selector_terms;
        assert_eq!(terms.len(), 1);
        assert_eq!(
            terms[0].match_fields.as_ref().unwrap()[0].key,
            "metadata.name"
        );
        let labels = p.metadata.labels.as_ref().unwrap();
        assert!(labels.contains_key(CONTROLLER_REVISION_HASH));
        assert_eq!(labels[POD_TEMPLATE_GENERATION], "1");
    }
    assert_eq!(
        placement(&h)
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["n1", "n2", "n3"]
    );
    let s = status(&h);
    assert_eq!(
        (
            s.desired_number_scheduled,
            s.current_number_scheduled,
            s.number_ready
        ),
        (3, 3, 3)
    );
    assert_eq!(s.updated_number_scheduled, Some(3));
    assert_eq!(s.number_available, Some(3));
    assert_eq!(s.number_unavailable, Some(0));
    assert_eq!(s.number_misscheduled, 0);
    assert_eq!(s.observed_generation, Some(1));
    let created: Vec<&str> = h
        .events
        .iter()
        .filter(|e| e.reason == "SuccessfulCreate")
        .map(|e| e.message.as_str())
        .collect();
    assert_eq!(created.len(), 3);
    assert!(created.iter().all(|m| m.starts_with("Created pod: agent-")));
    assert!(
        h.events
            .iter()
            .all(|e| e.component == "daemonset-controller" || e.reason == "Scheduled")
    );
}

#[test]
fn automatic_tolerations_without_toleration_seconds() {
    let mut h = harness(
        &[node("n1")],
        ds_json(
            json!({"hostNetwork": true, "tolerations": [
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ]}),
            rolling(json!(1), json!(0)),
        ),
    );
    kubelet(&mut h);
    let pod = &live_pods(&h)[0];
    let tolerations: Vec<(String, String, Option<i64>)> = pod
        .spec
        .as_ref()
        .unwrap()
        .tolerations
        .as_ref()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t.key.clone().unwrap_or_default(),
                t.effect.clone().unwrap_or_default(),
                t.toleration_seconds,
            )
        })
        .collect();
    let want = |k: &str, e: &str| (format!("node.kubernetes.io/{k}"), e.to_string(), None);
    assert_eq!(
        tolerations,
        vec![
            // The user's 300 s toleration is replaced by the forever one (same key/effect/op).
            want("unreachable", "NoExecute"),
            want("not-ready", "NoExecute"),
            want("disk-pressure", "NoSchedule"),
            want("memory-pressure", "NoSchedule"),
            want("pid-pressure", "NoSchedule"),
            want("unschedulable", "NoSchedule"),
            want("network-unavailable", "NoSchedule"),
        ]
    );
}

#[test]
fn node_selector_affinity_and_taints_choose_the_nodes() {
    let nodes = [
        object(node_json("gpu-1", json!({"gpu": "true"}))),
        object(node_json("gpu-2", json!({"gpu": "true", "arch": "arm64"}))),
        node("plain"),
        {
            let mut v = node_json("tainted", json!({"gpu": "true"}));
            v["spec"]["taints"] =
                json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]);
            object(v)
        },
        {
            // Cordoned: the automatic unschedulable toleration lets the daemon pod in.
            let mut v = node_json("cordoned", json!({"gpu": "true"}));
            v["spec"]["unschedulable"] = json!(true);
            v["spec"]["taints"] =
                json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]);
            object(v)
        },
    ];
    let affinity = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "arch", "operator": "NotIn", "values": ["arm64"]}]}]}}});
    let mut h = harness(
        &nodes,
        ds_json(
            json!({"nodeSelector": {"gpu": "true"}, "affinity": affinity}),
            rolling(json!(1), json!(0)),
        ),
    );
    kubelet(&mut h);
    let on: Vec<String> = placement(&h).into_iter().map(|(n, _)| n).collect();
    assert_eq!(on, ["cordoned", "gpu-1"]);
    assert_eq!(status(&h).desired_number_scheduled, 2);
}

#[test]
fn new_node_gets_its_pod_and_a_node_that_stops_matching_loses_it() {
    let nodes = [
        object(node_json("n1", json!({"role": "edge"}))),
        object(node_json("n2", json!({"role": "edge"}))),
    ];
    let mut h = harness(
        &nodes,
        ds_json(
            json!({"nodeSelector": {"role": "edge"}}),
            rolling(json!(1), json!(0)),
        ),
    );
    kubelet(&mut h);
    assert_eq!(placement(&h).len(), 2);
    // A node that joins later (or is labelled to match) gets a pod.
    h.put(object(node_json("n3", json!({"role": "edge"}))));
    h.put(node("n4"));
    kubelet(&mut h);
    let on: Vec<String> = placement(&h).into_iter().map(|(n, _)| n).collect();
    assert_eq!(on, ["n1", "n2", "n3"]);
    h.put(object(node_json("n4", json!({"role": "edge"}))));
    kubelet(&mut h);
    assert_eq!(placement(&h).len(), 4);
    // n1 stops matching: its pod is deleted (gracefully) and not replaced elsewhere.
    h.put(node("n1"));
    assert!(h.events.iter().any(|e| e.reason == "SuccessfulDelete"));
    kubelet(&mut h);
    let on: Vec<String> = placement(&h).into_iter().map(|(n, _)| n).collect();
    assert_eq!(on, ["n2", "n3", "n4"]);
    let s = status(&h);
    assert_eq!(
        (s.desired_number_scheduled, s.current_number_scheduled),
        (3, 3)
    );
}

#[test]
fn rolling_update_respects_max_unavailable() {
    let nodes = [node("n1"), node("n2"), node("n3"), node("n4")];
    let mut h = harness(&nodes, ds_json(json!({}), rolling(json!(2), json!(0))));
    kubelet(&mut h);
    edit_template(&mut h, "fluentd:1.17", "2");
    // Two old pods are deleted at once; nothing is created before they are gone.
    let deleting = h
        .api
        .cache
        .pods
        .values()
        .filter(|p| p.metadata.deletion_timestamp.is_some())
        .count();
    assert_eq!(deleting, 2);
    assert_eq!(live_pods(&h).len(), 2);
    let mut max_unavailable_seen = 0;
    for _ in 0..10 {
        kubelet(&mut h);
        let ready = live_pods(&h).iter().filter(|p| pod_is_ready(p)).count();
        max_unavailable_seen = max_unavailable_seen.max(4 - ready);
        if placement(&h).iter().all(|(_, g)| g == "2") && placement(&h).len() == 4 {
            break;
        }
    }
    assert_eq!(
        placement(&h),
        (1..=4)
            .map(|i| (format!("n{i}"), "2".to_string()))
            .collect::<Vec<_>>()
    );
    assert!(max_unavailable_seen <= 2, "{max_unavailable_seen}");
    let s = status(&h);
    assert_eq!(s.updated_number_scheduled, Some(4));
    assert_eq!(s.observed_generation, Some(2));
}

#[test]
fn rolling_update_with_max_surge_starts_the_new_pod_first() {
    let nodes = [node("n1"), node("n2"), node("n3")];
    let mut h = harness(&nodes, ds_json(json!({}), rolling(json!(0), json!(1))));
    kubelet(&mut h);
    edit_template(&mut h, "fluentd:1.17", "2");
    // One node surges: old and new pod side by side, nothing deleted yet.
    let all: Vec<(String, String)> = placement(&h);
    assert_eq!(live_pods(&h).len(), 4);
    assert_eq!(all.iter().filter(|(_, g)| g == "2").count(), 1);
    assert_eq!(
        h.api
            .cache
            .pods
            .values()
            .filter(|p| p.metadata.deletion_timestamp.is_some())
            .count(),
        0
    );
    for _ in 0..12 {
        kubelet(&mut h);
        // Never fewer than three ready pods: the old pod goes only once its successor is ready.
        let ready = live_pods(&h).iter().filter(|p| pod_is_ready(p)).count();
        assert!(ready >= 3, "only {ready} ready");
        if placement(&h)
            == (1..=3)
                .map(|i| (format!("n{i}"), "2".to_string()))
                .collect::<Vec<_>>()
        {
            break;
        }
    }
    assert_eq!(
        placement(&h),
        (1..=3)
            .map(|i| (format!("n{i}"), "2".to_string()))
            .collect::<Vec<_>>()
    );
}

/// A node loses power: the node lifecycle controller marks it Unknown and taints it
/// unreachable (NoSchedule and NoExecute). A ReplicaSet-style pod with the default 300 s
/// toleration is evicted; the daemon pod tolerates the taint forever, stays bound to the dead
/// node and is not recreated anywhere else. DESIRED drops (the node no longer takes new daemon
/// pods) and the kept pod counts as misscheduled, as upstream reports it.
#[test]
fn pods_on_an_unreachable_node_are_never_evicted_nor_replaced() {
    let nodes = [node("n1"), node("n2")];
    let mut h = harness(&nodes, ds_json(json!({}), rolling(json!(1), json!(0))));
    h.put(object(json!({
        "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web"}},
        "spec": {"nodeName": "n2", "containers": [{"name": "c"}], "tolerations": [
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]}
    })));
    kubelet(&mut h);
    let before: Vec<String> = live_pods(&h)
        .iter()
        .filter(|p| p.metadata.name.as_deref().unwrap().starts_with("agent-"))
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    let mut dead = node_json("n2", json!({}));
    dead["status"]["conditions"] = json!([{"type": "Ready", "status": "Unknown"}]);
    dead["spec"]["taints"] = json!([
        {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule", "timeAdded": to_time(h.now)},
        {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": to_time(h.now)}
    ]);
    h.put(object(dead));
    // The node lifecycle controller marks the pods on it not ready.
    let on_dead: Vec<Arc<Pod>> = h.api.cache.pods_on_node("n2").cloned().collect();
    for p in on_dead {
        let mut p = (*p).clone();
        p.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "False".into();
        h.put(Object::Pod(Arc::new(p)));
    }
    h.advance(Duration::from_millis(3_600_000));
    let web = h.api.cache.pods.get(&Key::new("default", "web-1"));
    assert!(
        web.is_none_or(|p| p.metadata.deletion_timestamp.is_some()),
        "the 300 s pod is evicted"
    );
    let after: Vec<String> = live_pods(&h)
        .iter()
        .filter(|p| p.metadata.name.as_deref().unwrap().starts_with("agent-"))
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(after, before, "daemon pods kept, none added");
    let kept = h
        .api
        .cache
        .pods_on_node("n2")
        .filter(|p| pod_is_active(p))
        .count();
    assert_eq!(kept, 1);
    assert!(!h.events.iter().any(|e| e.reason == "SuccessfulDelete"));
    let s = status(&h);
    assert_eq!(
        (
            s.desired_number_scheduled,
            s.current_number_scheduled,
            s.number_ready,
            s.number_misscheduled
        ),
        (1, 1, 1, 1)
    );
}

#[test]
fn failed_daemon_pod_is_replaced_with_an_event() {
    let mut h = harness(
        &[node("n1")],
        ds_json(json!({}), rolling(json!(1), json!(0))),
    );
    kubelet(&mut h);
    let mut p = (*live_pods(&h)[0]).clone();
    p.status.as_mut().unwrap().phase = Some("Failed".into());
    let failed = p.metadata.name.clone().unwrap();
    h.put(Object::Pod(Arc::new(p)));
    let msg = format!("Found failed daemon pod default/{failed} on node n1, will try to kill it");
    assert!(
        h.events
            .iter()
            .any(|e| e.reason == "FailedDaemonPod" && e.message == msg)
    );
    kubelet(&mut h);
    let pods = live_pods(&h);
    assert_eq!(pods.len(), 1);
    assert_ne!(pods[0].metadata.name.as_deref(), Some(failed.as_str()));
}

#[test]
fn node_agent_daemonset_counts_nodes_and_creates_nothing() {
    let mut v = ds_json(json!({}), rolling(json!(1), json!(0)));
    v["metadata"]["annotations"][NODE_AGENT] = json!("kube-proxy");
    let nodes = [node("n1"), node("n2"), node("n3")];
    let mut h = harness(&nodes, v);
    assert!(live_pods(&h).is_empty());
    let s = status(&h);
    assert_eq!(
        (
            s.desired_number_scheduled,
            s.current_number_scheduled,
            s.number_ready
        ),
        (3, 3, 3)
    );
    let mut dead = node_json("n3", json!({}));
    dead["status"]["conditions"] = json!([{"type": "Ready", "status": "Unknown"}]);
    dead["spec"]["taints"] = json!([{"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"},
                                   {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]);
    h.put(object(dead));
    let s = status(&h);
    assert_eq!(
        (
            s.desired_number_scheduled,
            s.number_ready,
            s.number_misscheduled
        ),
        (2, 2, 1)
    );
    assert!(live_pods(&h).is_empty());
}

#[test]
fn on_delete_replaces_only_pods_someone_deleted() {
    let nodes = [node("n1"), node("n2")];
    let mut h = harness(&nodes, ds_json(json!({}), json!({"type": "OnDelete"})));
    kubelet(&mut h);
    edit_template(&mut h, "fluentd:1.17", "2");
    kubelet(&mut h);
    assert_eq!(
        placement(&h),
        [
            ("n1".to_string(), "1".to_string()),
            ("n2".to_string(), "1".to_string())
        ]
    );
    assert_eq!(status(&h).updated_number_scheduled, Some(0));
    // The user deletes n1's pod: the replacement has the new template.
    let on_n1 = live_pods(&h)
        .into_iter()
        .find(|p| node_name(p) == "n1")
        .unwrap();
    h.remove(Kind::Pod, &Key::of(&on_n1.metadata));
    kubelet(&mut h);
    assert_eq!(
        placement(&h),
        [
            ("n1".to_string(), "2".to_string()),
            ("n2".to_string(), "1".to_string())
        ]
    );
    assert_eq!(status(&h).updated_number_scheduled, Some(1));
}

#[test]
fn unbound_pod_pinned_to_a_deleted_node_is_deleted() {
    // n2 has no room for pods (allocatable pods 0): the scheduler leaves its pod unbound.
    let mut n2 = node_json("n2", json!({}));
    n2["status"]["allocatable"]["pods"] = json!("0");
    let mut h = harness(
        &[node("n1"), object(n2)],
        ds_json(json!({}), rolling(json!(1), json!(0))),
    );
    kubelet(&mut h);
    let pending: Vec<Arc<Pod>> = live_pods(&h)
        .into_iter()
        .filter(|p| node_name(p).is_empty())
        .collect();
    assert_eq!(pending.len(), 1);
    assert_eq!(target_node(&pending[0]).as_deref(), Some("n2"));
    assert_eq!(
        status(&h).current_number_scheduled,
        2,
        "a pinned pending pod counts"
    );
    h.remove(Kind::Node, &Key::new("", "n2"));
    assert!(
        !h.api
            .cache
            .pods
            .contains_key(&Key::of(&pending[0].metadata))
    );
    assert_eq!(placement(&h).len(), 1);
}
