//! The server's ingest validation on any ReportRequest a client can encode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;

/// 2025-06-01T12:00:00Z: a fixed "now", so a run is reproducible.
const NOW_MS: i64 = 1_748_779_200_000;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = mapper_proto::v1::ReportRequest::decode(data) else { return };
    let _ = mapper_server::ingest::check_batch(&req, NOW_MS);
});
