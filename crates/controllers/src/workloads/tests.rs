//! Behaviour tests for the Deployment and ReplicaSet controllers in virtual time, with a tiny
//! fake kubelet that marks pods Running+Ready and finishes graceful deletions.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus};
use serde_json::json;

use super::deployment::util::{POD_TEMPLATE_HASH, REVISION};
use super::util::{controller_of, pod_is_active};
use super::*;
use crate::fake::{FakeApi, Harness, T0, object};
use crate::time::to_time;
use crate::{Action, Change, Controller, Key, Kind, Object, WriteError, pod_is_ready};

fn deployment(replicas: i32, image: &str, strategy: serde_json::Value) -> Object {
    object(json!({
        "kind": "Deployment", "apiVersion": "apps/v1",
        "metadata": {"name": "web", "namespace": "default", "generation": 1},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": strategy,
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "c", "image": image}]}}
        }
    }))
}

fn rolling() -> serde_json::Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
}

fn harness() -> Harness {
    let mut h = Harness::new(vec![
        Box::new(DeploymentController::new(DeploymentConfig::default())),
        Box::new(ReplicaSetController::new(ReplicaSetConfig::default())),
    ]);
    h.start();
    h
}

fn key(name: &str) -> Key {
    Key::new("default", name)
}

fn get_deploy(h: &Harness) -> Arc<Deployment> {
    h.api.cache.deployments[&key("web")].clone()
}

/// Edit the Deployment as a user would (bumping generation as the API server does).
fn edit_deploy(h: &mut Harness, f: impl FnOnce(&mut Deployment)) {
    let mut d = (*get_deploy(h)).clone();
    f(&mut d);
    d.metadata.generation = Some(d.metadata.generation.unwrap_or(0) + 1);
    h.put(Object::Deployment(Arc::new(d)));
}

fn replica_sets(h: &Harness) -> Vec<Arc<ReplicaSet>> {
    let mut v: Vec<_> = h.api.cache.replica_sets.values().cloned().collect();
    v.sort_by_key(|r| super::deployment::util::revision(r));
    v
}

fn pods(h: &Harness) -> Vec<Arc<Pod>> {
    h.api.cache.pods.values().cloned().collect()
}

fn active(h: &Harness) -> Vec<Arc<Pod>> {
    pods(h).into_iter().filter(|p| pod_is_active(p)).collect()
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// Mark one pod Running+Ready, bound to `node` (the fake kubelet).
fn make_ready(h: &mut Harness, pod: &Pod, node: &str) {
    let mut p = pod.clone();
    p.spec.get_or_insert_with(Default::default).node_name = Some(node.to_string());
    p.status = Some(PodStatus {
        phase: Some("Running".into()),
        pod_ip: Some("10.0.0.1".into()),
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

/// The kubelet: finish graceful deletions, then make up to `n` not-ready pods ready.
fn kubelet(h: &mut Harness, n: usize) {
    for p in pods(h) {
        if p.metadata.deletion_timestamp.is_some() {
            h.remove(Kind::Pod, &Key::of(&p.metadata));
        }
    }
    let unready: Vec<_> = active(h)
        .into_iter()
        .filter(|p| !pod_is_ready(p))
        .take(n)
        .collect();
    for (i, p) in unready.iter().enumerate() {
        make_ready(h, p, &format!("node-{}", i % 3));
    }
}

fn condition(d: &Deployment, type_: &str) -> (String, String) {
    let c = d
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_));
    c.map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()))
        .unwrap_or_default()
}

