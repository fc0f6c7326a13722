//! The cluster autoscaler's settings, named after upstream's flags with upstream's defaults
//! (kubernetes/autoscaler cluster-autoscaler/config/flags/flags.go and FAQ.md), and the `fast`
//! profile that divides every timer by 10.
//!
//! Start at [`AutoscalerConfig`].

use std::time::Duration;

/// Which expander picks among scale-up options (`--expander`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpanderKind {
    /// `random`, upstream's default.
    Random,
    /// `least-waste`: the option leaving the least idle CPU and memory on the new nodes.
    LeastWaste,
    /// `priority`: the highest priority from the `cluster-autoscaler-priority-expander`
    /// ConfigMap; ties go to `random`.
    Priority,
}

impl ExpanderKind {
    /// Parse the flag value (`random`, `least-waste`, `priority`).
    pub fn parse(s: &str) -> Result<ExpanderKind, ConfigError> {
        match s {
            "random" => Ok(ExpanderKind::Random),
            "least-waste" => Ok(ExpanderKind::LeastWaste),
            "priority" => Ok(ExpanderKind::Priority),
            other => Err(ConfigError::UnknownExpander(other.to_string())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExpanderKind::Random => "random",
            ExpanderKind::LeastWaste => "least-waste",
            ExpanderKind::Priority => "priority",
        }
    }
}

/// Bad autoscaler settings.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// Upstream's text for an unknown `--expander` value.
    #[error("Expander {0} not supported")]
    UnknownExpander(String),
    #[error("--scale-down-utilization-threshold must be in [0, 1], got {0}")]
    Utilization(String),
    #[error("--max-total-unready-percentage must be in [0, 100], got {0}")]
    UnreadyPercentage(String),
}

/// Autoscaler settings. Every duration is a flag of upstream's with its default.
#[derive(Clone, Debug)]
pub struct AutoscalerConfig {
    /// `--scan-interval`: 10 s.
    pub scan_interval: Duration,
    /// `--expander`: `random`.
    pub expander: ExpanderKind,
    /// `--balance-similar-node-groups`: false.
    pub balance_similar_node_groups: bool,
    /// `--max-node-provision-time`: 15 min. A scale-up whose nodes have not registered by then
    /// has failed (the group backs off); an instance unregistered that long is removed.
    pub max_node_provision_time: Duration,
    /// `--max-node-startup-time` (upstream's `MaxNodeStartupTime`, a flag since
    /// cluster-autoscaler 1.35): 15 min from registration to Ready before a node counts as
    /// long-not-started (unready).
    pub max_node_startup_time: Duration,
    /// `--initial-node-group-backoff-duration`: 5 min.
    pub initial_node_group_backoff_duration: Duration,
    /// `--max-node-group-backoff-duration`: 30 min.
    pub max_node_group_backoff_duration: Duration,
    /// `--node-group-backoff-reset-timeout`: 3 h.
    pub node_group_backoff_reset_timeout: Duration,
    /// `--max-total-unready-percentage`: 45.
    pub max_total_unready_percentage: f64,
    /// `--ok-total-unready-count`: 3.
    pub ok_total_unready_count: usize,
    /// `--scale-down-enabled`: true.
    pub scale_down_enabled: bool,
    /// `--scale-down-unneeded-time`: 10 min.
    pub scale_down_unneeded_time: Duration,
    /// `--scale-down-unready-time`: 20 min.
    pub scale_down_unready_time: Duration,
    /// `--scale-down-delay-after-add`: 10 min.
    pub scale_down_delay_after_add: Duration,
    /// `--scale-down-delay-after-failure`: 3 min.
    pub scale_down_delay_after_failure: Duration,
    /// `--scale-down-utilization-threshold`: 0.5 (max of CPU and memory requests / allocatable).
    pub scale_down_utilization_threshold: f64,
    /// `--max-empty-bulk-delete`: 10.
    pub max_empty_bulk_delete: usize,
    /// `--skip-nodes-with-system-pods`: true (kube-system pods other than DaemonSet and
    /// mirror pods block a node's removal).
    pub skip_nodes_with_system_pods: bool,
    /// `--status-config-map-name`: `cluster-autoscaler-status` (in kube-system).
    pub status_config_map_name: String,
    /// Seed of the random expander's RNG (upstream uses a global RNG).
    pub seed: u64,
}

impl Default for AutoscalerConfig {
    fn default() -> Self {
        let min = |m: u64| Duration::from_secs(60 * m);
        AutoscalerConfig {
            scan_interval: Duration::from_secs(10),
            expander: ExpanderKind::Random,
            balance_similar_node_groups: false,
            max_node_provision_time: min(15),
            max_node_startup_time: min(15),
            initial_node_group_backoff_duration: min(5),
            max_node_group_backoff_duration: min(30),
            node_group_backoff_reset_timeout: min(180),
            max_total_unready_percentage: 45.0,
            ok_total_unready_count: 3,
            scale_down_enabled: true,
            scale_down_unneeded_time: min(10),
            scale_down_unready_time: min(20),
            scale_down_delay_after_add: min(10),
            scale_down_delay_after_failure: min(3),
            scale_down_utilization_threshold: 0.5,
            max_empty_bulk_delete: 10,
            skip_nodes_with_system_pods: true,
            status_config_map_name: "cluster-autoscaler-status".to_string(),
            seed: 0,
        }
    }
}

