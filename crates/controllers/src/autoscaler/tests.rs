//! Autoscaler decisions in virtual time against upstream's rules: halting, backoff after a
//! failed launch, templates a pod does not fit, balancing, the expanders, upcoming nodes.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use super::testworld::{World, spec};
use super::{AutoscalerConfig, CloudAction, ExpanderKind};
use crate::nodegroups::INSUFFICIENT_CAPACITY;

/// A world whose nodes are 75 % full (see [`World::fill`]).
fn busy(cfg: AutoscalerConfig, groups: &[super::testworld::G]) -> World {
    let mut w = World::new(cfg, groups);
    w.fill();
    w
}

fn busy_specs(cfg: AutoscalerConfig, specs: Vec<crate::nodegroups::NodeGroupSpec>) -> World {
    let mut w = World::with_specs(cfg, specs);
    w.fill();
    w
}

fn config() -> AutoscalerConfig {
    AutoscalerConfig::default()
}

fn with_expander(kind: ExpanderKind) -> AutoscalerConfig {
    AutoscalerConfig {
        expander: kind,
        ..config()
    }
}

const AB: &[super::testworld::G] = &[("ng-a", "zone-a", 1, 4, 2), ("ng-b", "zone-b", 1, 4, 2)];

#[test]
fn a_pending_pod_scales_up_one_group_by_one_node_with_upstream_event() {
    let mut w = busy(config(), AB);
    w.pending_pod("web-1", "web", "3", json!({}));
    w.run(10);
    let inc = w.increases();
    assert_eq!(inc.len(), 1, "{inc:?}");
    assert_eq!(inc[0].1, 1);
    let ev = w.events_of("TriggeredScaleUp");
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].0, "web-1");
    assert_eq!(
        ev[0].1,
        format!("pod triggered scale-up: [{{{} 2->3 (max: 4)}}]", inc[0].0)
    );
    assert!(w.status.contains("status: \"InProgress\""), "{}", w.status);
}

#[test]
fn pods_that_fit_on_upcoming_nodes_do_not_scale_up_again() {
    let mut w = busy(config(), AB);
    w.pending_pod("web-1", "web", "3", json!({}));
    // The boot takes 60 s; six scans see the pod still pending.
    w.run(55);
    assert_eq!(w.increases().len(), 1);
    // A second pod that does not fit beside the first on the upcoming node does.
    w.pending_pod("web-2", "web", "3", json!({}));
    w.run(10);
    assert_eq!(w.increases().len(), 2, "{:?}", w.increases());
}

#[test]
fn a_pod_the_scheduler_has_not_retried_yet_fits_an_existing_node_and_scales_nothing() {
    let mut w = busy(config(), AB);
    // Marked Unschedulable a moment ago, but a node has room now (e.g. a pod just left).
    w.pending_pod("web-1", "web", "1", json!({}));
    w.run(30);
    assert!(w.increases().is_empty(), "{:?}", w.increases());
    assert!(w.events_of("NotTriggerScaleUp").is_empty());
    assert_eq!(w.ca.last_scan().scale_up.schedulable, 1);
}

#[test]
fn a_pod_that_fits_no_template_triggers_nothing_and_says_why() {
    let mut w = busy(config(), AB);
    w.pending_pod("huge", "huge", "64", json!({}));
    w.pending_pod(
        "picky",
        "picky",
        "1",
        json!({"spec": {"nodeSelector": {"disktype": "ssd"}}}),
    );
    w.run(30);
    assert!(w.increases().is_empty());
    let ev: BTreeMap<String, String> = w.events_of("NotTriggerScaleUp").into_iter().collect();
    assert_eq!(
        ev["huge"],
        "pod didn't trigger scale-up: 2 Insufficient cpu"
    );
    assert_eq!(
        ev["picky"],
        "pod didn't trigger scale-up: 2 node(s) didn't match Pod's node affinity/selector"
    );
    assert!(w.events_of("TriggeredScaleUp").is_empty());
}

#[test]
fn a_group_at_max_size_is_skipped_with_upstreams_reason() {
    let mut w = busy(config(), &[("ng-a", "zone-a", 1, 2, 2)]);
    w.pending_pod("web-1", "web", "3", json!({}));
    w.run(10);
    assert!(w.increases().is_empty());
    assert_eq!(
        w.events_of("NotTriggerScaleUp")[0].1,
        "pod didn't trigger scale-up: 1 max node group size reached"
    );
}

