//! Node health bookkeeping: when the controller last saw a node's heartbeat (Lease renewal or
//! Ready heartbeat), and the status/pod rewrites it derives (upstream `tryUpdateNodeHealth`,
//! `MarkPodsNotReady`).
//!
//! Start at [`try_update_health`].

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, PodCondition};

use crate::Moment;
use crate::time::{from_time, to_time};

/// The four conditions the controller sets to Unknown (upstream leaves NetworkUnavailable
/// alone: it is managed by the control plane).
pub const UNKNOWN_CONDITION_TYPES: [&str; 4] =
    ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];
/// Reason upstream writes when the kubelet stopped posting.
pub const REASON_STATUS_UNKNOWN: &str = "NodeStatusUnknown";
/// Message upstream writes when the kubelet stopped posting.
pub const MESSAGE_STATUS_UNKNOWN: &str = "Kubelet stopped posting node status.";
/// Reason upstream writes for a condition the kubelet never posted.
pub const REASON_NEVER_UPDATED: &str = "NodeStatusNeverUpdated";
/// Message upstream writes for a condition the kubelet never posted.
pub const MESSAGE_NEVER_UPDATED: &str = "Kubelet never posted node status.";

/// A condition status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    True,
    False,
    Unknown,
    /// Anything else (upstream's switches fall through on it).
    Other,
}

impl Status {
    pub fn parse(s: &str) -> Status {
        match s {
            "True" => Status::True,
            "False" => Status::False,
            "Unknown" => Status::Unknown,
            _ => Status::Other,
        }
    }
}

/// What the controller remembers of a node's Ready condition (upstream keeps the whole status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadySnapshot {
    pub status: Status,
    pub heartbeat: Option<Moment>,
}

/// Upstream `nodeHealthData`, minus the transition timestamp nothing reads any more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeHealth {
    /// When this controller last observed a heartbeat (a pass time, not the kubelet's clock).
    pub probe: Moment,
    /// The Ready condition as last saved.
    pub saved_ready: Option<ReadySnapshot>,
    /// The Lease `renewTime` last seen.
    pub lease_renew: Option<Moment>,
}

/// What one health check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthOutcome {
    /// The Ready status at the start of the pass (`Unknown` if the node has no Ready condition).
    pub observed: Status,
    /// The Ready status after the check (`None`: no Ready condition and still in startup grace).
    pub current: Option<Status>,
    /// Set when the check decided to write the conditions Unknown: the decision time and the
    /// Ready heartbeat it was based on.
    pub mark_unknown: Option<(Moment, Option<Moment>)>,
}

/// The node's condition of type `ty`.
pub fn condition<'a>(node: &'a Node, ty: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == ty)
}

fn snapshot(c: &NodeCondition) -> ReadySnapshot {
    ReadySnapshot {
        status: Status::parse(&c.status),
        heartbeat: c.last_heartbeat_time.as_ref().map(from_time),
    }
}

/// Grace periods the check applies.
#[derive(Clone, Copy, Debug)]
pub struct Graces {
    pub monitor: Duration,
    pub startup: Duration,
}

/// Upstream `tryUpdateNodeHealth`, with the write left to the caller: refresh the node's
/// probe time from its Ready heartbeat and Lease, and decide whether it is past its grace.
///
/// `now >= probe + grace` (upstream: `now.After(probe + grace)`): upstream's loop drifts later
/// by its own running time every period, so the pass that lands exactly on `probe + grace` in
/// virtual time is, upstream, a little after it.
pub fn try_update_health(
    entry: &mut Option<NodeHealth>,
    node: &Node,
    lease_renew: Option<Moment>,
    graces: Graces,
    now: Moment,
) -> HealthOutcome {
    let current = condition(node, "Ready");
    let creation = node
        .metadata
        .creation_timestamp
        .as_ref()
        .map(from_time)
        .unwrap_or(now);
    let (observed, grace) = match current {
        Some(c) => (Status::parse(&c.status), graces.monitor),
        None => (Status::Unknown, graces.startup),
    };
    if current.is_none() {
        match entry {
            Some(h) => h.saved_ready = None,
            None => {
                *entry = Some(NodeHealth {
                    probe: creation,
                    saved_ready: None,
                    lease_renew: None,
                })
            }
        }
    }
    let saved_lease = entry.as_ref().and_then(|h| h.lease_renew);
    let cur = current.map(snapshot);
    // A fresh record drops the saved lease, as upstream's new `nodeHealthData{}` does: the
    // next pass then counts the (unchanged) lease as new once more.
    let fresh = |now| NodeHealth {
        probe: now,
        saved_ready: cur,
        lease_renew: None,
    };
    let mut health = match entry.take() {
        None => fresh(now),
        Some(h) => match (&h.saved_ready, &cur) {
            (None, Some(_)) | (Some(_), None) => fresh(now),
            (Some(s), Some(c)) if s.heartbeat != c.heartbeat => fresh(now),
            _ => h,
        },
    };
    if let Some(renew) = lease_renew
        && saved_lease.is_none_or(|saved| saved < renew)
    {
        health.lease_renew = Some(renew);
        health.probe = now;
    }
    let mut outcome = HealthOutcome {
        observed,
        current: cur.map(|c| c.status),
        mark_unknown: None,
    };
    if now >= health.probe + grace && outcome.current != Some(Status::Unknown) {
        let heartbeat = cur.and_then(|c| c.heartbeat);
        let hb = cur.map_or(Some(creation), |c| c.heartbeat);
        outcome.mark_unknown = Some((now, heartbeat));
        outcome.current = Some(Status::Unknown);
        health = NodeHealth {
            probe: health.probe,
            saved_ready: Some(ReadySnapshot {
                status: Status::Unknown,
                heartbeat: hb,
            }),
            lease_renew: lease_renew.or(health.lease_renew),
        };
    }
    *entry = Some(health);
    outcome
}

