//! Turns a run's records into its [`Report`]: start at [`analyze`]. Pure: the same input gives
//! the same report, so a run can be re-analysed from its `timeline.jsonl` and `requests.jsonl`.

mod autoscaler;
mod control_plane;
mod load_balancer;
mod no_endpoints;
mod per_service;
mod phases;
mod traffic;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_events;

use std::collections::{BTreeMap, BTreeSet};

use crate::report::{
    ControlPlaneSetup, EventRecord, FaultRecord, MAX_REPORT_EVENTS, Report, SloReport, SloTarget,
    Timers,
};
use crate::timeline::{Event, EventKind, Request};

pub use control_plane::holder_zone;
pub use phases::{EndpointTrack, ProxyTrack};

/// Everything the analysis needs besides the records.
#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    pub scenario: String,
    pub mode: String,
    pub seed: u64,
    pub profile: String,
    pub proxy_mode: String,
    /// `duration`, `capacity-restored` or `cap`.
    pub ended_by: String,
    pub timers: Timers,
    pub slo: SloTarget,
    /// Lab node name -> zone.
    pub node_zones: BTreeMap<String, String>,
    /// Target Services as `namespace/name`.
    pub services: Vec<String>,
    /// Start (t = 0) and end of the run, ms since the epoch.
    pub t0_ms: f64,
    pub end_ms: f64,
    /// The control plane the run had (`None`: not recorded, no `control_plane` section).
    pub control_plane: Option<ControlPlaneSetup>,
}

impl Meta {
    /// The meta of an earlier report, to analyse its records again (`zonelab report`).
    pub fn of(r: &Report) -> Meta {
        Meta {
            scenario: r.scenario.clone(),
            mode: r.mode.clone(),
            seed: r.seed,
            profile: r.profile.clone(),
            proxy_mode: r.proxy_mode.clone(),
            ended_by: r.ended_by.clone(),
            timers: r.timers.clone(),
            slo: r.slo.target.clone(),
            node_zones: r.nodes.clone(),
            services: r.services.clone(),
            t0_ms: r.started_at_ms,
            end_ms: if r.ended_at_ms > 0.0 {
                r.ended_at_ms
            } else {
                r.started_at_ms + r.duration_s * 1e3
            },
            control_plane: r.control_plane.as_ref().map(|c| ControlPlaneSetup {
                store: c.store.clone(),
                members: c.members,
                member_zones: c.member_zones.clone(),
            }),
        }
    }
}

/// Fault types that bring nodes back rather than take them down.
pub const RECOVER: &str = "recover";

/// The first fault that takes nodes down, and when the next fault (a recovery too) came.
#[derive(Debug, Clone, PartialEq)]
pub struct PrimaryFault {
    pub at_ms: f64,
    pub kind: String,
    pub nodes: BTreeSet<String>,
    /// When the next fault of any kind (a recovery too) was injected.
    pub next_fault_ms: Option<f64>,
}

/// Finds the first node-taking fault in the timeline (sorted by time).
pub fn primary_fault(events: &[Event]) -> Option<PrimaryFault> {
    let mut faults = events.iter().filter_map(|e| match &e.kind {
        EventKind::Fault { fault, nodes, .. } => Some((e.at, fault, nodes)),
        _ => None,
    });
    let (at_ms, kind, nodes) = faults.by_ref().find(|(_, f, _)| *f != RECOVER)?;
    Some(PrimaryFault {
        at_ms,
        kind: kind.clone(),
        nodes: nodes.iter().cloned().collect(),
        next_fault_ms: faults.next().map(|(at, _, _)| at),
    })
}

