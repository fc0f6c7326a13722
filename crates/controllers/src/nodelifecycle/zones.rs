//! Zone disruption states and the per-zone tainting rates they select (upstream
//! `ComputeZoneState`, `handleDisruption`, `setLimiterInZone`, `ReducedQPSFunc`,
//! `HealthyQPSFunc`, `nodetopology.GetZoneKey`).
//!
//! Start at [`compute_zone_state`], then [`NodeLifecycleController::handle_disruption`].

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;

use super::NodeLifecycleController;
use super::node_writes::NoExecuteOp;
use super::rate_limited_queue::{Limiter, RateLimitedTimedQueue};
use crate::Moment;
use crate::cache::Cache;

/// Legacy zone label, read first as upstream does (`v1.LabelFailureDomainBetaZone`).
const BETA_ZONE_LABEL: &str = "failure-domain.beta.kubernetes.io/zone";
/// Legacy region label (`v1.LabelFailureDomainBetaRegion`).
const BETA_REGION_LABEL: &str = "failure-domain.beta.kubernetes.io/region";
use runtime::labels::REGION_LABEL;
/// Nodes with this label are left out of zone states (upstream `labelNodeDisruptionExclusion`).
pub const EXCLUDE_DISRUPTION_LABEL: &str = "node.kubernetes.io/exclude-disruption";

/// A zone's health as upstream classifies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneState {
    /// Seen for the first time; no limiter decision yet.
    Initial,
    Normal,
    PartialDisruption,
    FullDisruption,
}

/// Ready and not-ready node counts of one zone (a node without a Ready condition, or not
/// `True`, is not ready).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ZoneCount {
    pub ready: usize,
    pub not_ready: usize,
}

impl ZoneCount {
    pub fn total(&self) -> usize {
        self.ready + self.not_ready
    }
}

