//! Zone hints on the slices one reconcile writes: `service.kubernetes.io/topology-mode: Auto`
//! through the [`TopologyCache`] (upstream `topologycache.AddHints`, `RemoveHintsFromSlices`),
//! `spec.trafficDistribution: PreferClose` (upstream `trafficdist.ReconcileHints`: each ready
//! endpoint hinted for its own zone), and hints removed otherwise. Start at
//! [`reconcile_hints`], called by the controller after slice placement.
//!
//! Slices the placement left unchanged are borrowed from the cache and copied only when their
//! hints must change (they then become updates), as upstream deep-copies them.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointHints, EndpointSlice, ForZone};

use super::reconcile::Plan;
use super::topology::{
    Allocation, HintEvent, TopologyCache, ZoneCounts, hints_enabled, msg, with_address_type,
};
use crate::cache::Key;

/// The `trafficDistribution` value this controller hints for (1.31+). `PreferSameZone` and
/// `PreferSameNode` need the `PreferSameTrafficDistribution` gate, alpha and off in 1.33.
pub const PREFER_CLOSE: &str = "PreferClose";

fn ready(ep: &Endpoint) -> bool {
    ep.conditions.as_ref().and_then(|c| c.ready) == Some(true)
}

fn zone_of(ep: &Endpoint) -> Option<&str> {
    ep.zone.as_deref().filter(|z| !z.is_empty())
}

fn hint(zone: &str) -> Option<EndpointHints> {
    Some(EndpointHints {
        for_zones: Some(vec![ForZone {
            name: zone.to_string(),
        }]),
        for_nodes: None,
    })
}

/// The zones an endpoint is hinted for.
fn hinted_zones(ep: &Endpoint) -> &[ForZone] {
    ep.hints
        .as_ref()
        .and_then(|h| h.for_zones.as_deref())
        .unwrap_or(&[])
}

/// A reconcile's slices by fate: the plan's creates and updates (mutable), and the existing
/// slices it leaves unchanged (upstream `SliceInfo`).
struct Slices<'p, 'e> {
    plan: &'p mut Plan,
    unchanged: Vec<&'e EndpointSlice>,
}

impl Slices<'_, '_> {
    /// Creates, then updates (upstream's `allocatableSlices` order).
    fn writable(&mut self) -> impl Iterator<Item = &mut EndpointSlice> {
        self.plan
            .creates
            .iter_mut()
            .chain(self.plan.updates.iter_mut())
    }

    /// Move the unchanged slices `pred` selects to the updates, copied.
    fn update_unchanged(&mut self, mut pred: impl FnMut(&EndpointSlice) -> bool) {
        let mut kept = Vec::with_capacity(self.unchanged.len());
        for s in std::mem::take(&mut self.unchanged) {
            if pred(s) {
                self.plan.updates.push(s.clone());
            } else {
                kept.push(s);
            }
        }
        self.unchanged = kept;
    }

    fn total_ready(&self) -> usize {
        let count = |s: &EndpointSlice| s.endpoints.iter().filter(|e| ready(e)).count();
        let written: usize = self
            .plan
            .creates
            .iter()
            .chain(&self.plan.updates)
            .map(count)
            .sum();
        written + self.unchanged.iter().map(|s| count(s)).sum::<usize>()
    }

    /// Upstream `RemoveHintsFromSlices`: no hints on written slices; unchanged slices with a
    /// hint become updates without.
    fn remove_hints(&mut self) {
        self.update_unchanged(|s| s.endpoints.iter().any(|e| e.hints.is_some()));
        for s in self.writable() {
            for e in &mut s.endpoints {
                e.hints = None;
            }
        }
    }

    /// Upstream `trafficdist.ReconcileHints` with the PreferClose heuristic: every ready
    /// endpoint hinted for exactly its own zone (none without a zone); other endpoints keep
    /// what they have.
    fn prefer_close(&mut self) {
        self.update_unchanged(|s| s.endpoints.iter().filter(|e| ready(e)).any(needs_own_zone));
        for s in self.writable() {
            for e in s.endpoints.iter_mut().filter(|e| ready(e)) {
                e.hints = zone_of(e).and_then(hint);
            }
        }
    }
}

/// A ready endpoint's hints are not exactly its own zone (or it has a stale node hint).
fn needs_own_zone(e: &Endpoint) -> bool {
    let zones = hinted_zones(e);
    let zone_ok = match e.zone.as_deref() {
        Some(z) => zones.len() == 1 && zones[0].name == z,
        None => zones.is_empty(),
    };
    let stale_node = e
        .hints
        .as_ref()
        .and_then(|h| h.for_nodes.as_ref())
        .is_some_and(|n| !n.is_empty());
    !zone_ok || stale_node
}

