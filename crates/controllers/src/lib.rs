//! Controllers with upstream semantics, as sans-IO state machines.
//!
//! Start at [`Controller`]: a controller is fed informer [`Change`]s and the time, reads the
//! shared informer [`Cache`], and hands back [`Action`]s (writes) and its next wake-up. It
//! never reads a clock, sleeps or does I/O, so the same struct runs in the live server
//! (the `live` crate's `live::controllers`) and, in the simulator in virtual time.

pub mod autoscaler;
pub mod cache;
pub mod disruption;
pub mod endpointslice;
pub mod events;
pub mod fake;
pub mod leaderelection;
pub mod loadbalancer;
pub mod nodegroups;
pub mod nodelifecycle;
pub mod podgc;
pub mod relist;
pub mod scheduler;
pub mod serviceaccounts;
pub mod time;
pub mod workloads;

pub use cache::{Cache, Change, Key, Object};
pub use time::Millis;

use k8s_openapi::api::core::v1::{Node, Pod};

/// A write a controller asks the API server to make. Writes that lose a race (conflict, not
/// found) are reported back through [`Controller::on_write_failed`]; successful writes come
/// back as [`Change`]s through the informers, as upstream controllers see their own writes.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Create an object (its kind picks the collection).
    Create(Object),
    /// Replace an object; its `metadata.resourceVersion` is the compare-and-swap precondition.
    Update(Object),
    /// Replace an object's `status` subresource (same precondition rule).
    UpdateStatus(Object),
    /// Delete an object; `uid` (when set) is a precondition.
    Delete {
        kind: Kind,
        key: Key,
        uid: Option<String>,
        grace_period_seconds: Option<i64>,
    },
    /// Bind a pending pod to a node (the pods/binding subresource).
    Bind { pod: Key, node: String },
}

/// The kinds controllers read and write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Pod,
    Node,
    Service,
    EndpointSlice,
    Lease,
    Deployment,
    ReplicaSet,
    PodDisruptionBudget,
    Namespace,
    ServiceAccount,
    StatefulSet,
    ControllerRevision,
    DaemonSet,
}

/// Why a write failed, as far as a controller cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteError {
    Conflict,
    NotFound,
    AlreadyExists,
    Invalid(String),
    Other(String),
}

/// A sans-IO controller. The driver calls `on_change` for every informer event (after applying
/// it to the cache), `on_tick` once `next_wakeup` has passed, and drains actions after each.
pub trait Controller: Send {
    /// A short name for logs and metrics, e.g. `endpointslice`.
    fn name(&self) -> &'static str;

    /// Called once all informers have listed (the cache is complete), before any change.
    fn on_synced(&mut self, cache: &Cache, now: Millis) {
        let _ = (cache, now);
    }

    /// An object changed; `cache` already reflects it.
    fn on_change(&mut self, cache: &Cache, change: &Change, now: Millis);

    /// Time passed: do timed work due at or before `now`.
    fn on_tick(&mut self, cache: &Cache, now: Millis) {
        let _ = (cache, now);
    }

    /// When `on_tick` should next run (`None`: only on changes).
    fn next_wakeup(&self) -> Option<Millis> {
        None
    }

    /// Move pending writes into `out`.
    fn drain_actions(&mut self, out: &mut Vec<Action>);

    /// Move the Events recorded since the last call into `out` (upstream `recorder.Eventf`);
    /// the driver hands them to the event recorder.
    fn drain_events(&mut self, out: &mut Vec<events::EventRecord>) {
        let _ = out;
    }

    /// A write this controller asked for failed; typically requeue the key.
    fn on_write_failed(&mut self, action: &Action, error: &WriteError, now: Millis) {
        let _ = (action, error, now);
    }
}

/// True if the pod's `Ready` condition is `True`.
pub fn pod_is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The node's `Ready` condition status (`True`, `False`, `Unknown`), if any.
pub fn node_ready_status(node: &Node) -> Option<&str> {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.as_str())
}

/// The zone label every node carries.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// The hostname label every node carries.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
