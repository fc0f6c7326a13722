//! The disruption controller (upstream pkg/controller/disruption): keeps every
//! PodDisruptionBudget's status in line with its pods — `currentHealthy`, `desiredHealthy`,
//! `expectedPods`, `disruptionsAllowed`, `disruptedPods`, `observedGeneration` and the
//! `DisruptionAllowed` condition — which the eviction subresource reads and decrements.
//!
//! Start at [`DisruptionController`]; the status of one budget is the pure [`compute_status`].
//! Not done here (as upstream does): events, and resetting stale `DisruptionTarget` pod
//! conditions.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::time::{from_time, to_time};
use crate::workloads::util::{WorkQueue, controller_of};
use crate::{Action, Cache, Change, Controller, Key, Moment, Object, WriteError, pod_is_ready};
use runtime::Outbox;
use runtime::labels::label_selector_matches;

/// Upstream `policy.DisruptionAllowedCondition`.
pub const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";
/// Upstream `policy.SufficientPodsReason`.
pub const SUFFICIENT_PODS: &str = "SufficientPods";
/// Upstream `policy.InsufficientPodsReason`.
pub const INSUFFICIENT_PODS: &str = "InsufficientPods";
/// Upstream `policy.SyncFailedReason`.
pub const SYNC_FAILED: &str = "SyncFailed";

/// Tunables, named after upstream's constants.
#[derive(Clone, Debug)]
pub struct DisruptionConfig {
    /// How long a pod stays in `disruptedPods` (not counted healthy) waiting to be seen
    /// deleted: upstream `DeletionTimeout = 2 * time.Minute`.
    pub deletion_timeout_ms: Duration,
    /// First retry delay after a failed write: 5 ms, doubling (client-go
    /// `DefaultControllerRateLimiter`).
    pub retry_base_ms: Duration,
    /// Retry delay cap: 1000 s (same rate limiter).
    pub retry_max_ms: Duration,
}

impl Default for DisruptionConfig {
    fn default() -> Self {
        DisruptionConfig {
            deletion_timeout_ms: Duration::from_millis(2 * 60 * 1000),
            retry_base_ms: Duration::from_millis(5),
            retry_max_ms: Duration::from_millis(1_000_000),
        }
    }
}

/// The disruption controller.
pub struct DisruptionController {
    cfg: DisruptionConfig,
    queue: WorkQueue,
    /// Writes and Events for the driver to poll; a newer status write of an object replaces
    /// a pending one (`push_coalesced`), so a burst of events yields one write.
    out: Outbox,
}

/// Upstream `intstr.GetScaledValueFromIntOrPercent(v, total, roundUp=true)`.
fn scaled(v: &IntOrString, total: i32) -> Result<i32, String> {
    match v {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let n: i64 = s
                .strip_suffix('%')
                .and_then(|d| d.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            let v = (n * i64::from(total) + 99).div_euclid(100);
            Ok(v as i32)
        }
    }
}

/// The pods a budget selects: none for a missing selector, every pod of the namespace for an
/// empty one (policy/v1 semantics).
pub fn pods_for<'a>(cache: &'a Cache, pdb: &'a PodDisruptionBudget) -> Vec<&'a Arc<Pod>> {
    let ns = pdb.metadata.namespace.as_deref().unwrap_or("");
    let Some(sel) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return Vec::new();
    };
    cache
        .pods_in(ns)
        .filter(|p| label_selector_matches(sel, p.metadata.labels.as_ref()))
        .collect()
}

/// Upstream `getExpectedScale`: the summed scale of the pods' controllers (a Deployment
/// through its ReplicaSet, or a bare ReplicaSet), and the unmanaged pods' names.
fn expected_scale(cache: &Cache, pods: &[&Arc<Pod>]) -> Result<(i32, Vec<String>), String> {
    let mut scale: BTreeMap<String, i32> = BTreeMap::new();
    let mut unmanaged = Vec::new();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(r) = controller_of(&pod.metadata) else {
            unmanaged.push(name);
            continue;
        };
        if scale.contains_key(&r.uid) {
            continue;
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let group = r.api_version.split_once('/').map_or("", |(g, _)| g);
        let rs = (r.kind == "ReplicaSet" && matches!(group, "apps" | "extensions"))
            .then(|| cache.replica_sets.get(&Key::new(ns, &r.name)))
            .flatten()
            .filter(|rs| rs.metadata.uid.as_deref() == Some(&r.uid));
        let Some(rs) = rs else {
            return Err(format!("found no controllers for pod {name:?}"));
        };
        let found = match controller_of(&rs.metadata) {
            Some(d) if d.kind == "Deployment" => cache
                .deployments
                .get(&Key::new(ns, &d.name))
                .filter(|dep| dep.metadata.uid.as_deref() == Some(&d.uid))
                .map(|dep| {
                    let n = dep.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                    (d.uid.clone(), n)
                }),
            _ => Some((
                r.uid.clone(),
                rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            )),
        };
        let Some((uid, n)) = found else {
            return Err(format!("found no controllers for pod {name:?}"));
        };
        scale.insert(uid, n);
    }
    Ok((scale.values().sum(), unmanaged))
}

