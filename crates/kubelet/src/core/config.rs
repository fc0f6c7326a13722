//! The kubelet's configuration: upstream field names and defaults. Start at [`KubeletConfig`].

use std::net::Ipv4Addr;
use std::time::Duration;

use runtime::time::span_ms;

/// Upstream `nodeLeaseDurationSeconds` default: 40 s
/// (k/k `pkg/kubelet/apis/config/v1beta1/defaults.go`).
pub const DEFAULT_NODE_LEASE_DURATION_SECONDS: i32 = 40;
/// Upstream `nodeLeaseRenewIntervalFraction` = 0.25 (k/k `pkg/kubelet/kubelet.go`): the lease
/// is renewed every quarter of its duration.
pub const LEASE_RENEW_INTERVAL_FRACTION_PERCENT: i64 = 25;
/// Upstream `nodeStatusUpdateFrequency` default: 10 s (same defaults.go).
pub const DEFAULT_NODE_STATUS_UPDATE_FREQUENCY: Duration = Duration::from_millis(10_000);
/// Upstream `nodeStatusReportFrequency` default: 5 min (same defaults.go).
pub const DEFAULT_NODE_STATUS_REPORT_FREQUENCY: Duration = Duration::from_millis(300_000);
/// First retry delay of a failed lease renew: upstream's `backoffEnsureLease` starts at 100 ms
/// and doubles before sleeping, so the first wait is 200 ms
/// (`component-helpers/apimachinery/lease/controller.go`).
pub const DEFAULT_LEASE_RETRY_INITIAL: Duration = Duration::from_millis(200);
/// Cap of the lease retry backoff: `maxBackoff = 7 * time.Second` (same file).
pub const DEFAULT_LEASE_RETRY_MAX: Duration = Duration::from_millis(7_000);
/// Container restart backoff start: `backOffPeriod = 10 * time.Second` (k/k
/// `pkg/kubelet/kubelet.go`).
pub const DEFAULT_RESTART_BACKOFF_INITIAL: Duration = Duration::from_millis(10_000);
/// Container restart backoff cap: `MaxContainerBackOff = 300 * time.Second` (same file).
pub const DEFAULT_RESTART_BACKOFF_MAX: Duration = Duration::from_millis(300_000);
/// Upstream `maxPods` default: 110 (defaults.go).
pub const DEFAULT_MAX_PODS: u32 = 110;
/// Upstream pod `terminationGracePeriodSeconds` default: 30 s (k/k `pkg/apis/core/v1/defaults.go`).
pub const DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS: i64 = 30;
/// Graceful node shutdown budget. Upstream `shutdownGracePeriod` defaults to 0 (feature off);
/// EKS AL2023 (k8s 1.34+) uses 150 s (awslabs/amazon-eks-ami PR #2390). The lab's "graceful
/// stop" needs a budget, so 30 s (a pod's own default grace) is used here.
pub const DEFAULT_SHUTDOWN_GRACE_PERIOD: Duration = Duration::from_millis(30_000);
/// Retry delay for pod status writes and pod deletes that failed for reasons other than a
/// conflict (upstream's status manager resyncs every 10 s; we retry sooner, bounded).
pub const STATUS_RETRY: Duration = Duration::from_millis(1_000);
/// After a conflict the status manager waits for the newer pod from the watch; if none comes
/// within this bound it retries anyway.
pub const STATUS_CONFLICT_WAIT: Duration = Duration::from_millis(5_000);

