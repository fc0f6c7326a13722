//! The recovery phases, from the timeline: when the failed nodes went not ready, when their
//! endpoints left the EndpointSlices, when every surviving proxy dropped them, when their pods
//! were evicted, when the Services were whole again, in the API and in every proxy.

use std::collections::{BTreeMap, BTreeSet};

use super::{Meta, PrimaryFault};
use crate::observe::{Programmed, ProxySets};
use crate::report::Phases;
use crate::timeline::{Event, EventKind};

/// Ready endpoints of the target Services as the API lists them: service -> node -> IPs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndpointTrack {
    pub by_service: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

impl EndpointTrack {
    /// Applies an `endpoints` record (a full list, or what was added and removed); returns
    /// its Service, `None` for other records.
    pub fn apply<'e>(&mut self, kind: &'e EventKind) -> Option<&'e str> {
        let EventKind::Endpoints {
            service,
            ready,
            added,
            removed,
        } = kind
        else {
            return None;
        };
        let by_node = self.by_service.entry(service.clone()).or_default();
        if let Some(ready) = ready {
            by_node.clone_from(ready);
        }
        for (node, ips) in removed {
            if let Some(have) = by_node.get_mut(node) {
                have.retain(|ip| !ips.contains(ip));
                if have.is_empty() {
                    by_node.remove(node);
                }
            }
        }
        for (node, ips) in added {
            let have = by_node.entry(node.clone()).or_default();
            for ip in ips {
                if let Err(i) = have.binary_search(ip) {
                    have.insert(i, ip.clone());
                }
            }
        }
        Some(service)
    }

    /// Ready endpoints of `service`.
    pub fn count(&self, service: &str) -> usize {
        self.by_service
            .get(service)
            .map_or(0, |m| m.values().map(Vec::len).sum())
    }

    /// Ready endpoints on any of `nodes`.
    pub fn on_nodes(&self, nodes: &BTreeSet<String>) -> usize {
        self.by_service
            .values()
            .flat_map(|m| m.iter())
            .filter(|(n, _)| nodes.contains(*n))
            .map(|(_, ips)| ips.len())
            .sum()
    }

    /// Ready endpoints per zone, over every target Service.
    pub fn per_zone(&self, node_zones: &BTreeMap<String, String>) -> BTreeMap<String, u32> {
        let mut out: BTreeMap<String, u32> = node_zones.values().map(|z| (z.clone(), 0)).collect();
        for (node, ips) in self.by_service.values().flat_map(|m| m.iter()) {
            let zone = node_zones.get(node).cloned().unwrap_or_else(|| "?".into());
            *out.entry(zone).or_default() += ips.len() as u32;
        }
        out
    }
}

/// What each proxy last programmed: node -> its programmed set (service -> endpoint IPs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProxyTrack<'a> {
    pub by_node: BTreeMap<&'a str, (Option<u64>, &'a Programmed)>,
}

/// Phase times in absolute milliseconds, plus what the analysis of traffic needs.
#[derive(Debug, Clone, Default)]
pub struct Computed {
    pub fault_ms: Option<f64>,
    pub nodes_not_ready_ms: Option<f64>,
    pub endpoints_removed_ms: Option<f64>,
    pub proxies_converged_ms: Option<f64>,
    pub pods_evicted_ms: Option<f64>,
    pub replacements_ready_ms: Option<f64>,
    pub capacity_restored_ms: Option<f64>,
    pub dead_share: f64,
    pub ready_series: BTreeMap<String, Vec<(f64, u32)>>,
}

impl Computed {
    /// The phases relative to t = 0.
    pub fn relative(&self, rel: impl Fn(f64) -> f64) -> Phases {
        Phases {
            fault_s: self.fault_ms.map(&rel),
            nodes_not_ready_s: self.nodes_not_ready_ms.map(&rel),
            // The load balancer's phase is `load_balancer`'s.
            lb_targets_unhealthy_s: None,
            endpoints_removed_s: self.endpoints_removed_ms.map(&rel),
            proxies_converged_s: self.proxies_converged_ms.map(&rel),
            pods_evicted_s: self.pods_evicted_ms.map(&rel),
            replacements_ready_s: self.replacements_ready_ms.map(&rel),
            capacity_restored_s: self.capacity_restored_ms.map(&rel),
            ..Phases::default()
        }
    }
}

