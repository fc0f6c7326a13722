//! Failed requests sent while the client's own kube-proxy programmed no endpoint for the target
//! Services: kube-proxy then rejects (nft `reject`, ICMP port unreachable), and the kernel
//! rate-limits that ICMP per destination (`net.ipv4.icmp_ratelimit` 1000 ms, a burst of 6), so a
//! client faster than 1 request/s sees "refused" for the first 6 and then mostly timeouts, as
//! on a real node (docs/results.md). Such timeouts are caused by "no endpoints", not by a dead
//! pod. Start at [`count`].

use std::collections::BTreeMap;

use super::Meta;
use crate::observe::{Programmed, ProxySets};
use crate::timeline::{Event, Request};

/// Per node, its proxy syncs in time order: (when, whether every target Service had no
/// programmed endpoint; a Service missing from the sync counts as having none).
fn empty_by_node<'a>(meta: &Meta, events: &'a [Event]) -> BTreeMap<&'a str, Vec<(f64, bool)>> {
    let sets = ProxySets::new(events);
    let mut by_set: BTreeMap<u64, bool> = BTreeMap::new();
    let mut out: BTreeMap<&str, Vec<(f64, bool)>> = BTreeMap::new();
    for e in events {
        let Some((node, id, services)) = sets.sync(&e.kind) else {
            continue;
        };
        let empty = |services: &Programmed| {
            !meta.services.is_empty()
                && meta
                    .services
                    .iter()
                    .all(|s| services.get(s).is_none_or(Vec::is_empty))
        };
        let empty = match id {
            Some(id) => *by_set.entry(id).or_insert_with(|| empty(services)),
            None => empty(services),
        };
        out.entry(node).or_default().push((e.at, empty));
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
            by_node.get(r.client_node.as_str()).is_some_and(|syncs| {
                let i = syncs.partition_point(|(at, _)| *at <= r.start);
                i > 0 && syncs[i - 1].1
            })
        })
        .count() as u64
}