/// Upstream `getExpectedPodCount`: `(expectedCount, desiredHealthy)`.
fn expected_pod_count(
    cache: &Cache,
    pdb: &PodDisruptionBudget,
    pods: &[&Arc<Pod>],
) -> Result<(i32, i32), String> {
    let spec = pdb.spec.as_ref();
    if let Some(max) = spec.and_then(|s| s.max_unavailable.as_ref()) {
        let (expected, _) = expected_scale(cache, pods)?;
        let max = scaled(max, expected)?;
        return Ok((expected, (expected - max).max(0)));
    }
    match spec.and_then(|s| s.min_available.as_ref()) {
        Some(IntOrString::Int(n)) => Ok((pods.len() as i32, *n)),
        Some(min) => {
            let (expected, _) = expected_scale(cache, pods)?;
            Ok((expected, scaled(min, expected)?))
        }
        None => Ok((0, 0)),
    }
}

/// Upstream `apimeta.SetStatusCondition`: replace the condition of the same type, keeping its
/// transition time unless the status changes.
pub fn set_condition(conds: &mut Vec<Condition>, mut c: Condition) {
    match conds.iter_mut().find(|x| x.type_ == c.type_) {
        Some(old) => {
            if old.status == c.status {
                c.last_transition_time = old.last_transition_time.clone();
            }
            *old = c;
        }
        None => conds.push(c),
    }
}

/// Upstream `pdbhelper.UpdateDisruptionAllowedCondition`.
fn update_allowed_condition(status: &mut PodDisruptionBudgetStatus, now: Moment) {
    let (st, reason) = if status.disruptions_allowed > 0 {
        ("True", SUFFICIENT_PODS)
    } else {
        ("False", INSUFFICIENT_PODS)
    };
    let c = Condition {
        type_: DISRUPTION_ALLOWED.into(),
        status: st.into(),
        reason: reason.into(),
        message: String::new(),
        observed_generation: status.observed_generation,
        last_transition_time: to_time(now),
    };
    set_condition(status.conditions.get_or_insert_with(Vec::new), c);
}

/// Upstream `pdbhelper.ConditionsAreUpToDate`.
fn conditions_up_to_date(pdb: &PodDisruptionBudget) -> bool {
    let Some(status) = pdb.status.as_ref() else {
        return false;
    };
    let cond = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == DISRUPTION_ALLOWED);
    let Some(c) = cond else { return false };
    if status.observed_generation != pdb.metadata.generation {
        return false;
    }
    if status.disruptions_allowed > 0 {
        c.status == "True" && c.reason == SUFFICIENT_PODS
    } else {
        c.status == "False" && c.reason == INSUFFICIENT_PODS
    }
}

/// What one sync decided: the status to write (if it changed) and when to look again.
#[derive(Debug, PartialEq)]
pub struct Computed {
    pub status: Option<PodDisruptionBudgetStatus>,
    pub recheck_at: Option<Moment>,
}

/// Upstream `trySync` + `updatePdbStatus` (or `failSafe` when the expected count cannot be
/// computed) for one budget at `now`, as a pure function of the cache.
pub fn compute_status(
    cache: &Cache,
    pdb: &PodDisruptionBudget,
    deletion_timeout_ms: Duration,
    now: Moment,
) -> Computed {
    let pods = pods_for(cache, pdb);
    let old = pdb.status.clone().unwrap_or_default();
    let (expected, desired) = match expected_pod_count(cache, pdb, &pods) {
        Ok(x) => x,
        Err(e) => {
            let mut status = old;
            status.disruptions_allowed = 0;
            let c = Condition {
                type_: DISRUPTION_ALLOWED.into(),
                status: "False".into(),
                reason: SYNC_FAILED.into(),
                message: e,
                observed_generation: status.observed_generation,
                last_transition_time: to_time(now),
            };
            set_condition(status.conditions.get_or_insert_with(Vec::new), c);
            let changed = pdb.status.as_ref() != Some(&status);
            return Computed {
                status: changed.then_some(status),
                recheck_at: None,
            };
        }
    };
    // Upstream `buildDisruptedPodMap`: keep entries of live pods still within the timeout.
    let mut disrupted = BTreeMap::new();
    let mut recheck_at: Option<Moment> = None;
    let recorded = old.disrupted_pods.clone().unwrap_or_default();
    for pod in &pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(at) = recorded.get(&name) else {
            continue;
        };
        let expires = from_time(at) + deletion_timeout_ms;
        if expires >= now {
            // Look again at the first instant the entry has expired.
            let again = expires + Duration::from_millis(1);
            recheck_at = Some(recheck_at.map_or(again, |r| r.min(again)));
            disrupted.insert(name, at.clone());
        }
    }
    // Upstream `countHealthyPods`.
    let healthy = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            let name = p.metadata.name.as_deref().unwrap_or("");
            !disrupted.contains_key(name)
        })
        .filter(|p| pod_is_ready(p))
        .count() as i32;
    let mut allowed = healthy - desired;
    if expected <= 0 || allowed <= 0 {
        allowed = 0;
    }
    let generation = pdb.metadata.generation;
    let disrupted_opt = (!disrupted.is_empty()).then_some(disrupted);
    let same = old.current_healthy == healthy
        && old.desired_healthy == desired
        && old.expected_pods == expected
        && old.disruptions_allowed == allowed
        && old.disrupted_pods.clone().filter(|m| !m.is_empty()) == disrupted_opt
        && old.observed_generation == generation
        && conditions_up_to_date(pdb);
    if same {
        return Computed {
            status: None,
            recheck_at,
        };
    }
    let mut status = PodDisruptionBudgetStatus {
        current_healthy: healthy,
        desired_healthy: desired,
        expected_pods: expected,
        disruptions_allowed: allowed,
        disrupted_pods: disrupted_opt,
        observed_generation: generation,
        conditions: old.conditions,
    };
    update_allowed_condition(&mut status, now);
    Computed {
        status: Some(status),
        recheck_at,
    }
}

