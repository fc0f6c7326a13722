//! Semantic checks of a parsed scenario (zones, targets, times, rates): `validate` is the
//! entry point; it returns the first problem with the path of the offending node.

use crate::duration::format_duration;
use crate::locate::Seg;
use crate::model::{
    Client, ClientFrom, ClientVia, ETCD_LEADER, FaultTarget, Scenario, Store, Topology,
};

/// Most zones a lab can have (one letter each, `a`..`z`; also the netlab subnet plan).
pub const MAX_ZONES: usize = 26;
/// Most nodes per zone (host octets 11..=254 of the zone subnet).
pub const MAX_NODES_PER_ZONE: u32 = 244;

/// A semantic problem: where (path into the document) and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Path of the offending node.
    pub path: Vec<Seg>,
    /// What is wrong and what was expected.
    pub message: String,
}

fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

fn problem(path: Vec<Seg>, message: String) -> Problem {
    Problem { path, message }
}

/// Checks everything that the types alone cannot; the first problem found is returned.
pub fn validate(s: &Scenario) -> Result<(), Problem> {
    validate_for(s, crate::sim::Mode::Live)
}

/// [`validate`] for the live lab or the simulator (its sizes and live-only features:
/// [`crate::sim::check`]).
pub fn validate_for(s: &Scenario, mode: crate::sim::Mode) -> Result<(), Problem> {
    if s.name.trim().is_empty() {
        return Err(problem(
            vec![key("name")],
            "expected a non-empty name".into(),
        ));
    }
    match mode {
        crate::sim::Mode::Live => check_topology(&s.topology)?,
        crate::sim::Mode::Sim => {
            check_zones(&s.topology)?;
            crate::sim::check(s)?;
        }
    }
    crate::node_groups::check(&s.node_groups, &s.topology)?;
    check_control_plane(s)?;
    check_workloads(s)?;
    check_clients(s)?;
    check_run(s)?;
    check_faults(s)?;
    crate::zonal_shift::check(s)?;
    check_slo(s)
}

fn check_topology(t: &Topology) -> Result<(), Problem> {
    check_zones(t)?;
    if !(1..=MAX_NODES_PER_ZONE).contains(&t.nodes_per_zone) {
        return Err(problem(
            vec![key("topology"), key("nodesPerZone")],
            format!(
                "expected 1 to {MAX_NODES_PER_ZONE} nodes per zone (the live lab's address plan: host addresses 11..=254 of each zone's subnet), found {}{}",
                t.nodes_per_zone,
                if t.nodes_per_zone > MAX_NODES_PER_ZONE {
                    "; larger topologies run in the simulator only (`zonelab run --sim`)"
                } else {
                    ""
                }
            ),
        ));
    }
    Ok(())
}

fn check_zones(t: &Topology) -> Result<(), Problem> {
    let zones_path = vec![key("topology"), key("zones")];
    if t.zones.is_empty() || t.zones.len() > MAX_ZONES {
        return Err(problem(
            zones_path,
            format!("expected 1 to {MAX_ZONES} zones, found {}", t.zones.len()),
        ));
    }
    for (i, zone) in t.zones.iter().enumerate() {
        let mut path = zones_path.clone();
        path.push(Seg::Index(i));
        let valid = !zone.is_empty()
            && zone.len() <= 16
            && zone
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !valid {
            return Err(problem(
                path,
                format!("invalid zone name {zone:?}: expected 1 to 16 lowercase letters or digits"),
            ));
        }
        if t.zones[..i].contains(zone) {
            return Err(problem(path, format!("zone {zone:?} is listed twice")));
        }
    }
    Ok(())
}

fn check_control_plane(s: &Scenario) -> Result<(), Problem> {
    let cp = &s.control_plane;
    let zones = s.topology.zones.len();
    let at = |k: &str| vec![key("controlPlane"), key(k)];
    match cp.store {
        Store::Embedded if cp.replicas != 1 => Err(problem(
            at("replicas"),
            format!(
                "the embedded store serves one API server outside the zones: expected replicas: 1, or store: etcd with replicas: {zones} (one per zone); found {}",
                cp.replicas
            ),
        )),
        Store::Etcd if cp.replicas as usize != zones => Err(problem(
            at("replicas"),
            format!(
                "store: etcd runs one etcd member and one API server in every zone: expected replicas: {zones} (the number of zones), found {}",
                cp.replicas
            ),
        )),
        _ => Ok(()),
    }
}