/// One pass over the sorted timeline.
pub fn compute(meta: &Meta, events: &[Event], fault: Option<&PrimaryFault>) -> Computed {
    let mut out = Computed {
        ready_series: ready_series(meta, events),
        ..Computed::default()
    };
    let Some(fault) = fault else {
        return out;
    };
    out.fault_ms = Some(fault.at_ms);
    let before: Vec<&Event> = events.iter().filter(|e| e.at < fault.at_ms).collect();
    let after: Vec<&Event> = events.iter().filter(|e| e.at >= fault.at_ms).collect();
    let sets = ProxySets::new(events);
    let mut eps = EndpointTrack::default();
    let mut proxies = ProxyTrack::default();
    for e in &before {
        apply(&sets, &mut eps, &mut proxies, e);
    }
    let pre_total: BTreeMap<String, usize> = meta
        .services
        .iter()
        .map(|s| (s.clone(), eps.count(s)))
        .collect();
    let total: usize = pre_total.values().sum();
    let dead_ips: BTreeSet<String> = eps
        .by_service
        .values()
        .flat_map(|m| m.iter())
        .filter(|(n, _)| fault.nodes.contains(*n))
        .flat_map(|(_, ips)| ips.iter().cloned())
        .collect();
    if total > 0 {
        out.dead_share = eps.on_nodes(&fault.nodes) as f64 / total as f64;
    }
    // The proxies that ran when the fault hit: a node that joins later (a node group's new
    // instance) first syncs when it joins and has no stale endpoint to drop.
    // Nodes a node group added during the run never held the dead endpoints: their proxies
    // starting later must not hold back convergence.
    let added: BTreeSet<&str> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::CloudInstance { node, .. } => Some(node.as_str()),
            _ => None,
        })
        .collect();
    let survivors: BTreeSet<&str> = before
        .iter()
        .filter_map(|e| sets.sync(&e.kind))
        .map(|(node, _, _)| node)
        .filter(|node| !fault.nodes.contains(*node) && !added.contains(node))
        .collect();
    out.nodes_not_ready_ms = not_ready(&after, &fault.nodes);
    out.pods_evicted_ms = evicted(&before, &after, &fault.nodes);
    let mut conv = Convergence::new(&survivors, &dead_ips, &pre_total, &proxies);
    if eps.on_nodes(&fault.nodes) == 0 {
        out.endpoints_removed_ms = Some(fault.at_ms);
    }
    conv.check(&eps, fault.at_ms, &mut out);
    for e in &after {
        if let Some((node, id, programmed)) = apply(&sets, &mut eps, &mut proxies, e) {
            conv.synced(node, id, programmed);
        }
        if out.endpoints_removed_ms.is_none()
            && matches!(e.kind, EventKind::Endpoints { .. })
            && eps.on_nodes(&fault.nodes) == 0
        {
            out.endpoints_removed_ms = Some(e.at);
        }
        conv.check(&eps, e.at, &mut out);
    }
    out
}

/// What the phases need of one programmed set: whether it holds a dead endpoint, and whether
/// it programs as many live endpoints of every target Service as its proxy did before the
/// fault.
#[derive(Debug, Clone, Copy, PartialEq)]
struct SetSummary {
    dead: bool,
    whole: bool,
}

/// Tracks the proxy-side phases while the timeline is replayed: each surviving proxy's
/// current set summary and how many survivors still program a dead endpoint (or have not
/// synced) and fall short of the pre-fault endpoints, so each event costs O(1) here.
///
/// "Short" is measured against what each proxy itself programmed before the fault, not the
/// Service's endpoint count in the API: with topology hints (`trafficDistribution:
/// PreferClose`) a proxy programs only its own zone's endpoints, and would otherwise never
/// count as restored.
struct Convergence<'a> {
    dead_ips: &'a BTreeSet<String>,
    pre_total: &'a BTreeMap<String, usize>,
    /// Surviving node -> its pre-fault set id (the cache key of its wants, when it has one)
    /// and how many endpoints of each target Service it must program again to be whole.
    want_of: BTreeMap<&'a str, (Option<u64>, BTreeMap<String, usize>)>,
    /// Summaries of the sets seen, by (set id, the proxy's pre-fault set id).
    summaries: BTreeMap<(u64, u64), SetSummary>,
    /// Surviving node -> its current summary.
    survivors: BTreeMap<&'a str, SetSummary>,
    programs_dead: usize,
    short: usize,
}

impl<'a> Convergence<'a> {
    fn new(
        survivors: &BTreeSet<&'a str>,
        dead_ips: &'a BTreeSet<String>,
        pre_total: &'a BTreeMap<String, usize>,
        proxies: &ProxyTrack<'a>,
    ) -> Self {
        let mut c = Convergence {
            dead_ips,
            pre_total,
            want_of: BTreeMap::new(),
            summaries: BTreeMap::new(),
            survivors: BTreeMap::new(),
            programs_dead: 0,
            short: 0,
        };
        for &node in survivors {
            let pre = proxies.by_node.get(node);
            let want = pre.map_or_else(|| pre_total.clone(), |(_, p)| wants_of(pre_total, p));
            c.want_of.insert(node, (pre.and_then(|(id, _)| *id), want));
            let s = match pre {
                Some(&(id, programmed)) => c.summary(node, id, programmed),
                None => c.unsynced(),
            };
            c.programs_dead += usize::from(s.dead);
            c.short += usize::from(!s.whole);
            c.survivors.insert(node, s);
        }
        c
    }

