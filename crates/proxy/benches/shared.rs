//! The simulator's proxies over one shared model: 10,000 Services (most with 1-10 endpoints,
//! 10 with 1,200) spread over 5,000 nodes, one [`SharedModel`] and 5,000 [`NodeProxy`]s in
//! no-text mode. Prints the memory (RSS delta) of the model and of the node proxies, the cost
//! of one endpoint change handled by the model and propagated to all nodes' syncs
//! (`handle_change` + `poll_transaction` + `handle_applied` on every node), the memory kept
//! while nodes sit at many different versions, and a data-plane lookup. Sizes can be set:
//! `ZL_BENCH_NODES`, `ZL_BENCH_SERVICES`.
//! Run: `cargo bench --profile dev -p proxy --bench shared` (a release build: without
//! `--profile dev`).

use runtime::Moment;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use proxy::fixtures::{ep_cond, service, slice};
use proxy::node_proxy::{Candidates, NodeInputs, NodeProxy};
use proxy::pacer::PacerConfig;
use proxy::shared_model::{ModelChange, SharedModel};
use proxy::syncer::Change;
use proxy::{Cidr, Protocol};

const P80: &[(&str, u16, &str)] = &[("http", 80, "TCP")];
/// Services with [`BIG_ENDPOINTS`] endpoints.
const BIG_SERVICES: u32 = 10;
const BIG_ENDPOINTS: u32 = 1_200;
const ROUNDS: u32 = 20;

