//! A real mapper-server holding 100 000 edges (written straight into its store), read through
//! StreamEdges and by `mapper list`, `export` and `audit -n`: the pages fit gRPC's default
//! receive limit, the edges arrive in (client, server) order, the server applies the filters,
//! and ListEdges refuses an answer past its limit instead of sending it.

mod support;

use mapper_proto::v1::{self as pb, query_client::QueryClient};
use mapper_server::store::EdgeKey;
use support::generate::{self, SERVERS_PER_CLIENT};
use support::{Server, now_ms, ok};

const EDGES: usize = 100_000;
const CLIENTS: usize = EDGES / SERVERS_PER_CLIENT;

fn start() -> Server {
    let data = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    generate::write_store(data.path(), EDGES, now_ms() - 60_000);
    Server::start_in(data, None)
}

/// Every page of StreamEdges for `request`, read with gRPC's default 4 MiB receive limit.
async fn stream(
    client: &mut QueryClient<tonic::transport::Channel>,
    request: pb::ListEdgesRequest,
) -> Vec<Vec<pb::Edge>> {
    let mut pages = Vec::new();
    let mut stream = client.stream_edges(request).await.unwrap_or_else(|e| panic!("StreamEdges: {e}")).into_inner();
    while let Some(page) = stream.message().await.unwrap_or_else(|e| panic!("StreamEdges page: {e}")) {
        pages.push(page.edges);
    }
    pages
}

#[test]
fn a_hundred_thousand_edges_stream_in_order_and_filter_on_the_server() {
    let server = start();
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| panic!("runtime: {e}"));
    runtime.block_on(async {
        let mut client = QueryClient::connect(server.url.clone()).await.unwrap_or_else(|e| panic!("connect: {e}"));
        let all = pb::ListEdgesRequest { include_unresolved: true, ..Default::default() };

        // The whole map: several pages, each under the default limit, in key order.
        let pages = stream(&mut client, all.clone()).await;
        assert!(pages.len() > 1 && pages.iter().all(|p| !p.is_empty()), "{} pages", pages.len());
        let streamed: Vec<pb::Edge> = pages.into_iter().flatten().collect();
        let mut expected: Vec<EdgeKey> = (0..EDGES)
            .map(|i| {
                let (c, s) = (i / SERVERS_PER_CLIENT, i % SERVERS_PER_CLIENT);
                EdgeKey { client: mapper_cluster::Peer::Workload(generate::client(c)), server: generate::server(c, s) }
            })
            .collect();
        expected.sort();
        assert_eq!(streamed.len(), expected.len(), "edges lost or added");
        for (i, (got, want)) in streamed.iter().zip(&expected).enumerate() {
            let want_client = pb::Peer::from(&want.client);
            let want_server = pb::Peer::from(&want.server);
            assert!(
                got.client.as_ref() == Some(&want_client) && got.server.as_ref() == Some(&want_server),
                "edge {i} out of order: {:?} -> {:?}, expected {want:?}",
                got.client,
                got.server
            );
        }

        // ListEdges of the whole map would exceed what an old client reads: refused.
        let status = client.list_edges(all).await.err().unwrap_or_else(|| panic!("ListEdges answered 100 000 edges"));
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
        assert!(status.message().contains("StreamEdges"), "{}", status.message());

        // A small answer: ListEdges and StreamEdges give the same edges in the same order, the
        // filters applied by the server.
        let small = pb::ListEdgesRequest {
            client_namespaces: vec!["team2".into()],
            client_workloads: vec![
                "client-000001.team2".into(),
                "client-000005.team2".into(),
                "client-000002.team3".into(),
            ],
            include_unresolved: true,
            ..Default::default()
        };
        let listed = client.list_edges(small.clone()).await.unwrap_or_else(|e| panic!("ListEdges: {e}")).into_inner();
        assert_eq!(listed.edges.len(), 2 * SERVERS_PER_CLIENT, "two clients of team2 asked for");
        let streamed: Vec<pb::Edge> = stream(&mut client, small).await.into_iter().flatten().collect();
        assert_eq!(streamed, listed.edges, "StreamEdges and ListEdges differ");
    });

    // `mapper list -n team2`: each team2 client once, in name order, with all its calls.
    let json: serde_json::Value =
        serde_json::from_str(&ok(&server.mapper(&["list", "-n", "team2", "--format", "json"])))
            .unwrap_or_else(|e| panic!("list is not JSON: {e}"));
    let clients = json.as_array().unwrap_or_else(|| panic!("list: not an array"));
    assert_eq!(clients.len(), CLIENTS / generate::NAMESPACES);
    let names: Vec<&str> = clients.iter().map(|c| c["client"]["name"].as_str().unwrap_or_default()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert!(names == sorted && names[0] == "client-000001", "clients out of order: {:?}", &names[..3]);
    assert!(clients.iter().all(
        |c| c["client"]["namespace"] == "team2" && c["calls"].as_array().map(Vec::len) == Some(SERVERS_PER_CLIENT)
    ));
    let text = ok(&server.mapper(&["list"]));
    assert_eq!(text.lines().filter(|l| l.ends_with(" calls:")).count(), CLIENTS);
    assert_eq!(text.lines().filter(|l| l.starts_with("  - ")).count(), EDGES);

    // `mapper export`: one document per client, in name order; -n team2 is the team2 part of it.
    let all = ok(&server.mapper(&["export"]));
    let docs: Vec<&str> = all.split("---\n").collect();
    assert_eq!(docs.len(), CLIENTS);
    assert!(
        docs[0].contains("name: client-000000\n")
            && docs[CLIENTS - 1].contains(&format!("name: client-{:06}\n", CLIENTS - 1))
    );
    let team2 = ok(&server.mapper(&["export", "-n", "team2"]));
    let expected: Vec<&str> = docs.iter().copied().filter(|d| d.contains("  namespace: team2\nspec:")).collect();
    assert_eq!(team2.split("---\n").collect::<Vec<_>>(), expected, "export -n team2 is not the team2 part of export");

    // `mapper audit -n team2`: the team2 clients only, every call observed.
    let declared = "apiVersion: k8s.otterize.com/v2beta1\nkind: ClientIntents\nmetadata: {name: client-000001, namespace: team2}\n\
                    spec: {workload: {name: client-000001}, targets: [{kubernetes: {name: server-00.team1}}]}\n";
    let out = support::mapper(
        &[
            "--mapper-url",
            &server.url,
            "audit",
            "--declared",
            "-",
            "-n",
            "team2",
            "--format",
            "json",
            "--fail-on",
            "none",
        ],
        Some(declared),
    );
    let report: serde_json::Value =
        serde_json::from_str(&ok(&out)).unwrap_or_else(|e| panic!("audit is not JSON: {e}"));
    let audited = report["clients"].as_array().unwrap_or_else(|| panic!("audit: no clients: {report}"));
    assert_eq!(audited.len(), CLIENTS / generate::NAMESPACES, "{}", report["summary"]);
    assert!(audited.iter().all(|c| c["client"]["namespace"] == "team2"));
    let one = audited
        .iter()
        .find(|c| c["client"]["name"] == "client-000001")
        .unwrap_or_else(|| panic!("client-000001 not audited"));
    assert_eq!(one["covered"].as_array().map(Vec::len), Some(1), "{one}");
    assert_eq!(one["missing"].as_array().map(Vec::len), Some(SERVERS_PER_CLIENT - 1), "{one}");
}
