//! Scheduler behaviour tests in virtual time, through the fake API harness.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Scheduler, SchedulerConfig};
use crate::fake::{FakeApi, Harness, T0, object};
use crate::{Action, Controller, Key, Kind, Object};

fn node_json(name: &str, zone: &str, cpu: &str) -> Value {
    json!({
        "kind": "Node",
        "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone, "kubernetes.io/hostname": name}},
        "spec": {},
        "status": {
            "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}]
        }
    })
}

fn node(name: &str, zone: &str, cpu: &str) -> Object {
    object(node_json(name, zone, cpu))
}

/// A node whose zone lost power: Ready=Unknown and the node lifecycle controller's taints.
fn dead_node(name: &str, zone: &str) -> Object {
    let mut v = node_json(name, zone, "4");
    v["status"]["conditions"] = json!([{"type": "Ready", "status": "Unknown"}]);
    v["spec"]["taints"] = json!([
        {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}
    ]);
    object(v)
}

/// A pod as a ReplicaSet would create it (with the DefaultTolerationSeconds tolerations).
fn pod_json(name: &str, app: &str, cpu: &str) -> Value {
    json!({
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
        "spec": {
            "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": "128Mi"}}}],
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ]
        }
    })
}

fn spread_pod(name: &str, taints_policy: Option<&str>) -> Object {
    let mut v = pod_json(name, "web", "100m");
    let mut c = json!({
        "maxSkew": 1,
        "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "web"}}
    });
    if let Some(p) = taints_policy {
        c["nodeTaintsPolicy"] = json!(p);
    }
    v["spec"]["topologySpreadConstraints"] = json!([c]);
    object(v)
}

fn anti_affinity_pod(name: &str, key: &str) -> Object {
    let mut v = pod_json(name, "db", "100m");
    v["spec"]["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"topologyKey": key, "labelSelector": {"matchLabels": {"app": "db"}}}
    ]}});
    object(v)
}

fn harness(nodes: Vec<Object>) -> Harness {
    let mut h = Harness::new(vec![Box::new(Scheduler::new(SchedulerConfig::default()))]);
    for n in nodes {
        h.api.put(n, T0);
    }
    h.start();
    h
}

fn three_zones() -> Vec<Object> {
    ["a", "b", "c"]
        .iter()
        .flat_map(|z| {
            [
                node(&format!("{z}1"), z, "4"),
                node(&format!("{z}2"), z, "4"),
            ]
        })
        .collect()
}

fn key(name: &str) -> Key {
    Key::new("default", name)
}

fn node_of(h: &Harness, name: &str) -> Option<String> {
    h.api
        .cache
        .pods
        .get(&key(name))?
        .spec
        .as_ref()?
        .node_name
        .clone()
}

/// Bound, non-terminating pods of `app` per zone.
fn per_zone(h: &Harness, app: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for p in h.api.cache.pods.values() {
        let labels = p.metadata.labels.as_ref();
        if labels.and_then(|l| l.get("app")).map(String::as_str) != Some(app)
            || p.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            *out.entry(h.api.cache.zone_of(n).unwrap_or("?").to_string())
                .or_default() += 1;
        }
    }
    out
}

/// The pod's `PodScheduled` condition as (status, reason, message).
fn scheduled_condition(h: &Harness, name: &str) -> Option<(String, String, String)> {
    let pod = h.api.cache.pods.get(&key(name))?;
    let c = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled")?;
    Some((
        c.status.clone(),
        c.reason.clone().unwrap_or_default(),
        c.message.clone().unwrap_or_default(),
    ))
}

fn status_writes(h: &Harness) -> usize {
    h.write_counts().get("status Pod").copied().unwrap_or(0)
}

fn zones(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(z, n)| (z.to_string(), *n)).collect()
}

#[test]
fn six_replicas_spread_two_per_zone() {
    let mut h = harness(three_zones());
    for i in 0..6 {
        h.put(spread_pod(&format!("web-{i}"), None));
    }
    assert_eq!(per_zone(&h, "web"), zones(&[("a", 2), ("b", 2), ("c", 2)]));
    assert_eq!(h.write_counts().get("bind"), Some(&6));
    assert!(h.failures.is_empty());
}

