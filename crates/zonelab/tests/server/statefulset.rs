//! StatefulSets through stock kubectl (1.27 and 1.33) against a real `zonelab server` with a
//! registered Node but no kubelet: ordered start, identity, headless Service, the table,
//! describe/scale/rollout, ControllerRevisions, the Terminating trap and `--force
//! --grace-period=0`, and a StatefulSet whose selector does not match refused.

use crate::common;

use std::time::Duration;

use common::{Kubectl, ServerProc, kubectl_versions};
use serde_json::Value;

/// A Node that reports Ready (no kubelet behind it: its pods stay Pending once bound).
const NODE: &str = r#"
apiVersion: v1
kind: Node
metadata:
  name: sts-node-a
  labels:
    topology.kubernetes.io/zone: zone-a
status:
  allocatable: {cpu: "4", memory: 8Gi, pods: "110"}
  capacity: {cpu: "4", memory: 8Gi, pods: "110"}
  conditions:
  - type: Ready
    status: "True"
"#;

const APP: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: db
spec:
  clusterIP: None
  selector:
    app: db
  ports:
  - port: 5432
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  serviceName: db
  replicas: 3
  selector:
    matchLabels:
      app: db
  template:
    metadata:
      labels:
        app: db
    spec:
      containers:
      - name: postgres
        image: postgres:16
        ports:
        - containerPort: 5432
"#;

const BAD: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: bad
spec:
  serviceName: bad
  selector:
    matchLabels:
      app: other
  template:
    metadata:
      labels:
        app: bad
    spec:
      containers:
      - name: c
        image: busybox
"#;

fn json(k: &Kubectl, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&k.ok(&all, None)).expect("kubectl json")
}

/// Poll `f` (bounded: 300 tries, 100 ms apart) until it yields a value.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..300 {
        if let Some(v) = f() {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

fn pod(k: &Kubectl, name: &str) -> Option<Value> {
    let out = k.run(&["get", "pod", name, "-o", "json"], None);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).expect("pod json"))
}

