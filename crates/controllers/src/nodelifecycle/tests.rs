//! Virtual-time tests of the node lifecycle and taint eviction controllers together, with
//! simulated kubelets (Lease renewals, status posts). Start at [`Sim`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::taints::{NO_EXECUTE, NO_SCHEDULE, TAINT_NOT_READY, TAINT_UNREACHABLE, has_taint};
use super::{
    NODE_LEASE_NAMESPACE, NodeLifecycleConfig, NodeLifecycleController, TaintEvictionController,
};
use crate::cache::{Key, Object};
use crate::fake::{Harness, T0, object};
use crate::time::to_time;
use crate::{Action, Controller, Kind, Moment, pod_is_ready};

/// Kubelet lease renew interval (0.25 x 40 s, upstream kubelet default).
pub const RENEW_MS: Duration = Duration::from_millis(10_000);
/// Renewals happen at T0 + this + k x 10 s: off the controllers' 5 s / 100 ms grids, so a
/// renewal and a pass never share an instant.
pub const RENEW_PHASE_MS: Duration = Duration::from_millis(3_250);

/// A cluster in the fake API with both controllers and one simulated kubelet per node.
pub struct Sim {
    pub h: Harness,
    /// Nodes whose kubelet renews its Lease.
    alive: BTreeMap<String, bool>,
    next_renew: Moment,
}

pub fn node_json(name: &str, zone: &str, ready: &str, heartbeat: Moment) -> Object {
    object(json!({
        "kind": "Node", "apiVersion": "v1",
        "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone, "kubernetes.io/hostname": name}},
        "status": {"conditions": [
            {"type": "Ready", "status": ready, "reason": "KubeletReady",
             "lastHeartbeatTime": to_time(heartbeat), "lastTransitionTime": to_time(T0)},
            {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": to_time(heartbeat), "lastTransitionTime": to_time(T0)}
        ]}
    }))
}

/// A running, Ready pod on `node` with the tolerations DefaultTolerationSeconds adds (300 s).
pub fn pod_json(name: &str, node: &str) -> Object {
    object(json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}], "tolerations": [
            {"key": TAINT_NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
        ]},
        "status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": to_time(T0)},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": to_time(T0)}
        ]}
    }))
}

fn lease(node: &str, renew: Moment) -> Object {
    Object::Lease(Arc::new(Lease {
        metadata: ObjectMeta {
            name: Some(node.to_string()),
            namespace: Some(NODE_LEASE_NAMESPACE.to_string()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node.to_string()),
            lease_duration_seconds: Some(40),
            renew_time: Some(MicroTime(
                Timestamp::from_millisecond(renew.as_millis()).expect("time"),
            )),
            ..LeaseSpec::default()
        }),
    }))
}

/// Node names of a zone: `<zone>-<i>`.
pub fn node_name(zone: &str, i: usize) -> String {
    format!("{zone}-{i:02}")
}

impl Sim {
    /// `zones` of (name, node count), `pods` pods per node, upstream default flags.
    pub fn new(zones: &[(&str, usize)], pods: usize) -> Sim {
        Sim::with_config(zones, pods, NodeLifecycleConfig::default())
    }

    pub fn with_config(zones: &[(&str, usize)], pods: usize, config: NodeLifecycleConfig) -> Sim {
        let nlc = NodeLifecycleController::new(config).expect("config");
        let controllers: Vec<Box<dyn Controller>> =
            vec![Box::new(nlc), Box::new(TaintEvictionController::new())];
        let mut h = Harness::new(controllers);
        let mut alive = BTreeMap::new();
        for (zone, count) in zones {
            for i in 0..*count {
                let name = node_name(zone, i);
                h.put(node_json(&name, zone, "True", T0));
                h.put(lease(&name, T0));
                for p in 0..pods {
                    h.put(pod_json(&format!("{name}-p{p}"), &name));
                }
                alive.insert(name, true);
            }
        }
        h.start();
        Sim {
            h,
            alive,
            next_renew: T0 + RENEW_PHASE_MS,
        }
    }

