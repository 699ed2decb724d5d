//! A flow to a pod the cluster state does not have yet, through the real mapper-server binary:
//! its address is in the cluster's pod range (a Node's podCIDR), so the edge is unresolved,
//! never a destination outside the cluster; once the pod is in the cluster state, the edge is
//! resolved again and its counts move to the pod's workload.

mod support;

use std::{
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use mapper_proto::v1::{self as pb, ingest_client::IngestClient, query_client::QueryClient};
use support::Server;

const CLIENT_UID: &str = "11111111-0000-0000-0000-000000000003";

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The seed fixture's node, with its pod range.
const NODE: &str = "apiVersion: v1
kind: Node
metadata: {name: node-1}
spec: {podCIDR: 10.244.1.0/24}
status: {addresses: [{type: InternalIP, address: 10.0.0.1}]}
";

/// A pod created a minute ago at 10.244.1.77, which the first inventory lacks.
fn late_pod() -> String {
    let started = humantime::format_rfc3339_seconds(SystemTime::now() - Duration::from_secs(60));
    format!(
        "---
apiVersion: v1
kind: Pod
metadata: {{name: late-api, namespace: team3, uid: 77777777-0000-4000-8000-000000000001, creationTimestamp: \"{started}\"}}
spec: {{containers: [{{name: app, image: lab}}], nodeName: node-1}}
status: {{phase: Running, podIP: 10.244.1.77, podIPs: [{{ip: 10.244.1.77}}], startTime: \"{started}\"}}
"
    )
}

/// Written whole, so the server's poll never reads half a file.
fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write the inventory");
    std::fs::rename(&tmp, path).expect("replace the inventory");
}

fn connect(dst: [u8; 4], count: u64, at: i64) -> pb::Flow {
    pb::Flow {
        direction: pb::Direction::Connect as i32,
        protocol: pb::Protocol::Tcp as i32,
        src_ip: vec![10, 244, 1, 2],
        dst_ip: dst.to_vec(),
        dst_port: 9000,
        count,
        pod_uid: CLIENT_UID.into(),
        first_seen_ms: at,
        last_seen_ms: at,
        ..Default::default()
    }
}

fn server_end(e: &pb::Edge) -> String {
    match e.server.as_ref().and_then(|p| p.peer.as_ref()) {
        Some(pb::peer::Peer::Workload(w)) => format!("{}.{}", w.name, w.namespace),
        Some(pb::peer::Peer::Unresolved(u)) => format!("unresolved {:?} ({})", u.ip, u.reason),
        Some(pb::peer::Peer::External(x)) => format!("external {:?}", x.ip),
        other => format!("{other:?}"),
    }
}

async fn edges(url: &str) -> Vec<(String, u64)> {
    let mut q = QueryClient::connect(url.to_owned()).await.expect("connect query");
    let req = pb::ListEdgesRequest { include_unresolved: true, ..Default::default() };
    let mut out: Vec<(String, u64)> = q
        .list_edges(req)
        .await
        .expect("list edges")
        .into_inner()
        .edges
        .iter()
        .map(|e| (server_end(e), e.established))
        .collect();
    out.sort();
    out
}

async fn wait_ready(url: &str, server: &Server) {
    for _ in 0..200 {
        if let Ok(mut q) = QueryClient::connect(url.to_owned()).await
            && q.health(pb::HealthRequest {}).await.is_ok_and(|h| h.get_ref().ready)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} never became ready:\n{}", server.log());
}

#[tokio::test]
async fn an_unknown_pod_address_is_unresolved_then_resolved_when_the_pod_appears() {
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = dir.path().join("node.yaml");
    write(&extra, NODE);
    let mut cmd = support::command("127.0.0.1:0");
    cmd.arg("--inventory").arg(&extra).arg("--data-dir").arg(dir.path().join("data")).env("RUST_LOG", "info");
    let server = Server::spawn(cmd);
    let url = server.url(None);
    wait_ready(&url, &server).await;

    // Seen six seconds ago: older than the cluster state, so the server does not wait for it.
    let at = now_ms() - 6_000;
    let flows = vec![connect([10, 244, 1, 77], 4, at), connect([10, 250, 0, 1], 1, at)];
    let mut ingest = IngestClient::connect(url.clone()).await.expect("connect ingest");
    let req = pb::ReportRequest { node: "node-1".into(), boot_id: "b1".into(), sequence: 1, flows, dns: vec![] };
    let answer = ingest.report(req).await.unwrap_or_else(|s| panic!("report refused: {s}\n{}", server.log()));
    assert_eq!(answer.get_ref().flows_applied, 2);
    assert_eq!(
        edges(&url).await,
        [
            ("external [10, 250, 0, 1]".to_owned(), 1),
            ("unresolved [10, 244, 1, 77] (unknown_cluster_ip)".to_owned(), 4),
        ],
        "an address in the node's podCIDR is in the cluster, never outside; one beyond every range is"
    );

    write(&extra, &format!("{NODE}{}", late_pod()));
    let want = [("external [10, 250, 0, 1]".to_owned(), 1), ("late-api.team3".to_owned(), 4)];
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = edges(&url).await;
        if got == want {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the edge was never resolved again: {got:?}\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(server.logs_soon("resolved with the new cluster state"), "{}", server.log());
}
