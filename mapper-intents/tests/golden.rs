//! Golden files: exports in every version, and NetworkPolicies, compared byte for byte.
//! `seed_v1alpha2.yaml` and `policy_ledger_from_team1.yaml` are copied verbatim from
//! Otterize's documented examples (docs/formats.md, "Golden files"); the others were checked by
//! eye against their field names and regenerate with `UPDATE_GOLDEN=1 cargo test`.

mod common;

use common::{assert_golden, kinds_edges, seed_edges};
use mapper_intents::{
    ExportOptions, IntentsVersion, PolicyLayout, PolicyOptions, intents_from_edges, network_policies, render_json,
    render_policies_yaml, render_yaml,
};

fn render(edges: &[mapper_intents::Edge], version: IntentsVersion) -> String {
    let docs = intents_from_edges(edges, &ExportOptions::default());
    render_yaml(&docs, version).unwrap_or_else(|e| panic!("rendering as {version} failed: {e}"))
}

#[test]
fn seed_export_as_v1alpha2_matches_otterize_md_exactly() {
    assert_golden("seed_v1alpha2.yaml", &render(&seed_edges(), IntentsVersion::V1Alpha2));
}

#[test]
fn seed_export_in_every_other_version() {
    for version in
        [IntentsVersion::V1Alpha3, IntentsVersion::V1Beta1, IntentsVersion::V2Alpha1, IntentsVersion::V2Beta1]
    {
        assert_golden(&format!("seed_{version}.yaml"), &render(&seed_edges(), version));
    }
}

#[test]
fn kinds_export_as_v2beta1_and_v1alpha3() {
    assert_golden("kinds_v2beta1.yaml", &render(&kinds_edges(), IntentsVersion::V2Beta1));
    assert_golden("kinds_v1alpha3.yaml", &render(&kinds_edges(), IntentsVersion::V1Alpha3));
}

#[test]
fn kinds_export_as_v1alpha2_without_internet() {
    let opts = ExportOptions { include_internet: false, ..ExportOptions::default() };
    let docs = intents_from_edges(&kinds_edges(), &opts);
    let text = render_yaml(&docs, IntentsVersion::V1Alpha2).unwrap_or_else(|e| panic!("v1alpha2 failed: {e}"));
    assert_golden("kinds_v1alpha2.yaml", &text);
}

#[test]
fn seed_export_as_json_list() {
    let docs = intents_from_edges(&seed_edges(), &ExportOptions::default());
    let text = render_json(&docs, IntentsVersion::V2Beta1).unwrap_or_else(|e| panic!("json failed: {e}"));
    assert_golden("seed_v2beta1.json", &text);
}

#[test]
fn policy_for_ledger_from_team1_matches_otterize_md_exactly() {
    let docs = intents_from_edges(&seed_edges(), &ExportOptions::default());
    let team1: Vec<_> = docs.into_iter().filter(|d| d.namespace.as_deref() == Some("team1")).collect();
    let set = network_policies(&team1, &PolicyOptions::default());
    assert_golden(
        "policy_ledger_from_team1.yaml",
        &render_policies_yaml(&set.policies).unwrap_or_else(|e| panic!("{e}")),
    );
}

#[test]
fn policies_for_the_seed_in_both_layouts() {
    let docs = intents_from_edges(&seed_edges(), &ExportOptions::default());
    let legacy = network_policies(&docs, &PolicyOptions::default());
    assert_golden(
        "policies_seed_legacy.yaml",
        &render_policies_yaml(&legacy.policies).unwrap_or_else(|e| panic!("{e}")),
    );
    let opts = PolicyOptions { layout: PolicyLayout::Current, ..PolicyOptions::default() };
    let current = network_policies(&docs, &opts);
    assert_golden(
        "policies_seed_current.yaml",
        &render_policies_yaml(&current.policies).unwrap_or_else(|e| panic!("{e}")),
    );
}

#[test]
fn policies_for_the_kinds_scenario_in_the_current_layout() {
    let docs = intents_from_edges(&kinds_edges(), &ExportOptions::default());
    let opts = PolicyOptions { layout: PolicyLayout::Current, ..PolicyOptions::default() };
    let set = network_policies(&docs, &opts);
    assert_golden(
        "policies_kinds_current.yaml",
        &render_policies_yaml(&set.policies).unwrap_or_else(|e| panic!("{e}")),
    );
    // The Service target legacy-db gets no policy without its Service: a note says why.
    let notes: Vec<String> = set.notes.iter().map(ToString::to_string).collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].starts_with("Service team1/legacy-db: its policy cannot be shown exactly"), "{notes:?}");
}
