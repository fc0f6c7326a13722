//! Running counts of each ReplicaSet's pods (active, ready, available, fully labelled), kept up
//! to date as pods change, so the sync after a pod change does not walk every pod of a large
//! ReplicaSet (which made a run O(pods²)). Only for `minReadySeconds` 0: otherwise
//! availability depends on the time and the sync counts from the pods.
//!
//! Start at [`Tally::counts`].

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::workloads::util::{available_at, pod_is_active, selector_matches};
use crate::{Moment, pod_is_ready};

/// What `calculateStatus` counts over a ReplicaSet's active pods.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub active: i32,
    pub fully_labeled: i32,
    pub ready: i32,
    pub available: i32,
}

impl Counts {
    /// The counts of `pods` for a ReplicaSet with `selector`, template `labels` and
    /// `min_ready` seconds, at `now`.
    pub fn of<'a>(
        pods: impl IntoIterator<Item = &'a Arc<Pod>>,
        selector: &LabelSelector,
        labels: &BTreeMap<String, String>,
        min_ready: i32,
        now: Moment,
    ) -> Counts {
        let mut c = Counts::default();
        for p in pods {
            c.add(p, selector, labels, min_ready, now, 1);
        }
        c
    }

    fn add(
        &mut self,
        p: &Pod,
        selector: &LabelSelector,
        labels: &BTreeMap<String, String>,
        min_ready: i32,
        now: Moment,
        sign: i32,
    ) {
        if !selector_matches(selector, p.metadata.labels.as_ref()) || !pod_is_active(p) {
            return;
        }
        let has = p.metadata.labels.as_ref();
        let fully = labels
            .iter()
            .all(|(k, v)| has.and_then(|l| l.get(k)) == Some(v));
        self.active += sign;
        self.fully_labeled += sign * i32::from(fully);
        self.ready += sign * i32::from(pod_is_ready(p));
        let available = available_at(p, min_ready).is_some_and(|t| t <= now);
        self.available += sign * i32::from(available);
    }
}

/// The selector and template labels a tally was counted with, and the counts.
#[derive(Debug)]
struct Entry {
    selector: LabelSelector,
    labels: BTreeMap<String, String>,
    counts: Counts,
}

/// Counts by ReplicaSet uid, for ReplicaSets with `minReadySeconds` 0.
#[derive(Debug, Default)]
pub struct Tally {
    by_owner: BTreeMap<String, Entry>,
}

/// The selector and template labels of `rs`.
fn shape(rs: &ReplicaSet) -> Option<(&LabelSelector, BTreeMap<String, String>)> {
    let spec = rs.spec.as_ref()?;
    let labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    Some((&spec.selector, labels))
}

impl Tally {
    pub fn clear(&mut self) {
        self.by_owner.clear();
    }

    /// Pod `p`, controlled by the ReplicaSet `uid`, joins (`sign` 1) or leaves (-1) its set.
    pub fn pod(&mut self, uid: &str, p: &Pod, sign: i32) {
        if let Some(e) = self.by_owner.get_mut(uid) {
            // minReadySeconds 0: availability does not depend on the time.
            e.counts
                .add(p, &e.selector, &e.labels, 0, Moment::EPOCH, sign);
        }
    }

    /// The counts of `rs` (`minReadySeconds` 0), counting its `pods` once when no tally
    /// with its selector and template labels exists yet.
    pub fn counts<'a>(
        &mut self,
        rs: &ReplicaSet,
        pods: impl IntoIterator<Item = &'a Arc<Pod>>,
    ) -> Counts {
        let uid = rs.metadata.uid.clone().unwrap_or_default();
        let Some((selector, labels)) = shape(rs) else {
            return Counts::default();
        };
        if let Some(e) = self.by_owner.get(&uid)
            && e.selector == *selector
            && e.labels == labels
        {
            return e.counts;
        }
        let counts = Counts::of(pods, selector, &labels, 0, Moment::EPOCH);
        self.by_owner.insert(
            uid,
            Entry {
                selector: selector.clone(),
                labels,
                counts,
            },
        );
        counts
    }

    /// Forget ReplicaSet `uid`.
    pub fn remove(&mut self, uid: &str) {
        self.by_owner.remove(uid);
    }
}
