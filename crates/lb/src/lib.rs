//! An NLB-style L4 load balancer: target groups of targets `{ip, port, zone}`, health checks
//! with ELBv2's states and AWS Load Balancer Controller defaults, one LB node per zone with
//! cross-zone load balancing off by default, deregistration delay, fail-open, and a data path in
//! the kernel (an nftables table of DNAT rules). The health checker and the table updates are
//! driven by `zonelab balancer`.
//!
//! Start at [`config::BalancerConfig::parse`], then [`balancer::Balancer`] (the sans-IO core),
//! [`routing::compute`] (where each node sends) and [`nft::render`] (the kernel's rules).

pub mod balancer;
pub mod config;
pub mod nft;
pub mod routing;
pub mod status;
pub mod target;
pub mod time;

#[cfg(test)]
mod balancer_tests;

pub use balancer::{Balancer, Event, ProbeReport, ProbeRequest, Record};
pub use config::{BalancerConfig, ConfigError};
pub use routing::{NodeState, Routes};
pub use target::{Reason, TargetKey, TargetState};
pub use time::Time;
