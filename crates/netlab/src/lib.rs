//! Lab network: network namespaces as nodes and pods, bridges/veths/routes, fault injection and
//! process supervision on one Linux machine. Start at [`Lab::up`] with a [`Topology`].
//!
//! Layers: [`topology`] (pure names and addresses) -> [`plan`] and [`faults`] (pure command
//! lines and nftables scripts) -> [`exec`] (the `Runner` seam) -> [`lab`] and [`procs`]
//! (the executor). Safety: the lab only ever creates namespaces with its own prefix and wires
//! them to each other; the root namespace gets no routes and no interfaces.

pub mod exec;
pub mod faults;
pub mod lab;
pub mod plan;
pub mod preflight;
pub mod procs;
pub mod topology;

pub use exec::{Cmd, CmdOutput, ExecError, FakeRunner, Runner, SystemRunner};
pub use faults::FaultState;
pub use lab::{
    DEFAULT_STATE_DIR, Lab, LabError, LabStatus, NodeStatus, ProcStatus, unwire_pod, wire_pod,
};
pub use procs::{ProcError, ProcRecord, ProcSpec, Supervisor, kill_in_netns};
pub use topology::{LabSpec, NodeNet, PodNet, Topology, TopologyError, ZoneNet};
