//! Reads the cluster autoscaler's status ConfigMap (`kube-system/cluster-autoscaler-status`)
//! for the run's timeline: an `autoscaler-halted` event whenever `clusterWide.health.status`
//! turns `Unhealthy` (autoscaling halted: too many unready nodes) or back.
//!
//! Start at [`run`].

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use lab::EventKind;

use super::cloud::Recorder;

/// How often the ConfigMap is read.
const POLL: Duration = Duration::from_millis(500);
/// Upstream's name (`--status-config-map-name`).
const NAME: &str = "cluster-autoscaler-status";

/// Whether the status text says the cluster is unhealthy (`None`: not readable).
pub fn halted(status: &str) -> Option<bool> {
    let v: serde_yaml::Value = serde_yaml::from_str(status).ok()?;
    let s = v["clusterWide"]["health"]["status"].as_str()?;
    Some(s == "Unhealthy")
}

/// Poll until aborted.
pub async fn run(client: kube::Client, record: Recorder) {
    let api: Api<ConfigMap> = Api::namespaced(client, "kube-system");
    let mut last = false;
    loop {
        if let Ok(Some(cm)) = api.get_opt(NAME).await {
            let now = cm
                .data
                .as_ref()
                .and_then(|d| d.get("status"))
                .and_then(|s| halted(s));
            if let Some(now) = now
                && now != last
            {
                last = now;
                record(EventKind::AutoscalerHalted { halted: now });
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unhealthy_means_halted() {
        let text = "time: \"x\"\nautoscalerStatus: \"Running\"\nclusterWide:\n  health:\n    status: \"Unhealthy\"\n";
        assert_eq!(halted(text), Some(true));
        assert_eq!(halted(&text.replace("Unhealthy", "Healthy")), Some(false));
        assert_eq!(halted("nope: ["), None);
    }
}
