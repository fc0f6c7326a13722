//! Bench of the simulator: wall time of a 10-minute zone power-off with the upstream profile
//! at 30, 150 and 500 nodes (3 zones, one echo pod per node behind one Service, one client
//! per zone at 20 requests/s), and the virtual-to-wall speed-up.
//!
//! Run: `cargo bench -p sim --bench zone_power_off` (add `--profile dev` to skip the release
//! build; figures in docs/performance.md say which). `SIM_BENCH_NODES=500` runs one size (any: 1000),
//! `SIM_BENCH_RUNS=1` one seed per size, `SIM_BENCH_PODS_PER_NODE=10` that many echo pods per
//! node (default 1; the Service then has nodes x pods endpoints).

use std::time::Instant;

const SIZES: [u32; 3] = [10, 50, 167];
const RUNS: usize = 3;

fn scenario(
    nodes_per_zone: u32,
    pods_per_node: u32,
) -> (scenario::Scenario, Vec<serde_json::Value>) {
    let replicas = nodes_per_zone * 3 * pods_per_node;
    let text = format!(
        "name: bench-{replicas}
topology: {{zones: [a, b, c], nodesPerZone: {nodes_per_zone}}}
profile: upstream
clients:
  - {{name: web, target: web, rate: 20, timeout: 1s}}
faults:
  - {{at: 30s, type: zone-power-off, target: a}}
run: {{duration: 10m}}
"
    );
    let s = scenario::Scenario::parse_for(&text, "bench.yaml", scenario::sim::Mode::Sim)
        .expect("bench scenario");
    let pod = serde_json::json!({
        "metadata": {"labels": {"app": "web"}},
        "spec": {
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": "web"}}}],
            "containers": [{"name": "echo", "image": "zonelab/echo",
                "ports": [{"name": "http", "containerPort": 8080}],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1}}]
        }
    });
    let manifests = vec![
        serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}),
        serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}, "template": pod}}),
    ];
    (s, manifests)
}

fn env_number(name: &str) -> Option<u32> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn main() {
    println!("zone power-off, upstream profile, 10 min of virtual time after start-up");
    let runs = env_number("SIM_BENCH_RUNS").map_or(RUNS, |r| r.max(1) as usize);
    let only = env_number("SIM_BENCH_NODES");
    let sizes = match only {
        Some(o) => vec![o.div_ceil(3)],
        None => SIZES.to_vec(),
    };
    let pods_per_node = env_number("SIM_BENCH_PODS_PER_NODE").map_or(1, |p| p.max(1));
    for npz in sizes {
        let (s, m) = scenario(npz, pods_per_node);
        let mut walls = Vec::new();
        let mut last = None;
        for seed in 1..=runs as u64 {
            let start = Instant::now();
            let out = sim::run(&s, &m, seed).expect("simulated run");
            walls.push(start.elapsed().as_secs_f64());
            last = Some(out);
        }
        walls.sort_by(f64::total_cmp);
        let out = last.expect("a run");
        let virtual_s = (out.report.ended_at_ms - controllers::fake::T0.as_millis() as f64) / 1e3;
        let median = walls[walls.len() / 2];
        println!(
            "{:>4} nodes x {} pods: wall median {:>7.2} s (min {:.2}, max {:.2}) for {:.0} s simulated ({:.0}x); {} events, {} API writes, {} proxy syncs, {} requests",
            npz * 3,
            pods_per_node,
            median,
            walls[0],
            walls[walls.len() - 1],
            virtual_s,
            virtual_s / median,
            out.stats.events,
            out.stats.api_writes,
            out.stats.proxy_syncs,
            out.requests.len()
        );
        // What the run measured, to see that a speed-up changed no behaviour.
        println!(
            "  phases {}",
            serde_json::to_string(&out.report.phases).unwrap_or_default()
        );
    }
}
