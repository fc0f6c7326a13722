//! Container defaulting and validation (upstream `SetDefaults_Container`, `SetDefaults_Probe`,
//! `validateContainers`, `validateProbe`).
//!
//! Start at [`default_container`] and [`validate_containers`].

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::service::validate_port_num_or_name;
use super::util::{
    arr, child, each_obj_mut, enum_field, has, idx, invalid_each, nonnegative, s, set_if_zero,
};
use crate::names;
use crate::status::Cause;

/// Default probe `timeoutSeconds` (upstream `SetDefaults_Probe`).
pub const PROBE_TIMEOUT_DEFAULT_S: i64 = 1;
/// Default probe `periodSeconds` (upstream `SetDefaults_Probe`).
pub const PROBE_PERIOD_DEFAULT_S: i64 = 10;
/// Default probe `successThreshold` (upstream `SetDefaults_Probe`).
pub const PROBE_SUCCESS_THRESHOLD_DEFAULT: i64 = 1;
/// Default probe `failureThreshold` (upstream `SetDefaults_Probe`).
pub const PROBE_FAILURE_THRESHOLD_DEFAULT: i64 = 3;
/// Default `terminationMessagePath` (upstream `TerminationMessagePathDefault`).
pub const TERMINATION_MESSAGE_PATH_DEFAULT: &str = "/dev/termination-log";

const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const TERMINATION_MESSAGE_POLICIES: &[&str] = &["FallbackToLogsOnError", "File"];
const PROBES: &[&str] = &["livenessProbe", "readinessProbe", "startupProbe"];

/// Whether an image reference names the `latest` tag, explicitly or by omission (upstream
/// `parsers.ParseImageName` + tag check in `SetDefaults_Container`). Digests pin the image.
fn is_latest(image: &str) -> bool {
    if image.contains('@') {
        return false;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) => tag == "latest",
        None => true,
    }
}

/// Upstream `SetDefaults_Container` plus the defaults of its ports, probes and env.
pub fn default_container(c: &mut Map<String, Value>, host_network: bool) {
    let image = c
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let policy = if is_latest(&image) {
        "Always"
    } else {
        "IfNotPresent"
    };
    set_if_zero(c, "imagePullPolicy", json!(policy));
    set_if_zero(
        c,
        "terminationMessagePath",
        json!(TERMINATION_MESSAGE_PATH_DEFAULT),
    );
    set_if_zero(c, "terminationMessagePolicy", json!("File"));
    for port in each_obj_mut(c, "ports") {
        set_if_zero(port, "protocol", json!("TCP"));
        if host_network && super::util::is_zero(port.get("hostPort")) {
            let cp = port.get("containerPort").cloned().unwrap_or(Value::Null);
            port.insert("hostPort".into(), cp);
        }
    }
    for probe in PROBES {
        if let Some(p) = c.get_mut(*probe).and_then(Value::as_object_mut) {
            default_probe(p);
        }
    }
    if let Some(lc) = c.get_mut("lifecycle").and_then(Value::as_object_mut) {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = lc.get_mut(hook).and_then(Value::as_object_mut) {
                default_handler(h);
            }
        }
    }
    for env in each_obj_mut(c, "env") {
        let field_ref = env
            .get_mut("valueFrom")
            .and_then(Value::as_object_mut)
            .and_then(|vf| vf.get_mut("fieldRef"))
            .and_then(Value::as_object_mut);
        if let Some(fr) = field_ref {
            set_if_zero(fr, "apiVersion", json!("v1"));
        }
    }
    default_requests_from_limits(c);
}

/// Upstream `SetDefaults_Pod` (per container): requests default to limits when unset.
fn default_requests_from_limits(c: &mut Map<String, Value>) {
    let Some(res) = c.get_mut("resources").and_then(Value::as_object_mut) else {
        return;
    };
    let Some(limits) = res.get("limits").and_then(Value::as_object).cloned() else {
        return;
    };
    let requests = res.entry("requests").or_insert_with(|| json!({}));
    if let Some(req) = requests.as_object_mut() {
        for (k, v) in limits {
            req.entry(k).or_insert(v);
        }
    }
}

