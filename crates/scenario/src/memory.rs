//! How much memory a simulated run of a scenario needs, estimated before anything runs from its
//! sizes (nodes, pods, Services, endpoints) and bytes per item measured on simulator runs, and
//! checked against the memory the machine has available (the driver reads it; this module does
//! no I/O). Start at [`Census`], then [`check`].

use std::collections::BTreeMap;

use serde_json::Value;

use crate::locate::Seg;
use crate::model::Scenario;
use crate::validate::Problem;

/// Peak resident bytes of a simulated run, per item. First fitted to five 3-minute
/// upstream-profile zone power-offs of 150 to 600 nodes, 1,000 to 4,000 pods and 100 to 400
/// Services (one namespace, Service and Deployment per application); refitted (simrun, per
/// node and per pod) to 7-minute cuts of `examples/sim-az-5000.yaml` at 501 nodes with 10 and
/// 30 pods per node, which the first fit under-estimated by 20 – 28 % (and the example itself
/// by more than 1 GiB: 5.1 GiB estimated, above 6 GiB measured in its start-up).
/// `/usr/bin/time -v`, maximum resident set size; docs/simulator.md "Memory". A Service without
/// its own Deployment and namespace costs less; runs below 200 nodes are over-estimated by
/// about a fifth. Not refitted after simmem's changes (Event recorders' caches compacted,
/// proxy inboxes giving back their Services-burst buffers): they lowered the 501-node cut's
/// load-start peak RSS by 16 MiB (about 1 KB per pod) and removed a nodes x Services term
/// (about 1.2 GB at the example's size) that these linear figures never modelled; the figures
/// stay until full runs are measured again, so the estimate errs high, never low. The fixed
/// part (binary, allocator, the run's records at small sizes):
pub const BASE_BYTES: u64 = 34 << 20;
/// Per node: its Node, Lease, kubelet, kube-proxy pacer and inboxes, watch queues and timeline
/// records (was 40 KiB, fitted at 150 – 600 nodes with few pods per node).
pub const BYTES_PER_NODE: u64 = 120 << 10;
/// Per pod with its one endpoint: the Pod in the store and the informer caches, its kubelet
/// state, the scheduler's and controllers' indexes and timeline events (501 nodes, 5,000 ->
/// 15,000 pods: +382 MiB, of which 82 MiB for the 666 more Services and their endpoints).
pub const BYTES_PER_POD: u64 = 31 << 10;
/// Per Service with its application (namespace, Deployment, ReplicaSet, ServiceAccount,
/// EndpointSlice, proxy-model entry; 100 -> 400: +29.2 MiB beyond the pods).
pub const BYTES_PER_SERVICE: u64 = 96 << 10;
/// Per endpoint (a pod selected by a Service): its EndpointSlice and proxy-model entries (a
/// second Service over the same 1,000 pods: +2.5 MiB with its 100 Services, an upper bound).
pub const BYTES_PER_ENDPOINT: u64 = 2 << 10;

/// The sizes that drive a run's memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Size {
    pub nodes: u64,
    pub pods: u64,
    pub services: u64,
    pub endpoints: u64,
}

impl Size {
    /// Estimated peak bytes of a simulated run of this size.
    pub fn bytes(&self) -> u64 {
        BASE_BYTES
            + self.nodes * BYTES_PER_NODE
            + self.pods * BYTES_PER_POD
            + self.services * BYTES_PER_SERVICE
            + self.endpoints * BYTES_PER_ENDPOINT
    }
}

/// Pods of one template: namespace, labels, replicas, the workload entry they came from.
struct PodGroup {
    namespace: String,
    labels: BTreeMap<String, String>,
    replicas: u64,
    workload: usize,
}

/// A Service's namespace, selector and workload entry.
struct ServiceSel {
    namespace: String,
    selector: BTreeMap<String, String>,
    workload: usize,
}

/// Counts a scenario's nodes, pods, Services and endpoints from its (stamped) manifests.
pub struct Census {
    nodes: u64,
    groups: Vec<PodGroup>,
    services: Vec<ServiceSel>,
}

