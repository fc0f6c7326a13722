//! Typed model of a scenario file: `Scenario` is the root; every struct rejects unknown fields
//! and uses the camelCase names of the file. Defaults live here, next to their fields.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use crate::duration;

/// A whole scenario file. Build it with [`Scenario::parse`](crate::Scenario::parse), which also
/// validates it; a value obtained that way is internally consistent.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Scenario {
    /// Name of the scenario (required, non-empty).
    pub name: String,
    /// Zones, nodes and node capacity (default: zones a, b, c; 2 nodes per zone).
    #[serde(default)]
    pub topology: Topology,
    /// Auto-scaling node groups, one zone each (default none: static nodes).
    #[serde(default)]
    pub node_groups: Vec<crate::node_groups::NodeGroup>,
    /// Timing profile of the control plane (default `fast`).
    #[serde(default)]
    pub profile: Profile,
    /// kube-proxy mode (default `nftables`).
    #[serde(default)]
    pub proxy_mode: ProxyMode,
    /// The control plane (default: one API server with the embedded store, outside the zones).
    #[serde(default)]
    pub control_plane: ControlPlane,
    /// Server/agent flag overrides: flag name without leading dashes to its value (default none).
    #[serde(default, deserialize_with = "scalar_map")]
    pub flags: BTreeMap<String, String>,
    /// Kubernetes manifests applied before the run (default none).
    #[serde(default)]
    pub workloads: Vec<Workload>,
    /// Traffic generators (default none).
    #[serde(default)]
    pub clients: Vec<Client>,
    /// Faults injected during the run, in any order (default none).
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// Zonal shifts started, extended or cancelled at a time (default none; docs/zonal-shift.md).
    #[serde(default)]
    pub zonal_shifts: Vec<crate::zonal_shift::ZonalShift>,
    /// The autoshift rule (default none: no autoshift).
    #[serde(default)]
    pub zonal_autoshift: Option<crate::zonal_shift::ZonalAutoshift>,
    /// When the run ends (required).
    pub run: Run,
    /// Pass/fail objectives (default availability 99.0, no error-window limit).
    #[serde(default)]
    pub slo: Slo,
}

/// Shape of the lab.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Topology {
    /// Zone names: lowercase letters and digits, unique, 1 to 26 of them (default a, b, c).
    #[serde(default = "default_zones")]
    pub zones: Vec<String>,
    /// Nodes in every zone, 1..=244 (default 2). Nodes are named `<zone>-<n>`, n from 1.
    #[serde(default = "default_nodes_per_zone")]
    pub nodes_per_zone: u32,
    /// Capacity every node reports (default cpu 4, memory 8Gi, pods 110).
    #[serde(default)]
    pub node_capacity: NodeCapacity,
}

impl Default for Topology {
    fn default() -> Self {
        Topology {
            zones: default_zones(),
            nodes_per_zone: default_nodes_per_zone(),
            node_capacity: NodeCapacity::default(),
        }
    }
}

fn default_zones() -> Vec<String> {
    ["a", "b", "c"].iter().map(|z| z.to_string()).collect()
}

fn default_nodes_per_zone() -> u32 {
    2
}

/// Node capacity, as Kubernetes quantities (strings, passed through unparsed).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeCapacity {
    /// CPU quantity (default `"4"`).
    #[serde(default = "default_cpu", deserialize_with = "scalar_string")]
    pub cpu: String,
    /// Memory quantity (default `"8Gi"`).
    #[serde(default = "default_memory", deserialize_with = "scalar_string")]
    pub memory: String,
    /// Maximum pods (default 110, the kubelet's `--max-pods` default).
    #[serde(default = "default_pods")]
    pub pods: u32,
}

impl Default for NodeCapacity {
    fn default() -> Self {
        NodeCapacity {
            cpu: default_cpu(),
            memory: default_memory(),
            pods: default_pods(),
        }
    }
}

