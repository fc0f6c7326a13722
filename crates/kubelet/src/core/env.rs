//! Container environment: the pod's identity (POD_NAME, POD_NAMESPACE, NODE_NAME, ZONE) and
//! the container's own `env` (literal values and the common `fieldRef`s). Start at
//! [`container_env`].

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Container, Pod};

use super::KubeletConfig;

/// The environment for `container` of `pod` (pod IP known once the network is ready).
pub fn container_env(
    cfg: &KubeletConfig,
    pod: Option<&Pod>,
    pod_ip: Option<Ipv4Addr>,
    container: &Container,
) -> Vec<(String, String)> {
    let name = pod
        .and_then(|p| p.metadata.name.clone())
        .unwrap_or_default();
    let namespace = pod
        .and_then(|p| p.metadata.namespace.clone())
        .unwrap_or_default();
    let uid = pod.and_then(|p| p.metadata.uid.clone()).unwrap_or_default();
    let ip = pod_ip.map(|i| i.to_string()).unwrap_or_default();
    let mut env = vec![
        ("POD_NAME".to_string(), name.clone()),
        ("POD_NAMESPACE".to_string(), namespace.clone()),
        ("NODE_NAME".to_string(), cfg.node_name.clone()),
        ("ZONE".to_string(), cfg.zone.clone()),
    ];
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(v), _) => Some(v.clone()),
            (None, Some(from)) => {
                from.field_ref
                    .as_ref()
                    .and_then(|f| match f.field_path.as_str() {
                        "metadata.name" => Some(name.clone()),
                        "metadata.namespace" => Some(namespace.clone()),
                        "metadata.uid" => Some(uid.clone()),
                        "spec.nodeName" => Some(cfg.node_name.clone()),
                        "status.podIP" => Some(ip.clone()),
                        "status.hostIP" => Some(cfg.node_ip.to_string()),
                        _ => None,
                    })
            }
            (None, None) => Some(String::new()),
        };
        if let Some(v) = value {
            env.retain(|(k, _)| k != &var.name);
            env.push((var.name.clone(), v));
        }
    }
    env
}
