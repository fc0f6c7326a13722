//! The terminal summary of a report: the answer in plain words (error window, share of
//! requests failed, each phase's time, SLO verdict). Start at [`render`].

use std::fmt::Write;

use crate::report::{ControlPlane, Report};
use crate::timeline::Outcome;

/// Several lines of plain text, ending in a newline.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let q = &r.requests;
    let _ = writeln!(
        s,
        "scenario {:?} ({} lab, {} profile, {} proxies): {:.1} s, ended by {}",
        r.scenario, r.mode, r.profile, r.proxy_mode, r.duration_s, r.ended_by
    );
    for f in &r.faults {
        let _ = writeln!(
            s,
            "  fault  t={:>7.1}s  {} {} ({})",
            f.at_s,
            f.kind,
            f.target,
            f.nodes.join(", ")
        );
    }
    let failed_pct = 100.0 - r.availability;
    let outcomes: Vec<String> = q
        .by_outcome
        .iter()
        .filter(|(k, _)| **k != Outcome::Ok)
        .map(|(k, v)| format!("{v} {k}"))
        .collect();
    let _ = writeln!(
        s,
        "requests: {} sent, {} ok, {} failed ({:.2}%){}",
        q.total,
        q.ok,
        q.failed,
        failed_pct,
        if outcomes.is_empty() {
            String::new()
        } else {
            format!(": {}", outcomes.join(", "))
        }
    );
    let _ = writeln!(
        s,
        "  new connections {} ({} failed), reused connections {} ({} failed)",
        q.new_connections.total,
        q.new_connections.failed,
        q.reused_connections.total,
        q.reused_connections.failed
    );
    if q.pre_fault_connections.total > 0 {
        let _ = writeln!(
            s,
            "  on connections opened before the fault: {} requests, {} failed",
            q.pre_fault_connections.total, q.pre_fault_connections.failed
        );
    }
    match r.error_window {
        Some(w) => {
            let _ = writeln!(
                s,
                "error window: {:.1} s (new connections failing from t={:.1}s to t={:.1}s); until the proxies converged {:.0}% of new connections failed, and {:.0}% of the endpoints were on the failed nodes",
                r.error_window_s,
                w.start_s,
                w.end_s,
                100.0 * r.window_failure_share,
                100.0 * r.dead_endpoint_share
            );
        }
        None => {
            let _ = writeln!(s, "error window: none (no new-connection request failed)");
        }
    }
    if r.requests.stale_conntrack > 0 {
        let _ = writeln!(
            s,
            "  {} failed new connection(s) reused the source port of an earlier failed one and hit its stale conntrack entry ({} after the proxies converged): upstream kube-proxy clears conntrack for UDP only (kubernetes/kubernetes#101607)",
            r.requests.stale_conntrack, r.failed_after_converged_stale_conntrack
        );
    }
    if r.requests.no_endpoints > 0 {
        let _ = writeln!(
            s,
            "  {} failed request(s) were sent while the client's node had no endpoint for the Service: rejected, and past the kernel's ICMP rate limit (a burst of 6, then 1/s) seen as timeouts; no endpoints, not dead pods",
            r.requests.no_endpoints
        );
    }
    if r.failed_after_converged > r.failed_after_converged_stale_conntrack {
        let _ = writeln!(
            s,
            "  {} new connection(s) of surviving clients failed after the proxies converged for another reason",
            r.failed_after_converged - r.failed_after_converged_stale_conntrack
        );
    }
    phases(&mut s, r);
    for (zone, z) in &r.per_zone {
        let _ = writeln!(
            s,
            "  clients in zone {zone}: {} requests, {} failed, availability {:.2}%, error window {:.1} s",
            z.requests, z.failed, z.availability, z.error_window_s
        );
    }
    per_service(&mut s, r);
    load_balancer(&mut s, r);
    control_plane(&mut s, r);
    if let Some(a) = &r.autoscaler {
        let _ = writeln!(s, "  {}", autoscaler_sentence(r, a));
    }
    verdict(&mut s, r);
    in_short(&mut s, r);
    s
}

/// Whether the API stayed up, in words (the probe's longest gap and its lost writes).
pub fn api_sentence(cp: &ControlPlane) -> String {
    let Some(gap) = cp.api_unavailable_s else {
        return "No API probe ran.".into();
    };
    let lost = match cp.writes_lost {
        Some(0) => "none lost".to_string(),
        Some(n) => format!("{n} LOST"),
        None => "not read back".to_string(),
    };
    let writes = format!(
        "{} of {} probe writes acknowledged, {lost}",
        cp.writes_acknowledged, cp.writes_attempted
    );
    match (cp.api_stayed_up, cp.api_unavailable) {
        (Some(true), _) => format!(
            "The API stayed up: the longest gap between acknowledged writes was {gap:.1} s ({writes})."
        ),
        (_, Some(w)) => format!(
            "The API was unavailable for {gap:.1} s (no write acknowledged from t={:.1}s to t={:.1}s; {writes}).",
            w.start_s, w.end_s
        ),
        _ => format!("The API was unavailable for {gap:.1} s ({writes})."),
    }
}

