//! Service defaulting and validation (upstream `SetDefaults_Service`, `ValidateService`,
//! `ValidateServiceUpdate`).
//!
//! Start at [`default`] and [`validate`]. ClusterIP allocation (clusterIP, clusterIPs,
//! ipFamilies, ipFamilyPolicy) and node-port ranges belong to the API server's allocators.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::meta::validate_labels;
use super::util::{
    arr, child, each_obj_mut, ensure_obj, enum_field, go_strings, idx, invalid_each, invalid_raw,
    s, set_if_absent, set_if_zero,
};
use crate::names;
use crate::status::Cause;

/// Default `spec.sessionAffinityConfig.clientIP.timeoutSeconds` (upstream
/// `DefaultClientIPServiceAffinitySeconds`, pkg/apis/core/v1/defaults.go): 3 hours.
pub const CLIENT_IP_TIMEOUT_DEFAULT_S: i64 = 10_800;
/// Upper bound of the ClientIP affinity timeout (upstream `MaxClientIPServiceAffinitySeconds`): 1 day.
pub const CLIENT_IP_TIMEOUT_MAX_S: i64 = 86_400;

const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const AFFINITIES: &[&str] = &["ClientIP", "None"];
const TRAFFIC_POLICIES: &[&str] = &["Cluster", "Local"];
const TRAFFIC_DISTRIBUTIONS: &[&str] = &["PreferClose"];
const IP_FAMILIES: &[&str] = &["IPv4", "IPv6"];
const IP_FAMILY_POLICIES: &[&str] = &["PreferDualStack", "RequireDualStack", "SingleStack"];

/// NodePort and LoadBalancer Services, and ClusterIP ones with external IPs (upstream
/// `ExternallyAccessible`).
fn externally_accessible(spec: &Value) -> bool {
    matches!(s(spec, "type"), "NodePort" | "LoadBalancer")
        || (s(spec, "type") == "ClusterIP" && !arr(spec, "externalIPs").is_empty())
}

