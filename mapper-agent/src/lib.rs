//! mapper's node agent: loads the kernel programs of `mapper-ebpf`, pins them so
//! capture survives agent restarts, drains the in-kernel flow aggregation on an
//! interval, and attributes each local end to a pod (cgroup → pod UID).
//!
//! The binary (`src/main.rs`) only parses flags and calls [`agent::run`].

pub mod agent;
pub mod attribution;
pub mod capture;
pub mod dns;
pub mod flow;
pub mod metrics;
pub mod pending;
pub mod preflight;
pub mod report;
pub mod reporter;
pub mod spool;
pub mod token;
