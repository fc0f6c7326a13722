//! The timer profile and explicit flags mapped to the typed configs of every component, in one
//! place: `upstream` keeps upstream's defaults, `fast` divides every timer by 10 (rates times
//! 10), and an explicit flag (upstream's name) wins over both. The live roles (`zonelab server`,
//! `agent`, `autoscaler`, `lab`, `run`) and the simulator build their components from it; no
//! I/O.
//!
//! Start at [`Configs::resolve`]; the flags are [`Flags`], a scenario's `flags:` go through
//! [`from_scenario`].

mod configs;
mod flags;
mod from_scenario;
#[cfg(test)]
mod tests;

pub use configs::{
    Admission, ConfigError, Configs, ElectionTimers, KERNEL_SYN_SENT_TIMEOUT, Workloads, admission,
    autoscaler, cloud, election, endpointslice, kubelet, node_lifecycle, proxy,
};
pub use flags::{AutoscalerFlags, ElectionFlags, FlagError, Flags, NodeFlags, ServerFlags};
pub use from_scenario::{Resolved, UNKNOWN_FLAG_HINT, from_scenario};
pub use scenario::{Profile, parse_duration};
