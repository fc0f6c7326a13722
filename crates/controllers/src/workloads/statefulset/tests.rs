//! StatefulSet controller behaviour in virtual time: ordered start, Parallel, reverse
//! scale-down, rolling update with a partition, OnDelete, failed pods, history, and the
//! Terminating trap of a pod on a dead node. A tiny fake kubelet per node makes pods Running and
//! Ready and confirms graceful deletions, unless its node is dead.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus};
use serde_json::json;

use super::pods::{POD_INDEX_LABEL, POD_NAME_LABEL, REVISION_LABEL, revision_of};
use super::*;
use crate::fake::{Harness, object};
use crate::time::to_time;

fn statefulset(replicas: i32, policy: &str, strategy: serde_json::Value) -> Object {
    object(json!({
        "kind": "StatefulSet", "apiVersion": "apps/v1",
        "metadata": {"name": "web", "namespace": "default", "generation": 1},
        "spec": {
            "replicas": replicas,
            "serviceName": "web",
            "podManagementPolicy": policy,
            "updateStrategy": strategy,
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "c", "image": "db:1"}]}}
        }
    }))
}

fn rolling(partition: i32) -> serde_json::Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"partition": partition}})
}

fn harness(set: Object) -> Harness {
    let mut h = Harness::new(vec![Box::new(StatefulSetController::new(
        StatefulSetConfig::default(),
    ))]);
    h.start();
    h.put(set);
    h
}

fn key(name: &str) -> Key {
    Key::new("default", name)
}

fn get_set(h: &Harness) -> Arc<StatefulSet> {
    h.api.cache.stateful_sets[&key("web")].clone()
}

fn edit_set(h: &mut Harness, f: impl FnOnce(&mut StatefulSet)) {
    let mut s = (*get_set(h)).clone();
    f(&mut s);
    s.metadata.generation = Some(s.metadata.generation.unwrap_or(0) + 1);
    h.put(Object::StatefulSet(Arc::new(s)));
}

fn status(h: &Harness) -> StatefulSetStatus {
    get_set(h).status.clone().unwrap_or_default()
}

fn pod(h: &Harness, name: &str) -> Option<Arc<Pod>> {
    h.api.cache.pods.get(&key(name)).cloned()
}

fn names(h: &Harness) -> Vec<String> {
    h.api.cache.pods.keys().map(|k| k.name.clone()).collect()
}

fn terminating(h: &Harness) -> Vec<String> {
    h.api
        .cache
        .pods
        .values()
        .filter(|p| p.metadata.deletion_timestamp.is_some())
        .map(|p| p.metadata.name.clone().unwrap_or_default())
        .collect()
}

fn image(p: &Pod) -> String {
    p.spec.as_ref().unwrap().containers[0]
        .image
        .clone()
        .unwrap_or_default()
}

/// The node a pod lands on: ordinal modulo 3 (the fake scheduler).
fn node_for(p: &Pod) -> String {
    let ord = p.metadata.labels.as_ref().unwrap()[POD_INDEX_LABEL].clone();
    format!("node-{}", ord.parse::<usize>().unwrap() % 3)
}

fn set_ready(h: &mut Harness, p: &Pod, node: &str, ready: bool) {
    let mut p = p.clone();
    p.spec.get_or_insert_with(Default::default).node_name = Some(node.to_string());
    p.status = Some(PodStatus {
        phase: Some("Running".into()),
        pod_ip: Some("10.0.0.1".into()),
        conditions: Some(vec![PodCondition {
            type_: "Ready".into(),
            status: if ready { "True" } else { "False" }.into(),
            last_transition_time: Some(to_time(h.now)),
            ..Default::default()
        }]),
        ..Default::default()
    });
    h.put(Object::Pod(Arc::new(p)));
}

/// One round of every live node's kubelet: confirm graceful deletions, start new pods. Pods on
/// a node in `dead` are left exactly as they are.
fn kubelet(h: &mut Harness, dead: &[&str]) {
    let all: Vec<Arc<Pod>> = h.api.cache.pods.values().cloned().collect();
    for p in &all {
        let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
        let node = node.unwrap_or_else(|| node_for(p));
        if dead.contains(&node.as_str()) {
            continue;
        }
        if p.metadata.deletion_timestamp.is_some() {
            h.remove(Kind::Pod, &Key::of(&p.metadata));
        } else if !crate::pod_is_ready(p) {
            set_ready(h, p, &node, true);
        }
    }
}