/// Upstream `ComputeZoneState`: FullDisruption if no node is ready; PartialDisruption if more
/// than 2 are not ready and they are at least `unhealthy_zone_threshold` of the zone (compared
/// in float32, as upstream); Normal otherwise.
pub fn compute_zone_state(count: ZoneCount, unhealthy_zone_threshold: f32) -> ZoneState {
    if count.ready == 0 && count.not_ready > 0 {
        ZoneState::FullDisruption
    } else if count.not_ready > 2
        && (count.not_ready as f32) / (count.total() as f32) >= unhealthy_zone_threshold
    {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

/// Upstream `nodetopology.GetZoneKey`: region and zone joined by `":\0:"`, or `""` if the node
/// has neither label. Beta labels win over the GA ones, as upstream.
pub fn zone_key(node: &Node) -> String {
    let Some(labels) = node.metadata.labels.as_ref() else {
        return String::new();
    };
    let zone = labels
        .get(BETA_ZONE_LABEL)
        .or_else(|| labels.get(crate::ZONE_LABEL))
        .map(String::as_str)
        .unwrap_or("");
    let region = labels
        .get(BETA_REGION_LABEL)
        .or_else(|| labels.get(REGION_LABEL))
        .map(String::as_str)
        .unwrap_or("");
    if region.is_empty() && zone.is_empty() {
        return String::new();
    }
    format!("{region}:\0:{zone}")
}

/// True if the node is left out of zone states.
pub fn excluded_from_disruption(node: &Node) -> bool {
    node.metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(EXCLUDE_DISRUPTION_LABEL))
}

impl NodeLifecycleController {
    /// Upstream `addPodEvictorForNewZone`: a zone seen for the first time gets state Initial
    /// and a full tainting bucket at the normal rate.
    pub(super) fn add_zone(&mut self, zone: &str, now: Moment) {
        if !self.zone_states.contains_key(zone) {
            self.zone_states
                .insert(zone.to_string(), ZoneState::Initial);
            self.tainters.insert(
                zone.to_string(),
                RateLimitedTimedQueue::new(Limiter::new(self.config.node_eviction_rate, now)),
            );
        }
    }

    /// Upstream `ReducedQPSFunc`, called with the ZONE's node count (the flag help says
    /// "cluster"; the code passes the zone size).
    fn reduced_qps(&self, zone_size: usize) -> f32 {
        if zone_size > self.config.large_cluster_size_threshold as usize {
            self.config.secondary_node_eviction_rate
        } else {
            0.0
        }
    }

    /// Upstream `setLimiterInZone`.
    fn set_limiter_in_zone(&mut self, zone: &str, zone_size: usize, state: ZoneState, now: Moment) {
        let qps = match state {
            ZoneState::Normal | ZoneState::FullDisruption => self.config.node_eviction_rate,
            ZoneState::PartialDisruption => self.reduced_qps(zone_size),
            ZoneState::Initial => return,
        };
        if let Some(q) = self.tainters.get_mut(zone) {
            q.swap_limiter(qps, now);
        }
    }

    /// Upstream `markNodeAsReachable`: both NoExecute controller taints off, out of the queue.
    pub(super) fn mark_node_as_reachable(&mut self, node: &Node, name: &str, zone: &str) {
        let tainted =
            self.writer
                .effective_no_execute(node, name, super::taints::TAINT_UNREACHABLE)
                || self
                    .writer
                    .effective_no_execute(node, name, super::taints::TAINT_NOT_READY);
        if tainted {
            self.writer.no_execute(name, NoExecuteOp::Clear);
        }
        if let Some(q) = self.tainters.get_mut(zone) {
            q.remove(name);
        }
    }

    /// Upstream `handleDisruption`: new zone states from this pass's Ready counts; tainting
    /// rates follow state changes; all zones fully disrupted stops tainting and removes the
    /// NoExecute taints ("master disruption mode"); leaving it gives every node a fresh grace.
    pub(super) fn handle_disruption(
        &mut self,
        cache: &Cache,
        counts: &BTreeMap<String, ZoneCount>,
        now: Moment,
    ) {
        let threshold = self.config.unhealthy_zone_threshold;
        let new_states: BTreeMap<&String, ZoneState> = counts
            .iter()
            .map(|(z, c)| (z, compute_zone_state(*c, threshold)))
            .collect();
        let all_are_full = new_states.values().all(|s| *s == ZoneState::FullDisruption);
        for z in counts.keys() {
            self.zone_states
                .entry(z.clone())
                .or_insert(ZoneState::Initial);
        }
        // Zones without nodes this pass are forgotten (upstream stops at the first zone not
        // fully disrupted, leaving later stale zones for a later pass; we drop them all).
        self.zone_states.retain(|z, _| counts.contains_key(z));
        let all_were_full = self
            .zone_states
            .values()
            .all(|s| *s == ZoneState::FullDisruption);
        if all_are_full && all_were_full {
            return;
        }
        if all_are_full {
            tracing::info!("all nodes are not ready: entering master disruption mode");
            for (name, node) in &cache.nodes {
                let zone = super::zones::zone_key(node);
                self.mark_node_as_reachable(node, name, &zone);
            }
            let zones: Vec<String> = self.zone_states.keys().cloned().collect();
            for z in zones {
                if let Some(q) = self.tainters.get_mut(&z) {
                    q.swap_limiter(0.0, now);
                }
                self.zone_states.insert(z, ZoneState::FullDisruption);
            }
            return;
        }
        if all_were_full {
            tracing::info!("some nodes are ready: leaving master disruption mode");
            for h in self.nodes.values_mut().filter_map(|t| t.health.as_mut()) {
                h.probe = now;
            }
        }
        let zones: Vec<String> = self.zone_states.keys().cloned().collect();
        for z in zones {
            let new = new_states.get(&z).copied().unwrap_or(ZoneState::Initial);
            if all_were_full || self.zone_states.get(&z) != Some(&new) {
                let size = counts.get(&z).map_or(0, ZoneCount::total);
                self.set_limiter_in_zone(&z, size, new, now);
                self.zone_states.insert(z, new);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(ready: usize, not_ready: usize) -> ZoneCount {
        ZoneCount { ready, not_ready }
    }

    #[test]
    fn zone_state_table() {
        let t = 0.55;
        assert_eq!(compute_zone_state(c(3, 0), t), ZoneState::Normal);
        assert_eq!(compute_zone_state(c(2, 1), t), ZoneState::Normal);
        // Two down is never partial, whatever the fraction.
        assert_eq!(compute_zone_state(c(1, 2), t), ZoneState::Normal);
        assert_eq!(compute_zone_state(c(2, 3), t), ZoneState::PartialDisruption);
        assert_eq!(compute_zone_state(c(3, 3), t), ZoneState::Normal);
        // 11/20 = 0.55 exactly is partial (>=).
        assert_eq!(
            compute_zone_state(c(9, 11), t),
            ZoneState::PartialDisruption
        );
        assert_eq!(compute_zone_state(c(0, 1), t), ZoneState::FullDisruption);
        assert_eq!(compute_zone_state(c(0, 0), t), ZoneState::Normal);
    }

    #[test]
    fn zone_key_uses_region_and_zone() {
        let node: Node =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "n", "labels": {
            "topology.kubernetes.io/zone": "a", "topology.kubernetes.io/region": "r"}}}))
            .expect("node");
        assert_eq!(zone_key(&node), "r:\0:a");
        assert_eq!(zone_key(&Node::default()), "");
    }
}
