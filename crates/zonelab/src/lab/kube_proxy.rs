//! The kube-proxy DaemonSet record `lab up` keeps in `kube-system` (on by default;
//! `--kube-proxy-daemonset=false` leaves it out), so `kubectl get ds -n kube-system` shows
//! kube-proxy with DESIRED = nodes, as on EKS.
//!
//! Start at [`record`]. The choice, honestly: every node's kube-proxy runs inside its `zonelab
//! agent` process (with the kubelet), not as a pod, so the DaemonSet carries the annotation
//! [`controllers::workloads::daemonset::NODE_AGENT`]. The DaemonSet controller creates no pods
//! for it and derives its status from the nodes the template selects: an eligible node counts as
//! scheduled and up to date, and as ready while the node is Ready (its agent's kubelet renews
//! the node's status; the same process runs the proxy). The template says what runs there: the
//! agent binary with this lab's proxy mode, host networking, EKS's tolerate-everything
//! toleration and its 10% maxUnavailable.

use anyhow::Context;
use k8s_openapi::api::apps::v1::DaemonSet;
use kube::api::{Api, PostParams};
use serde_json::json;

use controllers::workloads::daemonset::NODE_AGENT;

/// Where EKS (and kubeadm) keep kube-proxy.
pub const NAMESPACE: &str = "kube-system";
pub const NAME: &str = "kube-proxy";

/// The DaemonSet standing for every agent's kube-proxy in `proxy_mode`.
pub fn manifest(proxy_mode: &str) -> anyhow::Result<DaemonSet> {
    let labels = json!({"k8s-app": NAME});
    let v = json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "labels": {"k8s-app": NAME, "eks.amazonaws.com/component": NAME},
            "annotations": {NODE_AGENT: NAME},
        },
        "spec": {
            "selector": {"matchLabels": labels},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "hostNetwork": true,
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [{
                        "name": NAME,
                        "image": "zonelab/agent",
                        "command": ["zonelab", "agent", format!("--proxy-mode={proxy_mode}")],
                    }],
                },
            },
        },
    });
    serde_json::from_value(v).context("building the kube-proxy DaemonSet")
}

/// Create the record (an existing one, from an earlier `lab up` over the same data, is kept).
pub async fn record(client: &kube::Client, proxy_mode: &str) -> anyhow::Result<()> {
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), NAMESPACE);
    match api
        .create(&PostParams::default(), &manifest(proxy_mode)?)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e).context("creating the kube-proxy DaemonSet in kube-system"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_is_a_node_agent_daemonset_for_every_linux_node() {
        let ds = manifest("iptables").unwrap();
        let ann = ds.metadata.annotations.unwrap();
        assert_eq!(ann[NODE_AGENT], "kube-proxy");
        let spec = ds.spec.unwrap();
        let pod = spec.template.spec.unwrap();
        assert_eq!(
            pod.containers[0].command.as_ref().unwrap()[2],
            "--proxy-mode=iptables"
        );
        assert_eq!(
            pod.tolerations.unwrap()[0].operator.as_deref(),
            Some("Exists")
        );
        assert_eq!(pod.node_selector.unwrap()["kubernetes.io/os"], "linux");
    }
}
