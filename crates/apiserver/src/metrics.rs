//! The API server's Prometheus metrics under upstream names: requests (count, latency,
//! in-flight, long-running), watch events, storage operations and stored object counts,
//! rendered in the text exposition format that `GET /metrics` serves.
//!
//! Start at [`Metrics`]: the server records into it ([`Metrics::record_request`],
//! [`Metrics::watch_event`]), [`crate::metered::MeteredStore`] records storage calls, and
//! [`Metrics::render`] writes the page. Recording is a short critical section on one mutex;
//! label sets are bounded by what the server serves (kinds, verbs, codes), never by user input.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use api::resources::{RESOURCES, ResourceInfo};
use std::time::Duration;

/// Upstream's request latency buckets in seconds (k8s.io/apiserver endpoints/metrics,
/// `apiserver_request_duration_seconds`); etcd's request histogram uses the same.
pub const REQUEST_BUCKETS_S: &[f64] = &[
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

/// Upstream's watch event size buckets in bytes (`apiserver_watch_events_sizes`:
/// exponential from 1 KiB, factor 2, 8 buckets).
pub const WATCH_EVENT_SIZE_BUCKETS_BYTES: &[f64] = &[
    1024.0, 2048.0, 4096.0, 8192.0, 16384.0, 32768.0, 65536.0, 131072.0,
];

/// What a request was, in upstream's metric labels.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestLabels {
    /// `GET`, `LIST`, `WATCH`, `POST`, `PUT`, `PATCH`, `APPLY`, `DELETE`.
    pub verb: &'static str,
    /// `true` when the request had `dryRun=All`.
    pub dry_run: bool,
    pub group: &'static str,
    pub version: &'static str,
    /// The resource's plural; empty for non-resource paths.
    pub resource: &'static str,
    /// The subresource; for non-resource requests the path (`/version`, `/metrics`, ...).
    pub subresource: String,
    /// `resource` (one object, or a create), `namespace`, `cluster`, or empty (non-resource).
    pub scope: &'static str,
}

/// A cumulative histogram with fixed bucket bounds.
#[derive(Clone, Debug)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, n) in self.bounds.iter().zip(&self.counts) {
            cumulative += n;
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(RequestLabels, u16), u64>,
    durations: BTreeMap<RequestLabels, Histogram>,
    longrunning: BTreeMap<RequestLabels, i64>,
    /// `(operation, type)` → latency; its count is `etcd_requests_total`.
    storage: BTreeMap<(&'static str, String), Histogram>,
    storage_errors: BTreeMap<(&'static str, String), u64>,
}

/// Watch events sent for one served resource: lock-free, since every event is counted once
/// per watcher it reaches (the fan-out hot path).
struct WatchCounters {
    res: &'static ResourceInfo,
    /// Per size bucket (not cumulative); the last slot counts events above every bound.
    sizes: [AtomicU64; WATCH_EVENT_SIZE_BUCKETS_BYTES.len() + 1],
    bytes: AtomicU64,
}

/// Every metric the API server exports. Shared by the request path, watches and the store.
pub struct Metrics {
    inner: Mutex<Inner>,
    inflight_read_only: AtomicI64,
    inflight_mutating: AtomicI64,
    watch: Vec<WatchCounters>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            inner: Mutex::default(),
            inflight_read_only: AtomicI64::new(0),
            inflight_mutating: AtomicI64::new(0),
            watch: RESOURCES
                .iter()
                .map(|res| WatchCounters {
                    res,
                    sizes: std::array::from_fn(|_| AtomicU64::new(0)),
                    bytes: AtomicU64::new(0),
                })
                .collect(),
        }
    }
}

/// Counts one in-flight request until dropped (`apiserver_current_inflight_requests`).
pub struct InflightGuard<'a> {
    gauge: &'a AtomicI64,
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.gauge.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts one open long-running request (a watch) until dropped
/// (`apiserver_longrunning_requests`).
pub struct LongRunningGuard {
    metrics: std::sync::Arc<Metrics>,
    labels: RequestLabels,
}

