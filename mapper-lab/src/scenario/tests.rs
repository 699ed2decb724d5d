use super::*;

fn parse(text: &str) -> Scenario {
    Scenario::parse(text).unwrap_or_else(|e| panic!("scenario must parse: {e}\n{text}"))
}

fn error(text: &str) -> String {
    match Scenario::parse(text) {
        Ok(_) => panic!("scenario must be refused:\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// Workloads last, so a test can append one.
const BASE: &str = "
services:
  - {name: web, namespace: shop, selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
workloads:
  - {name: web, namespace: shop, kind: Deployment, replicas: 3, ports: [8080, \"8125/udp\", 9090], probes: all}
  - {name: db, namespace: shop, kind: StatefulSet, ports: [5432], probes: [5432]}
";

#[test]
fn defaults_and_the_cluster_objects() {
    let s = parse(&format!(
        "{BASE}calls:\n  - {{from: web.shop, to: web.shop, port: 80}}\n  - {{from: web.shop, to: db.shop, port: 5432, via: pod}}\n"
    ));
    assert_eq!(s.ip_families, vec![Family::IPv4]);
    assert!(!s.dual_stack());
    assert_eq!(s.probe_interval, Span(Duration::from_secs(1)));
    assert_eq!(s.round_gap, Span(DEFAULT_ROUND_GAP));
    assert!(s.external.is_empty());
    // The cluster DNS is always there, after the scenario's own workloads.
    let dns = s.workloads.last().expect("coredns");
    assert_eq!((dns.name.as_str(), dns.namespace.as_str(), dns.kind), ("coredns", "kube-system", Kind::Deployment));
    assert_eq!(dns.ports, vec![PodPort { port: 53, udp: true }, PodPort { port: 53, udp: false }]);
    assert_eq!(s.namespaces(), vec!["default", "kube-system", "shop"]);
    // probes: all is every TCP port; a list is itself.
    assert_eq!(s.workloads[0].probe_ports(), vec![8080, 9090]);
    assert_eq!(s.workloads[1].probe_ports(), vec![5432]);
    assert_eq!(s.workloads[0].rollout, None);
    // dns defaults to true via service (and external), false via pod.
    let (svc, pod) = (&s.calls[0], &s.calls[1]);
    assert!(svc.resolves() && !pod.resolves());
    assert_eq!((svc.from_pod, svc.family, svc.count, svc.round), (None, Family::IPv4, 1, 1));
}

#[test]
fn every_addition_parses() {
    let s = parse(&format!(
        "{BASE}ipFamilies: [IPv4, IPv6]\nprobeInterval: 250ms\nroundGap: 0s\n\
         external:\n  - {{name: api.example.com, ip: 203.0.113.10, ports: [443]}}\n\
         calls:\n  - {{from: web.shop, to: api.example.com, via: external, port: 443, fromPod: 2}}\n\
         \x20 - {{from: web.shop, to: web.shop, port: 80, family: IPv6, dns: false}}\n\
         \x20 - {{from: web.shop, to: kubernetes.default, port: 443}}\n\
         \x20 - {{from: db.shop, to: kube-dns.kube-system, port: 53, protocol: udp}}\n"
    ));
    assert!(s.dual_stack());
    assert_eq!((s.probe_interval.0, s.round_gap.0), (Duration::from_millis(250), Duration::ZERO));
    assert_eq!(s.external[0].ip, "203.0.113.10".parse::<IpAddr>().expect("ip"));
    assert!(s.calls[0].resolves());
    assert_eq!(s.calls[0].from_pod, Some(2));
    assert!(!s.calls[1].resolves());
    assert_eq!(s.calls[1].family, Family::IPv6);
    let r = parse(&format!("{BASE}  - {{name: api, namespace: shop, kind: Deployment, rollout: {{round: 3}}}}\n"));
    let api = r.workload("api", "shop").expect("api");
    assert_eq!(api.rollout, Some(Rollout { round: 3 }));
    assert_eq!((api.revision_at(2), api.revision_at(3)), (0, 1));
    assert_eq!(r.last_round(), 3);
}

#[test]
fn errors_name_the_field() {
    let cases = [
        ("ipFamilies: [IPv6]\n", "ipFamilies"),
        ("ipFamily: [IPv4]\n", "unknown field `ipFamily`"),
        ("roundGap: soon\n", "roundGap \"soon\""),
        ("roundGap: 5\n", "roundGap \"5\""),
        ("probeInterval: 0s\n", "probeInterval 0s"),
        ("calls:\n  - {from: web.shop, to: web.shop, port: 80, family: IPv6}\n", "calls[0].family IPv6"),
        ("calls:\n  - {from: web.shop, to: web.shop, port: 80, fromPod: 3}\n", "calls[0].fromPod 3"),
        ("calls:\n  - {from: web.shop, to: web.shop, port: 80, familly: IPv4}\n", "unknown field `familly`"),
        (
            "calls:\n  - {from: web.shop, to: nowhere.example.com, via: external, port: 443}\n",
            "calls[0].to \"nowhere.example.com\": no such external host",
        ),
        ("calls:\n  - {from: web.shop, to: db.shop, port: 5432, via: pod, dns: true}\n", "calls[0].dns"),
        (
            "calls:\n  - {from: web.shop, to: db.shop, port: 5432, via: loopback}\n",
            "calls[0].to \"db.shop\": via loopback a pod calls its own server, so `to` is `from` (\"web.shop\")",
        ),
        ("calls:\n  - {from: web.shop, to: web.shop, port: 80, via: loopback, dns: true}\n", "calls[0].dns"),
        (
            "calls:\n  - {from: web.shop, to: web.shop, port: 80, via: carrier-pigeon}\n",
            "unknown variant `carrier-pigeon`",
        ),
        ("external:\n  - {name: api.example.com, ip: 10.1.2.3}\n", "external[0].ip 10.1.2.3"),
        ("external:\n  - {name: localhost, ip: 203.0.113.1}\n", "external[0].name \"localhost\""),
        ("external:\n  - {name: a.example.com, ip: not-an-ip}\n", "invalid IP address"),
    ];
    for (extra, want) in cases {
        let e = error(&format!("{BASE}{extra}"));
        assert!(e.contains(want), "`{want}` not in the error for {extra:?}: {e}");
    }
    let e = error("workloads: []\nservices:\n  - {name: kube-dns, namespace: kube-system, ports: [{port: 53}]}\n");
    assert!(e.contains("service kube-dns.kube-system: the lab makes that one itself"), "{e}");
    let workload_cases = [
        ("{name: x, namespace: shop, kind: Deployment, ports: [80], probes: [81]}", "workload x.shop: probes: port 81"),
        ("{name: x, namespace: shop, kind: Deployment, probes: some}", "probes \"some\""),
        ("{name: x, namespace: shop, kind: Deployment, rollout: {round: 1}}", "workload x.shop: rollout.round 1"),
        ("{name: x, namespace: shop, kind: Job, rollout: {round: 2}}", "workload x.shop: rollout: only"),
        ("{name: x, namespace: shop, kind: Deployment, rollout: {round: 2, surge: 1}}", "unknown field `surge`"),
        ("{name: coredns, namespace: kube-system, kind: Deployment}", "workload coredns.kube-system"),
    ];
    let e = error(&format!(
        "{BASE}  - {{name: late, namespace: shop, kind: Pod, round: 2}}\ncalls:\n  - {{from: late.shop, to: web.shop, port: 80}}\n"
    ));
    assert!(e.contains("calls[0].round 1: late.shop is only created at round 2"), "{e}");
    for (w, want) in workload_cases {
        let e = error(&format!("{BASE}  - {w}\n"));
        assert!(e.contains(want), "`{want}` not in the error for {w}: {e}");
    }
}

#[test]
fn the_repository_scenarios_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/local/scenarios");
    for name in ["seed.yaml", "kinds.yaml", "realistic.yaml"] {
        let s = Scenario::load(&dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(s.workload("coredns", "kube-system").is_some(), "{name}");
    }
    // Parsing never panics, whatever the input.
    for junk in ["", "[]", "workloads: 3", "workloads: [{}]", "calls: [{from: a}]\nworkloads: []", "\u{0}"] {
        let _ = Scenario::parse(junk);
    }
}

#[test]
fn releases_name_scenario_workloads_once_each() {
    let s = parse(&format!(
        "{BASE}releases:\n  - {{name: shop, namespace: platform, workloads: [web.shop]}}\n  \
         - {{name: db, namespace: shop, workloads: [db.shop]}}\n"
    ));
    let release = |name: &str| s.workload(name, "shop").and_then(|w| s.release_of(w)).map(|r| r.name.as_str());
    assert_eq!((release("web"), release("db")), (Some("shop"), Some("db")));
    let coredns = s.workloads.last().expect("coredns");
    assert!(s.release_of(coredns).is_none());
    assert!(parse(BASE).releases.is_empty(), "no releases by default");

    let refused = [
        ("{name: Shop, namespace: shop, workloads: []}", "releases[0].name \"Shop\": a Helm release name"),
        ("{name: shop-, namespace: shop, workloads: []}", "releases[0].name \"shop-\""),
        ("{name: shop, namespace: a.b, workloads: []}", "releases[0].namespace \"a.b\": expected a namespace name"),
        (
            "{name: shop, namespace: shop, workloads: [web]}",
            "releases[0].workloads[0] \"web\": expected <workload>.<namespace>",
        ),
        (
            "{name: shop, namespace: shop, workloads: [nope.shop]}",
            "releases[0].workloads[0] \"nope.shop\": no such workload",
        ),
        ("{name: shop, namespace: shop, workloads: [coredns.kube-system]}", "no such workload"),
        (
            "{name: shop, namespace: shop, workloads: [web.shop, web.shop]}",
            "releases[0].workloads[1] \"web.shop\": already in a release",
        ),
        ("{name: shop, namespace: shop, workloads: [], chart: shop}", "unknown field `chart`"),
    ];
    for (release, expected) in refused {
        let e = error(&format!("{BASE}releases:\n  - {release}\n"));
        assert!(e.contains(expected), "{release}: {e}");
    }
    let twice = error(&format!(
        "{BASE}releases:\n  - {{name: a, namespace: shop, workloads: [web.shop]}}\n  - {{name: a, namespace: shop, workloads: []}}\n"
    ));
    assert!(twice.contains("releases[1]: release a in shop defined twice"), "{twice}");
    let two = error(&format!(
        "{BASE}releases:\n  - {{name: a, namespace: shop, workloads: [web.shop]}}\n  - {{name: b, namespace: shop, workloads: [web.shop]}}\n"
    ));
    assert!(two.contains("releases[1].workloads[0] \"web.shop\": already in a release"), "{two}");
}

const REVISIONS: &str = "releases:\n  - name: shop\n    namespace: shop\n    workloads: [web.shop]\n    revisions:\n";

#[test]
fn revisions_are_checked_and_their_manifests_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("r1.yaml"), "---\n# Source: shop/templates/a.yaml\nkind: X\n").expect("write");
    let scenario = dir.path().join("s.yaml");
    let load = |revisions: &str| {
        std::fs::write(&scenario, format!("{BASE}{REVISIONS}{revisions}")).expect("write");
        Scenario::load(&scenario)
    };
    let s =
        load("      - {revision: 1, status: deployed, chart: shop-1.0.0-rc.1, manifest: r1.yaml}\n").expect("loads");
    let rev = &s.releases[0].revisions[0];
    assert_eq!(rev.manifest_text, "---\n# Source: shop/templates/a.yaml\nkind: X\n");
    assert_eq!(rev.chart_parts(), Some(("shop", "1.0.0-rc.1")));
    for (revisions, want) in [
        ("      - {revision: 0, status: deployed, chart: shop-1, manifest: r1.yaml}\n", "revisions count from 1"),
        (
            "      - {revision: 1, status: superseded, chart: shop-1, manifest: r1.yaml}\n      \
             - {revision: 1, status: deployed, chart: shop-1, manifest: r1.yaml}\n",
            "revisions[1].revision 1: revisions count from 1, each once",
        ),
        ("      - {revision: 1, status: done, chart: shop-1, manifest: r1.yaml}\n", "status \"done\": expected one of"),
        ("      - {revision: 1, status: deployed, chart: shop, manifest: r1.yaml}\n", "expected NAME-VERSION"),
        (
            "      - {revision: 1, status: deployed, chart: shop-1, manifest: r1.yaml}\n      \
             - {revision: 2, status: deployed, chart: shop-1, manifest: r1.yaml}\n",
            "more than one revision is deployed",
        ),
        ("      - {revision: 1, status: deployed, chart: shop-1, manifest: gone.yaml}\n", "manifest: cannot read "),
        (
            "      - {revision: 1, status: deployed, chart: shop-1, manifest: r1.yaml, notes: x}\n",
            "unknown field `notes`",
        ),
    ] {
        let e = load(revisions).map(|_| ()).expect_err(revisions).to_string();
        assert!(e.contains(want), "`{want}` not in the error for {revisions}: {e}");
    }
}
