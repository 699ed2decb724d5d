//! Without --mapper-url, mapper port-forwards through the Kubernetes API. A fake API server
//! speaking the real protocol (REST for the Service and its pods, a `v4.channel.k8s.io`
//! websocket for `pods/portforward`) bridges the forwarded stream to a real mapper-server.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use support::{Server, mapper, ok, stderr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

/// What the fake API server has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cluster {
    /// The Service, a ready pod behind it, and port-forwarding to the real server.
    Healthy,
    /// No mapper-server Service.
    NoService,
    /// The Service, but its only pod is not ready.
    PodNotReady,
    /// Healthy, but without the k8s.otterize.com API group (no ClientIntents CRD).
    NoIntentsCrd,
    /// Healthy, ClientIntents served as v1alpha3, v1beta1 and v2beta1, v1beta1 preferred.
    SeveralVersions,
    /// Healthy, ClientIntents served as v1beta1 and a v3 mapper does not read, v3 preferred.
    UnknownPreferred,
}

impl Cluster {
    /// The ClientIntents versions served, and the preferred one (none: no such API group).
    fn intents_versions(self) -> (&'static [&'static str], Option<&'static str>) {
        match self {
            Cluster::NoIntentsCrd => (&[], None),
            Cluster::SeveralVersions => (&["v1alpha3", "v1beta1", "v2beta1"], Some("v1beta1")),
            Cluster::UnknownPreferred => (&["v1beta1", "v3"], Some("v3")),
            // An older operator: v1beta1 only.
            _ => (&["v1beta1"], Some("v1beta1")),
        }
    }
}

/// `/apis`: the API groups, with k8s.otterize.com unless there is no CRD.
fn api_groups(cluster: Cluster) -> String {
    let (versions, preferred) = cluster.intents_versions();
    let gv = |v: &str| format!(r#"{{"groupVersion":"k8s.otterize.com/{v}","version":"{v}"}}"#);
    let apps = r#"{"name":"apps","versions":[{"groupVersion":"apps/v1","version":"v1"}],"preferredVersion":{"groupVersion":"apps/v1","version":"v1"}}"#;
    let groups = match preferred {
        Some(preferred) => {
            let versions: Vec<String> = versions.iter().map(|v| gv(v)).collect();
            format!(
                r#"{apps},{{"name":"k8s.otterize.com","versions":[{}],"preferredVersion":{}}}"#,
                versions.join(","),
                gv(preferred)
            )
        }
        None => apps.to_owned(),
    };
    format!(r#"{{"kind":"APIGroupList","apiVersion":"v1","groups":[{groups}]}}"#)
}

/// `/apis/k8s.otterize.com/VERSION`: ClientIntents and its status subresource.
fn intents_resources(version: &str) -> String {
    format!(
        r#"{{"kind":"APIResourceList","apiVersion":"v1","groupVersion":"k8s.otterize.com/{version}","resources":[
{{"name":"clientintents","singularName":"clientintents","namespaced":true,"kind":"ClientIntents","verbs":["delete","get","list","patch","create","update","watch"]}},
{{"name":"clientintents/status","singularName":"","namespaced":true,"kind":"ClientIntents","verbs":["get","patch","update"]}}]}}"#
    )
}

const SERVICE: &str = r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"mapper-server","namespace":"mapper-system"},
"spec":{"selector":{"app":"mapper-server"},"ports":[{"name":"grpc","port":9090,"targetPort":"grpc","protocol":"TCP"}]}}"#;

fn pods(ready: bool) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"PodList","metadata":{{"resourceVersion":"1"}},"items":[{{"metadata":{{"name":"mapper-server-7d9f-abcde","namespace":"mapper-system","labels":{{"app":"mapper-server"}}}},
"spec":{{"containers":[{{"name":"server","image":"mapper-server","ports":[{{"name":"grpc","containerPort":19090}}]}}]}},
"status":{{"phase":"Running","conditions":[{{"type":"Ready","status":"{}"}}]}}}}]}}"#,
        if ready { "True" } else { "False" }
    )
}

/// What the cluster declares: transaction-service lost ledger, the other client has it.
const CLIENT_INTENTS: &str = r#"{"apiVersion":"k8s.otterize.com/v1beta1","kind":"ClientIntentsList","metadata":{"resourceVersion":"7"},"items":[
{"metadata":{"name":"transaction-service","namespace":"team1","uid":"u1","resourceVersion":"5","managedFields":[]},"spec":{"service":{"name":"transaction-service"},"calls":[{"name":"telemetry.team4"}]},"status":{}},
{"metadata":{"name":"some-other-transaction-service","namespace":"team2","uid":"u2"},"spec":{"service":{"name":"some-other-transaction-service"},"calls":[{"name":"ledger.team3"}]}}]}"#;

const NOT_FOUND: &str = r#"{"apiVersion":"v1","kind":"Status","status":"Failure","message":"services \"mapper-server\" not found","reason":"NotFound","code":404}"#;

