//! EKS-style zonal shift: a zone's nodes cordoned and its Pod endpoints out of EndpointSlices
//! (and out of load balancers) until the shift expires or is cancelled; nodes are never
//! terminated and pods never evicted. Start at [`ZonalShiftController`]; how a shift is
//! represented is in [`shift_of`], starting/extending/cancelling one in [`start_node`] /
//! [`cancel_node`], the autoshift rule in [`autoshift`].
//!
//! Representation (docs/zonal-shift.md): the shift lives on the Node objects of the zone, as
//! annotations, so it is visible with kubectl, survives restarts of every component, and every
//! component that must react (EndpointSlice controller, load-balancer controller) already has
//! Nodes in its informer cache:
//! - [`EXPIRES_AT_ANNOTATION`] (RFC 3339): the node's zone is shifted away from until then.
//!   Its presence is the shift; the starter (scenario runner, simulator, `zonelab lab
//!   zonal-shift`, autoshift) writes it on every node of the zone, extending rewrites it,
//!   cancelling removes it; this controller removes it once it expired.
//! - [`CORDONED_ANNOTATION`]: written by this controller when *it* cordoned the node, so the
//!   end of the shift uncordons only the nodes the shift cordoned.

pub mod autoshift;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use runtime::Outbox;
use runtime::events::{EventRecord, EventType, node_ref};
use runtime::labels::node_zone;

use crate::cache::{Cache, Change, Object};
use crate::{Action, Controller, Moment, WriteError};

/// When the zone's shift ends (RFC 3339). Its presence on a node means the node's zone is
/// shifted away from.
pub const EXPIRES_AT_ANNOTATION: &str = "zonalshift.zonelab.io/expires-at";
/// When the shift started (RFC 3339; kept when the shift is extended).
pub const STARTED_AT_ANNOTATION: &str = "zonalshift.zonelab.io/started-at";
/// Set to `"true"` by the controller on a node it cordoned for the shift.
pub const CORDONED_ANNOTATION: &str = "zonalshift.zonelab.io/cordoned";
/// `source.component` of the controller's Events.
pub const COMPONENT: &str = "zonal-shift-controller";
/// Event reason when a node is cordoned for a shift.
pub const REASON_STARTED: &str = "ZonalShiftStarted";
/// Event reason when a shift ends on a node (expired or cancelled).
pub const REASON_ENDED: &str = "ZonalShiftEnded";
/// Retry delay after a write of ours lost a race (the newer node usually arrives first).
pub const RETRY_MS: Duration = Duration::from_millis(1_000);

/// What a node says about a zonal shift.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NodeShift {
    /// The shift's expiry, when the node's zone is shifted away from.
    pub expires_at: Option<Moment>,
    /// The controller cordoned this node for a shift.
    pub cordoned_by_shift: bool,
}

fn annotation<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    node.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// Parses an RFC 3339 time into milliseconds.
fn parse_time(text: &str) -> Option<Moment> {
    text.parse::<k8s_openapi::jiff::Timestamp>()
        .ok()
        .map(|t| Moment::from_millis(t.as_millisecond()))
}

/// Formats milliseconds as RFC 3339 (UTC, whole seconds rounded down).
pub fn format_time(at: Moment) -> String {
    crate::time::to_time(at).0.to_string()
}

/// The node's zonal-shift state. An unparsable expiry is no shift.
pub fn shift_of(node: &Node) -> NodeShift {
    NodeShift {
        expires_at: annotation(node, EXPIRES_AT_ANNOTATION).and_then(parse_time),
        cordoned_by_shift: annotation(node, CORDONED_ANNOTATION) == Some("true"),
    }
}

/// True if the node's zone is shifted away from: its Pod endpoints leave EndpointSlices and
/// its targets leave load balancers. The controller removes the annotation at expiry, so
/// presence alone decides (the EndpointSlice controller has no timer for it).
pub fn is_shifted(node: &Node) -> bool {
    shift_of(node).expires_at.is_some()
}

/// The zones with an active shift, from the nodes in `cache`.
pub fn shifted_zones(cache: &Cache) -> BTreeSet<String> {
    cache
        .nodes
        .values()
        .filter(|n| is_shifted(n))
        .filter_map(|n| node_zone(n).map(str::to_string))
        .collect()
}

/// The shifted zones as an informer sees them: a zone is shifted while any of its nodes carries
/// the shift, so its endpoints leave (and come back) all at once, however many node writes the
/// start or the cancel takes. Kept by the EndpointSlice controller from its node changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShiftedZones {
    /// Node name → its zone, for nodes that carry a shift.
    nodes: BTreeMap<String, String>,
    /// Zone → how many of its nodes carry a shift.
    zones: BTreeMap<String, usize>,
}

