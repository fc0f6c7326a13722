//! Controllers with upstream semantics, as sans-IO state machines.
//!
//! The shared vocabulary (time, keys, the informer cache, actions, the [`Controller`] trait)
//! lives in the `runtime` crate and is re-exported here.
//!
//! Start at [`Controller`]: a controller is fed informer [`Change`]s and the time, reads the
//! shared informer [`Cache`], and hands back [`Action`]s (writes) and its next wake-up. It
//! never reads a clock, sleeps or does I/O, so the same struct runs in the live server
//! (the `live` crate's `live::controllers`) and in the simulator, in virtual time.

pub mod autoscaler;
pub mod disruption;
pub mod endpointslice;
pub mod events;
pub mod fake;
pub mod leaderelection;
pub mod loadbalancer;
pub mod nodegroups;
pub mod nodelifecycle;
pub mod podgc;
pub mod scheduler;
pub mod serviceaccounts;
pub mod workloads;
pub mod zonalshift;

pub use runtime::labels::{HOSTNAME_LABEL, ZONE_LABEL, node_ready_status, pod_is_ready};
pub use runtime::{Action, Controller, Kind, WriteError};
pub use runtime::{Cache, Change, Key, Object};
pub use runtime::{cache, relist, time};
pub use time::Moment;
