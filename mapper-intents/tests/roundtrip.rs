//! Export → render → parse gives back the same model, in every version and in JSON.

mod common;

use common::{kinds_edges, seed_edges};
use mapper_intents::{
    ClientIntentsDoc, ExportOptions, IntentsVersion, Target, intents_from_edges, parse_documents, render_json,
    render_yaml,
};

/// What survives v1alpha2, which has no kinds.
fn without_kinds(docs: &[ClientIntentsDoc]) -> Vec<ClientIntentsDoc> {
    docs.iter()
        .map(|d| ClientIntentsDoc {
            client_kind: None,
            targets: d
                .targets
                .iter()
                .map(|t| match t {
                    Target::Workload(w) => Target::Workload(mapper_intents::WorkloadTarget { kind: None, ..w.clone() }),
                    other => other.clone(),
                })
                .collect(),
            ..d.clone()
        })
        .collect()
}

fn check(docs: &[ClientIntentsDoc], version: IntentsVersion, expected: &[ClientIntentsDoc]) {
    let yaml = render_yaml(docs, version).unwrap_or_else(|e| panic!("{version}: render failed: {e}"));
    let parsed =
        parse_documents(&yaml, "export.yaml").unwrap_or_else(|e| panic!("{version}: parse failed: {e}\n{yaml}"));
    assert_eq!(parsed, expected, "{version}: YAML round trip changed the model\n{yaml}");
    let json = render_json(docs, version).unwrap_or_else(|e| panic!("{version}: JSON render failed: {e}"));
    let parsed =
        parse_documents(&json, "export.json").unwrap_or_else(|e| panic!("{version}: JSON parse failed: {e}\n{json}"));
    assert_eq!(parsed, expected, "{version}: JSON round trip changed the model");
}

#[test]
fn every_version_round_trips_the_kinds_scenario() {
    let docs = intents_from_edges(&kinds_edges(), &ExportOptions::default());
    assert!(docs.iter().any(|d| d.targets.iter().any(|t| matches!(t, Target::Internet(_)))));
    for version in
        [IntentsVersion::V1Alpha3, IntentsVersion::V1Beta1, IntentsVersion::V2Alpha1, IntentsVersion::V2Beta1]
    {
        check(&docs, version, &docs);
    }
    let opts = ExportOptions { include_internet: false, ..ExportOptions::default() };
    let docs = intents_from_edges(&kinds_edges(), &opts);
    check(&docs, IntentsVersion::V1Alpha2, &without_kinds(&docs));
}

#[test]
fn every_version_round_trips_the_seed() {
    let docs = intents_from_edges(&seed_edges(), &ExportOptions::default());
    for version in IntentsVersion::ALL {
        let expected = if version == IntentsVersion::V1Alpha2 { without_kinds(&docs) } else { docs.clone() };
        check(&docs, version, &expected);
    }
}

#[test]
fn converting_between_versions_through_the_model_is_stable() {
    let docs = intents_from_edges(&kinds_edges(), &ExportOptions::default());
    let v1 = render_yaml(&docs, IntentsVersion::V1Beta1).unwrap_or_else(|e| panic!("{e}"));
    let from_v1 = parse_documents(&v1, "v1.yaml").unwrap_or_else(|e| panic!("{e}"));
    let v2 = render_yaml(&from_v1, IntentsVersion::V2Alpha1).unwrap_or_else(|e| panic!("{e}"));
    let expected = render_yaml(&docs, IntentsVersion::V2Alpha1).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v2, expected, "v1beta1 → model → v2alpha1 equals a direct v2alpha1 export");
}