impl ShiftedZones {
    /// From every node in `cache`.
    pub fn from_cache(cache: &Cache) -> ShiftedZones {
        let mut s = ShiftedZones::default();
        for node in cache.nodes.values() {
            s.update(node);
        }
        s
    }

    /// A node was added or changed; true if the set of shifted zones changed.
    pub fn update(&mut self, node: &Node) -> bool {
        let name = node.metadata.name.as_deref().unwrap_or("");
        let zone = node_zone(node).filter(|_| is_shifted(node));
        if self.nodes.get(name).map(String::as_str) == zone {
            return false;
        }
        let removed = self.remove(name);
        let Some(zone) = zone else { return removed };
        self.nodes.insert(name.to_string(), zone.to_string());
        let n = self.zones.entry(zone.to_string()).or_default();
        *n += 1;
        removed || *n == 1
    }

    /// A node is gone (or no longer shifted); true if the set of shifted zones changed.
    pub fn remove(&mut self, name: &str) -> bool {
        let Some(zone) = self.nodes.remove(name) else {
            return false;
        };
        match self.zones.get_mut(&zone) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            _ => {
                self.zones.remove(&zone);
                true
            }
        }
    }

    /// Whether `zone` is shifted away from.
    pub fn contains(&self, zone: &str) -> bool {
        self.zones.contains_key(zone)
    }
}

/// The nodes of `zone`, in name order.
pub fn zone_nodes<'a>(cache: &'a Cache, zone: &'a str) -> impl Iterator<Item = &'a Arc<Node>> {
    cache
        .nodes
        .values()
        .filter(move |n| node_zone(n) == Some(zone))
}

/// The node with the shift started or extended to `expires_at` (a start keeps an existing
/// `started-at`), or `None` if it already says so. The starter writes it on every node of the
/// zone (ARC `StartZonalShift` / `UpdateZonalShift`).
pub fn start_node(node: &Node, expires_at: Moment, now: Moment) -> Option<Node> {
    let expires = format_time(expires_at);
    if annotation(node, EXPIRES_AT_ANNOTATION) == Some(expires.as_str()) {
        return None;
    }
    let mut new = node.clone();
    let ann = new.metadata.annotations.get_or_insert_with(BTreeMap::new);
    ann.insert(EXPIRES_AT_ANNOTATION.to_string(), expires);
    ann.entry(STARTED_AT_ANNOTATION.to_string())
        .or_insert_with(|| format_time(now));
    Some(new)
}

/// The node with the shift cancelled (ARC `CancelZonalShift`), or `None` if it has none. The
/// controller then uncordons it if the shift cordoned it.
pub fn cancel_node(node: &Node) -> Option<Node> {
    let ann = node.metadata.annotations.as_ref()?;
    if !ann.contains_key(EXPIRES_AT_ANNOTATION) && !ann.contains_key(STARTED_AT_ANNOTATION) {
        return None;
    }
    let mut new = node.clone();
    if let Some(a) = new.metadata.annotations.as_mut() {
        a.remove(EXPIRES_AT_ANNOTATION);
        a.remove(STARTED_AT_ANNOTATION);
    }
    Some(new)
}

/// A JSON merge patch doing [`start_node`] (with `started` as `started-at` when the node has
/// none) or, with `None`, [`cancel_node`]: for drivers that write through a Kubernetes client.
pub fn merge_patch(expires_at: Option<Moment>, started: Option<Moment>) -> serde_json::Value {
    let ann = match expires_at {
        Some(at) => {
            let mut m = serde_json::Map::new();
            m.insert(EXPIRES_AT_ANNOTATION.into(), format_time(at).into());
            if let Some(s) = started {
                m.insert(STARTED_AT_ANNOTATION.into(), format_time(s).into());
            }
            serde_json::Value::Object(m)
        }
        None => serde_json::json!({
            EXPIRES_AT_ANNOTATION: null,
            STARTED_AT_ANNOTATION: null,
        }),
    };
    serde_json::json!({"metadata": {"annotations": ann}})
}

