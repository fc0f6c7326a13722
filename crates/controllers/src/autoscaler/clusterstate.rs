//! Upstream's `ClusterStateRegistry`: which nodes are ready, unready, still starting or never
//! registered; whether the cluster is healthy enough to autoscale (`--max-total-unready-percentage`
//! and `--ok-total-unready-count`); the scale-ups in flight and how many nodes are upcoming;
//! and the exponential backoff of node groups whose launches failed or timed out
//! (`--max-node-provision-time`, `--initial-node-group-backoff-duration`, …).
//!
//! Start at [`ClusterState::update`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;

use super::cloud::{InstanceState, NodeGroupView};
use super::config::AutoscalerConfig;
use crate::workloads::util::created;
use crate::{Cache, Moment, node_ready_status};

/// Taint the autoscaler puts on a node it is removing (upstream `ToBeDeletedTaint`).
pub const TO_BE_DELETED_TAINT: &str = "ToBeDeletedByClusterAutoscaler";

/// Node counts by readiness (upstream `Readiness`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Readiness {
    pub ready: usize,
    /// Registered, not ready, older than the startup time.
    pub unready: usize,
    /// Registered, not ready, younger than the startup time (upstream counts such a node as
    /// still starting even if it was ready before and died: it is "upcoming").
    pub not_started: usize,
    /// Carrying the autoscaler's to-be-deleted taint.
    pub being_deleted: usize,
    /// Instances the cloud launched that have no Node yet.
    pub unregistered: usize,
    /// … for longer than `--max-node-provision-time`.
    pub long_unregistered: usize,
    /// Instances that failed to launch and are not removed yet.
    pub failed: usize,
}

impl Readiness {
    pub fn registered(&self) -> usize {
        self.ready + self.unready + self.not_started + self.being_deleted
    }
}

/// A scale-up in flight (upstream `ScaleUpRequest`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScaleUpRequest {
    pub increase: usize,
    pub time: Moment,
    pub expected_add_time: Moment,
}

/// Why and until when a group is backed off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub until: Moment,
    pub duration: Duration,
    pub last_failed: Moment,
    pub error_code: String,
    pub error_message: String,
}

/// A failed scale-up noticed in this update (for logs and the report).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScaleUpFailure {
    pub group: String,
    pub error_code: String,
    pub error_message: String,
}

/// The registry. See the module docs.
#[derive(Debug, Default)]
pub struct ClusterState {
    pub total: Readiness,
    pub per_group: BTreeMap<String, Readiness>,
    /// Node (instance) name → group name, from the cloud's instance lists.
    pub group_of: BTreeMap<String, String>,
    pub scale_up_requests: BTreeMap<String, ScaleUpRequest>,
    pub backoff: BTreeMap<String, Backoff>,
    /// Since when each launched instance has been without a Node.
    unregistered_since: BTreeMap<String, Moment>,
    /// Instances whose launch error was already counted.
    seen_errors: BTreeSet<String>,
    /// Failed instances per group, for removal (upstream `deleteCreatedNodesWithErrors`).
    pub failed_instances: BTreeMap<String, Vec<String>>,
    /// Unregistered instances per group older than `--max-node-provision-time`.
    pub long_unregistered: BTreeMap<String, Vec<String>>,
}

/// True if the node carries the autoscaler's to-be-deleted taint.
pub fn being_deleted(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| ts.iter().any(|t| t.key == TO_BE_DELETED_TAINT))
}

impl ClusterState {
    /// Recompute readiness from the nodes and the cloud, settle scale-up requests (all nodes
    /// registered: done, backoff cleared; past the expected add time: failed, backed off), and
    /// back off groups with newly failed launches. Returns the failures noticed now.
    pub fn update(
        &mut self,
        cache: &Cache,
        groups: &[NodeGroupView],
        config: &AutoscalerConfig,
        now: Moment,
    ) -> Vec<ScaleUpFailure> {
        self.group_of.clear();
        self.per_group.clear();
        self.failed_instances.clear();
        self.long_unregistered.clear();
        for g in groups {
            self.per_group.insert(g.name.clone(), Readiness::default());
            for i in &g.instances {
                self.group_of.insert(i.name.clone(), g.name.clone());
            }
        }
        self.total = Readiness::default();
        for node in cache.nodes.values() {
            let class = self.classify(node, config, now);
            let name = node.metadata.name.as_deref().unwrap_or("");
            class(&mut self.total);
            if let Some(r) = self
                .group_of
                .get(name)
                .and_then(|g| self.per_group.get_mut(g))
            {
                class(r);
            }
        }
        let mut failures = self.update_instances(cache, groups, config, now);
        failures.extend(self.settle_requests(groups, config, now));
        failures
    }

    /// Which counter a registered node bumps.
    fn classify(&self, node: &Node, config: &AutoscalerConfig, now: Moment) -> fn(&mut Readiness) {
        if being_deleted(node) {
            return |r| r.being_deleted += 1;
        }
        if node_ready_status(node) == Some("True") {
            return |r| r.ready += 1;
        }
        // Upstream `updateReadinessStats`: not ready and created less than
        // `MaxNodeStartupTime` ago is "not started", whatever happened in between.
        if created(&node.metadata) + config.max_node_startup_time > now {
            |r| r.not_started += 1
        } else {
            |r| r.unready += 1
        }
    }

