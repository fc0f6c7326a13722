//! The API server, kubectl, store and simulator integration tests (no network namespaces), one
//! test binary: each module is one former `tests/NAME.rs` file, unchanged but for
//! `use crate::common;`. One binary links once instead of once per file.
//!
//! Run one file's tests: `cargo test -p zonelab --test server kubectl_protobuf::` (one test: add
//! its name). Add a new file by `git mv tests/NEW.rs tests/server/NEW.rs`, a `mod NEW;` line
//! below and `mod common;` → `use crate::common;`; each test starts its own server on a free
//! port.

#[path = "../common/mod.rs"]
mod common;

mod allocation;
mod allocation_etcd;
mod bad_input;
mod bad_input_pods;
mod compare;
mod daemonset_kubectl;
mod durability;
mod etcd_store;
mod events;
mod events_v1;
mod finalizers;
mod health_check_node_port;
mod kinds;
mod kube_client;
mod kubectl;
mod kubectl_protobuf;
mod leader_election;
mod metrics_authz;
mod node_failure;
mod openapi_v2;
mod rbac_authz;
mod rbac_reviews;
mod sim_run;
mod statefulset;
mod taint_eviction;
mod tls;
mod tokens;