#[test]
fn deployment_creates_one_replicaset_and_its_pods() {
    let mut h = harness();
    h.put(deployment(6, "img:1", rolling()));
    let rss = replica_sets(&h);
    assert_eq!(rss.len(), 1);
    let rs = &rss[0];
    let hash = rs.metadata.labels.as_ref().unwrap()[POD_TEMPLATE_HASH].clone();
    assert_eq!(
        rs.metadata.name.as_deref(),
        Some(format!("web-{hash}").as_str())
    );
    assert_eq!(spec_replicas(rs), 6);
    let ann = rs.metadata.annotations.as_ref().unwrap();
    assert_eq!(ann[REVISION], "1");
    assert_eq!(ann["deployment.kubernetes.io/desired-replicas"], "6");
    assert_eq!(ann["deployment.kubernetes.io/max-replicas"], "8");
    assert_eq!(
        rs.spec
            .as_ref()
            .unwrap()
            .selector
            .match_labels
            .as_ref()
            .unwrap()[POD_TEMPLATE_HASH],
        hash
    );
    let owner = controller_of(&rs.metadata).unwrap();
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        (
            "Deployment",
            get_deploy(&h).metadata.uid.as_deref().unwrap()
        )
    );
    let ps = pods(&h);
    assert_eq!(ps.len(), 6);
    for p in &ps {
        assert!(
            p.metadata
                .name
                .as_deref()
                .unwrap()
                .starts_with(&format!("web-{hash}-"))
        );
        assert_eq!(p.metadata.labels.as_ref().unwrap()[POD_TEMPLATE_HASH], hash);
        let o = controller_of(&p.metadata).unwrap();
        assert_eq!(
            (o.api_version.as_str(), o.kind.as_str()),
            ("apps/v1", "ReplicaSet")
        );
        assert_eq!(o.uid, rs.metadata.uid.clone().unwrap());
        assert_eq!(o.block_owner_deletion, Some(true));
    }
    assert_eq!(h.write_counts()["create Pod"], 6);
    assert_eq!(
        get_deploy(&h).metadata.annotations.as_ref().unwrap()[REVISION],
        "1"
    );
}

#[test]
fn status_and_conditions_follow_availability() {
    let mut h = harness();
    h.put(deployment(6, "img:1", rolling()));
    let d = get_deploy(&h);
    let st = d.status.clone().unwrap();
    assert_eq!(
        (st.replicas, st.available_replicas, st.unavailable_replicas),
        (Some(6), Some(0), Some(6))
    );
    assert_eq!(st.observed_generation, Some(1));
    assert_eq!(
        condition(&d, "Available"),
        ("False".into(), "MinimumReplicasUnavailable".into())
    );
    assert_eq!(condition(&d, "Progressing").0, "True");
    kubelet(&mut h, 6);
    h.advance(Duration::from_millis(1000));
    let d = get_deploy(&h);
    let st = d.status.clone().unwrap();
    assert_eq!(st.replicas, Some(6));
    assert_eq!(st.updated_replicas, Some(6));
    assert_eq!(st.ready_replicas, Some(6));
    assert_eq!(st.available_replicas, Some(6));
    assert_eq!(st.unavailable_replicas, Some(0));
    assert_eq!(
        condition(&d, "Available"),
        ("True".into(), "MinimumReplicasAvailable".into())
    );
    assert_eq!(
        condition(&d, "Progressing"),
        ("True".into(), "NewReplicaSetAvailable".into())
    );
    let rs = &replica_sets(&h)[0];
    let rst = rs.status.clone().unwrap();
    assert_eq!(
        (rst.replicas, rst.ready_replicas, rst.available_replicas),
        (6, Some(6), Some(6))
    );
    assert_eq!(rst.fully_labeled_replicas, Some(6));
}

#[test]
fn progress_deadline_exceeded_when_pods_never_become_ready() {
    let mut h = harness();
    h.put(deployment(2, "img:1", rolling()));
    edit_deploy(&mut h, |d| {
        d.spec.as_mut().unwrap().progress_deadline_seconds = Some(60)
    });
    h.advance(Duration::from_millis(30_000));
    assert_eq!(condition(&get_deploy(&h), "Progressing").0, "True");
    h.advance(Duration::from_millis(40_000));
    assert_eq!(
        condition(&get_deploy(&h), "Progressing"),
        ("False".into(), "ProgressDeadlineExceeded".into())
    );
}