fn unready(w: &mut World, names: &[&str]) {
    for n in names {
        w.set_ready(n, "Unknown");
    }
}

#[test]
fn halts_only_above_both_unready_thresholds() {
    // 6 nodes; 3 unready is not above --ok-total-unready-count 3: keeps scaling.
    let groups = &[("ng-a", "zone-a", 0, 9, 3), ("ng-b", "zone-b", 0, 9, 3)];
    let mut w = busy(config(), groups);
    unready(&mut w, &["ng-a-1", "ng-a-2", "ng-a-3"]);
    w.pending_pod("web-1", "web", "3", json!({}));
    w.run(10);
    assert!(w.ca.last_scan().healthy);
    assert_eq!(w.increases().len(), 1);

    // 4 of 6 unready: above 3 and above 45 % of 6 (2.7): every operation halts.
    let mut w = busy(config(), groups);
    unready(&mut w, &["ng-a-1", "ng-a-2", "ng-a-3", "ng-b-1"]);
    w.pending_pod("web-1", "web", "3", json!({}));
    w.run(60);
    assert!(!w.ca.last_scan().healthy);
    assert!(w.ca.halted_since().is_some());
    assert!(w.cloud_calls().is_empty(), "{:?}", w.cloud_calls());
    assert!(w.status.contains("status: \"Unhealthy\""), "{}", w.status);
    assert!(w.status.contains("Cluster is not ready for autoscaling"));

    // 4 of 10 unready: above the count but not above 45 % (4.5): healthy.
    let groups = &[("ng-a", "zone-a", 0, 9, 5), ("ng-b", "zone-b", 0, 9, 5)];
    let mut w = busy(config(), groups);
    unready(&mut w, &["ng-a-1", "ng-a-2", "ng-a-3", "ng-a-4"]);
    w.pending_pod("web-1", "web", "3", json!({}));
    w.run(10);
    assert!(w.ca.last_scan().healthy);
    assert_eq!(w.increases().len(), 1);

    // Recovery resumes operations.
    let mut w = busy(
        config(),
        &[("ng-a", "zone-a", 0, 9, 3), ("ng-b", "zone-b", 0, 9, 3)],
    );
    unready(&mut w, &["ng-a-1", "ng-a-2", "ng-a-3", "ng-b-1"]);
    w.pending_pod("web-1", "web", "3", json!({}));
    w.run(30);
    assert!(w.increases().is_empty());
    w.set_ready("ng-b-1", "True");
    w.run(10);
    assert!(w.ca.halted_since().is_none());
    assert_eq!(w.increases().len(), 1);
}

fn priority_config(text: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("priorities".to_string(), text.to_string())])
}

#[test]
fn a_failed_launch_in_a_dead_zone_backs_the_group_off_and_scales_elsewhere() {
    let mut w = busy(with_expander(ExpanderKind::Priority), AB);
    // Prefer zone a, so the first attempt goes to the dead zone.
    w.ca.set_priority_config(Some(&priority_config("50:\n  - ng-a\n10:\n  - ng-b\n")))
        .expect("priorities");
    w.cloud.set_zone_fault("zone-a", true);
    w.pending_pod("web-1", "web", "3", json!({}));
    w.run(10);
    assert_eq!(w.increases(), vec![("ng-a".to_string(), 1)]);
    let t_request = w.cloud_calls()[0].0;
    // The launch fails after the provider's timeout (30 s); the next scan backs ng-a off and
    // removes the failed instance; the one after scales ng-b.
    w.run(60);
    let calls = w.cloud_calls();
    let delete = calls
        .iter()
        .find(|(_, c)| matches!(c, CloudAction::DeleteNodes { .. }))
        .expect("failed instance removed");
    assert_eq!(
        delete.1,
        CloudAction::DeleteNodes {
            group: "ng-a".into(),
            nodes: vec!["ng-a-3".into()]
        }
    );
    assert!(delete.0 >= t_request + Duration::from_millis(30_000));
    let backoff = &w.ca.state().backoff["ng-a"];
    assert_eq!(backoff.error_code, INSUFFICIENT_CAPACITY);
    assert_eq!(
        backoff.duration,
        Duration::from_millis(5 * 60_000),
        "initial backoff 5 min"
    );
    assert_eq!(
        w.increases(),
        vec![("ng-a".to_string(), 1), ("ng-b".to_string(), 1)]
    );
    assert!(w.status.contains("status: \"Backoff\""), "{}", w.status);
    assert!(w.status.contains(INSUFFICIENT_CAPACITY));
    // While backed off, another pending pod also goes to ng-b even though ng-a ranks higher.
    w.pending_pod("web-2", "web", "3", json!({}));
    w.run(20);
    assert_eq!(w.increases().last(), Some(&("ng-b".to_string(), 1)));
}

