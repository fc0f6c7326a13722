//! What a component asks the API server to do ([`Action`]), the kinds it reads and writes
//! ([`Kind`]), and why a write failed ([`WriteError`]).
//!
//! Start at [`Action`].

use crate::cache::{Key, Object};

/// A write a controller asks the API server to make. Writes that lose a race (conflict, not
/// found) are reported back through [`crate::Controller::handle_write_failed`]; successful writes
/// come back as [`crate::Change`]s through the informers, as upstream controllers see their own
/// writes.
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

impl Action {
    /// The write's verb (`create`, `update`, `status`, `delete`, `bind`) and the kind it
    /// writes (a binding writes a Pod): the label of write counts in tests and benchmarks.
    pub fn verb_and_kind(&self) -> (&'static str, Kind) {
        match self {
            Action::Create(o) => ("create", o.kind()),
            Action::Update(o) => ("update", o.kind()),
            Action::UpdateStatus(o) => ("status", o.kind()),
            Action::Delete { kind, .. } => ("delete", *kind),
            Action::Bind { .. } => ("bind", Kind::Pod),
        }
    }
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

impl Kind {
    /// Every kind, in declaration order.
    pub const ALL: [Kind; 13] = [
        Kind::Pod,
        Kind::Node,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::Lease,
        Kind::Deployment,
        Kind::ReplicaSet,
        Kind::PodDisruptionBudget,
        Kind::Namespace,
        Kind::ServiceAccount,
        Kind::StatefulSet,
        Kind::ControllerRevision,
        Kind::DaemonSet,
    ];
}

/// Why a write failed, as far as a controller cares.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The object changed since it was read (409 Conflict, or a failed precondition).
    #[error("conflict")]
    Conflict,
    /// The object (or its parent) does not exist (404).
    #[error("not found")]
    NotFound,
    /// A create found the name taken (409 AlreadyExists).
    #[error("already exists")]
    AlreadyExists,
    /// The API rejected the object (422 Invalid, 400 BadRequest).
    #[error("invalid: {0}")]
    Invalid(String),
    /// Anything else (unavailable, timeout, forbidden, fenced), with its message.
    #[error("{0}")]
    Other(String),
}