#[test]
fn min_ready_seconds_delays_availability_with_a_wakeup() {
    let mut h = harness();
    h.put(deployment(2, "img:1", rolling()));
    edit_deploy(&mut h, |d| {
        d.spec.as_mut().unwrap().min_ready_seconds = Some(10)
    });
    kubelet(&mut h, 2);
    h.advance(Duration::from_millis(5_000));
    let rs = &replica_sets(&h)[0];
    assert_eq!(rs.spec.as_ref().unwrap().min_ready_seconds, Some(10));
    assert_eq!(rs.status.as_ref().unwrap().available_replicas, Some(0));
    assert_eq!(rs.status.as_ref().unwrap().ready_replicas, Some(2));
    h.advance(Duration::from_millis(6_000));
    assert_eq!(
        replica_sets(&h)[0]
            .status
            .as_ref()
            .unwrap()
            .available_replicas,
        Some(2)
    );
    assert_eq!(
        get_deploy(&h).status.as_ref().unwrap().available_replicas,
        Some(2)
    );
}

#[test]
fn deleted_or_terminating_pods_are_replaced_at_once() {
    let mut h = harness();
    h.put(deployment(6, "img:1", rolling()));
    kubelet(&mut h, 6);
    let victim = pods(&h)[0].clone();
    h.remove(Kind::Pod, &Key::of(&victim.metadata));
    assert_eq!(active(&h).len(), 6);
    assert!(!h.api.cache.pods.contains_key(&Key::of(&victim.metadata)));
    // A graceful delete (eviction): deletionTimestamp set, pod still there.
    let mut terminating = (*pods(&h)[1]).clone();
    terminating.metadata.deletion_timestamp = Some(to_time(h.now + Duration::from_millis(30_000)));
    h.put(Object::Pod(Arc::new(terminating)));
    assert_eq!(active(&h).len(), 6);
    assert_eq!(pods(&h).len(), 7);
    assert_eq!(h.write_counts()["create Pod"], 8);
}

#[test]
fn scale_down_deletes_unscheduled_and_not_ready_pods_first() {
    let mut h = harness();
    h.put(deployment(6, "img:1", rolling()));
    let ps = pods(&h);
    for p in &ps[..3] {
        make_ready(&mut h, p, "node-a");
    }
    // One bound but not ready; two left unscheduled.
    let mut bound = (*ps[3]).clone();
    bound.spec.as_mut().unwrap().node_name = Some("node-b".into());
    h.put(Object::Pod(Arc::new(bound)));
    let ready: Vec<Key> = ps[..3].iter().map(|p| Key::of(&p.metadata)).collect();
    edit_deploy(&mut h, |d| d.spec.as_mut().unwrap().replicas = Some(3));
    let left: Vec<Key> = active(&h).iter().map(|p| Key::of(&p.metadata)).collect();
    assert_eq!(left, ready);
    assert_eq!(spec_replicas(&replica_sets(&h)[0]), 3);
    assert_eq!(replica_sets(&h).len(), 1, "scaling is not a rollout");
}

fn bump_image(h: &mut Harness, image: &str) {
    edit_deploy(h, |d| {
        d.spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .containers[0]
            .image = Some(image.into())
    });
}

