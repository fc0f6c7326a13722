//! The resilience lab's analysis, sans-IO: request records and timeline events in, a
//! [`Report`](report::Report) out, rendered as JSON, as one self-contained HTML page with SVG
//! charts ([`html::render`]) and as a terminal summary ([`summary::render`]).
//!
//! Start at [`analyze::analyze`]; the I/O (lab, watches, clients) is `zonelab run`'s.

pub mod analyze;
#[doc(hidden)]
pub mod fixtures;
pub mod html;
pub mod load_start;
pub mod observe;
pub mod report;
pub mod summary;
pub mod timeline;

pub use analyze::{Meta, analyze};
pub use report::Report;
pub use timeline::{ConnKind, Event, EventKind, Outcome, Request};
