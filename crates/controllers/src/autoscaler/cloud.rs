//! What the autoscaler sees of the cloud and asks of it — upstream's `cloudprovider.NodeGroup`
//! (`MinSize`, `MaxSize`, `TargetSize`, `Nodes` with instance status and error info,
//! `TemplateNodeInfo`) as plain data, and the calls (`IncreaseSize`, `DeleteNodes`) as actions.
//!
//! They serialize as JSON for the lab's cloud endpoint (`zonelab autoscaler --cloud-provider-url`).
//!
//! Start at [`NodeGroupView`] and [`CloudAction`].

use k8s_openapi::api::core::v1::Node;
use serde::{Deserialize, Serialize};

/// Upstream `cloudprovider.InstanceState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InstanceState {
    /// Launched, not yet running (booting, or about to fail).
    Creating,
    Running,
    Deleting,
}

/// Upstream `cloudprovider.InstanceErrorClass`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InstanceErrorClass {
    /// e.g. insufficient capacity in the zone, quota.
    OutOfResources,
    Other,
}

/// Upstream `cloudprovider.InstanceErrorInfo`: why an instance failed to launch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceError {
    pub class: InstanceErrorClass,
    /// e.g. `InsufficientInstanceCapacity` (AWS).
    pub code: String,
    pub message: String,
}

/// One instance of a group; `name` is the Node name it registers under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub name: String,
    pub state: InstanceState,
    /// Set when a `Creating` instance failed to launch.
    pub error: Option<InstanceError>,
}

/// A node group as the cloud reports it at one instant.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeGroupView {
    /// The group id (an ASG name).
    pub name: String,
    pub min_size: usize,
    pub max_size: usize,
    /// Desired capacity.
    pub target_size: usize,
    pub instances: Vec<Instance>,
    /// What a new node of this group looks like (labels incl. zone, allocatable, taints).
    pub template: Node,
}

/// A call to the cloud.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CloudAction {
    /// Upstream `NodeGroup.IncreaseSize(delta)`: raise the desired capacity.
    IncreaseSize { group: String, delta: usize },
    /// Upstream `NodeGroup.DeleteNodes(nodes)`: terminate these instances and lower the
    /// desired capacity by as many.
    DeleteNodes { group: String, nodes: Vec<String> },
}