    /// Whether every target Service had as many endpoints as before the fault, by `count`.
    fn whole(&self, count: &dyn Fn(&str) -> usize) -> bool {
        self.pre_total
            .iter()
            .all(|(svc, &want)| want > 0 && count(svc) >= want)
    }

    /// A proxy that has not synced: it counts as holding dead endpoints and none live.
    fn unsynced(&self) -> SetSummary {
        SetSummary {
            dead: true,
            whole: self.whole(&|_| 0),
        }
    }

    /// The summary of set `id` (`programmed`) for surviving proxy `node`.
    fn summary(&mut self, node: &str, id: Option<u64>, programmed: &Programmed) -> SetSummary {
        let (pre, wants) = &self.want_of[node];
        let key = id.zip(*pre);
        if let Some(s) = key.and_then(|k| self.summaries.get(&k)) {
            return *s;
        }
        let dead_ips = self.dead_ips;
        let s = SetSummary {
            dead: programmed
                .values()
                .flatten()
                .any(|ip| dead_ips.contains(ip)),
            whole: wants.iter().all(|(svc, &want)| {
                let live = programmed.get(svc).map_or(0, |ips| {
                    ips.iter().filter(|ip| !dead_ips.contains(*ip)).count()
                });
                want > 0 && live >= want
            }),
        };
        if let Some(k) = key {
            self.summaries.insert(k, s);
        }
        s
    }

    /// Node `node`'s proxy now programs `programmed` (set `id`).
    fn synced(&mut self, node: &str, id: Option<u64>, programmed: &Programmed) {
        if !self.want_of.contains_key(node) {
            return;
        }
        let new = self.summary(node, id, programmed);
        let Some(old) = self.survivors.get_mut(node) else {
            return;
        };
        self.programs_dead = self.programs_dead + usize::from(new.dead) - usize::from(old.dead);
        self.short = self.short + usize::from(!new.whole) - usize::from(!old.whole);
        *old = new;
    }

    fn check(&mut self, eps: &EndpointTrack, at: f64, out: &mut Computed) {
        // Converged: at one moment, every surviving proxy has synced and none programs a dead
        // endpoint (a proxy can pick one up again, e.g. a pod that became ready late).
        if out.proxies_converged_ms.is_none()
            && out.endpoints_removed_ms.is_some()
            && self.programs_dead == 0
        {
            out.proxies_converged_ms = Some(at);
        }
        if out.replacements_ready_ms.is_none()
            && out.endpoints_removed_ms.is_some()
            && self.whole(&|svc| eps.count(svc))
        {
            out.replacements_ready_ms = Some(at);
        }
        // Restored: the Services are whole in the API and every surviving proxy programs as
        // many live endpoints (dead ones do not count) as before the fault.
        if out.capacity_restored_ms.is_none()
            && out.replacements_ready_ms.is_some()
            && out.proxies_converged_ms.is_some()
            && self.short == 0
        {
            out.capacity_restored_ms = Some(at);
        }
    }
}

/// What a proxy that programmed `programmed` before the fault must program again to be
/// whole: per target Service its pre-fault count (never more than the API had), or the API's
/// count where it programmed none.
fn wants_of(
    pre_total: &BTreeMap<String, usize>,
    programmed: &Programmed,
) -> BTreeMap<String, usize> {
    pre_total
        .iter()
        .map(|(svc, &total)| {
            let had = programmed.get(svc).map_or(0, Vec::len).min(total);
            (svc.clone(), if had == 0 { total } else { had })
        })
        .collect()
}

/// Applies an `endpoints` or `proxy-sync` record; for a sync, returns its node and set.
fn apply<'a>(
    sets: &ProxySets<'a>,
    eps: &mut EndpointTrack,
    proxies: &mut ProxyTrack<'a>,
    e: &'a Event,
) -> Option<(&'a str, Option<u64>, &'a Programmed)> {
    if eps.apply(&e.kind).is_some() {
        return None;
    }
    let (node, id, programmed) = sets.sync(&e.kind)?;
    proxies.by_node.insert(node, (id, programmed));
    Some((node, id, programmed))
}