#[test]
fn backoff_doubles_up_to_the_max_and_a_pod_waits_when_every_group_is_backed_off() {
    let mut w = busy(config(), &[("ng-a", "zone-a", 1, 9, 2)]);
    w.cloud.set_zone_fault("zone-a", true);
    w.pending_pod("web-1", "web", "3", json!({}));
    let mut durations = Vec::new();
    for _ in 0..5 {
        // Run until the next backoff is recorded.
        let before = w.ca.state().backoff.get("ng-a").map(|b| b.last_failed);
        for _ in 0..4_000 {
            w.run(1);
            let now = w.ca.state().backoff.get("ng-a").map(|b| b.last_failed);
            if now != before {
                break;
            }
        }
        durations.push(w.ca.state().backoff["ng-a"].duration.as_secs() / 60);
    }
    assert_eq!(durations, vec![5, 10, 20, 30, 30]);
    let waiting = w.events_of("NotTriggerScaleUp");
    assert!(
        waiting
            .iter()
            .any(|(_, m)| m == "pod didn't trigger scale-up: 1 in backoff after failed scale-up"),
        "{waiting:?}"
    );
}

#[test]
fn nodes_that_never_register_time_out_then_are_removed() {
    // Scale-down off: it would remove the idle nodes down to min, and then the unregistered
    // instance must stay (upstream never removes below min).
    let cfg = AutoscalerConfig {
        scale_down_enabled: false,
        ..config()
    };
    let mut w = busy(cfg, AB);
    w.join = false;
    w.pending_pod("web-1", "web", "3", json!({}));
    w.run(10);
    let (group, _) = w.increases()[0].clone();
    let t_request = w.cloud_calls()[0].0;
    w.run(15 * 60);
    assert!(
        !w.ca.state().backoff.contains_key(&group),
        "not before 15 min"
    );
    w.run(10);
    let b = &w.ca.state().backoff[&group];
    assert_eq!(b.error_code, "timeout");
    assert_eq!(
        b.error_message,
        format!("Nodes added to group {group} failed to register within 900s")
    );
    assert!(b.last_failed > t_request + Duration::from_millis(15 * 60_000));
    // The instance itself is removed once unregistered for longer than the provision time.
    w.run(30);
    let removed = w.cloud_calls().into_iter().any(|(_, c)| {
        c == CloudAction::DeleteNodes {
            group: group.clone(),
            nodes: vec![format!("{group}-3")],
        }
    });
    assert!(removed, "{:?}", w.cloud_calls());
}

#[test]
fn balance_similar_node_groups_spreads_a_scale_up_over_zones() {
    let groups = &[
        ("ng-a", "zone-a", 0, 10, 1),
        ("ng-b", "zone-b", 0, 10, 1),
        ("ng-c", "zone-c", 0, 10, 1),
    ];
    let balanced = AutoscalerConfig {
        balance_similar_node_groups: true,
        ..config()
    };
    let mut w = busy(balanced, groups);
    for i in 0..6 {
        w.pending_pod(&format!("web-{i}"), "web", "3", json!({}));
    }
    w.run(10);
    let mut inc = w.increases();
    inc.sort();
    assert_eq!(
        inc,
        vec![("ng-a".into(), 2), ("ng-b".into(), 2), ("ng-c".into(), 2)]
    );

    let mut w = busy(config(), groups);
    for i in 0..6 {
        w.pending_pod(&format!("web-{i}"), "web", "3", json!({}));
    }
    w.run(10);
    let inc = w.increases();
    assert_eq!(
        inc.len(),
        1,
        "without balancing one group takes all: {inc:?}"
    );
    assert_eq!(inc[0].1, 6);
}

