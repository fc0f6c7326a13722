//! ClusterIP allocator benchmark: ns per `allocate_next` on a /12 at 0%, 50% and 99% full.
//!
//! Run with `cargo bench -p apiserver --bench alloc`. Prints figures; asserts nothing.

use std::hint::black_box;
use std::net::IpAddr;
use std::time::Instant;

use apiserver::alloc::{IpAllocator, IpRange, PortAllocator, PortRange};
use rand::{SeedableRng, rngs::StdRng};

const BATCH: u32 = 1_000;
const ROUNDS: u32 = 50;

/// Fills `a` to `fraction` with dynamic picks, then times batches of `allocate_next` (each batch
/// released again so the fill level stays put). Returns ns per call.
fn ns_per_allocate_at(fraction: f64, rng: &mut StdRng) -> f64 {
    let range = IpRange::parse("10.96.0.0/12").expect("cidr");
    let mut a = IpAllocator::new(range);
    let target = (f64::from(range.usable()) * fraction) as u32;
    while a.used_count() < target {
        a.allocate_next(rng).expect("fill");
    }
    let batch = BATCH.min(a.free_count());
    let mut taken = Vec::with_capacity(batch as usize);
    let mut total_ns = 0u128;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for _ in 0..batch {
            taken.push(black_box(a.allocate_next(rng).expect("free")));
        }
        total_ns += start.elapsed().as_nanos();
        for ip in taken.drain(..) {
            a.release(IpAddr::V4(ip));
        }
    }
    total_ns as f64 / f64::from(batch * ROUNDS)
}

fn fill_whole_range(rng: &mut StdRng) -> (u32, f64) {
    let range = IpRange::parse("10.96.0.0/12").expect("cidr");
    let mut a = IpAllocator::new(range);
    let start = Instant::now();
    while a.allocate_next(rng).is_ok() {}
    let ns = start.elapsed().as_nanos() as f64;
    (a.used_count(), ns / f64::from(a.used_count()))
}

fn node_ports_fill(rng: &mut StdRng) -> f64 {
    let mut p = PortAllocator::new(PortRange::parse("30000-32767").expect("range"));
    let start = Instant::now();
    while p.allocate_next(rng).is_ok() {}
    start.elapsed().as_nanos() as f64 / f64::from(p.used_count())
}

fn main() {
    let mut rng = StdRng::seed_from_u64(2026);
    println!("ClusterIP allocate_next on 10.96.0.0/12 (1,048,574 usable addresses):");
    for fraction in [0.0, 0.5, 0.99] {
        let ns = ns_per_allocate_at(fraction, &mut rng);
        println!(
            "  {:>3.0}% full: {ns:>10.1} ns/allocate_next",
            fraction * 100.0
        );
    }
    let (n, ns) = fill_whole_range(&mut rng);
    println!("  fill whole /12 ({n} allocations): {ns:.1} ns/allocate_next on average");
    println!(
        "NodePort allocate_next, fill 30000-32767: {:.1} ns/call",
        node_ports_fill(&mut rng)
    );
}