    /// Advance to `until`, renewing the Leases of live kubelets every 10 s on the way.
    pub fn run_until(&mut self, until: Moment) {
        while self.next_renew <= until {
            let at = self.next_renew;
            self.h.run_until(at);
            let live: Vec<String> = self
                .alive
                .iter()
                .filter(|(_, a)| **a)
                .map(|(n, _)| n.clone())
                .collect();
            for n in live {
                self.h.put(lease(&n, at));
            }
            self.next_renew += RENEW_MS;
        }
        self.h.run_until(until);
    }

    /// The kubelet of `node` stops (power loss). Returns its last Lease renewal time.
    pub fn kill(&mut self, node: &str) -> Moment {
        self.alive.insert(node.to_string(), false);
        self.next_renew - RENEW_MS
    }

    /// The kubelet of `node` comes back: renews its Lease and posts Ready=`ready` now.
    pub fn revive(&mut self, node: &str, ready: &str) {
        self.alive.insert(node.to_string(), true);
        let now = self.h.now;
        self.h.put(lease(node, now));
        self.post_ready(node, ready);
    }

    /// The kubelet posts its Ready condition (heartbeat now; transition if it changed).
    pub fn post_ready(&mut self, node: &str, ready: &str) {
        let now = self.h.now;
        let Some(Object::Node(n)) = self.h.api.get(Kind::Node, &Key::new("", node)) else {
            panic!("no node {node}")
        };
        let mut n: Node = (*n).clone();
        for c in n
            .status
            .as_mut()
            .and_then(|s| s.conditions.as_mut())
            .expect("conditions")
        {
            if c.type_ == "Ready" {
                if c.status != ready {
                    c.last_transition_time = Some(to_time(now));
                }
                c.status = ready.into();
                c.reason = Some("KubeletReady".into());
                c.message = None;
            } else {
                c.status = "False".into();
            }
            c.last_heartbeat_time = Some(to_time(now));
        }
        self.h.put(Object::Node(Arc::new(n)));
    }

    pub fn node(&self, name: &str) -> Arc<Node> {
        match self.h.api.get(Kind::Node, &Key::new("", name)) {
            Some(Object::Node(n)) => n,
            _ => panic!("no node {name}"),
        }
    }

    pub fn pod(&self, name: &str) -> Arc<Pod> {
        match self.h.api.get(Kind::Pod, &Key::new("default", name)) {
            Some(Object::Pod(p)) => p,
            _ => panic!("no pod {name}"),
        }
    }

    /// First time a node write put the node's Ready condition to Unknown.
    pub fn unknown_at(&self, node: &str) -> Option<Moment> {
        self.h.api.log.iter().find_map(|(t, a)| match a {
            Action::UpdateStatus(Object::Node(n))
                if n.metadata.name.as_deref() == Some(node)
                    && crate::node_ready_status(n) == Some("Unknown") =>
            {
                Some(*t)
            }
            _ => None,
        })
    }

    /// Times of node writes that added the taint `key:effect` (absent before the write).
    pub fn taint_added(&self, node: &str, key: &str, effect: &str) -> Vec<Moment> {
        let mut had = false;
        let mut out = Vec::new();
        for (t, a) in &self.h.api.log {
            if let Action::Update(Object::Node(n)) | Action::UpdateStatus(Object::Node(n)) = a
                && n.metadata.name.as_deref() == Some(node)
            {
                let has = has_taint(n, key, effect);
                if has && !had {
                    out.push(*t);
                }
                had = has;
            }
        }
        out
    }

    /// First time a node write removed the taint `key:effect`.
    pub fn taint_removed(&self, node: &str, key: &str, effect: &str) -> Option<Moment> {
        self.taint_removed_from(node, key, effect, false)
    }

    /// As [`Sim::taint_removed`], for a node that had the taint (`had`) when the test began.
    pub fn taint_removed_from(
        &self,
        node: &str,
        key: &str,
        effect: &str,
        mut had: bool,
    ) -> Option<Moment> {
        for (t, a) in &self.h.api.log {
            if let Action::Update(Object::Node(n)) = a
                && n.metadata.name.as_deref() == Some(node)
            {
                let has = has_taint(n, key, effect);
                if had && !has {
                    return Some(*t);
                }
                had = has;
            }
        }
        None
    }

