//! kube-proxy metrics with upstream names and buckets, rendered in Prometheus text format.
//! Start at [`ProxyMetrics`].

use std::fmt::Write as _;

/// A cumulative histogram with fixed upper bounds.
#[derive(Debug, Clone)]
pub struct Histogram {
    bounds: Vec<f64>,
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn new(bounds: Vec<f64>) -> Histogram {
        let n = bounds.len();
        Histogram {
            bounds,
            counts: vec![0; n],
            sum: 0.0,
            count: 0,
        }
    }

    /// Counts `v` in the first bucket whose bound holds it (buckets are made cumulative when
    /// rendered): one binary search, as a sync of every simulated node observes twice.
    pub fn observe(&mut self, v: f64) {
        let i = self.bounds.partition_point(|b| *b < v);
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c;
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", self.sum, self.count);
    }
}

/// `ExponentialBuckets(0.001, 2, 15)` (pkg/proxy/metrics/metrics.go `SyncProxyRulesLatency`).
pub fn sync_duration_buckets() -> Vec<f64> {
    (0..15).map(|i| 0.001 * f64::from(1u32 << i)).collect()
}

/// `MergeBuckets(LinearBuckets(0.25, 0.25, 2), LinearBuckets(1, 1, 59), LinearBuckets(60, 5, 12),
/// LinearBuckets(120, 30, 7))` (metrics.go `NetworkProgrammingLatency`).
pub fn network_programming_buckets() -> Vec<f64> {
    let mut b = vec![0.25, 0.5];
    b.extend((1..=59).map(f64::from));
    b.extend((0..12).map(|i| 60.0 + 5.0 * f64::from(i)));
    b.extend((0..7).map(|i| 120.0 + 30.0 * f64::from(i)));
    b
}

/// The proxy's metrics.
#[derive(Debug, Clone)]
pub struct ProxyMetrics {
    pub sync_duration: Histogram,
    pub full_sync_duration: Histogram,
    pub partial_sync_duration: Histogram,
    pub network_programming: Histogram,
    pub sync_failures_total: u64,
    pub service_changes_total: u64,
    pub endpoint_changes_total: u64,
    pub last_sync_timestamp_s: f64,
    /// Service ports with endpoints but none on this node for their Local policy, for
    /// internal (ClusterIP) and external traffic, as of the last successful sync.
    pub no_local_endpoints_internal: usize,
    pub no_local_endpoints_external: usize,
    /// `nftables` or `iptables`, selects the failure counter's name.
    pub mode: &'static str,
}

impl ProxyMetrics {
    pub fn new(mode: &'static str) -> ProxyMetrics {
        ProxyMetrics {
            sync_duration: Histogram::new(sync_duration_buckets()),
            full_sync_duration: Histogram::new(sync_duration_buckets()),
            partial_sync_duration: Histogram::new(sync_duration_buckets()),
            network_programming: Histogram::new(network_programming_buckets()),
            sync_failures_total: 0,
            service_changes_total: 0,
            endpoint_changes_total: 0,
            last_sync_timestamp_s: 0.0,
            no_local_endpoints_internal: 0,
            no_local_endpoints_external: 0,
            mode,
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.sync_duration.render(
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds",
            &mut out,
        );
        self.full_sync_duration.render(
            "kubeproxy_sync_full_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for full resyncs",
            &mut out,
        );
        self.partial_sync_duration.render(
            "kubeproxy_sync_partial_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for partial resyncs",
            &mut out,
        );
        self.network_programming.render(
            "kubeproxy_network_programming_duration_seconds",
            "In Cluster Network Programming Latency in seconds",
            &mut out,
        );
        let failures = match self.mode {
            "iptables" => "kubeproxy_sync_proxy_rules_iptables_restore_failures_total",
            _ => "kubeproxy_sync_proxy_rules_nftables_sync_failures_total",
        };
        let counters = [
            (
                failures,
                "Cumulative proxy rules restore failures",
                self.sync_failures_total,
            ),
            (
                "kubeproxy_sync_proxy_rules_service_changes_total",
                "Cumulative proxy rules Service changes",
                self.service_changes_total,
            ),
            (
                "kubeproxy_sync_proxy_rules_endpoint_changes_total",
                "Cumulative proxy rules Endpoint changes",
                self.endpoint_changes_total,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        let name = "kubeproxy_sync_proxy_rules_last_timestamp_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} The last time proxy rules were successfully synced\n# TYPE {name} gauge\n{name} {}",
            self.last_sync_timestamp_s
        );
        let name = "kubeproxy_sync_proxy_rules_no_local_endpoints_total";
        let _ = writeln!(
            out,
            "# HELP {name} Number of services with a Local traffic policy and no endpoints\n# TYPE {name} gauge\n{name}{{traffic_policy=\"external\"}} {}\n{name}{{traffic_policy=\"internal\"}} {}",
            self.no_local_endpoints_external, self.no_local_endpoints_internal
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_bucket_layouts() {
        let s = sync_duration_buckets();
        assert_eq!(s.len(), 15);
        assert!((s[14] - 16.384).abs() < 1e-9);
        let n = network_programming_buckets();
        assert_eq!(n.len(), 2 + 59 + 12 + 7);
        assert_eq!(n.last().copied(), Some(300.0));
    }

    #[test]
    fn histogram_is_cumulative_and_renders() {
        let mut m = ProxyMetrics::new("nftables");
        m.network_programming.observe(0.3);
        m.network_programming.observe(2.0);
        let text = m.render();
        assert!(
            text.contains("kubeproxy_network_programming_duration_seconds_bucket{le=\"0.25\"} 0\n")
        );
        assert!(
            text.contains("kubeproxy_network_programming_duration_seconds_bucket{le=\"0.5\"} 1\n")
        );
        assert!(
            text.contains("kubeproxy_network_programming_duration_seconds_bucket{le=\"2\"} 2\n")
        );
        assert!(text.contains("kubeproxy_network_programming_duration_seconds_count 2\n"));
        assert!(text.contains("kubeproxy_sync_proxy_rules_nftables_sync_failures_total 0\n"));
        assert!(text.contains(
            "kubeproxy_sync_proxy_rules_no_local_endpoints_total{traffic_policy=\"external\"} 0\n"
        ));
    }
}
