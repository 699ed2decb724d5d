//! Inventory files (`mapper-server --inventory`): any text, read as JSON when it starts like
//! JSON and as YAML otherwise, must load or fail with an error, never panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let json = text.trim_start().starts_with(['{', '[']);
    let path = if json { Path::new("fuzz.json") } else { Path::new("fuzz.yaml") };
    let _ = mapper_cluster::check_inventory_text(path, text, &["intents.otterize.com/workload-name"]);
});
