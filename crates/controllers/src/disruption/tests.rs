//! The disruption controller in virtual time through the sans-IO struct and the fake API.

use std::sync::Arc;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_json::{Value, json};

use super::*;
use crate::fake::{Harness, T0, object};
use crate::time::to_time;

fn harness() -> Harness {
    Harness::new(vec![Box::new(DisruptionController::new(
        DisruptionConfig::default(),
    ))])
}

fn pod(name: &str, ready: bool, owner: Option<Value>) -> Object {
    let mut p = json!({"kind": "Pod", "metadata": {"name": name, "namespace": "default",
            "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "i"}], "nodeName": "n1"},
        "status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
    if let Some(o) = owner {
        p["metadata"]["ownerReferences"] = json!([o]);
    }
    object(p)
}

fn pdb(spec: Value, generation: i64) -> Object {
    let mut spec = spec;
    spec["selector"] = json!({"matchLabels": {"app": "web"}});
    object(
        json!({"kind": "PodDisruptionBudget", "apiVersion": "policy/v1",
        "metadata": {"name": "web", "namespace": "default", "generation": generation},
        "spec": spec}),
    )
}

/// An external write, then the controller's due work (it syncs on its next tick, as live).
fn put(h: &mut Harness, obj: Object) {
    h.put(obj);
    h.advance(Duration::ZERO);
}

fn status(h: &Harness) -> PodDisruptionBudgetStatus {
    let Some(Object::PodDisruptionBudget(p)) = h
        .api
        .get(Kind::PodDisruptionBudget, &Key::new("default", "web"))
    else {
        panic!("pdb missing");
    };
    p.status.clone().expect("status")
}

fn condition(s: &PodDisruptionBudgetStatus) -> (String, String) {
    let c = s
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == DISRUPTION_ALLOWED)
        .expect("condition");
    (c.status.clone(), c.reason.clone())
}

use crate::Kind;

#[test]
fn min_available_counts_ready_pods() {
    let mut h = harness();
    for (name, ready) in [("a", true), ("b", true), ("c", false)] {
        put(&mut h, pod(name, ready, None));
    }
    put(&mut h, pdb(json!({"minAvailable": 1}), 1));
    h.start();
    h.advance(Duration::ZERO);
    let s = status(&h);
    assert_eq!(
        (
            s.current_healthy,
            s.desired_healthy,
            s.expected_pods,
            s.disruptions_allowed
        ),
        (2, 1, 3, 1)
    );
    assert_eq!(s.observed_generation, Some(1));
    assert_eq!(
        condition(&s),
        ("True".to_string(), SUFFICIENT_PODS.to_string())
    );
    // A pod turning unready takes the allowance away.
    put(&mut h, pod("a", false, None));
    let s = status(&h);
    assert_eq!((s.current_healthy, s.disruptions_allowed), (1, 0));
    assert_eq!(
        condition(&s),
        ("False".to_string(), INSUFFICIENT_PODS.to_string())
    );
}

#[test]
fn percentages_scale_by_the_deployment_behind_the_pods() {
    let mut h = harness();
    put(
        &mut h,
        object(json!({"kind": "Deployment", "apiVersion": "apps/v1",
        "metadata": {"name": "web", "namespace": "default", "uid": "d1"},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}}})),
    );
    let Some(Object::Deployment(d)) = h.api.get(Kind::Deployment, &Key::new("default", "web"))
    else {
        panic!("deployment");
    };
    let duid = d.metadata.uid.clone().unwrap_or_default();
    put(
        &mut h,
        object(json!({"kind": "ReplicaSet", "apiVersion": "apps/v1",
        "metadata": {"name": "web-1", "namespace": "default",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": duid, "controller": true}]},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}}}})),
    );
    let Some(Object::ReplicaSet(rs)) = h.api.get(Kind::ReplicaSet, &Key::new("default", "web-1"))
    else {
        panic!("rs");
    };
    let owner = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1",
        "uid": rs.metadata.uid.clone().unwrap_or_default(), "controller": true});
    for name in ["a", "b", "c"] {
        put(&mut h, pod(name, true, Some(owner.clone())));
    }
    put(&mut h, pdb(json!({"maxUnavailable": "25%"}), 1));
    h.start();
    h.advance(Duration::ZERO);
    let s = status(&h);
    // 25% of 4 rounds up to 1: desired 3, three ready pods → no disruption allowed.
    assert_eq!(
        (
            s.expected_pods,
            s.desired_healthy,
            s.current_healthy,
            s.disruptions_allowed
        ),
        (4, 3, 3, 0)
    );
    put(&mut h, pod("d", true, Some(owner)));
    assert_eq!(status(&h).disruptions_allowed, 1);
}

#[test]
fn an_unknown_controller_fails_safe() {
    let mut h = harness();
    let owner = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "s1", "controller": true});
    put(&mut h, pod("a", true, Some(owner)));
    put(&mut h, pdb(json!({"minAvailable": "50%"}), 1));
    h.start();
    h.advance(Duration::ZERO);
    let s = status(&h);
    assert_eq!(s.disruptions_allowed, 0);
    let c = s.conditions.iter().flatten().next().expect("condition");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", SYNC_FAILED)
    );
    assert_eq!(c.message, "found no controllers for pod \"a\"");
}

