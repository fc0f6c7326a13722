//! ClusterIP and NodePort allocation for Services, sans-IO (no clock, randomness passed in).
//!
//! Start at [`ServiceAllocations`]: the API server calls
//! [`ServiceAllocations::allocate_for_create`], [`ServiceAllocations::allocate_for_update`] and
//! [`ServiceAllocations::release_service`], and builds it at start-up with
//! [`ServiceAllocations::rebuild`]. The allocators underneath are [`IpAllocator`] and
//! [`PortAllocator`], both bitmaps with upstream's static/dynamic bands (KEP-3070, KEP-3668).

// `api::status::StatusError` (about 150 bytes) is the error every API path returns; boxing it
// here alone would only make the glue code convert back and forth.

mod bitmap;
pub mod ip;
pub mod port;
mod repair;
mod service;
mod spec;
mod update;

#[cfg(test)]
mod service_tests;

pub use ip::{DEFAULT_SERVICE_CIDR, IpAllocError, IpAllocator, IpRange, RangeError, first_ip};
pub use port::{DEFAULT_NODE_PORT_RANGE, PortAllocError, PortAllocator, PortRange, PortRangeError};
pub use repair::RepairIssue;
pub use service::{Allocated, KUBERNETES_SERVICE, ServiceAllocations};
pub use update::UpdateAllocation;
