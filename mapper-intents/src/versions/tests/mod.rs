//! Conversions between the neutral model and each version.

use super::*;

mod reading;
use crate::model::{HttpResource, Internet, OtherKind, OtherTarget, Target};

fn doc(targets: Vec<Target>) -> ClientIntentsDoc {
    ClientIntentsDoc {
        name: "client".to_owned(),
        namespace: Some("team1".to_owned()),
        client_name: "client".to_owned(),
        client_kind: Some("Deployment".to_owned()),
        targets,
    }
}

fn yaml(text: &str) -> serde_json::Value {
    crate::stream::from_str(text).unwrap_or_else(|e| panic!("test YAML does not parse: {e}\n{text}"))
}

fn kafka() -> Target {
    Target::Other(OtherTarget {
        kind: OtherKind::Kafka,
        body: yaml("name: kafka.kafka-ns\ntopics:\n  - name: orders\n    operations: [consume]\n"),
    })
}

/// Every kind of target the model has, in one document.
fn all_targets() -> Vec<Target> {
    let mut workload = Target::workload("ledger", Some("team3"), Some("StatefulSet"));
    if let Target::Workload(w) = &mut workload {
        w.http = vec![HttpResource { path: "/tx".to_owned(), methods: vec!["GET".to_owned(), "POST".to_owned()] }];
    }
    vec![
        workload,
        Target::workload("cache", None, None),
        Target::service("legacy-db", None),
        Target::service("search", Some("team2")),
        Target::ApiServer,
        Target::Internet(Internet {
            domains: vec!["*.example.com".to_owned()],
            ips: vec!["10.0.0.0/8".to_owned()],
            ports: vec![443],
        }),
        kafka(),
        Target::Other(OtherTarget {
            kind: OtherKind::Sql,
            body: yaml("name: db.team3\nprivileges:\n  - databaseName: tx\n    table: t\n    operations: [SELECT]\n"),
        }),
        Target::Other(OtherTarget {
            kind: OtherKind::Aws,
            body: yaml("arn: arn:aws:s3:::bucket\nactions: [s3:GetObject]\n"),
        }),
        Target::Other(OtherTarget {
            kind: OtherKind::Gcp,
            body: yaml("resource: projects/p/buckets/b\npermissions: [storage.objects.get]\n"),
        }),
        Target::Other(OtherTarget { kind: OtherKind::Azure, body: yaml("scope: /subscriptions/s\nroles: [Reader]\n") }),
    ]
}

fn roundtrip(doc: &ClientIntentsDoc, version: IntentsVersion) -> ClientIntentsDoc {
    let versioned = VersionedClientIntents::from_doc(doc, version)
        .unwrap_or_else(|e| panic!("{version}: conversion from the model failed: {e}"));
    assert_eq!(versioned.version(), version);
    versioned.to_doc().unwrap_or_else(|e| panic!("{version}: conversion back to the model failed: {e}"))
}

#[test]
fn versions_parse_with_aliases_and_display_bare() {
    let cases = [
        ("v1alpha2", IntentsVersion::V1Alpha2),
        ("v1alpha3", IntentsVersion::V1Alpha3),
        ("v1", IntentsVersion::V1Alpha3),
        ("V1Beta1", IntentsVersion::V1Beta1),
        ("v2alpha1", IntentsVersion::V2Alpha1),
        ("v2", IntentsVersion::V2Beta1),
        ("k8s.otterize.com/v2beta1", IntentsVersion::V2Beta1),
    ];
    for (text, expected) in cases {
        assert_eq!(text.parse::<IntentsVersion>(), Ok(expected), "parsing {text:?}");
    }
    for version in IntentsVersion::ALL {
        assert_eq!(version.to_string().parse::<IntentsVersion>(), Ok(version));
        assert_eq!(IntentsVersion::from_api_version(&version.api_version()), Some(version));
    }
    let err = "v3".parse::<IntentsVersion>().err().unwrap_or_else(|| panic!("v3 must not parse"));
    assert!(err.to_string().contains("unknown ClientIntents version `v3`"), "message: {err}");
    assert_eq!(IntentsVersion::from_api_version("k8s.otterize.com/v1"), None, "aliases are not apiVersions");
}

#[test]
fn every_target_round_trips_through_v1_and_v2_versions() {
    let original = doc(all_targets());
    for version in
        [IntentsVersion::V1Alpha3, IntentsVersion::V1Beta1, IntentsVersion::V2Alpha1, IntentsVersion::V2Beta1]
    {
        assert_eq!(roundtrip(&original, version), original, "{version} must keep every target");
    }
}

#[test]
fn v1alpha2_round_trip_drops_only_kinds() {
    let original = doc(vec![
        Target::workload("ledger", Some("team3"), Some("Deployment")),
        Target::workload("ledger", Some("team3"), Some("StatefulSet")),
        Target::service("legacy-db", None),
        Target::ApiServer,
        kafka(),
    ]);
    let expected = ClientIntentsDoc {
        client_kind: None,
        targets: vec![
            Target::workload("ledger", Some("team3"), None),
            Target::service("legacy-db", None),
            Target::ApiServer,
            kafka(),
        ],
        ..original.clone()
    };
    assert_eq!(roundtrip(&original, IntentsVersion::V1Alpha2), expected, "kinds dropped and the duplicate merged");
}

