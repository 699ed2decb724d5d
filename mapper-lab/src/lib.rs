//! mapper's lab: a local "cluster" made of network namespaces, for the demo
//! and every end-to-end test, and the workloads that run in it.
//!
//! - [`netns`]: namespaces, cgroups and processes that clean up after themselves, and the
//!   check kernel tests make before they start;
//! - [`topo`]: a node with a bridge, pods, and kube-proxy-style ClusterIPs;
//! - [`scenario`]: the scenario file (workloads, Services, external hosts, calls);
//! - [`lab`]: a scenario made real (`up`, `traffic`, `down`), with [`cluster`] (its Services,
//!   and what follows their endpoints), [`inventory`] (the objects a
//!   cluster would show), [`proxy`] (kube-proxy's rules, re-synced every round), [`dns`] (the
//!   cluster DNS every lab has, and a pod's resolver) and [`kubelet`] (its TCP probes);
//! - [`calls`]: the scenario's calls made from inside the pods (`traffic`);
//! - [`traffic`]: servers and clients (the `mapper-lab` binary's `serve` and `call`);
//! - [`bench`]: the agent's cost on the traffic it watches (`bench-agent`).

pub mod bench;
pub mod calls;
pub mod cluster;
pub mod dns;
pub mod inventory;
pub mod kubelet;
pub mod lab;
pub mod netns;
pub mod proxy;
pub mod scenario;
pub mod topo;
pub mod traffic;
