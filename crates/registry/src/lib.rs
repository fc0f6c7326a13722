//! The API's write rules once, synchronous, with time (`now`, ms since the epoch) and
//! randomness passed in: admission defaults and validation ([`admission`]), create/update
//! strategies and generation ([`strategy`]), deletion ([`delete`]), binding ([`bind`]),
//! ClusterIP/NodePort allocation ([`alloc`]) and the garbage collector's decisions ([`gc`]).
//! The HTTP API server calls them around its store; [`MemApi`] is an in-memory API over them
//! (the simulator's API server and the controllers' test double).
//!
//! Start at [`MemApi`] for the whole write path, or [`admission::admit_create`] for one rule.

pub mod admission;
pub mod alloc;
pub mod bind;
pub mod delete;
pub mod gc;
pub mod mem;
pub mod meta;
pub mod stored;
pub mod strategy;
pub mod typed;

pub use admission::Admission;
pub use api::resources::ResourceInfo;
pub use api::status::StatusError;
pub use delete::DeleteOptions;
pub use mem::{Change, ChangeType, MemApi, MemConfig, Written};
pub use meta::Moment;
pub use stored::{FastPath, Stored};
pub use strategy::UpdateScope;

/// The served resource of a k8s-openapi type (`None` for a kind the API does not serve).
pub fn resource_of<T: k8s_openapi::Resource>() -> Option<&'static ResourceInfo> {
    api::resources::by_kind(T::API_VERSION, T::KIND)
}
