//! Node groups as a sans-IO cloud: EC2 Auto Scaling groups, one zone each, with min, max and
//! desired capacity. The group launches instances until it has `desired` of them; an
//! instance boots for `bootDelay` and then runs (the driver starts a node whose agent joins);
//! in a zone under a capacity fault (FIS `aws:ec2:api-insufficient-instance-capacity-error`)
//! a launch fails after the provider's launch timeout with `InsufficientInstanceCapacity`,
//! and the failed instance stays, with its error, until someone deletes it — which is what
//! the cluster autoscaler reads (upstream's AWS provider reports such placeholders with the
//! out-of-resources error class).
//!
//! Start at [`Cloud`]: `increase_size` / `delete_nodes` (the autoscaler's calls), `set_zone_fault`,
//! `handle_timeout(now)`, `poll_timeout`, `poll_event` (what the driver must do), `views` (what the
//! autoscaler sees).

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;

use crate::Moment;
use crate::autoscaler::cloud::{
    Instance, InstanceError, InstanceErrorClass, InstanceState, NodeGroupView,
};

/// The error code of a launch in a zone without capacity (EC2's).
pub const INSUFFICIENT_CAPACITY: &str = "InsufficientInstanceCapacity";

/// One group as configured (the scenario's `nodeGroups` entry plus the node template).
#[derive(Clone, Debug)]
pub struct NodeGroupSpec {
    pub name: String,
    pub zone: String,
    pub min: usize,
    pub max: usize,
    pub desired: usize,
    /// From launch to running (the node's agent starts then).
    pub boot_delay: Duration,
    /// What a node of this group looks like (labels incl. the zone, allocatable, taints).
    pub template: Node,
}

/// Cloud-wide settings.
#[derive(Clone, Debug)]
pub struct CloudConfig {
    /// How long a launch in a zone without capacity takes to fail. A model setting, not an
    /// AWS constant: EC2 answers RunInstances at once, the ASG's scaling activity records
    /// the failure within seconds to a minute.
    pub launch_failure_timeout: Duration,
    /// `None`: instances are named `<group>-<n>`, numbered per group. `Some(prefix)`: they
    /// are named `<prefix>-<zone>-<n>`, numbered per zone across its groups — the lab's node
    /// names, so a zone's first instances are the nodes the lab starts with.
    pub zone_node_prefix: Option<String>,
}

impl CloudConfig {
    /// Every timer divided by `divisor` (the `fast` profile passes 10).
    pub fn scaled(mut self, divisor: u32) -> CloudConfig {
        self.launch_failure_timeout /= divisor.max(1);
        self
    }
}

impl Default for CloudConfig {
    fn default() -> Self {
        CloudConfig {
            launch_failure_timeout: Duration::from_secs(30),
            zone_node_prefix: None,
        }
    }
}

/// A rejected cloud call (nothing changes).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CloudError {
    #[error("node group {0} not found")]
    NoSuchGroup(String),
    /// Upstream AWS provider's text for a too-large increase.
    #[error("size increase too large - desired:{desired} max:{max}")]
    TooLarge { desired: usize, max: usize },
    #[error("size increase must be positive")]
    NotPositive,
    /// Upstream AWS provider's text for a decrease below min.
    #[error("min size reached, nodes will not be deleted")]
    MinSizeReached,
    #[error("node {node} does not belong to node group {group}")]
    NotInGroup { node: String, group: String },
}

/// What the driver must do about an instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloudEvent {
    /// A launch began (for the report's `requested_s`).
    Launched {
        group: String,
        name: String,
        zone: String,
    },
    /// Booted: start the node (its agent registers the Node).
    Running {
        group: String,
        name: String,
        zone: String,
    },
    /// The launch failed (zone without capacity).
    LaunchFailed {
        group: String,
        name: String,
        zone: String,
    },
    /// Terminated: stop the node and delete its Node object.
    Terminated { group: String, name: String },
}

