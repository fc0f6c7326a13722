//! The `pods/eviction` subresource: a delete that honours PodDisruptionBudgets, as upstream's
//! `EvictionREST` (pkg/registry/core/pod/storage/eviction.go) does. policy/v1 and v1beta1
//! Eviction bodies are both accepted.
//!
//! Start at [`evict`]; the budget decision is the pure [`check_and_decrement`].

use std::sync::Arc;

use api::resources::{self, ResourceInfo};
use api::status::{Cause, Details, StatusError};
use chrono::{DateTime, Utc};
use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::Ctx;
use super::delete::{DeleteOptions, delete_with};
use super::write::{WriteOptions, guaranteed_update};
use crate::objects::{self, UpdateScope};
use crate::path::ResourceTarget;
use crate::server::{Body, Server, json_response};

/// Upstream `MaxDisruptedPodSize`: evictions approved but not yet seen by the disruption
/// controller, per budget.
pub const MAX_DISRUPTED_POD_SIZE: usize = 2000;

/// Upstream's text of every refused eviction (429).
pub const EVICTION_REFUSED: &str =
    "Cannot evict pod as it would violate the pod's disruption budget.";

const EVICTION_VERSIONS: [&str; 2] = ["policy/v1", "policy/v1beta1"];

/// Upstream `EvictionsRetry`: 20 steps of 500 ms (its 10% jitter left out).
const EVICTION_RETRY_STEPS: usize = 20;
const EVICTION_RETRY_MS: u64 = 500;

/// Upstream `NewTooManyRequests` with a `DisruptionBudget` cause.
fn too_many_requests(cause: String, retry_after_seconds: u32) -> StatusError {
    StatusError {
        code: 429,
        reason: "TooManyRequests",
        message: EVICTION_REFUSED.to_string(),
        details: Some(Box::new(Details {
            causes: vec![Cause {
                reason: "DisruptionBudget",
                field: String::new(),
                message: cause,
            }],
            retry_after_seconds: (retry_after_seconds > 0).then_some(retry_after_seconds),
            ..Details::default()
        })),
    }
}

/// Upstream `createTooManyRequestsError`: the budget's status is behind its spec.
fn still_processing(pdb_name: &str) -> StatusError {
    too_many_requests(
        format!("The disruption budget {pdb_name} is still being processed by the server."),
        10,
    )
}

fn forbidden(pdb_name: &str, why: &str) -> StatusError {
    StatusError {
        code: 403,
        reason: "Forbidden",
        message: format!("poddisruptionbudget.policy \"{pdb_name}\" is forbidden: {why}"),
        details: None,
    }
}

fn int(v: &Value, path: &[&str]) -> i64 {
    path.iter()
        .try_fold(v, |cur, p| cur.get(p))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// Upstream `pdbhelper.UpdateDisruptionAllowedCondition` (with `apimeta.SetStatusCondition`'s
/// transition-time rule): `DisruptionAllowed` is True/SufficientPods when disruptions are
/// allowed, else False/InsufficientPods.
pub fn set_disruption_allowed_condition(status: &mut Value, now: DateTime<Utc>) {
    let allowed = status["disruptionsAllowed"].as_i64().unwrap_or(0) > 0;
    let (st, reason) = if allowed {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    let generation = status["observedGeneration"].as_i64().unwrap_or(0);
    set_condition(status, "DisruptionAllowed", st, reason, "", generation, now);
}

/// Upstream `apimeta.SetStatusCondition` on `status.conditions`.
pub fn set_condition(
    status: &mut Value,
    kind: &str,
    st: &str,
    reason: &str,
    message: &str,
    observed_generation: i64,
    now: DateTime<Utc>,
) {
    if !status["conditions"].is_array() {
        status["conditions"] = json!([]);
    }
    let Some(list) = status["conditions"].as_array_mut() else {
        return;
    };
    let fresh = json!({"type": kind, "status": st, "reason": reason, "message": message,
        "observedGeneration": observed_generation,
        "lastTransitionTime": objects::timestamp(now)});
    match list.iter_mut().find(|c| c["type"] == kind) {
        Some(c) => {
            let since = if c["status"] == st {
                c["lastTransitionTime"].clone()
            } else {
                fresh["lastTransitionTime"].clone()
            };
            *c = fresh;
            c["lastTransitionTime"] = since;
        }
        None => list.push(fresh),
    }
}

/// Upstream `checkAndDecrement`: refuse (429/403) or return the budget with one disruption
/// taken and, unless `dry_run`, the pod recorded in `status.disruptedPods` at `now`.
pub fn check_and_decrement(
    pdb: &Value,
    pod_name: &str,
    dry_run: bool,
    now: DateTime<Utc>,
) -> Result<Value, StatusError> {
    let name = objects::name_of(pdb).to_string();
    let status = &pdb["status"];
    if int(status, &["observedGeneration"]) < int(pdb, &["metadata", "generation"]) {
        return Err(still_processing(&name));
    }
    let allowed = int(status, &["disruptionsAllowed"]);
    if allowed < 0 {
        return Err(forbidden(&name, "pdb disruptions allowed is negative"));
    }
    let disrupted = status["disruptedPods"].as_object().map_or(0, |m| m.len());
    if disrupted > MAX_DISRUPTED_POD_SIZE {
        return Err(forbidden(
            &name,
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ));
    }
    if allowed == 0 {
        return Err(too_many_requests(
            format!(
                "The disruption budget {name} needs {} healthy pods and has {} currently",
                int(status, &["desiredHealthy"]),
                int(status, &["currentHealthy"])
            ),
            0,
        ));
    }
    let mut out = pdb.clone();
    out["status"]["disruptionsAllowed"] = json!(allowed - 1);
    if allowed - 1 == 0 {
        set_disruption_allowed_condition(&mut out["status"], now);
    }
    if !dry_run {
        if !out["status"]["disruptedPods"].is_object() {
            out["status"]["disruptedPods"] = json!({});
        }
        out["status"]["disruptedPods"][pod_name] = json!(objects::timestamp(now));
    }
    Ok(out)
}

fn pod_is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// Upstream `canIgnorePDB`: terminal, pending and terminating pods are deleted outright.
fn can_ignore_pdb(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed" | "Pending")
    ) || pod["metadata"].get("deletionTimestamp").is_some()
}

/// Upstream `shouldEnforceResourceVersion`.
fn should_enforce_resource_version(pod: &Value) -> bool {
    !matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    ) && pod["metadata"].get("deletionTimestamp").is_none()
}

