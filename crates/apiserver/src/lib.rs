//! The Kubernetes API server: REST + watch over HTTP/1.1 and JSON, backed by a [`store::Store`].
//!
//! Start at [`server::Server`]: it parses a URL ([`path`]), negotiates the representation
//! ([`negotiate`]), and hands resource requests to [`handlers`]; ClusterIPs and node ports are
//! allocated in the Service write path ([`alloc`], glued in by [`svcalloc`]). The write rules
//! themselves are the `registry` crate's, shared with the simulator's in-memory API.

pub mod audit;
pub mod authn;
pub mod authz;
mod bootstrap;
mod cascade;
pub mod discovery;
pub mod event_ttl;
pub mod handlers;
pub mod health;
mod metered;
pub mod metrics;
pub mod negotiate;
pub mod noderestriction;
pub mod objects;
pub mod path;
pub mod render;
mod reservations;
pub mod select;
pub mod server;
mod svcalloc;
pub mod table;
pub mod tls;

pub use registry::alloc;
pub use server::{Config, Server};

#[cfg(test)]
mod svcalloc_tests;