/// Everything a kubelet needs to know about its node.
#[derive(Clone, Debug, PartialEq)]
pub struct KubeletConfig {
    /// `--hostname-override`: the Node name (and Lease name).
    pub node_name: String,
    /// Value of the `topology.kubernetes.io/zone` label.
    pub zone: String,
    /// `--node-ip`: the InternalIP address and every pod's hostIP.
    pub node_ip: Ipv4Addr,
    /// The node's pod CIDR (`spec.podCIDR`), an IPv4 `/n` network, e.g. `10.244.0.0/24`.
    pub pod_cidr: String,
    /// `capacity.cpu` (a Kubernetes quantity, e.g. `"2"`).
    pub capacity_cpu: String,
    /// `capacity.memory` (e.g. `"4Gi"`).
    pub capacity_memory: String,
    /// `maxPods` (`capacity.pods`).
    pub max_pods: u32,
    /// `nodeLeaseDurationSeconds`; the lease is renewed every quarter of it.
    pub node_lease_duration_seconds: i32,
    /// `nodeStatusUpdateFrequency`: how often the status is computed (and posted if changed).
    pub node_status_update_frequency: Duration,
    /// `nodeStatusReportFrequency`: an unchanged status is still posted this often.
    pub node_status_report_frequency: Duration,
    /// First lease retry delay after a failed renew (doubles up to `lease_retry_max`).
    pub lease_retry_initial: Duration,
    pub lease_retry_max: Duration,
    /// Container restart backoff (CrashLoopBackOff): first delay, doubling up to the max.
    pub restart_backoff_initial: Duration,
    pub restart_backoff_max: Duration,
    /// `shutdownGracePeriod`: upper bound of every pod's grace during a graceful node shutdown.
    pub shutdown_grace_period: Duration,
    /// Reported as `status.nodeInfo.kubeletVersion`.
    pub kubelet_version: String,
    /// `--node-labels`: labels added to the Node at registration (and kept on it).
    pub node_labels: Vec<(String, String)>,
    /// `--image-policy`: what to do with an image the lab cannot run.
    pub image_policy: super::standin::ImagePolicy,
    /// kubelet `--port`: where it serves `/containerLogs` (reported as
    /// `status.daemonEndpoints.kubeletEndpoint.Port`).
    pub port: u16,
}

/// Upstream kubelet `--port` default (`ports.KubeletPort`, k/k `pkg/cluster/ports/ports.go`).
pub const DEFAULT_KUBELET_PORT: u16 = 10250;

impl Default for KubeletConfig {
    fn default() -> KubeletConfig {
        KubeletConfig {
            node_name: "node".into(),
            zone: "zone-a".into(),
            node_ip: Ipv4Addr::new(172, 20, 0, 11),
            pod_cidr: "10.244.0.0/24".into(),
            capacity_cpu: "2".into(),
            capacity_memory: "4Gi".into(),
            max_pods: DEFAULT_MAX_PODS,
            node_lease_duration_seconds: DEFAULT_NODE_LEASE_DURATION_SECONDS,
            node_status_update_frequency: DEFAULT_NODE_STATUS_UPDATE_FREQUENCY,
            node_status_report_frequency: DEFAULT_NODE_STATUS_REPORT_FREQUENCY,
            lease_retry_initial: DEFAULT_LEASE_RETRY_INITIAL,
            lease_retry_max: DEFAULT_LEASE_RETRY_MAX,
            restart_backoff_initial: DEFAULT_RESTART_BACKOFF_INITIAL,
            restart_backoff_max: DEFAULT_RESTART_BACKOFF_MAX,
            shutdown_grace_period: DEFAULT_SHUTDOWN_GRACE_PERIOD,
            kubelet_version: "v1.33.0-zonelab".into(),
            node_labels: Vec::new(),
            image_policy: super::standin::ImagePolicy::default(),
            port: DEFAULT_KUBELET_PORT,
        }
    }
}

impl KubeletConfig {
    /// The lease renew interval: a quarter of the lease duration (10 s by default).
    pub fn lease_renew_interval(&self) -> Duration {
        span_ms(
            i64::from(self.node_lease_duration_seconds)
                * 1000
                * LEASE_RENEW_INTERVAL_FRACTION_PERCENT
                / 100,
        )
    }

    /// `--profile fast`: every timer divided by 10 (lease 4 s, renew 1 s, status 1 s / 30 s,
    /// restart backoff 1 s .. 30 s).
    pub fn fast(mut self) -> KubeletConfig {
        self.node_lease_duration_seconds = (self.node_lease_duration_seconds / 10).max(1);
        self.node_status_update_frequency /= 10;
        self.node_status_report_frequency /= 10;
        self.restart_backoff_initial /= 10;
        self.restart_backoff_max /= 10;
        self.lease_retry_max = (self.lease_retry_max / 10).max(self.lease_retry_initial);
        self
    }
}
