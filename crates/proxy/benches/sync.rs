//! Sync benchmarks. Always: partial sync after one endpoint change (tracker + plan + render)
//! at 100 / 1,000 / 10,000 Services x 10 endpoints per nftables layout and for iptables, and
//! full-sync plan + render at 1,000 and 10,000. With root and `ZL_BENCH_KERNEL_MAX=N` (opt-in,
//! default 0 = none), the kernel: per layout and size up to N, the full sync applied by us
//! (`nft -f -`) into an empty throwaway netns and again over the kept table, each next to a raw
//! `nft -f FILE` of the same text, and a partial sync in the kernel. The `upstream` layout is
//! O(N^2) in the kernel: sizes stop at the first whose predicted time (from the previous size,
//! quadratic) exceeds 60 s. Run: `ZL_BENCH_KERNEL_MAX=10000 cargo bench -p proxy --bench sync`.

use runtime::Moment;
use std::process::Command;
use std::time::{Duration, Instant};

use proxy::apply::{NftApplier, RuleApplier};
use proxy::fixtures::{ep, service, slice};
use proxy::iptables::{IptablesConfig, IptablesRenderer};
use proxy::nft::{NftConfig, NftLayout, NftRenderer};
use proxy::syncer::{Change, Syncer, SyncerConfig};
use proxy::{Cidr, Plan, PlanConfig, Tracker};

const P80: &[(&str, u16, &str)] = &[("http", 80, "TCP")];
const ENDPOINTS: u32 = 10;
/// Sizes of the kernel runs.
const KERNEL_SIZES: [u32; 4] = [1_000, 2_000, 5_000, 10_000];
/// The upstream layout stops before a size predicted to take longer than this.
const KERNEL_CAP: Duration = Duration::from_secs(60);

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

fn nft_cfg(layout: NftLayout) -> NftConfig {
    NftConfig {
        cluster_cidr: Some(Cidr {
            addr: [10, 0, 0, 0].into(),
            prefix: 8,
        }),
        service_cidrs: vec![Cidr {
            addr: [172, 30, 0, 0].into(),
            prefix: 16,
        }],
        layout,
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

/// A throwaway network namespace, deleted on drop.
struct Netns(String);
impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn netns(tag: &str) -> Netns {
    let name = format!("zlnm-bench-{}-{tag}", std::process::id());
    let _ = Command::new("ip").args(["netns", "del", &name]).output();
    let ok = Command::new("ip")
        .args(["netns", "add", &name])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ip netns add {name}");
    Netns(name)
}

/// `nft -f FILE` of `text` in `ns`: the raw floor, without our piping.
fn raw_nft(ns: &Netns, text: &str) -> Duration {
    let file = std::env::temp_dir().join(format!("zlnm-bench-{}.nft", std::process::id()));
    std::fs::write(&file, text).expect("write nft file");
    let t = Instant::now();
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.0, "nft", "-f"])
        .arg(&file)
        .output()
        .expect("nft");
    let d = t.elapsed();
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "raw nft -f failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    d
}

fn apply(ns: &Netns, text: &str) -> Duration {
    let t = Instant::now();
    NftApplier::new(Some(ns.0.clone()))
        .apply(text)
        .expect("nft -f - applies");
    t.elapsed()
}

/// One endpoint of the middle Service replaced (a new IP each round).
fn change_one_endpoint(
    t: &mut Tracker,
    services: u32,
    round: u32,
) -> std::collections::BTreeSet<proxy::ServiceKey> {
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
    t.take_changes().services
}

/// Partial sync cost (tracker + plan + nft render) for one endpoint change.
fn partial_nft(services: u32, layout: NftLayout) -> Duration {
    let mut t = tracker(services);
    let cfg = PlanConfig::default();
    let mut plan = Plan::build(&t, &cfg);
    let mut nft = NftRenderer::new(nft_cfg(layout));
    let _ = nft.render_full(&plan);
    let mut now = 1_000_000;
    let mut round = 0u32;
    let (d, _) = best_of(50, || {
        round += 1;
        now += 1_000;
        let changed = change_one_endpoint(&mut t, services, round);
        let affected = plan.update(&t, &cfg, &changed);
        let text = nft.render_partial(&plan, &affected, Moment::from_millis(now));
        let _ = nft.render_stale_deletes(Moment::from_millis(now));
        text.len()
    });
    d
}

/// The same for iptables (upstream rewrites all of KUBE-SERVICES in every sync: O(N)).
fn partial_iptables(services: u32) -> Duration {
    let mut t = tracker(services);
    let cfg = PlanConfig::default();
    let mut plan = Plan::build(&t, &cfg);
    let mut ipt = IptablesRenderer::new(IptablesConfig {
        cluster_cidr: nft_cfg(NftLayout::Upstream).cluster_cidr,
        ..IptablesConfig::default()
    });
    let _ = ipt.render_full(&plan);
    let mut round = 0u32;
    let (d, _) = best_of(20, || {
        round += 1;
        let changed = change_one_endpoint(&mut t, services, round);
        let affected = plan.update(&t, &cfg, &changed);
        ipt.render_partial(&plan, &affected).len()
    });
    d
}