/// Peeks until a whole request head is buffered; returns it without consuming it.
async fn peek_head(stream: &TcpStream) -> Option<String> {
    let mut buf = vec![0u8; 16 * 1024];
    for _ in 0..2_000 {
        let n = stream.peek(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        let text = String::from_utf8_lossy(&buf[..n]);
        if let Some(end) = text.find("\r\n\r\n") {
            return Some(text[..end + 4].to_owned());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    None
}

async fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let head = format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await
}

/// The port-forward: the v4 channel protocol over a websocket, bridged to `backend`.
async fn forward(stream: TcpStream, port: u16, backend: SocketAddr) {
    // The callback's error type is tungstenite's own HTTP response; nothing to shrink here.
    #[allow(clippy::result_large_err)]
    let choose = |_: &Request, mut response: Response| {
        response.headers_mut().insert("Sec-WebSocket-Protocol", "v4.channel.k8s.io".parse().expect("header"));
        Ok(response)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, choose).await else { return };
    let [lo, hi] = port.to_le_bytes();
    // The first frame on each channel (data 0, error 1) names the port.
    if ws.send(Message::binary(vec![0, lo, hi])).await.is_err()
        || ws.send(Message::binary(vec![1, lo, hi])).await.is_err()
    {
        return;
    }
    let Ok(backend) = TcpStream::connect(backend).await else { return };
    let (mut from_pod, mut to_pod) = backend.into_split();
    let (mut sink, mut frames) = ws.split();
    let upstream = async move {
        while let Some(Ok(message)) = frames.next().await {
            if message.is_close() {
                break;
            }
            let Message::Binary(data) = message else { continue };
            if data.len() > 1 && data[0] == 0 && to_pod.write_all(&data[1..]).await.is_err() {
                break;
            }
        }
    };
    let downstream = async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = from_pod.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let mut frame = Vec::with_capacity(n + 1);
            frame.push(0);
            frame.extend_from_slice(&buf[..n]);
            if sink.send(Message::binary(frame)).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    };
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
}

async fn connection(mut stream: TcpStream, cluster: Cluster, backend: SocketAddr) {
    while let Some(head) = peek_head(&stream).await {
        let path = head.split_whitespace().nth(1).unwrap_or_default().to_owned();
        if head.to_ascii_lowercase().contains("upgrade: websocket") {
            let port = path.split("ports=").nth(1).and_then(|p| p.split('&').next()?.parse().ok()).unwrap_or(0);
            assert_eq!(port, 19090, "the named targetPort resolves to the container port: {path}");
            return forward(stream, port, backend).await;
        }
        let mut consumed = vec![0u8; head.len()];
        if stream.read_exact(&mut consumed).await.is_err() {
            return;
        }
        let reply = if path.starts_with("/api/v1/namespaces/mapper-system/services/mapper-server") {
            if cluster == Cluster::NoService {
                ("404 Not Found", NOT_FOUND.to_owned())
            } else {
                ("200 OK", SERVICE.to_owned())
            }
        } else if let Some(reply) = intents_reply(cluster, path.split('?').next().unwrap_or_default()) {
            reply
        } else if path.starts_with("/api/v1/namespaces/mapper-system/pods?")
            && path.contains("labelSelector=app%3Dmapper-server")
        {
            ("200 OK", pods(cluster != Cluster::PodNotReady))
        } else {
            ("404 Not Found", NOT_FOUND.replace("services \\\"mapper-server\\\"", "path"))
        };
        if respond(&mut stream, reply.0, &reply.1).await.is_err() {
            return;
        }
    }
}

/// The discovery documents and the ClientIntents lists of `cluster`: listed at the preferred
/// version mapper reads (v1beta1 in every cluster here), any other version is a 500 so that a
/// listing at the wrong version shows.
fn intents_reply(cluster: Cluster, path: &str) -> Option<(&'static str, String)> {
    let (versions, _) = cluster.intents_versions();
    if path == "/apis" {
        return Some(("200 OK", api_groups(cluster)));
    }
    let rest = path.strip_prefix("/apis/k8s.otterize.com/")?;
    let (version, resource) = rest.split_once('/').unwrap_or((rest, ""));
    if !versions.contains(&version) {
        return None;
    }
    Some(match resource {
        "" => ("200 OK", intents_resources(version)),
        "clientintents" if version == "v1beta1" => ("200 OK", CLIENT_INTENTS.to_owned()),
        _ => (
            "500 Internal Server Error",
            format!(
                r#"{{"kind":"Status","apiVersion":"v1","status":"Failure","message":"listed at {version}, not at the preferred version","code":500}}"#
            ),
        ),
    })
}

/// Starts the fake API server on a thread; returns a kubeconfig pointing at it.
fn fake_api(dir: &Path, cluster: Cluster, backend: SocketAddr) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fake API");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        runtime.block_on(async move {
            let listener = TcpListener::from_std(listener).expect("listener");
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(connection(stream, cluster, backend));
            }
        });
    });
    kubeconfig(dir, &url)
}

