//! The Pod printer: Ready `n/m`, Status (phase or the most telling container reason),
//! Restarts with the age of the last restart, and the wide columns.
//!
//! Start at [`cells`]; it mirrors upstream `printPod`.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::Col;
use super::format::{NONE, age, arr, human_duration, int, or_none, s, timestamp};

pub fn columns() -> Vec<Col> {
    vec![
        super::name_col(),
        Col(
            "Ready",
            "string",
            0,
            "The aggregate readiness state of this pod for accepting traffic.",
        ),
        Col(
            "Status",
            "string",
            0,
            "The aggregate status of the containers in this pod.",
        ),
        Col(
            "Restarts",
            "string",
            0,
            "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
        ),
        super::age_col(),
        Col("IP", "string", 1, "The IP address allocated to the pod."),
        Col("Node", "string", 1, "The node the pod is scheduled onto."),
        Col(
            "Nominated Node",
            "string",
            1,
            "The node the scheduler nominated for preemption, if any.",
        ),
        Col(
            "Readiness Gates",
            "string",
            1,
            "Conditions evaluated for pod readiness, true/total.",
        ),
    ]
}

/// Restart bookkeeping: count and the latest `lastState.terminated.finishedAt`.
#[derive(Default, Clone, Copy)]
struct Restarts {
    count: i64,
    last: Option<DateTime<Utc>>,
}

impl Restarts {
    fn add(&mut self, status: &Value) {
        self.count += int(status, &["restartCount"]);
        if let Some(t) = timestamp(s(status, &["lastState", "terminated", "finishedAt"]))
            && self.last.is_none_or(|l| l < t)
        {
            self.last = Some(t);
        }
    }
}

fn condition_true(obj: &Value, cond_type: &str) -> bool {
    arr(obj, &["status", "conditions"])
        .iter()
        .any(|c| s(c, &["type"]) == cond_type && s(c, &["status"]) == "True")
}

fn is_restartable_init(obj: &Value, name: &str) -> bool {
    arr(obj, &["spec", "initContainers"])
        .iter()
        .any(|c| s(c, &["name"]) == name && s(c, &["restartPolicy"]) == "Always")
}

/// Reason from a terminated state without a reason: `Signal:N` or `ExitCode:N`.
fn exit_reason(term: &Value, prefix: &str) -> String {
    match int(term, &["signal"]) {
        0 => format!("{prefix}ExitCode:{}", int(term, &["exitCode"])),
        sig => format!("{prefix}Signal:{sig}"),
    }
}

/// Walks init container statuses as upstream: returns whether the pod is still initializing,
/// updating `reason`, `ready` (sidecars) and the restart counters.
fn init_containers(
    obj: &Value,
    reason: &mut String,
    ready: &mut i64,
    all: &mut Restarts,
    sidecars: &mut Restarts,
) -> bool {
    let init_total = arr(obj, &["spec", "initContainers"]).len();
    for (i, c) in arr(obj, &["status", "initContainerStatuses"])
        .iter()
        .enumerate()
    {
        all.add(c);
        let restartable = is_restartable_init(obj, s(c, &["name"]));
        if restartable {
            sidecars.add(c);
        }
        let term = c.pointer("/state/terminated").filter(|t| t.is_object());
        let waiting = s(c, &["state", "waiting", "reason"]);
        if term.is_some_and(|t| int(t, &["exitCode"]) == 0) {
            continue;
        }
        if restartable && c["started"].as_bool() == Some(true) {
            if c["ready"].as_bool() == Some(true) {
                *ready += 1;
            }
            continue;
        }
        *reason = match term {
            Some(t) => match s(t, &["reason"]) {
                "" => exit_reason(t, "Init:"),
                r => format!("Init:{r}"),
            },
            None if !waiting.is_empty() && waiting != "PodInitializing" => {
                format!("Init:{waiting}")
            }
            None => format!("Init:{i}/{init_total}"),
        };
        return true;
    }
    false
}

/// Walks app container statuses (last to first, as upstream) and updates `reason` and `ready`.
fn app_containers(obj: &Value, reason: &mut String, ready: &mut i64, restarts: &mut Restarts) {
    let mut has_running = false;
    for c in arr(obj, &["status", "containerStatuses"]).iter().rev() {
        restarts.add(c);
        let waiting = s(c, &["state", "waiting", "reason"]);
        let term = c.pointer("/state/terminated").filter(|t| t.is_object());
        if !waiting.is_empty() {
            *reason = waiting.to_string();
        } else if let Some(t) = term {
            *reason = match s(t, &["reason"]) {
                "" => exit_reason(t, ""),
                r => r.to_string(),
            };
        } else if c["ready"].as_bool() == Some(true)
            && c.pointer("/state/running").is_some_and(Value::is_object)
        {
            has_running = true;
            *ready += 1;
        }
    }
    if reason == "Completed" && has_running {
        *reason = if condition_true(obj, "Ready") {
            "Running".into()
        } else {
            "NotReady".into()
        };
    }
}

/// Upstream `printPod` (wide form).
pub fn cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let phase = s(obj, &["status", "phase"]);
    let mut reason = match s(obj, &["status", "reason"]) {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    if arr(obj, &["status", "conditions"])
        .iter()
        .any(|c| s(c, &["type"]) == "PodScheduled" && s(c, &["reason"]) == "SchedulingGated")
    {
        reason = "SchedulingGated".into();
    }
    let sidecar_count = arr(obj, &["spec", "initContainers"])
        .iter()
        .filter(|c| s(c, &["restartPolicy"]) == "Always")
        .count();
    let total = arr(obj, &["spec", "containers"]).len() + sidecar_count;
    let mut ready = 0i64;
    let (mut all, mut sidecars) = (Restarts::default(), Restarts::default());
    let initializing = init_containers(obj, &mut reason, &mut ready, &mut all, &mut sidecars);
    let mut restarts = all;
    if !initializing || condition_true(obj, "Initialized") {
        restarts = sidecars;
        app_containers(obj, &mut reason, &mut ready, &mut restarts);
    }
    let deleting = !s(obj, &["metadata", "deletionTimestamp"]).is_empty();
    if deleting && s(obj, &["status", "reason"]) == "NodeLost" {
        reason = "Unknown".into();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".into();
    }
    let restarts_cell = match restarts.last {
        Some(t) if restarts.count != 0 => {
            format!(
                "{} ({} ago)",
                restarts.count,
                human_duration(now.signed_duration_since(t))
            )
        }
        _ => restarts.count.to_string(),
    };
    let pod_ip = arr(obj, &["status", "podIPs"])
        .first()
        .map_or_else(|| s(obj, &["status", "podIP"]), |p| s(p, &["ip"]));
    vec![
        json!(s(obj, &["metadata", "name"])),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_cell),
        json!(age(obj, now)),
        json!(or_none(pod_ip)),
        json!(or_none(s(obj, &["spec", "nodeName"]))),
        json!(or_none(s(obj, &["status", "nominatedNodeName"]))),
        json!(readiness_gates(obj)),
    ]
}

fn readiness_gates(obj: &Value) -> String {
    let gates = arr(obj, &["spec", "readinessGates"]);
    if gates.is_empty() {
        return NONE.to_string();
    }
    let conditions = arr(obj, &["status", "conditions"]);
    let passed = gates
        .iter()
        .filter(|g| {
            let t = s(g, &["conditionType"]);
            conditions
                .iter()
                .find(|c| s(c, &["type"]) == t)
                .is_some_and(|c| s(c, &["status"]) == "True")
        })
        .count();
    format!("{passed}/{}", gates.len())
}