#[test]
fn exhausted_resources_leave_pod_pending_with_upstream_message() {
    let nodes = (1..=6).map(|i| node(&format!("n{i}"), "a", "1")).collect();
    let mut h = harness(nodes);
    for i in 0..7 {
        h.put(object(pod_json(&format!("p{i}"), "batch", "600m")));
    }
    let bound: Vec<String> = (0..6)
        .filter_map(|i| node_of(&h, &format!("p{i}")))
        .collect();
    assert_eq!(bound.len(), 6);
    assert_eq!(
        bound
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        6,
        "one per node"
    );
    assert_eq!(node_of(&h, "p6"), None);
    let expected = "0/6 nodes are available: 6 Insufficient cpu. preemption: 0/6 nodes are available: \
                    6 No preemption victims found for incoming pod.";
    assert_eq!(
        scheduled_condition(&h, "p6"),
        Some(("False".into(), "Unschedulable".into(), expected.into()))
    );
    // Periodic retries (backoff, the 5-minute flush) do not rewrite an unchanged condition.
    h.advance(Duration::from_millis(20 * 60 * 1000));
    assert_eq!(status_writes(&h), 1);
    assert_eq!(node_of(&h, "p6"), None);
    // A new node is a cluster event: the pod is retried and bound.
    h.put(node("n7", "b", "1"));
    assert_eq!(
        node_of(&h, "p6"),
        None,
        "moved to the backoff queue first (upstream)"
    );
    h.advance(Duration::from_millis(10_000));
    assert_eq!(node_of(&h, "p6").as_deref(), Some("n7"));
    assert_eq!(
        scheduled_condition(&h, "p6").map(|c| c.0).as_deref(),
        Some("True")
    );
}

#[test]
fn deleting_a_bound_pod_retries_unschedulable_pods() {
    let mut h = harness(vec![node("n1", "a", "1")]);
    h.put(object(pod_json("p0", "batch", "600m")));
    h.put(object(pod_json("p1", "batch", "600m")));
    assert_eq!(node_of(&h, "p1"), None);
    h.remove(Kind::Pod, &key("p0"));
    h.advance(Duration::from_millis(1000));
    assert_eq!(node_of(&h, "p1").as_deref(), Some("n1"));
}

#[test]
fn taints_and_cordons_are_respected() {
    let mut gpu = node_json("gpu1", "a", "4");
    gpu["spec"]["taints"] = json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]);
    let mut h = harness(vec![object(gpu), node("cpu1", "a", "4")]);
    for i in 0..3 {
        h.put(object(pod_json(&format!("p{i}"), "web", "100m")));
        assert_eq!(node_of(&h, &format!("p{i}")).as_deref(), Some("cpu1"));
    }
    let mut tolerant = pod_json("gpu-job", "ml", "100m");
    tolerant["spec"]["tolerations"] =
        json!([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]);
    h.put(object(tolerant));
    assert_eq!(
        node_of(&h, "gpu-job").as_deref(),
        Some("gpu1"),
        "least allocated wins once tolerated"
    );
    let mut cordoned = node_json("cpu1", "a", "4");
    cordoned["spec"]["unschedulable"] = json!(true);
    h.put(object(cordoned));
    h.put(object(pod_json("late", "web", "100m")));
    let expected = "0/2 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, \
                    1 node(s) were unschedulable. preemption: 0/2 nodes are available: \
                    2 Preemption is not helpful for scheduling.";
    assert_eq!(
        scheduled_condition(&h, "late").map(|c| c.2).as_deref(),
        Some(expected)
    );
}

