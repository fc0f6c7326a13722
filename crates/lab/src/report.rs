//! The report of one run, as written to `report.json`: the answer (requests, availability,
//! error window, phases, SLO) plus the time series the HTML page charts. Field meanings are in
//! docs/report.md. Every `*_s` time is seconds since the run's start (t = 0, when the clients
//! begin sending); `null` means the phase did not happen within the run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::timeline::Outcome;

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// `live` (namespaces, processes) or `sim`.
    pub mode: String,
    /// Seed of the run (recorded; the live lab has no randomness of its own to seed).
    pub seed: u64,
    /// `fast` or `upstream`.
    pub profile: String,
    /// `nftables` or `iptables`.
    pub proxy_mode: String,
    /// Wall-clock start (milliseconds since the Unix epoch).
    pub started_at_ms: f64,
    /// Wall-clock end (milliseconds since the Unix epoch).
    #[serde(default)]
    pub ended_at_ms: f64,
    /// Run length in seconds.
    pub duration_s: f64,
    /// Why the run ended: `duration`, `capacity-restored` or `cap`.
    pub ended_by: String,
    /// The control-plane timers the run used.
    pub timers: Timers,
    /// The Services the clients called (`namespace/name`).
    #[serde(default)]
    pub services: Vec<String>,
    /// Lab node name -> zone.
    #[serde(default)]
    pub nodes: BTreeMap<String, String>,
    /// The faults as injected.
    pub faults: Vec<FaultRecord>,
    /// Request counts.
    pub requests: Requests,
    /// Percentage of requests that succeeded (100 when there were none).
    pub availability: f64,
    /// First to last failed new-connection request caused by the fault, seconds (0 when none
    /// failed).
    pub error_window_s: f64,
    /// Start and end (t) of that window; absent when nothing failed.
    pub error_window: Option<Window>,
    /// The same window had the stale-conntrack hits (`requests.stale_conntrack`) not failed:
    /// what the control plane and the proxies alone cost.
    #[serde(default)]
    pub error_window_without_stale_conntrack_s: f64,
    /// The phases of the recovery.
    pub phases: Phases,
    /// Share (0..1) of the target Services' ready endpoints that were on failed nodes just
    /// before the first fault.
    pub dead_endpoint_share: f64,
    /// Share (0..1) of the new-connection requests of clients off the failed nodes, started
    /// between the fault and `proxies_converged_s`, that failed: compare with
    /// `dead_endpoint_share`.
    pub window_failure_share: f64,
    /// New-connection requests of clients off the failed nodes, started after
    /// `proxies_converged_s` and before the next fault (or recovery), that failed.
    pub failed_after_converged: u64,
    /// How many of those hit a stale conntrack entry (see `requests.stale_conntrack`).
    #[serde(default)]
    pub failed_after_converged_stale_conntrack: u64,
    /// Breakdown by client zone.
    pub per_zone: BTreeMap<String, ZoneReport>,
    /// Requests answered, by the zone of the answering pod.
    pub answered_by_zone: BTreeMap<String, u64>,
    /// The objective and whether the run met it.
    pub slo: SloReport,
    /// Time series for the charts.
    pub series: Series,
    /// The Kubernetes Events of the run (one entry per Event object, at its latest count),
    /// in order of first sight, at most [`MAX_REPORT_EVENTS`].
    #[serde(default)]
    pub events: Vec<EventRecord>,
    /// Events left out past [`MAX_REPORT_EVENTS`].
    #[serde(default)]
    pub events_left_out: u64,
    /// The control plane through the run: etcd leader, leader-election failovers, the API
    /// probe (absent in reports of runs without one).
    #[serde(default)]
    pub control_plane: Option<ControlPlane>,
    /// The target Service's load balancer (absent when no client went through one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
    /// Breakdown by client kind (`clusterip`, `external`), the fields of `per_zone`.
    #[serde(default)]
    pub per_client_kind: BTreeMap<String, ZoneReport>,
    /// Breakdown by the clients' target Service (`<namespace>/<name>`), the fields of
    /// `per_zone`.
    #[serde(default)]
    pub per_service: BTreeMap<String, ZoneReport>,
    /// Node groups and the cluster autoscaler (absent in runs without `nodeGroups`).
    #[serde(default)]
    pub autoscaler: Option<AutoscalerReport>,
}

