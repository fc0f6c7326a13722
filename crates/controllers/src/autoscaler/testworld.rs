//! A virtual-time world for autoscaler tests: the informer cache, the node-group cloud model
//! and the autoscaler, wired as the live driver will wire them (cloud calls go to the cloud,
//! instances that boot become Ready nodes, terminated ones disappear). No scheduler: tests
//! place pending pods and bind pods themselves.
//!
//! Start at [`World::new`].

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use serde_json::{Value, json};

use super::{AutoscalerAction, AutoscalerConfig, CloudAction, ClusterAutoscaler};
use crate::events::EventRecord;
use crate::fake::{T0, object};
use crate::nodegroups::{Cloud, CloudConfig, CloudEvent, NodeGroupSpec};
use crate::{Action, Cache, Kind, Moment, Object, ZONE_LABEL};

/// A group for [`World::new`]: name, zone, min, max, desired (4 CPU, 16 GiB nodes).
pub type G<'a> = (&'a str, &'a str, usize, usize, usize);

pub fn template(zone: &str, cpu: &str, memory: &str) -> Node {
    let Object::Node(n) = object(json!({
        "kind": "Node",
        "metadata": {"labels": {ZONE_LABEL: zone, "kubernetes.io/os": "linux"}},
        "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}}
    })) else {
        unreachable!()
    };
    (*n).clone()
}

pub fn spec(g: G, cpu: &str, memory: &str) -> NodeGroupSpec {
    NodeGroupSpec {
        name: g.0.into(),
        zone: g.1.into(),
        min: g.2,
        max: g.3,
        desired: g.4,
        boot_delay: Duration::from_secs(60),
        template: template(g.1, cpu, memory),
    }
}

pub struct World {
    pub cache: Cache,
    pub cloud: Cloud,
    pub ca: ClusterAutoscaler,
    pub now: Moment,
    /// Every autoscaler action, with its time.
    pub actions: Vec<(Moment, AutoscalerAction)>,
    pub events: Vec<EventRecord>,
    pub cloud_events: Vec<(Moment, CloudEvent)>,
    /// The last status text written.
    pub status: String,
    /// Whether a booted instance's agent registers its Node (false: it never joins).
    pub join: bool,
    templates: BTreeMap<String, Node>,
}

impl World {
    pub fn new(config: AutoscalerConfig, groups: &[G]) -> World {
        Self::with_specs(
            config,
            groups.iter().map(|g| spec(*g, "4", "16Gi")).collect(),
        )
    }

    pub fn with_specs(config: AutoscalerConfig, specs: Vec<NodeGroupSpec>) -> World {
        let templates = specs
            .iter()
            .map(|s| (s.name.clone(), s.template.clone()))
            .collect();
        let cloud = Cloud::new(specs, CloudConfig::default());
        let mut w = World {
            cache: Cache::new(),
            ca: ClusterAutoscaler::new(config).expect("config"),
            cloud,
            now: T0,
            actions: Vec::new(),
            events: Vec::new(),
            cloud_events: Vec::new(),
            status: String::new(),
            join: true,
            templates,
        };
        for (group, name, _) in w.cloud.running() {
            w.add_node(&group, &name, T0 - Duration::from_millis(3_600_000));
        }
        w
    }

    /// Put a 3-CPU pod on every node (75 % of 4 CPUs): a pending pod of 3 CPUs fits no
    /// existing node, and no node is underused.
    pub fn fill(&mut self) {
        let nodes: Vec<String> = self.cache.nodes.keys().cloned().collect();
        for n in nodes {
            self.bound_pod(&format!("fill-{n}"), "fill", &n, "3");
        }
    }

    /// Register a Ready node for an instance of `group`, created at `created`.
    pub fn add_node(&mut self, group: &str, name: &str, created: Moment) {
        let mut node = self.templates[group].clone();
        node.metadata.name = Some(name.into());
        node.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert("kubernetes.io/hostname".into(), name.into());
        node.metadata.creation_timestamp = Some(crate::time::to_time(created));
        let mut v = serde_json::to_value(&node).expect("node");
        v["kind"] = json!("Node");
        v["status"]["conditions"] = json!([{"type": "Ready", "status": "True",
            "lastTransitionTime": crate::time::to_time(created).0.to_string()}]);
        self.cache.apply(object(v), false);
    }

    /// Set a node's Ready condition (as the node lifecycle controller would), changing now.
    pub fn set_ready(&mut self, name: &str, status: &str) {
        let node = self.cache.nodes[name].clone();
        let mut v = serde_json::to_value(&*node).expect("node");
        v["kind"] = json!("Node");
        v["status"]["conditions"] = json!([{"type": "Ready", "status": status,
            "lastTransitionTime": crate::time::to_time(self.now).0.to_string()}]);
        self.cache.apply(object(v), false);
    }

