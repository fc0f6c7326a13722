//! Protobuf body decoding benchmark: ns per byte for kubectl's Deployment body and for
//! EndpointSlices of 10, 100, 1,000 and 10,000 endpoints (decoding must stay linear).
//!
//! Run with `cargo bench -p api --bench proto`. Prints figures; asserts nothing.

use std::hint::black_box;
use std::time::Instant;

use api::proto::{decode_object, wire, wrap};

/// An EndpointSlice with `n` ready endpoints, as Go would write it.
fn endpoint_slice(n: usize) -> Vec<u8> {
    let mut meta = Vec::new();
    wire::put_len_field(&mut meta, 1, b"web-abcde");
    wire::put_len_field(&mut meta, 3, b"default");
    let mut raw = Vec::new();
    wire::put_len_field(&mut raw, 1, &meta);
    for i in 0..n {
        let mut conditions = Vec::new();
        wire::put_varint_field(&mut conditions, 1, 1);
        let mut ep = Vec::new();
        let ip = format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255);
        wire::put_len_field(&mut ep, 1, ip.as_bytes());
        wire::put_len_field(&mut ep, 2, &conditions);
        wire::put_len_field(&mut ep, 6, format!("node-{}", i % 50).as_bytes());
        wire::put_len_field(&mut ep, 7, b"a");
        wire::put_len_field(&mut raw, 2, &ep);
    }
    let mut port = Vec::new();
    wire::put_len_field(&mut port, 1, b"http");
    wire::put_varint_field(&mut port, 3, 8080);
    wire::put_len_field(&mut raw, 3, &port);
    wire::put_len_field(&mut raw, 4, b"IPv4");
    wrap("discovery.k8s.io/v1", "EndpointSlice", &raw)
}

/// Decode `body` repeatedly for about `budget_bytes` of input; returns ns per input byte.
fn ns_per_byte(body: &[u8], budget_bytes: usize) -> f64 {
    let rounds = (budget_bytes / body.len()).max(3);
    let start = Instant::now();
    for _ in 0..rounds {
        black_box(decode_object(black_box(body), None).expect("decodes"));
    }
    start.elapsed().as_nanos() as f64 / (rounds * body.len()) as f64
}

fn main() {
    let deployment = include_bytes!("../tests/fixtures/protobuf/deployment.kubectl-1.33.pb");
    println!(
        "kubectl 1.33 Deployment body ({} bytes): {:.1} ns/byte",
        deployment.len(),
        ns_per_byte(deployment, 20_000_000)
    );
    for n in [10, 100, 1_000, 10_000] {
        let body = endpoint_slice(n);
        println!(
            "EndpointSlice, {n:>6} endpoints ({:>7} bytes): {:.1} ns/byte",
            body.len(),
            ns_per_byte(&body, 20_000_000)
        );
    }
}
