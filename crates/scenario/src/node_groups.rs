//! The scenario's `nodeGroups`: EC2-Auto-Scaling-like groups, one zone each, whose instances
//! are the zone's nodes and which the cluster autoscaler resizes — the typed entry, its
//! profile-dependent `bootDelay` default, and the checks (min ≤ desired ≤ max, a known zone,
//! the zone's initial nodes matching the topology, room in the zone's subnet).
//!
//! Start at [`NodeGroup`] and [`check`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::duration;
use crate::locate::Seg;
use crate::model::{Profile, Topology};
use crate::validate::{MAX_NODES_PER_ZONE, Problem};

/// Nodes a lab holds at most: pod CIDRs are `10.244.<node>.0/24` (netlab's `MAX_NODES`).
pub const MAX_NODES: u32 = 256;

/// Boot delay of a launched instance under the upstream profile: 60 s (the figure for
/// an EC2 instance to boot and its kubelet to join); the fast profile divides it by 10.
pub const DEFAULT_BOOT_DELAY: Duration = Duration::from_secs(60);

/// One node group (`nodeGroups[i]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeGroup {
    /// Group name (an ASG name): lowercase letters, digits and `-`, unique; its nodes are
    /// named `<name>-<n>`.
    pub name: String,
    /// The zone its instances launch in (one of `topology.zones`).
    pub zone: String,
    /// Minimum size.
    pub min: u32,
    /// Maximum size.
    pub max: u32,
    /// Initial (desired) size: the zone's nodes at start.
    pub desired: u32,
    /// From launch to a running instance whose agent joins (default: 60 s, fast profile 6 s).
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub boot_delay: Option<Duration>,
}

impl NodeGroup {
    /// The boot delay under `profile`: the file's value, or the profile's default.
    pub fn boot_delay(&self, profile: Profile) -> Duration {
        self.boot_delay
            .unwrap_or(profile.duration(DEFAULT_BOOT_DELAY))
    }
}

fn at(i: usize, field: &str) -> Vec<Seg> {
    let mut path = vec![Seg::Key("nodeGroups".into()), Seg::Index(i)];
    if !field.is_empty() {
        path.push(Seg::Key(field.into()));
    }
    path
}

fn problem(path: Vec<Seg>, message: String) -> Problem {
    Problem { path, message }
}

/// Checks the groups against each other and the topology; the first problem is returned.
pub fn check(groups: &[NodeGroup], topology: &Topology) -> Result<(), Problem> {
    let mut initial: BTreeMap<&str, (u32, usize)> = BTreeMap::new();
    let mut headroom: BTreeMap<&str, u32> = BTreeMap::new();
    for (i, g) in groups.iter().enumerate() {
        check_one(groups, i, topology)?;
        let e = initial.entry(g.zone.as_str()).or_insert((0, i));
        e.0 += g.desired;
        let room = headroom.entry(g.zone.as_str()).or_default();
        *room += g.max;
        if *room > MAX_NODES_PER_ZONE {
            return Err(problem(
                at(i, "max"),
                format!(
                    "the node groups of zone {:?} may grow to {room} nodes; a zone holds at most {MAX_NODES_PER_ZONE}",
                    g.zone
                ),
            ));
        }
    }
    // Every node there may ever be at once: the groups' max, plus the static nodes of zones
    // without groups.
    let static_zones = topology
        .zones
        .iter()
        .filter(|z| !groups.iter().any(|g| &g.zone == *z))
        .count() as u32;
    let mut total = static_zones * topology.nodes_per_zone;
    for (i, g) in groups.iter().enumerate() {
        total += g.max;
        if total > MAX_NODES {
            return Err(problem(
                at(i, "max"),
                format!(
                    "the node groups may grow the lab to {total} nodes; a lab holds at most {MAX_NODES} (one pod CIDR 10.244.<n>.0/24 each)"
                ),
            ));
        }
    }
    for (zone, (desired, first)) in initial {
        if desired != topology.nodes_per_zone {
            return Err(problem(
                at(first, "desired"),
                format!(
                    "the node groups of zone {zone:?} start with {desired} nodes but topology.nodesPerZone is {}: a zone's nodes are its groups' instances",
                    topology.nodes_per_zone
                ),
            ));
        }
    }
    Ok(())
}

/// The checks of group `i` on its own: name, uniqueness, zone, sizes.
fn check_one(groups: &[NodeGroup], i: usize, topology: &Topology) -> Result<(), Problem> {
    let g = &groups[i];
    let valid = !g.name.is_empty()
        && g.name.len() <= 40
        && g.name.starts_with(|c: char| c.is_ascii_lowercase())
        && g.name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return Err(problem(
            at(i, "name"),
            format!(
                "invalid node group name {:?}: expected 1 to 40 lowercase letters, digits or '-', starting with a letter",
                g.name
            ),
        ));
    }
    if groups[..i].iter().any(|o| o.name == g.name) {
        return Err(problem(
            at(i, "name"),
            format!("node group {:?} is listed twice", g.name),
        ));
    }
    if !topology.zones.contains(&g.zone) {
        return Err(problem(
            at(i, "zone"),
            format!(
                "unknown zone {:?}: expected one of {}",
                g.zone,
                topology.zones.join(", ")
            ),
        ));
    }
    if g.min > g.max {
        return Err(problem(
            at(i, "min"),
            format!("min {} is greater than max {}", g.min, g.max),
        ));
    }
    if g.desired < g.min || g.desired > g.max {
        return Err(problem(
            at(i, "desired"),
            format!(
                "desired {} is outside [min {}, max {}]",
                g.desired, g.min, g.max
            ),
        ));
    }
    Ok(())
}