#[derive(Clone, Debug)]
struct Record {
    state: InstanceState,
    /// When the pending transition (boot done or launch failed) happens.
    due: Option<Moment>,
    error: Option<InstanceError>,
}

#[derive(Clone, Debug)]
struct Group {
    spec: NodeGroupSpec,
    desired: usize,
    instances: BTreeMap<String, Record>,
    seq: u64,
}

/// The cloud. See the module docs.
#[derive(Debug)]
pub struct Cloud {
    config: CloudConfig,
    groups: BTreeMap<String, Group>,
    faulted: BTreeSet<String>,
    /// Last instance number per zone (with [`CloudConfig::zone_node_prefix`]).
    zone_seq: BTreeMap<String, u64>,
    events: VecDeque<CloudEvent>,
}

impl Cloud {
    /// Groups with their initial instances already running (the cluster as it starts).
    pub fn new(specs: Vec<NodeGroupSpec>, config: CloudConfig) -> Cloud {
        let mut groups = BTreeMap::new();
        let mut zone_seq = BTreeMap::new();
        for spec in specs {
            let mut g = Group {
                desired: spec.desired,
                spec,
                instances: BTreeMap::new(),
                seq: 0,
            };
            for _ in 0..g.desired {
                let name = g.next_name(&config, &mut zone_seq);
                g.instances.insert(
                    name,
                    Record {
                        state: InstanceState::Running,
                        due: None,
                        error: None,
                    },
                );
            }
            groups.insert(g.spec.name.clone(), g);
        }
        Cloud {
            config,
            groups,
            faulted: BTreeSet::new(),
            zone_seq,
            events: VecDeque::new(),
        }
    }

    /// Names of the running instances of every group (the nodes to start with), by group.
    pub fn running(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for g in self.groups.values() {
            for (name, r) in &g.instances {
                if r.state == InstanceState::Running {
                    out.push((g.spec.name.clone(), name.clone(), g.spec.zone.clone()));
                }
            }
        }
        out
    }

    /// Start or end an insufficient-capacity fault in `zone`: launches there fail.
    pub fn set_zone_fault(&mut self, zone: &str, faulted: bool) {
        if faulted {
            self.faulted.insert(zone.to_string());
        } else {
            self.faulted.remove(zone);
        }
    }

    /// `SetDesiredCapacity(desired + delta)`; launches start on the next tick.
    pub fn increase_size(&mut self, group: &str, delta: usize) -> Result<(), CloudError> {
        let g = self
            .groups
            .get_mut(group)
            .ok_or_else(|| CloudError::NoSuchGroup(group.to_string()))?;
        if delta == 0 {
            return Err(CloudError::NotPositive);
        }
        let desired = g.desired + delta;
        if desired > g.spec.max {
            return Err(CloudError::TooLarge {
                desired,
                max: g.spec.max,
            });
        }
        g.desired = desired;
        Ok(())
    }

    /// `TerminateInstanceInAutoScalingGroup(..., ShouldDecrementDesiredCapacity=true)` for each
    /// node; all or nothing.
    pub fn delete_nodes(&mut self, group: &str, nodes: &[String]) -> Result<(), CloudError> {
        let g = self
            .groups
            .get_mut(group)
            .ok_or_else(|| CloudError::NoSuchGroup(group.to_string()))?;
        for n in nodes {
            if !g.instances.contains_key(n) {
                return Err(CloudError::NotInGroup {
                    node: n.clone(),
                    group: group.to_string(),
                });
            }
        }
        // Failed launches never counted as capacity: removing them may go below min.
        let real = nodes
            .iter()
            .filter(|n| g.instances[*n].error.is_none())
            .count();
        let real_now = g.instances.values().filter(|r| r.error.is_none()).count();
        if real > 0 && real_now.saturating_sub(real) < g.spec.min {
            return Err(CloudError::MinSizeReached);
        }
        for n in nodes {
            g.instances.remove(n);
            g.desired = g.desired.saturating_sub(1);
            self.events.push_back(CloudEvent::Terminated {
                group: group.to_string(),
                name: n.clone(),
            });
        }
        Ok(())
    }