impl DisruptionController {
    pub fn new(cfg: DisruptionConfig) -> DisruptionController {
        let queue = WorkQueue::new(cfg.retry_base_ms, cfg.retry_max_ms);
        DisruptionController {
            cfg,
            queue,
            out: Outbox::new(),
        }
    }

    /// The budgets in `pod`'s namespace that select it.
    fn budgets_of(cache: &Cache, pod: &Pod) -> Vec<Key> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let start = Key::new(ns, "");
        cache
            .pdbs
            .range(start..)
            .take_while(|(k, _)| k.namespace == ns)
            .filter(|(_, pdb)| {
                let sel = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
                sel.is_some_and(|sel| label_selector_matches(sel, pod.metadata.labels.as_ref()))
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn sync(&mut self, cache: &Cache, key: &Key, now: Moment) {
        let Some(pdb) = cache.pdbs.get(key) else {
            self.queue.remove(key);
            return;
        };
        let computed = compute_status(cache, pdb, self.cfg.deletion_timeout_ms, now);
        if let Some(status) = computed.status {
            let mut next = (**pdb).clone();
            next.status = Some(status);
            let action = Action::UpdateStatus(Object::PodDisruptionBudget(Arc::new(next)));
            self.out.push_coalesced(action);
        } else {
            self.queue.forget(key);
        }
        if let Some(at) = computed.recheck_at {
            self.queue.add_at(key.clone(), at.max(now));
        }
    }
}

impl Controller for DisruptionController {
    fn name(&self) -> &'static str {
        "disruption"
    }

    fn outbox(&mut self) -> &mut Outbox {
        &mut self.out
    }

    fn handle_synced(&mut self, cache: &Cache, now: Moment) {
        for key in cache.pdbs.keys() {
            self.queue.add_at(key.clone(), now);
        }
    }

    fn handle_change(&mut self, cache: &Cache, change: &Change, now: Moment) {
        let mut affected = BTreeSet::new();
        match change {
            Change::Applied {
                new: Object::PodDisruptionBudget(p),
                ..
            }
            | Change::Deleted(Object::PodDisruptionBudget(p)) => {
                affected.insert(Key::of(&p.metadata));
            }
            Change::Applied {
                new: Object::Pod(p),
                old,
            } => {
                affected.extend(Self::budgets_of(cache, p));
                if let Some(Object::Pod(o)) = old {
                    affected.extend(Self::budgets_of(cache, o));
                }
            }
            Change::Deleted(Object::Pod(p)) => affected.extend(Self::budgets_of(cache, p)),
            _ => {}
        }
        for key in affected {
            self.queue.add_at(key, now);
        }
    }

    fn handle_timeout(&mut self, cache: &Cache, now: Moment) {
        for key in self.queue.pop_due(now) {
            self.sync(cache, &key, now);
        }
    }

    fn poll_timeout(&self) -> Option<Moment> {
        self.queue.next()
    }

    fn handle_write_failed(&mut self, action: &Action, error: &WriteError, now: Moment) {
        if let Action::UpdateStatus(Object::PodDisruptionBudget(p)) = action {
            let key = Key::of(&p.metadata);
            match error {
                WriteError::NotFound => return,
                WriteError::Conflict => {
                    tracing::debug!("disruption: status of {key} changed under us; resyncing")
                }
                other => tracing::warn!(
                    "disruption: status write of PodDisruptionBudget {key} failed: {other:?}; retrying"
                ),
            }
            self.queue.retry(key, now);
        }
    }
}