#[test]
fn v1alpha2_cannot_express_internet_or_cloud_targets() {
    for (i, target) in all_targets().into_iter().enumerate() {
        let expressible = !matches!(&target, Target::Internet(_))
            && !matches!(&target, Target::Other(o) if matches!(o.kind, OtherKind::Aws | OtherKind::Gcp | OtherKind::Azure));
        let result = VersionedClientIntents::from_doc(&doc(vec![target.clone()]), IntentsVersion::V1Alpha2);
        match (expressible, result) {
            (true, Ok(_)) => {}
            (false, Err(e)) => {
                assert_eq!(e.path, "targets[0]", "target {i}");
                assert!(
                    matches!(e.problem, Problem::Unsupported { version: IntentsVersion::V1Alpha2, .. }),
                    "target {i}: {e}"
                );
            }
            (expected, got) => {
                panic!("target {i} ({target:?}): expected expressible={expected}, got {got:?}")
            }
        }
    }
}

#[test]
fn api_server_and_services_use_the_forms_the_operator_recognises() {
    let d = doc(vec![Target::ApiServer, Target::service("legacy-db", Some("team2"))]);
    let v1a2 = VersionedClientIntents::from_doc(&d, IntentsVersion::V1Alpha2).unwrap_or_else(|e| panic!("{e}"));
    let VersionedClientIntents::V1Alpha2(ci) = v1a2 else { panic!("wrong variant") };
    let names: Vec<&str> = ci.spec.calls.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["svc:kubernetes.default", "svc:legacy-db.team2"]);

    let v1b1 = VersionedClientIntents::from_doc(&d, IntentsVersion::V1Beta1).unwrap_or_else(|e| panic!("{e}"));
    let VersionedClientIntents::V1Beta1(ci) = v1b1 else { panic!("wrong variant") };
    assert_eq!((ci.spec.calls[0].name.as_str(), ci.spec.calls[0].kind.as_deref()), ("svc:kubernetes.default", None));
    assert_eq!(
        (ci.spec.calls[1].name.as_str(), ci.spec.calls[1].kind.as_deref()),
        ("legacy-db.team2", Some("Service"))
    );

    let v2 = VersionedClientIntents::from_doc(&d, IntentsVersion::V2Beta1).unwrap_or_else(|e| panic!("{e}"));
    let VersionedClientIntents::V2Beta1(ci) = v2 else { panic!("wrong variant") };
    let services: Vec<Option<&str>> =
        ci.spec.targets.iter().map(|t| t.service.as_ref().map(|s| s.name.as_str())).collect();
    assert_eq!(services, [Some("kubernetes.default"), Some("legacy-db.team2")]);
}

/// otterize-cli qualifies no target in the client's own namespace, the API server included:
/// a client in `default` calls `kubernetes` (v1 `svc:kubernetes`), and it reads back as the API
/// server.
#[test]
fn the_api_server_is_unqualified_in_a_document_of_default() {
    let d = ClientIntentsDoc { namespace: Some("default".to_owned()), ..doc(vec![Target::ApiServer]) };
    let yaml = crate::render_yaml(std::slice::from_ref(&d), IntentsVersion::V2Beta1).unwrap_or_else(|e| panic!("{e}"));
    assert!(yaml.contains("  targets:\n    - service:\n        name: kubernetes\n"), "{yaml}");
    for version in [IntentsVersion::V1Alpha2, IntentsVersion::V1Alpha3, IntentsVersion::V1Beta1] {
        let text = crate::render_yaml(std::slice::from_ref(&d), version).unwrap_or_else(|e| panic!("{e}"));
        assert!(text.contains("    - name: svc:kubernetes\n"), "{version}: {text}");
        assert_eq!(roundtrip(&d, version).targets, [Target::ApiServer], "{version}");
    }
    assert_eq!(roundtrip(&d, IntentsVersion::V2Beta1).targets, [Target::ApiServer]);
    // Without a namespace (left to kubectl apply -n) it stays qualified: it names one Service.
    let unplaced = ClientIntentsDoc { namespace: None, ..d };
    let yaml = crate::render_yaml(&[unplaced], IntentsVersion::V2Beta1).unwrap_or_else(|e| panic!("{e}"));
    assert!(yaml.contains("        name: kubernetes.default\n"), "{yaml}");
}

#[test]
fn every_opaque_kind_has_its_own_mapping() {
    for kind in OtherKind::ALL {
        let mapping = opaque::for_kind(kind);
        assert_eq!(mapping.kind, kind, "MAPPINGS must follow the declaration order of OtherKind");
        assert_eq!(opaque::for_call_type(mapping.call_type).map(|m| m.kind), Some(kind));
    }
}
