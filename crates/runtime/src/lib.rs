//! The sans-IO vocabulary every component shares, for the live drivers and the simulator
//! alike: time ([`Moment`] points, `Duration` spans), object keys and the informer [`Cache`], the writes components ask
//! for ([`Action`]), the component interface ([`Controller`]), relist reconciliation, a delay
//! queue, Events as reported, and the label constants and predicates every crate used to
//! repeat. No tokio, kube, redb or I/O: nothing here reads a clock.
//!
//! Start at [`Controller`], then [`cache`] and [`labels`].

pub mod action;
pub mod cache;
pub mod controller;
pub mod events;
pub mod labels;
pub mod outbox;
pub mod queue;
pub mod relist;
pub mod time;

pub use action::{Action, Kind, WriteError};
pub use cache::{Cache, Change, Key, Object};
pub use controller::Controller;
pub use labels::{HOSTNAME_LABEL, ZONE_LABEL, node_ready_status, pod_is_ready};
pub use outbox::Outbox;
pub use queue::{DelayQueue, QueueFull};
pub use time::Moment;
