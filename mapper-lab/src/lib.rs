//! mapper's lab: a local "cluster" made of network namespaces, for the demo
//! and every end-to-end test, and the workloads that run in it.
//!
//! - [`netns`]: namespaces, cgroups and processes that clean up after themselves, and the
//!   check kernel tests make before they start;
//! - [`topo`]: a node with a bridge, pods, and kube-proxy-style ClusterIPs;
//! - [`scenario`]: the scenario file (workloads, Services, calls);
//! - [`lab`]: a scenario made real and the inventory it would have (`up`, `traffic`, `down`);
//! - [`traffic`]: servers and clients (the `mapper-lab` binary's `serve` and `call`);
//! - [`bench`]: the agent's cost on the traffic it watches (`bench-agent`).

pub mod bench;
pub mod lab;
pub mod netns;
pub mod scenario;
pub mod topo;
pub mod traffic;
