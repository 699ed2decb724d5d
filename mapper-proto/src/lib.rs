//! mapper's wire protocol, generated from `proto/mapper/v1/mapper.proto`:
//! `Ingest` (agents report batches of flows) and `Query` (the CLI reads edges).
//! No logic lives here.

#![allow(missing_debug_implementations, clippy::unwrap_used, unreachable_pub)]

/// `mapper.v1`.
pub mod v1 {
    tonic::include_proto!("mapper.v1");
}