    /// A pod the scheduler marked unschedulable, owned by ReplicaSet `rs`.
    pub fn pending_pod(&mut self, name: &str, rs: &str, cpu: &str, extra: Value) {
        let mut v = json!({
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                "labels": {"app": rs},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs,
                    "uid": format!("rs-{rs}"), "controller": true}]},
            "spec": {"containers": [{"name": "c", "image": "zonelab/echo",
                "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}}]},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled",
                "status": "False", "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient cpu."}]}
        });
        merge(&mut v, extra);
        self.cache.apply(object(v), false);
    }

    /// A running pod of ReplicaSet `rs` on `node`.
    pub fn bound_pod(&mut self, name: &str, rs: &str, node: &str, cpu: &str) {
        let v = json!({
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                "labels": {"app": rs},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs,
                    "uid": format!("rs-{rs}"), "controller": true}]},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "zonelab/echo",
                "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}}]},
            "status": {"phase": "Running"}
        });
        self.cache.apply(object(v), false);
    }

    /// Advance virtual time by `secs`, one second at a time: the cloud ticks, then the
    /// autoscaler scans when due, and its actions are carried out.
    pub fn run(&mut self, secs: i64) {
        for _ in 0..secs {
            self.now += Duration::from_millis(1000);
            self.step();
        }
    }

    fn step(&mut self) {
        self.cloud.handle_timeout(self.now);
        self.apply_cloud_events();
        let due = self.ca.poll_timeout().is_some_and(|t| t <= self.now);
        if !due {
            return;
        }
        let views = self.cloud.views();
        self.ca.handle_timeout(&self.cache, &views, self.now);
        let mut out = Vec::new();
        out.extend(std::iter::from_fn(|| self.ca.poll_action()));
        self.events
            .extend(std::iter::from_fn(|| self.ca.poll_event()));
        for a in out {
            self.execute(&a);
            self.actions.push((self.now, a));
        }
    }

    fn apply_cloud_events(&mut self) {
        let mut evs = Vec::new();
        evs.extend(std::iter::from_fn(|| self.cloud.poll_event()));
        for e in evs {
            match &e {
                CloudEvent::Running { group, name, .. } if self.join => {
                    let (g, n) = (group.clone(), name.clone());
                    self.add_node(&g, &n, self.now);
                }
                CloudEvent::Terminated { name, .. } => {
                    if let Some(n) = self.cache.nodes.get(name).cloned() {
                        self.cache.apply(Object::Node(n), true);
                    }
                }
                _ => {}
            }
            self.cloud_events.push((self.now, e));
        }
    }

    fn execute(&mut self, a: &AutoscalerAction) {
        match a {
            AutoscalerAction::Cloud(CloudAction::IncreaseSize { group, delta }) => {
                self.cloud.increase_size(group, *delta).expect("increase");
            }
            AutoscalerAction::Cloud(CloudAction::DeleteNodes { group, nodes }) => {
                self.cloud.delete_nodes(group, nodes).expect("delete");
                self.apply_cloud_events();
            }
            AutoscalerAction::Api(Action::Update(obj)) => {
                self.cache.apply(obj.clone(), false);
            }
            AutoscalerAction::Api(Action::Delete {
                kind: Kind::Pod,
                key,
                ..
            }) => {
                if let Some(p) = self.cache.pods.get(key).cloned() {
                    self.cache.apply(Object::Pod(p), true);
                }
            }
            AutoscalerAction::Api(other) => panic!("unexpected write {other:?}"),
            AutoscalerAction::WriteStatus(cm) => {
                self.status = cm.data.as_ref().expect("data")["status"].clone();
            }
        }
    }

    /// Cloud calls so far, in order.
    pub fn cloud_calls(&self) -> Vec<(Moment, CloudAction)> {
        self.actions
            .iter()
            .filter_map(|(t, a)| match a {
                AutoscalerAction::Cloud(c) => Some((*t, c.clone())),
                _ => None,
            })
            .collect()
    }

    /// `IncreaseSize` calls so far as (group, delta).
    pub fn increases(&self) -> Vec<(String, usize)> {
        self.cloud_calls()
            .into_iter()
            .filter_map(|(_, c)| match c {
                CloudAction::IncreaseSize { group, delta } => Some((group, delta)),
                _ => None,
            })
            .collect()
    }

    /// Events with `reason`, as (pod name, message).
    pub fn events_of(&self, reason: &str) -> Vec<(String, String)> {
        self.events
            .iter()
            .filter(|e| e.reason == reason)
            .map(|e| {
                (
                    e.involved.name.clone().unwrap_or_default(),
                    e.message.clone(),
                )
            })
            .collect()
    }
}

fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}
