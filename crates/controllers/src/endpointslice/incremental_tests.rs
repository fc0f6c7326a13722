//! Property test of the partial syncs: over random sequences of pod, Service and node changes
//! with a delayed informer, the controller writes exactly what a controller that reconciles
//! every sync in full writes (same actions in the same order), and its indexes agree with a
//! scan of the cache.

use std::collections::VecDeque;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use super::*;
use crate::fake::{FakeApi, T0, object};

const NAMESPACES: [&str; 2] = ["default", "other"];
const APPS: [&str; 3] = ["web", "api", "db"];

/// One controller behind a FIFO informer that delivers changes late.
struct Driver {
    api: FakeApi,
    /// What the controller's informer has delivered so far.
    view: Cache,
    pending: VecDeque<Change>,
    c: EndpointSliceController,
    now: Moment,
    writes: Vec<String>,
}

impl Driver {
    fn new(c: EndpointSliceController) -> Driver {
        Driver {
            api: FakeApi::new(),
            view: Cache::default(),
            pending: VecDeque::new(),
            c,
            now: T0,
            writes: Vec::new(),
        }
    }

    fn put(&mut self, obj: Object) {
        let change = self.api.put(obj, self.now);
        self.pending.push_back(change);
    }

    fn remove(&mut self, kind: Kind, key: &Key) {
        if let Some(change) = self.api.remove(kind, key) {
            self.pending.push_back(change);
        }
    }

    /// Deliver `n` pending changes, then run the controller's timers and writes.
    fn step(&mut self, n: usize) {
        for _ in 0..n {
            let Some(change) = self.pending.pop_front() else {
                break;
            };
            let seen = match &change {
                Change::Applied { new, .. } => self.view.apply(new.clone(), false),
                Change::Deleted(old) => self.view.apply(old.clone(), true),
            };
            self.c.handle_change(&self.view, &seen, self.now);
        }
        if self.c.poll_timeout().is_some_and(|t| t <= self.now) {
            self.c.handle_timeout(&self.view, self.now);
        }
        while let Some(a) = self.c.poll_action() {
            self.writes.push(brief(&a));
            match self.api.execute(&a, self.now) {
                Ok(changes) => self.pending.extend(changes),
                Err(e) => {
                    self.writes.push(format!("failed: {e:?}"));
                    self.c.handle_write_failed(&a, &e, self.now);
                }
            }
        }
        while self.c.poll_event().is_some() {}
    }
}

/// A write in short: verb, slice, ports, endpoints (pod, IP, ready/serving/terminating, zone,
/// hints) and the trigger annotation.
fn brief(a: &Action) -> String {
    let slice = |verb: &str, s: &EndpointSlice| {
        let ports: Vec<_> = s.ports.iter().flatten().map(|p| p.port).collect();
        let eps: Vec<String> = s
            .endpoints
            .iter()
            .map(|e| {
                let c = e.conditions.clone().unwrap_or_default();
                format!(
                    "{}={}:{:?}/{:?}/{:?}@{:?}{:?}",
                    e.target_ref
                        .as_ref()
                        .and_then(|t| t.name.clone())
                        .unwrap_or_default(),
                    e.addresses.join(","),
                    c.ready,
                    c.serving,
                    c.terminating,
                    e.zone,
                    e.hints
                )
            })
            .collect();
        format!(
            "{verb} {}/{} {:?} ports {ports:?} {eps:?} {:?}",
            s.metadata.namespace.clone().unwrap_or_default(),
            s.metadata
                .name
                .clone()
                .or(s.metadata.generate_name.clone())
                .unwrap_or_default(),
            s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL)),
            s.metadata.annotations
        )
    };
    match a {
        Action::Create(Object::EndpointSlice(s)) => slice("create", s),
        Action::Update(Object::EndpointSlice(s)) => slice("update", s),
        other => format!("{other:?}"),
    }
}

fn ts(ms: Moment) -> String {
    k8s_openapi::jiff::Timestamp::from_millisecond(ms.as_millis())
        .expect("ts")
        .to_string()
}

fn node(i: usize, zone: &str) -> Object {
    object(json!({"kind": "Node", "metadata": {"name": format!("n{i}"),
        "labels": {"topology.kubernetes.io/zone": zone}}}))
}

fn service(ns: &str, app: &str, selector: Value) -> Object {
    object(json!({
        "kind": "Service",
        "metadata": {"name": app, "namespace": ns},
        "spec": {"clusterIP": "10.96.0.10", "selector": selector,
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    }))
}

/// A random pod state: app label, node (rarely n9, which is never created: a missing node), readiness,
/// IP, phase, terminating, and whether it names its port `http` (else it gets another port
/// group).
fn random_pod(rng: &mut ChaCha8Rng, ns: &str, i: usize, now: Moment) -> Object {
    let app = APPS[rng.random_range(0..APPS.len())];
    let node = if rng.random_bool(0.02) {
        "n9".to_string()
    } else {
        format!("n{}", rng.random_range(0..3usize))
    };
    let ready = rng.random_bool(0.7);
    let port = if rng.random_bool(0.9) { 8080 } else { 9090 };
    let ip = format!("10.1.{}.{}", i, rng.random_range(1..4u32));
    let phase = if rng.random_bool(0.05) {
        "Succeeded"
    } else {
        "Running"
    };
    let mut meta = json!({"name": format!("p{i:02}"), "namespace": ns,
        "labels": {"app": app, "tier": if rng.random_bool(0.5) { "a" } else { "b" }}});
    if rng.random_bool(0.1) {
        meta["deletionTimestamp"] = ts(now).into();
    }
    object(json!({
        "kind": "Pod",
        "metadata": meta,
        "spec": {"nodeName": node, "containers": [{"name": "c",
            "ports": [{"name": "http", "containerPort": port}]}]},
        "status": {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" },
                            "lastTransitionTime": ts(now)}]}
    }))
}