/// Hints for one reconcile of `svc` (key `key`): updates `plan` (its creates and updates, and
/// existing slices that must change only for their hints) and returns the Events to record
/// on the Service. Upstream's reconciler: the topology annotation wins over
/// `trafficDistribution`; without either, hints are removed.
pub(crate) fn reconcile_hints(
    cache: &mut TopologyCache,
    svc: &Service,
    key: &Key,
    plan: &mut Plan,
    existing: &[&Arc<EndpointSlice>],
    partial: bool,
) -> Vec<HintEvent> {
    let auto = hints_enabled(svc.metadata.annotations.as_ref());
    let prefer_close = !auto
        && svc
            .spec
            .as_ref()
            .and_then(|s| s.traffic_distribution.as_deref())
            == Some(PREFER_CLOSE);
    let mut sorted: Vec<&EndpointSlice> = existing.iter().map(|s| s.as_ref()).collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let changed = |s: &&EndpointSlice| {
        let name = s.metadata.name.as_deref();
        plan.updates
            .iter()
            .any(|u| u.metadata.name.as_deref() == name)
            || plan.deletes.iter().any(|d| Some(d.as_str()) == name)
    };
    let mut unchanged: Vec<&EndpointSlice> = sorted.into_iter().filter(|s| !changed(s)).collect();
    if partial && !auto {
        // A partial sync of a clean Service: the last sync left every slice without hints
        // (or, for PreferClose, with its own zone's), and nobody changed them since.
        unchanged.clear();
    }
    let mut slices = Slices { plan, unchanged };
    let mut events = Vec::new();
    if auto {
        events = add_hints(cache, key, &mut slices);
    } else {
        if cache.has_populated_hints(key) {
            tracing::info!(service = %key, "TopologyAwareHints annotation has changed, removing hints");
            events.push(HintEvent::disabled(with_address_type(msg::DISABLED)));
        }
        cache.remove_hints(key);
        if !prefer_close {
            slices.remove_hints();
        }
    }
    if prefer_close {
        slices.prefer_close();
    }
    events
}

/// Give up on hints for `key`: Event, cache and slices (upstream's early returns of
/// `AddHints`).
fn disable(
    cache: &mut TopologyCache,
    key: &Key,
    slices: &mut Slices,
    event: HintEvent,
) -> Vec<HintEvent> {
    tracing::info!(service = %key, "{}, removing hints", event.message);
    cache.remove_hints(key);
    slices.remove_hints();
    vec![event]
}

/// Upstream `TopologyCache.AddHints`: allocate the ready endpoints to zones by CPU share.
fn add_hints(cache: &mut TopologyCache, key: &Key, slices: &mut Slices) -> Vec<HintEvent> {
    let total = slices.total_ready();
    let allocations = match cache.allocations(total) {
        Ok(a) => a,
        Err(mut e) => {
            e.message = with_address_type(&e.message);
            return disable(cache, key, slices, e);
        }
    };
    let mut by_zone = allocated_by_zone(slices, &allocations);
    // Step 1: every ready endpoint of a written slice hinted for its own zone.
    let mut missing_zone = false;
    for s in slices.writable() {
        for e in s.endpoints.iter_mut().filter(|e| ready(e)) {
            let Some(zone) = zone_of(e).map(str::to_string) else {
                missing_zone = true;
                break;
            };
            *by_zone.entry(zone.clone()).or_default() += 1;
            e.hints = hint(&zone);
        }
        if missing_zone {
            break;
        }
    }
    if missing_zone {
        let e = HintEvent::disabled(with_address_type(msg::NO_ZONE_SPECIFIED));
        return disable(cache, key, slices, e);
    }
    // Steps 2 and 3: move hints from zones above their share to zones below it.
    let (giving, receiving) = giving_and_receiving(&allocations, &by_zone);
    for (zone, diff) in redistribute(slices, giving, receiving) {
        let n = by_zone.entry(zone).or_default();
        *n = n.saturating_add_signed(diff);
    }
    if by_zone.is_empty() {
        let e = HintEvent::disabled(with_address_type(msg::NO_ALLOCATED_HINTS_FOR_ZONES));
        return disable(cache, key, slices, e);
    }
    let was_enabled = cache.has_populated_hints(key);
    cache.set_hints(key, by_zone);
    if was_enabled {
        return Vec::new();
    }
    tracing::info!(service = %key, "Topology Aware Hints has been enabled, adding hints.");
    vec![HintEvent {
        normal: true,
        reason: "TopologyAwareHintsEnabled",
        message: with_address_type(msg::ENABLED),
    }]
}