/// A Service load balancer in a run (docs/report.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadBalancer {
    /// `namespace/name` of the Service and the balancer's name.
    pub service: String,
    pub name: String,
    pub health_check: HealthCheck,
    /// Cross-zone load balancing (NLB default off).
    pub cross_zone: bool,
    /// LB node addresses by zone.
    pub nodes: BTreeMap<String, String>,
    /// Every target state change (t, seconds), in order, at most [`MAX_LB_TRANSITIONS`].
    pub transitions: Vec<LbTransition>,
    /// The last state of every target (`ip:port` -> state) at the end of the run.
    pub final_states: BTreeMap<String, String>,
}

/// Target state changes a report keeps at most.
pub const MAX_LB_TRANSITIONS: usize = 2000;

/// A target group's health check, as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub interval_s: f64,
    pub timeout_s: f64,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

/// One target state change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LbTransition {
    pub t_s: f64,
    pub target: String,
    pub zone: String,
    pub to: String,
}

/// What the node groups and the cluster autoscaler did (docs/report.md).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AutoscalerReport {
    /// Instances that booted and joined as nodes, in boot order.
    pub nodes_added: Vec<NodeAdded>,
    /// Launches that failed (a zone without capacity).
    #[serde(default)]
    pub launches_failed: Vec<LaunchFailed>,
    /// When autoscaling first halted (too many unready nodes: `--max-total-unready-percentage`
    /// and `--ok-total-unready-count`), t seconds; `null` if it never did.
    pub halted_s: Option<f64>,
}

/// One node a node group added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeAdded {
    pub name: String,
    pub zone: String,
    /// When its launch began (t, seconds).
    pub requested_s: f64,
    /// When its Node first reported Ready (`null`: not within the run).
    pub ready_s: Option<f64>,
}

/// One failed launch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchFailed {
    pub name: String,
    pub zone: String,
    pub requested_s: Option<f64>,
    pub failed_s: f64,
}

/// The control plane's side of a run (docs/report.md). Durations named `*_failover_s` and
/// `etcd_leader_elected_s` are seconds after the first fault; `null` when the role did not
/// move within the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ControlPlane {
    /// `etcd` or `embedded`.
    pub store: String,
    /// API servers (and etcd members with `etcd`).
    pub members: u32,
    /// Zones holding a member; empty when the control plane runs outside the zones.
    pub member_zones: Vec<String>,
    /// Zone of the etcd leader just before the first fault, and once the cluster settled after
    /// it (a leader outside the failed zones).
    pub etcd_leader_zone_before: Option<String>,
    pub etcd_leader_zone_after: Option<String>,
    /// Seconds from the fault until a leader outside the failed zones was observed; `null`
    /// when the leader was not in a failed zone.
    pub etcd_leader_elected_s: Option<f64>,
    /// Holders of the `kube-controller-manager` and `kube-scheduler` Leases before the fault
    /// and after it.
    pub controller_manager_holder_before: Option<String>,
    pub controller_manager_holder_after: Option<String>,
    pub scheduler_holder_before: Option<String>,
    pub scheduler_holder_after: Option<String>,
    /// Seconds from the fault until the runner saw a new holder outside the failed zones (the
    /// Lease is read every 250 ms): a takeover from a failed zone, or from a holder that lost
    /// its Lease anyway.
    pub controller_manager_failover_s: Option<f64>,
    pub scheduler_failover_s: Option<f64>,
    /// Longest stretch without an acknowledged probe write during the run, seconds (run start
    /// and end count as edges); `null` without a probe.
    pub api_unavailable_s: Option<f64>,
    /// Where that stretch lies (t, seconds).
    pub api_unavailable: Option<Window>,
    /// Whether the API stayed up: the longest gap at most [`API_UP_MAX_GAP_S`].
    pub api_stayed_up: Option<bool>,
    /// Probe writes sent, acknowledged, and acknowledged but missing when read back after the
    /// run (`null`: not read back).
    pub writes_attempted: u64,
    pub writes_acknowledged: u64,
    pub writes_lost: Option<u64>,
    /// Step series for the chart: (t, zone or holder), at every change.
    pub etcd_leader: Vec<(f64, Option<String>)>,
    pub controller_manager: Vec<(f64, String)>,
    pub scheduler: Vec<(f64, String)>,
}