    /// First time a pod status write set the pod not Ready.
    pub fn not_ready_at(&self, pod: &str) -> Option<Moment> {
        self.h.api.log.iter().find_map(|(t, a)| match a {
            Action::UpdateStatus(Object::Pod(p))
                if p.metadata.name.as_deref() == Some(pod) && !pod_is_ready(p) =>
            {
                Some(*t)
            }
            _ => None,
        })
    }

    /// First time the pod was deleted.
    pub fn deleted_at(&self, pod: &str) -> Option<Moment> {
        self.h.api.log.iter().find_map(|(t, a)| match a {
            Action::Delete {
                kind: Kind::Pod,
                key,
                ..
            } if key.name == pod => Some(*t),
            _ => None,
        })
    }

    /// Number of pod deletions so far.
    pub fn deletions(&self) -> usize {
        self.h
            .api
            .log
            .iter()
            .filter(|(_, a)| {
                matches!(
                    a,
                    Action::Delete {
                        kind: Kind::Pod,
                        ..
                    }
                )
            })
            .count()
    }
}

#[test]
fn dead_node_detected_marked_tainted_and_evicted_on_upstream_timers() {
    let mut s = Sim::new(&[("a", 4), ("b", 4), ("c", 4)], 2);
    s.run_until(T0 + Duration::from_millis(100_000));
    let last = s.kill("a-00");
    s.run_until(T0 + Duration::from_millis(800_000));

    // Detection: the first pass at or after (first pass seeing the last renewal) + grace.
    let d = s.unknown_at("a-00").expect("detected");
    assert!(
        d >= last + Duration::from_millis(50_000) && d <= last + Duration::from_millis(55_000),
        "detected {} s after the last renewal",
        (d.as_millis() - last.as_millis()) / 1000
    );
    let ready = s.node("a-00");
    let cond = super::health::condition(&ready, "Ready").expect("ready");
    assert_eq!(cond.reason.as_deref(), Some("NodeStatusUnknown"));
    assert_eq!(
        cond.message.as_deref(),
        Some("Kubelet stopped posting node status.")
    );
    assert_eq!(
        super::health::condition(&ready, "MemoryPressure").map(|c| c.status.as_str()),
        Some("Unknown")
    );

    // Same pass: pods not ready; NoSchedule taint on the node update event.
    for p in ["a-00-p0", "a-00-p1"] {
        assert_eq!(s.not_ready_at(p), Some(d));
        let pod = s.pod(p);
        let conds = pod
            .status
            .as_ref()
            .and_then(|st| st.conditions.as_ref())
            .expect("conditions");
        let cr = conds
            .iter()
            .find(|c| c.type_ == "ContainersReady")
            .expect("containers ready");
        assert_eq!(
            cr.status, "True",
            "ContainersReady is left alone, as upstream"
        );
    }
    assert_eq!(
        s.taint_added("a-00", TAINT_UNREACHABLE, NO_SCHEDULE),
        vec![d]
    );

    // NoExecute: queued by the next pass, applied by the following 100 ms tainting tick.
    let tainted = s.taint_added("a-00", TAINT_UNREACHABLE, NO_EXECUTE);
    assert_eq!(tainted, vec![d + Duration::from_millis(5_100)]);

    // Eviction 300 s after the taint (default tolerations), not before; pods stay Terminating.
    for p in ["a-00-p0", "a-00-p1"] {
        assert_eq!(
            s.deleted_at(p),
            Some(tainted[0] + Duration::from_millis(300_000))
        );
        assert!(s.pod(p).metadata.deletion_timestamp.is_some());
    }
    assert_eq!(s.deletions(), 2);
    assert!(s.unknown_at("a-01").is_none());
    assert!(pod_is_ready(&s.pod("a-01-p0")));
}