/// The whole per-sync path of the sans-IO proxy: the slice event, `Syncer::poll_transaction` (tracker
/// changes, plan update, render, stale deletes) and `handle_applied` (metrics).
fn partial_syncer(services: u32, layout: NftLayout) -> Duration {
    let mut syncer = Syncer::new(SyncerConfig {
        min_sync_period_ms: Duration::ZERO,
        nft: nft_cfg(layout),
        ..SyncerConfig::default()
    });
    for i in 0..services {
        let name = format!("svc{i}");
        syncer.handle_service(Change::Applied(&service("ns", &name, &svc_ip(i), P80)));
        let eps = (0..ENDPOINTS).map(|k| ep(&ep_ip(i, k))).collect();
        let s = slice("ns", &name, &format!("{name}-1"), P80, eps);
        syncer.handle_slice(Change::Applied(&s));
    }
    let mut now = 1_000_000;
    syncer.handle_initial_sync_done(Moment::from_millis(now));
    let drain = |syncer: &mut Syncer, now: i64| {
        while let Some(tx) = syncer.poll_transaction(Moment::from_millis(now)) {
            syncer.handle_applied(Ok(()), Moment::from_millis(now));
            std::hint::black_box(tx.text.len());
        }
    };
    drain(&mut syncer, now);
    let i = services / 2;
    let mut round = 0u32;
    let (d, _) = best_of(50, || {
        round += 1;
        now += 2_000;
        let mut eps: Vec<_> = (0..ENDPOINTS).map(|k| ep(&ep_ip(i, k))).collect();
        eps[0] = ep(&format!("10.250.{}.{}", round / 250, round % 250 + 1));
        let s = slice("ns", &format!("svc{i}"), &format!("svc{i}-1"), P80, eps);
        syncer.handle_slice(Change::Applied(&s));
        drain(&mut syncer, now);
    });
    d
}

fn partials() {
    for layout in [NftLayout::Upstream, NftLayout::SharedMap] {
        let costs: Vec<(u32, Duration)> = [100, 1_000, 10_000]
            .into_iter()
            .map(|n| (n, partial_syncer(n, layout)))
            .collect();
        let line: Vec<String> = costs
            .iter()
            .map(|(n, d)| format!("{n}: {:.3} ms", ms(*d)))
            .collect();
        println!(
            "partial sync, 1 endpoint changed, Syncer (event + poll_transaction + handle_applied), nft {}: {}; 10,000/100 = {:.2}x",
            layout.as_str(),
            line.join(", "),
            costs[2].1.as_secs_f64() / costs[0].1.as_secs_f64()
        );
    }
    for layout in [NftLayout::Upstream, NftLayout::SharedMap] {
        let costs: Vec<(u32, Duration)> = [100, 1_000, 10_000]
            .into_iter()
            .map(|n| (n, partial_nft(n, layout)))
            .collect();
        let line: Vec<String> = costs
            .iter()
            .map(|(n, d)| format!("{n}: {:.3} ms", ms(*d)))
            .collect();
        println!(
            "partial sync, 1 endpoint changed, nft {} (tracker+plan+render): {}; 10,000/100 = {:.2}x",
            layout.as_str(),
            line.join(", "),
            costs[2].1.as_secs_f64() / costs[0].1.as_secs_f64()
        );
    }
    let ipt: Vec<String> = [100, 1_000, 10_000]
        .into_iter()
        .map(|n| format!("{n}: {:.3} ms", ms(partial_iptables(n))))
        .collect();
    println!(
        "partial sync, 1 endpoint changed, iptables (KUBE-SERVICES rewritten, as upstream): {}",
        ipt.join(", ")
    );
}

fn full_render(services: u32) {
    let t = tracker(services);
    let cfg = PlanConfig::default();
    let (plan_d, plan) = best_of(3, || Plan::build(&t, &cfg));
    for layout in [NftLayout::Upstream, NftLayout::SharedMap] {
        let (d, text) = best_of(3, || NftRenderer::new(nft_cfg(layout)).render_full(&plan));
        println!(
            "full sync {services} svc x {ENDPOINTS} ep, nft {}: plan {:.1} ms + render {:.1} ms ({:.1} MB)",
            layout.as_str(),
            ms(plan_d),
            ms(d),
            text.len() as f64 / 1e6
        );
    }
    let ipt_cfg = IptablesConfig {
        cluster_cidr: nft_cfg(NftLayout::Upstream).cluster_cidr,
        ..IptablesConfig::default()
    };
    let (d, text) = best_of(3, || {
        IptablesRenderer::new(ipt_cfg.clone()).render_full(&plan)
    });
    println!(
        "full sync {services} svc, iptables render {:.1} ms ({:.1} MB)",
        ms(d),
        text.len() as f64 / 1e6
    );
}

