//! The profile/flags mapping: upstream defaults, the fast profile per component, flags winning,
//! and a scenario's `flags:`.

use std::time::Duration;

use super::*;

fn resolve(profile: Profile, pairs: &[(&str, &str)]) -> Configs {
    let flags = Flags::from_pairs(pairs.iter().copied()).expect("valid flags");
    Configs::resolve(profile, &flags).expect("valid configs")
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn upstream_profile_is_upstreams_defaults() {
    let c = resolve(Profile::Upstream, &[]);
    let nl = &c.node_lifecycle;
    assert_eq!(nl.node_monitor_period, secs(5));
    assert_eq!(nl.node_monitor_grace_period, secs(50));
    assert_eq!(nl.node_startup_grace_period, secs(60));
    assert!((nl.node_eviction_rate - 0.1).abs() < 1e-6);
    assert!((nl.secondary_node_eviction_rate - 0.01).abs() < 1e-6);
    assert!((nl.unhealthy_zone_threshold - 0.55).abs() < 1e-6);
    assert_eq!(nl.large_cluster_size_threshold, 50);
    assert_eq!(c.admission.not_ready_toleration_seconds, 300);
    assert_eq!(c.admission.unreachable_toleration_seconds, 300);
    assert_eq!(c.endpointslice.max_endpoints_per_slice, 100);
    assert_eq!(
        (
            c.election.lease_duration,
            c.election.renew_deadline,
            c.election.retry_period
        ),
        (secs(15), secs(10), secs(2))
    );
    assert_eq!(c.autoscaler.scan_interval, secs(10));
    assert_eq!(c.autoscaler.max_node_provision_time, secs(15 * 60));
    assert_eq!(c.kubelet.node_lease_duration_seconds, 40);
    assert_eq!(
        c.kubelet.lease_renew_interval(),
        Duration::from_millis(10_000)
    );
    assert_eq!(c.proxy.min_sync_period_ms, Duration::from_millis(1_000));
    assert_eq!(c.proxy.sync_period_ms, Duration::from_millis(30_000));
    assert_eq!(c.load_balancer_time_divisor, 1);
    assert_eq!(c.conntrack_tcp_timeout_syn_sent, None);
}

#[test]
fn fast_profile_divides_the_node_lifecycle_timers_and_multiplies_its_rates() {
    let c = resolve(Profile::Fast, &[]).node_lifecycle;
    assert_eq!(c.node_monitor_period, Duration::from_millis(500));
    assert_eq!(c.node_monitor_grace_period, secs(5));
    assert_eq!(c.node_startup_grace_period, secs(6));
    assert!((c.node_eviction_rate - 1.0).abs() < 1e-6);
    assert!((c.secondary_node_eviction_rate - 0.1).abs() < 1e-6);
    // Shares and counts are not timers.
    assert!((c.unhealthy_zone_threshold - 0.55).abs() < 1e-6);
    assert_eq!(c.large_cluster_size_threshold, 50);
}

#[test]
fn fast_profile_divides_the_default_tolerations() {
    let a = resolve(Profile::Fast, &[]).admission;
    assert_eq!(a.not_ready_toleration_seconds, 30);
    assert_eq!(a.unreachable_toleration_seconds, 30);
}

#[test]
fn fast_profile_divides_the_election_timers() {
    let e = resolve(Profile::Fast, &[]).election;
    assert_eq!(e.lease_duration, Duration::from_millis(1500));
    assert_eq!(e.renew_deadline, secs(1));
    assert_eq!(e.retry_period, Duration::from_millis(200));
    let cfg = e.config("kube-system", "kube-scheduler", "me", 7);
    assert_eq!(
        (
            cfg.lease_duration_ms,
            cfg.renew_deadline_ms,
            cfg.retry_period_ms
        ),
        (
            Duration::from_millis(1500),
            Duration::from_millis(1000),
            Duration::from_millis(200)
        )
    );
    cfg.validate()
        .expect("the fast timers are a valid election");
}

#[test]
fn fast_profile_divides_the_autoscaler_and_cloud_timers() {
    let c = resolve(Profile::Fast, &[]);
    assert_eq!(c.autoscaler.scan_interval, secs(1));
    assert_eq!(c.autoscaler.max_node_provision_time, secs(90));
    assert_eq!(c.autoscaler.max_node_startup_time, secs(90));
    let f = resolve(
        Profile::Fast,
        &[
            ("--max-node-startup-time", "20s"),
            ("--scale-down-unready-time", "30s"),
        ],
    );
    assert_eq!(f.autoscaler.max_node_startup_time, secs(20));
    assert_eq!(f.autoscaler.scale_down_unready_time, secs(30));
    assert_eq!(c.autoscaler.scale_down_unneeded_time, secs(60));
    assert_eq!(c.autoscaler.scale_down_unready_time, secs(120));
    let up = resolve(Profile::Upstream, &[]);
    assert_eq!(
        c.cloud.launch_failure_timeout,
        up.cloud.launch_failure_timeout / 10
    );
    assert_eq!(c.load_balancer_time_divisor, 10);
}

#[test]
fn fast_profile_divides_the_kubelet_timers() {
    let k = resolve(Profile::Fast, &[]).kubelet;
    let up = resolve(Profile::Upstream, &[]).kubelet;
    assert_eq!(k.node_lease_duration_seconds, 4);
    assert_eq!(k.lease_renew_interval(), Duration::from_millis(1_000));
    assert_eq!(
        k.node_status_update_frequency,
        up.node_status_update_frequency / 10
    );
    assert_eq!(
        k.node_status_report_frequency,
        up.node_status_report_frequency / 10
    );
    assert_eq!(k.restart_backoff_initial, up.restart_backoff_initial / 10);
    assert_eq!(k.restart_backoff_max, up.restart_backoff_max / 10);
}

#[test]
fn fast_profile_divides_the_proxy_sync_periods() {
    let p = resolve(Profile::Fast, &[]).proxy;
    assert_eq!(p.min_sync_period_ms, Duration::from_millis(100));
    assert_eq!(p.sync_period_ms, Duration::from_millis(3_000));
}

#[test]
fn fast_profile_leaves_the_unscaled_components_at_upstream() {
    // As before the one mapping existed: no profile scaled these.
    let c = resolve(Profile::Fast, &[]);
    assert_eq!(
        c.endpointslice,
        controllers::endpointslice::EndpointSliceConfig::default()
    );
    assert_eq!(c.scheduler.pod_initial_backoff_seconds, 1);
    assert_eq!(c.scheduler.pod_max_backoff_seconds, 10);
    assert_eq!(c.podgc.gc_check_period_ms, Duration::from_millis(20_000));
    assert_eq!(c.podgc.quarantine_ms, Duration::from_millis(40_000));
    assert_eq!(
        c.workloads.replicaset.expectations_timeout_ms,
        Duration::from_millis(300_000)
    );
    assert_eq!(c.workloads.daemonset.burst_replicas, 250);
    assert_eq!(
        c.disruption.deletion_timeout_ms,
        Duration::from_millis(120_000)
    );
}

#[test]
fn explicit_flags_win_over_either_profile() {
    for profile in [Profile::Fast, Profile::Upstream] {
        let c = resolve(
            profile,
            &[
                ("node-monitor-grace-period", "4s"),
                ("node-eviction-rate", "0.5"),
                ("large-cluster-size-threshold", "10"),
                ("default-unreachable-toleration-seconds", "7"),
                ("max-endpoints-per-slice", "3"),
                ("leader-elect-retry-period", "1s"),
                ("node-lease-duration-seconds", "12"),
                ("--min-sync-period", "250ms"),
                ("sync-period", "5s"),
                ("scan-interval", "2s"),
                ("expander", "least-waste"),
                ("conntrack-tcp-timeout-syn-sent", "5s"),
            ],
        );
        assert_eq!(c.node_lifecycle.node_monitor_grace_period, secs(4));
        assert!((c.node_lifecycle.node_eviction_rate - 0.5).abs() < 1e-6);
        assert_eq!(c.node_lifecycle.large_cluster_size_threshold, 10);
        assert_eq!(c.admission.unreachable_toleration_seconds, 7);
        assert_eq!(c.endpointslice.max_endpoints_per_slice, 3);
        assert_eq!(c.election.retry_period, secs(1));
        assert_eq!(c.kubelet.node_lease_duration_seconds, 12);
        assert_eq!(
            c.kubelet.lease_renew_interval(),
            Duration::from_millis(3_000)
        );
        assert_eq!(c.proxy.min_sync_period_ms, Duration::from_millis(250));
        assert_eq!(c.proxy.sync_period_ms, Duration::from_millis(5_000));
        assert_eq!(c.autoscaler.scan_interval, secs(2));
        assert_eq!(
            c.autoscaler.expander,
            controllers::autoscaler::ExpanderKind::LeastWaste
        );
        let t = c.report_timers();
        assert_eq!(t.node_monitor_grace_period_s, 4.0);
        assert_eq!(t.lease_renew_interval_s, 3.0);
        assert_eq!(t.unreachable_toleration_s, 7.0);
        assert_eq!(t.conntrack_tcp_timeout_syn_sent_s, 5.0);
        // A flag not given keeps the profile's value.
        let d = profile.divisor();
        assert_eq!(
            c.node_lifecycle.node_monitor_period,
            Duration::from_millis(5_000 / u64::from(d))
        );
    }
}

#[test]
fn report_timers_follow_the_profile() {
    let t = resolve(Profile::Fast, &[]).report_timers();
    assert_eq!(
        (
            t.node_monitor_grace_period_s,
            t.node_monitor_period_s,
            t.lease_renew_interval_s,
            t.unreachable_toleration_s,
            t.conntrack_tcp_timeout_syn_sent_s
        ),
        (5.0, 0.5, 1.0, 30.0, 120.0)
    );
}

#[test]
fn flags_are_set_as_on_a_command_line() {
    let mut f = Flags::default();
    assert_eq!(f.set("nope", "1"), Err(FlagError::Unknown("nope".into())));
    let e = f
        .set("node-monitor-period", "soon")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--node-monitor-period") && e.contains("invalid duration"),
        "{e}"
    );
    assert!(f.set("node-eviction-rate", "fast").is_err());
    f.set("--scale-down-enabled", "false").expect("a bool");
    f.set("balance-similar-node-groups", "true")
        .expect("a bool");
    assert_eq!(f.autoscaler.scale_down_enabled, Some(false));
    assert_eq!(f.autoscaler.balance_similar_node_groups, Some(true));
    // Setting one flag leaves the others alone.
    f.set("sync-period", "2s").unwrap();
    assert_eq!(f.autoscaler.scale_down_enabled, Some(false));
    assert_eq!(f.node.sync_period, Some(secs(2)));
    assert_eq!(f.node.min_sync_period, None);
    assert!(Flags::knows("leader-elect-lease-duration"));
    assert!(!Flags::knows("service-cluster-ip-range"));
    assert!(AutoscalerFlags::names().contains(&"expander".to_string()));
}

