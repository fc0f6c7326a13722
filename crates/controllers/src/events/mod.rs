//! Kubernetes Events: what components report ([`EventRecord`], defined in `runtime::events`
//! and re-exported here), the sans-IO recorder that correlates, aggregates, rate-limits and
//! coalesces them into API writes ([`EventRecorder`]), and the live writer task that performs
//! those writes ([`crate::live::event_writer`]).
//!
//! Start at [`EventRecord`] (what a controller or the kubelet hands back), then
//! [`EventRecorder::record`] and [`EventRecorder::poll_write`].

pub mod recorder;

#[cfg(test)]
mod tests;

pub use runtime::events::*;

pub use recorder::{EventRecorder, EventWrite, Lru, RecorderConfig, WriteOutcome};