/// The report of a run. `events` need not be sorted.
pub fn analyze(meta: &Meta, events: &[Event], requests: &[Request]) -> Report {
    let mut events = events.to_vec();
    events.sort_by(|a, b| a.at.total_cmp(&b.at));
    // Sorted references: the records themselves are never copied.
    let mut requests: Vec<&Request> = requests.iter().collect();
    requests.sort_by(|a, b| a.start.total_cmp(&b.start));
    let rel = |ms: f64| round3((ms - meta.t0_ms) / 1e3);
    let fault = primary_fault(&events);
    let ph = phases::compute(meta, &events, fault.as_ref());
    let mut phases = ph.relative(rel);
    let lb = load_balancer::compute(meta, &events, fault.as_ref());
    phases.lb_targets_unhealthy_s = lb.targets_unhealthy_ms.map(rel);
    let capacity = autoscaler::compute(&events, ph.fault_ms, rel);
    if let Some(c) = &capacity {
        phases.scale_up_requested_s = c.scale_up_requested_ms.map(rel);
        phases.nodes_provisioned_s = c.nodes_provisioned_ms.map(rel);
    }
    let mut tr = traffic::compute(meta, &requests, fault.as_ref(), ph.proxies_converged_ms);
    tr.requests.no_endpoints = no_endpoints::count(meta, &events, &requests);
    let availability = traffic::percent(tr.requests.ok, tr.requests.total);
    let error_window_s = tr.window.map_or(0.0, |w| round3(w.end_s - w.start_s));
    let slo = judge(&meta.slo, availability, error_window_s);
    let (kube, events_left_out) = kube_events(&events, rel);
    let control_plane =
        control_plane::compute(meta, meta.control_plane.as_ref(), &events, fault.as_ref());
    Report {
        scenario: meta.scenario.clone(),
        mode: meta.mode.clone(),
        seed: meta.seed,
        profile: meta.profile.clone(),
        proxy_mode: meta.proxy_mode.clone(),
        started_at_ms: meta.t0_ms,
        ended_at_ms: meta.end_ms,
        duration_s: rel(meta.end_ms),
        ended_by: meta.ended_by.clone(),
        timers: meta.timers.clone(),
        services: meta.services.clone(),
        nodes: meta.node_zones.clone(),
        faults: fault_records(&events, rel),
        requests: tr.requests,
        availability,
        error_window_s,
        error_window: tr.window,
        error_window_without_stale_conntrack_s: tr.window_without_stale_s,
        phases,
        dead_endpoint_share: round3(ph.dead_share),
        window_failure_share: round3(tr.window_failure_share),
        failed_after_converged: tr.failed_after_converged,
        failed_after_converged_stale_conntrack: tr.failed_after_converged_stale,
        per_zone: tr.per_zone,
        answered_by_zone: tr.answered_by_zone,
        slo,
        series: crate::report::Series {
            bucket_s: traffic::BUCKET_S,
            requests: tr.series,
            ready_endpoints: ph.ready_series,
        },
        events: kube,
        events_left_out,
        control_plane,
        load_balancer: lb.report,
        per_client_kind: load_balancer::per_client_kind(&requests, fault.as_ref()),
        per_service: per_service::per_service(&requests, fault.as_ref()),
        autoscaler: capacity.map(|c| c.report),
    }
}

/// One report entry per Event object (its latest observed version), in order of first sight,
/// capped at [`MAX_REPORT_EVENTS`]; returns the entries and how many were left out.
pub fn kube_events(events: &[Event], rel: impl Fn(f64) -> f64) -> (Vec<EventRecord>, u64) {
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    let mut out: Vec<EventRecord> = Vec::new();
    let mut left_out = 0u64;
    for e in events {
        let EventKind::KubeEvent(k) = &e.kind else {
            continue;
        };
        if let Some(&i) = index.get(k.name.as_str()) {
            let r = &mut out[i];
            r.last_s = rel(e.at);
            r.count = r.count.max(k.count);
            r.message = k.message.clone();
            continue;
        }
        if out.len() >= MAX_REPORT_EVENTS {
            left_out += 1;
            continue;
        }
        index.insert(&k.name, out.len());
        out.push(EventRecord {
            first_s: rel(e.at),
            last_s: rel(e.at),
            type_: k.type_.clone(),
            reason: k.reason.clone(),
            object: k.object.clone(),
            message: k.message.clone(),
            source: k.source.clone(),
            count: k.count,
        });
    }
    (out, left_out)
}

fn fault_records(events: &[Event], rel: impl Fn(f64) -> f64) -> Vec<FaultRecord> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Fault {
                fault,
                target,
                nodes,
            } => Some(FaultRecord {
                at_s: rel(e.at),
                kind: fault.clone(),
                target: target.clone(),
                nodes: nodes.clone(),
            }),
            _ => None,
        })
        .collect()
}

fn judge(target: &SloTarget, availability: f64, error_window_s: f64) -> SloReport {
    let availability_met = availability >= target.availability;
    let error_window_met = target
        .max_error_window_s
        .is_none_or(|max| error_window_s <= max);
    SloReport {
        target: target.clone(),
        met: availability_met && error_window_met,
        availability_met,
        error_window_met,
    }
}

/// Rounds to milliseconds (3 decimals) so reports stay readable.
pub fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}