/// Run the kubelets until nothing changes (bounded).
fn converge(h: &mut Harness, dead: &[&str]) {
    for _ in 0..50 {
        let before = h.api.log.len();
        let pods_before: Vec<_> = h.api.cache.pods.values().cloned().collect();
        kubelet(h, dead);
        let pods_after: Vec<_> = h.api.cache.pods.values().cloned().collect();
        if h.api.log.len() == before && pods_before == pods_after {
            return;
        }
    }
    panic!("did not converge");
}

fn event_messages(h: &Harness) -> Vec<String> {
    h.events
        .iter()
        .map(|e| format!("{} {}", e.reason, e.message))
        .collect()
}

#[test]
fn ordered_ready_creates_one_pod_at_a_time_with_stable_identity() {
    let mut h = harness(statefulset(3, "OrderedReady", rolling(0)));
    assert_eq!(
        names(&h),
        vec!["web-0"],
        "only the first ordinal before it is Ready"
    );
    let p0 = pod(&h, "web-0").unwrap();
    let labels = p0.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[POD_NAME_LABEL], "web-0");
    assert_eq!(labels[POD_INDEX_LABEL], "0");
    assert_eq!(labels["app"], "web");
    let spec = p0.spec.as_ref().unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("web-0"));
    assert_eq!(spec.subdomain.as_deref(), Some("web"));
    let owner = &p0.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("StatefulSet", Some(true))
    );
    let revs: Vec<_> = h.api.cache.controller_revisions.values().cloned().collect();
    assert_eq!(revs.len(), 1);
    assert_eq!(revs[0].revision, 1);
    assert_eq!(
        labels[REVISION_LABEL],
        revs[0].metadata.name.clone().unwrap()
    );
    assert_eq!(
        event_messages(&h),
        vec!["SuccessfulCreate create Pod web-0 in StatefulSet web successful"]
    );

    // Running but not Ready: still waiting.
    set_ready(&mut h, &p0, "node-0", false);
    assert_eq!(names(&h), vec!["web-0"]);
    let p0 = pod(&h, "web-0").unwrap();
    set_ready(&mut h, &p0, "node-0", true);
    assert_eq!(names(&h), vec!["web-0", "web-1"]);
    converge(&mut h, &[]);
    assert_eq!(names(&h), vec!["web-0", "web-1", "web-2"]);
    let st = status(&h);
    assert_eq!(st.replicas, 3);
    assert_eq!(st.ready_replicas, Some(3));
    assert_eq!(st.available_replicas, Some(3));
    assert_eq!(st.current_replicas, Some(3));
    assert_eq!(st.updated_replicas, Some(3));
    assert_eq!(st.observed_generation, Some(1));
    assert_eq!(st.current_revision, st.update_revision);
    assert_eq!(st.current_revision, revs[0].metadata.name);
}

#[test]
fn parallel_creates_every_pod_at_once() {
    let h = harness(statefulset(3, "Parallel", rolling(0)));
    assert_eq!(names(&h), vec!["web-0", "web-1", "web-2"]);
}

#[test]
fn scale_down_removes_the_highest_ordinal_first_and_waits_for_it() {
    let mut h = harness(statefulset(3, "OrderedReady", rolling(0)));
    converge(&mut h, &[]);
    edit_set(&mut h, |s| s.spec.as_mut().unwrap().replicas = Some(1));
    assert_eq!(
        terminating(&h),
        vec!["web-2"],
        "one at a time, highest first"
    );
    // web-2's kubelet has not confirmed yet: web-1 stays.
    h.advance(Duration::from_millis(10_000));
    assert_eq!(terminating(&h), vec!["web-2"]);
    converge(&mut h, &[]);
    assert_eq!(names(&h), vec!["web-0"]);
    let deletes: Vec<String> = event_messages(&h)
        .into_iter()
        .filter(|m| m.starts_with("SuccessfulDelete"))
        .collect();
    assert_eq!(
        deletes,
        vec![
            "SuccessfulDelete delete Pod web-2 in StatefulSet web successful",
            "SuccessfulDelete delete Pod web-1 in StatefulSet web successful",
        ]
    );
    assert_eq!(status(&h).replicas, 1);
}