fn check_with(bin: &std::path::Path, minor: u32) {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path(), &["--leader-elect=false"]);
    let k = Kubectl::with_binary(&server, bin);
    k.ok(&["apply", "-f", "-"], Some(NODE));
    let out = k.ok(&["apply", "-f", "-"], Some(APP));
    assert!(out.contains("statefulset.apps/db created"), "{out}");

    // OrderedReady: db-0 is created and bound; db-1 waits for db-0 to be Running and Ready.
    let p0 = eventually("db-0 bound", || {
        pod(&k, "db-0").filter(|p| p["spec"]["nodeName"] == "sts-node-a")
    });
    let labels = &p0["metadata"]["labels"];
    assert_eq!(labels["statefulset.kubernetes.io/pod-name"], "db-0");
    assert_eq!(labels["apps.kubernetes.io/pod-index"], "0");
    assert_eq!(p0["spec"]["hostname"], "db-0");
    assert_eq!(p0["spec"]["subdomain"], "db");
    let rev = labels["controller-revision-hash"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(rev.starts_with("db-"), "{rev}");
    let sts = eventually("status written", || {
        let s = json(&k, &["get", "sts", "db"]);
        (s["status"]["updateRevision"] == rev.as_str()).then_some(s)
    });
    assert_eq!(sts["status"]["observedGeneration"], 1);
    assert_eq!(sts["spec"]["podManagementPolicy"], "OrderedReady");
    assert_eq!(
        sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"],
        "Retain"
    );
    assert!(pod(&k, "db-1").is_none(), "db-1 must wait for db-0");

    // The table, short name and categories.
    let table = k.ok(&["get", "sts"], None);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "AGE"], "{table}");
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..2], ["db", "0/3"], "{table}");
    assert!(k.ok(&["get", "all"], None).contains("statefulset.apps/db"));
    let revs = k.ok(&["get", "controllerrevisions"], None);
    assert!(
        revs.contains(&rev) && revs.contains("statefulset.apps/db"),
        "{revs}"
    );

    // Headless: no ClusterIP allocated, an EndpointSlice all the same.
    let svc = json(&k, &["get", "svc", "db"]);
    assert_eq!(svc["spec"]["clusterIPs"], serde_json::json!(["None"]));
    let slices = eventually("headless slice", || {
        let s = json(
            &k,
            &[
                "get",
                "endpointslices",
                "-l",
                "kubernetes.io/service-name=db",
            ],
        );
        (!s["items"].as_array().unwrap().is_empty()).then_some(s)
    });
    assert!(
        slices["items"][0]["metadata"]["labels"]
            .get("service.kubernetes.io/headless")
            .is_some(),
        "{slices}"
    );

    // rollout status / history, describe, scale.
    let status = k.ok(&["rollout", "status", "sts/db", "--watch=false"], None);
    assert!(
        status.contains("Waiting for 3 pods to be ready"),
        "{status}"
    );
    let history = k.ok(&["rollout", "history", "sts/db"], None);
    assert!(
        history.contains("REVISION") && history.contains('1'),
        "{history}"
    );
    let describe = eventually("describe shows the create event", || {
        let d = k.ok(&["describe", "sts", "db"], None);
        d.contains("create Pod db-0 in StatefulSet db successful")
            .then_some(d)
    });
    assert!(describe.contains("SuccessfulCreate"), "{describe}");
    let scaled = k.ok(&["scale", "sts", "db", "--replicas=2"], None);
    assert!(scaled.contains("statefulset.apps/db scaled"), "{scaled}");
    assert_eq!(json(&k, &["get", "sts", "db"])["spec"]["replicas"], 2);

    // A template change makes revision 2; `rollout undo` patches the set with revision 1's
    // data (a `$patch: replace` of the template), which renumbers it to 3.
    k.ok(&["set", "image", "sts/db", "postgres=postgres:17"], None);
    eventually("revision 2", || {
        let revs = json(&k, &["get", "controllerrevisions"]);
        let mut n: Vec<i64> = revs["items"]
            .as_array()?
            .iter()
            .filter_map(|r| r["revision"].as_i64())
            .collect();
        n.sort();
        (n == [1, 2]).then_some(())
    });
    let undo = k.ok(&["rollout", "undo", "sts/db"], None);
    assert!(undo.contains("rolled back"), "{undo}");
    let sts = json(&k, &["get", "sts", "db"]);
    assert_eq!(
        sts["spec"]["template"]["spec"]["containers"][0]["image"], "postgres:16",
        "{sts}"
    );
    eventually("revision 1 renumbered to 3", || {
        let revs = json(&k, &["get", "controllerrevisions"]);
        let mine = revs["items"]
            .as_array()?
            .iter()
            .find(|r| r["metadata"]["name"] == rev.as_str())?
            .clone();
        (mine["revision"] == 3).then_some(())
    });

    // The trap: a graceful delete of a bound pod whose kubelet never answers leaves it
    // Terminating, and the StatefulSet does not replace it.
    let uid = p0["metadata"]["uid"].as_str().unwrap().to_string();
    k.ok(&["delete", "pod", "db-0", "--wait=false"], None);
    let held = pod(&k, "db-0").expect("still there");
    assert!(held["metadata"]["deletionTimestamp"].is_string(), "{held}");
    assert_eq!(held["metadata"]["uid"], uid.as_str());
    let table = k.ok(&["get", "pod", "db-0"], None);
    assert!(table.contains("Terminating"), "{table}");
    // `--force --grace-period=0` removes the object now; the controller recreates db-0.
    let out = k.run(
        &["delete", "pod", "db-0", "--force", "--grace-period=0"],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("force deleted"),
        "{out:?}"
    );
    let again = eventually("db-0 recreated", || {
        pod(&k, "db-0").filter(|p| p["metadata"]["uid"] != uid.as_str())
    });
    assert!(again["metadata"]["deletionTimestamp"].is_null(), "{again}");

    // Bad input: refused with upstream's text, nothing stored.
    let err = k.fails(&["apply", "-f", "-"], Some(BAD));
    assert!(
        err.contains("spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"bad\"}: `selector` does not match template `labels`"),
        "kubectl 1.{minor}: {err}"
    );
    let missing = k.fails(&["get", "sts", "bad"], None);
    assert!(
        missing.contains("NotFound") || missing.contains("not found"),
        "{missing}"
    );
}

#[test]
fn statefulset_with_stock_kubectl() {
    let versions = kubectl_versions();
    let wanted: Vec<_> = versions
        .iter()
        .filter(|(minor, _)| matches!(minor, 27 | 33))
        .collect();
    assert!(
        !wanted.is_empty() || versions.is_empty(),
        "kubectl 1.27/1.33 missing"
    );
    for (minor, bin) in wanted {
        check_with(bin, *minor);
    }
}

/// Deleting the Node object of a dead machine frees its StatefulSet pod: the pod GC fails and
/// force-deletes pods bound to a node gone for its 40 s quarantine, and the controller
/// recreates the pod under the same name.
#[test]
fn deleting_the_node_object_frees_a_terminating_statefulset_pod() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path(), &["--leader-elect=false"]);
    let k = Kubectl::new(&server);
    k.ok(&["apply", "-f", "-"], Some(NODE));
    k.ok(&["apply", "-f", "-"], Some(APP));
    let p0 = eventually("db-0 bound", || {
        pod(&k, "db-0").filter(|p| p["spec"]["nodeName"] == "sts-node-a")
    });
    let uid = p0["metadata"]["uid"].as_str().unwrap().to_string();
    k.ok(&["delete", "pod", "db-0", "--wait=false"], None);
    assert!(pod(&k, "db-0").unwrap()["metadata"]["deletionTimestamp"].is_string());
    k.ok(&["delete", "node", "sts-node-a"], None);
    // Bounded: quarantine 40 s + one 20 s check period, plus slack.
    let mut again = None;
    for _ in 0..120 {
        if let Some(p) = pod(&k, "db-0").filter(|p| p["metadata"]["uid"] != uid.as_str()) {
            again = Some(p);
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let again = again.expect("db-0 recreated after its node was deleted");
    assert!(again["metadata"]["deletionTimestamp"].is_null(), "{again}");
}
