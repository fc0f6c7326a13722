//! Table tests: fixed objects, fixed `now`, exact cells as upstream prints them.

use api::resources::by_kind;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

use super::{column_definitions, human_duration, row_cells};

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-10T12:00:00Z")
        .expect("now")
        .with_timezone(&Utc)
}

fn cells(api_version: &str, kind: &str, obj: &Value) -> Vec<Value> {
    let res = by_kind(api_version, kind).expect("served kind");
    let row = row_cells(res, obj, now());
    let cols = column_definitions(res);
    assert_eq!(
        cols.as_array().map(Vec::len),
        Some(row.len()),
        "{kind}: cells align with columns"
    );
    row
}

fn meta(name: &str, created: &str) -> Value {
    json!({"name": name, "namespace": "default", "creationTimestamp": created})
}

#[test]
fn human_duration_matches_upstream() {
    let cases = [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (5, "5s"),
        (119, "119s"),
        (120, "2m"),
        (200, "3m20s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (5 * 3600 + 3 * 60, "5h3m"),
        (20 * 3600, "20h"),
        (53 * 3600, "2d5h"),
        (72 * 3600, "3d"),
        (30 * 86400, "30d"),
        (800 * 86400, "2y70d"),
        (3 * 365 * 86400, "3y"),
        (9 * 365 * 86400, "9y"),
    ];
    for (secs, want) in cases {
        assert_eq!(human_duration(TimeDelta::seconds(secs)), want, "{secs}s");
    }
}

#[test]
fn column_definitions_shape() {
    let res = by_kind("v1", "Service").expect("svc");
    let cols = column_definitions(res);
    assert_eq!(
        cols[0],
        json!({"name": "Name", "type": "string", "format": "name",
               "description": "Name must be unique within a namespace.", "priority": 0})
    );
    let names: Vec<&str> = cols
        .as_array()
        .expect("array")
        .iter()
        .map(|c| c["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        [
            "Name",
            "Type",
            "Cluster-IP",
            "External-IP",
            "Port(s)",
            "Age",
            "Selector"
        ]
    );
    assert_eq!(cols[6]["priority"], json!(1));
    assert_eq!(cols[1]["format"], json!(""));
}

#[test]
fn service_rows() {
    let svc = json!({"metadata": meta("web", "2026-01-10T11:56:40Z"), "spec": {
        "type": "NodePort", "clusterIP": "10.96.12.34", "clusterIPs": ["10.96.12.34"],
        "selector": {"tier": "fe", "app": "web"},
        "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}, {"port": 53, "protocol": "UDP"}]}});
    assert_eq!(
        cells("v1", "Service", &svc),
        [
            json!("web"),
            json!("NodePort"),
            json!("10.96.12.34"),
            json!("<none>"),
            json!("80:30080/TCP,53/UDP"),
            json!("3m20s"),
            json!("app=web,tier=fe")
        ]
    );
    let headless =
        json!({"metadata": meta("db", ""), "spec": {"clusterIP": "None", "clusterIPs": ["None"]}});
    assert_eq!(
        cells("v1", "Service", &headless),
        [
            json!("db"),
            json!("ClusterIP"),
            json!("None"),
            json!("<none>"),
            json!("<none>"),
            json!("<unknown>"),
            json!("<none>")
        ]
    );
    let lb = json!({"metadata": meta("lb", "2026-01-10T12:00:00Z"), "spec": {"type": "LoadBalancer",
        "clusterIPs": ["10.96.0.5"], "externalIPs": ["1.2.3.4"], "ports": [{"port": 443, "protocol": "TCP", "nodePort": 31443}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "9.9.9.9"}, {"hostname": "a.example.com"}]}}});
    assert_eq!(
        cells("v1", "Service", &lb)[3],
        json!("9.9.9.9,a.example.com,1.2.3.4")
    );
    let pending = json!({"metadata": meta("p", ""), "spec": {"type": "LoadBalancer"}});
    assert_eq!(cells("v1", "Service", &pending)[3], json!("<pending>"));
    let ext = json!({"metadata": meta("e", ""), "spec": {"type": "ExternalName", "externalName": "example.com"}});
    assert_eq!(
        cells("v1", "Service", &ext)[2..4],
        [json!("<none>"), json!("example.com")]
    );
}

#[test]
fn pod_rows() {
    let running = json!({"metadata": meta("web-1", "2026-01-09T12:00:00Z"),
        "spec": {"nodeName": "node-a", "containers": [{"name": "app"}, {"name": "side"}]},
        "status": {"phase": "Running", "podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}],
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {"name": "app", "ready": true, "restartCount": 2, "state": {"running": {}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2026-01-10T11:55:00Z"}}},
                {"name": "side", "ready": true, "restartCount": 0, "state": {"running": {}}}]}});
    assert_eq!(
        cells("v1", "Pod", &running),
        [
            json!("web-1"),
            json!("2/2"),
            json!("Running"),
            json!("2 (5m ago)"),
            json!("24h"),
            json!("10.244.1.5"),
            json!("node-a"),
            json!("<none>"),
            json!("<none>")
        ]
    );
    let creating = json!({"metadata": meta("web-2", "2026-01-10T11:59:55Z"),
        "spec": {"containers": [{"name": "app"}], "readinessGates": [{"conditionType": "x/ok"}]},
        "status": {"phase": "Pending", "conditions": [{"type": "x/ok", "status": "False"}],
            "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ContainerCreating"}}}]}});
    assert_eq!(
        cells("v1", "Pod", &creating),
        [
            json!("web-2"),
            json!("0/1"),
            json!("ContainerCreating"),
            json!("0"),
            json!("5s"),
            json!("<none>"),
            json!("<none>"),
            json!("<none>"),
            json!("0/1")
        ]
    );
}