#[test]
fn rolling_update_goes_down_to_the_partition_one_pod_at_a_time() {
    let mut h = harness(statefulset(3, "OrderedReady", rolling(1)));
    converge(&mut h, &[]);
    let old_rev = status(&h).current_revision.unwrap();
    edit_set(&mut h, |s| {
        s.spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .containers[0]
            .image = Some("db:2".into());
    });
    let new_rev = status(&h).update_revision.unwrap();
    assert_ne!(old_rev, new_rev);
    assert_eq!(h.api.cache.controller_revisions.len(), 2);
    assert_eq!(terminating(&h), vec!["web-2"], "highest ordinal first");
    // Recreated web-2 (new revision) is not Ready yet: web-1 waits.
    kubelet(&mut h, &["node-0", "node-1", "node-2"]); // nothing moves
    h.remove(Kind::Pod, &key("web-2"));
    let p2 = pod(&h, "web-2").unwrap();
    assert_eq!(revision_of(&p2), new_rev);
    assert_eq!(image(&p2), "db:2");
    assert!(terminating(&h).is_empty(), "waits for web-2 to be Ready");
    converge(&mut h, &[]);
    // Partition 1: web-0 keeps the old revision.
    assert_eq!(image(&pod(&h, "web-0").unwrap()), "db:1");
    assert_eq!(image(&pod(&h, "web-1").unwrap()), "db:2");
    let st = status(&h);
    assert_eq!(st.updated_replicas, Some(2));
    assert_eq!(st.current_replicas, Some(1));
    assert_eq!(st.current_revision.as_deref(), Some(old_rev.as_str()));
    // A pod below the partition that is deleted comes back at the current revision.
    h.api.cache.pods.get(&key("web-0")).cloned().unwrap();
    h.remove(Kind::Pod, &key("web-0"));
    assert_eq!(image(&pod(&h, "web-0").unwrap()), "db:1");
    converge(&mut h, &[]);
    // Lowering the partition finishes the rollout; the current revision follows.
    edit_set(&mut h, |s| {
        let ru = s.spec.as_mut().unwrap().update_strategy.as_mut().unwrap();
        ru.rolling_update.as_mut().unwrap().partition = Some(0);
    });
    converge(&mut h, &[]);
    assert_eq!(image(&pod(&h, "web-0").unwrap()), "db:2");
    let st = status(&h);
    assert_eq!(st.current_revision.as_deref(), Some(new_rev.as_str()));
    assert_eq!(st.current_replicas, Some(3));
    assert_eq!(st.updated_replicas, Some(3));
    assert_eq!(st.observed_generation, Some(3));
}

#[test]
fn on_delete_updates_only_pods_the_user_deletes() {
    let mut h = harness(statefulset(2, "OrderedReady", json!({"type": "OnDelete"})));
    converge(&mut h, &[]);
    edit_set(&mut h, |s| {
        s.spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .containers[0]
            .image = Some("db:2".into());
    });
    converge(&mut h, &[]);
    assert!(terminating(&h).is_empty());
    assert_eq!(image(&pod(&h, "web-1").unwrap()), "db:1");
    h.remove(Kind::Pod, &key("web-1"));
    assert_eq!(image(&pod(&h, "web-1").unwrap()), "db:2");
    converge(&mut h, &[]);
    let st = status(&h);
    assert_eq!(
        (st.updated_replicas, st.current_replicas),
        (Some(1), Some(1))
    );
    assert_ne!(st.current_revision, st.update_revision);
}

#[test]
fn a_failed_pod_is_deleted_and_recreated() {
    let mut h = harness(statefulset(1, "OrderedReady", rolling(0)));
    converge(&mut h, &[]);
    let mut p = (*pod(&h, "web-0").unwrap()).clone();
    let uid = p.metadata.uid.clone();
    p.status.as_mut().unwrap().phase = Some("Failed".into());
    h.put(Object::Pod(Arc::new(p)));
    assert!(event_messages(&h).contains(
        &"RecreatingFailedPod StatefulSet default/web is recreating failed Pod web-0".to_string()
    ));
    converge(&mut h, &[]);
    let p = pod(&h, "web-0").unwrap();
    assert_ne!(p.metadata.uid, uid);
    assert_eq!(status(&h).ready_replicas, Some(1));
}

