//! Per-Service bookkeeping of the EndpointSlice controller: pending trigger time, our writes
//! in flight (upstream `EndpointSliceTracker`'s job) and the retry count. Start at
//! [`ServiceState`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::cache::Object;
use crate::{Action, Moment};

/// What the controller remembers about one Service.
#[derive(Debug, Default)]
pub(crate) struct ServiceState {
    /// Synced at least once (the first sync uses the Service's creationTimestamp as trigger).
    pub known: bool,
    /// Earliest pod/service change not yet written (upstream `TriggerTimeTracker`).
    pub trigger: Option<Moment>,
    /// Our writes not yet seen back.
    pub inflight: Inflight,
    /// Every endpoint in our slices is current except those of the `dirty` pods (allows a
    /// partial sync of just those).
    pub clean: bool,
    /// Pods changed since the last sync (by name, in the Service's namespace).
    pub dirty: BTreeSet<String>,
    /// Consecutive failed syncs (for backoff).
    pub failures: u32,
    /// `failures` when the last sync started (it counts from zero while its writes are out).
    pub failures_before_sync: u32,
}

/// Writes sent for one Service and not yet seen back through the informer.
#[derive(Debug, Default)]
pub(crate) struct Inflight {
    pub creates: Vec<Arc<EndpointSlice>>,
    pub updates: BTreeMap<String, Arc<EndpointSlice>>,
    pub deletes: BTreeSet<String>,
}

/// Whether an informer event on a slice is the echo of our own write.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Echo {
    Ours,
    Foreign,
}

/// The parts of a slice this controller writes.
fn same_content(a: &EndpointSlice, b: &EndpointSlice) -> bool {
    a.endpoints == b.endpoints
        && a.ports == b.ports
        && a.address_type == b.address_type
        && a.metadata.labels == b.metadata.labels
        && a.metadata.annotations == b.metadata.annotations
}

impl Inflight {
    pub fn is_empty(&self) -> bool {
        self.creates.is_empty() && self.updates.is_empty() && self.deletes.is_empty()
    }

    /// Classify a slice event (`new` absent: deleted) and consume the write it answers.
    pub fn echo(&mut self, new: Option<&EndpointSlice>, old: Option<&EndpointSlice>) -> Echo {
        match (new, old) {
            (None, Some(old)) => {
                let name = old.metadata.name.clone().unwrap_or_default();
                if self.deletes.remove(&name) {
                    Echo::Ours
                } else {
                    Echo::Foreign
                }
            }
            (Some(new), None) => match self.creates.iter().position(|c| same_content(c, new)) {
                Some(i) => {
                    self.creates.remove(i);
                    Echo::Ours
                }
                None => Echo::Foreign,
            },
            (Some(new), Some(_)) => {
                let name = new.metadata.name.clone().unwrap_or_default();
                match self.updates.remove(&name) {
                    Some(sent) if same_content(&sent, new) => Echo::Ours,
                    _ => Echo::Foreign,
                }
            }
            (None, None) => Echo::Foreign,
        }
    }

    /// Forget a write that failed.
    pub fn forget(&mut self, action: &Action) {
        match action {
            Action::Create(Object::EndpointSlice(s)) => {
                if let Some(i) = self
                    .creates
                    .iter()
                    .position(|c| Arc::ptr_eq(c, s) || same_content(c, s))
                {
                    self.creates.remove(i);
                }
            }
            Action::Update(Object::EndpointSlice(s)) => {
                self.updates
                    .remove(s.metadata.name.as_deref().unwrap_or(""));
            }
            Action::Delete { key, .. } => {
                self.deletes.remove(&key.name);
            }
            _ => {}
        }
    }
}