    /// Count unregistered and failed instances; back off groups with new launch errors.
    fn update_instances(
        &mut self,
        cache: &Cache,
        groups: &[NodeGroupView],
        config: &AutoscalerConfig,
        now: Moment,
    ) -> Vec<ScaleUpFailure> {
        let mut failures = Vec::new();
        let mut still_unregistered = BTreeMap::new();
        let provision = config.max_node_provision_time;
        for g in groups {
            let mut new_error = None;
            for i in &g.instances {
                if let Some(err) = &i.error {
                    self.failed_instances
                        .entry(g.name.clone())
                        .or_default()
                        .push(i.name.clone());
                    self.bump(&g.name, |r| r.failed += 1);
                    if self.seen_errors.insert(i.name.clone()) {
                        new_error = Some(err.clone());
                    }
                    continue;
                }
                if i.state == InstanceState::Deleting || cache.nodes.contains_key(&i.name) {
                    continue;
                }
                let since = *self.unregistered_since.get(&i.name).unwrap_or(&now);
                still_unregistered.insert(i.name.clone(), since);
                if now.saturating_since(since) > provision {
                    self.bump(&g.name, |r| r.long_unregistered += 1);
                    self.long_unregistered
                        .entry(g.name.clone())
                        .or_default()
                        .push(i.name.clone());
                } else {
                    self.bump(&g.name, |r| r.unregistered += 1);
                }
            }
            if let Some(err) = new_error {
                // Upstream `RegisterFailedScaleUp`: the request is dropped, the group backs off.
                self.scale_up_requests.remove(&g.name);
                self.back_off(&g.name, &err.code, &err.message, config, now);
                failures.push(ScaleUpFailure {
                    group: g.name.clone(),
                    error_code: err.code,
                    error_message: err.message,
                });
            }
        }
        self.unregistered_since = still_unregistered;
        let live: BTreeSet<&String> = groups
            .iter()
            .flat_map(|g| g.instances.iter().map(|i| &i.name))
            .collect();
        self.seen_errors.retain(|n| live.contains(n));
        failures
    }

    fn bump(&mut self, group: &str, f: fn(&mut Readiness)) {
        f(&mut self.total);
        if let Some(r) = self.per_group.get_mut(group) {
            f(r);
        }
    }

    /// Upstream `updateScaleRequests`.
    fn settle_requests(
        &mut self,
        groups: &[NodeGroupView],
        config: &AutoscalerConfig,
        now: Moment,
    ) -> Vec<ScaleUpFailure> {
        let mut failures = Vec::new();
        let names: Vec<String> = self.scale_up_requests.keys().cloned().collect();
        for name in names {
            let Some(g) = groups.iter().find(|g| g.name == name) else {
                self.scale_up_requests.remove(&name);
                continue;
            };
            let registered = self.per_group.get(&name).map_or(0, Readiness::registered);
            let req = &self.scale_up_requests[&name];
            if g.target_size <= registered {
                self.scale_up_requests.remove(&name);
                self.backoff.remove(&name);
            } else if req.expected_add_time < now {
                let message = format!(
                    "Nodes added to group {name} failed to register within {}s",
                    config.max_node_provision_time.as_secs()
                );
                self.scale_up_requests.remove(&name);
                self.back_off(&name, "timeout", &message, config, now);
                failures.push(ScaleUpFailure {
                    group: name,
                    error_code: "timeout".into(),
                    error_message: message,
                });
            }
        }
        failures
    }

    /// Upstream `exponentialBackoff.Backoff`: the initial duration, doubled on each failure
    /// within the reset timeout of the previous one, capped at the maximum.
    pub fn back_off(
        &mut self,
        group: &str,
        code: &str,
        message: &str,
        config: &AutoscalerConfig,
        now: Moment,
    ) {
        let initial = config.initial_node_group_backoff_duration;
        let max = config.max_node_group_backoff_duration;
        let reset = config.node_group_backoff_reset_timeout;
        let duration = match self.backoff.get(group) {
            Some(b) if b.last_failed + reset > now => (b.duration * 2).min(max),
            _ => initial,
        };
        self.backoff.insert(
            group.to_string(),
            Backoff {
                until: now + duration,
                duration,
                last_failed: now,
                error_code: code.to_string(),
                error_message: message.to_string(),
            },
        );
    }

    /// True while the group is backed off.
    pub fn is_backed_off(&self, group: &str, now: Moment) -> bool {
        self.backoff.get(group).is_some_and(|b| b.until > now)
    }

    /// Record a scale-up just requested (upstream `RegisterScaleUp`): requests of one group add.
    pub fn register_scale_up(
        &mut self,
        group: &str,
        delta: usize,
        config: &AutoscalerConfig,
        now: Moment,
    ) {
        let expected = now + config.max_node_provision_time;
        let req = self
            .scale_up_requests
            .entry(group.to_string())
            .or_insert(ScaleUpRequest {
                increase: 0,
                time: now,
                expected_add_time: expected,
            });
        req.increase += delta;
        req.time = now;
        req.expected_add_time = expected;
    }

    /// Upstream `IsClusterHealthy`'s count: the unready nodes.
    pub fn total_unready(&self) -> usize {
        self.total.unready
    }

    /// Upstream `IsClusterHealthy`: unhealthy when the unready count is above BOTH
    /// `--ok-total-unready-count` and `--max-total-unready-percentage` of the nodes.
    pub fn is_cluster_healthy(&self, config: &AutoscalerConfig, nodes: usize) -> bool {
        let unready = self.total_unready();
        !(unready > config.ok_total_unready_count
            && unready as f64 > config.max_total_unready_percentage / 100.0 * nodes as f64)
    }

    /// Upstream `GetUpcomingNodes`: the target minus ready, unready and long-unregistered
    /// nodes — so not-started nodes and unregistered instances are upcoming (here failed
    /// instances and nodes being deleted are not, as they are removed in the same scan).
    pub fn upcoming(&self, group: &NodeGroupView) -> usize {
        let r = self.per_group.get(&group.name).copied().unwrap_or_default();
        let have = r.ready + r.unready + r.being_deleted + r.long_unregistered + r.failed;
        group.target_size.saturating_sub(have)
    }
}