fn default_cpu() -> String {
    "4".into()
}
fn default_memory() -> String {
    "8Gi".into()
}
/// Source: kubelet `--max-pods` default, 110 (pkg/kubelet/apis/config/v1beta1 defaults).
fn default_pods() -> u32 {
    110
}

/// Timer profile of every component: upstream's defaults, or all of them divided by 10 so a
/// lab run takes minutes. The one profile type of the workspace (the scenario's `profile:`, the
/// roles' `--profile`); crate `profile` maps it and explicit flags to the components' configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Every timer divided by 10 (rates multiplied by 10), for quick experiments.
    #[default]
    Fast,
    /// Upstream Kubernetes defaults.
    Upstream,
}

impl Profile {
    /// Every timer is divided by this (1 or 10).
    pub fn divisor(self) -> u32 {
        match self {
            Profile::Upstream => 1,
            Profile::Fast => 10,
        }
    }

    /// An upstream duration under this profile.
    pub fn duration(self, upstream: Duration) -> Duration {
        upstream / self.divisor()
    }

    /// An upstream number of seconds under this profile (at least 1).
    pub fn seconds(self, upstream: i64) -> i64 {
        (upstream / i64::from(self.divisor())).max(1)
    }

    /// An upstream per-second rate under this profile (timers / 10 => rates x 10).
    pub fn rate(self, upstream: f32) -> f32 {
        upstream * self.divisor() as f32
    }

    /// The name in files and flags (`fast`, `upstream`).
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Fast => "fast",
            Profile::Upstream => "upstream",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the control plane runs and what it stores in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ControlPlane {
    /// API servers (each with the controllers and the scheduler, leader-elected). `1` with the
    /// embedded store (outside the zones); the number of zones with `etcd` (one etcd member and
    /// one API server per zone). Default 1.
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    /// `embedded` (default) or `etcd`.
    #[serde(default)]
    pub store: Store,
}

impl Default for ControlPlane {
    fn default() -> Self {
        ControlPlane {
            replicas: default_replicas(),
            store: Store::default(),
        }
    }
}

impl ControlPlane {
    /// Whether the control plane runs inside the zones (one instance per zone).
    pub fn zonal(&self) -> bool {
        self.store == Store::Etcd
    }
}

fn default_replicas() -> u32 {
    1
}

/// The API server's store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Store {
    /// The embedded durable store (redb), one API server.
    #[default]
    Embedded,
    /// A real etcd cluster, one member per zone.
    Etcd,
}

impl Store {
    /// The spelling used in files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Store::Embedded => "embedded",
            Store::Etcd => "etcd",
        }
    }
}

/// kube-proxy data-plane mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyMode {
    /// nftables rules.
    #[default]
    Nftables,
    /// iptables rules.
    Iptables,
}

/// One workload entry: exactly one of `path` or `inline`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Workload {
    /// Manifest file (may hold several `---` documents), relative to the scenario file.
    #[serde(default)]
    pub path: Option<String>,
    /// One manifest object, or a list of them.
    #[serde(default)]
    pub inline: Option<serde_json::Value>,
    /// Copies of the entry's objects (default 1), each with `{{.Index}}` in its strings
    /// replaced by the copy's index from 0 ([`crate::stamp`]).
    #[serde(default)]
    pub count: Option<u32>,
}

impl Workload {
    /// How many copies of its objects the entry makes (`count`, default 1).
    pub fn copies(&self) -> u32 {
        self.count.unwrap_or(1)
    }

    /// The entry's `objects` (read from `path`, or [`Workload::inline_objects`]) stamped
    /// `count` times.
    pub fn stamp(&self, objects: &[serde_json::Value]) -> Vec<serde_json::Value> {
        match self.count {
            None => objects.to_vec(),
            Some(n) => crate::stamp::stamp(objects, n),
        }
    }

    /// The inline objects, a single object given as a one-element list; empty for `path`.
    pub fn inline_objects(&self) -> Vec<&serde_json::Value> {
        match &self.inline {
            Some(serde_json::Value::Array(items)) => items.iter().collect(),
            Some(obj) => vec![obj],
            None => Vec::new(),
        }
    }
}