#[test]
fn rolling_update_stays_within_surge_and_unavailability_bounds() {
    let mut h = harness();
    h.put(deployment(6, "img:1", rolling()));
    kubelet(&mut h, 6);
    h.advance(Duration::from_millis(1000));
    bump_image(&mut h, "img:2");
    // 25% of 6: maxSurge rounds up to 2, maxUnavailable rounds down to 1.
    let (max_pods, min_available) = (8, 5);
    let mut steps = 0;
    loop {
        let act = active(&h);
        let available = act.iter().filter(|p| pod_is_ready(p)).count();
        let total_spec: i32 = replica_sets(&h).iter().map(|r| spec_replicas(r)).sum();
        assert!(
            act.len() <= max_pods,
            "step {steps}: {} active pods",
            act.len()
        );
        assert!(
            total_spec <= max_pods as i32,
            "step {steps}: {total_spec} replicas"
        );
        assert!(
            available >= min_available,
            "step {steps}: {available} available"
        );
        let rss = replica_sets(&h);
        let done = rss.len() == 2
            && spec_replicas(&rss[0]) == 0
            && rss[1].status.as_ref().and_then(|s| s.available_replicas) == Some(6)
            && act.len() == 6;
        if done {
            break;
        }
        steps += 1;
        assert!(steps < 50, "rollout did not finish");
        kubelet(&mut h, 1);
        h.advance(Duration::from_millis(1000));
    }
    assert!(steps >= 6, "one pod ready per step: {steps} steps");
    let rss = replica_sets(&h);
    assert_eq!(rss[1].metadata.annotations.as_ref().unwrap()[REVISION], "2");
    assert_eq!(spec_replicas(&rss[1]), 6);
    let d = get_deploy(&h);
    assert_eq!(d.metadata.annotations.as_ref().unwrap()[REVISION], "2");
    assert_eq!(
        condition(&d, "Progressing"),
        ("True".into(), "NewReplicaSetAvailable".into())
    );
    let st = d.status.clone().unwrap();
    assert_eq!(
        (
            st.updated_replicas,
            st.available_replicas,
            st.observed_generation
        ),
        (Some(6), Some(6), Some(2))
    );
    let new_hash = &rss[1].metadata.labels.as_ref().unwrap()[POD_TEMPLATE_HASH];
    assert!(
        active(&h)
            .iter()
            .all(|p| &p.metadata.labels.as_ref().unwrap()[POD_TEMPLATE_HASH] == new_hash)
    );
}

#[test]
fn recreate_scales_old_to_zero_and_waits_for_pods_to_go() {
    let mut h = harness();
    h.put(deployment(3, "img:1", json!({"type": "Recreate"})));
    kubelet(&mut h, 3);
    h.advance(Duration::from_millis(1000));
    bump_image(&mut h, "img:2");
    let rss = replica_sets(&h);
    assert_eq!(
        rss.len(),
        1,
        "new ReplicaSet waits for old pods to terminate"
    );
    assert_eq!(spec_replicas(&rss[0]), 0);
    assert_eq!(pods(&h).len(), 3);
    assert!(active(&h).is_empty());
    kubelet(&mut h, 0); // finishes the deletions
    h.advance(Duration::from_millis(1000));
    let rss = replica_sets(&h);
    assert_eq!(rss.len(), 2);
    assert_eq!((spec_replicas(&rss[0]), spec_replicas(&rss[1])), (0, 3));
    assert_eq!(active(&h).len(), 3);
    kubelet(&mut h, 3);
    h.advance(Duration::from_millis(1000));
    assert_eq!(
        condition(&get_deploy(&h), "Progressing"),
        ("True".into(), "NewReplicaSetAvailable".into())
    );
}

#[test]
fn old_replicasets_beyond_history_limit_are_deleted() {
    let mut h = harness();
    h.put(deployment(2, "img:1", rolling()));
    edit_deploy(&mut h, |d| {
        d.spec.as_mut().unwrap().revision_history_limit = Some(1)
    });
    for i in 0..4 {
        kubelet(&mut h, 10);
        h.advance(Duration::from_millis(1000));
        kubelet(&mut h, 10);
        h.advance(Duration::from_millis(1000));
        bump_image(&mut h, &format!("img:{}", i + 2));
        for _ in 0..10 {
            kubelet(&mut h, 10);
            h.advance(Duration::from_millis(1000));
        }
    }
    let revs: Vec<String> = replica_sets(&h)
        .iter()
        .map(|r| r.metadata.annotations.as_ref().unwrap()[REVISION].clone())
        .collect();
    assert_eq!(revs, ["4", "5"]);
}