/// Zone `a` loses power: its nodes go Ready=Unknown with the unreachable taints and its pods
/// are stuck Terminating. Returns the harness with the two replacements created.
fn lose_zone_a(taints_policy: Option<&str>) -> Harness {
    let mut h = harness(three_zones());
    for i in 0..6 {
        h.put(spread_pod(&format!("web-{i}"), taints_policy));
    }
    assert_eq!(per_zone(&h, "web"), zones(&[("a", 2), ("b", 2), ("c", 2)]));
    h.put(dead_node("a1", "a"));
    h.put(dead_node("a2", "a"));
    let doomed: Vec<_> = h
        .api
        .cache
        .pods
        .values()
        .filter(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| n.starts_with('a'))
        })
        .cloned()
        .collect();
    assert_eq!(doomed.len(), 2);
    for p in doomed {
        let mut p = (*p).clone();
        p.metadata.deletion_timestamp =
            Some(crate::time::to_time(h.now + Duration::from_millis(30_000)));
        h.put(Object::Pod(std::sync::Arc::new(p)));
    }
    h.put(spread_pod("web-6", taints_policy));
    h.put(spread_pod("web-7", taints_policy));
    h
}

#[test]
fn dead_zone_with_taints_policy_ignore_keeps_replacements_pending() {
    let mut h = lose_zone_a(None);
    assert_eq!(node_of(&h, "web-6"), None);
    assert_eq!(node_of(&h, "web-7"), None);
    let expected = "0/6 nodes are available: 2 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, \
                    4 node(s) didn't match pod topology spread constraints. preemption: 0/6 nodes are available: \
                    2 Preemption is not helpful for scheduling, 4 No preemption victims found for incoming pod.";
    assert_eq!(
        scheduled_condition(&h, "web-6"),
        Some(("False".into(), "Unschedulable".into(), expected.into()))
    );
    h.advance(Duration::from_millis(15 * 60 * 1000));
    assert_eq!(
        node_of(&h, "web-6"),
        None,
        "still pending (kubernetes#116978)"
    );
    assert_eq!(status_writes(&h), 2);
    assert_eq!(per_zone(&h, "web"), zones(&[("b", 2), ("c", 2)]));
}

#[test]
fn dead_zone_with_taints_policy_honor_schedules_into_live_zones() {
    let h = lose_zone_a(Some("Honor"));
    assert_eq!(per_zone(&h, "web"), zones(&[("b", 3), ("c", 3)]));
    assert_eq!(status_writes(&h), 0);
}

#[test]
fn required_anti_affinity_on_hostname() {
    let mut h = harness(vec![
        node("n1", "a", "4"),
        node("n2", "b", "4"),
        node("n3", "c", "4"),
    ]);
    for i in 0..4 {
        h.put(anti_affinity_pod(
            &format!("db-{i}"),
            "kubernetes.io/hostname",
        ));
    }
    let placed: std::collections::BTreeSet<_> = (0..3)
        .filter_map(|i| node_of(&h, &format!("db-{i}")))
        .collect();
    assert_eq!(placed.len(), 3, "one per node");
    let expected = "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. preemption: \
                    0/3 nodes are available: 3 No preemption victims found for incoming pod.";
    assert_eq!(
        scheduled_condition(&h, "db-3").map(|c| c.2).as_deref(),
        Some(expected)
    );
    // Symmetry: a plain pod matching the existing pods' terms is kept off their nodes too.
    h.put(object(pod_json("db-plain", "db", "100m")));
    let expected = "0/3 nodes are available: 3 node(s) didn't satisfy existing pods anti-affinity rules. \
                    preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.";
    assert_eq!(
        scheduled_condition(&h, "db-plain").map(|c| c.2).as_deref(),
        Some(expected)
    );
    h.put(object(pod_json("other", "web", "100m")));
    assert!(node_of(&h, "other").is_some());
}