fn check_workloads(s: &Scenario) -> Result<(), Problem> {
    for (i, w) in s.workloads.iter().enumerate() {
        let path = vec![key("workloads"), Seg::Index(i)];
        if !(1..=crate::stamp::MAX_COUNT).contains(&w.copies()) {
            return Err(problem(
                vec![key("workloads"), Seg::Index(i), key("count")],
                format!(
                    "expected a count from 1 to {}, found {}",
                    crate::stamp::MAX_COUNT,
                    w.copies()
                ),
            ));
        }
        match (&w.path, &w.inline) {
            (Some(p), None) if !p.trim().is_empty() => {}
            (None, Some(_)) => {
                for (j, obj) in w.inline_objects().into_iter().enumerate() {
                    if let Err(m) = crate::stamp::check_template(obj, w.copies()) {
                        let mut at = path.clone();
                        at.push(key("count"));
                        return Err(problem(at, m));
                    }
                    let is_manifest = obj.get("apiVersion").is_some_and(|v| v.is_string())
                        && obj.get("kind").is_some_and(|v| v.is_string());
                    if !is_manifest {
                        let mut at = path.clone();
                        at.push(key("inline"));
                        if w.inline.as_ref().is_some_and(|v| v.is_array()) {
                            at.push(Seg::Index(j));
                        }
                        return Err(problem(
                            at,
                            "expected a Kubernetes object with string apiVersion and kind".into(),
                        ));
                    }
                }
            }
            _ => {
                return Err(problem(
                    path,
                    "expected exactly one of `path` (non-empty) or `inline`".into(),
                ));
            }
        }
    }
    Ok(())
}

fn check_clients(s: &Scenario) -> Result<(), Problem> {
    for (i, c) in s.clients.iter().enumerate() {
        let at = |k: &str| vec![key("clients"), Seg::Index(i), key(k)];
        if c.name.trim().is_empty() {
            return Err(problem(
                at("name"),
                "expected a non-empty client name".into(),
            ));
        }
        if s.clients[..i].iter().any(|o| o.name == c.name) {
            return Err(problem(
                at("name"),
                format!("client name {:?} is used twice", c.name),
            ));
        }
        for (j, zone) in c.zones.iter().flatten().enumerate() {
            if !s.topology.zones.contains(zone) {
                let mut path = at("zones");
                path.push(Seg::Index(j));
                return Err(problem(
                    path,
                    format!(
                        "unknown zone {zone:?}: expected one of {}",
                        s.topology.zones.join(", ")
                    ),
                ));
            }
        }
        check_service(c.target.as_deref(), c.service.as_deref(), &at)?;
        check_path(c, &at)?;
        if !(c.rate.is_finite() && c.rate > 0.0) {
            return Err(problem(
                at("rate"),
                format!("expected a rate > 0 requests/s, found {}", c.rate),
            ));
        }
        if c.timeout.is_zero() {
            return Err(problem(at("timeout"), "expected a timeout > 0".into()));
        }
    }
    Ok(())
}

/// `from` and `via` fit together: an external client reaches the Service through its load
/// balancer only, and runs outside the zones.
fn check_path(c: &Client, at: &dyn Fn(&str) -> Vec<Seg>) -> Result<(), Problem> {
    match (c.from, c.via()) {
        (ClientFrom::External, ClientVia::Clusterip) => Err(problem(
            at("via"),
            "an external client cannot reach a ClusterIP (it is routed only inside the cluster): use `via: load-balancer`".into(),
        )),
        (ClientFrom::Cluster, ClientVia::LoadBalancer) => Err(problem(
            at("via"),
            "`via: load-balancer` is for clients outside the cluster: add `from: external`".into(),
        )),
        (ClientFrom::External, _) if c.zones.is_some() => Err(problem(
            at("zones"),
            "an external client runs outside the zones (in the lab's router namespace): remove `zones`".into(),
        )),
        _ => Ok(()),
    }
}

fn check_service(
    target: Option<&str>,
    service: Option<&str>,
    at: &dyn Fn(&str) -> Vec<Seg>,
) -> Result<(), Problem> {
    match (target, service) {
        (Some(t), None) if !t.trim().is_empty() && !t.contains('/') => Ok(()),
        (Some(_), None) => Err(problem(
            at("target"),
            "expected a Service name (use `service: namespace/name` for another namespace)".into(),
        )),
        (None, Some(full)) => match full.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => Ok(()),
            None if !full.trim().is_empty() => Ok(()),
            _ => Err(problem(
                at("service"),
                format!("expected a Service name or namespace/name, found {full:?}"),
            )),
        },
        _ => Err(problem(
            at("target"),
            "expected exactly one of `target` (Service name) or `service` (namespace/name)".into(),
        )),
    }
}

