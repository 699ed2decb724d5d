//! Reading version objects: the spellings the operator accepts, and structural errors.

use super::super::*;
use super::{doc, yaml};
use crate::model::{Internet, OtherKind, OtherTarget, Target};

#[test]
fn every_spelling_of_the_api_server_reads_as_the_api_server() {
    let in_default = |calls: v1::Call| {
        let spec = v1::Spec { service: v1::Client { name: "c".to_owned(), kind: None }, calls: vec![calls] };
        let meta = ObjectMeta { name: "c".to_owned(), namespace: Some("default".to_owned()) };
        v1::doc_from(&meta, &spec).unwrap_or_else(|e| panic!("{e}")).targets
    };
    let svc = |name: &str, kind: Option<&str>| v1::Call {
        name: name.to_owned(),
        kind: kind.map(str::to_owned),
        ..v1::Call::default()
    };
    assert_eq!(in_default(svc("svc:kubernetes", None)), [Target::ApiServer]);
    assert_eq!(in_default(svc("kubernetes.default", Some("Service"))), [Target::ApiServer]);
    assert_eq!(
        in_default(svc("kubernetes", None)),
        [Target::workload("kubernetes", None, None)],
        "no svc: = a workload"
    );
    let v2_target = v2::Target {
        kubernetes: Some(v2::KubernetesTarget {
            name: "kubernetes.default".to_owned(),
            kind: Some("Service".to_owned()),
            http: Vec::new(),
        }),
        ..v2::Target::default()
    };
    let spec = v2::Spec { workload: v2::Workload { name: "c".to_owned(), kind: None }, targets: vec![v2_target] };
    let meta = ObjectMeta { name: "c".to_owned(), namespace: Some("team1".to_owned()) };
    assert_eq!(v2::doc_from(&meta, &spec).unwrap_or_else(|e| panic!("{e}")).targets, [Target::ApiServer]);
}

#[test]
fn structural_errors_name_the_field() {
    let meta = ObjectMeta { name: "c".to_owned(), namespace: None };
    let v2_spec = |targets| v2::Spec { workload: v2::Workload { name: "c".to_owned(), kind: None }, targets };
    let two = v2::Target {
        kubernetes: Some(v2::KubernetesTarget { name: "a".to_owned(), ..Default::default() }),
        service: Some(v2::ServiceTarget { name: "a".to_owned(), http: Vec::new() }),
        ..v2::Target::default()
    };
    let cases: Vec<(Result<ClientIntentsDoc, ConvertError>, &str)> = vec![
        (v2::doc_from(&meta, &v2_spec(vec![v2::Target::default(), two])), "spec.targets[0]: none of kubernetes"),
        (
            v2::doc_from(&meta, &v2_spec(vec![v2::Target { kafka: Some(yaml("topics: []")), ..Default::default() }])),
            "spec.targets[0].kafka.name: missing or empty",
        ),
        (
            v2::doc_from(&meta, &v2_spec(vec![v2::Target { aws: Some(yaml("[x]")), ..Default::default() }])),
            "spec.targets[0].aws: expected a mapping, found a sequence",
        ),
        (v2::doc_from(&ObjectMeta::default(), &v2_spec(Vec::new())), "metadata.name: missing or empty"),
        (
            v1::doc_from(&meta, &v1::Spec { service: v1::Client::default(), calls: Vec::new() }),
            "spec.service.name: missing or empty",
        ),
        (
            v1::doc_from(
                &meta,
                &v1::Spec {
                    service: v1::Client { name: "c".to_owned(), kind: None },
                    calls: vec![v1::Call { name: "a.b.c".to_owned(), ..Default::default() }],
                },
            ),
            "spec.calls[0].name: `a.b.c` has more than one `.`",
        ),
        (
            v1::doc_from(
                &meta,
                &v1::Spec {
                    service: v1::Client { name: "c".to_owned(), kind: None },
                    calls: vec![v1::Call {
                        name: "k".to_owned(),
                        call_type: Some(CallType::Kafka),
                        aws_actions: Some(yaml("[x]")),
                        ..Default::default()
                    }],
                },
            ),
            "spec.calls[0]: `awsActions` is not allowed in a call of type kafka",
        ),
        (
            v1::doc_from(
                &meta,
                &v1::Spec {
                    service: v1::Client { name: "c".to_owned(), kind: None },
                    calls: vec![v1::Call { call_type: Some(CallType::Internet), ..Default::default() }],
                },
            ),
            "spec.calls[0].internet: missing or empty",
        ),
        (
            v1alpha2::doc_from(
                &meta,
                &v1alpha2::Spec {
                    service: v1alpha2::Service { name: "c".to_owned() },
                    calls: vec![v1alpha2::Call {
                        name: "x".to_owned(),
                        call_type: Some(CallType::Aws),
                        ..Default::default()
                    }],
                },
            ),
            "spec.calls[0].type: call type `aws` cannot be expressed in v1alpha2",
        ),
    ];
    let first_two = v2::doc_from(
        &meta,
        &v2_spec(vec![
            v2::Target { internet: Some(Internet::default()), ..Default::default() },
            v2::Target {
                kubernetes: Some(v2::KubernetesTarget { name: "a".to_owned(), ..Default::default() }),
                service: Some(v2::ServiceTarget::default()),
                ..Default::default()
            },
        ]),
    );
    let message = first_two.err().map(|e| e.to_string());
    assert_eq!(message.as_deref(), Some("spec.targets[1]: both kubernetes and service are set"));
    for (result, expected) in cases {
        let message =
            result.err().map(|e| e.to_string()).unwrap_or_else(|| panic!("expected an error starting {expected:?}"));
        assert!(message.starts_with(expected), "expected {expected:?}, got {message:?}");
    }
}

#[test]
fn opaque_fields_the_older_version_lacks_are_refused_not_dropped() {
    let azure = Target::Other(OtherTarget { kind: OtherKind::Azure, body: yaml("scope: /s\nactions: [read]\n") });
    let err = VersionedClientIntents::from_doc(&doc(vec![azure.clone()]), IntentsVersion::V1Beta1).err();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("targets[0]: `azure.actions` cannot be expressed in v1beta1")
    );
    assert!(VersionedClientIntents::from_doc(&doc(vec![azure]), IntentsVersion::V2Alpha1).is_ok());
}