#[test]
fn assumed_pod_counts_until_observed_and_is_not_double_counted() {
    let mut api = FakeApi::new();
    api.put(node("n1", "a", "1"), T0);
    api.put(object(pod_json("a", "x", "600m")), T0);
    let mut s = Scheduler::new(SchedulerConfig::default());
    s.handle_synced(&api.cache, T0);
    let mut out = Vec::new();
    out.extend(std::iter::from_fn(|| s.poll_action()));
    assert_eq!(
        out,
        vec![Action::Bind {
            pod: key("a"),
            node: "n1".into()
        }]
    );
    assert_eq!(s.assumed(), 1);
    // While the bind is in flight, the assumed pod's 600m counts.
    let change = api.put(object(pod_json("b", "x", "500m")), T0);
    s.handle_change(&api.cache, &change, T0);
    let mut out = Vec::new();
    out.extend(std::iter::from_fn(|| s.poll_action()));
    assert!(matches!(&out[..], [Action::UpdateStatus(_)]), "{out:?}");
    // The bind is observed: the assumed pod is forgotten, its usage counted once.
    let changes = api
        .execute(
            &Action::Bind {
                pod: key("a"),
                node: "n1".into(),
            },
            T0,
        )
        .unwrap();
    for c in &changes {
        s.handle_change(&api.cache, c, T0);
    }
    assert_eq!(s.assumed(), 0);
    let change = api.put(object(pod_json("c", "x", "400m")), T0);
    s.handle_change(&api.cache, &change, T0);
    let mut out = Vec::new();
    out.extend(std::iter::from_fn(|| s.poll_action()));
    assert_eq!(
        out,
        vec![Action::Bind {
            pod: key("c"),
            node: "n1".into()
        }],
        "600m + 400m fits 1 cpu exactly"
    );
}

#[test]
fn failed_bind_forgets_the_assumed_pod_and_retries() {
    let mut api = FakeApi::new();
    api.put(node("n1", "a", "1"), T0);
    api.put(object(pod_json("a", "x", "600m")), T0);
    let mut s = Scheduler::new(SchedulerConfig::default());
    s.handle_synced(&api.cache, T0);
    let mut out = Vec::new();
    out.extend(std::iter::from_fn(|| s.poll_action()));
    s.handle_write_failed(&out[0], &crate::WriteError::Other("timeout".into()), T0);
    assert_eq!(s.assumed(), 0);
    assert_eq!(
        s.poll_timeout(),
        Some(T0 + Duration::from_millis(1000)),
        "initial backoff"
    );
    s.handle_timeout(&api.cache, T0 + Duration::from_millis(1000));
    let mut out = Vec::new();
    out.extend(std::iter::from_fn(|| s.poll_action()));
    assert_eq!(
        out,
        vec![Action::Bind {
            pod: key("a"),
            node: "n1".into()
        }]
    );
}

#[test]
fn pods_for_other_schedulers_or_gated_are_left_alone() {
    let mut h = harness(vec![node("n1", "a", "4")]);
    let mut other = pod_json("other", "x", "100m");
    other["spec"]["schedulerName"] = json!("my-scheduler");
    h.put(object(other));
    let mut gated = pod_json("gated", "x", "100m");
    gated["spec"]["schedulingGates"] = json!([{"name": "wait"}]);
    h.put(object(gated));
    assert_eq!(node_of(&h, "other"), None);
    assert_eq!(node_of(&h, "gated"), None);
    assert!(h.write_counts().is_empty());
}

#[test]
fn binding_and_failures_record_upstream_events() {
    let mut h = harness(vec![node("a1", "a", "1"), dead_node("b1", "b")]);
    h.put(object(pod_json("fits", "web", "500m")));
    h.put(object(pod_json("too-big", "web", "2")));
    let scheduled: Vec<_> = h
        .events
        .iter()
        .filter(|e| e.reason == "Scheduled")
        .collect();
    assert_eq!(scheduled.len(), 1);
    assert_eq!(
        scheduled[0].message,
        "Successfully assigned default/fits to a1"
    );
    assert_eq!(scheduled[0].component, "default-scheduler");
    assert_eq!(scheduled[0].involved.name.as_deref(), Some("fits"));
    let failed: Vec<_> = h
        .events
        .iter()
        .filter(|e| e.reason == "FailedScheduling")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].type_, crate::events::EventType::Warning);
    assert!(
        failed[0].message.starts_with("0/2 nodes are available: "),
        "{}",
        failed[0].message
    );
    assert!(
        failed[0].message.contains("Insufficient cpu"),
        "{}",
        failed[0].message
    );
}
