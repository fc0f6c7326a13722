//! The rollout strategies and proportional scaling over a [`SyncCtx`]: upstream rolling.go,
//! recreate.go and the scaling half of sync.go.
//!
//! Start at [`SyncCtx::rollout_rolling`], [`SyncCtx::rollout_recreate`], [`SyncCtx::scale_all`].

use std::cmp::Reverse;

use super::sync::{SyncCtx, rs_available, rs_status_replicas};
use super::util::{
    DESIRED_REPLICAS, MAX_REPLICAS, annotation, max_surge, max_unavailable, replicas, rs_replicas,
};
use crate::workloads::util::{controller_of, created, phase};

impl SyncCtx<'_> {
    fn sorted_olds(&self) -> Vec<usize> {
        // Slots are already oldest first.
        self.olds()
    }

    /// Upstream `rolloutRolling`.
    pub fn rollout_rolling(&mut self) {
        if !self.sync_revision(true) {
            return;
        }
        if self.reconcile_new() || self.reconcile_old() {
            self.sync_rollout_status();
            return;
        }
        let cur = self.d.status.clone().unwrap_or_default();
        if self.complete(&cur) {
            self.cleanup();
        }
        self.sync_rollout_status();
    }

    /// Upstream `reconcileNewReplicaSet`: grow the new ReplicaSet within maxSurge.
    fn reconcile_new(&mut self) -> bool {
        let Some(n) = self.new_idx else { return false };
        let want = replicas(self.d);
        let have = rs_replicas(self.rs(n));
        if have == want {
            return false;
        }
        if have > want {
            return self.scale_to(n, want);
        }
        let all: Vec<&k8s_openapi::api::apps::v1::ReplicaSet> =
            self.slots.iter().map(|s| &s.rs).collect();
        let size = self.new_rs_new_replicas(&all, self.rs(n));
        self.scale_to(n, size)
    }

    /// Upstream `reconcileOldReplicaSets`: shrink old ReplicaSets within maxUnavailable,
    /// unhealthy replicas first.
    fn reconcile_old(&mut self) -> bool {
        let olds = self.sorted_olds();
        let old_count: i32 = olds.iter().map(|i| rs_replicas(self.rs(*i))).sum();
        if old_count == 0 {
            return false;
        }
        let all_count: i32 = self.slots.iter().map(|s| rs_replicas(&s.rs)).sum();
        let min_available = replicas(self.d) - max_unavailable(self.d);
        let new_unavailable = self
            .new_idx
            .map(|n| rs_replicas(self.rs(n)) - rs_available(self.rs(n)))
            .unwrap_or(0);
        let max_scaled_down = all_count - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return false;
        }
        let cleaned = self.cleanup_unhealthy(&olds, max_scaled_down);
        let scaled = self.scale_down_old_rolling(&olds);
        cleaned + scaled > 0
    }

    /// Upstream `cleanupUnhealthyReplicas`: drop old replicas that are not available.
    fn cleanup_unhealthy(&mut self, olds: &[usize], max_cleanup: i32) -> i32 {
        let mut total = 0;
        for &i in olds {
            if total >= max_cleanup {
                break;
            }
            let (spec, avail) = (rs_replicas(self.rs(i)), rs_available(self.rs(i)));
            if spec == 0 || avail >= spec {
                continue;
            }
            let down = (max_cleanup - total).min(spec - avail);
            self.scale_to(i, spec - down);
            total += down;
        }
        total
    }

    /// Upstream `scaleDownOldReplicaSetsForRollingUpdate`: keep `replicas - maxUnavailable`
    /// available, oldest ReplicaSets first.
    fn scale_down_old_rolling(&mut self, olds: &[usize]) -> i32 {
        let min_available = replicas(self.d) - max_unavailable(self.d);
        let available: i32 = self.slots.iter().map(|s| rs_available(&s.rs)).sum();
        if available <= min_available {
            return 0;
        }
        let budget = available - min_available;
        let mut total = 0;
        for &i in olds {
            if total >= budget {
                break;
            }
            let spec = rs_replicas(self.rs(i));
            if spec == 0 {
                continue;
            }
            let down = spec.min(budget - total);
            self.scale_to(i, spec - down);
            total += down;
        }
        total
    }

    /// Upstream `rolloutRecreate`: old to zero, wait for their pods to go, then the new one.
    pub fn rollout_recreate(&mut self) {
        if !self.sync_revision(false) {
            return;
        }
        let mut scaled_down = false;
        for i in self.olds() {
            if rs_replicas(self.rs(i)) != 0 {
                scaled_down |= self.scale_to(i, 0);
            }
        }
        if scaled_down || self.old_pods_running() {
            self.sync_rollout_status();
            return;
        }
        if self.new_idx.is_none() && !self.sync_revision(true) {
            return;
        }
        if let Some(n) = self.new_idx {
            self.scale_to(n, replicas(self.d));
        }
        let cur = self.d.status.clone().unwrap_or_default();
        if self.complete(&cur) {
            self.cleanup();
        }
        self.sync_rollout_status();
    }

    /// Upstream `oldPodsRunning`: any old replica reported, or any old pod (even
    /// terminating) not Succeeded/Failed.
    fn old_pods_running(&self) -> bool {
        let olds = self.olds();
        if olds
            .iter()
            .map(|i| rs_status_replicas(self.rs(*i)))
            .sum::<i32>()
            > 0
        {
            return true;
        }
        let uids: Vec<&str> = olds
            .iter()
            .filter_map(|i| self.rs(*i).metadata.uid.as_deref())
            .collect();
        let ns = self.d.metadata.namespace.as_deref().unwrap_or("");
        self.cache.pods_in(ns).any(|p| {
            controller_of(&p.metadata).is_some_and(|r| uids.contains(&r.uid.as_str()))
                && !matches!(phase(p), "Succeeded" | "Failed")
        })
    }

    /// Upstream `isScalingEvent`: an active ReplicaSet was sized for other Deployment replicas.
    pub fn is_scaling_event(&mut self) -> bool {
        if !self.sync_revision(false) {
            return false;
        }
        let want = replicas(self.d).to_string();
        self.slots
            .iter()
            .filter(|s| rs_replicas(&s.rs) > 0)
            .any(|s| annotation(&s.rs, DESIRED_REPLICAS).is_some_and(|v| v != want))
    }

    /// Upstream `sync`: scale (proportionally) without rolling out, then write status.
    pub fn sync_scale(&mut self, paused: bool) {
        if !self.sync_revision(false) {
            return;
        }
        self.scale_all();
        if paused {
            self.cleanup();
        }
        self.sync_deployment_status();
    }

    /// Upstream `FindActiveOrLatest`.
    fn active_or_latest(&self) -> Option<usize> {
        let mut olds = self.olds();
        olds.reverse(); // newest first
        let active: Vec<usize> = olds
            .iter()
            .copied()
            .chain(self.new_idx)
            .filter(|i| rs_replicas(self.rs(*i)) > 0)
            .collect();
        match active.len() {
            0 => self.new_idx.or(olds.first().copied()),
            1 => Some(active[0]),
            _ => None,
        }
    }

    /// Upstream `scale`: resize the ReplicaSets to a new Deployment size, proportionally to
    /// their sizes while a rollout is in progress.
    pub fn scale_all(&mut self) {
        let want = replicas(self.d);
        if let Some(i) = self.active_or_latest() {
            if rs_replicas(self.rs(i)) != want {
                self.scale(i, want);
            }
            return;
        }
        if let Some(n) = self.new_idx.filter(|n| self.saturated(*n)) {
            for i in self.olds() {
                if rs_replicas(self.rs(i)) > 0 && i != n {
                    self.scale_to(i, 0);
                }
            }
            return;
        }
        if super::util::is_recreate(self.d) {
            return;
        }
        let mut active: Vec<usize> = (0..self.slots.len())
            .filter(|i| rs_replicas(self.rs(*i)) > 0)
            .collect();
        let current: i32 = active.iter().map(|i| rs_replicas(self.rs(*i))).sum();
        let allowed = if want > 0 {
            want + max_surge(self.d)
        } else {
            0
        };
        let to_add = allowed - current;
        // Largest first; ties: newer first when growing, older first when shrinking.
        let key = |i: &usize| {
            (
                Reverse(rs_replicas(self.rs(*i))),
                created(&self.rs(*i).metadata),
                *i,
            )
        };
        if to_add > 0 {
            active.sort_by_key(|i| {
                let (r, c, i2) = key(i);
                (r, Reverse(c), Reverse(i2))
            });
        } else {
            active.sort_by_key(key);
        }
        let mut added = 0;
        let mut sizes: Vec<i32> = Vec::with_capacity(active.len());
        for &i in &active {
            let size = rs_replicas(self.rs(i));
            if to_add != 0 {
                let p = self.proportion(i, to_add, added);
                sizes.push(size + p);
                added += p;
            } else {
                sizes.push(size);
            }
        }
        if let Some(first) = sizes.first_mut()
            && to_add != 0
        {
            *first = (*first + to_add - added).max(0);
        }
        for (&i, size) in active.iter().zip(sizes) {
            self.scale(i, size);
        }
    }

    /// Upstream `IsSaturated`.
    fn saturated(&self, n: usize) -> bool {
        let rs = self.rs(n);
        let want = replicas(self.d);
        annotation(rs, DESIRED_REPLICAS).and_then(|v| v.parse::<i32>().ok()) == Some(want)
            && rs_available(rs) == want
            && rs_replicas(rs) == want
    }

    /// Upstream `GetProportion`/`getReplicaSetFraction`.
    fn proportion(&self, i: usize, to_add: i32, added: i32) -> i32 {
        let rs = self.rs(i);
        if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
            return 0;
        }
        let want = replicas(self.d);
        let fraction = if want == 0 {
            -rs_replicas(rs)
        } else {
            let total = want + max_surge(self.d);
            let annotated = annotation(rs, MAX_REPLICAS)
                .and_then(|v| v.parse::<i32>().ok())
                .unwrap_or_else(|| self.d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
            if annotated == 0 {
                0
            } else {
                let exact = f64::from(rs_replicas(rs)) * f64::from(total) / f64::from(annotated);
                exact.round() as i32 - rs_replicas(rs)
            }
        };
        let allowed = to_add - added;
        if to_add > 0 {
            fraction.min(allowed)
        } else {
            fraction.max(allowed)
        }
    }
}
