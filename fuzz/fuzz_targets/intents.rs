//! Declared ClientIntents (`mapper audit --declared`, `export --declared`, `policy -f`): any
//! text must parse or fail with an error, and what parses must render back in its version.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(read) = mapper_intents::read_documents(text, "fuzz.yaml") else { return };
    for parsed in &read.docs {
        let _ = mapper_intents::render_yaml(std::slice::from_ref(&parsed.doc), parsed.version);
    }
    for skipped in &read.skipped {
        let _ = skipped.message("fuzz.yaml");
    }
});