#[test]
fn groups_with_different_node_shapes_are_not_balanced() {
    let balanced = AutoscalerConfig {
        balance_similar_node_groups: true,
        ..config()
    };
    let specs = vec![
        spec(("ng-a", "zone-a", 0, 10, 1), "4", "16Gi"),
        spec(("ng-b", "zone-b", 0, 10, 1), "8", "32Gi"),
    ];
    let mut w = busy_specs(balanced, specs);
    for i in 0..4 {
        w.pending_pod(&format!("web-{i}"), "web", "3", json!({}));
    }
    w.run(10);
    assert_eq!(w.increases().len(), 1, "{:?}", w.increases());
}

#[test]
fn least_waste_picks_the_group_leaving_least_idle() {
    // A 3-CPU pod wastes 1 of 4 CPUs on ng-small and 13 of 16 on ng-big.
    let specs = vec![
        spec(("ng-big", "zone-a", 0, 10, 0), "16", "64Gi"),
        spec(("ng-small", "zone-b", 0, 10, 1), "4", "16Gi"),
    ];
    for seed in 0..8 {
        let cfg = AutoscalerConfig {
            seed,
            ..with_expander(ExpanderKind::LeastWaste)
        };
        let mut w = busy_specs(cfg, specs.clone());
        w.pending_pod("web-1", "web", "3", json!({}));
        w.run(10);
        assert_eq!(
            w.increases(),
            vec![("ng-small".to_string(), 1)],
            "seed {seed}"
        );
    }
}

#[test]
fn priority_expander_uses_the_highest_matching_regexp_and_skips_unlisted_groups() {
    let groups = &[
        ("spot-a", "zone-a", 0, 10, 1),
        ("ondemand-a", "zone-a", 0, 10, 1),
        ("other", "zone-b", 0, 10, 1),
    ];
    for seed in 0..8 {
        let cfg = AutoscalerConfig {
            seed,
            ..with_expander(ExpanderKind::Priority)
        };
        let mut w = busy(cfg, groups);
        w.ca.set_priority_config(Some(&priority_config(
            "10:\n  - .*ondemand.*\n50:\n  - ^spot-.*\n",
        )))
        .expect("valid");
        w.pending_pod("web-1", "web", "3", json!({}));
        w.run(10);
        assert_eq!(
            w.increases(),
            vec![("spot-a".to_string(), 1)],
            "seed {seed}"
        );
    }
    // An unlisted group is not used while a listed one can help ...
    let mut w = busy(with_expander(ExpanderKind::Priority), groups);
    w.ca.set_priority_config(Some(&priority_config("10:\n  - ^other$\n")))
        .expect("valid");
    w.pending_pod("web-1", "web", "3", json!({}));
    w.run(10);
    assert_eq!(w.increases(), vec![("other".to_string(), 1)]);
    // ... but when no option matches any rule, upstream falls back to random among all.
    let mut w = busy(with_expander(ExpanderKind::Priority), groups);
    w.ca.set_priority_config(Some(&priority_config("10:\n  - nothing-matches\n")))
        .expect("valid");
    w.pending_pod("web-1", "web", "3", json!({}));
    w.run(10);
    assert_eq!(w.increases().len(), 1);
}

#[test]
fn a_bad_priority_config_map_is_reported_and_every_option_stays_usable() {
    let mut w = busy(with_expander(ExpanderKind::Priority), AB);
    let err =
        w.ca.set_priority_config(Some(&priority_config("10:\n  - \"(unclosed\"\n")))
            .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("can't compile regexp rule for priority 10"),
        "{err}"
    );
    let err =
        w.ca.set_priority_config(Some(&BTreeMap::new()))
            .unwrap_err();
    assert_eq!(
        err.to_string(),
        "priority configmap does not have the 'priorities' key"
    );
    w.pending_pod("web-1", "web", "3", json!({}));
    w.run(10);
    assert_eq!(w.increases().len(), 1);
}

