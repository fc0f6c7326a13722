//! Putting a scenario's workloads into the lab: create each manifest through the API (kind
//! resolved by discovery, as kubectl does), wait until every Deployment and StatefulSet is ready, and
//! resolve the clients' target Services to `http://ClusterIP:port`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::GroupVersionKind;

/// Create every object (namespace `default` unless it names one).
pub async fn create_all(
    client: &kube::Client,
    manifests: &[serde_json::Value],
) -> anyhow::Result<()> {
    for m in manifests {
        let api_version = m["apiVersion"].as_str().unwrap_or_default();
        let kind = m["kind"].as_str().unwrap_or_default();
        let name = m["metadata"]["name"].as_str().unwrap_or_default();
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (ar, caps) = kube::discovery::pinned_kind(client, &gvk)
            .await
            .with_context(|| format!("the API server does not serve {api_version} {kind}"))?;
        let obj: DynamicObject = serde_json::from_value(m.clone())
            .with_context(|| format!("{kind} {name} is not a valid object"))?;
        let api: Api<DynamicObject> = match caps.scope {
            kube::discovery::Scope::Namespaced => {
                let ns = m["metadata"]["namespace"].as_str().unwrap_or("default");
                Api::namespaced_with(client.clone(), ns, &ar)
            }
            kube::discovery::Scope::Cluster => Api::all_with(client.clone(), &ar),
        };
        api.create(&PostParams::default(), &obj)
            .await
            .with_context(|| format!("creating {kind} {name}"))?;
        eprintln!("  created {} {name}", kind.to_lowercase());
    }
    Ok(())
}

/// The wait between polls of the workloads; after a failed read it doubles up to the max.
const POLL_RETRY_MAX: Duration = Duration::from_secs(4);
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Wait until every Deployment and StatefulSet has all its replicas ready. A failed read (a
/// server too busy to answer, a connection lost) is retried with backoff within `limit`,
/// as client-go's informers do; only `limit` ends the wait.
pub async fn wait_available(client: &kube::Client, limit: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut last = String::new();
    let mut retry = POLL_INTERVAL;
    loop {
        let failed = match workloads_pending(client).await {
            Ok(pending) if pending.is_empty() => return Ok(()),
            Ok(pending) => {
                retry = POLL_INTERVAL;
                let now = pending.join(", ");
                if now != last {
                    eprintln!("  waiting for workloads: {now}");
                    last = now;
                }
                None
            }
            Err(e) => {
                retry = (retry * 2).min(POLL_RETRY_MAX);
                eprintln!(
                    "  waiting for workloads: reading them failed ({e:#}), again in {} ms",
                    retry.as_millis()
                );
                Some(format!("{e:#}"))
            }
        };
        if start.elapsed() > limit {
            match &failed {
                Some(e) => bail!("workloads not ready within {limit:?}: {last} (last read: {e})"),
                None => bail!("workloads not ready within {limit:?}: {last}"),
            }
        }
        tokio::time::sleep(retry).await;
    }
}

/// Deployments and StatefulSets short of ready replicas, as `name ready/want`.
async fn workloads_pending(client: &kube::Client) -> anyhow::Result<Vec<String>> {
    let api: Api<Deployment> = Api::all(client.clone());
    let list = api.list(&ListParams::default()).await?;
    let mut pending: Vec<String> = list
        .items
        .iter()
        .filter_map(|d| {
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let ready = d
                .status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0);
            (ready < want).then(|| {
                format!(
                    "{} {ready}/{want}",
                    d.metadata.name.as_deref().unwrap_or("?")
                )
            })
        })
        .collect();
    pending.extend(statefulsets_pending(client).await?);
    Ok(pending)
}

/// StatefulSets short of ready replicas, as `sts/name ready/want`.
async fn statefulsets_pending(client: &kube::Client) -> anyhow::Result<Vec<String>> {
    let api: Api<StatefulSet> = Api::all(client.clone());
    let list = api.list(&ListParams::default()).await?;
    Ok(list
        .items
        .iter()
        .filter_map(|s| {
            let want = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let ready = s
                .status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0);
            let name = s.metadata.name.as_deref().unwrap_or("?");
            (ready < want).then(|| format!("sts/{name} {ready}/{want}"))
        })
        .collect())
}

/// `http://<clusterIP>:<first port>` of a Service.
pub async fn service_url(client: &kube::Client, ns: &str, name: &str) -> anyhow::Result<String> {
    let api: Api<Service> = Api::namespaced(client.clone(), ns);
    let svc = api.get(name).await.with_context(|| {
        format!("clients target Service {ns}/{name}, which the workloads do not create")
    })?;
    let spec = svc.spec.context("Service without spec")?;
    let ip = spec
        .cluster_ip
        .filter(|ip| ip != "None" && !ip.is_empty())
        .with_context(|| format!("Service {ns}/{name} has no ClusterIP"))?;
    let port = spec
        .ports
        .and_then(|p| p.first().map(|p| p.port))
        .with_context(|| format!("Service {ns}/{name} has no port"))?;
    Ok(format!("http://{ip}:{port}"))
}