/// One layout at one size in the kernel; returns our first apply's time. `compare`: also the
/// raw `nft -f` floors and the re-apply (the upstream layout's re-apply is slower still than
/// its first apply: it is measured at the small sizes only).
fn kernel(services: u32, layout: NftLayout, compare: bool) -> Duration {
    let l = layout.as_str();
    let mut t = tracker(services);
    let cfg = PlanConfig::default();
    // First full sync: ours end to end (plan + render + nft -f -) vs raw nft -f FILE.
    let ns = netns(&format!("{l}-ours"));
    let start = Instant::now();
    let mut plan = Plan::build(&t, &cfg);
    let mut renderer = NftRenderer::new(nft_cfg(layout));
    let first = renderer.render_full_at(&plan, Moment::EPOCH);
    let rendered = start.elapsed();
    let applied = apply(&ns, &first);
    let ours_first = start.elapsed();
    if !compare {
        println!(
            "kernel {l} {services} svc: first full sync ours {:.0} ms (plan+render {:.0}, nft -f - {:.0})",
            ms(ours_first),
            ms(rendered),
            ms(applied)
        );
    }
    if compare {
        compare_floors(
            &ns,
            &first,
            ours_first,
            (rendered, applied),
            &mut renderer,
            &plan,
            services,
            l,
        );
    }
    // Partial syncs in the kernel: one endpoint changed.
    let mut best = Duration::MAX;
    for round in 1..=5 {
        let start = Instant::now();
        let changed = change_one_endpoint(&mut t, services, round);
        let affected = plan.update(&t, &cfg, &changed);
        let text = renderer.render_partial(
            &plan,
            &affected,
            Moment::from_millis(60_000 + i64::from(round) * 2_000),
        );
        let _ = apply(&ns, &text);
        if let Some(del) = renderer.render_stale_deletes(Moment::from_millis(
            60_000 + i64::from(round) * 2_000 + 1_000,
        )) {
            let _ = apply(&ns, &del);
        }
        best = best.min(start.elapsed());
    }
    println!(
        "kernel {l} {services} svc: partial sync (1 endpoint changed) incl. nft -f - {:.1} ms (best of 5)",
        ms(best)
    );
    ours_first
}

/// Our first full sync and a re-apply over the kept table, each next to a raw `nft -f FILE`
/// of the same text in a second namespace.
#[allow(clippy::too_many_arguments)]
fn compare_floors(
    ns: &Netns,
    first: &str,
    ours_first: Duration,
    (rendered, applied): (Duration, Duration),
    renderer: &mut NftRenderer,
    plan: &Plan,
    services: u32,
    l: &str,
) {
    let raw_ns = netns(&format!("{l}-raw"));
    let raw_first = raw_nft(&raw_ns, first);
    // Re-apply: the next full sync keeps the table (flush and refill, no `delete table`).
    let start = Instant::now();
    let again = renderer.render_full_at(plan, Moment::from_millis(60_000));
    let _ = apply(ns, &again);
    let ours_again = start.elapsed();
    let raw_again = raw_nft(&raw_ns, &again);
    println!(
        "kernel {l} {services} svc: first full sync ours {:.0} ms (plan+render {:.0}, nft -f - {:.0}) vs raw nft -f {:.0} ms = {:.2}x; re-apply ours {:.0} ms vs raw {:.0} ms = {:.2}x",
        ms(ours_first),
        ms(rendered),
        ms(applied),
        ms(raw_first),
        ours_first.as_secs_f64() / raw_first.as_secs_f64(),
        ms(ours_again),
        ms(raw_again),
        ours_again.as_secs_f64() / raw_again.as_secs_f64()
    );
}

fn kernels(max: u32) {
    for layout in [NftLayout::SharedMap, NftLayout::Upstream] {
        let mut last: Option<(u32, Duration)> = None;
        for n in KERNEL_SIZES.into_iter().filter(|n| *n <= max) {
            if let Some((m, d)) = last {
                let predicted = d.mul_f64((f64::from(n) / f64::from(m)).powi(2));
                if layout == NftLayout::Upstream && predicted > KERNEL_CAP {
                    println!(
                        "kernel {} {n} svc: skipped, predicted {:.0} s from {m} svc (O(N^2)) > cap {} s",
                        layout.as_str(),
                        predicted.as_secs_f64(),
                        KERNEL_CAP.as_secs()
                    );
                    break;
                }
            }
            let compare = layout == NftLayout::SharedMap || n <= 2_000;
            last = Some((n, kernel(n, layout, compare)));
        }
    }
}

fn main() {
    partials();
    full_render(1_000);
    full_render(10_000);
    let max: u32 = std::env::var("ZL_BENCH_KERNEL_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if max == 0 || !root {
        println!("(kernel runs skipped: they need root and ZL_BENCH_KERNEL_MAX=N, e.g. 10000)");
        return;
    }
    kernels(max);
}
