//! Health-check cycle benchmark: 1,000 targets in 3 zones (LBC defaults, 10 s interval), one
//! whole cycle of checks handed out and answered, plus the nftables table rendered — first a
//! quiet cycle (nothing changes), then the cycle in which a whole zone turns unhealthy.
//! Prints wall time per cycle. Run: `cargo bench -p lb --bench cycle`.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use lb::balancer::ProbeReport;
use lb::{Balancer, BalancerConfig, Time};

const TARGETS: usize = 1_000;

fn config() -> BalancerConfig {
    let mut text = String::from(
        "name: bench\nnodes:\n  - {zone: a, address: 172.20.251.1}\n  - {zone: b, address: 172.20.251.2}\n  - {zone: c, address: 172.20.251.3}\nlisteners:\n  - {port: 80, targetGroup: web}\ntargetGroups:\n  - name: web\n    targets:\n",
    );
    for i in 0..TARGETS {
        let z = i % 3;
        let _ = writeln!(
            text,
            "      - {{ip: 172.20.{z}.{}, port: {}, zone: {}}}",
            10 + (i / 3) % 240,
            30000 + i / 720,
            ["a", "b", "c"][z]
        );
    }
    BalancerConfig::parse(&text).expect("valid")
}

/// One cycle at `now`: every due check answered; zone `dead` answers with a refusal.
fn cycle(b: &mut Balancer, now: Time, dead: Option<&str>) -> (usize, String) {
    b.handle_timeout(now);
    let mut n = 0;
    while let Some(p) = b.poll_probe() {
        n += 1;
        let zone = ["a", "b", "c"][usize::from(p.target.ip.octets()[2])];
        let r = if dead == Some(zone) {
            ProbeReport::Failed("connection refused".into())
        } else {
            ProbeReport::Connected
        };
        b.handle_probe_result(p.id, r, now);
    }
    while b.poll_event().is_some() {}
    (n, lb::nft::render("bench", &b.routes()))
}

fn main() {
    let mut b = Balancer::new(config(), Time::ZERO).expect("valid");
    let interval = Duration::from_secs(10);
    let mut now = Time::ZERO;
    for _ in 0..3 {
        cycle(&mut b, now, None);
        now = now + interval;
    }
    let runs = 20;
    let start = Instant::now();
    let mut checks = 0;
    for _ in 0..runs {
        checks += cycle(&mut b, now, None).0;
        now = now + interval;
    }
    let quiet = start.elapsed() / runs;
    let mut worst = Duration::ZERO;
    for _ in 0..3 {
        let start = Instant::now();
        let (_, table) = cycle(&mut b, now, Some("a"));
        worst = worst.max(start.elapsed());
        now = now + interval;
        assert!(!table.is_empty());
    }
    let unhealthy = b
        .targets()
        .iter()
        .filter(|t| t.health.state == lb::TargetState::Unhealthy)
        .count();
    println!(
        "lb cycle, {TARGETS} targets: quiet cycle {:.2} ms ({} checks/cycle); zone a failing, slowest cycle {:.2} ms ({unhealthy} unhealthy after 3)",
        quiet.as_secs_f64() * 1e3,
        checks / runs as usize,
        worst.as_secs_f64() * 1e3
    );
}
