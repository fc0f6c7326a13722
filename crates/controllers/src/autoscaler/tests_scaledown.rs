//! Scale-down in virtual time against upstream's rules: unneeded time, unready time, min
//! size, pods that must move, pods that block, the cool-down after a scale-up.

use std::time::Duration;

use serde_json::json;

use super::scaledown::Unremovable;
use super::testworld::World;
use super::{AutoscalerAction, AutoscalerConfig, CloudAction};
use crate::fake::T0;
use crate::{Action, Object};

fn deletes(w: &World) -> Vec<(i64, String, Vec<String>)> {
    w.cloud_calls()
        .into_iter()
        .filter_map(|(t, c)| match c {
            CloudAction::DeleteNodes { group, nodes } => {
                Some((t.saturating_since(T0).as_secs() as i64, group, nodes))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn empty_nodes_go_after_the_unneeded_time_in_one_bulk_delete() {
    let mut w = World::new(AutoscalerConfig::default(), &[("ng-a", "zone-a", 1, 5, 3)]);
    w.bound_pod("busy", "web", "ng-a-1", "3");
    w.run(10 * 60);
    assert!(
        deletes(&w).is_empty(),
        "not before 10 min: {:?}",
        deletes(&w)
    );
    assert!(w.ca.unneeded_since().contains_key("ng-a-2"));
    assert!(!w.ca.unneeded_since().contains_key("ng-a-1"));
    assert_eq!(
        w.ca.last_scan().scale_down.unremovable.get("ng-a-1"),
        Some(&Unremovable::NotUnderutilized)
    );
    assert!(
        w.status.contains("status: \"CandidatesPresent\""),
        "{}",
        w.status
    );
    // First scan at 1 s: unneeded since then, removed at 601 s.
    w.run(20);
    assert_eq!(
        deletes(&w),
        vec![(601, "ng-a".into(), vec!["ng-a-2".into(), "ng-a-3".into()])]
    );
    assert_eq!(w.cache.nodes.len(), 1);
}

#[test]
fn scale_down_never_goes_below_min_size() {
    let mut w = World::new(AutoscalerConfig::default(), &[("ng-a", "zone-a", 2, 5, 3)]);
    w.run(30 * 60);
    let d = deletes(&w);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].2.len(), 1);
    assert_eq!(w.cache.nodes.len(), 2);
}

#[test]
fn an_underused_node_is_drained_when_its_pods_fit_elsewhere() {
    let mut w = World::new(AutoscalerConfig::default(), &[("ng-a", "zone-a", 1, 5, 2)]);
    w.bound_pod("a", "web", "ng-a-1", "1");
    w.bound_pod("b", "web", "ng-a-2", "1");
    w.run(601);
    assert_eq!(
        deletes(&w),
        vec![(601, "ng-a".into(), vec!["ng-a-1".into()])]
    );
    // Tainted, then its pod evicted, before the cloud call.
    let writes: Vec<&AutoscalerAction> = w
        .actions
        .iter()
        .filter(|(t, a)| {
            *t == T0 + Duration::from_millis(601_000)
                && !matches!(a, AutoscalerAction::WriteStatus(_))
        })
        .map(|(_, a)| a)
        .collect();
    match writes.as_slice() {
        [
            AutoscalerAction::Api(Action::Update(Object::Node(n))),
            AutoscalerAction::Api(Action::Delete { key, .. }),
            AutoscalerAction::Cloud(CloudAction::DeleteNodes { .. }),
        ] => {
            let taints = n
                .spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .expect("taints");
            assert_eq!(taints[0].key, "ToBeDeletedByClusterAutoscaler");
            assert_eq!(taints[0].effect, "NoSchedule");
            assert_eq!(key.name, "a");
        }
        other => panic!("unexpected writes {other:?}"),
    }
    assert_eq!(
        w.events_of("ScaleDown"),
        vec![
            (
                "ng-a-1".to_string(),
                "marked the node as toBeDeleted/unschedulable".to_string()
            ),
            (
                "a".to_string(),
                "deleting pod for node scale down".to_string()
            ),
        ]
    );
}

#[test]
fn pods_without_a_controller_or_marked_not_safe_block_removal() {
    let mut w = World::new(AutoscalerConfig::default(), &[("ng-a", "zone-a", 1, 5, 3)]);
    w.bound_pod("keep", "web", "ng-a-1", "1");
    w.bound_pod("bare", "web", "ng-a-2", "1");
    w.bound_pod("pinned", "web", "ng-a-3", "1");
    let mut v =
        serde_json::to_value(&*w.cache.pods[&crate::Key::new("default", "bare")]).expect("pod");
    v["kind"] = json!("Pod");
    v["metadata"]["ownerReferences"] = json!(null);
    w.cache.apply(crate::fake::object(v), false);
    let mut v =
        serde_json::to_value(&*w.cache.pods[&crate::Key::new("default", "pinned")]).expect("pod");
    v["kind"] = json!("Pod");
    v["metadata"]["annotations"] =
        json!({"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"});
    w.cache.apply(crate::fake::object(v), false);
    w.run(30 * 60);
    let un = &w.ca.last_scan().scale_down.unremovable;
    assert_eq!(
        un.get("ng-a-2"),
        Some(&Unremovable::BlockedByPod("default/bare".into()))
    );
    assert_eq!(
        un.get("ng-a-3"),
        Some(&Unremovable::BlockedByPod("default/pinned".into()))
    );
    // ng-a-1's pod moves to ng-a-2 or ng-a-3: it is the one removed.
    assert_eq!(
        deletes(&w),
        vec![(601, "ng-a".into(), vec!["ng-a-1".into()])]
    );
}

#[test]
fn a_node_whose_pods_fit_nowhere_stays() {
    let mut w = World::new(AutoscalerConfig::default(), &[("ng-a", "zone-a", 1, 5, 2)]);
    w.bound_pod("a", "web", "ng-a-1", "1.9");
    w.bound_pod("b", "web", "ng-a-2", "1.9");
    w.bound_pod("c", "web", "ng-a-2", "0.2");
    // ng-a-1 (47.5 %) is underused but ng-a-2 (52.5 %) has 1.9 CPU free: a's 1.9 fits.
    // Make ng-a-2 fuller so it does not.
    w.bound_pod("d", "web", "ng-a-2", "0.5");
    w.run(30 * 60);
    assert!(deletes(&w).is_empty(), "{:?}", deletes(&w));
    assert_eq!(
        w.ca.last_scan().scale_down.unremovable.get("ng-a-1"),
        Some(&Unremovable::NoPlaceToMovePods)
    );
}

#[test]
fn unready_nodes_go_after_the_unready_time_not_the_unneeded_time() {
    let mut w = World::new(AutoscalerConfig::default(), &[("ng-a", "zone-a", 1, 5, 2)]);
    w.bound_pod("busy-1", "web", "ng-a-1", "3");
    w.bound_pod("busy-2", "web", "ng-a-2", "3");
    w.run(60);
    // ng-a-2 dies; its pod is evicted (taint eviction), the node stays Unknown.
    w.set_ready("ng-a-2", "Unknown");
    let pod = w.cache.pods[&crate::Key::new("default", "busy-2")].clone();
    w.cache.apply(Object::Pod(pod), true);
    w.run(10 * 60 + 30);
    assert!(deletes(&w).is_empty(), "{:?}", deletes(&w));
    w.run(10 * 60);
    // Unneeded since the first scan that saw it unready (61 s), removed 20 min later.
    assert_eq!(
        deletes(&w),
        vec![(61 + 1200, "ng-a".into(), vec!["ng-a-2".into()])]
    );
}

#[test]
fn no_removal_within_the_delay_after_a_scale_up() {
    let mut w = World::new(AutoscalerConfig::default(), &[("ng-a", "zone-a", 1, 9, 3)]);
    w.bound_pod("busy", "web", "ng-a-1", "3");
    // ng-a-2's pod fits beside ng-a-3's: ng-a-2 is unneeded; ng-a-3's then fits nowhere.
    w.bound_pod("half-2", "web", "ng-a-2", "1.5");
    w.bound_pod("half-3", "web", "ng-a-3", "1.5");
    w.run(8 * 60);
    assert_eq!(w.ca.unneeded_since().keys().collect::<Vec<_>>(), ["ng-a-2"]);
    w.pending_pod("web-2", "web", "3", json!({}));
    w.run(10);
    assert_eq!(w.increases().len(), 1);
    // The new node joins; the pending pod lands there.
    w.run(70);
    let mut v =
        serde_json::to_value(&*w.cache.pods[&crate::Key::new("default", "web-2")]).expect("pod");
    v["kind"] = json!("Pod");
    v["spec"]["nodeName"] = json!("ng-a-4");
    v["status"] = json!({"phase": "Running"});
    w.cache.apply(crate::fake::object(v), false);
    // ng-a-2 has been unneeded for over 10 min, but the scale-up at ~8 min delays removal
    // until 10 min after it.
    w.run(8 * 60);
    assert!(deletes(&w).is_empty(), "{:?}", deletes(&w));
    w.run(2 * 60);
    // The scale-up was at 481 s (the scan after the pod appeared): removal at 1081 s.
    assert_eq!(
        deletes(&w),
        vec![(481 + 600, "ng-a".into(), vec!["ng-a-2".into()])]
    );
}