/// One random change, applied the same way to every driver.
fn random_change(rng: &mut ChaCha8Rng, drivers: &mut [Driver]) {
    let ns = NAMESPACES[rng.random_range(0..NAMESPACES.len())];
    let roll = rng.random_range(0..100u32);
    let now = drivers[0].now;
    if roll < 80 {
        let i = rng.random_range(0..40usize);
        let obj = random_pod(rng, ns, i, now);
        drivers.iter_mut().for_each(|d| d.put(obj.clone()));
    } else if roll < 95 {
        let key = Key::new(ns, &format!("p{:02}", rng.random_range(0..40usize)));
        drivers.iter_mut().for_each(|d| d.remove(Kind::Pod, &key));
    } else if roll < 97 {
        let app = APPS[rng.random_range(0..APPS.len())];
        let selector = match rng.random_range(0..3u32) {
            0 => json!({"app": app}),
            1 => json!({"app": app, "tier": "a"}),
            _ => json!({"tier": "b"}),
        };
        let obj = service(ns, app, selector);
        drivers.iter_mut().for_each(|d| d.put(obj.clone()));
    } else if roll < 99 {
        let zone = ["zone-a", "zone-b", "zone-c"][rng.random_range(0..3usize)];
        let obj = node(rng.random_range(0..3usize), zone);
        drivers.iter_mut().for_each(|d| d.put(obj.clone()));
    } else {
        let key = Key::new(ns, APPS[rng.random_range(0..APPS.len())]);
        drivers
            .iter_mut()
            .for_each(|d| d.remove(Kind::Service, &key));
    }
}

/// The selection and holder indexes agree with a scan of the informer's cache.
fn assert_indexes_match_cache(d: &Driver) {
    for (key, svc) in &d.view.services {
        let Some(sel) = selector(svc) else { continue };
        let scanned: Vec<&String> = d
            .view
            .pods_in(&key.namespace)
            .filter(|p| selects(sel, p))
            .filter_map(|p| p.metadata.name.as_ref())
            .collect();
        let indexed: Vec<&String> = d.c.selection.members(key).collect();
        assert_eq!(indexed, scanned, "members of {key}");
        for slice in d.view.slices_of(key).filter(|s| is_managed(s)) {
            let name = slice.metadata.name.as_deref().unwrap_or("");
            for ep in &slice.endpoints {
                let pod = ep.target_ref.as_ref().and_then(|t| t.name.clone());
                let pod = pod.expect("target pod");
                let holding = d.c.holders.holding(key, std::iter::once(&pod));
                assert!(holding.contains(name), "{key}: {pod} in {name}");
            }
        }
    }
}

/// The partial-sync driver wrote exactly what the full-sync one did.
fn assert_same_writes(drivers: &[Driver; 2], at: &str) {
    let (a, b) = (&drivers[0].writes, &drivers[1].writes);
    if let Some(i) = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i)) {
        let from = i.saturating_sub(6);
        panic!(
            "{at}: write {i} differs:\nbefore: {:#?}\npartial: {:#?}\nfull:    {:#?}",
            &a[from..i],
            &a[i..a.len().min(i + 3)],
            &b[i..b.len().min(i + 3)]
        );
    }
}

fn run(seed: u64, config: EndpointSliceConfig) -> u64 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut drivers = [
        Driver::new(EndpointSliceController::new(config.clone())),
        Driver::new(EndpointSliceController::full_only(config)),
    ];
    for d in drivers.iter_mut() {
        for (i, zone) in ["zone-a", "zone-b", "zone-c"].iter().enumerate() {
            d.api.put(node(i, zone), T0);
        }
        for ns in NAMESPACES {
            d.api.put(service(ns, "web", json!({"app": "web"})), T0);
            d.api.put(service(ns, "api", json!({"app": "api"})), T0);
        }
        d.view = d.api.cache.clone();
        d.c.handle_synced(&d.view, T0);
        d.step(0);
    }
    for round in 0..400 {
        random_change(&mut rng, &mut drivers);
        let deliver = rng.random_range(0..4usize);
        let advance = [0, 0, 200, 1_000, 3_000][rng.random_range(0..5usize)];
        for d in drivers.iter_mut() {
            d.step(deliver);
            d.now += Duration::from_millis(advance);
        }
        assert_same_writes(&drivers, &format!("seed {seed} round {round}"));
        assert_indexes_match_cache(&drivers[0]);
    }
    // Let everything arrive and every retry run.
    for _ in 0..200 {
        for d in drivers.iter_mut() {
            d.step(usize::MAX);
            d.now += Duration::from_millis(2_000);
        }
    }
    assert_same_writes(&drivers, &format!("seed {seed}: at the end"));
    assert_eq!(
        drivers[0].api.cache.endpoint_slices,
        drivers[1].api.cache.endpoint_slices
    );
    assert_indexes_match_cache(&drivers[0]);
    drivers[0].c.partial_syncs
}

#[test]
fn partial_syncs_write_what_full_syncs_write_over_random_changes() {
    let mut partial = 0;
    for seed in 1..=12 {
        let config = EndpointSliceConfig {
            max_endpoints_per_slice: 3 + (seed as usize % 3),
            endpoint_updates_batch_period_ms: if seed % 2 == 0 {
                Duration::from_millis(0)
            } else {
                Duration::from_millis(500)
            },
            ..EndpointSliceConfig::default()
        };
        partial += run(seed, config);
    }
    assert!(partial > 1_000, "partial syncs ran: {partial}");
}