/// Upstream `SetDefaults_Probe` and `SetDefaults_HTTPGetAction`.
fn default_probe(p: &mut Map<String, Value>) {
    set_if_zero(p, "timeoutSeconds", json!(PROBE_TIMEOUT_DEFAULT_S));
    set_if_zero(p, "periodSeconds", json!(PROBE_PERIOD_DEFAULT_S));
    set_if_zero(
        p,
        "successThreshold",
        json!(PROBE_SUCCESS_THRESHOLD_DEFAULT),
    );
    set_if_zero(
        p,
        "failureThreshold",
        json!(PROBE_FAILURE_THRESHOLD_DEFAULT),
    );
    default_handler(p);
}

fn default_handler(h: &mut Map<String, Value>) {
    if let Some(get) = h.get_mut("httpGet").and_then(Value::as_object_mut) {
        set_if_zero(get, "path", json!("/"));
        set_if_zero(get, "scheme", json!("HTTP"));
    }
}

/// Upstream `validateContainers` / `validateInitContainers` for one list; `names` collects
/// container names across both lists (they share one namespace), `port_names` the pod's port names.
pub fn validate_containers(
    list: &[Value],
    path: &str,
    seen: &mut BTreeSet<String>,
    port_names: &mut BTreeSet<String>,
    is_init: bool,
) -> Vec<Cause> {
    let mut out = Vec::new();
    for (i, c) in list.iter().enumerate() {
        let p = idx(path, i);
        let name = s(c, "name");
        if name.is_empty() {
            out.push(Cause::required(child(&p, "name"), ""));
        } else {
            out.extend(invalid_each(
                &child(&p, "name"),
                &json!(name),
                names::dns1123_label_errs(name),
            ));
            if !seen.insert(name.to_string()) {
                out.push(Cause::duplicate(child(&p, "name"), &json!(name)));
            }
        }
        if s(c, "image").trim().is_empty() {
            out.push(Cause::required(child(&p, "image"), ""));
        }
        enum_field(c, "imagePullPolicy", &p, PULL_POLICIES, true, &mut out);
        enum_field(
            c,
            "terminationMessagePolicy",
            &p,
            TERMINATION_MESSAGE_POLICIES,
            true,
            &mut out,
        );
        validate_ports(c, &p, port_names, &mut out);
        validate_env(c, &p, &mut out);
        for probe in PROBES {
            let Some(pr) = c.get(*probe).filter(|v| !v.is_null()) else {
                continue;
            };
            let pp = child(&p, probe);
            if is_init && s(c, "restartPolicy") != "Always" {
                out.push(Cause::forbidden(
                    pp,
                    "may not be set for init containers without restartPolicy=Always",
                ));
                continue;
            }
            out.extend(validate_probe(pr, &pp, *probe != "readinessProbe"));
        }
    }
    out
}

fn validate_ports(c: &Value, path: &str, port_names: &mut BTreeSet<String>, out: &mut Vec<Cause>) {
    for (j, port) in arr(c, "ports").iter().enumerate() {
        let pp = idx(&child(path, "ports"), j);
        let name = s(port, "name");
        if !name.is_empty() {
            out.extend(invalid_each(
                &child(&pp, "name"),
                &json!(name),
                names::port_name_errs(name),
            ));
            if !port_names.insert(name.to_string()) {
                out.push(Cause::duplicate(child(&pp, "name"), &json!(name)));
            }
        }
        let cp = port
            .get("containerPort")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if cp == 0 {
            out.push(Cause::required(child(&pp, "containerPort"), ""));
        } else {
            out.extend(invalid_each(
                &child(&pp, "containerPort"),
                &json!(cp),
                names::port_num_errs(cp),
            ));
        }
        let hp = port.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
        if hp != 0 {
            out.extend(invalid_each(
                &child(&pp, "hostPort"),
                &json!(hp),
                names::port_num_errs(hp),
            ));
        }
        enum_field(port, "protocol", &pp, PROTOCOLS, true, out);
    }
}

fn validate_env(c: &Value, path: &str, out: &mut Vec<Cause>) {
    for (j, e) in arr(c, "env").iter().enumerate() {
        let ep = idx(&child(path, "env"), j);
        let name = s(e, "name");
        if name.is_empty() {
            out.push(Cause::required(child(&ep, "name"), ""));
        } else {
            out.extend(invalid_each(
                &child(&ep, "name"),
                &json!(name),
                names::env_var_name_errs(name),
            ));
        }
        if has(e, "valueFrom") && !s(e, "value").is_empty() {
            out.push(Cause::invalid(
                child(&ep, "valueFrom"),
                &json!(""),
                "may not be specified when `value` is not empty",
            ));
        }
    }
}

