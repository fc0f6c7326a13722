//! A DaemonSet's rolling update (upstream pkg/controller/daemon/update.go `rollingUpdate`):
//! without surge, delete old pods while at most `maxUnavailable` nodes lack an available pod
//! (the manage loop then creates the new ones); with `maxSurge`, create a new pod next to an
//! old one on up to `maxSurge` nodes and delete the old one once the new one is available.
//!
//! Start at [`plan`].

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::placement::{node_should_run, pod_is_updated};
use super::sync::{Plan, SyncCtx};
use crate::Cache;
use crate::workloads::deployment::util::scaled;
use crate::workloads::util::pod_is_available;

fn rolling_params(ds: &DaemonSet) -> (IntOrString, IntOrString) {
    let ru = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    (
        ru.and_then(|r| r.max_surge.clone())
            .unwrap_or(IntOrString::Int(0)),
        ru.and_then(|r| r.max_unavailable.clone())
            .unwrap_or(IntOrString::Int(1)),
    )
}

/// Upstream `util.AllowsSurge`: a rolling update whose `maxSurge` resolves to more than 0.
pub(super) fn allows_surge(ds: &DaemonSet) -> bool {
    super::sync::rolling_update(ds) && scaled(&rolling_params(ds).0, 1, true) > 0
}

/// Upstream `updatedDesiredNodeCounts`: (maxSurge, maxUnavailable) scaled by the number of
/// nodes that should run the pod (percentages round up; both 0 means 1 unavailable).
fn fenceposts(ds: &DaemonSet, desired: i32) -> (i32, i32) {
    let (surge, unavailable) = rolling_params(ds);
    let surge = scaled(&surge, desired, true).max(0);
    let mut unavailable = scaled(&unavailable, desired, true).max(0);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable)
}

/// A node's up-to-date and old live daemon pod, if any.
type NewAndOld<'a> = (Option<&'a Arc<Pod>>, Option<&'a Arc<Pod>>);

/// Upstream `findUpdatedPodsOnNode`: the node's one new and one old live pod; `None` when it
/// has two of a kind (the manage loop cleans it up first).
fn new_and_old<'a>(ctx: &SyncCtx<'_>, pods: &[&'a Arc<Pod>]) -> Option<NewAndOld<'a>> {
    let (mut new, mut old) = (None, None);
    for p in pods {
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let slot = if pod_is_updated(p, &ctx.hash, ctx.generation) {
            &mut new
        } else {
            &mut old
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(*p);
    }
    Some((new, old))
}

/// The deletes and creates one rolling-update step makes.
pub(super) fn plan(cache: &Cache, ctx: &SyncCtx<'_>) -> Plan {
    let mut nodes: BTreeMap<&str, Vec<&Arc<Pod>>> = ctx
        .node_pods
        .iter()
        .map(|(n, pods)| (n.as_str(), pods.clone()))
        .collect();
    let mut desired = 0;
    for (name, node) in &cache.nodes {
        if node_should_run(node, ctx.ds).0 {
            desired += 1;
            nodes.entry(name.as_str()).or_default();
        }
    }
    let (max_surge, max_unavailable) = fenceposts(ctx.ds, desired);
    if max_surge == 0 {
        without_surge(ctx, &nodes, max_unavailable)
    } else {
        with_surge(cache, ctx, &nodes, max_surge, desired)
    }
}

fn without_surge(
    ctx: &SyncCtx<'_>,
    nodes: &BTreeMap<&str, Vec<&Arc<Pod>>>,
    max_unavailable: i32,
) -> Plan {
    let available = |p: &Pod| pod_is_available(p, ctx.min_ready, ctx.now);
    let mut unavailable = 0;
    let mut replace: Vec<Arc<Pod>> = Vec::new();
    let mut candidates: Vec<Arc<Pod>> = Vec::new();
    for pods in nodes.values() {
        match new_and_old(ctx, pods) {
            None | Some((None, None)) | Some((Some(_), Some(_))) => unavailable += 1,
            Some((Some(new), None)) => {
                if !available(new) {
                    unavailable += 1;
                }
            }
            Some((None, Some(old))) => {
                if !available(old) {
                    replace.push(Arc::clone(old));
                    unavailable += 1;
                } else if unavailable < max_unavailable {
                    candidates.push(Arc::clone(old));
                }
            }
        }
    }
    let room = (max_unavailable - unavailable).clamp(0, candidates.len() as i32) as usize;
    replace.extend(candidates.into_iter().take(room));
    Plan {
        delete: replace,
        create: Vec::new(),
    }
}

fn with_surge(
    cache: &Cache,
    ctx: &SyncCtx<'_>,
    nodes: &BTreeMap<&str, Vec<&Arc<Pod>>>,
    max_surge: i32,
    desired: i32,
) -> Plan {
    let available = |p: &Pod| pod_is_available(p, ctx.min_ready, ctx.now);
    let should_run = |name: &str| {
        cache
            .nodes
            .get(name)
            .is_some_and(|n| node_should_run(n, ctx.ds).0)
    };
    let mut plan = Plan::default();
    let mut should_not_run: Vec<Arc<Pod>> = Vec::new();
    let mut candidates: Vec<String> = Vec::new();
    let (mut surging, mut num_available) = (0, 0);
    for (name, pods) in nodes {
        let Some((new, old)) = new_and_old(ctx, pods) else {
            surging += 1;
            continue;
        };
        if old.or(new).is_some_and(|p| available(p)) {
            num_available += 1;
        }
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) if !available(old) => {
                if should_run(name) {
                    plan.create.push(name.to_string());
                } else {
                    plan.delete.push(Arc::clone(old));
                }
            }
            (None, Some(old)) => {
                if !should_run(name) {
                    should_not_run.push(Arc::clone(old));
                } else if surging < max_surge {
                    candidates.push(name.to_string());
                }
            }
            (Some(new), Some(old)) => {
                if available(new) {
                    plan.delete.push(Arc::clone(old));
                } else {
                    surging += 1;
                }
            }
        }
    }
    // With surge the owner expects full availability: a pod on a node that should no longer
    // run it goes only while more pods are available than desired.
    let deletable = (num_available - desired).clamp(0, should_not_run.len() as i32) as usize;
    plan.delete
        .extend(should_not_run.into_iter().take(deletable));
    let room = (max_surge - surging).clamp(0, candidates.len() as i32) as usize;
    plan.create.extend(candidates.into_iter().take(room));
    plan
}
