//! What the run records: timeline [`Event`]s (faults, API watch changes, proxy syncs) and
//! client [`Request`]s, all stamped with wall-clock milliseconds since the Unix epoch so they
//! share one clock. Written as JSON lines to `timeline.jsonl` and `requests.jsonl`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One timeline event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Milliseconds since the Unix epoch.
    pub at: f64,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum EventKind {
    /// A fault injected (or a recovery) by the run.
    Fault {
        /// Scenario fault type.
        fault: String,
        /// Zone or node as written in the scenario.
        target: String,
        /// Lab node names touched.
        nodes: Vec<String>,
    },
    /// A node's Ready condition changed (`True`, `False`, `Unknown`).
    NodeReady { node: String, ready: String },
    /// A node's taints changed (`key:Effect` each).
    NodeTaints { node: String, taints: Vec<String> },
    /// A node group's instance changed (the lab is the cloud): `launched`, `running` (its
    /// node is being built and its agent started), `launch-failed`, `terminated`.
    CloudInstance {
        group: String,
        node: String,
        zone: String,
        state: String,
    },
    /// The cluster autoscaler asked a node group for `delta` more nodes.
    ScaleUpRequested { group: String, delta: u32 },
    /// The cluster autoscaler halted (too many unready nodes) or resumed.
    AutoscalerHalted { halted: bool },
    /// A pod was bound to a node (or first seen bound).
    PodBound {
        pod: String,
        node: String,
        /// Controlled by a DaemonSet: it tolerates an unreachable node for good and is never
        /// evicted (absent in old records: false).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        daemon: bool,
    },
    /// A pod's Ready condition changed.
    PodReady {
        pod: String,
        node: String,
        ready: bool,
    },
    /// A pod got a deletion timestamp (evicted, terminated).
    PodDeleting { pod: String, node: String },
    /// A pod left the API.
    PodDeleted { pod: String, node: String },
    /// The ready endpoints of one target Service changed (from its EndpointSlices), as node
    /// name -> endpoint IPs on it. The first record of a Service lists them all in `ready`;
    /// later ones only what changed since the previous record, in `added` and `removed` (a
    /// record of N endpoints is not repeated per change). Records of older timelines list
    /// `ready` each. Resolve with [`crate::analyze::EndpointTrack::apply`].
    Endpoints {
        service: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ready: Option<BTreeMap<String, Vec<String>>>,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        added: BTreeMap<String, Vec<String>>,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        removed: BTreeMap<String, Vec<String>>,
    },
    /// A Kubernetes Event was created or updated (its count grew): one record per observed
    /// version.
    KubeEvent(KubeEvent),
    /// A node's kube-proxy applied rules. What it programmed (Service `ns/name` -> endpoint
    /// IPs) is the endpoint set `set`; `services` lists it only on the first record of that
    /// set (later syncs of the same set name it by id: a timeline of N nodes does not repeat
    /// every endpoint N times per change). Records without `set` (older timelines) list
    /// their `services` each. Resolve with [`crate::observe::ProxySets`].
    ProxySync {
        node: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        set: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        services: Option<BTreeMap<String, Vec<String>>>,
    },
    /// The zone whose etcd member leads the cluster, recorded at every change (`None`: no
    /// member reachable reports a leader).
    EtcdLeader { zone: Option<String> },
    /// A leader-election Lease (`kube-system/kube-controller-manager`,
    /// `kube-system/kube-scheduler`) changed holder (`at`: when the runner saw it);
    /// `acquired_ms` is the Lease's `spec.acquireTime` (ms since the epoch), stamped by the
    /// candidate before its write committed (kept for reference; the analysis uses `at`).
    LeaseHolder {
        lease: String,
        holder: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        acquired_ms: Option<f64>,
    },
    /// One write of the API probe: `at` is when it was acknowledged (`ok`) or when it failed.
    ProbeWrite { seq: u64, sent_ms: f64, ok: bool },
    /// After the run: the probe writes (by `seq`) found when read back through the API.
    ProbeReadBack { found: Vec<u64> },
    /// A target Service's load balancer as configured (read from its balancer's file).
    LoadBalancer(LoadBalancerSetup),
    /// A target of a Service's load balancer changed state (its balancer's status file):
    /// `to` is `initial`, `healthy`, `unhealthy`, `draining` or `unused`.
    LbTarget {
        service: String,
        /// `ip:port`.
        target: String,
        zone: String,
        /// The lab node whose IP the target is (instance targets), if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
        to: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// An LB node's address entered (`healthy`) or left (`unhealthy`) the DNS answer.
    LbNode {
        service: String,
        address: String,
        zone: Option<String>,
        to: String,
    },
}

impl EventKind {
    /// An `endpoints` record listing all of `service`'s ready endpoints (the first record of
    /// a Service, and every record of older timelines).
    pub fn endpoints_full(service: &str, ready: BTreeMap<String, Vec<String>>) -> EventKind {
        EventKind::Endpoints {
            service: service.to_string(),
            ready: Some(ready),
            added: BTreeMap::new(),
            removed: BTreeMap::new(),
        }
    }
}

/// A Service load balancer's settings that the report shows (its first target group's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadBalancerSetup {
    /// `namespace/name` of the Service.
    pub service: String,
    /// The balancer's name (`k8s-…`).
    pub name: String,
    pub cross_zone: bool,
    pub interval_s: f64,
    pub timeout_s: f64,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    /// LB node addresses by zone.
    pub nodes: BTreeMap<String, String>,
}

