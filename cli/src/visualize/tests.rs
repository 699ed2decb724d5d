use mapper_intents::{Port, Protocol};

use super::*;

fn workload(name: &str, namespace: &str, kind: &str) -> Peer {
    Peer::Workload(Workload::new(name, namespace, kind))
}

fn edge(client: Peer, server: Peer, port: u16, established: u64) -> ObservedEdge {
    ObservedEdge {
        client,
        server,
        dns_names: Vec::new(),
        ports: vec![Port { port, protocol: Protocol::Tcp }],
        established,
        failed: u64::from(established == 0),
        first_seen_ms: 0,
        last_seen_ms: 0,
        seen_by_client: true,
        seen_by_server: true,
        via_services: Vec::new(),
        client_release: None,
        server_release: None,
        client_labels: Vec::new(),
    }
}

fn graph() -> Graph {
    Graph::new(&[
        edge(
            workload("transaction-service", "team1", "Deployment"),
            workload("ledger", "team3", "Deployment"),
            8080,
            5,
        ),
        edge(workload("transaction-service", "team1", "Deployment"), Peer::ApiServer, 443, 1),
        edge(
            workload("report", "team1", "CronJob"),
            Peer::Service { name: "legacy".into(), namespace: "team3".into() },
            5432,
            0,
        ),
    ])
}

#[test]
fn dot_groups_namespaces_in_clusters_and_labels_edges_with_ports() {
    assert_eq!(
        dot::render(&graph()),
        r##"digraph mapper {
  rankdir=LR;
  fontname="Helvetica";
  node [shape=box, style="rounded,filled", fillcolor="#eef2f7", fontname="Helvetica"];
  edge [fontname="Helvetica", fontsize=10, color="#555555"];
  subgraph cluster_0 {
    label="namespace team1";
    style=rounded;
    n1 [label="report\nCronJob"];
    n2 [label="transaction-service\nDeployment"];
  }
  subgraph cluster_1 {
    label="namespace team3";
    style=rounded;
    n3 [label="ledger\nDeployment"];
    n4 [label="legacy\nService (no pods)"];
  }
  n0 [label="Kubernetes API server\nkubernetes.default"];
  n1 -> n4 [label="5432/TCP (failed)", style=dashed, color="#c0392b"];
  n2 -> n0 [label="443/TCP"];
  n2 -> n3 [label="8080/TCP"];
}
"##
    );
}

#[test]
fn mermaid_uses_subgraphs_and_dotted_failed_links() {
    assert_eq!(
        mermaid::render(&graph()),
        r#"flowchart LR
  subgraph g0["namespace team1"]
    n1["report<br/>CronJob"]
    n2["transaction-service<br/>Deployment"]
  end
  subgraph g1["namespace team3"]
    n3["ledger<br/>Deployment"]
    n4["legacy<br/>Service (no pods)"]
  end
  n0["Kubernetes API server<br/>kubernetes.default"]
  n1 -.->|"5432/TCP (failed)"| n4
  n2 -->|"443/TCP"| n0
  n2 -->|"8080/TCP"| n3
  linkStyle 0 stroke:#c0392b
"#
    );
}

#[test]
fn svg_is_laid_out_with_every_node_and_edge_label() {
    let text = draw::svg(&graph()).unwrap_or_else(|e| panic!("svg: {e}"));
    assert!(text.starts_with("<?xml") && text.ends_with("</svg>\n"));
    for word in
        ["transaction-service", "ledger", "Kubernetes API server", "8080/TCP", "5432/TCP (failed)", "namespace team1"]
    {
        assert!(text.contains(word), "{word} missing from the SVG");
    }
    assert_eq!(text.matches("<path ").count(), 3, "one path per edge");
    assert_eq!(draw::svg(&graph()).ok(), Some(text), "the drawing is deterministic");
    let empty = draw::svg(&Graph::default()).unwrap_or_else(|e| panic!("svg: {e}"));
    assert!(empty.contains("No connections found."));
}

#[test]
fn png_is_rasterised_from_the_svg() {
    match png::png(&draw::svg(&graph()).unwrap_or_else(|e| panic!("svg: {e}"))) {
        Ok(png) => assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG"),
        // A machine without fonts gets the clear error instead.
        Err(png::PngError::NoFonts) => {}
        Err(e) => panic!("png: {e}"),
    }
}

#[test]
fn the_format_follows_the_extension() {
    assert_eq!(Format::from_extension(Path::new("map.SVG")), Some(Format::Svg));
    assert_eq!(Format::from_extension(Path::new("map.mmd")), Some(Format::Mermaid));
    assert_eq!(Format::from_extension(Path::new("map.txt")), None);
}

#[test]
fn jpg_is_rasterised_from_the_svg() {
    match png::jpg(&draw::svg(&graph()).unwrap_or_else(|e| panic!("svg: {e}"))) {
        // SOI, then the JFIF APP0 segment; EOI at the end.
        Ok(jpg) => assert!(jpg.starts_with(b"\xff\xd8\xff") && jpg.ends_with(b"\xff\xd9"), "not a JPEG"),
        Err(png::PngError::NoFonts) => {}
        Err(e) => panic!("jpg: {e}"),
    }
}

#[test]
fn the_format_is_inferred_from_the_output_file_or_refused() {
    let choose = |format: Option<Format>, path: &str| choose_format(format, Some(Path::new(path)));
    assert_eq!(choose(None, "map.jpg").ok(), Some(Format::Jpg));
    assert_eq!(choose(None, "map.JPEG").ok(), Some(Format::Jpg));
    assert_eq!(choose(None, "map.png").ok(), Some(Format::Png));
    assert_eq!(choose(None, "map.dot").ok(), Some(Format::Dot));
    assert_eq!(choose(None, "map.mmd").ok(), Some(Format::Mermaid));
    assert_eq!(choose(Some(Format::Svg), "map.svg").ok(), Some(Format::Svg));
    assert_eq!(choose(Some(Format::Svg), "map").ok(), Some(Format::Svg), "no extension: --format decides");
    assert_eq!(choose_format(None, None).ok(), Some(Format::Dot), "stdout: DOT");
    assert_eq!(choose_format(Some(Format::Png), None).ok(), Some(Format::Png));
    let err = |format: Option<Format>, path: &str| {
        let e = choose(format, path).err().unwrap_or_else(|| panic!("{path} accepted"));
        assert!(e.is_usage(), "{e}");
        e.to_string()
    };
    assert_eq!(
        err(None, "map.gif"),
        "cannot tell what to draw map.gif as from its extension: name it .png, .jpg, .svg, .dot or .mmd, or give \
         --format and a file without extension"
    );
    assert!(err(None, "map").starts_with("cannot tell what to draw map as"));
    assert!(err(Some(Format::Dot), "map.txt").starts_with("cannot tell what to draw map.txt as"));
    assert_eq!(
        err(Some(Format::Dot), "map.jpg"),
        "--format dot and the extension of map.jpg (jpg) disagree: drop --format, or rename the file"
    );
}
