//! The zonelab kubelet: a node agent that registers its Node, renews its Lease, runs the pods
//! bound to it as processes in network namespaces, probes them and reports their status.
//!
//! Start at [`core::Kubelet`] (the sans-IO state machine). [`runtime`] runs containers and
//! pod networks, [`prober`] runs probes, [`live`] drives everything against an API server.

pub mod core;

pub use core::{
    Kubelet, KubeletConfig, KubeletError, PodRef, ProbeAction, ProbeKind, ProbeOutcome,
    ProbeRequest, RuntimeCommand, RuntimeEvent, Signal,
};
pub mod live;
pub mod logfmt;
pub mod logserver;
pub mod logwriter;
pub mod prober;
pub mod runtime;

pub use self::runtime::{FakeRuntime, ProcessRuntime, ProcessRuntimeConfig, Runtime};
pub use live::{Agent, LiveError, run};
pub use prober::{NetProber, Prober};
