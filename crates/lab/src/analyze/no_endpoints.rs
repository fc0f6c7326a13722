//! Failed requests sent while the client's own kube-proxy programmed no endpoint for the target
//! Services: kube-proxy then rejects (nft `reject`, ICMP port unreachable), and the kernel
//! rate-limits that ICMP per destination (`net.ipv4.icmp_ratelimit` 1000 ms, a burst of 6), so a
//! client faster than 1 request/s sees "refused" for the first 6 and then mostly timeouts, as
//! on a real node (docs/results.md). Such timeouts are caused by "no endpoints", not by a dead
//! pod. Start at [`count`].

use std::collections::BTreeMap;

use super::Meta;
use crate::timeline::{Event, EventKind, Request};

/// Per node, its proxy syncs in time order: (when, whether every target Service had no
/// programmed endpoint; a Service missing from the sync counts as having none).
fn empty_by_node(meta: &Meta, events: &[Event]) -> BTreeMap<String, Vec<(f64, bool)>> {
    let mut out: BTreeMap<String, Vec<(f64, bool)>> = BTreeMap::new();
    for e in events {
        if let EventKind::ProxySync { node, services } = &e.kind {
            let empty = !meta.services.is_empty()
                && meta
                    .services
                    .iter()
                    .all(|s| services.get(s).is_none_or(Vec::is_empty));
            out.entry(node.clone()).or_default().push((e.at, empty));
        }
    }
    for syncs in out.values_mut() {
        syncs.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

/// Failed requests that started while their client node's latest proxy sync programmed no
/// endpoint for any target Service.
pub fn count(meta: &Meta, events: &[Event], requests: &[&Request]) -> u64 {
    let by_node = empty_by_node(meta, events);
    requests
        .iter()
        .filter(|r| !r.ok())
        .filter(|r| {
            by_node.get(&r.client_node).is_some_and(|syncs| {
                let i = syncs.partition_point(|(at, _)| *at <= r.start);
                i > 0 && syncs[i - 1].1
            })
        })
        .count() as u64
}
