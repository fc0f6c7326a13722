//! Workload controllers with upstream semantics: Deployment (owns ReplicaSets, rolls out
//! templates), ReplicaSet (owns pods) and DaemonSet (one pod per eligible node).
//!
//! Start at [`ReplicaSetController`] and [`DeploymentController`]; both are sans-IO
//! [`crate::Controller`]s built from a config struct with upstream defaults.

pub mod daemonset;
pub mod deployment;
pub mod replicaset;
pub mod util;

#[cfg(test)]
mod tests;

pub use daemonset::{DaemonSetConfig, DaemonSetController};
pub use deployment::{DeploymentConfig, DeploymentController};
pub use replicaset::{ReplicaSetConfig, ReplicaSetController};
