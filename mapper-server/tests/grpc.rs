//! The real mapper-server binary over real gRPC on loopback: resends after a
//! lost acknowledgement, a kill -9 between batches, authentication.

mod support;

use std::{path::Path, time::Duration};

use mapper_proto::v1::{self as pb, ingest_client::IngestClient, query_client::QueryClient};
use mapper_report::{SendOutcome, send};
use support::Server;
use tonic::Request;

/// When the test's flows were seen: a little before the server started, so that the cluster
/// state it loaded is newer than they are (and within the window ingest accepts).
fn now() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis();
    i64::try_from(now).expect("ms") - 600_000
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// The server on `port` (the same one across a restart), its store in `data`.
fn start(data: &Path, port: u16, extra: &[&str]) -> Server {
    let mut cmd = support::command(&format!("127.0.0.1:{port}"));
    cmd.arg("--data-dir").arg(data).args(extra).env("RUST_LOG", "info");
    Server::spawn(cmd)
}

fn flow(
    direction: pb::Direction,
    src: [u8; 4],
    dst: [u8; 4],
    port: u32,
    orig: Option<([u8; 4], u32)>,
    count: u64,
    pod_uid: &str,
) -> pb::Flow {
    pb::Flow {
        direction: direction as i32,
        protocol: pb::Protocol::Tcp as i32,
        src_ip: src.to_vec(),
        dst_ip: dst.to_vec(),
        dst_port: port,
        original_dst_ip: orig.map(|o| o.0.to_vec()).unwrap_or_default(),
        original_dst_port: orig.map_or(0, |o| o.1),
        count,
        pod_uid: pod_uid.into(),
        first_seen_ms: now(),
        last_seen_ms: now(),
        ..Default::default()
    }
}

/// transaction-service → ledger through the ClusterIP, `n` connections, seen by the client.
fn client_flow(n: u64) -> pb::Flow {
    flow(
        pb::Direction::Connect,
        [10, 244, 1, 2],
        [10, 244, 1, 3],
        8080,
        Some(([10, 96, 0, 10], 80)),
        n,
        "11111111-0000-0000-0000-000000000003",
    )
}

async fn wait_ready(server: &Server, token: Option<&str>) {
    let url = server.url(None);
    for _ in 0..100 {
        if let Ok(mut q) = QueryClient::connect(url.clone()).await {
            let mut req = Request::new(pb::HealthRequest {});
            if let Some(t) = token {
                req.metadata_mut().insert("authorization", format!("Bearer {t}").parse().expect("header"));
            }
            if q.health(req).await.is_ok_and(|h| h.get_ref().ready) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never became ready:\n{}", server.log());
}

async fn edges(url: &str) -> Vec<pb::Edge> {
    let mut q = QueryClient::connect(url.to_string()).await.expect("connect query");
    q.list_edges(pb::ListEdgesRequest::default()).await.expect("list edges").into_inner().edges
}

fn name(p: &Option<pb::Peer>) -> String {
    match p.as_ref().and_then(|p| p.peer.as_ref()) {
        Some(pb::peer::Peer::Workload(w)) => format!("{}.{} ({})", w.name, w.namespace, w.kind),
        other => format!("{other:?}"),
    }
}

fn batch(sequence: u64, flows: Vec<pb::Flow>) -> pb::ReportRequest {
    pb::ReportRequest { node: "node-1".into(), boot_id: "boot-a".into(), sequence, flows, dns: vec![] }
}

#[tokio::test]
async fn resend_after_lost_ack_counts_once_and_kill_9_loses_nothing() {
    let data = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let server = start(data.path(), port, &[]);
    wait_ready(&server, None).await;
    let mut client = IngestClient::connect(server.url(None)).await.expect("connect");

    // Batch 1 is applied, but the agent never saw the acknowledgement: it sends it again.
    let b1 = batch(1, vec![client_flow(5)]);
    assert!(matches!(
        send(&mut client, None, b1.clone(), Duration::from_secs(5)).await,
        SendOutcome::Acked { duplicate: false }
    ));
    match send(&mut client, None, b1.clone(), Duration::from_secs(5)).await {
        SendOutcome::Acked { duplicate } => assert!(duplicate, "resent batch not recognised"),
        other => panic!("resend: {other:?}"),
    }
    let e = edges(&server.url(None)).await;
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(name(&e[0].client), "transaction-service.team1 (Deployment)");
    assert_eq!(name(&e[0].server), "ledger.team3 (Deployment)", "ClusterIP not resolved to the workload behind it");
    assert_eq!(e[0].established, 5, "the resend counted twice");

    // kill -9 right after an acknowledged batch, then a restart on the same data.
    let b2 = batch(2, vec![client_flow(7)]);
    assert!(matches!(
        send(&mut client, None, b2.clone(), Duration::from_secs(5)).await,
        SendOutcome::Acked { duplicate: false }
    ));
    drop(server); // SIGKILL
    let server = start(data.path(), port, &[]);
    wait_ready(&server, None).await;
    let e = edges(&server.url(None)).await;
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].established, 12, "acknowledged flows lost across kill -9");
    // The accept side of the same connections merges into the same edge.
    let mut client = IngestClient::connect(server.url(None)).await.expect("reconnect");
    let accept = flow(
        pb::Direction::Accept,
        [10, 244, 1, 2],
        [10, 244, 1, 3],
        8080,
        None,
        12,
        "33333333-0000-0000-0000-000000000003",
    );
    assert!(matches!(
        send(
            &mut client,
            None,
            pb::ReportRequest { boot_id: "boot-b".into(), ..batch(1, vec![accept]) },
            Duration::from_secs(5)
        )
        .await,
        SendOutcome::Acked { duplicate: false }
    ));
    let e = edges(&server.url(None)).await;
    assert_eq!(e.len(), 1, "connect and accept of the same connections are one edge: {e:?}");
    assert_eq!(e[0].established, 12);
    assert!(e[0].seen_by_client && e[0].seen_by_server);
}