/// A run's estimated size and memory, and the workload entry that weighs most.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Estimate {
    pub size: Size,
    pub bytes: u64,
    /// Bytes of the nodes alone (`topology`).
    pub node_bytes: u64,
    /// The workload entry with the most bytes, and its bytes.
    pub heaviest: Option<(usize, u64)>,
}

fn labels_at(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
        .collect()
}

impl Census {
    /// A census of a scenario's topology (its nodes); add the manifests with [`Census::add`].
    pub fn new(s: &Scenario) -> Census {
        Census {
            nodes: s.topology.zones.len() as u64 * u64::from(s.topology.nodes_per_zone),
            groups: Vec::new(),
            services: Vec::new(),
        }
    }

    /// One manifest of workload entry `workload`.
    pub fn add(&mut self, workload: usize, obj: &Value) {
        let namespace = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        let replicas = |default: u64| obj["spec"]["replicas"].as_u64().unwrap_or(default);
        let (replicas, labels) = match obj["kind"].as_str().unwrap_or_default() {
            "Pod" => (1, &obj["metadata"]["labels"]),
            "Deployment" | "ReplicaSet" | "StatefulSet" => {
                (replicas(1), &obj["spec"]["template"]["metadata"]["labels"])
            }
            "DaemonSet" => (self.nodes, &obj["spec"]["template"]["metadata"]["labels"]),
            "Service" => {
                self.services.push(ServiceSel {
                    namespace,
                    selector: labels_at(&obj["spec"]["selector"]),
                    workload,
                });
                return;
            }
            _ => return,
        };
        self.groups.push(PodGroup {
            namespace,
            labels: labels_at(labels),
            replicas,
            workload,
        });
    }

    /// The totals: endpoints are the pods each Service's selector matches (as the EndpointSlice
    /// controller would list them), found through an index on one label of each selector.
    pub fn finish(&self) -> Estimate {
        let mut index: BTreeMap<(&str, &str, &str), Vec<usize>> = BTreeMap::new();
        for (g, group) in self.groups.iter().enumerate() {
            for (k, v) in &group.labels {
                index
                    .entry((group.namespace.as_str(), k.as_str(), v.as_str()))
                    .or_default()
                    .push(g);
            }
        }
        let mut per_workload: BTreeMap<usize, u64> = BTreeMap::new();
        let mut size = Size {
            nodes: self.nodes,
            ..Size::default()
        };
        for g in &self.groups {
            size.pods += g.replicas;
            *per_workload.entry(g.workload).or_default() += g.replicas * BYTES_PER_POD;
        }
        for svc in &self.services {
            size.services += 1;
            let mut bytes = BYTES_PER_SERVICE;
            if let Some((k, v)) = svc.selector.iter().next() {
                let candidates = index
                    .get(&(svc.namespace.as_str(), k.as_str(), v.as_str()))
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                for &g in candidates {
                    let group = &self.groups[g];
                    if svc
                        .selector
                        .iter()
                        .all(|(k, v)| group.labels.get(k) == Some(v))
                    {
                        size.endpoints += group.replicas;
                        bytes += group.replicas * BYTES_PER_ENDPOINT;
                    }
                }
            }
            *per_workload.entry(svc.workload).or_default() += bytes;
        }
        let heaviest = per_workload
            .into_iter()
            .max_by_key(|&(w, b)| (b, std::cmp::Reverse(w)));
        Estimate {
            size,
            bytes: size.bytes(),
            node_bytes: size.nodes * BYTES_PER_NODE,
            heaviest,
        }
    }
}

/// Binary gibibytes, one decimal.
fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}

