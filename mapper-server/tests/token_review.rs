//! In-cluster authentication through the real mapper-server binary: agents'
//! ServiceAccount tokens reviewed by a fake Kubernetes API server (the
//! TokenReview API, over HTTP, as kube-rs speaks it), cached; readers through a
//! port-forward (loopback) with --allow-loopback-query; the static token.

mod support;

use std::{
    net::IpAddr,
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use mapper_cluster::fake_api::{FakeApi, StatusCode};
use mapper_proto::v1::{self as pb, ingest_client::IngestClient, query_client::QueryClient};
use mapper_report::{SendOutcome, send};
use serde_json::{Value, json};
use support::{FIXTURE, Server};
use tonic::{Code, Request};

const REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
const AGENT: &str = "system:serviceaccount:mapper-system:mapper-agent";
const TOKENS: [&str; 6] =
    ["agent-token", "other-sa-token", "bogus-token", "apiserver-aud-token", "unaware-token", "s3cret-static"];

/// What the fake API server says of a review request, as a real one would:
/// audiences are the intersection of the request's and the token's (the API
/// server's own when the request names none), and an empty one is not
/// authenticated. `unaware-token` mimics an authenticator that ignores the
/// requested audiences, which the server must catch itself.
fn review(request: &Value) -> (StatusCode, Value) {
    let token = request["spec"]["token"].as_str().unwrap_or_default();
    let mut wanted: Vec<String> = request["spec"]["audiences"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default();
    if wanted.is_empty() {
        wanted.push("https://kubernetes.default.svc".into());
    }
    let (user, token_audiences, aware): (&str, &[&str], bool) = match token {
        "agent-token" => (AGENT, &["mapper"], true),
        "other-sa-token" => ("system:serviceaccount:default:other", &["mapper"], true),
        "apiserver-aud-token" => (AGENT, &["https://kubernetes.default.svc"], true),
        "unaware-token" => (AGENT, &["https://kubernetes.default.svc"], false),
        _ => ("", &[], true),
    };
    let audiences: Vec<&str> = if aware {
        token_audiences.iter().copied().filter(|a| wanted.iter().any(|w| w == a)).collect()
    } else {
        token_audiences.to_vec()
    };
    let status = if user.is_empty() {
        json!({"authenticated": false, "error": "invalid bearer token"})
    } else if audiences.is_empty() {
        json!({"authenticated": false,
               "error": format!("token audiences {token_audiences:?} is invalid for the target audiences {wanted:?}")})
    } else {
        json!({"authenticated": true, "audiences": audiences,
               "user": {"username": user, "uid": "0000", "groups": ["system:serviceaccounts"]}})
    };
    let answer = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                        "metadata": {"creationTimestamp": null}, "spec": request["spec"], "status": status});
    (StatusCode::CREATED, answer)
}

/// A kubeconfig pointing at `url`.
fn kubeconfig(dir: &Path, url: &str) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: fake\nclusters:\n- name: fake\n  cluster: {{server: \"{url}\"}}\n\
         contexts:\n- name: fake\n  context: {{cluster: fake, user: fake}}\nusers:\n- name: fake\n  user: {{token: server-sa}}\n"
    );
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}

/// The server on `listen`, its store under `dir`, its kubeconfig `dir/kubeconfig`.
fn start(dir: &Path, listen: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
    let mut cmd = support::command(listen);
    cmd.arg("--data-dir")
        .arg(dir.join("db"))
        .args(args)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("KUBECONFIG", dir.join("kubeconfig"))
        .envs(env.iter().copied())
        .env("RUST_LOG", "debug");
    Server::spawn(cmd)
}

fn batch(sequence: u64) -> pb::ReportRequest {
    let flow = pb::Flow {
        direction: pb::Direction::Connect as i32,
        protocol: pb::Protocol::Tcp as i32,
        src_ip: vec![10, 244, 1, 2],
        dst_ip: vec![10, 244, 1, 3],
        dst_port: 8080,
        count: 1,
        // A little before the server started (its cluster state newer), within ingest's window.
        first_seen_ms: now_ms() - 600_000,
        last_seen_ms: now_ms() - 600_000,
        ..Default::default()
    };
    pb::ReportRequest { node: "node-1".into(), boot_id: "boot-a".into(), sequence, flows: vec![flow], dns: vec![] }
}