#[test]
fn scaling_mid_rollout_is_proportional() {
    let mut h = harness();
    h.put(deployment(10, "img:1", rolling()));
    kubelet(&mut h, 10);
    h.advance(Duration::from_millis(1000));
    bump_image(&mut h, "img:2");
    // Old 10 -> 8 after unavailable budget (2) ... new 3 (surge); none ready yet.
    let sizes: Vec<i32> = replica_sets(&h).iter().map(|r| spec_replicas(r)).collect();
    assert_eq!(sizes, [8, 5]);
    edit_deploy(&mut h, |d| d.spec.as_mut().unwrap().replicas = Some(20));
    let sizes: Vec<i32> = replica_sets(&h).iter().map(|r| spec_replicas(r)).collect();
    // Allowed 20 + 5 surge = 25, from 13: +12 split by size (8/13 and 5/13 of 25).
    assert_eq!(sizes.iter().sum::<i32>(), 25);
    assert_eq!(sizes, [15, 10]);
}

/// A driver that executes writes at once but delivers the resulting events only when asked,
/// like a slow watch.
struct SlowWatch {
    api: FakeApi,
    rsc: ReplicaSetController,
    pending: Vec<Change>,
    now: crate::Moment,
}

impl SlowWatch {
    fn pump(&mut self, fail_first_create: &mut bool) {
        let mut out = Vec::new();
        out.extend(std::iter::from_fn(|| self.rsc.poll_action()));
        for a in out {
            if *fail_first_create && matches!(a, Action::Create(_)) {
                *fail_first_create = false;
                self.rsc
                    .handle_write_failed(&a, &WriteError::Other("quota".into()), self.now);
                continue;
            }
            match self.api.execute(&a, self.now) {
                Ok(changes) => self.pending.extend(changes),
                Err(e) => self.rsc.handle_write_failed(&a, &e, self.now),
            }
        }
    }

    fn deliver_one(&mut self) -> bool {
        if self.pending.is_empty() {
            return false;
        }
        let c = self.pending.remove(0);
        self.rsc.handle_change(&self.api.cache, &c, self.now);
        true
    }

    /// An unrelated event that makes the controller look at the ReplicaSet again.
    fn poke(&mut self) {
        let rs = self.api.cache.replica_sets[&key("rs")].clone();
        let change = Change::Applied {
            new: Object::ReplicaSet(rs.clone()),
            old: Some(Object::ReplicaSet(rs)),
        };
        self.rsc.handle_change(&self.api.cache, &change, self.now);
    }
}

#[test]
fn no_duplicate_creates_when_writes_are_observed_late() {
    let rs = object(json!({
        "kind": "ReplicaSet", "metadata": {"name": "rs", "namespace": "default"},
        "spec": {"replicas": 5, "selector": {"matchLabels": {"app": "x"}},
                 // A container: the API refuses pods without one (upstream validation).
                 "template": {"metadata": {"labels": {"app": "x"}},
                              "spec": {"containers": [{"name": "c", "image": "i"}]}}}
    }));
    let mut w = SlowWatch {
        api: FakeApi::new(),
        rsc: ReplicaSetController::new(ReplicaSetConfig::default()),
        pending: Vec::new(),
        now: T0,
    };
    w.api.put(rs, T0);
    w.rsc.handle_synced(&w.api.cache, T0);
    let mut fail = true;
    w.pump(&mut fail);
    // 4 creates executed, 1 failed; nothing observed yet. Pokes must not create more.
    for _ in 0..3 {
        w.poke();
        w.pump(&mut fail);
    }
    assert_eq!(w.api.cache.pods.len(), 4);
    // Deliver events one by one, poking in between: still no extra creates until all four
    // are observed, then exactly one replacement for the failed create.
    while w.deliver_one() {
        w.poke();
        w.pump(&mut fail);
    }
    assert_eq!(w.api.cache.pods.len(), 5);
    let creates = w
        .api
        .log
        .iter()
        .filter(|(_, a)| matches!(a, Action::Create(Object::Pod(_))))
        .count();
    assert_eq!(creates, 5);
    // Same for deletes: scale to 2 and poke before the deletions are seen.
    let mut rs = (*w.api.cache.replica_sets[&key("rs")]).clone();
    rs.spec.as_mut().unwrap().replicas = Some(2);
    let c = w.api.put(Object::ReplicaSet(Arc::new(rs)), T0);
    w.rsc.handle_change(&w.api.cache, &c, T0);
    w.pump(&mut fail);
    w.poke();
    w.pump(&mut fail);
    while w.deliver_one() {
        w.poke();
        w.pump(&mut fail);
    }
    let deletes = w
        .api
        .log
        .iter()
        .filter(|(_, a)| matches!(a, Action::Delete { .. }))
        .count();
    assert_eq!(deletes, 3);
    assert_eq!(w.api.cache.pods.len(), 2);
}

