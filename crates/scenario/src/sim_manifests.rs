//! What the simulator refuses in a scenario's workload manifests, before anything runs: kinds
//! it does not model, and fields whose behaviour it would silently get wrong (exec probes, which
//! it answers without running a command; lifecycle hooks and init containers, which it never
//! runs; ClientIP session affinity, which its data plane ignores). Start at [`check_object`].

use serde_json::Value;

use crate::locate::Seg;

/// `(apiVersion, kind)` the simulator creates through its API (the controllers read them) or
/// accepts as inert (ConfigMap, Secret: nothing it models reads them). `sim::api` turns the
/// same kinds into objects (its test checks the two agree).
pub const SIM_KINDS: [(&str, &str); 12] = [
    ("v1", "Pod"),
    ("v1", "Service"),
    ("v1", "Namespace"),
    ("v1", "ServiceAccount"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "ReplicaSet"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "DaemonSet"),
    ("policy/v1", "PodDisruptionBudget"),
    ("discovery.k8s.io/v1", "EndpointSlice"),
];

/// A field of one manifest the simulator does not take: where in the object, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Path inside the object (empty: the object itself).
    pub at: Vec<Seg>,
    /// What is refused and what to do instead.
    pub message: String,
}

fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

fn refuse(at: Vec<Seg>, what: &str) -> Refusal {
    Refusal {
        at,
        message: format!("{what}; run without --sim"),
    }
}

/// The first thing in manifest `obj` the simulator does not model.
pub fn check_object(obj: &Value) -> Result<(), Refusal> {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let kind = obj["kind"].as_str().unwrap_or_default();
    if !SIM_KINDS.contains(&(api_version, kind)) {
        let known: Vec<String> = SIM_KINDS.iter().map(|(a, k)| format!("{a} {k}")).collect();
        return Err(refuse(
            vec![key("kind")],
            &format!(
                "{api_version} {kind} is not modelled by the simulator (it takes {})",
                known.join(", ")
            ),
        ));
    }
    if kind == "Service"
        && obj.pointer("/spec/sessionAffinity").and_then(Value::as_str) == Some("ClientIP")
    {
        return Err(refuse(
            vec![key("spec"), key("sessionAffinity")],
            "sessionAffinity: ClientIP is live-only: the simulator's new connections pick uniformly among the programmed endpoints",
        ));
    }
    let (spec, mut at) = match kind {
        "Pod" => (&obj["spec"], vec![key("spec")]),
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => (
            &obj["spec"]["template"]["spec"],
            vec![key("spec"), key("template"), key("spec")],
        ),
        _ => return Ok(()),
    };
    if spec["initContainers"]
        .as_array()
        .is_some_and(|c| !c.is_empty())
    {
        at.push(key("initContainers"));
        return Err(refuse(
            at,
            "initContainers are not modelled by the simulator (its pods start their containers at once)",
        ));
    }
    for (i, c) in spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let mut here = at.clone();
        here.extend([key("containers"), Seg::Index(i)]);
        check_container(c, here)?;
    }
    Ok(())
}

fn check_container(c: &Value, at: Vec<Seg>) -> Result<(), Refusal> {
    for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
        if !c[probe]["exec"].is_null() {
            let mut here = at.clone();
            here.extend([key(probe), key("exec")]);
            return Err(refuse(
                here,
                &format!(
                    "an exec {probe} is live-only: the simulator runs no commands (its probes succeed while the container runs); use httpGet or tcpSocket"
                ),
            ));
        }
    }
    for hook in ["postStart", "preStop"] {
        if !c["lifecycle"][hook].is_null() {
            let mut here = at.clone();
            here.extend([key("lifecycle"), key(hook)]);
            return Err(refuse(
                here,
                &format!(
                    "a {hook} lifecycle hook is not modelled by the simulator (it runs no hooks: a pod's termination is SIGTERM, then SIGKILL after the grace period)"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::locate::render;

    fn deployment(container: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"template": {"spec": {"containers": [{"name": "a"}, container]}}}})
    }

    #[test]
    fn exec_probes_hooks_and_init_containers_are_refused_at_their_field() {
        let e = check_object(&deployment(
            json!({"name": "b", "readinessProbe": {"exec": {"command": ["true"]}}}),
        ))
        .unwrap_err();
        assert_eq!(
            render(&e.at),
            "spec.template.spec.containers[1].readinessProbe.exec"
        );
        assert!(e.message.contains("runs no commands"), "{}", e.message);
        let e = check_object(&deployment(
            json!({"name": "b", "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}}}),
        ))
        .unwrap_err();
        assert_eq!(
            render(&e.at),
            "spec.template.spec.containers[1].lifecycle.preStop"
        );
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "c"}]}});
        assert_eq!(
            render(&check_object(&pod).unwrap_err().at),
            "spec.initContainers"
        );
        let http = json!({"name": "b", "readinessProbe": {"httpGet": {"port": 8080}}});
        assert_eq!(check_object(&deployment(http)), Ok(()));
    }

    #[test]
    fn unmodelled_kinds_and_client_ip_affinity_are_refused() {
        let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}});
        let e = check_object(&job).unwrap_err();
        assert_eq!(render(&e.at), "kind");
        assert!(
            e.message
                .starts_with("batch/v1 Job is not modelled by the simulator"),
            "{}",
            e.message
        );
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"sessionAffinity": "ClientIP"}});
        assert_eq!(
            render(&check_object(&svc).unwrap_err().at),
            "spec.sessionAffinity"
        );
        let plain = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"sessionAffinity": "None"}});
        assert_eq!(check_object(&plain), Ok(()));
    }
}