/// Upstream `getAllocatedHintsByZone`: hints of unchanged slices that still fit the
/// allocations are counted; a slice whose hints do not (an endpoint without one, a zone no
/// longer allocated, a zone past its maximum) becomes an update.
fn allocated_by_zone(
    slices: &mut Slices,
    allocations: &BTreeMap<String, Allocation>,
) -> ZoneCounts {
    let mut by_zone = ZoneCounts::new();
    slices.update_unchanged(|s| match hints_by_zone(s, &by_zone, allocations) {
        Some(counts) => {
            for (zone, n) in counts {
                *by_zone.entry(zone).or_default() += n;
            }
            false
        }
        None => true,
    });
    by_zone
}

/// Upstream `getHintsByZone`: the slice's hints per zone, `None` when they are not valid.
fn hints_by_zone(
    slice: &EndpointSlice,
    allocated: &ZoneCounts,
    allocations: &BTreeMap<String, Allocation>,
) -> Option<ZoneCounts> {
    let mut counts = ZoneCounts::new();
    for e in slice.endpoints.iter().filter(|e| ready(e)) {
        let zones = hinted_zones(e);
        if zones.is_empty() {
            return None;
        }
        for z in zones {
            if !allocations.contains_key(&z.name) {
                return None;
            }
            *counts.entry(z.name.clone()).or_default() += 1;
        }
    }
    for (zone, n) in &counts {
        let already = allocated.get(zone).copied().unwrap_or(0);
        if allocations
            .get(zone)
            .is_none_or(|a| n + already > a.maximum)
        {
            return None;
        }
    }
    Some(counts)
}

/// The zone with the largest positive value (first by name on ties), as upstream `getMost`.
fn most(zones: &BTreeMap<String, f64>) -> Option<(&str, f64)> {
    let mut best: Option<(&str, f64)> = None;
    for (z, n) in zones {
        if *n > best.map_or(0.0, |(_, b)| b) {
            best = Some((z, *n));
        }
    }
    best
}

/// Upstream `getGivingAndReceivingZones`: whole endpoints each zone gives or receives.
fn giving_and_receiving(
    allocations: &BTreeMap<String, Allocation>,
    by_zone: &ZoneCounts,
) -> (BTreeMap<String, usize>, BTreeMap<String, usize>) {
    let mut give_want: BTreeMap<String, f64> = BTreeMap::new();
    let mut take_want: BTreeMap<String, f64> = BTreeMap::new();
    for (zone, a) in allocations {
        let have = by_zone.get(zone).copied().unwrap_or(0) as f64;
        if have > a.desired {
            give_want.insert(zone.clone(), have - a.desired);
        } else if have < a.desired {
            take_want.insert(zone.clone(), a.desired - have);
        }
    }
    let (mut giving, mut receiving) = (BTreeMap::new(), BTreeMap::new());
    while let (Some((g, give)), Some((r, take))) = (most(&give_want), most(&take_want)) {
        if (give < 1.0 && take < 1.0) || give < 0.5 || take < 0.5 {
            break;
        }
        let (g, r) = (g.to_string(), r.to_string());
        *giving.entry(g.clone()).or_default() += 1;
        *receiving.entry(r.clone()).or_default() += 1;
        *give_want.entry(g).or_default() -= 1.0;
        *take_want.entry(r).or_default() -= 1.0;
    }
    (giving, receiving)
}

/// Upstream `redistributeHints`: endpoints of giving zones (by their own zone) are hinted
/// for receiving zones instead. Returns the change in hints per zone.
fn redistribute(
    slices: &mut Slices,
    mut giving: BTreeMap<String, usize>,
    mut receiving: BTreeMap<String, usize>,
) -> BTreeMap<String, isize> {
    let mut diffs: BTreeMap<String, isize> = BTreeMap::new();
    for s in slices.writable() {
        for e in s.endpoints.iter_mut().filter(|e| ready(e)) {
            if giving.is_empty() || receiving.is_empty() {
                return diffs;
            }
            let Some(from) = zone_of(e).map(str::to_string) else {
                continue;
            };
            if giving.get(&from).copied().unwrap_or(0) == 0 {
                continue;
            }
            let Some(to) = receiving
                .iter()
                .find(|(_, n)| **n > 0)
                .map(|(z, _)| z.clone())
            else {
                continue;
            };
            e.hints = hint(&to);
            for (map, zone) in [(&mut giving, &from), (&mut receiving, &to)] {
                match map.get_mut(zone) {
                    Some(n) if *n > 1 => *n -= 1,
                    _ => {
                        map.remove(zone);
                    }
                }
            }
            *diffs.entry(to).or_default() += 1;
            *diffs.entry(from).or_default() -= 1;
        }
    }
    diffs
}

#[cfg(test)]
#[path = "hints_flow_tests.rs"]
mod flow_tests;
#[cfg(test)]
#[path = "hints_tests.rs"]
mod tests;