/// Reports batch `sequence` with `token`.
async fn report(url: &str, token: Option<&str>, sequence: u64) -> SendOutcome {
    let mut client = IngestClient::connect(url.to_string()).await.expect("connect ingest");
    send(&mut client, token, batch(sequence), Duration::from_secs(10)).await
}

fn refused(outcome: SendOutcome, code: Code, what: &str) -> String {
    match outcome {
        SendOutcome::Retry(s) if s.code() == code => s.message().to_string(),
        other => panic!("{what}: expected {code:?}, got {other:?}"),
    }
}

/// ListEdges with `token`.
async fn list(url: &str, token: Option<&str>) -> Result<usize, tonic::Status> {
    let mut q = QueryClient::connect(url.to_string()).await.expect("connect query");
    let mut req = Request::new(pb::ListEdgesRequest { include_unresolved: true, ..Default::default() });
    if let Some(t) = token {
        req.metadata_mut().insert("authorization", format!("Bearer {t}").parse().expect("header"));
    }
    q.list_edges(req).await.map(|r| r.into_inner().edges.len())
}

fn assert_no_token_logged(server: &Server) {
    let log = server.log();
    for t in TOKENS {
        assert!(!log.contains(t), "the server logged a token ({t}):\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_tokens_are_reviewed_and_cached() {
    let api = FakeApi::start().await;
    api.on_post(REVIEWS, review);
    let dir = tempfile::tempdir().expect("tempdir");
    kubeconfig(dir.path(), &format!("http://{}", api.addr));
    std::fs::write(dir.path().join("token"), "s3cret-static\n").expect("token file");
    let token_file = dir.path().join("token");
    let server = start(
        dir.path(),
        "127.0.0.1:0",
        &[
            "--token-file",
            token_file.to_str().expect("utf-8"),
            "--token-review-audience",
            "mapper",
            "--agent-service-account",
            "mapper-system/mapper-agent,mapper-system/spare",
        ],
        &[],
    );
    let url = server.url(None);

    // The agent's token: reviewed once, then answered from the cache.
    assert!(matches!(report(&url, Some("agent-token"), 1).await, SendOutcome::Acked { duplicate: false }));
    assert_eq!(api.requests(REVIEWS), 1);
    assert!(matches!(report(&url, Some("agent-token"), 2).await, SendOutcome::Acked { duplicate: false }));
    assert_eq!(api.requests(REVIEWS), 1, "a cached token was reviewed again");

    // Another ServiceAccount's valid token.
    let msg = refused(report(&url, Some("other-sa-token"), 3).await, Code::Unauthenticated, "another SA");
    assert!(msg.contains("system:serviceaccount:default:other") && msg.contains("not one of the agent"), "{msg}");
    // Refusals are cached too (briefly).
    refused(report(&url, Some("other-sa-token"), 3).await, Code::Unauthenticated, "another SA again");
    assert_eq!(api.requests(REVIEWS), 2, "a refused token was reviewed again at once");
    // A token the API server does not authenticate.
    let msg = refused(report(&url, Some("bogus-token"), 3).await, Code::Unauthenticated, "bogus token");
    assert!(msg.contains("invalid bearer token"), "{msg}");
    // Tokens for another audience: refused by the API server, or by mapper-server
    // when the authenticator ignores audiences.
    let msg = refused(report(&url, Some("apiserver-aud-token"), 3).await, Code::Unauthenticated, "wrong audience");
    assert!(msg.contains("invalid for the target audiences"), "{msg}");
    let msg = refused(report(&url, Some("unaware-token"), 3).await, Code::Unauthenticated, "audience-unaware");
    assert!(msg.contains("not for audience \"mapper\""), "{msg}");
    let msg = refused(report(&url, None, 3).await, Code::Unauthenticated, "no token");
    assert!(msg.contains("missing"), "{msg}");

    // The static token goes everywhere, without a review.
    let before = api.requests(REVIEWS);
    assert!(matches!(report(&url, Some("s3cret-static"), 3).await, SendOutcome::Acked { duplicate: false }));
    assert_eq!(list(&url, Some("s3cret-static")).await.expect("static token reads"), 1);
    assert_eq!(api.requests(REVIEWS), before);
    // Agents do not read the map; nor does loopback without --allow-loopback-query.
    assert_eq!(list(&url, Some("agent-token")).await.expect_err("agent reads").code(), Code::Unauthenticated);
    assert_eq!(list(&url, None).await.expect_err("loopback without the flag").code(), Code::Unauthenticated);
    assert_no_token_logged(&server);
}

/// A non-loopback address of this machine, if it has one (found without sending anything).
fn local_non_loopback() -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    Some(s.local_addr().ok()?.ip()).filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_query_without_a_token_only_with_the_flag() {
    let api = FakeApi::start().await;
    api.on_post(REVIEWS, review);
    let dir = tempfile::tempdir().expect("tempdir");
    kubeconfig(dir.path(), &format!("http://{}", api.addr));
    // Flags from the environment, as the Deployment sets them; every interface,
    // which token review alone makes acceptable.
    let server = start(
        dir.path(),
        "0.0.0.0:0",
        &[],
        &[
            ("MAPPER_TOKEN_REVIEW_AUDIENCE", "mapper"),
            ("MAPPER_AGENT_SERVICE_ACCOUNT", "mapper-system/mapper-agent"),
            ("MAPPER_ALLOW_LOOPBACK_QUERY", "true"),
        ],
    );
    let url = server.url(None);
    // A reader through a port-forward: loopback, no token.
    assert_eq!(list(&url, None).await.expect("loopback query"), 0);
    let mut q = QueryClient::connect(url.clone()).await.expect("connect");
    assert!(q.health(pb::HealthRequest {}).await.is_ok(), "health over loopback");
    // Loopback is no way in for agents.
    refused(report(&url, None, 1).await, Code::Unauthenticated, "loopback ingest without a token");
    assert!(matches!(report(&url, Some("agent-token"), 1).await, SendOutcome::Acked { .. }));

    match local_non_loopback() {
        Some(ip) => {
            let remote = server.url(Some(ip));
            let e = list(&remote, None).await.expect_err("non-loopback query without a token");
            assert_eq!(e.code(), Code::Unauthenticated);
            assert!(e.message().contains("port-forward"), "{e:?}");
            assert!(matches!(report(&remote, Some("agent-token"), 2).await, SendOutcome::Acked { .. }));
        }
        None => eprintln!("no non-loopback address on this machine: remote peers not tried"),
    }
    assert_no_token_logged(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_review_failures_are_unavailable_and_not_cached() {
    let api = FakeApi::start().await;
    let failing = Arc::new(AtomicBool::new(true));
    let f = failing.clone();
    api.on_post(REVIEWS, move |req| {
        if f.load(Ordering::SeqCst) {
            let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                "message": "etcdserver: request timed out", "reason": "InternalError", "code": 500});
            (StatusCode::INTERNAL_SERVER_ERROR, status)
        } else {
            review(req)
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    kubeconfig(dir.path(), &format!("http://{}", api.addr));
    let args = ["--token-review-audience", "mapper", "--agent-service-account", "mapper-system/mapper-agent"];
    let server = start(dir.path(), "127.0.0.1:0", &args, &[]);
    let url = server.url(None);
    let msg = refused(report(&url, Some("agent-token"), 1).await, Code::Unavailable, "API failing");
    assert!(msg.contains("TokenReview") && msg.contains("etcdserver: request timed out"), "{msg}");
    assert!(server.logs_soon("TokenReview request failed"), "API failure not logged:\n{}", server.log());
    failing.store(false, Ordering::SeqCst);
    assert!(
        matches!(report(&url, Some("agent-token"), 1).await, SendOutcome::Acked { .. }),
        "a failed review was cached"
    );
    assert_eq!(api.requests(REVIEWS), 2);
    assert_no_token_logged(&server);
    drop(server);

    // No API server at all.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    kubeconfig(dir.path(), &format!("http://{closed}"));
    let server = start(dir.path(), "127.0.0.1:0", &args, &[]);
    let msg = refused(report(&server.url(None), Some("agent-token"), 1).await, Code::Unavailable, "API down");
    assert!(msg.contains("TokenReview"), "{msg}");
}

#[test]
fn token_review_needs_agent_service_accounts() {
    let out = Command::new(env!("CARGO_BIN_EXE_mapper-server"))
        .args(["--inventory", FIXTURE, "--token-review-audience", "mapper"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--agent-service-account"), "{err}");
}

fn now_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis();
    i64::try_from(now).expect("ms")
}