impl Drop for LongRunningGuard {
    fn drop(&mut self) {
        let mut inner = self.metrics.lock();
        if let Some(n) = inner.longrunning.get_mut(&self.labels) {
            *n -= 1;
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl RequestLabels {
    fn render(&self, with_dry_run: bool) -> String {
        let dry = if self.dry_run { "All" } else { "" };
        let dry = if with_dry_run {
            format!("dry_run=\"{dry}\",")
        } else {
            String::new()
        };
        format!(
            "component=\"apiserver\",{dry}group=\"{}\",resource=\"{}\",scope=\"{}\",subresource=\"{}\",verb=\"{}\",version=\"{}\"",
            self.group,
            self.resource,
            self.scope,
            escape(&self.subresource),
            self.verb,
            self.version
        )
    }
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Count a request as in flight until the guard drops.
    pub fn inflight(&self, mutating: bool) -> InflightGuard<'_> {
        let gauge = if mutating {
            &self.inflight_mutating
        } else {
            &self.inflight_read_only
        };
        gauge.fetch_add(1, Ordering::Relaxed);
        InflightGuard { gauge }
    }

    /// Record a finished request: its count by code and, except for watches (long-running),
    /// its latency.
    pub fn record_request(&self, labels: RequestLabels, code: u16, elapsed: Duration) {
        let mut inner = self.lock();
        if labels.verb != "WATCH" {
            inner
                .durations
                .entry(labels.clone())
                .or_insert_with(|| Histogram::new(REQUEST_BUCKETS_S))
                .observe(elapsed.as_secs_f64());
        }
        *inner.requests.entry((labels, code)).or_default() += 1;
    }

    /// Count an open watch until the returned guard drops.
    pub fn long_running(self: &std::sync::Arc<Self>, labels: RequestLabels) -> LongRunningGuard {
        *self.lock().longrunning.entry(labels.clone()).or_default() += 1;
        LongRunningGuard {
            metrics: std::sync::Arc::clone(self),
            labels,
        }
    }

    /// Count one event of `res` sent to one watcher (`apiserver_watch_events_total`) and its
    /// size (`apiserver_watch_events_sizes`).
    pub fn watch_event(&self, res: &'static ResourceInfo, bytes: usize) {
        let Some(c) = self
            .watch
            .iter()
            .find(|c| c.res.group == res.group && c.res.plural == res.plural)
        else {
            return;
        };
        let slot = WATCH_EVENT_SIZE_BUCKETS_BYTES
            .iter()
            .position(|b| bytes as f64 <= *b)
            .unwrap_or(WATCH_EVENT_SIZE_BUCKETS_BYTES.len());
        c.sizes[slot].fetch_add(1, Ordering::Relaxed);
        c.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Record one storage call (`etcd_request_duration_seconds`, `etcd_requests_total`,
    /// `etcd_request_errors_total`). `ty` is the group-resource (`pods`, `deployments.apps`).
    pub fn storage_call(&self, operation: &'static str, ty: String, elapsed: Duration, ok: bool) {
        let mut inner = self.lock();
        if !ok {
            *inner
                .storage_errors
                .entry((operation, ty.clone()))
                .or_default() += 1;
        }
        inner
            .storage
            .entry((operation, ty))
            .or_insert_with(|| Histogram::new(REQUEST_BUCKETS_S))
            .observe(elapsed.as_secs_f64());
    }

    /// The metrics page. `objects` gives `apiserver_storage_objects` per group-resource, as
    /// counted by the caller at scrape time.
    pub fn render(&self, objects: &[(String, u64)]) -> String {
        let inner = self.lock();
        let mut out = String::with_capacity(16 * 1024);
        header(
            &mut out,
            "apiserver_request_total",
            "counter",
            "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.",
        );
        for ((l, code), n) in &inner.requests {
            let _ = writeln!(
                out,
                "apiserver_request_total{{code=\"{code}\",{}}} {n}",
                l.render(true)
            );
        }
        header(
            &mut out,
            "apiserver_request_duration_seconds",
            "histogram",
            "Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.",
        );
        for (l, h) in &inner.durations {
            h.write(
                &mut out,
                "apiserver_request_duration_seconds",
                &l.render(true),
            );
        }
        header(
            &mut out,
            "apiserver_longrunning_requests",
            "gauge",
            "Gauge of all active long-running apiserver requests broken out by verb, group, version, resource, scope and component. Not all requests are tracked this way.",
        );
        for (l, n) in &inner.longrunning {
            let _ = writeln!(
                out,
                "apiserver_longrunning_requests{{{}}} {n}",
                l.render(false)
            );
        }
        header(
            &mut out,
            "apiserver_current_inflight_requests",
            "gauge",
            "Maximal number of currently used inflight request limit of this apiserver per request kind in last second.",
        );
        for (kind, g) in [
            ("mutating", &self.inflight_mutating),
            ("readOnly", &self.inflight_read_only),
        ] {
            let _ = writeln!(
                out,
                "apiserver_current_inflight_requests{{request_kind=\"{kind}\"}} {}",
                g.load(Ordering::Relaxed)
            );
        }
        header(
            &mut out,
            "apiserver_watch_events_total",
            "counter",
            "Number of events sent in watch clients",
        );
        let watched: Vec<(&WatchCounters, Vec<u64>)> = self
            .watch
            .iter()
            .map(|c| {
                (
                    c,
                    c.sizes.iter().map(|n| n.load(Ordering::Relaxed)).collect(),
                )
            })
            .filter(|(_, sizes): &(_, Vec<u64>)| sizes.iter().any(|n| *n > 0))
            .collect();
        let labels = |r: &ResourceInfo| {
            format!(
                "group=\"{}\",resource=\"{}\",version=\"{}\"",
                r.group, r.plural, r.version
            )
        };
        for (c, sizes) in &watched {
            let total: u64 = sizes.iter().sum();
            let _ = writeln!(
                out,
                "apiserver_watch_events_total{{{}}} {total}",
                labels(c.res)
            );
        }
        header(
            &mut out,
            "apiserver_watch_events_sizes",
            "histogram",
            "Watch event size distribution in bytes",
        );
        for (c, sizes) in &watched {
            let h = Histogram {
                bounds: WATCH_EVENT_SIZE_BUCKETS_BYTES,
                counts: sizes[..WATCH_EVENT_SIZE_BUCKETS_BYTES.len()].to_vec(),
                sum: c.bytes.load(Ordering::Relaxed) as f64,
                count: sizes.iter().sum(),
            };
            h.write(&mut out, "apiserver_watch_events_sizes", &labels(c.res));
        }
        header(
            &mut out,
            "etcd_request_duration_seconds",
            "histogram",
            "Etcd request latency in seconds for each operation and object type.",
        );
        for ((op, ty), h) in &inner.storage {
            let labels = format!("operation=\"{op}\",type=\"{}\"", escape(ty));
            h.write(&mut out, "etcd_request_duration_seconds", &labels);
        }
        header(
            &mut out,
            "etcd_requests_total",
            "counter",
            "Etcd request counts for each operation and object type.",
        );
        for ((op, ty), h) in &inner.storage {
            let _ = writeln!(
                out,
                "etcd_requests_total{{operation=\"{op}\",type=\"{}\"}} {}",
                escape(ty),
                h.count
            );
        }
        header(
            &mut out,
            "etcd_request_errors_total",
            "counter",
            "Etcd failed request counts for each operation and object type.",
        );
        for ((op, ty), n) in &inner.storage_errors {
            let _ = writeln!(
                out,
                "etcd_request_errors_total{{operation=\"{op}\",type=\"{}\"}} {n}",
                escape(ty)
            );
        }
        header(
            &mut out,
            "apiserver_storage_objects",
            "gauge",
            "Number of stored objects at the time of last check split by kind. In case of a fetching error, the value will be -1.",
        );
        for (res, n) in objects {
            let _ = writeln!(
                out,
                "apiserver_storage_objects{{resource=\"{}\"}} {n}",
                escape(res)
            );
        }
        out
    }
}

/// `# HELP` and `# TYPE` lines; the help text carries the metric's stability level as upstream's
/// component-base metrics do (`[STABLE]`, `[ALPHA]`).
fn header(out: &mut String, name: &str, ty: &str, help: &str) {
    let level = match name {
        "apiserver_request_total"
        | "apiserver_request_duration_seconds"
        | "apiserver_longrunning_requests"
        | "apiserver_current_inflight_requests"
        | "apiserver_storage_objects" => "STABLE",
        _ => "ALPHA",
    };
    let _ = writeln!(out, "# HELP {name} [{level}] {help}");
    let _ = writeln!(out, "# TYPE {name} {ty}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(verb: &'static str) -> RequestLabels {
        RequestLabels {
            verb,
            dry_run: false,
            group: "apps",
            version: "v1",
            resource: "deployments",
            subresource: String::new(),
            scope: "namespace",
        }
    }

    /// The value of the first line that starts with `prefix`.
    fn value(page: &str, prefix: &str) -> f64 {
        page.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no line {prefix} in\n{page}"))
    }

    #[test]
    fn requests_are_counted_by_code_and_timed_in_cumulative_buckets() {
        let m = Metrics::default();
        m.record_request(labels("LIST"), 200, Duration::from_millis(3));
        m.record_request(labels("LIST"), 200, Duration::from_millis(30));
        m.record_request(labels("LIST"), 410, Duration::from_millis(300));
        let page = m.render(&[]);
        let base = "component=\"apiserver\",dry_run=\"\",group=\"apps\",resource=\"deployments\",scope=\"namespace\",subresource=\"\",verb=\"LIST\",version=\"v1\"";
        assert_eq!(
            value(
                &page,
                &format!("apiserver_request_total{{code=\"200\",{base}}}")
            ),
            2.0
        );
        assert_eq!(
            value(
                &page,
                &format!("apiserver_request_total{{code=\"410\",{base}}}")
            ),
            1.0
        );
        let bucket = |le: &str| {
            value(
                &page,
                &format!("apiserver_request_duration_seconds_bucket{{{base},le=\"{le}\"}}"),
            )
        };
        assert_eq!(bucket("0.005"), 1.0);
        assert_eq!(bucket("0.05"), 2.0);
        assert_eq!(bucket("0.4"), 3.0);
        assert_eq!(bucket("+Inf"), 3.0);
        assert_eq!(
            value(
                &page,
                &format!("apiserver_request_duration_seconds_count{{{base}}}")
            ),
            3.0
        );
    }

    #[test]
    fn watches_are_long_running_and_not_timed() {
        let m = std::sync::Arc::new(Metrics::default());
        let guard = m.long_running(labels("WATCH"));
        m.record_request(labels("WATCH"), 200, Duration::from_secs(1));
        let deployments = api::resources::by_kind("apps/v1", "Deployment").unwrap();
        m.watch_event(deployments, 2000);
        let page = m.render(&[]);
        assert!(!page.contains("apiserver_request_duration_seconds_bucket"));
        assert_eq!(
            value(&page, "apiserver_longrunning_requests{"),
            1.0,
            "one open watch"
        );
        assert_eq!(
            value(
                &page,
                "apiserver_watch_events_total{group=\"apps\",resource=\"deployments\",version=\"v1\"}"
            ),
            1.0
        );
        assert_eq!(
            value(
                &page,
                "apiserver_watch_events_sizes_bucket{group=\"apps\",resource=\"deployments\",version=\"v1\",le=\"1024\"}"
            ),
            0.0
        );
        drop(guard);
        assert_eq!(
            value(&m.render(&[]), "apiserver_longrunning_requests{"),
            0.0
        );
    }

    #[test]
    fn inflight_gauges_follow_their_guards() {
        let m = Metrics::default();
        let a = m.inflight(true);
        let _b = m.inflight(false);
        let page = m.render(&[]);
        assert_eq!(
            value(
                &page,
                "apiserver_current_inflight_requests{request_kind=\"mutating\"}"
            ),
            1.0
        );
        drop(a);
        let page = m.render(&[]);
        assert_eq!(
            value(
                &page,
                "apiserver_current_inflight_requests{request_kind=\"mutating\"}"
            ),
            0.0
        );
        assert_eq!(
            value(
                &page,
                "apiserver_current_inflight_requests{request_kind=\"readOnly\"}"
            ),
            1.0
        );
    }

    #[test]
    fn storage_calls_and_object_counts() {
        let m = Metrics::default();
        m.storage_call("get", "pods".into(), Duration::from_millis(1), true);
        m.storage_call("get", "pods".into(), Duration::from_millis(1), false);
        let page = m.render(&[("pods".into(), 7)]);
        assert_eq!(
            value(
                &page,
                "etcd_requests_total{operation=\"get\",type=\"pods\"}"
            ),
            2.0
        );
        assert_eq!(
            value(
                &page,
                "etcd_request_errors_total{operation=\"get\",type=\"pods\"}"
            ),
            1.0
        );
        assert_eq!(
            value(&page, "apiserver_storage_objects{resource=\"pods\"}"),
            7.0
        );
        // Every sample line belongs to a declared family.
        for line in page.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(
                page.contains(&format!("# TYPE {family} ")),
                "{line} has no TYPE"
            );
        }
    }
}
