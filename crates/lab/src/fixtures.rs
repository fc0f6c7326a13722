//! Shared test and benchmark fixtures: the `Meta` of a fast-profile run on 3 zones x 2 nodes
//! (`a-1` .. `c-2`) calling `default/web`. Not part of the analysis.

use crate::analyze::Meta;
use crate::report::{SloTarget, Timers};

/// The six nodes with their zones.
pub const NODES: [(&str, &str); 6] = [
    ("a-1", "a"),
    ("a-2", "a"),
    ("b-1", "b"),
    ("b-2", "b"),
    ("c-1", "c"),
    ("c-2", "c"),
];

/// A fast-profile run from `t0_ms` lasting `end_s` seconds; SLO 99% and a 10 s window.
pub fn meta(scenario: &str, t0_ms: f64, end_s: f64) -> Meta {
    Meta {
        scenario: scenario.into(),
        mode: "live".into(),
        seed: 1,
        profile: "fast".into(),
        proxy_mode: "nftables".into(),
        ended_by: "capacity-restored".into(),
        timers: Timers {
            node_monitor_grace_period_s: 5.0,
            node_monitor_period_s: 0.5,
            lease_renew_interval_s: 1.0,
            unreachable_toleration_s: 30.0,
            conntrack_tcp_timeout_syn_sent_s: 120.0,
        },
        slo: SloTarget {
            availability: 99.0,
            max_error_window_s: Some(10.0),
        },
        node_zones: NODES
            .iter()
            .map(|(n, z)| (n.to_string(), z.to_string()))
            .collect(),
        services: vec!["default/web".into()],
        t0_ms,
        end_ms: t0_ms + end_s * 1e3,
        control_plane: None,
    }
}