#[test]
fn pod_status_reasons() {
    let status = |pod: Value| cells("v1", "Pod", &pod)[2].clone();
    let base = |extra: Value| {
        let mut p = json!({"metadata": meta("p", ""), "spec": {"containers": [{"name": "app"}]},
                           "status": {"phase": "Running"}});
        for (k, v) in extra.as_object().expect("obj") {
            p["status"][k] = v.clone();
        }
        p
    };
    assert_eq!(
        status(base(
            json!({"containerStatuses": [{"name": "app", "restartCount": 5,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]})
        )),
        json!("CrashLoopBackOff")
    );
    assert_eq!(
        status(base(
            json!({"containerStatuses": [{"name": "app", "state": {"terminated": {"exitCode": 137, "signal": 9}}}]})
        )),
        json!("Signal:9")
    );
    let mut deleting = base(json!({}));
    deleting["metadata"]["deletionTimestamp"] = json!("2026-01-10T11:59:00Z");
    assert_eq!(status(deleting.clone()), json!("Terminating"));
    deleting["status"]["reason"] = json!("NodeLost");
    assert_eq!(status(deleting), json!("Unknown"));
    let mut init = base(json!({"phase": "Pending", "initContainerStatuses": [
        {"name": "setup", "state": {"terminated": {"exitCode": 0}}},
        {"name": "migrate", "state": {"running": {}}}]}));
    init["spec"]["initContainers"] = json!([{"name": "setup"}, {"name": "migrate"}]);
    assert_eq!(status(init), json!("Init:1/2"));
    let gated = base(json!({"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}));
    assert_eq!(status(gated), json!("SchedulingGated"));
}

#[test]
fn node_rows() {
    let node = json!({"metadata": {"name": "node-a", "creationTimestamp": "2026-01-08T07:00:00Z",
            "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "edge"}},
        "spec": {"unschedulable": true},
        "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
            "addresses": [{"type": "Hostname", "address": "node-a"}, {"type": "InternalIP", "address": "172.18.0.2"}],
            "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian GNU/Linux 12", "kernelVersion": "6.1.0",
                         "containerRuntimeVersion": "containerd://1.7.0"}}});
    assert_eq!(
        cells("v1", "Node", &node),
        [
            json!("node-a"),
            json!("Ready,SchedulingDisabled"),
            json!("control-plane,edge"),
            json!("2d5h"),
            json!("v1.33.0"),
            json!("172.18.0.2"),
            json!("<none>"),
            json!("Debian GNU/Linux 12"),
            json!("6.1.0"),
            json!("containerd://1.7.0")
        ]
    );
    let not_ready = json!({"metadata": {"name": "b"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
    assert_eq!(
        cells("v1", "Node", &not_ready)[1..3],
        [json!("NotReady"), json!("<none>")]
    );
    let unknown = json!({"metadata": {"name": "c"}});
    let row = cells("v1", "Node", &unknown);
    assert_eq!(
        (row[1].clone(), row[7].clone()),
        (json!("Unknown"), json!("<unknown>"))
    );
}

#[test]
fn deployment_and_replica_set_rows() {
    let template = json!({"spec": {"containers": [{"name": "app", "image": "nginx:1.27"}, {"name": "log", "image": "busybox"}]}});
    let deploy = json!({"metadata": meta("web", "2026-01-10T09:00:00Z"),
        "spec": {"replicas": 3, "template": template,
                 "selector": {"matchLabels": {"app": "web"},
                              "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]},
                                                   {"key": "canary", "operator": "DoesNotExist"}]}},
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
    assert_eq!(
        cells("apps/v1", "Deployment", &deploy),
        [
            json!("web"),
            json!("2/3"),
            json!(3),
            json!(2),
            json!("3h"),
            json!("app,log"),
            json!("nginx:1.27,busybox"),
            json!("app=web,!canary,env in (dev,prod)")
        ]
    );
    let rs = json!({"metadata": meta("web-5d8f", "2026-01-10T11:00:00Z"),
        "spec": {"replicas": 3, "template": template, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d8f"}}},
        "status": {"replicas": 3, "readyReplicas": 1}});
    assert_eq!(
        cells("apps/v1", "ReplicaSet", &rs),
        [
            json!("web-5d8f"),
            json!(3),
            json!(3),
            json!(1),
            json!("60m"),
            json!("app,log"),
            json!("nginx:1.27,busybox"),
            json!("app=web,pod-template-hash=5d8f")
        ]
    );
    let bare = json!({"metadata": meta("x", "")});
    assert_eq!(cells("apps/v1", "ReplicaSet", &bare)[7], json!("<none>"));
    assert_eq!(cells("apps/v1", "Deployment", &bare)[1], json!("0/1"));
}

#[test]
fn endpoint_slice_namespace_lease_rows() {
    let slice = json!({"metadata": meta("web-abc", "2026-01-10T11:59:00Z"), "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "named"}],
        "endpoints": [{"addresses": ["10.244.1.5"]}, {"addresses": ["10.244.1.6", "10.244.2.7"]},
                      {"addresses": ["10.244.3.8"]}, {"addresses": ["10.244.3.9"]}]});
    assert_eq!(
        cells("discovery.k8s.io/v1", "EndpointSlice", &slice),
        [
            json!("web-abc"),
            json!("IPv4"),
            json!("8080,named"),
            json!("10.244.1.5,10.244.1.6,10.244.2.7 + 2 more..."),
            json!("60s")
        ]
    );
    let empty = json!({"metadata": meta("e", ""), "addressType": "IPv4", "endpoints": []});
    assert_eq!(
        cells("discovery.k8s.io/v1", "EndpointSlice", &empty)[2..4],
        [json!("<unset>"), json!("<unset>")]
    );

    let ns = json!({"metadata": {"name": "kube-system", "creationTimestamp": "2025-12-01T12:00:00Z"},
                    "status": {"phase": "Active"}});
    assert_eq!(
        cells("v1", "Namespace", &ns),
        [json!("kube-system"), json!("Active"), json!("40d")]
    );

    let lease = json!({"metadata": meta("node-a", "2026-01-10T11:00:00Z"), "spec": {"holderIdentity": "node-a"}});
    assert_eq!(
        cells("coordination.k8s.io/v1", "Lease", &lease),
        [json!("node-a"), json!("node-a"), json!("60m")]
    );
}

#[test]
fn event_rows() {
    let ev = json!({"metadata": meta("web-1.17a", "2026-01-10T11:50:00Z"),
        "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{app}"},
        "reason": "BackOff", "message": "Back-off restarting failed container\n", "type": "Warning",
        "source": {"component": "kubelet", "host": "node-a"},
        "firstTimestamp": "2026-01-10T11:50:00Z", "lastTimestamp": "2026-01-10T11:59:30Z", "count": 7});
    assert_eq!(
        cells("v1", "Event", &ev),
        [
            json!("30s"),
            json!("Warning"),
            json!("BackOff"),
            json!("pod/web-1"),
            json!("spec.containers{app}"),
            json!("kubelet, node-a"),
            json!("Back-off restarting failed container"),
            json!("10m"),
            json!(7),
            json!("web-1.17a")
        ]
    );
    let new_style = json!({"metadata": meta("n", ""), "involvedObject": {"kind": "Node"},
        "eventTime": "2026-01-10T11:59:58.123456Z", "reportingComponent": "zonelab-controller",
        "type": "Normal", "reason": "RegisteredNode", "message": "ok"});
    let row = cells("v1", "Event", &new_style);
    assert_eq!(
        (
            row[0].clone(),
            row[3].clone(),
            row[5].clone(),
            row[7].clone(),
            row[8].clone()
        ),
        // 1.88s truncates to 1s, as Go's int(d.Seconds()).
        (
            json!("1s"),
            json!("node"),
            json!("zonelab-controller"),
            json!("1s"),
            json!(1)
        )
    );
}

#[test]
fn statefulset_and_controller_revision_rows_as_upstream() {
    let sts = json!({"metadata": meta("db", "2026-01-10T11:00:00Z"),
        "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "pg", "image": "postgres:16"}]}}},
        "status": {"replicas": 2, "readyReplicas": 1}});
    assert_eq!(
        cells("apps/v1", "StatefulSet", &sts),
        vec![
            json!("db"),
            json!("1/3"),
            json!("60m"),
            json!("pg"),
            json!("postgres:16")
        ]
    );
    let names: Vec<Value> = column_definitions(by_kind("apps/v1", "StatefulSet").unwrap())
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(names, vec!["Name", "Ready", "Age", "Containers", "Images"]);
    let rev = json!({"metadata": {"name": "db-6b9f7c", "namespace": "default",
        "creationTimestamp": "2026-01-10T11:59:00Z",
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "u", "controller": true}]},
        "data": {}, "revision": 2});
    assert_eq!(
        cells("apps/v1", "ControllerRevision", &rev),
        vec![
            json!("db-6b9f7c"),
            json!("statefulset.apps/db"),
            json!(2),
            json!("60s")
        ]
    );
}
