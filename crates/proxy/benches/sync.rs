//! Sync benchmarks: full sync (plan + render) for 1,000 and 10,000 Services x 10 endpoints,
//! partial sync after one endpoint change at 10,000 and 100 Services, and - with root, `ip`
//! and `nft`/`iptables-restore` - the real apply time of the full text in a throwaway netns
//! (the floor). Run: `cargo bench -p proxy --bench sync`.

use std::process::Command;
use std::time::{Duration, Instant};

use proxy::apply::{IptablesApplier, NftApplier, RuleApplier};
use proxy::fixtures::{ep, service, slice};
use proxy::iptables::{IptablesConfig, IptablesRenderer};
use proxy::nft::{NftConfig, NftRenderer};
use proxy::{Cidr, Plan, PlanConfig, Tracker};

const P80: &[(&str, u16, &str)] = &[("http", 80, "TCP")];
const ENDPOINTS: u32 = 10;

fn svc_ip(i: u32) -> String {
    format!("172.30.{}.{}", i / 250, i % 250 + 1)
}

fn ep_ip(i: u32, k: u32) -> String {
    let n = i * ENDPOINTS + k;
    format!("10.{}.{}.{}", n / 62_500, (n / 250) % 250, n % 250 + 1)
}

fn tracker(services: u32) -> Tracker {
    let mut t = Tracker::new();
    for i in 0..services {
        let name = format!("svc{i}");
        t.apply_service(&service("ns", &name, &svc_ip(i), P80));
        let eps = (0..ENDPOINTS).map(|k| ep(&ep_ip(i, k))).collect();
        t.apply_slice(&slice("ns", &name, &format!("{name}-1"), P80, eps));
    }
    t.take_changes();
    t
}

fn nft_cfg() -> NftConfig {
    NftConfig {
        cluster_cidr: Some(Cidr::parse("10.0.0.0/8").unwrap_or(Cidr {
            addr: [10, 0, 0, 0].into(),
            prefix: 8,
        })),
        service_cidrs: vec![Cidr {
            addr: [172, 30, 0, 0].into(),
            prefix: 16,
        }],
        ..NftConfig::default()
    }
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let v = f();
        best = best.min(t.elapsed());
        last = Some(v);
    }
    match last {
        Some(v) => (best, v),
        None => (best, f()),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Netns(String);
impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn netns() -> Option<Netns> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !root {
        return None;
    }
    let name = format!("zl-bench-{}", std::process::id());
    let _ = Command::new("ip").args(["netns", "del", &name]).output();
    Command::new("ip")
        .args(["netns", "add", &name])
        .status()
        .ok()?
        .success()
        .then_some(Netns(name))
}

fn full(services: u32, kernel: Option<&Netns>) {
    let t = tracker(services);
    let cfg = PlanConfig::default();
    let (plan_d, plan) = best_of(3, || Plan::build(&t, &cfg));
    let (nft_d, text) = best_of(3, || NftRenderer::new(nft_cfg()).render_full(&plan));
    let ipt_cfg = IptablesConfig {
        cluster_cidr: nft_cfg().cluster_cidr,
        ..IptablesConfig::default()
    };
    let (ipt_d, ipt_text) = best_of(3, || {
        IptablesRenderer::new(ipt_cfg.clone()).render_full(&plan)
    });
    println!(
        "full sync {services} svc x {ENDPOINTS} ep: plan {:.1} ms, nft render {:.1} ms ({:.1} MB), iptables render {:.1} ms ({:.1} MB); plan+nft {:.1} ms",
        ms(plan_d),
        ms(nft_d),
        text.len() as f64 / 1e6,
        ms(ipt_d),
        ipt_text.len() as f64 / 1e6,
        ms(plan_d + nft_d)
    );
    let Some(ns) = kernel else { return };
    let max: u32 = std::env::var("ZL_BENCH_KERNEL_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    if services > max {
        println!(
            "  (kernel floors skipped above {max} services; set ZL_BENCH_KERNEL_MAX; 10,000 took ~142 s in nft 1.0.6)"
        );
        return;
    }
    let mut nft = NftApplier::new(Some(ns.0.clone()));
    let t0 = Instant::now();
    let first = nft.apply(&text);
    let first_d = t0.elapsed();
    // The floor: the same text applied over the existing table (what every full sync after
    // the first one does: delete + recreate in one transaction).
    let t0 = Instant::now();
    match first.and_then(|()| nft.apply(&text)) {
        Ok(()) => {
            let floor = t0.elapsed();
            println!("  nft -f into an empty netns {:.0} ms", ms(first_d));
            // End to end: plan + render + nft -f (table reset over the existing one).
            let t1 = Instant::now();
            let plan = Plan::build(&t, &cfg);
            let text = NftRenderer::new(nft_cfg()).render_full(&plan);
            let applied = nft.apply(&text);
            let e2e = t1.elapsed();
            println!(
                "  nft -f floor {:.0} ms; plan+render+nft -f {:.0} ms ({:?}) = {:.2}x floor",
                ms(floor),
                ms(e2e),
                applied.map(|_| "ok"),
                e2e.as_secs_f64() / floor.as_secs_f64()
            );
        }
        Err(e) => println!("  nft -f failed: {e}"),
    }
    let mut ipt = IptablesApplier::new(Some(ns.0.clone()));
    let t0 = Instant::now();
    match ipt.apply(&ipt_text) {
        Ok(()) => println!(
            "  iptables-restore --noflush floor {:.0} ms",
            ms(t0.elapsed())
        ),
        Err(e) => println!("  iptables-restore failed: {e}"),
    }
}

fn partial(services: u32) {
    let mut t = tracker(services);
    let cfg = PlanConfig::default();
    let mut plan = Plan::build(&t, &cfg);
    let mut nft = NftRenderer::new(nft_cfg());
    let _ = nft.render_full(&plan);
    let ipt_cfg = IptablesConfig {
        cluster_cidr: nft_cfg().cluster_cidr,
        ..IptablesConfig::default()
    };
    let mut ipt = IptablesRenderer::new(ipt_cfg);
    let _ = ipt.render_full(&plan);
    let mut now = 1_000_000;
    let mut round = 0u32;
    let (d, (nft_len, ipt_len)) = best_of(20, || {
        round += 1;
        now += 1_000;
        let i = services / 2;
        let mut eps: Vec<_> = (0..ENDPOINTS).map(|k| ep(&ep_ip(i, k))).collect();
        eps[0] = ep(&format!("10.250.{}.{}", round / 250, round % 250 + 1));
        t.apply_slice(&slice(
            "ns",
            &format!("svc{i}"),
            &format!("svc{i}-1"),
            P80,
            eps,
        ));
        let changes = t.take_changes();
        let affected = plan.update(&t, &cfg, &changes.services);
        let text = nft.render_partial(&plan, &affected, now);
        let _ = nft.render_stale_deletes(now);
        let ipt_text = ipt.render_partial(&plan, &affected);
        (text.len(), ipt_text.len())
    });
    println!(
        "partial sync, 1 endpoint changed, {services} svc: {:.3} ms (tracker+plan+nft+iptables render); nft {} B, iptables {} B",
        ms(d),
        nft_len,
        ipt_len
    );
}

fn main() {
    let kernel = netns();
    if kernel.is_none() {
        println!("(no root/netns: skipping real nft -f / iptables-restore floors)");
    }
    partial(100);
    partial(10_000);
    full(1_000, kernel.as_ref());
    full(10_000, kernel.as_ref());
}