#[test]
fn node_back_before_eviction_removes_taints_and_cancels() {
    let mut s = Sim::new(&[("a", 3), ("b", 3), ("c", 3)], 1);
    s.run_until(T0 + Duration::from_millis(30_000));
    s.kill("b-01");
    s.run_until(T0 + Duration::from_millis(200_000));
    let tainted = s.taint_added("b-01", TAINT_UNREACHABLE, NO_EXECUTE);
    assert_eq!(tainted.len(), 1);
    s.run_until(tainted[0] + Duration::from_millis(100_000));
    let back = s.h.now;
    s.revive("b-01", "True");
    s.run_until(tainted[0] + Duration::from_millis(700_000));

    assert_eq!(
        s.taint_removed("b-01", TAINT_UNREACHABLE, NO_SCHEDULE),
        Some(back)
    );
    let gone = s
        .taint_removed("b-01", TAINT_UNREACHABLE, NO_EXECUTE)
        .expect("NoExecute removed");
    assert!(
        gone > back && gone <= back + Duration::from_millis(5_000),
        "removed by the next monitor pass"
    );
    assert_eq!(s.deletions(), 0);
    let n = s.node("b-01");
    assert!(
        n.spec
            .as_ref()
            .and_then(|sp| sp.taints.as_ref())
            .is_none_or(|t| t.is_empty())
    );
    // The NLC does not mark pods ready again: the kubelet does.
    assert!(!pod_is_ready(&s.pod("b-01-p0")));
}

#[test]
fn kubelet_reported_not_ready_taints_not_ready_without_marking_pods() {
    let mut s = Sim::new(&[("a", 3), ("b", 3)], 1);
    s.run_until(T0 + Duration::from_millis(20_000));
    let at = s.h.now;
    s.post_ready("a-02", "False");
    s.run_until(T0 + Duration::from_millis(400_000));
    assert_eq!(
        s.taint_added("a-02", TAINT_NOT_READY, NO_SCHEDULE),
        vec![at]
    );
    let tainted = s.taint_added("a-02", TAINT_NOT_READY, NO_EXECUTE);
    assert_eq!(tainted.len(), 1);
    assert!(tainted[0] > at && tainted[0] <= at + Duration::from_millis(5_100));
    // Upstream marks pods only on a True -> not-True transition it writes itself; a kubelet
    // that reports NotReady is alive and updates its own pods.
    assert_eq!(s.not_ready_at("a-02-p0"), None);
    assert_eq!(
        s.deleted_at("a-02-p0"),
        Some(tainted[0] + Duration::from_millis(300_000))
    );
    assert!(
        s.unknown_at("a-02").is_none(),
        "the lease keeps it from Unknown"
    );
}

#[test]
fn pod_bound_to_not_ready_node_is_marked_not_ready() {
    let mut s = Sim::new(&[("a", 3)], 0);
    s.run_until(T0 + Duration::from_millis(10_000));
    s.kill("a-00");
    s.run_until(T0 + Duration::from_millis(120_000));
    assert!(s.unknown_at("a-00").is_some());
    s.h.put(pod_json("late", "a-00"));
    assert_eq!(s.not_ready_at("late"), Some(s.h.now));
}

#[test]
fn never_ready_node_goes_unknown_after_startup_grace() {
    let mut s = Sim::new(&[("a", 3)], 0);
    let node = object(json!({"kind": "Node", "apiVersion": "v1",
        "metadata": {"name": "fresh", "labels": {"topology.kubernetes.io/zone": "a"}}}));
    let created = s.h.now;
    s.h.put(node);
    s.run_until(T0 + Duration::from_millis(200_000));
    let d = s.unknown_at("fresh").expect("unknown");
    assert!(
        d >= created + Duration::from_millis(60_000)
            && d <= created + Duration::from_millis(65_000)
    );
    let n = s.node("fresh");
    let c = super::health::condition(&n, "Ready").expect("ready");
    assert_eq!(c.reason.as_deref(), Some("NodeStatusNeverUpdated"));
}

#[test]
fn kubelet_back_but_not_ready_swaps_taints_at_once() {
    let mut s = Sim::new(&[("a", 3), ("b", 3)], 1);
    s.kill("a-01");
    s.run_until(T0 + Duration::from_millis(120_000));
    assert_eq!(
        s.taint_added("a-01", TAINT_UNREACHABLE, NO_EXECUTE).len(),
        1
    );
    let back = s.h.now;
    s.revive("a-01", "False");
    s.run_until(back + Duration::from_millis(10_000));
    // NoSchedule follows the condition on the update event; NoExecute is swapped by the next
    // pass without waiting for a token.
    assert_eq!(
        s.taint_added("a-01", TAINT_NOT_READY, NO_SCHEDULE),
        vec![back]
    );
    let swapped = s.taint_added("a-01", TAINT_NOT_READY, NO_EXECUTE);
    assert_eq!(swapped.len(), 1);
    assert!(swapped[0] > back && swapped[0] <= back + Duration::from_millis(5_000));
    assert_eq!(
        s.taint_removed("a-01", TAINT_UNREACHABLE, NO_EXECUTE),
        Some(swapped[0])
    );
}

