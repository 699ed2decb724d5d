//! The central mapper: receives agents' flows over gRPC, resolves both ends of
//! each to workloads (through `mapper-cluster`), keeps one edge per
//! (client, server) in memory and on disk, and answers the CLI's queries.
#![forbid(unsafe_code)]

pub mod admission;
pub mod auth;
pub mod commit;
pub mod dns;
pub mod errors;
pub mod ingest;
pub mod metrics;
pub mod query;
pub mod reresolve;
pub mod server;
pub mod store;