fn check_run(s: &Scenario) -> Result<(), Problem> {
    let run = &s.run;
    match (run.duration, run.until, run.cap) {
        (Some(d), None, None) if !d.is_zero() => Ok(()),
        (Some(_), None, None) => Err(problem(
            vec![key("run"), key("duration")],
            "expected a duration > 0".into(),
        )),
        (None, Some(_), cap) if cap.is_none_or(|c| !c.is_zero()) => Ok(()),
        (None, Some(_), _) => Err(problem(
            vec![key("run"), key("cap")],
            "expected a cap > 0".into(),
        )),
        (Some(_), _, _) => Err(problem(
            vec![key("run")],
            "expected either `duration` or `until` (with optional `cap`), not both".into(),
        )),
        (None, None, _) => Err(problem(
            vec![key("run")],
            "expected `duration` or `until: capacity-restored`".into(),
        )),
    }
}

fn check_faults(s: &Scenario) -> Result<(), Problem> {
    let limit = s.run.limit();
    for (i, f) in s.faults.iter().enumerate() {
        let at = |k: &str| vec![key("faults"), Seg::Index(i), key(k)];
        if f.at >= limit {
            return Err(problem(
                at("at"),
                format!(
                    "fault at {} is not within the run (ends at {}): expected a time before the end",
                    format_duration(f.at),
                    format_duration(limit)
                ),
            ));
        }
        if f.target == ETCD_LEADER {
            if !s.control_plane.zonal() {
                return Err(problem(
                    at("target"),
                    "etcd-leader needs an etcd control plane in the zones (controlPlane: {store: etcd, replicas: <zones>})".into(),
                ));
            }
            if !f.kind.accepts_zone() {
                return Err(problem(
                    at("target"),
                    format!(
                        "{} needs a node `<zone>-<n>` as target, found {:?}",
                        f.kind, f.target
                    ),
                ));
            }
            continue;
        }
        let target = resolve_target(&s.topology, &f.target).ok_or_else(|| {
            problem(at("target"), format!(
                "unknown target {:?}: expected a zone ({}) or a node `<zone>-<n>` with n in 1..={}",
                f.target,
                s.topology.zones.join(", "),
                s.topology.nodes_per_zone
            ))
        })?;
        let fits = match target {
            FaultTarget::Zone(_) | FaultTarget::EtcdLeader => f.kind.accepts_zone(),
            FaultTarget::Node { .. } => f.kind.accepts_node(),
        };
        if !fits {
            let wanted = if f.kind.accepts_zone() {
                "a zone"
            } else {
                "a node `<zone>-<n>`"
            };
            return Err(problem(
                at("target"),
                format!("{} needs {wanted} as target, found {:?}", f.kind, f.target),
            ));
        }
    }
    Ok(())
}

/// Resolves a fault target: a zone name, or a node `<zone>-<n>` (n from 1 to nodesPerZone).
pub fn resolve_target(t: &Topology, name: &str) -> Option<FaultTarget> {
    if name == ETCD_LEADER {
        return Some(FaultTarget::EtcdLeader);
    }
    if t.zones.iter().any(|z| z == name) {
        return Some(FaultTarget::Zone(name.to_string()));
    }
    let (zone, n) = name.rsplit_once('-')?;
    if !t.zones.iter().any(|z| z == zone) || n.starts_with('0') {
        return None;
    }
    let index: u32 = n.parse().ok()?;
    (1..=t.nodes_per_zone)
        .contains(&index)
        .then(|| FaultTarget::Node {
            zone: zone.to_string(),
            index,
        })
}

fn check_slo(s: &Scenario) -> Result<(), Problem> {
    let a = s.slo.availability;
    if !(a > 0.0 && a <= 100.0) {
        return Err(problem(
            vec![key("slo"), key("availability")],
            format!("expected an availability percentage in (0, 100], found {a}"),
        ));
    }
    if s.slo.max_error_window.is_some_and(|w| w.is_zero()) {
        return Err(problem(
            vec![key("slo"), key("maxErrorWindow")],
            "expected a window > 0".into(),
        ));
    }
    Ok(())
}