/// The budgets in the pod's namespace whose (non-empty) selector matches the pod.
async fn budgets_for(
    server: &Server,
    pdb_res: &ResourceInfo,
    pod: &Value,
) -> Result<Vec<Value>, StatusError> {
    let ns = objects::meta_str(pod, "namespace").unwrap_or("");
    let page = server
        .store
        .list(
            &objects::prefix(pdb_res, Some(ns)),
            store::ListOptions::default(),
        )
        .await
        .map_err(super::store_failure)?;
    let labels = pod["metadata"].get("labels");
    let mut out = Vec::new();
    for kv in &page.items {
        let pdb = objects::decode(kv)?;
        let Some(sel) = pdb["spec"].get("selector").filter(|s| s.is_object()) else {
            continue;
        };
        if api::admit::meta::selector_is_empty(sel)
            || !api::admit::meta::selector_matches(sel, labels)
        {
            continue;
        }
        out.push(pdb);
    }
    Ok(out)
}

/// The Eviction body: its version, its name (must be the URL's), its delete options.
fn parse_eviction(ctx: &Ctx, name: &str) -> Result<(DeleteOptions, bool), StatusError> {
    let body = ctx.body_json()?;
    if let Some(av) = body.get("apiVersion").and_then(Value::as_str)
        && !EVICTION_VERSIONS.contains(&av)
    {
        return Err(StatusError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version (policy/v1)"
        )));
    }
    if let Some(kind) = body.get("kind").and_then(Value::as_str)
        && kind != "Eviction"
    {
        return Err(StatusError::bad_request(format!(
            "not a Eviction object: kind {kind:?}"
        )));
    }
    if objects::name_of(&body) != name {
        return Err(StatusError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    let opts_json = body.get("deleteOptions").cloned().unwrap_or(json!({}));
    let body_dry = opts_json["dryRun"]
        .as_array()
        .is_some_and(|d| d.iter().any(|x| x == "All"));
    let dry_run = WriteOptions::from_ctx(ctx)?.dry_run || body_dry;
    Ok((DeleteOptions::from_json(&opts_json), dry_run))
}

fn success() -> Response<Body> {
    json_response(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    )
}

/// POST `pods/<name>/eviction`.
pub async fn evict(
    server: &Arc<Server>,
    t: &ResourceTarget,
    ctx: &Ctx,
    name: &str,
) -> Result<Response<Body>, StatusError> {
    let (opts, dry_run) = parse_eviction(ctx, name)?;
    let pod_target = ResourceTarget {
        subresource: None,
        ..t.clone()
    };
    let mut attempt = 0;
    let pod = loop {
        let (_, pod) = super::current(server, &pod_target, name).await?;
        if !can_ignore_pdb(&pod) {
            break pod;
        }
        let mut o = opts.clone();
        if should_enforce_resource_version(&pod) && o.resource_version.is_none() {
            o.resource_version = objects::meta_str(&pod, "resourceVersion").map(str::to_string);
        }
        match delete_with(server, &pod_target, name, &o, dry_run).await {
            Ok(_) => return Ok(success()),
            // The pod changed under us: look at it again, as upstream's `EvictionsRetry`.
            Err(e)
                if e.code == 409
                    && opts.resource_version.is_none()
                    && attempt + 1 < EVICTION_RETRY_STEPS =>
            {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(EVICTION_RETRY_MS)).await;
            }
            Err(e) => return Err(e),
        }
    };
    let pdb_res = resources::by_plural("policy", "poddisruptionbudgets")
        .ok_or_else(StatusError::path_not_found)?;
    let budgets = budgets_for(server, pdb_res, &pod).await?;
    if budgets.len() > 1 {
        return Ok(json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                    "code": 500}),
        ));
    }
    let mut pin_version = false;
    let mut pdb_name = String::new();
    if let Some(pdb) = budgets.first() {
        pdb_name = objects::name_of(pdb).to_string();
        let status = &pdb["status"];
        let always_allow = pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow";
        let desired = int(status, &["desiredHealthy"]);
        let healthy_budget = int(status, &["currentHealthy"]) >= desired && desired > 0;
        if !pod_is_ready(&pod) && (always_allow || healthy_budget) {
            // An unready pod does not count towards the budget: delete it without taking a
            // disruption, but only if it is still the pod we looked at.
            pin_version = true;
        } else {
            decrement(server, pdb_res, pdb, name, dry_run).await?;
        }
    }
    let mut o = opts.clone();
    if pin_version {
        o.resource_version = objects::meta_str(&pod, "resourceVersion").map(str::to_string);
    }
    match delete_with(server, &pod_target, name, &o, dry_run).await {
        Ok(_) => Ok(success()),
        Err(e) if e.code == 409 && pin_version && opts.resource_version.is_none() => {
            Err(still_processing(&pdb_name))
        }
        Err(e) => Err(e),
    }
}