    /// Launch up to desired, finish boots and failed launches due at `now`.
    pub fn handle_timeout(&mut self, now: Moment) {
        let boot_timeout = self.config.launch_failure_timeout;
        for g in self.groups.values_mut() {
            let zone = g.spec.zone.clone();
            let faulted = self.faulted.contains(&zone);
            while g.instances.len() < g.desired {
                let name = g.next_name(&self.config, &mut self.zone_seq);
                let due = now
                    + if faulted {
                        boot_timeout
                    } else {
                        g.spec.boot_delay
                    };
                g.instances.insert(
                    name.clone(),
                    Record {
                        state: InstanceState::Creating,
                        due: Some(due),
                        error: None,
                    },
                );
                self.events.push_back(CloudEvent::Launched {
                    group: g.spec.name.clone(),
                    name,
                    zone: zone.clone(),
                });
            }
            for (name, r) in &mut g.instances {
                if r.state != InstanceState::Creating || r.due.is_none_or(|d| d > now) {
                    continue;
                }
                r.due = None;
                if faulted {
                    r.error = Some(InstanceError {
                        class: InstanceErrorClass::OutOfResources,
                        code: INSUFFICIENT_CAPACITY.into(),
                        message: format!(
                            "We currently do not have sufficient capacity in the Availability Zone you requested ({zone})."
                        ),
                    });
                    self.events.push_back(CloudEvent::LaunchFailed {
                        group: g.spec.name.clone(),
                        name: name.clone(),
                        zone: zone.clone(),
                    });
                } else {
                    r.state = InstanceState::Running;
                    self.events.push_back(CloudEvent::Running {
                        group: g.spec.name.clone(),
                        name: name.clone(),
                        zone: zone.clone(),
                    });
                }
            }
        }
    }

    /// The next boot or launch failure due, or now-ish if launches are owed.
    pub fn poll_timeout(&self) -> Option<Moment> {
        self.groups
            .values()
            .flat_map(|g| g.instances.values().filter_map(|r| r.due))
            .min()
    }

    /// True if a group has fewer instances than desired (call `handle_timeout`).
    pub fn launches_owed(&self) -> bool {
        self.groups.values().any(|g| g.instances.len() < g.desired)
    }

    /// The next instance event (launched, running, failed, terminated), oldest first.
    pub fn poll_event(&mut self) -> Option<CloudEvent> {
        self.events.pop_front()
    }

    /// What the autoscaler sees.
    pub fn views(&self) -> Vec<NodeGroupView> {
        self.groups
            .values()
            .map(|g| NodeGroupView {
                name: g.spec.name.clone(),
                min_size: g.spec.min,
                max_size: g.spec.max,
                target_size: g.desired,
                instances: g
                    .instances
                    .iter()
                    .map(|(name, r)| Instance {
                        name: name.clone(),
                        state: r.state,
                        error: r.error.clone(),
                    })
                    .collect(),
                template: g.spec.template.clone(),
            })
            .collect()
    }
}

impl Group {
    /// Instance (and node) names: `<group>-<n>` or `<prefix>-<zone>-<n>`, never reused.
    fn next_name(&mut self, config: &CloudConfig, zone_seq: &mut BTreeMap<String, u64>) -> String {
        match &config.zone_node_prefix {
            None => {
                self.seq += 1;
                format!("{}-{}", self.spec.name, self.seq)
            }
            Some(prefix) => {
                let seq = zone_seq.entry(self.spec.zone.clone()).or_default();
                *seq += 1;
                format!("{prefix}-{}-{seq}", self.spec.zone)
            }
        }
    }
}