/// What the controller does to one node now, if anything: the node to write and the Event.
fn plan_node(node: &Node, now: Moment) -> Option<(Node, EventRecord)> {
    let shift = shift_of(node);
    let unschedulable = node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    let name = node.metadata.name.as_deref().unwrap_or("");
    let zone = node_zone(node).unwrap_or("");
    let event = |reason, message: String| {
        EventRecord::new(
            COMPONENT,
            node_ref(name, node.metadata.uid.as_deref().unwrap_or("")),
            EventType::Normal,
            reason,
            message,
            now,
        )
    };
    match shift.expires_at {
        Some(at) if at > now => {
            if unschedulable {
                return None;
            }
            let mut new = node.clone();
            new.spec.get_or_insert_with(Default::default).unschedulable = Some(true);
            new.metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(CORDONED_ANNOTATION.into(), "true".into());
            let msg = format!(
                "Zonal shift away from zone {zone} until {}: node cordoned, its Pod endpoints removed",
                format_time(at)
            );
            Some((new, event(REASON_STARTED, msg)))
        }
        Some(_) => {
            let mut new = cancel_node(node)?;
            let how = end_cordon(&mut new, shift.cordoned_by_shift);
            let msg = format!("Zonal shift away from zone {zone} expired{how}");
            Some((new, event(REASON_ENDED, msg)))
        }
        None if shift.cordoned_by_shift => {
            let mut new = node.clone();
            let how = end_cordon(&mut new, true);
            let msg = format!("Zonal shift away from zone {zone} ended{how}");
            Some((new, event(REASON_ENDED, msg)))
        }
        None => None,
    }
}

/// Uncordon `node` if the shift cordoned it; the message tail.
fn end_cordon(node: &mut Node, cordoned_by_shift: bool) -> &'static str {
    if !cordoned_by_shift {
        return ": Pod endpoints restored";
    }
    if let Some(a) = node.metadata.annotations.as_mut() {
        a.remove(CORDONED_ANNOTATION);
    }
    node.spec.get_or_insert_with(Default::default).unschedulable = Some(false);
    ": node uncordoned, Pod endpoints restored"
}

/// Cordons the nodes of shifted zones, ends expired shifts and uncordons what a shift
/// cordoned once it is over (see the module docs). Writes are whole-node updates with the
/// cached `resourceVersion` as precondition; a lost race is retried after [`RETRY_MS`].
#[derive(Default)]
pub struct ZonalShiftController {
    /// Active expiries by node (for `poll_timeout`).
    expiries: BTreeMap<String, Moment>,
    /// Nodes to look at again at a time (lost races).
    retries: BTreeMap<String, Moment>,
    out: Outbox,
}

impl ZonalShiftController {
    pub fn new() -> ZonalShiftController {
        ZonalShiftController::default()
    }

    fn reconcile(&mut self, node: &Node, now: Moment) {
        let name = node.metadata.name.clone().unwrap_or_default();
        // An expired shift is ended by the write below; its echo (or a retry) comes back.
        match shift_of(node).expires_at {
            Some(at) if at > now => self.expiries.insert(name.clone(), at),
            _ => self.expiries.remove(&name),
        };
        if let Some((new, event)) = plan_node(node, now) {
            self.out
                .push_coalesced(Action::Update(Object::Node(Arc::new(new))));
            self.out.push_event(event);
        }
    }
}

impl Controller for ZonalShiftController {
    fn name(&self) -> &'static str {
        "zonalshift"
    }

    fn outbox(&mut self) -> &mut Outbox {
        &mut self.out
    }

    fn handle_synced(&mut self, cache: &Cache, now: Moment) {
        for node in cache.nodes.values() {
            self.reconcile(node, now);
        }
    }

    fn handle_change(&mut self, _cache: &Cache, change: &Change, now: Moment) {
        match change {
            Change::Applied {
                new: Object::Node(n),
                ..
            } => {
                self.retries
                    .remove(n.metadata.name.as_deref().unwrap_or(""));
                self.reconcile(n, now);
            }
            Change::Deleted(Object::Node(n)) => {
                let name = n.metadata.name.as_deref().unwrap_or("");
                self.expiries.remove(name);
                self.retries.remove(name);
            }
            _ => {}
        }
    }

    fn handle_timeout(&mut self, cache: &Cache, now: Moment) {
        let due: BTreeSet<String> = self
            .expiries
            .iter()
            .chain(self.retries.iter())
            .filter(|(_, at)| **at <= now)
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            self.retries.remove(&name);
            match cache.nodes.get(&name) {
                Some(node) => self.reconcile(node, now),
                None => {
                    self.expiries.remove(&name);
                }
            }
        }
    }

    fn poll_timeout(&self) -> Option<Moment> {
        self.expiries
            .values()
            .chain(self.retries.values())
            .copied()
            .min()
    }

    fn handle_write_failed(&mut self, action: &Action, error: &WriteError, now: Moment) {
        let Action::Update(Object::Node(n)) = action else {
            return;
        };
        let name = n.metadata.name.clone().unwrap_or_default();
        // A node that is gone needs nothing; an expiry still pending keeps its own timer.
        if *error != WriteError::NotFound {
            self.retries.insert(name, now + RETRY_MS);
        }
    }
}