#[test]
fn components_refuse_bad_values_with_their_words() {
    let f = Flags::from_pairs([("expander", "most-pods")]).unwrap();
    let e = Configs::resolve(Profile::Fast, &f).unwrap_err().to_string();
    assert_eq!(e, "Expander most-pods not supported");
    let f = Flags::from_pairs([("node-monitor-period", "0s")]).unwrap();
    let e = Configs::resolve(Profile::Upstream, &f)
        .unwrap_err()
        .to_string();
    assert!(e.contains("node-monitor-period"), "{e}");
}

fn scenario(text: &str) -> Scenario {
    Scenario::parse(text, "s.yaml").expect("a valid scenario")
}

use scenario::Scenario;

#[test]
fn a_scenarios_flags_resolve_under_its_profile() {
    let text = "name: x\nprofile: upstream\nflags:\n  node-monitor-grace-period: 20s\n  --sync-period: 2s\n  service-cluster-ip-range: 10.96.0.0/16\nrun: {duration: 10s}\n";
    let s = scenario(text);
    let r = from_scenario(&s, text, "s.yaml", |f| f == "service-cluster-ip-range").unwrap();
    assert_eq!(r.configs.profile, Profile::Upstream);
    assert_eq!(r.configs.node_lifecycle.node_monitor_grace_period, secs(20));
    assert_eq!(r.configs.node_lifecycle.node_monitor_period, secs(5));
    assert_eq!(r.configs.proxy.sync_period_ms, Duration::from_millis(2_000));
    assert_eq!(
        r.passthrough,
        vec![(
            "service-cluster-ip-range".to_string(),
            "10.96.0.0/16".to_string()
        )]
    );
    assert_eq!(r.flags.node.sync_period, Some(secs(2)));
}

