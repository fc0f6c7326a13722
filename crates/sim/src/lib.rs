//! The simulator: the controllers, kubelet core and kube-proxy of the live lab, driven by one
//! event queue in virtual time, with a modelled API, pod runtime, network and load, producing
//! the same records (`lab::Event`s and `lab::Request`s) and report as a live `zonelab run`.
//! One thread, one seeded `ChaCha8Rng` split into streams, `BTreeMap`s wherever order
//! matters: the same seed gives the same bytes.
//!
//! Start at [`run`]; the driver is [`world::World`].

pub mod adapter;
pub mod api;
pub mod config;
pub mod conntrack;
pub mod events;
pub mod faults;
pub mod latency;
pub mod load;
pub mod nodes;
pub mod proxy;
pub mod queue;
pub mod world;
pub mod zonal_shift;

use std::time::Duration;

use controllers::time::{duration_ms, span_ms};
use controllers::{Moment, Object};
use scenario::Scenario;

pub use world::{Stats, World};

/// Longest wait for every node to register Ready before the workloads are applied.
pub const NODES_READY_CAP_MS: Duration = Duration::from_millis(120_000);
/// Longest wait for the workloads to become available (as the live run's 180 s).
pub const AVAILABLE_CAP_MS: Duration = Duration::from_millis(180_000);
/// How often start-up conditions are checked, in virtual time.
const SETUP_CHECK_MS: Duration = Duration::from_millis(250);

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("{0}")]
    Flag(String),
    #[error("workload {0}")]
    Manifest(#[from] api::ManifestError),
    #[error("nodes not Ready {0} s after start: {1}")]
    NodesNotReady(i64, String),
    #[error("workloads not available {0} s after they were applied: {1}")]
    NotAvailable(i64, String),
    #[error("client {client}: Service {service} does not exist after the workloads were applied")]
    NoService { client: String, service: String },
}

/// What a run produced.
pub struct Outcome {
    pub meta: lab::Meta,
    pub events: Vec<lab::Event>,
    pub requests: Vec<lab::Request>,
    pub report: lab::Report,
    pub stats: Stats,
    /// The counts when the load started (so `stats` minus these is the run after start-up).
    pub stats_at_load_start: Stats,
}

/// The simulator's name of node `index` (1-based) of `zone`: `<zone>-<index>`, as scenario
/// files name nodes.
pub fn node_name(zone: &str, index: u32) -> String {
    format!("{zone}-{index}")
}

/// Simulate scenario `s` with its workload `manifests` (in apply order) and `seed`.
pub fn run(s: &Scenario, manifests: &[serde_json::Value], seed: u64) -> Result<Outcome, SimError> {
    run_observed(s, manifests, seed, &mut |_| {})
}

/// [`run`], calling `at_load_start` with the world once start-up is over (a driver's hook
/// for its own measurements, e.g. CPU time per phase).
pub fn run_observed(
    s: &Scenario,
    manifests: &[serde_json::Value],
    seed: u64,
    at_load_start: &mut dyn FnMut(&World),
) -> Result<Outcome, SimError> {
    let mut w = start_up(s, manifests, seed)?;
    at_load_start(&w);
    let stats_at_load_start = w.stats.clone();
    w.start_clients();
    for (i, f) in w.faults.clone().iter().enumerate() {
        let at = w.t0 + f.at;
        w.queue.push(at, world::Ev::Fault(i));
    }
    w.schedule_zonal_shifts();
    let limit = w.t0 + s.run.limit();
    let settle = w
        .clients
        .iter()
        .map(load::ClientInst::longest_request)
        .max()
        .unwrap_or(Duration::ZERO)
        + Duration::from_millis(1_000);
    while let Some(t) = w.queue.peek_time() {
        if w.end.is_none() && t > limit {
            w.end = Some(limit);
            w.ended_by = if s.run.duration.is_some() {
                "duration"
            } else {
                "cap"
            }
            .into();
        }
        if w.end.is_some_and(|e| t > e + settle) {
            break;
        }
        w.step();
    }
    let end = w.end.unwrap_or(limit);
    let ended_by = w.ended_by.clone();
    let meta = w.meta(end, &ended_by);
    let t0 = w.t0.as_millis() as f64;
    let requests: Vec<lab::Request> = std::mem::take(&mut w.requests)
        .into_iter()
        .filter(|r| r.start >= t0 && r.start <= end.as_millis() as f64)
        .collect();
    let mut events = std::mem::take(&mut w.events);
    events.sort_by(|a, b| a.at.total_cmp(&b.at));
    let report = lab::analyze(&meta, &events, &requests);
    Ok(Outcome {
        meta,
        events,
        requests,
        report,
        stats: w.stats.clone(),
        stats_at_load_start,
    })
}