/// The events of `reason`, as (involved kind/name, message).
fn events_of(h: &Harness, reason: &str) -> Vec<(String, String)> {
    h.events
        .iter()
        .filter(|e| e.reason == reason)
        .map(|e| {
            let i = &e.involved;
            let kind = i.kind.clone().unwrap_or_default();
            (
                format!("{kind}/{}", i.name.clone().unwrap_or_default()),
                e.message.clone(),
            )
        })
        .collect()
}

#[test]
fn scaling_records_upstream_events_on_the_deployment_and_replicaset() {
    let mut h = harness();
    h.put(deployment(3, "img:1", rolling()));
    let rs = replica_sets(&h)[0].metadata.name.clone().unwrap();
    assert_eq!(
        events_of(&h, "ScalingReplicaSet"),
        vec![(
            "Deployment/web".into(),
            format!("Scaled up replica set {rs} from 0 to 3")
        )]
    );
    let created = events_of(&h, "SuccessfulCreate");
    let mut want: Vec<(String, String)> = pods(&h)
        .iter()
        .map(|p| {
            let name = p.metadata.name.clone().unwrap();
            (format!("ReplicaSet/{rs}"), format!("Created pod: {name}"))
        })
        .collect();
    want.sort();
    let mut got = created.clone();
    got.sort();
    assert_eq!(got, want);
    let deploy_event = h
        .events
        .iter()
        .find(|e| e.reason == "ScalingReplicaSet")
        .unwrap();
    assert_eq!(deploy_event.component, "deployment-controller");
    assert_eq!(
        deploy_event.involved.api_version.as_deref(),
        Some("apps/v1")
    );
    assert_eq!(deploy_event.involved.uid, get_deploy(&h).metadata.uid);

    h.events.clear();
    edit_deploy(&mut h, |d| d.spec.as_mut().unwrap().replicas = Some(1));
    assert_eq!(
        events_of(&h, "ScalingReplicaSet"),
        vec![(
            "Deployment/web".into(),
            format!("Scaled down replica set {rs} from 3 to 1")
        )]
    );
    let deleted = events_of(&h, "SuccessfulDelete");
    assert_eq!(deleted.len(), 2, "{deleted:?}");
    assert!(
        deleted
            .iter()
            .all(|(o, m)| o == &format!("ReplicaSet/{rs}") && m.starts_with("Deleted pod: "))
    );
    assert!(
        h.events
            .iter()
            .all(|e| e.type_ == crate::events::EventType::Normal)
    );
}

#[test]
fn a_resync_before_the_write_lands_announces_a_scale_once() {
    let mut api = FakeApi::new();
    let change = api.put(deployment(3, "img:1", rolling()), T0);
    let mut dc = DeploymentController::new(DeploymentConfig::default());
    dc.handle_synced(&api.cache, T0);
    dc.handle_change(&api.cache, &change, T0 + Duration::from_millis(1));
    let mut events = Vec::new();
    events.extend(std::iter::from_fn(|| dc.poll_event()));
    let scaled: Vec<&str> = events
        .iter()
        .filter(|e| e.reason == "ScalingReplicaSet")
        .map(|e| e.message.as_str())
        .collect();
    assert_eq!(scaled.len(), 1, "{scaled:?}");
}