/// A probe gap up to this long still counts as the API staying up: the probe writes 10 times a
/// second with a 1 s timeout, so one slow write or a retried connection costs up to 1 s.
pub const API_UP_MAX_GAP_S: f64 = 1.0;

/// The Lease the active controller-manager holds (upstream's name).
pub const CONTROLLER_MANAGER_LEASE: &str = "kube-system/kube-controller-manager";
/// The Lease the active scheduler holds (upstream's name).
pub const SCHEDULER_LEASE: &str = "kube-system/kube-scheduler";

/// What the run knows of its control plane before analysing anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlPlaneSetup {
    /// `etcd` or `embedded`.
    pub store: String,
    pub members: u32,
    /// Zones holding a member (empty: outside the zones).
    pub member_zones: Vec<String>,
}

/// Events a report lists at most.
pub const MAX_REPORT_EVENTS: usize = 2000;

/// One Kubernetes Event of the run, as `kubectl get events` would list it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// First and last time the run saw it, seconds from t = 0.
    pub first_s: f64,
    pub last_s: f64,
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub object: String,
    pub message: String,
    pub source: String,
    pub count: i32,
}

/// Timers of the run, in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timers {
    pub node_monitor_grace_period_s: f64,
    pub node_monitor_period_s: f64,
    pub lease_renew_interval_s: f64,
    pub unreachable_toleration_s: f64,
    /// `nf_conntrack_tcp_timeout_syn_sent` of the nodes (kernel default 120).
    #[serde(default = "default_syn_sent")]
    pub conntrack_tcp_timeout_syn_sent_s: f64,
}

fn default_syn_sent() -> f64 {
    120.0
}

/// One injected fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRecord {
    /// When it was injected (t, seconds).
    pub at_s: f64,
    /// Scenario fault type (`zone-power-off`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// Zone or node as written in the scenario.
    pub target: String,
    /// Lab node names it touched.
    pub nodes: Vec<String>,
}

/// Request counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Requests {
    pub total: u64,
    pub ok: u64,
    pub failed: u64,
    /// Count per outcome (`ok`, `timeout`, `refused`, `reset`, `error`).
    pub by_outcome: BTreeMap<Outcome, u64>,
    /// Requests that opened a new connection.
    pub new_connections: Counts,
    /// Requests on a connection opened before (keep-alive).
    pub reused_connections: Counts,
    /// Requests from the fault on that used a connection opened before it (keep-alive):
    /// established connections to a dead pod hang, as upstream flushes no TCP conntrack.
    #[serde(default)]
    pub pre_fault_connections: Counts,
    /// Failed new connections whose source port a failed connection of the same client used
    /// less than `nf_conntrack_tcp_timeout_syn_sent` (120 s) before: they hit that one's stale
    /// conntrack entry, still NATed to the endpoint it picked (kubernetes/kubernetes#101607).
    #[serde(default)]
    pub stale_conntrack: u64,
    /// Failed requests sent while the client node's kube-proxy programmed no endpoint for the
    /// target Services: rejected (ICMP port unreachable, rate-limited by the kernel to a burst
    /// of 6 then 1/s per client, so mostly timeouts), not failed on a dead pod.
    #[serde(default)]
    pub no_endpoints: u64,
}