/// Start-up, everything before the load starts: the nodes boot and turn Ready, the workloads
/// are created and become available, and the client nodes' proxies program their Services
/// (the live run's load-start rule); returns the world at `t0`, the load's start.
pub fn start_up(
    s: &Scenario,
    manifests: &[serde_json::Value],
    seed: u64,
) -> Result<World, SimError> {
    let mut w = boot(s, seed)?;
    apply_workloads(&mut w, manifests)?;
    await_load_start(&mut w, s)?;
    Ok(w)
}

/// The world with its namespaces, control plane and every node registered and Ready.
pub fn boot(s: &Scenario, seed: u64) -> Result<World, SimError> {
    let mut w = World::new(s, seed)?;
    create_namespaces(&mut w);
    w.start_control_plane();
    boot_nodes(&mut w, s);
    let start = w.now;
    run_while(&mut w, start + NODES_READY_CAP_MS, |w| {
        nodes_ready(w).is_err()
    });
    if let Err(which) = nodes_ready(&w) {
        return Err(SimError::NodesNotReady(
            NODES_READY_CAP_MS.as_secs() as i64,
            which,
        ));
    }
    Ok(w)
}

/// Create the workload `manifests` (in order) and run until every workload is available.
pub fn apply_workloads(w: &mut World, manifests: &[serde_json::Value]) -> Result<(), SimError> {
    let applied = w.now;
    for m in manifests {
        let now = w.now;
        for change in w.api.create_manifest(m, now)? {
            w.broadcast(change);
        }
    }
    run_while(w, applied + AVAILABLE_CAP_MS, |w| {
        workloads_available(w).is_err()
    });
    if let Err(which) = workloads_available(w) {
        return Err(SimError::NotAvailable(
            AVAILABLE_CAP_MS.as_secs() as i64,
            which,
        ));
    }
    Ok(())
}

/// The load-start rule after the workloads are available: a random phase, the clients
/// resolved, every client node's proxy programmed (or the cap), then the settle time; the
/// world is left at `t0`.
pub fn await_load_start(w: &mut World, s: &Scenario) -> Result<(), SimError> {
    // The live runner polls availability every 250 ms at an arbitrary phase of the
    // controllers' timers (the simulator's checks share the controllers' start): a random
    // phase, so the fault does not always fall at the same point of a monitor period.
    let phase = {
        use rand::Rng;
        w.rng.setup.random_range(0..duration_ms(SETUP_CHECK_MS))
    };
    w.run_until(w.now + span_ms(phase));
    resolve_clients(w, s)?;
    // The live run's rule: the client nodes' proxies programmed their Services' endpoints,
    // knowing every ready one.
    let gate = w.load_gate();
    let cap = w.now + span_ms(lab::load_start::CAP_MS);
    let pending = |w: &World| {
        gate.pending(|s| w.ready_pods(s), |n, s| w.proxy_seen(n, s))
            .is_some()
    };
    while pending(w) && w.now < cap {
        let next = w.now + span_ms(lab::load_start::POLL_MS);
        w.run_until(next);
    }
    w.t0 = w.now + span_ms(lab::load_start::SETTLE_MS);
    w.run_until(w.t0);
    Ok(())
}