fn kubeconfig(dir: &Path, url: &str) -> String {
    support::write(
        dir,
        "kubeconfig",
        &format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\nclusters:\n- name: fake\n  cluster: {{server: \"{url}\"}}\n\
             contexts:\n- name: fake\n  context: {{cluster: fake, user: fake}}\nusers:\n- name: fake\n  user: {{token: abc}}\n"
        ),
    )
}

fn backend(server: &Server) -> SocketAddr {
    server.url.trim_start_matches("http://").parse().expect("server address")
}

#[test]
fn list_and_reset_through_a_port_forward() {
    let server = Server::start(None);
    support::seed(&server);
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = fake_api(dir.path(), Cluster::Healthy, backend(&server));
    let out = mapper(&["--kubeconfig", &kubeconfig, "list", "-n", "team1"], None);
    assert_eq!(ok(&out), "transaction-service in namespace team1 calls:\n  - ledger in namespace team3 (8080/TCP)\n");
    let export = ok(&mapper(&["--kubeconfig", &kubeconfig, "export", "--output-version", "v1alpha2"], None));
    assert_eq!(export, support::intents_golden("seed_v1alpha2.yaml"));
    let out = mapper(&["--kubeconfig", &kubeconfig, "reset", "--yes"], None);
    ok(&out);
    assert!(
        stderr(&out).contains("pod/mapper-server-7d9f-abcde port 19090 in namespace mapper-system"),
        "{}",
        stderr(&out)
    );
    assert_eq!(ok(&server.mapper(&["list"])), "");
}

#[test]
fn a_missing_service_or_no_ready_pod_is_one_clear_line() {
    let server = Server::start(None);
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = fake_api(dir.path(), Cluster::NoService, backend(&server));
    let out = mapper(&["--kubeconfig", &missing, "list"], None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: Service mapper-server in namespace mapper-system not found: is mapper-server installed there? \
         (--mapper-namespace, --mapper-service-name, or --mapper-url to reach it directly)\n"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let not_ready = fake_api(dir.path(), Cluster::PodNotReady, backend(&server));
    let out = mapper(&["--kubeconfig", &not_ready, "list"], None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: no ready mapper-server pod behind Service mapper-server in namespace mapper-system (selector \
         app=mapper-server): check `kubectl -n mapper-system get pods -l app=mapper-server`\n"
    );
}

#[test]
fn an_unreachable_kubernetes_api_is_one_line_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", closed.local_addr().expect("address"));
    drop(closed);
    let out = mapper(&["--kubeconfig", &kubeconfig(dir.path(), &url), "list"], None);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!("error: cannot reach the Kubernetes API at {url}/ (")) && err.contains("--mapper-url"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let out = mapper(&["--kubeconfig", &kubeconfig(dir.path(), &url), "audit", "--from-cluster"], None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: cannot read ClientIntents from the cluster: discovering the k8s.otterize.com API group (connection \
         refused)\n"
    );
}

#[test]
fn audit_from_the_cluster_through_a_port_forward() {
    let server = Server::start(None);
    support::seed(&server);
    let dir = tempfile::tempdir().expect("tempdir");
    for cluster in [Cluster::Healthy, Cluster::SeveralVersions, Cluster::UnknownPreferred] {
        let kubeconfig = fake_api(dir.path(), cluster, backend(&server));
        audit_reads_the_cluster_intents(&kubeconfig, cluster);
    }
}

#[test]
fn audit_from_a_cluster_without_the_crd_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unused: SocketAddr = "127.0.0.1:9".parse().expect("an address");
    let kubeconfig = fake_api(dir.path(), Cluster::NoIntentsCrd, unused);
    let out = mapper(&["--kubeconfig", &kubeconfig, "audit", "--from-cluster"], None);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "error: cannot read ClientIntents from the cluster: the API serves no k8s.otterize.com ClientIntents version \
         mapper reads (is the Otterize intents operator's ClientIntents CRD installed?)\n"
    );
}

/// One listing, at the version the cluster prefers (or the best one mapper reads).
fn audit_reads_the_cluster_intents(kubeconfig: &str, cluster: Cluster) {
    let out = mapper(&["--kubeconfig", kubeconfig, "audit", "--from-cluster", "--format", "json"], None);
    assert_eq!(out.status.code(), Some(3), "{cluster:?}: {}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&support::stdout(&out)).expect("json");
    assert_eq!(json["summary"]["clients"], 2, "{json:#}");
    assert_eq!(json["summary"]["missing"], 1);
    assert_eq!(json["summary"]["covered"], 1);
    let ts = &json["clients"][0];
    assert_eq!(ts["client"]["name"], "transaction-service");
    assert_eq!(ts["declared_in"][0], "clientintents/transaction-service in namespace team1: document 1");
    assert_eq!(ts["missing"][0]["target"], "ledger.team3");
}
