//! The stand-in annotation: a pod with stand-in containers carries
//! `zonelab.io/stand-in: web=nginx:1.25,…` so `kubectl get pod -o yaml` shows what the lab
//! did. Written once with an update built on the cached pod (a conflict waits for the newer
//! pod from the watch), retried after other errors. Start at [`sync_annotation`].

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use runtime::{Action, Moment, Object, WriteError};

use super::config::STATUS_RETRY;
use super::pod::{Ctx, PodState};
use super::standin::{Plan, STAND_IN_ANNOTATION};

/// Write bookkeeping of the annotation.
#[derive(Clone, Debug, Default)]
pub(crate) struct AnnotationSync {
    inflight: bool,
    /// No write before this (after an error other than a conflict).
    retry_at: Option<Moment>,
}

impl AnnotationSync {
    pub fn handle_write_result(&mut self, result: &Result<(), WriteError>, now: Moment) {
        self.inflight = false;
        match result {
            Ok(()) | Err(WriteError::Conflict) | Err(WriteError::NotFound) => {}
            Err(e) => {
                tracing::warn!(error = ?e, "stand-in annotation write failed; retrying");
                self.retry_at = Some(now + STATUS_RETRY);
            }
        }
    }

    pub fn wakeup(&self) -> Option<Moment> {
        self.retry_at.filter(|_| !self.inflight)
    }
}

/// The annotation's value for `st` (`None` without stand-ins).
pub(crate) fn desired(st: &PodState) -> Option<String> {
    let entries: Vec<String> = st
        .containers
        .iter()
        .filter_map(|c| match &c.plan {
            Plan::StandIn { image, .. } => Some(format!("{}={image}", c.spec.name)),
            _ => None,
        })
        .collect();
    (!entries.is_empty()).then(|| entries.join(","))
}

/// Write the annotation on `pod` if it is missing or stale.
pub(crate) fn sync_annotation(st: &mut PodState, pod: &Pod, ctx: &mut Ctx) {
    let Some(want) = desired(st) else { return };
    if st.term.is_some() || pod.metadata.deletion_timestamp.is_some() {
        return;
    }
    let have = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(STAND_IN_ANNOTATION));
    if have == Some(&want) || st.annotation.inflight {
        return;
    }
    if st.annotation.retry_at.is_some_and(|t| ctx.now < t) {
        return;
    }
    st.annotation.retry_at = None;
    st.annotation.inflight = true;
    let mut next = pod.clone();
    next.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(STAND_IN_ANNOTATION.into(), want);
    ctx.out
        .writes
        .push_action(Action::Update(Object::Pod(Arc::new(next))));
}
