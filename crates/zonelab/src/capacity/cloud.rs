//! The lab as the cloud provider: owns the node groups' sans-IO [`Cloud`], ticks it on the
//! wall clock, and turns its events into lab nodes — a `Running` instance becomes a netns node
//! whose agent joins ([`crate::lab::group_nodes::launch`]), a `Terminated` one is torn down and
//! its Node deleted. The autoscaler reaches it through [`CloudHost::views`] and
//! [`CloudHost::call`], served over HTTP by [`super::http::serve`] (the lab's process is the one
//! that can build namespaces, so it is the cloud).
//!
//! Start at [`CloudHost::start`].

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use controllers::autoscaler::{CloudAction, NodeGroupView};
use controllers::nodegroups::{Cloud, CloudError, CloudEvent};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use lab::EventKind;
use live::controllers::wall_clock;
use tokio::sync::Notify;

/// The label EKS managed node groups put on their nodes (the kubelet's `--node-labels`).
pub const NODEGROUP_LABEL: &str = "eks.amazonaws.com/nodegroup";

/// How often labelling a starting node is tried before giving up.
const LABEL_TRIES: u32 = 20;

/// Where cloud and autoscaler happenings go (the run's timeline).
pub type Recorder = Arc<dyn Fn(EventKind) + Send + Sync>;

/// The longest the cloud sleeps between ticks (boots and failed launches are due at exact
/// times; this bounds the delay of launches owed after a call).
const MAX_TICK: Duration = Duration::from_millis(500);

/// The cloud, shared by its ticker and the autoscaler.
#[derive(Clone)]
pub struct CloudHost {
    cloud: Arc<Mutex<Cloud>>,
    wake: Arc<Notify>,
    record: Recorder,
}

/// The lab the cloud builds nodes in.
#[derive(Clone, Debug)]
pub struct LabTarget {
    pub state_dir: PathBuf,
    pub prefix: String,
}

impl CloudHost {
    /// Start ticking `cloud`; launched instances become nodes of `lab`. The task ends when the
    /// returned handle is aborted.
    pub fn start(
        cloud: Cloud,
        lab: LabTarget,
        client: kube::Client,
        record: Recorder,
    ) -> (CloudHost, tokio::task::JoinHandle<()>) {
        let host = CloudHost {
            cloud: Arc::new(Mutex::new(cloud)),
            wake: Arc::new(Notify::new()),
            record,
        };
        let first = host.lock().running();
        let task = tokio::spawn(host.clone().tick_loop(lab, client.clone()));
        tokio::spawn(label_first_nodes(client, first));
        (host, task)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cloud> {
        self.cloud.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the autoscaler sees (upstream `NodeGroups()` with their instances).
    pub fn views(&self) -> Vec<NodeGroupView> {
        self.lock().views()
    }

    /// One autoscaler call; a rejected call changes nothing.
    pub fn call(&self, action: &CloudAction) -> Result<(), CloudError> {
        let r = match action {
            CloudAction::IncreaseSize { group, delta } => {
                let r = self.lock().increase_size(group, *delta);
                if r.is_ok() {
                    (self.record)(EventKind::ScaleUpRequested {
                        group: group.clone(),
                        delta: *delta as u32,
                    });
                }
                r
            }
            CloudAction::DeleteNodes { group, nodes } => self.lock().delete_nodes(group, nodes),
        };
        self.wake.notify_one();
        r
    }

    /// A zone fault began or ended: launches there fail while it lasts.
    pub fn set_zone_fault(&self, zone: &str, faulted: bool) {
        self.lock().set_zone_fault(zone, faulted);
    }

    async fn tick_loop(self, lab: LabTarget, client: kube::Client) {
        let mut events = Vec::new();
        loop {
            let now = wall_clock();
            let next = {
                let mut c = self.lock();
                c.handle_timeout(now);
                events.extend(std::iter::from_fn(|| c.poll_event()));
                c.poll_timeout()
            };
            for e in events.drain(..) {
                self.handle(e, &lab, &client);
            }
            let sleep = next
                .map(|w| w.saturating_since(now).max(Duration::from_millis(1)))
                .unwrap_or(MAX_TICK)
                .min(MAX_TICK);
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    fn handle(&self, e: CloudEvent, lab: &LabTarget, client: &kube::Client) {
        let (group, node, zone, state) = match &e {
            CloudEvent::Launched { group, name, zone } => (group, name, zone.clone(), "launched"),
            CloudEvent::Running { group, name, zone } => (group, name, zone.clone(), "running"),
            CloudEvent::LaunchFailed { group, name, zone } => {
                (group, name, zone.clone(), "launch-failed")
            }
            CloudEvent::Terminated { group, name } => (group, name, String::new(), "terminated"),
        };
        tracing::info!(%group, %node, %zone, state, "node group instance");
        (self.record)(EventKind::CloudInstance {
            group: group.clone(),
            node: node.clone(),
            zone: zone.clone(),
            state: state.into(),
        });
        match e {
            CloudEvent::Running { name, zone, group } => {
                let lab = lab.clone();
                let labels = vec![format!("{NODEGROUP_LABEL}={group}")];
                tokio::task::spawn_blocking(move || {
                    if let Err(err) = crate::lab::group_nodes::launch(
                        &lab.state_dir,
                        &lab.prefix,
                        &zone,
                        &name,
                        &labels,
                    ) {
                        tracing::error!(node = %name, "building the instance's node failed: {err:#}");
                    }
                });
            }
            CloudEvent::Terminated { name, .. } => {
                let lab = lab.clone();
                let nodes: Api<Node> = Api::all(client.clone());
                tokio::spawn(async move {
                    let n = name.clone();
                    let done = tokio::task::spawn_blocking(move || {
                        crate::lab::group_nodes::terminate(&lab.state_dir, &lab.prefix, &n)
                    })
                    .await;
                    if let Ok(Err(err)) = done {
                        tracing::warn!(node = %name, "removing the instance's node: {err:#}");
                    }
                    // The cloud controller manager deletes the Node of a terminated instance.
                    match nodes.delete(&name, &DeleteParams::default()).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(s)) if s.code == 404 => {}
                        Err(err) => tracing::warn!(node = %name, "deleting the Node: {err}"),
                    }
                });
            }
            _ => {}
        }
    }
}

/// The nodes the lab started with were started before their groups existed: give them their
/// group's label as a launched node gets it from its kubelet (`--node-labels`).
async fn label_first_nodes(client: kube::Client, nodes: Vec<(String, String, String)>) {
    let api: Api<Node> = Api::all(client);
    for (group, name, _) in nodes {
        let patch = serde_json::json!({"metadata": {"labels": {NODEGROUP_LABEL: group}}});
        for _ in 0..LABEL_TRIES {
            let r = api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await;
            match r {
                Ok(_) => break,
                Err(e) => {
                    tracing::debug!(node = %name, "labelling with its node group: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}