/// A core/v1 Event as the run's watch saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KubeEvent {
    /// The Event object's `namespace/name` (one per first occurrence).
    pub name: String,
    /// `Normal` or `Warning`.
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    /// The involved object as `kubectl get events`' OBJECT column shows it: `pod/web-1`.
    pub object: String,
    pub message: String,
    /// `source.component` (or `reportingComponent`), with `source.host` after a `, `.
    pub source: String,
    /// Occurrences so far.
    pub count: i32,
}

impl KubeEvent {
    /// The timeline record of one version of a core/v1 Event, as the run's watch (live) or
    /// the simulator's Event model records it.
    pub fn of(e: &k8s_openapi::api::core::v1::Event) -> KubeEvent {
        let i = &e.involved_object;
        let kind = i.kind.as_deref().unwrap_or("").to_lowercase();
        let src = e.source.as_ref();
        let component = src
            .and_then(|s| s.component.clone())
            .or_else(|| e.reporting_component.clone())
            .unwrap_or_default();
        let source = match src
            .and_then(|s| s.host.as_deref())
            .filter(|h| !h.is_empty())
        {
            Some(host) => format!("{component}, {host}"),
            None => component,
        };
        let meta = &e.metadata;
        KubeEvent {
            name: format!(
                "{}/{}",
                meta.namespace.as_deref().unwrap_or("default"),
                meta.name.as_deref().unwrap_or("")
            ),
            type_: e.type_.clone().unwrap_or_default(),
            reason: e.reason.clone().unwrap_or_default(),
            object: format!("{kind}/{}", i.name.as_deref().unwrap_or("")),
            message: e.message.clone().unwrap_or_default(),
            source,
            count: e.count.unwrap_or(1),
        }
    }
}

/// One client request, as `zonelab load` wrote it plus which client sent it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Client name from the scenario.
    pub client: String,
    /// Zone and node of the client pod (`external` and the router namespace for a client
    /// outside the cluster).
    pub client_zone: String,
    pub client_node: String,
    /// `clusterip` (a pod calling the ClusterIP) or `external` (through the load balancer).
    #[serde(default = "clusterip")]
    pub client_kind: String,
    /// The client's target Service, `<namespace>/<name>` (absent in old records: empty; the
    /// report's `per_service`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
    /// Milliseconds since the Unix epoch.
    pub start: f64,
    pub end: f64,
    pub outcome: Outcome,
    pub conn: ConnKind,
    #[serde(default)]
    pub conn_opened: f64,
    /// Source port of the connection (0: unknown).
    #[serde(default)]
    pub local_port: u16,
    /// Whether the TCP handshake completed (absent in old records: taken as true).
    #[serde(default = "yes")]
    pub connected: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

fn yes() -> bool {
    true
}

fn clusterip() -> String {
    CLUSTERIP.into()
}

/// The client kind of a pod calling a ClusterIP.
pub const CLUSTERIP: &str = "clusterip";
/// The client kind (and client zone) of a client outside the cluster.
pub const EXTERNAL: &str = "external";

