//! Every live driver in one place: the I/O around the sans-IO logic crates (`controllers`,
//! `kubelet`, `proxy`). Informers (kube-runtime watchers) feed changes in, writes go out over
//! HTTP, the wall clock supplies `now`, pods run as processes in network namespaces, probes and
//! rule appliers touch the kernel. The logic crates carry no tokio, kube, hyper or netlab;
//! `scripts/check-sans-io.sh` keeps it so.
//!
//! Start at [`controllers::run`] (the server's controllers), [`kubelet::Agent::start`] (the
//! node agent) and [`proxy::run`] (kube-proxy); [`relist::steps`] is the informer they share.

pub mod controllers;
pub mod fake_client;
pub mod kubelet;
pub mod proxy;
pub mod relist;