fn env(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident set size from /proc/self/statm, bytes.
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn svc_ip(i: u32) -> String {
    format!("172.30.{}.{}", i / 250, i % 250 + 1)
}

fn endpoints_of(i: u32) -> u32 {
    if i < BIG_SERVICES {
        BIG_ENDPOINTS
    } else {
        i % 10 + 1
    }
}

/// Service `i`'s slice; `variant` shifts the first endpoint's address.
fn slice_of(i: u32, nodes: u32, variant: u32) -> k8s_openapi::api::discovery::v1::EndpointSlice {
    let eps = (0..endpoints_of(i))
        .map(|k| {
            let n = i * 16 + k + if k == 0 { variant * 7_919 } else { 0 };
            let ip = format!(
                "10.{}.{}.{}",
                n / 62_500 % 250,
                (n / 250) % 250,
                n % 250 + 1
            );
            let node = format!("node-{}", (i * 31 + k) % nodes);
            ep_cond(&ip, true, true, false, Some(&node))
        })
        .collect();
    let name = format!("svc{i}");
    slice("ns", &name, &format!("{name}-1"), P80, eps)
}

fn build_model(services: u32, nodes: u32) -> (SharedModel, Vec<ModelChange>) {
    let mut model = SharedModel::new();
    let mut changes = Vec::new();
    for i in 0..services {
        let name = format!("svc{i}");
        changes.extend(model.handle_service(Change::Applied(&service(
            "ns",
            &name,
            &svc_ip(i),
            P80,
        ))));
        changes.extend(model.handle_slice(Change::Applied(&slice_of(i, nodes, 0))));
    }
    (model, changes)
}

fn node_proxies(nodes: u32) -> Vec<NodeProxy> {
    let cidr = Cidr::parse("172.30.0.0/16").expect("cidr");
    (0..nodes)
        .map(|n| {
            NodeProxy::new(
                NodeInputs {
                    node_name: format!("node-{n}"),
                    node_ip: Some(Ipv4Addr::from(0xc0a8_0000 + n)),
                    zone: None,
                    service_cidrs: vec![cidr],
                },
                PacerConfig::default(),
            )
        })
        .collect()
}

/// Every node handles `change`, polls its sync at `now` and applies it; returns the syncs.
fn propagate(
    model: &SharedModel,
    proxies: &mut [NodeProxy],
    change: &ModelChange,
    now: i64,
) -> usize {
    let mut synced = 0;
    for p in proxies.iter_mut() {
        p.handle_change(change);
        while let Some(tx) = p.poll_transaction(Moment::from_millis(now), model) {
            std::hint::black_box(tx.version());
            p.handle_applied(Ok(()), Moment::from_millis(now));
            synced += 1;
        }
    }
    synced
}

fn main() {
    let nodes = env("ZL_BENCH_NODES", 5_000);
    let services = env("ZL_BENCH_SERVICES", 10_000);
    let endpoints: u64 = (0..services).map(|i| u64::from(endpoints_of(i))).sum();
    let rss0 = rss();
    let t = Instant::now();
    let (mut model, initial) = build_model(services, nodes);
    let build = t.elapsed();
    let rss_model = rss();
    println!(
        "model: {services} Services, {endpoints} endpoints ({BIG_SERVICES} Services x {BIG_ENDPOINTS}), {nodes} nodes: built in {:.0} ms, RSS +{:.1} MiB",
        ms(build),
        mib(rss_model.saturating_sub(rss0))
    );
    let mut proxies = node_proxies(nodes);
    let mut now: i64 = 1_700_000_000_000;
    for p in proxies.iter_mut() {
        for c in &initial {
            p.handle_change(c);
        }
        p.handle_initial_sync_done(Moment::from_millis(now));
        while p
            .poll_transaction(Moment::from_millis(now), &model)
            .is_some()
        {
            p.handle_applied(Ok(()), Moment::from_millis(now));
        }
    }
    let rss_nodes = rss();
    println!(
        "{nodes} node proxies synced to version {}: RSS +{:.2} MiB = {:.0} B per node (struct {} B)",
        model.version(),
        mib(rss_nodes.saturating_sub(rss_model)),
        rss_nodes.saturating_sub(rss_model) as f64 / f64::from(nodes),
        std::mem::size_of::<NodeProxy>()
    );
    // One endpoint change, a small and a big Service, propagated to every node.
    for (label, svc) in [
        ("small (6 endpoints)", services - 5),
        ("big (1,200 endpoints)", 0),
    ] {
        let mut model_best = Duration::MAX;
        let mut nodes_best = Duration::MAX;
        for round in 1..=ROUNDS {
            now += 1_000;
            let t = Instant::now();
            let change = model
                .handle_slice(Change::Applied(&slice_of(svc, nodes, round)))
                .expect("the change changes the model");
            let model_d = t.elapsed();
            let t = Instant::now();
            let synced = propagate(&model, &mut proxies, &change, now);
            let nodes_d = t.elapsed();
            assert_eq!(synced, nodes as usize, "every node synced once");
            model_best = model_best.min(model_d);
            nodes_best = nodes_best.min(nodes_d);
        }
        println!(
            "one endpoint change of a {label} Service: model {:.3} ms + {nodes} nodes' syncs {:.2} ms = {:.2} ms ({:.0} ns per node; best of {ROUNDS})",
            ms(model_best),
            ms(nodes_best),
            ms(model_best + nodes_best),
            nodes_best.as_nanos() as f64 / f64::from(nodes)
        );
    }
    // A burst (e.g. start-up or a zone's endpoints going): 1,000 changes inside one
    // min-sync-period, each told only to nodes not already pending, then every node syncs.
    let burst = 1_000;
    now += 2_000;
    let writes: Vec<_> = (0..burst)
        .map(|round| {
            let svc = BIG_SERVICES + (round * 13) % (services - BIG_SERVICES);
            slice_of(svc, nodes, round + 500)
        })
        .collect();
    // The driver keeps the nodes with nothing pending (here: all, just synced) and tells
    // only those; a node is listed again after a sync leaves it with nothing pending.
    let mut idle: Vec<usize> = (0..proxies.len())
        .filter(|k| !proxies[*k].is_pending())
        .collect();
    let t = Instant::now();
    let mut told = 0usize;
    for s in &writes {
        if let Some(change) = model.handle_slice(Change::Applied(s)) {
            for k in idle.drain(..) {
                proxies[k].handle_change(&change);
                told += 1;
            }
        }
    }
    let changes_d = t.elapsed();
    let t = Instant::now();
    let mut synced = 0;
    for p in proxies.iter_mut() {
        while p
            .poll_transaction(Moment::from_millis(now), &model)
            .is_some()
        {
            p.handle_applied(Ok(()), Moment::from_millis(now));
            synced += 1;
        }
    }
    println!(
        "burst of {burst} changes in one sync interval: model + telling idle nodes {:.1} ms ({told} handle_change calls), then {synced} node syncs {:.2} ms",
        ms(changes_d),
        ms(t.elapsed())
    );
    // Nodes spread over many versions: node k syncs only every (k % 50 + 1)-th change, so up
    // to 50 versions stay held at once.
    let rss_before = rss();
    let spread = 200;
    for round in 0..spread {
        now += 1_000;
        let svc = BIG_SERVICES + (round * 37) % (services - BIG_SERVICES);
        let Some(change) = model.handle_slice(Change::Applied(&slice_of(svc, nodes, round + 100)))
        else {
            continue;
        };
        for (k, p) in proxies.iter_mut().enumerate() {
            p.handle_change(&change);
            if round.is_multiple_of(k as u32 % 50 + 1) {
                while p
                    .poll_transaction(Moment::from_millis(now), &model)
                    .is_some()
                {
                    p.handle_applied(Ok(()), Moment::from_millis(now));
                }
            }
        }
    }
    let held: std::collections::BTreeSet<u64> = proxies
        .iter()
        .filter_map(NodeProxy::programmed_version)
        .collect();
    println!(
        "{spread} changes with nodes syncing every 1..50 changes: {} distinct versions held, RSS +{:.2} MiB",
        held.len(),
        mib(rss().saturating_sub(rss_before))
    );
    // The data-plane query.
    let view = proxies[0].view().expect("synced");
    let cip: Ipv4Addr = svc_ip(services / 2).parse().expect("ip");
    let t = Instant::now();
    let mut hits = 0usize;
    for _ in 0..100_000 {
        if let Candidates::Endpoints(eps) =
            view.lookup(std::hint::black_box(cip), Protocol::Tcp, 80)
        {
            hits += eps.len();
        }
    }
    println!(
        "lookup ClusterIP -> candidates: {:.0} ns each ({hits} endpoints seen)",
        t.elapsed().as_nanos() as f64 / 100_000.0
    );
}