impl Request {
    pub fn ok(&self) -> bool {
        self.outcome == Outcome::Ok
    }
    pub fn new_conn(&self) -> bool {
        self.conn == ConnKind::New
    }
}

/// How a request ended, as `zonelab load` classifies it (serialized as the lowercase name).
/// Declared in alphabetical order, so sorting by it sorts by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Anything else: an HTTP status other than 200, an unreachable network, ...
    Error,
    /// HTTP 200 within the timeout.
    Ok,
    /// The connection was refused (RST to the SYN: no endpoint, or a REJECT rule).
    Refused,
    /// The connection was reset, aborted or closed before a response.
    Reset,
    /// No response within the client's timeout.
    Timeout,
}

impl Outcome {
    /// The record's name of the outcome (`ok`, `timeout`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Error => "error",
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Reset => "reset",
            Outcome::Timeout => "timeout",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which connection a request used (serialized as `new` or `reused`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnKind {
    /// A connection opened for this request.
    New,
    /// An idle keep-alive connection of an earlier request.
    Reused,
}

impl ConnKind {
    /// The record's name (`new` or `reused`).
    pub fn as_str(self) -> &'static str {
        match self {
            ConnKind::New => "new",
            ConnKind::Reused => "reused",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as `zonelab run` writes `requests.jsonl` today (every outcome and both
    /// connection kinds, with and without the optional fields).
    const RECORDS: &str = r#"{"client":"c","client_zone":"a","client_node":"a-1","client_kind":"clusterip","service":"default/web","start":1700000000000.5,"end":1700000000002.25,"outcome":"ok","conn":"new","conn_opened":1700000000000.5,"local_port":40001,"connected":true,"pod":"web-1","node":"b-1","zone":"b"}
{"client":"c","client_zone":"a","client_node":"a-1","client_kind":"clusterip","start":1.0,"end":2.0,"outcome":"timeout","conn":"reused","conn_opened":0.5,"local_port":40002,"connected":false}
{"client":"c","client_zone":"a","client_node":"a-1","client_kind":"clusterip","start":1.0,"end":2.0,"outcome":"refused","conn":"new","conn_opened":1.0,"local_port":0,"connected":false}
{"client":"x","client_zone":"external","client_node":"zr-rt","client_kind":"external","start":1.0,"end":2.0,"outcome":"reset","conn":"new","conn_opened":1.0,"local_port":1,"connected":true}
{"client":"c","client_zone":"a","client_node":"a-1","client_kind":"clusterip","start":1.0,"end":2.0,"outcome":"error","conn":"reused","conn_opened":1.0,"local_port":1,"connected":true}"#;

    #[test]
    fn records_parse_and_serialize_byte_for_byte() {
        let mut seen = Vec::new();
        for line in RECORDS.lines() {
            let r: Request = serde_json::from_str(line).expect(line);
            assert_eq!(serde_json::to_string(&r).unwrap(), line);
            seen.push((r.outcome.as_str(), r.conn.as_str()));
        }
        assert_eq!(
            seen,
            [
                ("ok", "new"),
                ("timeout", "reused"),
                ("refused", "new"),
                ("reset", "new"),
                ("error", "reused")
            ]
        );
        let bad = RECORDS
            .lines()
            .next()
            .unwrap()
            .replace("\"ok\"", "\"fine\"");
        let e = serde_json::from_str::<Request>(&bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown variant `fine`"), "{e}");
    }

    #[test]
    fn report_counts_by_outcome_keep_their_names_and_order() {
        let text = r#"{"error":3,"ok":2,"refused":4,"reset":5,"timeout":1}"#;
        let by: std::collections::BTreeMap<Outcome, u64> = serde_json::from_str(text).unwrap();
        assert_eq!(by[&Outcome::Refused], 4);
        assert_eq!(serde_json::to_string(&by).unwrap(), text);
    }

    #[test]
    fn outcomes_sort_by_name() {
        let mut all = [
            Outcome::Timeout,
            Outcome::Reset,
            Outcome::Refused,
            Outcome::Ok,
            Outcome::Error,
        ];
        all.sort();
        let names: Vec<&str> = all.iter().map(|o| o.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }
}