/// Upstream `validateProbe` + `validateHandler`; liveness and startup probes need
/// `successThreshold` 1.
fn validate_probe(p: &Value, path: &str, success_must_be_one: bool) -> Vec<Cause> {
    let mut out = Vec::new();
    let handlers: Vec<&str> = ["exec", "httpGet", "tcpSocket", "grpc"]
        .into_iter()
        .filter(|h| has(p, h))
        .collect();
    match handlers.len() {
        0 => out.push(Cause::required(path, "must specify a handler type")),
        1 => {}
        _ => out.push(Cause::forbidden(
            child(path, handlers[1]),
            "may not specify more than 1 handler type",
        )),
    }
    for key in [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        nonnegative(p, key, path, &mut out);
    }
    if success_must_be_one
        && let Some(n) = p
            .get("successThreshold")
            .and_then(Value::as_i64)
            .filter(|n| *n != 1)
    {
        out.push(Cause::invalid(
            child(path, "successThreshold"),
            &json!(n),
            "must be 1",
        ));
    }
    if let Some(get) = p.get("httpGet").filter(|v| v.is_object()) {
        let gp = child(path, "httpGet");
        if !has(get, "port") {
            out.push(Cause::required(child(&gp, "port"), ""));
        }
        out.extend(validate_port_num_or_name(
            get.get("port"),
            &child(&gp, "port"),
        ));
        enum_field(get, "scheme", &gp, &["HTTP", "HTTPS"], true, &mut out);
    }
    if let Some(tcp) = p.get("tcpSocket").filter(|v| v.is_object()) {
        let tp = child(path, "tcpSocket");
        if !has(tcp, "port") {
            out.push(Cause::required(child(&tp, "port"), ""));
        }
        out.extend(validate_port_num_or_name(
            tcp.get("port"),
            &child(&tp, "port"),
        ));
    }
    if let Some(exec) = p.get("exec").filter(|v| v.is_object())
        && arr(exec, "command").is_empty()
    {
        out.push(Cause::required(child(&child(path, "exec"), "command"), ""));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::admit::cause_lines as lines;

    #[test]
    fn pull_policy_by_tag() {
        assert!(is_latest("nginx"));
        assert!(is_latest("nginx:latest"));
        assert!(is_latest("registry:5000/nginx"));
        assert!(!is_latest("registry:5000/nginx:1.27"));
        assert!(!is_latest("nginx@sha256:abc"));
    }

    #[test]
    fn container_and_probe_defaults() {
        let mut c = json!({"name": "a", "image": "nginx:1.27", "ports": [{"containerPort": 80}],
            "livenessProbe": {"httpGet": {"port": 80}}})
        .as_object()
        .cloned()
        .unwrap_or_default();
        default_container(&mut c, false);
        let c = Value::Object(c);
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["terminationMessagePolicy"], "File");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(
            c["livenessProbe"],
            json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                   "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
        );
    }

    #[test]
    fn container_rules() {
        let list = vec![
            json!({"name": "a", "image": "x", "imagePullPolicy": "Sometimes", "terminationMessagePolicy": "File",
                   "ports": [{"containerPort": 0, "protocol": "TCP"}],
                   "livenessProbe": {"successThreshold": 2}}),
            json!({"name": "a", "imagePullPolicy": "Always", "terminationMessagePolicy": "File"}),
        ];
        let errs = validate_containers(
            &list,
            "spec.containers",
            &mut BTreeSet::new(),
            &mut BTreeSet::new(),
            false,
        );
        assert_eq!(
            lines(&errs),
            vec![
                "spec.containers[0].imagePullPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\"",
                "spec.containers[0].ports[0].containerPort: Required value",
                "spec.containers[0].livenessProbe: Required value: must specify a handler type",
                "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
                "spec.containers[1].name: Duplicate value: \"a\"",
                "spec.containers[1].image: Required value",
            ]
        );
    }
}
