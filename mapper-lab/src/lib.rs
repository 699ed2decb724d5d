//! mapper's lab: a local "cluster" made of network namespaces, for the demo
//! and every end-to-end test, and the workloads that run in it.
//!
//! - [`netns`]: namespaces, cgroups and processes that clean up after themselves;
//! - [`topo`]: a node with a bridge, pods, and kube-proxy-style ClusterIPs;
//! - [`traffic`]: servers and clients (the `mapper-lab` binary's `serve` and `call`).

pub mod bench;
pub mod lab;
pub mod netns;
pub mod scenario;
pub mod topo;
pub mod traffic;