#[test]
fn disrupted_pods_stop_counting_until_the_deletion_timeout() {
    let mut h = harness();
    for name in ["a", "b", "c"] {
        put(&mut h, pod(name, true, None));
    }
    put(&mut h, pdb(json!({"maxUnavailable": 1}), 1));
    h.start();
    h.advance(Duration::ZERO);
    // maxUnavailable with bare pods: the expected count comes from controllers only.
    assert_eq!(status(&h).expected_pods, 0);
    assert_eq!(status(&h).disruptions_allowed, 0);
    let Some(Object::PodDisruptionBudget(p)) = h
        .api
        .get(Kind::PodDisruptionBudget, &Key::new("default", "web"))
    else {
        panic!("pdb");
    };
    // What the eviction subresource writes: one disruption taken, the pod recorded.
    let mut evicted = (*p).clone();
    evicted.spec = Some(
        serde_json::from_value(json!({"minAvailable": 1,
        "selector": {"matchLabels": {"app": "web"}}}))
        .expect("spec"),
    );
    evicted.metadata.generation = Some(2);
    let st = evicted.status.get_or_insert_with(Default::default);
    st.disrupted_pods = Some([("a".to_string(), to_time(T0))].into_iter().collect());
    put(&mut h, Object::PodDisruptionBudget(Arc::new(evicted)));
    let s = status(&h);
    // "a" is still ready but about to go: healthy 2, desired 1.
    assert_eq!((s.current_healthy, s.disruptions_allowed), (2, 1));
    assert_eq!(s.observed_generation, Some(2));
    assert!(
        s.disrupted_pods
            .as_ref()
            .is_some_and(|m| m.contains_key("a"))
    );
    // Two minutes later "a" was never deleted: it counts again and leaves the map.
    h.advance(DisruptionConfig::default().deletion_timeout_ms + Duration::from_millis(1));
    let s = status(&h);
    assert_eq!((s.current_healthy, s.disruptions_allowed), (3, 2));
    assert_eq!(s.disrupted_pods, None);
}

#[test]
fn an_unchanged_budget_is_not_rewritten() {
    let mut h = harness();
    put(&mut h, pod("a", true, None));
    put(&mut h, pdb(json!({"minAvailable": 0}), 1));
    h.start();
    h.advance(Duration::ZERO);
    let before = h.write_counts();
    // No change: no write.
    put(&mut h, pod("a", true, None));
    assert_eq!(h.write_counts(), before);
    assert_eq!(status(&h).disruptions_allowed, 1);
    assert!(h.failures.is_empty());
}

#[test]
fn compute_is_pure_and_reports_no_change_when_current() {
    let mut h = harness();
    put(&mut h, pod("a", true, None));
    put(&mut h, pdb(json!({"minAvailable": 1}), 1));
    h.start();
    h.advance(Duration::ZERO);
    let Some(Object::PodDisruptionBudget(p)) = h
        .api
        .get(Kind::PodDisruptionBudget, &Key::new("default", "web"))
    else {
        panic!("pdb");
    };
    let c = compute_status(
        &h.api.cache,
        &p,
        Duration::from_millis(120_000),
        h.now + Duration::from_millis(5_000),
    );
    assert_eq!(
        c,
        Computed {
            status: None,
            recheck_at: None
        }
    );
    let _: &PodDisruptionBudget = &p;
}