#[test]
fn random_expander_is_seeded_and_uses_every_option() {
    let mut picks = std::collections::BTreeSet::new();
    for seed in 0..16 {
        let cfg = AutoscalerConfig { seed, ..config() };
        let run = |cfg: AutoscalerConfig| {
            let mut w = busy(cfg, AB);
            w.pending_pod("web-1", "web", "3", json!({}));
            w.run(10);
            w.increases()
        };
        let first = run(cfg.clone());
        assert_eq!(first, run(cfg), "same seed, same choice");
        picks.insert(first[0].0.clone());
    }
    assert_eq!(picks.len(), 2, "{picks:?}");
}

#[test]
fn hard_zone_spread_limits_which_zone_can_help() {
    // Pods spread with DoNotSchedule over zones: 2 in zone-a, 1 in zone-b. A new pod only
    // fits in zone-b (skew), so only ng-b's template passes the scheduler's filters.
    let mut w = busy(config(), AB);
    let spread = json!({"spec": {"topologySpreadConstraints": [{"maxSkew": 1,
        "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "web"}}}]}});
    w.bound_pod("web-a1", "web", "ng-a-1", "3");
    w.bound_pod("web-a2", "web", "ng-a-2", "3");
    w.bound_pod("web-b1", "web", "ng-b-1", "3");
    w.pending_pod("web-x", "web", "3", spread);
    w.run(10);
    assert_eq!(w.increases(), vec![("ng-b".to_string(), 1)]);
}

#[test]
fn status_config_map_has_upstreams_shape() {
    let mut w = busy(config(), AB);
    w.run(10);
    let s = &w.status;
    for line in [
        "autoscalerStatus: \"Running\"",
        "clusterWide:",
        "    status: \"Healthy\"",
        "        ready: 4",
        "  - name: \"ng-a\"",
        "      cloudProviderTarget: 2",
        "      minSize: 1",
        "      maxSize: 4",
        "    scaleUp:\n      status: \"NoActivity\"",
    ] {
        assert!(s.contains(line), "missing {line:?} in\n{s}");
    }
    let parsed: serde_yaml::Value = serde_yaml::from_str(s).expect("valid YAML");
    assert_eq!(parsed["nodeGroups"][1]["name"].as_str(), Some("ng-b"));
    // Healthy since the autoscaler started, not since the epoch.
    let since = parsed["clusterWide"]["health"]["lastTransitionTime"]
        .as_str()
        .expect("lastTransitionTime");
    assert!(!since.starts_with("1970"), "{since}");
}

#[test]
fn after_a_zone_loss_a_do_not_schedule_spread_pod_can_only_use_the_dead_zone() {
    // Upstream's limitation: with `whenUnsatisfiable: DoNotSchedule` over zones, the dead
    // zone still counts as a domain (its nodes exist, tainted; nodeTaintsPolicy Ignore) with 0
    // matching pods, so a new pod fits only there — on a template of the dead zone's group.
    // That launch fails, the group backs off, and no surviving zone can help.
    let groups = &[
        ("ng-a", "zone-a", 1, 4, 2),
        ("ng-b", "zone-b", 1, 4, 2),
        ("ng-c", "zone-c", 1, 4, 2),
    ];
    let mut w = busy(config(), groups);
    for n in ["ng-b-1", "ng-b-2", "ng-c-1", "ng-c-2"] {
        w.bound_pod(&format!("web-{n}"), "web", n, "1");
    }
    w.set_ready("ng-a-1", "Unknown");
    w.set_ready("ng-a-2", "Unknown");
    w.cloud.set_zone_fault("zone-a", true);
    let spread = json!({"spec": {"topologySpreadConstraints": [{"maxSkew": 1,
        "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "web"}}}]}});
    w.pending_pod("web-x", "web", "1", spread);
    w.run(120);
    assert_eq!(w.increases(), vec![("ng-a".to_string(), 1)]);
    assert!(w.ca.state().is_backed_off("ng-a", w.now));
    let last = w.events_of("NotTriggerScaleUp").pop().expect("event");
    assert_eq!(
        last.1,
        "pod didn't trigger scale-up: 1 in backoff after failed scale-up, \
         2 node(s) didn't match pod topology spread constraints"
    );
}