#[test]
fn restarted_controller_removes_no_execute_taints_and_requeues() {
    let nlc = NodeLifecycleController::new(NodeLifecycleConfig::default()).expect("config");
    let mut h = Harness::new(vec![Box::new(nlc)]);
    for i in 0..3 {
        h.put(node_json(&node_name("a", i), "a", "True", T0));
    }
    let mut dead = match node_json("dead", "a", "Unknown", T0 - Duration::from_millis(600_000)) {
        Object::Node(n) => (*n).clone(),
        _ => unreachable!(),
    };
    dead.spec.get_or_insert_with(Default::default).taints = Some(vec![
        super::taints::taint(
            TAINT_UNREACHABLE,
            NO_SCHEDULE,
            T0 - Duration::from_millis(500_000),
        ),
        super::taints::taint(
            TAINT_UNREACHABLE,
            NO_EXECUTE,
            T0 - Duration::from_millis(500_000),
        ),
    ]);
    h.put(Object::Node(Arc::new(dead)));
    h.start();
    h.advance(Duration::from_millis(1_000));
    let s = Sim {
        h,
        alive: BTreeMap::new(),
        next_renew: Moment::MAX,
    };
    assert_eq!(
        s.taint_removed_from("dead", TAINT_UNREACHABLE, NO_EXECUTE, true),
        Some(T0)
    );
    assert_eq!(
        s.taint_added("dead", TAINT_UNREACHABLE, NO_EXECUTE),
        vec![T0 + Duration::from_millis(100)]
    );
    assert!(has_taint(&s.node("dead"), TAINT_UNREACHABLE, NO_SCHEDULE));
}

mod taint_eviction {
    use super::*;

    fn tainted_node(name: &str, taints: serde_json::Value) -> Object {
        object(
            json!({"kind": "Node", "apiVersion": "v1", "metadata": {"name": name}, "spec": {"taints": taints}}),
        )
    }

    fn pod_with(name: &str, tolerations: serde_json::Value) -> Object {
        object(
            json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": "n", "containers": [], "tolerations": tolerations}}),
        )
    }