/// Total and failed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub total: u64,
    pub failed: u64,
}

/// A stretch of time, seconds since start.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub start_s: f64,
    pub end_s: f64,
}

/// Phase times (t, seconds); each `None` when it did not happen during the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Phases {
    /// The first fault that takes nodes down.
    pub fault_s: Option<f64>,
    /// Every failed node reported not Ready (Unknown or False) by the API.
    pub nodes_not_ready_s: Option<f64>,
    /// Every load-balancer target on a failed node was `unhealthy` (or `draining`): the
    /// balancer sends it no new connection from then on (absent without a load balancer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lb_targets_unhealthy_s: Option<f64>,
    /// No EndpointSlice of the target Services lists a ready endpoint on a failed node.
    pub endpoints_removed_s: Option<f64>,
    /// Every proxy on a surviving node applied rules without the removed endpoints.
    pub proxies_converged_s: Option<f64>,
    /// Every pod of the failed nodes was marked for deletion (evicted or terminated).
    pub pods_evicted_s: Option<f64>,
    /// The cluster autoscaler's first scale-up request after the fault (node groups only).
    #[serde(default)]
    pub scale_up_requested_s: Option<f64>,
    /// Every node launched after the fault that booted is Ready (node groups only).
    #[serde(default)]
    pub nodes_provisioned_s: Option<f64>,
    /// The target Services have as many ready endpoints as before the fault again.
    pub replacements_ready_s: Option<f64>,
    /// ... and every surviving proxy applied rules with that many endpoints.
    pub capacity_restored_s: Option<f64>,
}

impl Phases {
    /// The node groups' phases with their names in words (markers on the page, summary lines).
    pub fn capacity_steps(&self) -> [(&'static str, Option<f64>); 2] {
        [
            ("scale-up requested", self.scale_up_requested_s),
            ("nodes provisioned", self.nodes_provisioned_s),
        ]
    }

    /// The load balancer's phase with its name in words (a marker on the page, a summary line).
    pub fn lb_steps(&self) -> [(&'static str, Option<f64>); 1] {
        [("LB targets unhealthy", self.lb_targets_unhealthy_s)]
    }

    /// Every phase in order, with its name in words: what the page, the summary and the
    /// progress line show.
    pub fn steps(&self) -> [(&'static str, Option<f64>); 7] {
        [
            ("fault", self.fault_s),
            ("nodes not ready", self.nodes_not_ready_s),
            ("endpoints removed", self.endpoints_removed_s),
            ("proxies converged", self.proxies_converged_s),
            ("pods evicted", self.pods_evicted_s),
            ("replacements ready", self.replacements_ready_s),
            ("capacity restored", self.capacity_restored_s),
        ]
    }
}

/// One client zone's share of the traffic.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ZoneReport {
    pub requests: u64,
    pub ok: u64,
    pub failed: u64,
    pub availability: f64,
    pub by_outcome: BTreeMap<Outcome, u64>,
    pub error_window_s: f64,
}

/// The SLO and the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloReport {
    pub target: SloTarget,
    pub met: bool,
    pub availability_met: bool,
    pub error_window_met: bool,
}

/// What the scenario asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloTarget {
    /// Minimum availability, percent.
    pub availability: f64,
    /// Longest allowed error window, seconds (`None`: no limit).
    pub max_error_window_s: Option<f64>,
}

/// Time series, bucketed by `bucket_s` seconds from t = 0.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub bucket_s: f64,
    /// Client zone -> one point per bucket, by request start time.
    pub requests: BTreeMap<String, Vec<RatePoint>>,
    /// Zone of the endpoint -> step function of ready endpoints of the target Services, as
    /// (t, count) points at every change (from the EndpointSlices in the API).
    pub ready_endpoints: BTreeMap<String, Vec<(f64, u32)>>,
}

/// Requests per second in one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RatePoint {
    /// Bucket start, seconds.
    pub t: f64,
    pub ok: f64,
    pub failed: f64,
}
