//! Declared ClientIntents and NetworkPolicies (`mapper audit --declared`, `export --declared`,
//! `policy -f`) and Helm release records (`audit --helm-release`, `helm history`): any input
//! must parse or fail with an error, and what parses must render back in its version.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A release record's data.release: base64, maybe gzip, JSON; then its manifest.
    if let Ok(release) = mapper_intents::helm::decode_release(data, "secret fuzz/sh.helm.release.v1.fuzz.v1") {
        let _ = release.declared();
        let _ = release.policies();
    }
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = mapper_intents::netpol::read_policies(text, "fuzz.yaml");
    let _ = mapper_intents::helm::manifest_documents(text);
    let Ok(read) = mapper_intents::read_documents(text, "fuzz.yaml") else { return };
    for parsed in &read.docs {
        let _ = mapper_intents::render_yaml(std::slice::from_ref(&parsed.doc), parsed.version);
    }
    for skipped in &read.skipped {
        let _ = skipped.message("fuzz.yaml");
    }
});