#[test]
fn history_keeps_revision_history_limit_old_revisions() {
    let mut h = harness(statefulset(1, "OrderedReady", rolling(0)));
    edit_set(&mut h, |s| {
        s.spec.as_mut().unwrap().revision_history_limit = Some(1)
    });
    converge(&mut h, &[]);
    for img in ["db:2", "db:3", "db:4"] {
        edit_set(&mut h, |s| {
            s.spec
                .as_mut()
                .unwrap()
                .template
                .spec
                .as_mut()
                .unwrap()
                .containers[0]
                .image = Some(img.into());
        });
        converge(&mut h, &[]);
    }
    let revs: BTreeSet<i64> = h
        .api
        .cache
        .controller_revisions
        .values()
        .map(|r| r.revision)
        .collect();
    assert_eq!(revs, BTreeSet::from([3, 4]), "the live revision plus one");
    // Rolling back to an old template renumbers its revision instead of making a new one.
    edit_set(&mut h, |s| {
        s.spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .containers[0]
            .image = Some("db:3".into());
    });
    converge(&mut h, &[]);
    let revs: BTreeSet<i64> = h
        .api
        .cache
        .controller_revisions
        .values()
        .map(|r| r.revision)
        .collect();
    assert_eq!(revs, BTreeSet::from([4, 5]));
    assert_eq!(image(&pod(&h, "web-0").unwrap()), "db:3");
}

/// The trap (kubernetes#74689): the pod on a dead node is evicted (graceful delete), its
/// kubelet never confirms, and the StatefulSet neither replaces it nor moves on — until the
/// pod object is force-deleted.
#[test]
fn a_pod_terminating_on_a_dead_node_is_not_replaced_until_force_deleted() {
    let mut h = harness(statefulset(3, "OrderedReady", rolling(0)));
    converge(&mut h, &[]);
    let old_uid = pod(&h, "web-1").unwrap().metadata.uid.clone();
    // node-1 dies: the node lifecycle controller marks its pod not ready, the taint manager
    // deletes it gracefully.
    let p1 = pod(&h, "web-1").unwrap();
    set_ready(&mut h, &p1, "node-1", false);
    h.api
        .execute(
            &Action::Delete {
                kind: Kind::Pod,
                key: key("web-1"),
                uid: None,
                grace_period_seconds: None,
            },
            h.now,
        )
        .unwrap()
        .into_iter()
        .for_each(|c| {
            h.controllers[0].handle_change(&h.api.cache, &c, h.now);
        });
    h.settle();
    assert_eq!(terminating(&h), vec!["web-1"]);
    // Hours pass; the dead kubelet never confirms; asking for a fourth replica changes nothing.
    edit_set(&mut h, |s| s.spec.as_mut().unwrap().replicas = Some(4));
    for _ in 0..10 {
        h.advance(Duration::from_millis(3_600_000));
        converge(&mut h, &["node-1"]);
    }
    assert_eq!(
        names(&h),
        vec!["web-0", "web-1", "web-2"],
        "no replacement, no web-3"
    );
    assert_eq!(
        pod(&h, "web-1").unwrap().metadata.uid,
        old_uid,
        "same old object"
    );
    let st = status(&h);
    assert_eq!((st.replicas, st.ready_replicas), (3, Some(2)));
    // `kubectl delete pod web-1 --force --grace-period=0`: the object is gone at once, the
    // controller recreates web-1 (a new pod, same name) and then goes on to web-3.
    let forced = h
        .api
        .execute(
            &Action::Delete {
                kind: Kind::Pod,
                key: key("web-1"),
                uid: None,
                grace_period_seconds: Some(0),
            },
            h.now,
        )
        .unwrap();
    for c in &forced {
        h.controllers[0].handle_change(&h.api.cache, c, h.now);
    }
    h.settle();
    let new = pod(&h, "web-1").unwrap();
    assert_ne!(new.metadata.uid, old_uid);
    assert!(new.metadata.deletion_timestamp.is_none());
    // The replacement lands on a live node (the scheduler's job; here node-0) and the set heals.
    set_ready(&mut h, &new, "node-0", true);
    converge(&mut h, &["node-1"]);
    assert_eq!(names(&h), vec!["web-0", "web-1", "web-2", "web-3"]);
    assert_eq!(status(&h).ready_replicas, Some(4));
}

