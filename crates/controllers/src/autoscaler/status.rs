//! Upstream's status ConfigMap `cluster-autoscaler-status` in kube-system: key `status`, the
//! YAML document upstream writes since 1.30 (`clusterWide` health with node counts, scale-up
//! and scale-down conditions, then the same per node group with the cloud target, min, max
//! and backoff info).
//!
//! Start at [`render`].

use std::collections::BTreeMap;
use std::fmt::Write;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::cloud::NodeGroupView;
use super::clusterstate::{ClusterState, Readiness};
use crate::Moment;
use crate::time::to_time;

/// What the status reports beyond the cluster state.
pub struct StatusInput<'a> {
    pub state: &'a ClusterState,
    pub groups: &'a [NodeGroupView],
    pub healthy: bool,
    /// Scale-down candidates (unneeded nodes) per group.
    pub candidates: &'a BTreeMap<String, usize>,
    pub now: Moment,
    /// When the cluster-wide health last changed.
    pub health_since: Moment,
    pub message: &'a str,
}

fn ts(t: Moment) -> String {
    to_time(t).0.to_string()
}

fn counts(out: &mut String, indent: &str, r: &Readiness) {
    let unready = r.unready;
    let _ = writeln!(out, "{indent}nodeCounts:");
    let _ = writeln!(out, "{indent}  registered:");
    let _ = writeln!(out, "{indent}    total: {}", r.registered());
    let _ = writeln!(out, "{indent}    ready: {}", r.ready);
    let _ = writeln!(out, "{indent}    notStarted: {}", r.not_started);
    let _ = writeln!(out, "{indent}    beingDeleted: {}", r.being_deleted);
    let _ = writeln!(out, "{indent}    unready:");
    let _ = writeln!(out, "{indent}      total: {unready}");
    let _ = writeln!(out, "{indent}  longUnregistered: {}", r.long_unregistered);
    let _ = writeln!(out, "{indent}  unregistered: {}", r.unregistered);
}

fn condition(out: &mut String, indent: &str, name: &str, status: &str, probe: &str, since: &str) {
    let _ = writeln!(out, "{indent}{name}:");
    let _ = writeln!(out, "{indent}  status: \"{status}\"");
    let _ = writeln!(out, "{indent}  lastProbeTime: \"{probe}\"");
    let _ = writeln!(out, "{indent}  lastTransitionTime: \"{since}\"");
}

/// The status text.
pub fn render(input: &StatusInput) -> String {
    let probe = ts(input.now);
    let since = ts(input.health_since);
    let mut out = String::new();
    let _ = writeln!(out, "time: \"{}\"", probe);
    let _ = writeln!(out, "message: \"{}\"", input.message);
    let _ = writeln!(out, "autoscalerStatus: \"Running\"");
    let _ = writeln!(out, "clusterWide:");
    let _ = writeln!(out, "  health:");
    let health = if input.healthy {
        "Healthy"
    } else {
        "Unhealthy"
    };
    let _ = writeln!(out, "    status: \"{health}\"");
    counts(&mut out, "    ", &input.state.total);
    let _ = writeln!(out, "    lastProbeTime: \"{probe}\"");
    let _ = writeln!(out, "    lastTransitionTime: \"{since}\"");
    let scaling = !input.state.scale_up_requests.is_empty();
    let up = if scaling { "InProgress" } else { "NoActivity" };
    condition(&mut out, "  ", "scaleUp", up, &probe, &since);
    let total_candidates: usize = input.candidates.values().sum();
    scale_down(&mut out, "  ", total_candidates, &probe, &since);
    let _ = writeln!(out, "nodeGroups:");
    for g in input.groups {
        group(&mut out, input, g, &probe, &since);
    }
    out
}

fn scale_down(out: &mut String, indent: &str, candidates: usize, probe: &str, since: &str) {
    let status = if candidates > 0 {
        "CandidatesPresent"
    } else {
        "NoCandidates"
    };
    let _ = writeln!(out, "{indent}scaleDown:");
    let _ = writeln!(out, "{indent}  status: \"{status}\"");
    let _ = writeln!(out, "{indent}  candidates: {candidates}");
    let _ = writeln!(out, "{indent}  lastProbeTime: \"{probe}\"");
    let _ = writeln!(out, "{indent}  lastTransitionTime: \"{since}\"");
}

fn group(out: &mut String, input: &StatusInput, g: &NodeGroupView, probe: &str, since: &str) {
    let r = input
        .state
        .per_group
        .get(&g.name)
        .copied()
        .unwrap_or_default();
    let _ = writeln!(out, "  - name: \"{}\"", g.name);
    let _ = writeln!(out, "    health:");
    let _ = writeln!(out, "      status: \"Healthy\"");
    counts(out, "      ", &r);
    let _ = writeln!(out, "      cloudProviderTarget: {}", g.target_size);
    let _ = writeln!(out, "      minSize: {}", g.min_size);
    let _ = writeln!(out, "      maxSize: {}", g.max_size);
    let _ = writeln!(out, "      lastProbeTime: \"{probe}\"");
    let _ = writeln!(out, "      lastTransitionTime: \"{since}\"");
    match input
        .state
        .backoff
        .get(&g.name)
        .filter(|b| b.until > input.now)
    {
        Some(b) => {
            let _ = writeln!(out, "    scaleUp:");
            let _ = writeln!(out, "      status: \"Backoff\"");
            let _ = writeln!(out, "      backoffInfo:");
            let _ = writeln!(out, "        errorCode: \"{}\"", b.error_code);
            let msg = b.error_message.replace('"', "'");
            let _ = writeln!(out, "        errorMessage: \"{msg}\"");
            let _ = writeln!(out, "      lastProbeTime: \"{probe}\"");
            let _ = writeln!(out, "      lastTransitionTime: \"{}\"", ts(b.last_failed));
        }
        None => {
            let up = if input.state.scale_up_requests.contains_key(&g.name) {
                "InProgress"
            } else {
                "NoActivity"
            };
            condition(out, "    ", "scaleUp", up, probe, since);
        }
    }
    let candidates = input.candidates.get(&g.name).copied().unwrap_or(0);
    scale_down(out, "    ", candidates, probe, since);
}

/// The ConfigMap carrying `status` (upstream also annotates the last update time).
pub fn config_map(name: &str, text: String, now: Moment) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some("kube-system".into()),
            annotations: Some(BTreeMap::from([(
                "cluster-autoscaler.kubernetes.io/last-updated".to_string(),
                ts(now),
            )])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([("status".to_string(), text)])),
        ..ConfigMap::default()
    }
}