/// `Err` when the run would need more than `available` bytes: at the workload entry that
/// weighs most (its `count` when it has one), or at `topology.nodesPerZone` when the nodes
/// weigh more.
pub fn check(s: &Scenario, e: &Estimate, available: u64) -> Result<(), Problem> {
    if e.bytes <= available {
        return Ok(());
    }
    let key = |k: &str| Seg::Key(k.to_string());
    let path = match e.heaviest {
        Some((w, bytes)) if bytes > e.node_bytes => {
            let mut p = vec![key("workloads"), Seg::Index(w)];
            if s.workloads.get(w).is_some_and(|w| w.count.is_some()) {
                p.push(key("count"));
            }
            p
        }
        _ => vec![key("topology"), key("nodesPerZone")],
    };
    let z = &e.size;
    Err(Problem {
        path,
        message: format!(
            "the simulation would need about {} ({} nodes x {} KiB + {} pods x {} KiB + {} Services x {} KiB + {} endpoints x {} KiB + {} MiB) but {} is available (MemAvailable in /proc/meminfo): expected a smaller scenario",
            gib(e.bytes),
            z.nodes,
            BYTES_PER_NODE >> 10,
            z.pods,
            BYTES_PER_POD >> 10,
            z.services,
            BYTES_PER_SERVICE >> 10,
            z.endpoints,
            BYTES_PER_ENDPOINT >> 10,
            BASE_BYTES >> 20,
            gib(available)
        ),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn scenario(nodes_per_zone: u32) -> Scenario {
        let text = format!(
            "name: m\ntopology: {{nodesPerZone: {nodes_per_zone}}}\nworkloads:\n  - path: a.yaml\n  - path: b.yaml\n    count: 10\nrun: {{duration: 1m}}\n"
        );
        Scenario::parse_for(&text, "m.yaml", crate::sim::Mode::Sim).expect("scenario")
    }

    fn objects() -> (Vec<Value>, Vec<Value>) {
        let dep = |name: &str, app: &str, replicas: u64| {
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
                "spec": {"replicas": replicas, "template": {"metadata": {"labels": {"app": app, "tier": "x"}}}}})
        };
        let svc = |name: &str, sel: Value| {
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                "spec": {"selector": sel}})
        };
        let a = vec![
            dep("web", "web", 6),
            svc("web", json!({"app": "web"})),
            svc("all", json!({"tier": "x"})),
            svc("none", json!({"app": "web", "tier": "y"})),
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "d"},
                "spec": {"template": {"metadata": {"labels": {"app": "d"}}}}}),
        ];
        let b = crate::stamp::stamp(
            &[
                dep("s-{{.Index}}", "s-{{.Index}}", 30),
                svc("s-{{.Index}}", json!({"app": "s-{{.Index}}"})),
            ],
            10,
        );
        (a, b)
    }

    #[test]
    fn pods_services_and_selected_endpoints_are_counted() {
        let s = scenario(2);
        let (a, b) = objects();
        let mut c = Census::new(&s);
        a.iter().for_each(|o| c.add(0, o));
        b.iter().for_each(|o| c.add(1, o));
        let e = c.finish();
        // 6 web + 6 daemon pods (one per node) + 10 x 30; `all` selects web's and the
        // stamped ones (tier x), `none` nothing.
        assert_eq!(
            e.size,
            Size {
                nodes: 6,
                pods: 312,
                services: 13,
                endpoints: 6 + (6 + 300) + 300
            }
        );
        assert_eq!(e.bytes, e.size.bytes());
        assert_eq!(
            e.heaviest.map(|h| h.0),
            Some(1),
            "the stamped entry weighs most"
        );
    }

    #[test]
    fn too_big_is_refused_at_the_heaviest_part() {
        let s = scenario(2);
        let (a, b) = objects();
        let mut c = Census::new(&s);
        a.iter().for_each(|o| c.add(0, o));
        b.iter().for_each(|o| c.add(1, o));
        let e = c.finish();
        assert_eq!(check(&s, &e, e.bytes), Ok(()));
        let p = check(&s, &e, e.bytes - 1).unwrap_err();
        assert_eq!(crate::locate::render(&p.path), "workloads[1].count");
        assert!(
            p.message.contains("MemAvailable") && p.message.contains("312 pods"),
            "{}",
            p.message
        );
        let big = scenario(5_000);
        let e = Census::new(&big).finish();
        let p = check(&big, &e, 100 << 20).unwrap_err();
        assert_eq!(crate::locate::render(&p.path), "topology.nodesPerZone");
    }
}