/// Upstream `SetDefaults_Service` (pkg/apis/core/v1/defaults.go).
pub fn default(obj: &mut Value) {
    let Some(spec) = obj.as_object_mut().and_then(|o| ensure_obj(o, "spec")) else {
        return;
    };
    set_if_zero(spec, "sessionAffinity", json!("None"));
    if spec.get("sessionAffinity").and_then(Value::as_str) == Some("ClientIP") {
        let client_ip =
            ensure_obj(spec, "sessionAffinityConfig").and_then(|c| ensure_obj(c, "clientIP"));
        if let Some(c) = client_ip {
            set_if_absent(c, "timeoutSeconds", json!(CLIENT_IP_TIMEOUT_DEFAULT_S));
        }
    }
    set_if_zero(spec, "type", json!("ClusterIP"));
    for port in each_obj_mut(spec, "ports") {
        set_if_zero(port, "protocol", json!("TCP"));
        if super::util::is_zero(port.get("targetPort"))
            && let Some(p) = port.get("port").cloned()
        {
            port.insert("targetPort".into(), p);
        }
    }
    let view = Value::Object(spec.clone());
    let ty = s(&view, "type");
    if ty != "ExternalName" {
        set_if_absent(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if externally_accessible(&view) {
        set_if_zero(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        set_if_absent(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
}

/// The clusterIPs the object carries after upstream's `PrepareForCreate` normalization:
/// `clusterIPs`, or `[clusterIP]` when only the singular field is set.
fn cluster_ips(spec: &Value) -> Vec<String> {
    let list: Vec<String> = arr(spec, "clusterIPs")
        .iter()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    if list.is_empty() && !s(spec, "clusterIP").is_empty() {
        vec![s(spec, "clusterIP").to_string()]
    } else {
        list
    }
}

fn is_headless(spec: &Value) -> bool {
    cluster_ips(spec) == ["None"]
}

/// Upstream `ValidateService` (spec part; metadata is checked by the caller).
pub fn validate(obj: &Value) -> Vec<Cause> {
    let empty = json!({});
    let spec = obj.get("spec").unwrap_or(&empty);
    let mut out = Vec::new();
    let ty = s(spec, "type");
    let ports = arr(spec, "ports");
    if ports.is_empty() && !is_headless(spec) && ty != "ExternalName" {
        out.push(Cause::required("spec.ports", ""));
    }
    if ty == "ExternalName" {
        validate_external_name(spec, &mut out);
    } else {
        validate_cluster_ips(spec, &mut out);
    }
    validate_ports(spec, &mut out);
    if !s(spec, "type").is_empty() && !TYPES.contains(&ty) {
        out.push(Cause::not_supported("spec.type", &json!(ty), TYPES));
    }
    if ty == "ClusterIP" {
        for (i, p) in ports.iter().enumerate() {
            if p.get("nodePort").and_then(Value::as_i64).unwrap_or(0) != 0 {
                out.push(Cause::forbidden(
                    child(&idx("spec.ports", i), "nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }
    validate_affinity(spec, &mut out);
    out.extend(validate_labels(spec.get("selector"), "spec.selector"));
    for (i, ip) in arr(spec, "externalIPs").iter().enumerate() {
        let ip = ip.as_str().unwrap_or("");
        out.extend(invalid_each(
            &idx("spec.externalIPs", i),
            &json!(ip),
            names::ip_errs(ip),
        ));
    }
    validate_traffic_policies(spec, &mut out);
    out
}

fn validate_external_name(spec: &Value, out: &mut Vec<Cause>) {
    if !cluster_ips(spec).is_empty() {
        out.push(Cause::forbidden(
            "spec.clusterIPs",
            "may not be set for ExternalName services",
        ));
    }
    let cname = s(spec, "externalName").trim_end_matches('.');
    if cname.is_empty() {
        out.push(Cause::required("spec.externalName", ""));
    } else {
        out.extend(invalid_each(
            "spec.externalName",
            &json!(cname),
            names::dns1123_subdomain_errs(cname),
        ));
    }
}

fn validate_cluster_ips(spec: &Value, out: &mut Vec<Cause>) {
    let single = s(spec, "clusterIP");
    let ips = cluster_ips(spec);
    if !single.is_empty() && ips.first().map(String::as_str) != Some(single) {
        out.push(invalid_raw(
            "spec.clusterIPs",
            &go_strings(&ips),
            "first value must match `clusterIP`",
        ));
    } else if single.is_empty() && !ips.is_empty() {
        out.push(invalid_raw(
            "spec.clusterIPs",
            &go_strings(&ips),
            "must be empty when `clusterIP` is not specified",
        ));
    }
    for (i, ip) in ips.iter().enumerate() {
        if i == 0 && ip == "None" {
            if ips.len() > 1 {
                out.push(invalid_raw(
                    "spec.clusterIPs",
                    &go_strings(&ips),
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        out.extend(invalid_each(
            &idx("spec.clusterIPs", i),
            &json!(ip),
            names::ip_errs(ip),
        ));
    }
    if ips.len() > 2 {
        out.push(invalid_raw(
            "spec.clusterIPs",
            &go_strings(&ips),
            "may only hold up to 2 values",
        ));
    }
    let families = arr(spec, "ipFamilies");
    let mut seen = BTreeSet::new();
    for (i, f) in families.iter().enumerate() {
        let f = f.as_str().unwrap_or("");
        let p = idx("spec.ipFamilies", i);
        if !IP_FAMILIES.contains(&f) {
            out.push(Cause::not_supported(p.clone(), &json!(f), IP_FAMILIES));
        }
        if !seen.insert(f) {
            out.push(Cause::duplicate(p, &json!(f)));
        }
    }
    enum_field(
        spec,
        "ipFamilyPolicy",
        "spec",
        IP_FAMILY_POLICIES,
        false,
        out,
    );
}

fn validate_ports(spec: &Value, out: &mut Vec<Cause>) {
    let ports = arr(spec, "ports");
    let mut names_seen = BTreeSet::new();
    let mut keys_seen = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let path = idx("spec.ports", i);
        let name = s(p, "name");
        if ports.len() > 1 && name.is_empty() {
            out.push(Cause::required(child(&path, "name"), ""));
        } else if !name.is_empty() {
            out.extend(invalid_each(
                &child(&path, "name"),
                &json!(name),
                names::dns1123_label_errs(name),
            ));
            if !names_seen.insert(name) {
                out.push(Cause::duplicate(child(&path, "name"), &json!(name)));
            }
        }
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        out.extend(invalid_each(
            &child(&path, "port"),
            &json!(port),
            names::port_num_errs(port),
        ));
        enum_field(p, "protocol", &path, PROTOCOLS, true, out);
        out.extend(validate_port_num_or_name(
            p.get("targetPort"),
            &child(&path, "targetPort"),
        ));
        if let Some(ap) = p.get("appProtocol").and_then(Value::as_str) {
            out.extend(invalid_each(
                &child(&path, "appProtocol"),
                &json!(ap),
                names::qualified_name_errs(ap),
            ));
        }
        let proto = s(p, "protocol");
        if !keys_seen.insert((port, proto)) {
            let raw = format!(
                "core.ServicePort{{Name:\"\", Protocol:{proto:?}, AppProtocol:(*string)(nil), Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}"
            );
            out.push(Cause {
                reason: "FieldValueDuplicate",
                field: path,
                message: format!("Duplicate value: {raw}"),
            });
        }
    }
}

/// Upstream `ValidatePortNumOrName`: an int in 1..65535 or an IANA service name.
pub(crate) fn validate_port_num_or_name(v: Option<&Value>, path: &str) -> Vec<Cause> {
    match v {
        Some(Value::Number(n)) => {
            let n = n.as_i64().unwrap_or(0);
            invalid_each(path, &json!(n), names::port_num_errs(n))
        }
        Some(Value::String(name)) => invalid_each(path, &json!(name), names::port_name_errs(name)),
        Some(Value::Null) | None => Vec::new(),
        Some(other) => vec![invalid_raw(
            path,
            &other.to_string(),
            "must be an integer or a string",
        )],
    }
}

fn validate_affinity(spec: &Value, out: &mut Vec<Cause>) {
    enum_field(spec, "sessionAffinity", "spec", AFFINITIES, true, out);
    let config = spec.get("sessionAffinityConfig").filter(|v| !v.is_null());
    match s(spec, "sessionAffinity") {
        "ClientIP" => {
            let when = "when session affinity type is ClientIP";
            let Some(cfg) = config else {
                out.push(Cause::required("spec.sessionAffinityConfig", when));
                return;
            };
            let Some(cip) = cfg.get("clientIP").filter(|v| !v.is_null()) else {
                out.push(Cause::required("spec.sessionAffinityConfig.clientIP", when));
                return;
            };
            let path = "spec.sessionAffinityConfig.clientIP.timeoutSeconds";
            match cip.get("timeoutSeconds").and_then(Value::as_i64) {
                None => out.push(Cause::required(path, when)),
                Some(t) if t <= 0 || t > CLIENT_IP_TIMEOUT_MAX_S => out.push(Cause::invalid(
                    path,
                    &json!(t),
                    &format!("must be greater than 0 and less than {CLIENT_IP_TIMEOUT_MAX_S}"),
                )),
                Some(_) => {}
            }
        }
        "None" if config.is_some() => out.push(Cause::forbidden(
            "spec.sessionAffinityConfig",
            "must not be set when session affinity is None",
        )),
        _ => {}
    }
}

fn validate_traffic_policies(spec: &Value, out: &mut Vec<Cause>) {
    let etp = s(spec, "externalTrafficPolicy");
    if externally_accessible(spec) {
        enum_field(
            spec,
            "externalTrafficPolicy",
            "spec",
            TRAFFIC_POLICIES,
            true,
            out,
        );
    } else if !etp.is_empty() {
        out.push(Cause::invalid(
            "spec.externalTrafficPolicy",
            &json!(etp),
            "may only be set for externally-accessible services",
        ));
    }
    validate_health_check_node_port(spec, out);
    if s(spec, "type") != "ExternalName" {
        enum_field(
            spec,
            "internalTrafficPolicy",
            "spec",
            TRAFFIC_POLICIES,
            true,
            out,
        );
    }
    // Upstream `validateServiceTrafficDistribution` (1.31+; PreferSameZone and PreferSameNode
    // need the PreferSameTrafficDistribution gate, off in 1.33).
    enum_field(
        spec,
        "trafficDistribution",
        "spec",
        TRAFFIC_DISTRIBUTIONS,
        false,
        out,
    );
}

/// Upstream `ValidateServiceUpdate` additions: an assigned clusterIP is immutable.
///
/// Upstream's REST layer first copies the old clusterIP(s) into an update that omits them
/// (`patchAllocatedValues`); the API server is expected to do the same before calling this.
/// The `healthCheckNodePort` half of upstream `validateServiceExternalTrafficPolicy`: only a
/// LoadBalancer with `externalTrafficPolicy: Local` may carry one, and it must be a port
/// number. (Upstream also requires it there; this API server validates before it allocates
/// the port, so an unset one is allocated instead.)
fn validate_health_check_node_port(spec: &Value, out: &mut Vec<Cause>) {
    let Some(port) = spec.get("healthCheckNodePort").filter(|v| !v.is_null()) else {
        return;
    };
    let n = port.as_i64().unwrap_or(-1);
    if n == 0 {
        return;
    }
    let path = "spec.healthCheckNodePort";
    let needs = s(spec, "type") == "LoadBalancer" && s(spec, "externalTrafficPolicy") == "Local";
    if !needs {
        out.push(Cause::invalid(
            path,
            port,
            "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
        ));
    } else if !(1..=65_535).contains(&n) {
        out.push(Cause::invalid(
            path,
            port,
            "must be between 1 and 65535, inclusive",
        ));
    }
}

pub fn validate_update(new: &Value, old: &Value) -> Vec<Cause> {
    let empty = json!({});
    let ns = new.get("spec").unwrap_or(&empty);
    let os = old.get("spec").unwrap_or(&empty);
    let mut out = Vec::new();
    if s(ns, "type") != "ExternalName"
        && s(os, "type") != "ExternalName"
        && !s(os, "clusterIP").is_empty()
    {
        let (n, o) = (s(ns, "clusterIP"), s(os, "clusterIP"));
        if n != o {
            out.push(Cause::invalid(
                "spec.clusterIP",
                &json!(n),
                "field is immutable",
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
    }

    use crate::admit::cause_lines as lines;

    #[test]
    fn defaults_minimal_service() {
        let mut svc = minimal();
        default(&mut svc);
        assert_eq!(
            svc["spec"],
            json!({"selector": {"app": "web"}, "type": "ClusterIP", "sessionAffinity": "None",
                   "internalTrafficPolicy": "Cluster",
                   "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]})
        );
        assert!(validate(&svc).is_empty());
    }

    #[test]
    fn defaults_nodeport_and_client_ip() {
        let mut svc = minimal();
        svc["spec"]["type"] = json!("NodePort");
        svc["spec"]["sessionAffinity"] = json!("ClientIP");
        default(&mut svc);
        assert_eq!(svc["spec"]["externalTrafficPolicy"], json!("Cluster"));
        assert_eq!(
            svc["spec"]["sessionAffinityConfig"],
            json!({"clientIP": {"timeoutSeconds": 10800}})
        );
        assert!(validate(&svc).is_empty());
    }

    #[test]
    fn port_rules() {
        let mut svc = minimal();
        svc["spec"]["ports"] = json!([{"port": 0, "protocol": "ICMP", "targetPort": "8080"}, {"name": "b", "port": 70000}]);
        default(&mut svc);
        assert_eq!(
            lines(&validate(&svc)),
            vec![
                "spec.ports[0].name: Required value",
                "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.ports[0].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                "spec.ports[0].targetPort: Invalid value: \"8080\": must contain at least one letter (a-z)",
                "spec.ports[1].port: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.ports[1].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            ]
        );
    }

    #[test]
    fn traffic_distribution_prefer_close_only() {
        let mut svc = minimal();
        svc["spec"]["trafficDistribution"] = json!("PreferClose");
        default(&mut svc);
        assert!(validate(&svc).is_empty());
        svc["spec"]["trafficDistribution"] = json!("PreferSameNode");
        assert_eq!(
            lines(&validate(&svc)),
            vec![
                "spec.trafficDistribution: Unsupported value: \"PreferSameNode\": supported values: \"PreferClose\""
            ]
        );
    }

    #[test]
    fn ports_required_unless_headless() {
        let mut svc = json!({"spec": {}});
        default(&mut svc);
        assert_eq!(lines(&validate(&svc)), vec!["spec.ports: Required value"]);
        svc["spec"]["clusterIP"] = json!("None");
        assert!(validate(&svc).is_empty());
    }

    #[test]
    fn duplicate_names_and_ports() {
        let mut svc = minimal();
        svc["spec"]["ports"] = json!([{"name": "a", "port": 80}, {"name": "a", "port": 80}]);
        default(&mut svc);
        let l = lines(&validate(&svc));
        assert_eq!(l[0], "spec.ports[1].name: Duplicate value: \"a\"");
        assert!(l[1].starts_with(
            "spec.ports[1]: Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\""
        ));
    }

    #[test]
    fn type_cluster_ip_and_affinity() {
        let mut svc = minimal();
        svc["spec"]["type"] = json!("Magic");
        svc["spec"]["clusterIP"] = json!("10.0.0.300");
        svc["spec"]["sessionAffinity"] = json!("ClientIP");
        svc["spec"]["sessionAffinityConfig"] = json!({"clientIP": {"timeoutSeconds": 0}});
        default(&mut svc);
        assert_eq!(
            lines(&validate(&svc)),
            vec![
                "spec.clusterIPs[0]: Invalid value: \"10.0.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                "spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater than 0 and less than 86400",
            ]
        );
    }

    #[test]
    fn health_check_node_port_only_for_local_load_balancers() {
        let mut svc = minimal();
        svc["spec"]["type"] = json!("NodePort");
        svc["spec"]["externalTrafficPolicy"] = json!("Local");
        svc["spec"]["healthCheckNodePort"] = json!(30100);
        default(&mut svc);
        let msgs = |v: &Value| lines(&validate(v));
        assert_eq!(
            msgs(&svc),
            vec![
                "spec.healthCheckNodePort: Invalid value: 30100: may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"
            ]
        );
        svc["spec"]["type"] = json!("LoadBalancer");
        assert!(msgs(&svc).is_empty());
        svc["spec"]["healthCheckNodePort"] = json!(70000);
        assert_eq!(
            msgs(&svc),
            vec![
                "spec.healthCheckNodePort: Invalid value: 70000: must be between 1 and 65535, inclusive"
            ]
        );
    }

    #[test]
    fn external_name_and_node_port_on_cluster_ip() {
        let mut svc = json!({"spec": {"type": "ExternalName"}});
        default(&mut svc);
        assert_eq!(
            lines(&validate(&svc)),
            vec!["spec.externalName: Required value"]
        );
        let mut svc = minimal();
        svc["spec"]["ports"][0]["nodePort"] = json!(30080);
        default(&mut svc);
        assert_eq!(
            lines(&validate(&svc)),
            vec!["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]
        );
    }

    #[test]
    fn cluster_ips_must_match_cluster_ip() {
        let mut svc = minimal();
        svc["spec"]["clusterIP"] = json!("10.96.0.1");
        svc["spec"]["clusterIPs"] = json!(["10.96.0.2"]);
        default(&mut svc);
        assert_eq!(
            lines(&validate(&svc)),
            vec![
                "spec.clusterIPs: Invalid value: []string{\"10.96.0.2\"}: first value must match `clusterIP`"
            ]
        );
    }

    #[test]
    fn cluster_ip_immutable() {
        let mut old = minimal();
        old["spec"]["clusterIP"] = json!("10.96.0.10");
        let mut new = old.clone();
        new["spec"]["clusterIP"] = json!("10.96.0.11");
        assert_eq!(
            lines(&validate_update(&new, &old)),
            vec!["spec.clusterIP: Invalid value: \"10.96.0.11\": field is immutable"]
        );
        assert!(validate_update(&old, &old).is_empty());
        let unassigned = minimal();
        assert!(validate_update(&new, &unassigned).is_empty());
    }
}
