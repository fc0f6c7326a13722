//! Request accounting: counts by outcome and connection kind, the error window, the failure
//! share inside it, failures after the proxies converged, the per-zone breakdown and the
//! requests-per-second series.

use std::collections::BTreeMap;

use super::{Meta, PrimaryFault, round3};
use crate::report::{Counts, RatePoint, Requests, Window, ZoneReport};
use crate::timeline::{Outcome, Request};

/// Width of a bucket of the requests-per-second series.
pub const BUCKET_S: f64 = 1.0;

/// What [`compute`] found.
#[derive(Debug, Clone, Default)]
pub struct Traffic {
    pub requests: Requests,
    pub window: Option<Window>,
    /// The error window had no stale-conntrack hit failed (seconds).
    pub window_without_stale_s: f64,
    pub window_failure_share: f64,
    pub failed_after_converged: u64,
    pub failed_after_converged_stale: u64,
    pub per_zone: BTreeMap<String, ZoneReport>,
    pub answered_by_zone: BTreeMap<String, u64>,
    pub series: BTreeMap<String, Vec<RatePoint>>,
}

/// `part` of `whole` in percent, 3 decimals; 100 for an empty whole.
pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 100.0;
    }
    round3(100.0 * part as f64 / whole as f64)
}

/// `all` sorted by start.
pub fn compute(
    meta: &Meta,
    all: &[&Request],
    fault: Option<&PrimaryFault>,
    converged_ms: Option<f64>,
) -> Traffic {
    let stale = stale_conntrack(all, meta.timers.conntrack_tcp_timeout_syn_sent_s * 1e3);
    let mut t = Traffic {
        requests: count(all),
        ..Traffic::default()
    };
    t.requests.stale_conntrack = stale.len() as u64;
    if let Some(f) = fault {
        for r in all
            .iter()
            .filter(|r| r.start >= f.at_ms && r.conn_opened < f.at_ms)
        {
            t.requests.pre_fault_connections.total += 1;
            t.requests.pre_fault_connections.failed += u64::from(!r.ok());
        }
    }
    let window_ms = fault.and_then(|f| error_window(all, f.at_ms));
    let fresh: Vec<&Request> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| !stale.contains(i))
        .map(|(_, r)| *r)
        .collect();
    t.window_without_stale_s = fault
        .and_then(|f| error_window(&fresh, f.at_ms))
        .map_or(0.0, |(a, b)| round3((b - a) / 1e3));
    t.window = window_ms.map(|(a, b)| Window {
        start_s: round3((a - meta.t0_ms) / 1e3),
        end_s: round3((b - meta.t0_ms) / 1e3),
    });
    // The share that failed while the dead endpoints were still programmed: new connections of
    // clients off the failed nodes, from the fault until the proxies converged.
    let exposure = match (fault, converged_ms, window_ms) {
        (Some(f), Some(conv), _) => Some((f.at_ms, conv)),
        (Some(f), None, Some((_, b))) => Some((f.at_ms, b)),
        _ => None,
    };
    if let (Some((a, b)), Some(f)) = (exposure, fault) {
        let inside: Vec<&&Request> = all
            .iter()
            .filter(|r| !f.nodes.contains(&r.client_node))
            .filter(|r| r.new_conn() && r.start >= a && r.start < b)
            .collect();
        let failed = inside.iter().filter(|r| !r.ok()).count();
        if !inside.is_empty() {
            t.window_failure_share = failed as f64 / inside.len() as f64;
        }
    }
    if let (Some(f), Some(conv)) = (fault, converged_ms) {
        let until = f.next_fault_ms.unwrap_or(f64::INFINITY);
        let late: Vec<usize> = all
            .iter()
            .enumerate()
            .filter(|(_, r)| !f.nodes.contains(&r.client_node))
            .filter(|(_, r)| r.new_conn() && !r.ok() && r.start > conv && r.start < until)
            .map(|(i, _)| i)
            .collect();
        t.failed_after_converged = late.len() as u64;
        t.failed_after_converged_stale = late.iter().filter(|i| stale.contains(i)).count() as u64;
    }
    let mut zones: BTreeMap<&str, Vec<&Request>> = BTreeMap::new();
    for r in all {
        zones.entry(r.client_zone.as_str()).or_default().push(r);
        if r.ok() {
            let z = r.zone.clone().unwrap_or_else(|| "?".into());
            *t.answered_by_zone.entry(z).or_default() += 1;
        }
    }
    for (zone, rs) in zones {
        t.per_zone.insert(zone.to_string(), breakdown(&rs, fault));
        t.series.insert(zone.to_string(), series(meta, &rs));
    }
    t
}