#[test]
fn a_scenarios_bad_flags_are_rejected_at_their_line_and_column() {
    let at = |text: &str| {
        let s = scenario(text);
        let e = from_scenario(&s, text, "s.yaml", |_| false).unwrap_err();
        (e.location(), e.to_string())
    };
    let (loc, e) = at("name: x\nflags:\n  v: 2\nrun: {duration: 10s}\n");
    assert_eq!(loc, Some((3, 6)), "{e}");
    assert!(
        e.starts_with("s.yaml:3:6: flags.v: unknown flag --v"),
        "{e}"
    );
    let (loc, e) =
        at("name: x\nflags:\n  sync-period: 1s\n  scan-interval: soon\nrun: {duration: 10s}\n");
    assert_eq!(loc, Some((4, 18)), "{e}");
    assert!(e.contains("invalid duration"), "{e}");
    let (loc, e) = at("name: x\nflags: {expander: most-pods}\nrun: {duration: 10s}\n");
    assert_eq!(loc.map(|l| l.0), Some(2), "{e}");
    assert!(e.ends_with("Expander most-pods not supported"), "{e}");
}

#[test]
fn a_scenarios_election_timers_are_checked_together_unless_election_is_off() {
    let text = "name: x\nprofile: upstream\nflags:\n  leader-elect-renew-deadline: 20s\nrun: {duration: 10s}\n";
    let e = from_scenario(&scenario(text), text, "s.yaml", |_| false)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("s.yaml:4:")
            && e.ends_with("leaseDuration must be greater than renewDeadline"),
        "{e}"
    );
    let off = text.replace("flags:\n", "flags:\n  leader-elect: false\n");
    from_scenario(&scenario(&off), &off, "s.yaml", |f| f == "leader-elect")
        .expect("no election, nothing to check");
    let fine = text.replace("20s", "5s");
    from_scenario(&scenario(&fine), &fine, "s.yaml", |_| false).expect("valid timers");
}
