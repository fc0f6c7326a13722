//! kube-proxy core: tracks Services and EndpointSlices, plans rules, renders nftables and
//! iptables text and applies it. Start at [`syncer::Syncer`] (the live sans-IO sync loop:
//! tracker, plan and renderer under a [`pacer::Pacer`]), then [`plan::Plan`] (the rule model)
//! and [`nft::NftRenderer`]. The simulator's proxies share one
//! [`shared_model::SharedModel`], each node a [`node_proxy::NodeProxy`] rendering no text.

pub mod apply;
pub mod elements;
#[cfg(test)]
mod external_tests;
pub mod fixtures;
pub mod hash;
pub mod health;
pub mod iptables;
pub mod metrics;
pub mod model;
pub mod nft;
pub mod nft_shared;
pub mod nft_state;
pub mod node_proxy;
pub mod pacer;
pub mod plan;
pub mod service_health;
pub mod shared_model;
pub mod syncer;
pub mod topology;
pub mod tracker;

pub use model::{
    Cidr, Endpoint, Moment, Protocol, ServiceKey, ServicePort, ServicePortName, TrafficPolicy,
};
pub use plan::{Plan, PlanConfig};
pub use tracker::Tracker;