#[tokio::test]
async fn bad_requests_and_tokens_are_refused() {
    let data = tempfile::tempdir().expect("tempdir");
    let token_file = data.path().join("token");
    std::fs::write(&token_file, "s3cret\n").expect("token");
    let port = free_port();
    let server = start(&data.path().join("db"), port, &["--token-file", token_file.to_str().expect("utf8")]);
    wait_ready(&server, Some("s3cret")).await;
    let mut client = IngestClient::connect(server.url(None)).await.expect("connect");
    // Under another node and boot id than batch()'s.
    let named = |b: pb::ReportRequest| pb::ReportRequest { node: "n".into(), boot_id: "b".into(), ..b };
    let b = named(batch(1, vec![client_flow(1)]));
    match send(&mut client, None, b.clone(), Duration::from_secs(5)).await {
        SendOutcome::Retry(s) => assert_eq!(s.code(), tonic::Code::Unauthenticated, "{s:?}"),
        other => panic!("no token accepted: {other:?}"),
    }
    match send(&mut client, Some("wrong"), b.clone(), Duration::from_secs(5)).await {
        SendOutcome::Retry(s) => assert_eq!(s.code(), tonic::Code::Unauthenticated),
        other => panic!("wrong token accepted: {other:?}"),
    }
    // An invalid batch is rejected with the field named, and stores nothing.
    let mut bad = client_flow(1);
    bad.dst_ip = vec![1, 2, 3];
    match send(&mut client, Some("s3cret"), named(batch(1, vec![client_flow(1), bad])), Duration::from_secs(5)).await {
        SendOutcome::Rejected(s) => {
            assert_eq!(s.code(), tonic::Code::InvalidArgument);
            assert!(s.message().contains("flows[1].dst_ip"), "{}", s.message());
        }
        other => panic!("invalid batch accepted: {other:?}"),
    }
    assert!(
        matches!(
            send(&mut client, Some("s3cret"), b, Duration::from_secs(5)).await,
            SendOutcome::Acked { duplicate: false }
        ),
        "the valid batch with the same sequence must still apply"
    );
}

#[test]
fn refuses_to_listen_openly_without_a_token() {
    let data = tempfile::tempdir().expect("tempdir");
    let out = support::command("0.0.0.0:0").arg("--data-dir").arg(data.path()).output().expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to listen on 0.0.0.0:0 without authentication") && err.contains("--token-file"),
        "{err}"
    );
}