/// Take one disruption from `pdb` with compare-and-swap, re-reading it on conflicts.
async fn decrement(
    server: &Server,
    pdb_res: &'static ResourceInfo,
    pdb: &Value,
    pod_name: &str,
    dry_run: bool,
) -> Result<(), StatusError> {
    let pdb_name = objects::name_of(pdb).to_string();
    let target = ResourceTarget {
        res: pdb_res,
        namespace: objects::meta_str(pdb, "namespace").map(str::to_string),
        name: Some(pdb_name.clone()),
        subresource: Some("status".into()),
        watch_path: false,
    };
    let opts = WriteOptions {
        dry_run,
        field_validation: super::FieldValidation::Ignore,
    };
    let now = Utc::now();
    guaranteed_update(
        server,
        &target,
        &pdb_name,
        UpdateScope::Status,
        opts,
        |current| {
            let mut next = check_and_decrement(current, pod_name, dry_run, now)?;
            if let Some(m) = next.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            Ok(next)
        },
    )
    .await
    .map(|_| ())
}

#[cfg(test)]
#[path = "evict_tests.rs"]
mod server_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-10T12:00:00Z")
            .expect("now")
            .with_timezone(&Utc)
    }

    fn pdb(allowed: i64, observed: i64, generation: i64) -> Value {
        json!({"metadata": {"name": "web", "generation": generation},
               "status": {"disruptionsAllowed": allowed, "currentHealthy": 3, "desiredHealthy": 3,
                          "expectedPods": 3, "observedGeneration": observed}})
    }

    #[test]
    fn zero_allowed_is_429_with_the_budget_cause() {
        let e = check_and_decrement(&pdb(0, 1, 1), "p", false, now()).unwrap_err();
        assert_eq!((e.code, e.reason), (429, "TooManyRequests"));
        assert_eq!(e.message, EVICTION_REFUSED);
        let s = e.to_status();
        assert_eq!(s["details"]["causes"][0]["reason"], "DisruptionBudget");
        assert_eq!(
            s["details"]["causes"][0]["message"],
            "The disruption budget web needs 3 healthy pods and has 3 currently"
        );
        assert!(s["details"].get("retryAfterSeconds").is_none());
    }

    #[test]
    fn a_stale_or_negative_budget_refuses() {
        let e = check_and_decrement(&pdb(2, 1, 2), "p", false, now()).unwrap_err();
        assert_eq!(e.code, 429);
        assert_eq!(
            e.to_status()["details"]["causes"][0]["message"],
            "The disruption budget web is still being processed by the server."
        );
        let e = check_and_decrement(&pdb(-1, 1, 1), "p", false, now()).unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "poddisruptionbudget.policy \"web\" is forbidden: pdb disruptions allowed is negative"
        );
    }

    #[test]
    fn an_allowed_eviction_takes_one_and_records_the_pod() {
        let one = check_and_decrement(&pdb(2, 1, 1), "p1", false, now()).unwrap();
        assert_eq!(one["status"]["disruptionsAllowed"], 1);
        assert_eq!(one["status"]["disruptedPods"]["p1"], "2026-01-10T12:00:00Z");
        assert!(one["status"].get("conditions").is_none());
        let last = check_and_decrement(&one, "p2", true, now()).unwrap();
        assert_eq!(last["status"]["disruptionsAllowed"], 0);
        assert!(
            last["status"]["disruptedPods"].get("p2").is_none(),
            "dry run"
        );
        let c = &last["status"]["conditions"][0];
        assert_eq!(
            (&c["type"], &c["status"], &c["reason"]),
            (
                &json!("DisruptionAllowed"),
                &json!("False"),
                &json!("InsufficientPods")
            )
        );
    }
}