/// The control plane's lines: store and members, etcd leader, failovers, the API probe.
/// One sentence on the node groups: nodes added (where, when Ready), failed launches, halts.
pub fn autoscaler_sentence(r: &Report, a: &crate::report::AutoscalerReport) -> String {
    let mut out = match a.nodes_added.len() {
        0 => "cluster autoscaler: no node added".to_string(),
        n => {
            let mut zones: Vec<&str> = a.nodes_added.iter().map(|n| n.zone.as_str()).collect();
            zones.sort();
            zones.dedup();
            format!(
                "cluster autoscaler: {n} node(s) added in zone(s) {}",
                zones.join(", ")
            )
        }
    };
    if let Some(t) = r.phases.scale_up_requested_s {
        out.push_str(&format!("; scale-up requested at t={t:.1}s"));
    }
    if let Some(t) = r.phases.nodes_provisioned_s {
        out.push_str(&format!(", nodes Ready at t={t:.1}s"));
    }
    if !a.launches_failed.is_empty() {
        out.push_str(&format!(
            "; {} launch(es) failed (zone without capacity)",
            a.launches_failed.len()
        ));
    }
    if let Some(t) = a.halted_s {
        out.push_str(&format!("; halted (too many unready nodes) at t={t:.1}s"));
    }
    out
}

fn control_plane(s: &mut String, r: &Report) {
    let Some(cp) = &r.control_plane else {
        return;
    };
    let where_ = if cp.member_zones.is_empty() {
        "outside the zones".to_string()
    } else {
        format!("in zones {}", cp.member_zones.join(", "))
    };
    let _ = writeln!(
        s,
        "control plane: {} store, {} member(s) {where_}",
        cp.store, cp.members
    );
    let dash = |z: &Option<String>| z.clone().unwrap_or_else(|| "-".into());
    let took = |t: Option<f64>| {
        t.map_or("did not move".to_string(), |t| {
            format!("took over +{t:.1} s after the fault")
        })
    };
    if cp.store == "etcd" {
        let _ = writeln!(
            s,
            "  etcd leader: zone {} -> zone {} ({})",
            dash(&cp.etcd_leader_zone_before),
            dash(&cp.etcd_leader_zone_after),
            took(cp.etcd_leader_elected_s)
        );
    }
    for (role, before, after, t) in [
        (
            "controller-manager",
            &cp.controller_manager_holder_before,
            &cp.controller_manager_holder_after,
            cp.controller_manager_failover_s,
        ),
        (
            "scheduler",
            &cp.scheduler_holder_before,
            &cp.scheduler_holder_after,
            cp.scheduler_failover_s,
        ),
    ] {
        if before.is_some() || after.is_some() {
            let _ = writeln!(
                s,
                "  {role}: {} -> {} ({})",
                dash(before),
                dash(after),
                took(t)
            );
        }
    }
    let _ = writeln!(s, "  {}", api_sentence(cp));
}

/// One paragraph with the answer.
fn in_short(s: &mut String, r: &Report) {
    let q = &r.requests;
    let Some(f) = r.faults.first() else {
        let _ = writeln!(
            s,
            "In short: no fault; {} of {} requests failed.",
            q.failed, q.total
        );
        return;
    };
    let mut outcomes: Vec<String> = q
        .by_outcome
        .iter()
        .filter(|(k, _)| **k != Outcome::Ok)
        .map(|(k, _)| k.to_string())
        .collect();
    if outcomes.len() == 1 {
        outcomes[0] = format!("all {}s", outcomes[0]);
    }
    let mut text = format!(
        "In short: {} of {} at t={:.1}s cost {} of {} requests ({:.2}%){}",
        f.kind,
        f.target,
        f.at_s,
        q.failed,
        q.total,
        100.0 - r.availability,
        if outcomes.is_empty() {
            String::new()
        } else {
            format!(", {}", outcomes.join(" and "))
        }
    );
    if r.error_window.is_some() {
        text += &format!(", over an error window of {:.1} s", r.error_window_s);
        if q.stale_conntrack > 0 {
            text += &format!(
                " ({:.1} s without the {} stale-conntrack hits, which the agents' --conntrack-tcp-timeout-syn-sent shortens)",
                r.error_window_without_stale_conntrack_s, q.stale_conntrack
            );
        }
    }
    let p = &r.phases;
    let after = |t: Option<f64>| p.fault_s.zip(t).map(|(f, t)| t - f);
    let mut steps = Vec::new();
    if let Some(d) = after(p.nodes_not_ready_s) {
        steps.push(format!("the nodes were marked not ready after {d:.1} s"));
    }
    if let Some(d) = after(p.proxies_converged_s) {
        steps.push(format!(
            "every proxy dropped their endpoints after {d:.1} s"
        ));
    }
    match after(p.capacity_restored_s) {
        Some(d) => steps.push(format!("capacity was back after {d:.1} s")),
        None => steps.push("capacity was not restored within the run".into()),
    }
    text += &format!("; {}. ", steps.join(", "));
    text += if r.slo.met {
        "The SLO was met."
    } else {
        "The SLO was not met."
    };
    let _ = writeln!(s, "{text}");
}