/// A Report whose body stops after its announced size holds room for that size (at most the
/// budget); a call that finds no room within the wait is told RESOURCE_EXHAUSTED (retried by
/// the agent), and room comes back when the holder goes.
#[tokio::test]
async fn the_bytes_of_reports_in_progress_are_bounded() {
    let data = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let server = start(data.path(), port, &["--report-bytes", "4KiB", "--report-queue-wait", "500ms"]);
    wait_ready(&server, None).await;

    // A raw HTTP/2 peer: a Report's headers and the first bytes of a message announcing 1 MiB,
    // and then nothing.
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let (h2, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    let driver = tokio::spawn(connection);
    let mut h2 = h2.ready().await.expect("ready");
    let request = tonic::codegen::http::Request::post(format!("http://127.0.0.1:{port}/mapper.v1.Ingest/Report"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request");
    let (_response, mut body) = h2.send_request(request, false).expect("send headers");
    body.send_data(prost::bytes::Bytes::from_static(&[0, 0, 0x10, 0, 0, 1, 2, 3]), false).expect("send prefix");

    // Its room is taken once the server has read the prefix: from then on, others wait.
    let mut client = IngestClient::connect(server.url(None)).await.expect("connect");
    let mut sequence = 0;
    let refused = loop {
        sequence += 1;
        match send(&mut client, None, batch(sequence, vec![client_flow(1)]), Duration::from_secs(5)).await {
            SendOutcome::Retry(s) => break s,
            SendOutcome::Acked { .. } if sequence < 100 => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("a report found room in a budget another holds: {other:?}"),
        }
    };
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("4096 bytes of reports in progress"), "{}", refused.message());

    // The holder goes: its room is given back.
    body.send_reset(h2::Reason::CANCEL);
    drop((body, h2));
    driver.abort();
    let acked = loop {
        sequence += 1;
        match send(&mut client, None, batch(sequence, vec![client_flow(1)]), Duration::from_secs(5)).await {
            SendOutcome::Acked { duplicate: false } => break true,
            SendOutcome::Retry(_) if sequence < 200 => tokio::time::sleep(Duration::from_millis(100)).await,
            _ => break false,
        }
    };
    assert!(acked, "the room of a report that went was not given back");
}

#[tokio::test]
async fn loopback_flows_make_no_edge_and_are_counted() {
    let data = tempfile::tempdir().expect("tempdir");
    let (server, metrics) = start_with_metrics(data.path()).await;
    let mut client = IngestClient::connect(server.url(None)).await.expect("connect");
    // A sidecar's call to its pod's other container, both ends of it, beside a real call.
    let own = "11111111-0000-0000-0000-000000000003";
    let looped = [
        flow(pb::Direction::Connect, [127, 0, 0, 1], [127, 0, 0, 1], 8080, None, 3, own),
        flow(pb::Direction::Accept, [127, 0, 0, 1], [127, 0, 0, 1], 8080, None, 3, own),
    ];
    let b = batch(1, [client_flow(2)].into_iter().chain(looped).collect());
    match send(&mut client, None, b, Duration::from_secs(5)).await {
        SendOutcome::Acked { duplicate: false } => {}
        other => panic!("batch: {other:?}"),
    }
    let e = edges(&server.url(None)).await;
    assert_eq!(e.len(), 1, "only the call between workloads is an edge: {e:?}");
    assert_eq!(name(&e[0].server), "ledger.team3 (Deployment)");

    let text = http_get(&metrics, "/metrics");
    let ignored = metric(&text, "mapper_server_flows_ignored_total{reason=\"loopback\"}");
    assert_eq!(ignored, "2", "two loopback flows ignored");
}

#[tokio::test]
async fn small_and_large_batches_are_applied_and_counted_alike() {
    // A batch of up to 1 000 flows and DNS answers is resolved on the async worker that has
    // it, a larger one in the blocking pool: both are applied, answered and counted alike.
    let data = tempfile::tempdir().expect("tempdir");
    let (server, metrics) = start_with_metrics(data.path()).await;
    let mut client = IngestClient::connect(server.url(None)).await.expect("connect");
    for (sequence, flows) in [(1, 10), (2, 1_500)] {
        let answer = client
            .report(batch(sequence, (0..flows).map(|_| client_flow(1)).collect()))
            .await
            .unwrap_or_else(|s| panic!("batch of {flows} flows: {s:?}"))
            .into_inner();
        assert_eq!((answer.duplicate, answer.flows_applied), (false, flows), "batch of {flows} flows");
    }
    let e = edges(&server.url(None)).await;
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].established, 1_510, "every flow of both batches counted on the edge");
    let text = http_get(&metrics, "/metrics");
    assert_eq!(metric(&text, "mapper_server_flows_ingested_total"), "1510");
    assert_eq!(metric(&text, "mapper_server_batches_total{result=\"applied\"}"), "2");
}

/// A server on a free port with its metrics on another, ready; and the metrics' address.
async fn start_with_metrics(data: &Path) -> (Server, String) {
    let (port, metrics_port) = (free_port(), free_port());
    let metrics = format!("127.0.0.1:{metrics_port}");
    let server = start(data, port, &["--metrics-listen", &metrics]);
    wait_ready(&server, None).await;
    (server, metrics)
}

/// The value of the sample `name` (with its labels, as exposed) in a metrics page.
fn metric<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

/// A plain HTTP/1.0 GET on loopback (the metrics endpoint), the whole answer as text.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect metrics");
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    out
}
