//! How long the audit diff takes on a large map: `cargo bench -p mapper-intents --bench audit`.
//!
//! 2 000 client workloads in 20 namespaces, each calling 50 servers (100 000 edges, a fifth of
//! them through a Service ClusterIP), declared by one ClientIntents document per client that
//! names 45 of its 50 servers (a third as Service targets) and 5 it never calls. Prints the time
//! per audit (median of 5) and per edge, and checks the totals so the figure is of a real diff.

use std::hint::black_box;
use std::time::Instant;

use mapper_intents::audit::{AuditScope, DeclaredDoc, audit};
use mapper_intents::{ClientIntentsDoc, Edge, IntentsVersion, Port, Protocol, ServiceName, Target, Workload};

const CLIENTS: usize = 2_000;
const CALLS: usize = 50;
const NAMESPACES: usize = 20;

fn main() {
    let ns = |i: usize| format!("team{}", i % NAMESPACES);
    let mut edges = Vec::with_capacity(CLIENTS * CALLS);
    let mut declared = Vec::with_capacity(CLIENTS);
    for c in 0..CLIENTS {
        let client = Workload::new(format!("client-{c}"), ns(c), "Deployment");
        let mut targets = Vec::new();
        for k in 0..CALLS {
            let s = (c * 7 + k) % 5_000;
            let (server, server_ns) = (format!("server-{s}"), ns(s));
            let via = if k % 5 == 0 {
                vec![ServiceName { name: server.clone(), namespace: server_ns.clone() }]
            } else {
                Vec::new()
            };
            edges.push(Edge {
                client: client.clone(),
                server: Target::workload(&server, Some(&server_ns), Some("Deployment")),
                ports: vec![Port { port: 8080, protocol: Protocol::Tcp }],
                established: 10,
                failed: 0,
                first_seen_ms: 1,
                last_seen_ms: 2,
                via_services: via,
            });
            if k < 45 {
                targets.push(if k % 15 == 0 {
                    Target::service(&server, Some(&server_ns))
                } else {
                    Target::workload(&server, Some(&server_ns), None)
                });
            }
        }
        for u in 0..5 {
            targets.push(Target::workload(&format!("unused-{u}"), None, None));
        }
        let doc = ClientIntentsDoc {
            name: client.name.to_string(),
            namespace: Some(client.namespace.to_string()),
            client_name: client.name.to_string(),
            client_kind: None,
            targets,
        };
        declared.push(DeclaredDoc { doc, version: IntentsVersion::V2Beta1, source: format!("bench: document {c}") });
    }
    let scope = AuditScope { namespaces: (0..NAMESPACES).map(ns).collect(), workloads: Vec::new() };
    let mut times = Vec::new();
    let mut totals = None;
    for _ in 0..5 {
        let start = Instant::now();
        let report = audit(black_box(&declared), black_box(&edges), &scope, 0);
        times.push(start.elapsed());
        totals = Some(report.totals());
    }
    let totals = totals.expect("ran");
    // Every client misses the 5 calls it does not declare, and declares 5 targets it never calls;
    // Service targets are covered only where the call went through the ClusterIP (k % 5 == 0).
    assert_eq!(totals.clients, CLIENTS);
    assert_eq!(totals.missing, CLIENTS * 5, "{totals:?}");
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "audit: {} clients, {} edges, {} declared targets: {:.1} ms per audit (median of 5), {:.0} ns per edge; \
         {} missing, {} unused, {} covered",
        CLIENTS,
        edges.len(),
        declared.iter().map(|d| d.doc.targets.len()).sum::<usize>(),
        median.as_secs_f64() * 1e3,
        median.as_nanos() as f64 / edges.len() as f64,
        totals.missing,
        totals.unused,
        totals.covered
    );
}