fn phases(s: &mut String, r: &Report) {
    let p = &r.phases;
    let Some(fault) = p.fault_s else {
        let _ = writeln!(s, "phases: no fault was injected");
        return;
    };
    let _ = writeln!(s, "phases (seconds after the fault at t={fault:.1}s):");
    for (name, at) in p.steps().into_iter().skip(1) {
        let _ = match at {
            Some(t) => writeln!(s, "  {name:<20} +{:>6.1} s  (t={t:.1}s)", t - fault),
            None => writeln!(s, "  {name:<20}  not within the run"),
        };
    }
    // The load balancer's phase only when the run had one.
    if r.load_balancer.is_some() {
        for (name, at) in p.lb_steps() {
            let _ = match at {
                Some(t) => writeln!(s, "  {name:<20} +{:>6.1} s  (t={t:.1}s)", t - fault),
                None => writeln!(s, "  {name:<20}  not within the run"),
            };
        }
    }
}

fn verdict(s: &mut String, r: &Report) {
    let t = &r.slo.target;
    let mark = |ok: bool| if ok { "ok" } else { "missed" };
    let window = t.max_error_window_s.map_or(String::new(), |m| {
        format!(
            ", error window {:.1} s (target <= {m:.1} s: {})",
            r.error_window_s,
            mark(r.slo.error_window_met)
        )
    });
    let _ = writeln!(
        s,
        "SLO {}: availability {:.3}% (target >= {:.3}%: {}){window}",
        if r.slo.met { "MET" } else { "NOT MET" },
        r.availability,
        t.availability,
        mark(r.slo.availability_met),
    );
}

/// One sentence on the load balancer: its health check and when the failed nodes' targets
/// left rotation.
pub fn lb_sentence(r: &Report) -> String {
    let Some(lb) = &r.load_balancer else {
        return "No load balancer in this run.".into();
    };
    let hc = &lb.health_check;
    let mut out = format!(
        "Load balancer {} ({} LB node(s), cross-zone {}): health check every {} s, timeout {} s, unhealthy after {} failures, healthy after {} successes.",
        lb.name,
        lb.nodes.len(),
        if lb.cross_zone { "on" } else { "off" },
        hc.interval_s,
        hc.timeout_s,
        hc.unhealthy_threshold,
        hc.healthy_threshold
    );
    match (r.phases.lb_targets_unhealthy_s, r.phases.fault_s) {
        (Some(t), Some(f)) => out.push_str(&format!(
            " Every target on a failed node was out of rotation {:.1} s after the fault (t={t:.1}s).",
            t - f
        )),
        (None, Some(_)) => out.push_str(" The failed nodes' targets were never all out of rotation."),
        _ => {}
    }
    out
}

/// One line per client target Service, when the clients called more than one.
fn per_service(s: &mut String, r: &Report) {
    if r.per_service.len() < 2 {
        return;
    }
    for (svc, z) in &r.per_service {
        let _ = writeln!(
            s,
            "  Service {svc}: {} requests, {} failed, availability {:.2}%, error window {:.1} s",
            z.requests, z.failed, z.availability, z.error_window_s
        );
    }
}

fn load_balancer(s: &mut String, r: &Report) {
    if r.load_balancer.is_some() {
        let _ = writeln!(s, "  {}", lb_sentence(r));
    }
    if r.per_client_kind.len() > 1 {
        for (kind, z) in &r.per_client_kind {
            let _ = writeln!(
                s,
                "  {kind} clients: {} requests, {} failed, availability {:.2}%, error window {:.1} s",
                z.requests, z.failed, z.availability, z.error_window_s
            );
        }
    }
}