    fn harness() -> Harness {
        let mut h = Harness::new(vec![Box::new(TaintEvictionController::new())]);
        h.put(tainted_node("n", json!([])));
        h.put(pod_with("intolerant", json!([])));
        h.put(pod_with("short", json!([
            {"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}])));
        h.put(pod_with(
            "forever",
            json!([{"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}]),
        ));
        h.start();
        h
    }

    fn deletes(h: &Harness) -> Vec<(Moment, String, Option<String>)> {
        h.api
            .log
            .iter()
            .filter_map(|(t, a)| match a {
                Action::Delete {
                    kind: Kind::Pod,
                    key,
                    uid,
                    ..
                } => Some((*t, key.name.clone(), uid.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn deletes_at_once_or_after_min_toleration_never_for_unbounded() {
        let mut h = harness();
        h.advance(Duration::from_millis(1_000));
        let at = h.now;
        h.put(tainted_node(
            "n",
            json!([{"key": TAINT_UNREACHABLE, "effect": "NoExecute", "timeAdded": to_time(at)}]),
        ));
        // The first toleration matching the taint is the 300 s one (upstream takes the first
        // match per taint, not the smallest).
        h.advance(Duration::from_millis(3_600_000));
        let d = deletes(&h);
        let uid = |n: &str| {
            h.api
                .get(Kind::Pod, &Key::new("default", n))
                .and_then(|o| o.meta().uid.clone())
        };
        assert_eq!(
            d,
            vec![
                (at, "intolerant".into(), uid("intolerant")),
                (
                    at + Duration::from_millis(300_000),
                    "short".into(),
                    uid("short")
                )
            ]
        );
        let pod = match h.api.get(Kind::Pod, &Key::new("default", "short")) {
            Some(Object::Pod(p)) => p,
            _ => panic!("pod"),
        };
        let conds = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .expect("conditions");
        assert!(conds.iter().any(|c| c.type_ == "DisruptionTarget"
            && c.reason.as_deref() == Some("DeletionByTaintManager")));
    }

    #[test]
    fn taint_removed_before_deadline_cancels() {
        let mut h = harness();
        h.put(tainted_node("n", json!([{"key": "other", "effect": "NoExecute"}, {"key": TAINT_NOT_READY, "effect": "NoExecute"}])));
        // "short" tolerates both with its wildcard (60 s) and is scheduled; "forever" does not
        // tolerate "other": deleted at once.
        h.advance(Duration::from_millis(30_000));
        h.put(tainted_node("n", json!([])));
        h.advance(Duration::from_millis(600_000));
        let names: Vec<String> = deletes(&h).into_iter().map(|(_, n, _)| n).collect();
        assert_eq!(names, ["forever", "intolerant"]);
    }
}

/// (reason, involved kind/name, message) of the events recorded so far.
fn recorded(s: &Sim) -> Vec<(String, String, String)> {
    s.h.events
        .iter()
        .map(|e| {
            let i = &e.involved;
            let obj = format!(
                "{}/{}",
                i.kind.clone().unwrap_or_default(),
                i.name.clone().unwrap_or_default()
            );
            (e.reason.to_string(), obj, e.message.clone())
        })
        .collect()
}

#[test]
fn node_failure_records_upstream_events() {
    let mut s = Sim::new(&[("a", 2), ("b", 2)], 1);
    s.run_until(T0 + Duration::from_millis(30_000));
    let registered = recorded(&s)
        .into_iter()
        .filter(|(r, _, _)| r == "RegisteredNode")
        .count();
    assert_eq!(registered, 4, "one RegisteredNode per node");
    assert!(recorded(&s).contains(&(
        "RegisteredNode".into(),
        "Node/a-00".into(),
        "Node a-00 event: Registered Node a-00 in Controller".into()
    )));
    s.h.events.clear();
    s.kill("a-00");
    s.run_until(T0 + Duration::from_millis(500_000));
    let evs = recorded(&s);
    let node_nr = (
        "NodeNotReady".to_string(),
        "Node/a-00".to_string(),
        "Node a-00 status is now: NodeNotReady".to_string(),
    );
    assert_eq!(evs.iter().filter(|e| **e == node_nr).count(), 1, "{evs:#?}");
    let pod_nr = (
        "NodeNotReady".to_string(),
        "Pod/a-00-p0".to_string(),
        "Node is not ready".to_string(),
    );
    assert!(evs.contains(&pod_nr), "{evs:#?}");
    let evict = (
        "TaintManagerEviction".to_string(),
        "Pod/a-00-p0".to_string(),
        "Marking for deletion Pod default/a-00-p0".to_string(),
    );
    assert!(evs.contains(&evict), "{evs:#?}");
    let e =
        s.h.events
            .iter()
            .find(|e| e.reason == "TaintManagerEviction")
            .unwrap();
    assert_eq!(e.component, "taint-eviction-controller");
    let n = s.h.events.iter().find(|e| e.message == node_nr.2).unwrap();
    assert_eq!(n.component, "node-controller");
    assert_eq!(
        n.involved.uid,
        s.node("a-00").metadata.uid,
        "controllers use the node's uid"
    );
    assert_eq!(n.namespace(), "default");
    assert!(
        !evs.iter()
            .any(|(_, o, _)| o.starts_with("Pod/a-01") || o == "Node/a-01")
    );
}

#[test]
fn node_back_before_eviction_records_the_cancellation() {
    let mut s = Sim::new(&[("a", 3), ("b", 3), ("c", 3)], 1);
    s.run_until(T0 + Duration::from_millis(30_000));
    s.kill("b-01");
    s.run_until(T0 + Duration::from_millis(200_000));
    s.revive("b-01", "True");
    s.run_until(T0 + Duration::from_millis(300_000));
    let evs = recorded(&s);
    assert!(
        evs.contains(&(
            "TaintManagerEviction".into(),
            "Pod/b-01-p0".into(),
            "Cancelling deletion of Pod default/b-01-p0".into()
        )),
        "{evs:#?}"
    );
    assert!(
        !evs.iter()
            .any(|(_, _, m)| m.starts_with("Marking for deletion"))
    );
}
