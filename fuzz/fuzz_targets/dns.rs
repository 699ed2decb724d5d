//! The agent's DNS answer parser (hickory-proto underneath), on any payload, whole or cut.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, payload)) = data.split_first() else { return };
    let _ = mapper_agent::dns::parse_answer(payload, cut & 1 == 1);
});