/// The node with Ready, MemoryPressure, DiskPressure and PIDPressure set to Unknown as of
/// `at` (upstream `tryUpdateNodeHealth` past grace). `None` if that changes nothing.
pub fn with_conditions_unknown(node: &Node, at: Moment) -> Option<Node> {
    let mut new = node.clone();
    let creation = node.metadata.creation_timestamp.clone();
    let conditions = new
        .status
        .get_or_insert_with(Default::default)
        .conditions
        .get_or_insert_with(Vec::new);
    let mut changed = false;
    for ty in UNKNOWN_CONDITION_TYPES {
        match conditions.iter_mut().find(|c| c.type_ == ty) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".into();
                c.reason = Some(REASON_STATUS_UNKNOWN.into());
                c.message = Some(MESSAGE_STATUS_UNKNOWN.into());
                c.last_transition_time = Some(to_time(at));
                changed = true;
            }
            None => {
                conditions.push(NodeCondition {
                    type_: ty.into(),
                    status: "Unknown".into(),
                    reason: Some(REASON_NEVER_UPDATED.into()),
                    message: Some(MESSAGE_NEVER_UPDATED.into()),
                    last_heartbeat_time: creation.clone(),
                    last_transition_time: Some(to_time(at)),
                });
                changed = true;
            }
        }
    }
    changed.then_some(new)
}

/// Upstream `MarkPodsNotReady` for one pod: its `Ready` condition set to False (reason and
/// message kept; `lastTransitionTime` = `now` as upstream `UpdatePodCondition`). `None` if the
/// pod has no Ready condition or it is already False. ContainersReady is not touched.
pub fn pod_marked_not_ready(pod: &Pod, now: Moment) -> Option<Pod> {
    let cond = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    if cond.status == "False" {
        return None;
    }
    let mut new = pod.clone();
    let conditions = new.status.as_mut()?.conditions.as_mut()?;
    let c = conditions.iter_mut().find(|c| c.type_ == "Ready")?;
    *c = PodCondition {
        status: "False".into(),
        last_transition_time: Some(to_time(now)),
        ..c.clone()
    };
    Some(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::T0;
    use serde_json::json;

    const G: Graces = Graces {
        monitor: Duration::from_millis(50_000),
        startup: Duration::from_millis(60_000),
    };

    fn node(ready: Option<(&str, Moment)>) -> Node {
        let conds = match ready {
            Some((s, hb)) => {
                json!([{"type": "Ready", "status": s, "lastHeartbeatTime": to_time(hb), "lastTransitionTime": to_time(T0)}])
            }
            None => json!([]),
        };
        serde_json::from_value(json!({"metadata": {"name": "n", "creationTimestamp": to_time(T0)}, "status": {"conditions": conds}}))
            .expect("node")
    }

    #[test]
    fn lease_renewal_moves_probe_and_grace_expires() {
        let mut h = None;
        let n = node(Some(("True", T0)));
        let o = try_update_health(&mut h, &n, Some(T0), G, T0);
        assert_eq!(
            (o.observed, o.current, o.mark_unknown),
            (Status::True, Some(Status::True), None)
        );
        let o = try_update_health(
            &mut h,
            &n,
            Some(T0 + Duration::from_millis(10_000)),
            G,
            T0 + Duration::from_millis(12_000),
        );
        assert!(o.mark_unknown.is_none());
        assert_eq!(
            h.as_ref().map(|h| h.probe),
            Some(T0 + Duration::from_millis(12_000))
        );
        let o = try_update_health(
            &mut h,
            &n,
            Some(T0 + Duration::from_millis(10_000)),
            G,
            T0 + Duration::from_millis(61_999),
        );
        assert!(o.mark_unknown.is_none());
        let o = try_update_health(
            &mut h,
            &n,
            Some(T0 + Duration::from_millis(10_000)),
            G,
            T0 + Duration::from_millis(62_000),
        );
        assert_eq!(
            o.mark_unknown,
            Some((T0 + Duration::from_millis(62_000), Some(T0)))
        );
        assert_eq!(o.current, Some(Status::Unknown));
        let unknown =
            with_conditions_unknown(&n, T0 + Duration::from_millis(62_000)).expect("changes");
        let c = condition(&unknown, "Ready").expect("ready");
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref()),
            ("Unknown", Some(REASON_STATUS_UNKNOWN))
        );
        assert_eq!(
            condition(&unknown, "PIDPressure").and_then(|c| c.reason.as_deref()),
            Some(REASON_NEVER_UPDATED)
        );
        assert!(with_conditions_unknown(&unknown, T0 + Duration::from_millis(70_000)).is_none());
    }

    #[test]
    fn never_ready_node_gets_startup_grace_from_creation() {
        let mut h = None;
        let n = node(None);
        let o = try_update_health(&mut h, &n, None, G, T0 + Duration::from_millis(59_000));
        assert_eq!((o.observed, o.current), (Status::Unknown, None));
        let o = try_update_health(&mut h, &n, None, G, T0 + Duration::from_millis(60_000));
        assert_eq!(o.current, Some(Status::Unknown));
        assert!(o.mark_unknown.is_some());
    }
}