/// Step until `busy` turns false (checked every [`SETUP_CHECK_MS`]) or `cap`.
fn run_while(w: &mut World, cap: Moment, busy: impl Fn(&World) -> bool) {
    while busy(w) && w.now < cap {
        let next = w.now + SETUP_CHECK_MS;
        w.run_until(next);
    }
}

fn create_namespaces(w: &mut World) {
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let obj: k8s_openapi::api::core::v1::Namespace = k8s_openapi::api::core::v1::Namespace {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(ns.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let now = w.now;
        w.api.put(Object::Namespace(std::sync::Arc::new(obj)), now);
    }
}

/// Every node of the topology; each agent starts at a random point of the first lease renew
/// interval (real agents do not start in step, and their renewals stay spread).
fn boot_nodes(w: &mut World, s: &Scenario) {
    use rand::Rng;
    let spread = duration_ms(w.cfg.kubelet.lease_renew_interval()).max(1);
    for zone in &s.topology.zones {
        for i in 1..=s.topology.nodes_per_zone {
            let at = w.now + span_ms(w.rng.setup.random_range(0..spread));
            w.add_node(node_name(zone, i), zone, at);
        }
    }
}

/// `Err(first node not Ready)` until every node is registered and Ready.
fn nodes_ready(w: &World) -> Result<(), String> {
    for n in &w.nodes {
        let ready = w
            .api
            .fake
            .cache
            .nodes
            .get(&n.name)
            .is_some_and(|node| controllers::node_ready_status(node) == Some("True"));
        if !ready {
            return Err(n.name.clone());
        }
    }
    Ok(())
}

/// `Err(first workload not available)` until every Deployment, StatefulSet and DaemonSet has
/// all its replicas available.
fn workloads_available(w: &World) -> Result<(), String> {
    let c = &w.api.fake.cache;
    for (k, d) in &c.deployments {
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let st = d.status.as_ref();
        let have = st.and_then(|s| s.available_replicas).unwrap_or(0);
        let updated = st.and_then(|s| s.updated_replicas).unwrap_or(0);
        if have < want || updated < want {
            return Err(format!("deployment {k}: {have}/{want} available"));
        }
    }
    for (k, s) in &c.stateful_sets {
        let want = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let have = s
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0);
        if have < want {
            return Err(format!("statefulset {k}: {have}/{want} ready"));
        }
    }
    for (k, d) in &c.daemon_sets {
        let st = d.status.as_ref();
        let want = st.map_or(0, |s| s.desired_number_scheduled);
        let have = st.and_then(|s| s.number_available).unwrap_or(0);
        if have < want {
            return Err(format!("daemonset {k}: {have}/{want} available"));
        }
    }
    Ok(())
}

/// One client instance per client and zone, on the zone's last node (as the live run), with
/// its Service's ClusterIP and first port.
fn resolve_clients(w: &mut World, s: &Scenario) -> Result<(), SimError> {
    for c in &s.clients {
        let Some(r) = c.service_ref() else { continue };
        let service = format!("{}/{}", r.namespace, r.name);
        let svc = w
            .api
            .fake
            .cache
            .services
            .get(&controllers::Key::new(&r.namespace, &r.name))
            .cloned()
            .ok_or_else(|| SimError::NoService {
                client: c.name.clone(),
                service: service.clone(),
            })?;
        let spec = svc.spec.as_ref();
        let ip = spec
            .and_then(|s| s.cluster_ip.as_deref())
            .and_then(|ip| ip.parse().ok());
        let port = spec
            .and_then(|s| s.ports.as_ref())
            .and_then(|p| p.first())
            .and_then(|p| u16::try_from(p.port).ok());
        for zone in s.client_zones(c) {
            let node = w.node_by_name[&node_name(zone, s.topology.nodes_per_zone)];
            let mut inst = load::ClientInst::new(c, zone, node, service.clone());
            inst.target = ip.zip(port);
            w.clients.push(inst);
        }
    }
    Ok(())
}