/// A traffic generator: one client pod per listed zone.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Client {
    /// Name, unique among clients (required).
    pub name: String,
    /// Zones that get a client pod (default: every zone).
    #[serde(default)]
    pub zones: Option<Vec<String>>,
    /// Service name in namespace `default`; exactly one of `target` and `service`.
    #[serde(default)]
    pub target: Option<String>,
    /// Service as `namespace/name`; exactly one of `target` and `service`.
    #[serde(default)]
    pub service: Option<String>,
    /// Requests per second per client pod, > 0 (default 10).
    #[serde(default = "default_rate")]
    pub rate: f64,
    /// Per-request timeout (default 1s).
    #[serde(
        default = "default_timeout",
        deserialize_with = "duration::deserialize"
    )]
    pub timeout: Duration,
    /// Reuse connections between requests (default false: a new connection per request).
    #[serde(default)]
    pub keepalive: bool,
    /// Retries after a failed request (default 0).
    #[serde(default)]
    pub retries: u32,
    /// Where the client runs: `cluster` (a pod in each of its zones, default) or `external`
    /// (one process outside the cluster, in the lab's router namespace).
    #[serde(default)]
    pub from: ClientFrom,
    /// How it reaches the Service: `clusterip` (default for `from: cluster`) or
    /// `load-balancer` (the Service's NLB nodes, as DNS round-robin would spread; default and
    /// only choice for `from: external`).
    #[serde(default)]
    pub via: Option<ClientVia>,
}

/// Where a client runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientFrom {
    /// Pods in the zones.
    #[default]
    Cluster,
    /// Outside the cluster (the router namespace, where an internet client's packets arrive).
    External,
}

/// The path a client's requests take to the Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientVia {
    /// The Service's ClusterIP (kube-proxy on the client's node).
    Clusterip,
    /// The addresses of the Service's load balancer (`status.loadBalancer.ingress`).
    LoadBalancer,
}

fn default_rate() -> f64 {
    10.0
}
fn default_timeout() -> Duration {
    Duration::from_secs(1)
}

/// A Service reference resolved from `target` or `service`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRef {
    /// Namespace (`default` for `target`).
    pub namespace: String,
    /// Service name.
    pub name: String,
}

impl Client {
    /// The path its requests take (the default for where it runs when unset).
    pub fn via(&self) -> ClientVia {
        self.via.unwrap_or(match self.from {
            ClientFrom::Cluster => ClientVia::Clusterip,
            ClientFrom::External => ClientVia::LoadBalancer,
        })
    }

    /// The report's client kind: `clusterip` or `external`.
    pub fn kind(&self) -> &'static str {
        match self.from {
            ClientFrom::Cluster => "clusterip",
            ClientFrom::External => "external",
        }
    }

    /// The Service this client calls; `None` only on an unvalidated value.
    pub fn service_ref(&self) -> Option<ServiceRef> {
        match (&self.target, &self.service) {
            (Some(name), None) => Some(ServiceRef {
                namespace: "default".into(),
                name: name.clone(),
            }),
            (None, Some(full)) => {
                let (ns, name) = full.split_once('/').unwrap_or(("default", full));
                Some(ServiceRef {
                    namespace: ns.into(),
                    name: name.into(),
                })
            }
            _ => None,
        }
    }
}

/// A fault injected at a point of the run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Fault {
    /// Offset from the start of the run; must be before its end.
    #[serde(deserialize_with = "duration::deserialize")]
    pub at: Duration,
    /// What happens.
    #[serde(rename = "type")]
    pub kind: FaultType,
    /// A zone name or a node name `<zone>-<n>`, as the fault type requires; `etcd-leader` for
    /// the zone whose etcd member leads when the fault is injected (a `recover` of
    /// `etcd-leader` heals the zone the latest such fault hit).
    pub target: String,
}