/// When the last of `nodes` was first reported not Ready after the fault.
fn not_ready(after: &[&Event], nodes: &BTreeSet<String>) -> Option<f64> {
    let mut seen: BTreeMap<&str, f64> = BTreeMap::new();
    for e in after {
        if let EventKind::NodeReady { node, ready } = &e.kind
            && nodes.contains(node)
            && ready != "True"
        {
            seen.entry(node.as_str()).or_insert(e.at);
        }
    }
    (seen.len() == nodes.len() && !nodes.is_empty())
        .then(|| seen.values().copied().fold(f64::MIN, f64::max))
}

/// When the last pod that lived on `nodes` at the fault was marked for deletion or deleted;
/// DaemonSet pods, which are never evicted from an unreachable node, do not count.
fn evicted(before: &[&Event], after: &[&Event], nodes: &BTreeSet<String>) -> Option<f64> {
    let mut victims: BTreeSet<&str> = BTreeSet::new();
    for e in before {
        match &e.kind {
            EventKind::PodBound {
                pod,
                node,
                daemon: false,
            } if nodes.contains(node) => {
                victims.insert(pod);
            }
            EventKind::PodDeleting { pod, .. } | EventKind::PodDeleted { pod, .. } => {
                victims.remove(pod.as_str());
            }
            _ => {}
        }
    }
    if victims.is_empty() {
        return None;
    }
    let mut marked: BTreeMap<&str, f64> = BTreeMap::new();
    for e in after {
        if let EventKind::PodDeleting { pod, .. } | EventKind::PodDeleted { pod, .. } = &e.kind
            && victims.contains(pod.as_str())
        {
            marked.entry(pod.as_str()).or_insert(e.at);
        }
    }
    (marked.len() == victims.len()).then(|| marked.values().copied().fold(f64::MIN, f64::max))
}

/// Ready endpoints per zone as a step function (t in seconds, clamped at 0).
fn ready_series(meta: &Meta, events: &[Event]) -> BTreeMap<String, Vec<(f64, u32)>> {
    let mut eps = EndpointTrack::default();
    let mut out: BTreeMap<String, Vec<(f64, u32)>> = BTreeMap::new();
    for e in events {
        let EventKind::Endpoints { service, .. } = &e.kind else {
            continue;
        };
        if !meta.services.contains(service) {
            continue;
        }
        eps.apply(&e.kind);
        let t = super::round3(((e.at - meta.t0_ms) / 1e3).max(0.0));
        for (zone, count) in eps.per_zone(&meta.node_zones) {
            let points = out.entry(zone).or_default();
            match points.last_mut() {
                Some(last) if last.1 == count => {}
                Some(last) if last.0 == t => last.1 = count,
                _ => points.push((t, count)),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(at: f64, pod: &str, node: &str, daemon: bool) -> Event {
        Event {
            at,
            kind: EventKind::PodBound {
                pod: pod.into(),
                node: node.into(),
                daemon,
            },
        }
    }

    fn deleting(at: f64, pod: &str, node: &str) -> Event {
        Event {
            at,
            kind: EventKind::PodDeleting {
                pod: pod.into(),
                node: node.into(),
            },
        }
    }

    #[test]
    fn daemon_pods_on_the_failed_nodes_do_not_hold_back_the_eviction_phase() {
        let before = [
            bound(1.0, "default/web-1", "a-1", false),
            bound(1.0, "default/db-2", "a-1", false),
            bound(1.0, "default/node-exporter-x", "a-1", true),
            bound(1.0, "default/web-2", "b-1", false),
        ];
        let after = [
            deleting(40.0, "default/web-1", "a-1"),
            deleting(41.0, "default/db-2", "a-1"),
        ];
        let nodes = BTreeSet::from(["a-1".to_string()]);
        let b: Vec<&Event> = before.iter().collect();
        assert_eq!(
            evicted(&b, &after.iter().collect::<Vec<_>>(), &nodes),
            Some(41.0)
        );
        // Without the db-2 mark the phase is not reached: an ordinary pod still counts.
        assert_eq!(evicted(&b, &[&after[0]], &nodes), None);
    }

    #[test]
    fn a_daemon_flag_survives_the_json_line_and_old_lines_read_as_false() {
        let e = bound(1.0, "default/ne", "a-1", true);
        let line = serde_json::to_string(&e).unwrap();
        assert!(line.contains("\"daemon\":true"), "{line}");
        assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), e);
        let old = r#"{"at":1.0,"event":"pod-bound","pod":"default/w","node":"a-1"}"#;
        assert_eq!(
            serde_json::from_str::<Event>(old).unwrap(),
            bound(1.0, "default/w", "a-1", false)
        );
    }
}