/// The `per_zone` fields of the requests `rs` (sorted by start).
pub fn breakdown(rs: &[&Request], fault: Option<&PrimaryFault>) -> ZoneReport {
    let c = count(rs);
    let w = fault.and_then(|f| error_window(rs, f.at_ms));
    ZoneReport {
        availability: percent(c.ok, c.total),
        requests: c.total,
        ok: c.ok,
        failed: c.failed,
        by_outcome: c.by_outcome,
        error_window_s: w.map_or(0.0, |(a, b)| round3((b - a) / 1e3)),
    }
}

/// Indexes (into `rs`, sorted by start) of new connections that never connected (timeout, or an
/// ICMP error such as "no route to host" once the dead pod's address is gone), on the source
/// port of an earlier unanswered SYN of the same client less than `syn_sent_ms` before:
/// Linux keeps an unanswered connection's conntrack entry (and its DNAT) that long
/// (`nf_conntrack_tcp_timeout_syn_sent`, default 120 s, Documentation/networking/
/// nf_conntrack-sysctl.rst), renewed by every SYN that hits it. Refusals, resets and answered
/// SYNs leave no such entry and clear the port.
fn stale_conntrack(rs: &[&Request], syn_sent_ms: f64) -> std::collections::BTreeSet<usize> {
    let unanswered =
        |r: &Request| !r.connected && matches!(r.outcome, Outcome::Timeout | Outcome::Error);
    let mut last: BTreeMap<(&str, &str, u16), f64> = BTreeMap::new();
    let mut out = std::collections::BTreeSet::new();
    for (i, r) in rs.iter().enumerate() {
        if !r.new_conn() || r.local_port == 0 {
            continue;
        }
        let key = (r.client.as_str(), r.client_zone.as_str(), r.local_port);
        if !unanswered(r) {
            last.remove(&key);
            continue;
        }
        if last.get(&key).is_some_and(|&t| r.start - t < syn_sent_ms) {
            out.insert(i);
        }
        last.insert(key, r.start);
    }
    out
}

fn count(rs: &[&Request]) -> Requests {
    let mut c = Requests::default();
    for r in rs {
        c.total += 1;
        *c.by_outcome.entry(r.outcome).or_default() += 1;
        let kind: &mut Counts = if r.new_conn() {
            &mut c.new_connections
        } else {
            &mut c.reused_connections
        };
        kind.total += 1;
        if r.ok() {
            c.ok += 1;
        } else {
            c.failed += 1;
            kind.failed += 1;
        }
    }
    c
}

/// Start of the first and of the last failed new-connection request that was still running
/// when the fault hit or started after it (ms since the epoch).
fn error_window(rs: &[&Request], fault_ms: f64) -> Option<(f64, f64)> {
    let mut failed = rs
        .iter()
        .filter(|r| r.new_conn() && !r.ok() && r.end >= fault_ms)
        .map(|r| r.start);
    let first = failed.next()?;
    let last = failed.fold(first, f64::max);
    Some((first, last))
}

fn series(meta: &Meta, rs: &[&Request]) -> Vec<RatePoint> {
    let span = ((meta.end_ms - meta.t0_ms) / 1e3 / BUCKET_S)
        .ceil()
        .max(0.0) as usize;
    let mut points: Vec<RatePoint> = (0..span)
        .map(|i| RatePoint {
            t: i as f64 * BUCKET_S,
            ok: 0.0,
            failed: 0.0,
        })
        .collect();
    for r in rs {
        let i = ((r.start - meta.t0_ms) / 1e3 / BUCKET_S).floor();
        if i < 0.0 || i as usize >= points.len() {
            continue;
        }
        let p = &mut points[i as usize];
        if r.ok() {
            p.ok += 1.0 / BUCKET_S;
        } else {
            p.failed += 1.0 / BUCKET_S;
        }
    }
    points
}
