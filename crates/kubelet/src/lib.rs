//! The zonelab kubelet: a node agent that registers its Node, renews its Lease, runs the pods
//! bound to it as processes in network namespaces, probes them and reports their status.
//!
//! Start at [`core::Kubelet`] (the sans-IO state machine); [`logfmt`] is the CRI log format.
//! The I/O around it (pod runtime, prober, log writer and server, the driver against an API
//! server) is `live::kubelet` in the `live` crate.

pub mod core;

pub use core::{
    Kubelet, KubeletConfig, KubeletError, PodRef, ProbeAction, ProbeKind, ProbeOutcome,
    ProbeRequest, RuntimeCommand, RuntimeEvent, Signal,
};
pub mod logfmt;