/// Kinds of fault (see docs/lab.md, `lab fail` and `lab recover`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultType {
    /// Every process of the node killed, every packet dropped. Target: a node.
    NodePowerOff,
    /// Packets between the node and everything else dropped. Target: a node.
    NodePartition,
    /// Power-off of every node of the zone. Target: a zone.
    ZonePowerOff,
    /// Partition of the zone from everything else. Target: a zone.
    ZonePartition,
    /// Agent drains its pods and exits. Target: a zone or a node.
    GracefulStop,
    /// Heal the network, restart stopped agents. Target: a zone or a node.
    Recover,
}

impl FaultType {
    /// Every fault type, as written in files.
    pub const ALL: [&'static str; 6] = [
        "node-power-off",
        "node-partition",
        "zone-power-off",
        "zone-partition",
        "graceful-stop",
        "recover",
    ];

    /// The spelling used in scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultType::NodePowerOff => Self::ALL[0],
            FaultType::NodePartition => Self::ALL[1],
            FaultType::ZonePowerOff => Self::ALL[2],
            FaultType::ZonePartition => Self::ALL[3],
            FaultType::GracefulStop => Self::ALL[4],
            FaultType::Recover => Self::ALL[5],
        }
    }

    /// Whether a zone may be the target.
    pub fn accepts_zone(self) -> bool {
        !matches!(self, FaultType::NodePowerOff | FaultType::NodePartition)
    }

    /// Whether a node may be the target.
    pub fn accepts_node(self) -> bool {
        !matches!(self, FaultType::ZonePowerOff | FaultType::ZonePartition)
    }
}

impl fmt::Display for FaultType {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A resolved fault target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultTarget {
    /// A whole zone.
    Zone(String),
    /// One node: its zone and its 1-based index in the zone.
    Node {
        /// Zone of the node.
        zone: String,
        /// Index from 1 to `nodesPerZone`.
        index: u32,
    },
    /// The zone holding the etcd leader, resolved when the fault is injected.
    EtcdLeader,
}

/// The fault target naming the etcd leader's zone.
pub const ETCD_LEADER: &str = "etcd-leader";

/// When the run ends: exactly one of `duration` or `until` (with optional `cap`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Run {
    /// Fixed length of the run.
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub duration: Option<Duration>,
    /// End on a condition instead.
    #[serde(default)]
    pub until: Option<Until>,
    /// Upper bound for `until` (default 5m); not allowed with `duration`.
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub cap: Option<Duration>,
}

/// Default `run.cap` when `until` is used.
pub const DEFAULT_CAP: Duration = Duration::from_secs(300);

impl Run {
    /// The longest the run can last: `duration`, or `cap` (default [`DEFAULT_CAP`]).
    pub fn limit(&self) -> Duration {
        self.duration.unwrap_or(self.cap.unwrap_or(DEFAULT_CAP))
    }
}

/// Conditions that can end a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Until {
    /// Every client answered again and the Service has as many ready endpoints as before the
    /// first fault.
    CapacityRestored,
}

/// Service-level objectives the run is judged against.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Slo {
    /// Minimum percentage of successful requests, in (0, 100] (default 99.0).
    #[serde(default = "default_availability")]
    pub availability: f64,
    /// Longest allowed stretch of consecutive failures (default: no limit).
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub max_error_window: Option<Duration>,
}

impl Default for Slo {
    fn default() -> Self {
        Slo {
            availability: default_availability(),
            max_error_window: None,
        }
    }
}

fn default_availability() -> f64 {
    99.0
}

/// A scalar (string, number or boolean) read as its text, for flag values and quantities.
struct ScalarString(String);

impl<'de> Deserialize<'de> for ScalarString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor).map(ScalarString)
    }
}

struct ScalarVisitor;

impl Visitor<'_> for ScalarVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, number or boolean")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
}

fn scalar_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    ScalarString::deserialize(d).map(|s| s.0)
}

fn scalar_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = BTreeMap::<String, ScalarString>::deserialize(d)?;
    Ok(raw.into_iter().map(|(k, v)| (k, v.0)).collect())
}