impl AutoscalerConfig {
    /// Every timer divided by `divisor` (the `fast` profile passes 10).
    pub fn scaled(mut self, divisor: u32) -> AutoscalerConfig {
        let d = divisor.max(1);
        for t in self.timers_mut() {
            *t /= d;
        }
        self
    }

    fn timers_mut(&mut self) -> [&mut Duration; 10] {
        [
            &mut self.scan_interval,
            &mut self.max_node_provision_time,
            &mut self.max_node_startup_time,
            &mut self.initial_node_group_backoff_duration,
            &mut self.max_node_group_backoff_duration,
            &mut self.node_group_backoff_reset_timeout,
            &mut self.scale_down_unneeded_time,
            &mut self.scale_down_unready_time,
            &mut self.scale_down_delay_after_add,
            &mut self.scale_down_delay_after_failure,
        ]
    }

    /// Reject values upstream rejects or that make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let u = self.scale_down_utilization_threshold;
        if !(0.0..=1.0).contains(&u) {
            return Err(ConfigError::Utilization(u.to_string()));
        }
        let p = self.max_total_unready_percentage;
        if !(0.0..=100.0).contains(&p) {
            return Err(ConfigError::UnreadyPercentage(p.to_string()));
        }
        Ok(())
    }

    /// `(flag, value)` pairs for logs and the docs.
    pub fn flags(&self) -> Vec<(&'static str, String)> {
        let s = |d: Duration| format!("{}s", d.as_secs_f64());
        vec![
            ("scan-interval", s(self.scan_interval)),
            ("expander", self.expander.as_str().to_string()),
            (
                "balance-similar-node-groups",
                self.balance_similar_node_groups.to_string(),
            ),
            ("max-node-provision-time", s(self.max_node_provision_time)),
            ("max-node-startup-time", s(self.max_node_startup_time)),
            (
                "initial-node-group-backoff-duration",
                s(self.initial_node_group_backoff_duration),
            ),
            (
                "max-node-group-backoff-duration",
                s(self.max_node_group_backoff_duration),
            ),
            (
                "node-group-backoff-reset-timeout",
                s(self.node_group_backoff_reset_timeout),
            ),
            (
                "max-total-unready-percentage",
                self.max_total_unready_percentage.to_string(),
            ),
            (
                "ok-total-unready-count",
                self.ok_total_unready_count.to_string(),
            ),
            ("scale-down-enabled", self.scale_down_enabled.to_string()),
            ("scale-down-unneeded-time", s(self.scale_down_unneeded_time)),
            ("scale-down-unready-time", s(self.scale_down_unready_time)),
            (
                "scale-down-delay-after-add",
                s(self.scale_down_delay_after_add),
            ),
            (
                "scale-down-delay-after-failure",
                s(self.scale_down_delay_after_failure),
            ),
            (
                "scale-down-utilization-threshold",
                self.scale_down_utilization_threshold.to_string(),
            ),
            (
                "max-empty-bulk-delete",
                self.max_empty_bulk_delete.to_string(),
            ),
            (
                "skip-nodes-with-system-pods",
                self.skip_nodes_with_system_pods.to_string(),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_profile_divides_every_timer_by_ten() {
        let c = AutoscalerConfig::default().scaled(10);
        assert_eq!(c.scan_interval, Duration::from_secs(1));
        assert_eq!(c.max_node_provision_time, Duration::from_secs(90));
        assert_eq!(c.scale_down_unneeded_time, Duration::from_secs(60));
        assert_eq!(c.scale_down_unready_time, Duration::from_secs(120));
        assert_eq!(
            c.initial_node_group_backoff_duration,
            Duration::from_secs(30)
        );
        assert_eq!(c.max_node_group_backoff_duration, Duration::from_secs(180));
        assert_eq!(c.scale_down_delay_after_add, Duration::from_secs(60));
        // Non-timers are unchanged.
        assert_eq!(c.ok_total_unready_count, 3);
        assert_eq!(c.max_total_unready_percentage, 45.0);
    }

    #[test]
    fn expander_names_are_upstreams() {
        assert_eq!(
            ExpanderKind::parse("least-waste"),
            Ok(ExpanderKind::LeastWaste)
        );
        assert_eq!(
            ExpanderKind::parse("most-pods").unwrap_err().to_string(),
            "Expander most-pods not supported"
        );
    }
}