/// While the informer lags, a sync never asks again for a pod or revision it already asked
/// for (live, the writes are in flight when the next event arrives).
#[test]
fn writes_in_flight_are_not_repeated() {
    let mut c = StatefulSetController::new(StatefulSetConfig::default());
    let mut api = crate::fake::FakeApi::new();
    let change = api.put(statefulset(3, "Parallel", rolling(0)), crate::fake::T0);
    c.handle_synced(&api.cache, crate::fake::T0);
    let mut first = Vec::new();
    first.extend(std::iter::from_fn(|| c.poll_action()));
    let creates = |v: &[Action]| v.iter().filter(|a| matches!(a, Action::Create(_))).count();
    assert_eq!(creates(&first), 4, "one revision and three pods: {first:?}");
    c.handle_change(
        &api.cache,
        &change,
        crate::fake::T0 + Duration::from_millis(1_000),
    );
    let mut second = Vec::new();
    second.extend(std::iter::from_fn(|| c.poll_action()));
    assert_eq!(creates(&second), 0, "{second:?}");
}

/// Upstream `ClaimPods`: an orphan named `<set>-<n>` that matches is adopted (not created
/// again); a controlled pod whose labels stop matching is released.
#[test]
fn orphans_are_adopted_and_pods_that_stop_matching_are_released() {
    let mut h = Harness::new(vec![Box::new(StatefulSetController::new(
        StatefulSetConfig::default(),
    ))]);
    h.start();
    // web-0 left behind by a set deleted with --cascade=orphan.
    h.put(object(json!({"kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": "web-0", "namespace": "default", "labels": {"app": "web"}},
        "spec": {"nodeName": "node-0", "containers": [{"name": "c", "image": "db:1"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})));
    let orphan_uid = pod(&h, "web-0").unwrap().metadata.uid.clone();
    h.put(statefulset(2, "OrderedReady", rolling(0)));
    let p0 = pod(&h, "web-0").unwrap();
    assert_eq!(p0.metadata.uid, orphan_uid, "adopted, not replaced");
    let owner = crate::workloads::util::controller_of(&p0.metadata).expect("owner");
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("StatefulSet", "web")
    );
    // Adopted and Ready: the set goes on to web-1.
    assert!(pod(&h, "web-1").is_some());
    converge(&mut h, &[]);
    // web-1 is relabelled out of the selector: released.
    let mut p1 = (*pod(&h, "web-1").unwrap()).clone();
    p1.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("app".into(), "debug".into());
    h.put(Object::Pod(Arc::new(p1)));
    let p1 = pod(&h, "web-1").unwrap();
    assert!(
        crate::workloads::util::controller_of(&p1.metadata).is_none(),
        "{p1:?}"
    );
}

/// Upstream `identityMatches`: a pod whose identity labels were removed gets them back, with
/// upstream's `SuccessfulUpdate` event.
#[test]
fn identity_labels_are_restored() {
    let mut h = harness(statefulset(1, "OrderedReady", rolling(0)));
    converge(&mut h, &[]);
    let mut p = (*pod(&h, "web-0").unwrap()).clone();
    let uid = p.metadata.uid.clone();
    p.metadata.labels.as_mut().unwrap().remove(POD_NAME_LABEL);
    h.put(Object::Pod(Arc::new(p)));
    let p = pod(&h, "web-0").unwrap();
    assert_eq!(p.metadata.uid, uid);
    assert_eq!(p.metadata.labels.as_ref().unwrap()[POD_NAME_LABEL], "web-0");
    assert!(
        event_messages(&h).contains(
            &"SuccessfulUpdate update Pod web-0 in StatefulSet web successful".to_string()
        )
    );
}
