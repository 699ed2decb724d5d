use std::io::Write as _;

use base64::Engine as _;

use super::*;

const RECORD: &str = "secret team1/sh.helm.release.v1.payments.v2";

/// A manifest as `helm template` writes it (two templates, a Deployment skipped).
const MANIFEST: &str = "---\n# Source: payments/templates/deployment.yaml\napiVersion: apps/v1\nkind: Deployment\n\
                        metadata:\n  name: transaction-service\n---\n# Source: payments/templates/intents.yaml\n\
                        apiVersion: k8s.otterize.com/v1alpha2\nkind: ClientIntents\nmetadata:\n  name: \
                        transaction-service\nspec:\n  service:\n    name: transaction-service\n  calls:\n    - name: \
                        ledger.team3\n";

fn release_json() -> serde_json::Value {
    serde_json::json!({
        "name": "payments",
        "namespace": "team1",
        "version": 2,
        "info": {"status": "deployed", "last_deployed": "2026-11-30T10:00:00.123Z", "description": "Upgrade complete",
                 "first_deployed": "2026-11-01T09:00:00Z"},
        "chart": {"metadata": {"name": "payments", "version": "1.2.0", "apiVersion": "v2"}, "templates": []},
        "config": {"calls": ["ledger.team3"]},
        "manifest": MANIFEST,
    })
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap_or_else(|e| panic!("gzip: {e}"));
    gz.finish().unwrap_or_else(|e| panic!("gzip: {e}"))
}

#[test]
fn a_gzipped_record_reads_back_whole() {
    let text = encode_release(release_json().to_string().as_bytes());
    let release = decode_release(text.as_bytes(), RECORD).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        release,
        Release {
            name: "payments".into(),
            namespace: "team1".into(),
            revision: 2,
            status: "deployed".into(),
            last_deployed: Some("2026-11-30T10:00:00.123Z".into()),
            description: "Upgrade complete".into(),
            chart_name: "payments".into(),
            chart_version: "1.2.0".into(),
            manifest: MANIFEST.into(),
        }
    );
    assert_eq!(record_name("payments", 2), "sh.helm.release.v1.payments.v2");
}

#[test]
fn an_old_uncompressed_record_is_read_too() {
    let text = b64(release_json().to_string().as_bytes());
    let release = decode_release(text.as_bytes(), RECORD).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((release.name.as_str(), release.revision), ("payments", 2));
}

#[test]
fn bad_records_are_named_with_what_is_wrong() {
    let cases: [(Vec<u8>, &str); 4] = [
        (b"not base64!".to_vec(), "data.release is not base64 (Helm writes base64 of the gzipped release JSON)"),
        (b64(&[0x1f, 0x8b, 0x08, 0, 1, 2, 3, 4, 5]).into_bytes(), "data.release is not valid gzip"),
        (encode_release(b"{\"name\": ").into_bytes(), "the release is not valid Helm release JSON"),
        (b64(b"[1, 2]").into_bytes(), "the release is not valid Helm release JSON"),
    ];
    for (data, expected) in cases {
        let err = decode_release(&data, RECORD).expect_err(expected);
        assert_eq!(err.to_string(), format!("{RECORD}: {expected}"), "{data:?}");
    }
    // A wrong type for a field the reader takes is a JSON error with its place.
    let mut wrong = release_json();
    wrong["version"] = "two".into();
    let err = decode_release(encode_release(wrong.to_string().as_bytes()).as_bytes(), RECORD).expect_err("a string");
    assert!(mapper_error_chain(&err).contains("invalid type: string \"two\", expected u32"), "{err}");
}

fn mapper_error_chain(e: &HelmError) -> String {
    crate::error_chain(e)
}

#[test]
fn decompression_stops_at_the_limit() {
    // 8 MiB of zeros gzip to a few kilobytes: a bomb for a 1 MiB limit.
    let bomb = b64(&gzip(&vec![0u8; 8 << 20]));
    assert!(bomb.len() < 64 << 10, "{}", bomb.len());
    let err = decode_release_limited(bomb.as_bytes(), RECORD, 1 << 20).expect_err("too large");
    assert_eq!(err.to_string(), format!("{RECORD}: the release JSON is larger than 1 MiB once decompressed; not read"));
    // Exactly at the limit is read (and here fails only as JSON).
    let at_limit = b64(&gzip(&vec![b' '; 1 << 20]));
    let err = decode_release_limited(at_limit.as_bytes(), RECORD, 1 << 20).expect_err("not JSON");
    assert!(matches!(err, HelmError::Json { .. }), "{err}");
}

#[test]
fn manifests_split_into_documents_with_their_templates() {
    let manifest = "---\n# Source: a/templates/x.yaml\nkind: A\n---\n# Source: a/templates/empty.yaml\n---\nkind: B\n\
                    --- # a comment\n# Source: a/templates/y.yaml\n\nkind: C\nvalue: \"---\"\n";
    let docs = manifest_documents(manifest);
    let got: Vec<(Option<&str>, &str)> = docs.iter().map(|d| (d.template, d.text)).collect();
    assert_eq!(
        got,
        [
            (Some("a/templates/x.yaml"), "# Source: a/templates/x.yaml\nkind: A\n"),
            (None, "kind: B\n"),
            (Some("a/templates/y.yaml"), "# Source: a/templates/y.yaml\n\nkind: C\nvalue: \"---\"\n"),
        ]
    );
    assert!(manifest_documents("").is_empty());
    assert!(manifest_documents("---\n# only a comment\n").is_empty());
}

#[test]
fn the_manifest_intents_are_named_by_release_and_template() {
    let release = decode_release(encode_release(release_json().to_string().as_bytes()).as_bytes(), RECORD)
        .unwrap_or_else(|e| panic!("{e}"));
    let (docs, warnings) = release.declared().unwrap_or_else(|e| panic!("{e}"));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].source, "release team1/payments revision 2: payments/templates/intents.yaml: document 1");
    // Helm applies a namespace-less object in the release's namespace.
    assert_eq!(docs[0].doc.namespace.as_deref(), Some("team1"));
    assert_eq!(docs[0].doc.client_name, "transaction-service");

    let mut bad = release.clone();
    bad.manifest = MANIFEST.replace("service:\n    name: transaction-service\n", "service: {}\n");
    let err = bad.declared().expect_err("no service name");
    assert!(
        err.to_string().starts_with("release team1/payments revision 2: payments/templates/intents.yaml: document 1: "),
        "{err}"
    );
}

#[test]
fn the_manifest_network_policies_are_read_in_the_release_namespace() {
    let mut release = decode_release(encode_release(release_json().to_string().as_bytes()).as_bytes(), RECORD)
        .unwrap_or_else(|e| panic!("{e}"));
    release.manifest.push_str(
        "---\n# Source: payments/templates/networkpolicy.yaml\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata:\n  name: ts\nspec:\n  podSelector: {}\n",
    );
    let policies = release.policies().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(policies.len(), 1);
    assert_eq!(policies[0].namespace.as_deref(), Some("team1"));
    assert_eq!(
        policies[0].source,
        "release team1/payments revision 2: payments/templates/networkpolicy.yaml: document 1"
    );
    release.manifest.push_str("---\n# Source: payments/templates/bad.yaml\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bad}\nspec: {ingress: 1}\n");
    let err = release.policies().expect_err("bad spec");
    assert!(
        err.to_string().starts_with(
            "release team1/payments revision 2: payments/templates/bad.yaml: document 1: NetworkPolicy bad: "
        ),
        "{err}"
    );
}
