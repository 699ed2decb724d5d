//! A fake Kubernetes API server speaking the real list/watch protocol over HTTP/1.1 on
//! 127.0.0.1: collection lists with a resourceVersion, `?watch=true` streams of
//! `{"type": ..., "object": ...}` lines resumed from a resourceVersion, `410 Gone` (as an ERROR
//! event) for a resourceVersion that is too old, plain GETs answering an object or a Status,
//! discovery documents, and POSTs answered by a handler (e.g. TokenReview creation).

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::{Body, Bytes};
use axum::extract::State;
pub use axum::http::StatusCode;
use axum::http::{Method, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

#[derive(Default)]
struct Collection {
    list_kind: String,
    list_api_version: String,
    objects: BTreeMap<(String, String), Value>,
    /// (resourceVersion, event line) of every change, for watches resumed from a version.
    log: Vec<(u64, Bytes)>,
    watchers: Vec<mpsc::UnboundedSender<Bytes>>,
    /// Watches from a resourceVersion below this answer 410 Gone.
    oldest_rv: u64,
}

/// Answers a POST: the request body in, the status code and body out.
type PostHandler = Arc<dyn Fn(&Value) -> (StatusCode, Value) + Send + Sync>;

#[derive(Default)]
struct Inner {
    rv: u64,
    collections: HashMap<String, Collection>,
    /// Path → the status code and body a GET answers.
    gets: HashMap<String, (StatusCode, Value)>,
    /// Path → what answers a POST there.
    posts: HashMap<String, PostHandler>,
    /// Path → requests seen (lists, watches and GETs alike; by path without query).
    requests: HashMap<String, usize>,
}

/// The fake server; dropped, it stops serving.
#[derive(Clone)]
pub struct FakeApi {
    inner: Arc<Mutex<Inner>>,
    /// Where it listens (127.0.0.1, a free port).
    pub addr: SocketAddr,
    server: Arc<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for FakeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeApi").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        if Arc::strong_count(&self.server) == 1 {
            self.server.abort();
        }
    }
}

fn status(code: StatusCode, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code.as_u16()})
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).expect("event serialises");
    line.push(b'\n');
    Bytes::from(line)
}

fn key_of(obj: &Value) -> (String, String) {
    let field = |f: &str| obj.pointer(&format!("/metadata/{f}")).and_then(Value::as_str).unwrap_or_default().to_owned();
    (field("namespace"), field("name"))
}

impl FakeApi {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let app = axum::Router::new().fallback(handle).with_state(inner.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("fake API server runs");
        });
        Self { inner, addr, server: Arc::new(server) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("fake API state lock")
    }

    /// A kube client pointed at this server (plain HTTP, no auth).
    pub fn client(&self) -> kube::Client {
        let url = format!("http://{}", self.addr).parse().expect("server URL");
        kube::Client::try_from(kube::Config::new(url)).expect("client for the fake API")
    }

    /// Serve a collection (e.g. `/api/v1/pods`), initially empty.
    pub fn collection(&self, path: &str, list_api_version: &str, list_kind: &str) {
        let collection = Collection {
            list_kind: list_kind.to_owned(),
            list_api_version: list_api_version.to_owned(),
            ..Collection::default()
        };
        self.lock().collections.insert(path.to_owned(), collection);
    }

    /// Create or replace an object, telling watchers (ADDED or MODIFIED) unless `silent`.
    fn upsert(&self, path: &str, mut obj: Value, silent: bool) {
        let mut inner = self.lock();
        inner.rv += 1;
        let rv = inner.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let col = inner.collections.get_mut(path).unwrap_or_else(|| panic!("no collection {path}"));
        let kind = if col.objects.insert(key_of(&obj), obj.clone()).is_some() { "MODIFIED" } else { "ADDED" };
        if !silent {
            let line = event_line(kind, &obj);
            col.log.push((rv, line.clone()));
            col.watchers.retain(|w| w.send(line.clone()).is_ok());
        }
    }

    pub fn apply(&self, path: &str, obj: Value) {
        self.upsert(path, obj, false);
    }

    /// A change watchers never hear of (it happened while their watch was broken).
    pub fn apply_silently(&self, path: &str, obj: Value) {
        self.upsert(path, obj, true);
    }

    /// Delete an object, telling watchers (DELETED) unless `silent`.
    pub fn delete(&self, path: &str, namespace: &str, name: &str, silent: bool) {
        let mut inner = self.lock();
        inner.rv += 1;
        let rv = inner.rv;
        let col = inner.collections.get_mut(path).unwrap_or_else(|| panic!("no collection {path}"));
        let mut obj =
            col.objects.remove(&(namespace.to_owned(), name.to_owned())).expect("deleting an existing object");
        if !silent {
            obj["metadata"]["resourceVersion"] = json!(rv.to_string());
            let line = event_line("DELETED", &obj);
            col.log.push((rv, line.clone()));
            col.watchers.retain(|w| w.send(line.clone()).is_ok());
        }
    }

    /// Compact history: open watches get `410 Gone` and end; resuming from before now fails the
    /// same way, so clients must list again.
    pub fn expire_watches(&self, path: &str) {
        let mut inner = self.lock();
        inner.rv += 1;
        let rv = inner.rv;
        let col = inner.collections.get_mut(path).unwrap_or_else(|| panic!("no collection {path}"));
        col.oldest_rv = rv;
        col.log.clear();
        let gone = event_line("ERROR", &status(StatusCode::GONE, "Expired", "too old resource version"));
        for watcher in col.watchers.drain(..) {
            let _ = watcher.send(gone.clone());
        }
    }

    /// What a GET of `path` answers.
    pub fn on_get(&self, path: &str, code: StatusCode, body: Value) {
        self.lock().gets.insert(path.to_owned(), (code, body));
    }

    /// What a POST to `path` answers, computed from its JSON body.
    #[allow(dead_code)] // used by mapper-server's token review tests, which include this file
    pub fn on_post(&self, path: &str, handler: impl Fn(&Value) -> (StatusCode, Value) + Send + Sync + 'static) {
        self.lock().posts.insert(path.to_owned(), Arc::new(handler));
    }

    /// How many requests `path` has received.
    pub fn requests(&self, path: &str) -> usize {
        self.lock().requests.get(path).copied().unwrap_or(0)
    }
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    (code, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

async fn handle(State(inner): State<Arc<Mutex<Inner>>>, method: Method, uri: Uri, body: Bytes) -> Response {
    let path = uri.path().to_owned();
    let query: HashMap<String, String> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let mut inner = inner.lock().expect("fake API state lock");
    *inner.requests.entry(path.clone()).or_default() += 1;
    if method == Method::POST {
        let Some(handler) = inner.posts.get(&path).cloned() else {
            let msg = format!("POST {path} not served");
            return json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", &msg),
            );
        };
        drop(inner);
        let (code, answer) = match serde_json::from_slice::<Value>(&body) {
            Ok(request) => handler(&request),
            Err(e) => (StatusCode::BAD_REQUEST, status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string())),
        };
        return json_response(code, &answer);
    }
    let rv = inner.rv;
    if let Some(col) = inner.collections.get_mut(&path) {
        if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
            let from: u64 = query.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
            let (tx, rx) = mpsc::unbounded_channel();
            if from < col.oldest_rv {
                let _ = tx.send(event_line("ERROR", &status(StatusCode::GONE, "Expired", "too old resource version")));
            } else {
                for (_, line) in col.log.iter().filter(|(v, _)| *v > from) {
                    let _ = tx.send(line.clone());
                }
                col.watchers.push(tx);
            }
            let stream = futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|line| (Ok::<_, Infallible>(line), rx))
            });
            return Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from_stream(stream))
                .expect("watch response");
        }
        // List items carry no apiVersion/kind, as the real server sends them.
        let items: Vec<Value> = col
            .objects
            .values()
            .map(|o| {
                let mut o = o.clone();
                if let Some(map) = o.as_object_mut() {
                    map.remove("apiVersion");
                    map.remove("kind");
                }
                o
            })
            .collect();
        let list = json!({"apiVersion": col.list_api_version, "kind": col.list_kind,
                          "metadata": {"resourceVersion": rv.to_string()}, "items": items});
        return json_response(StatusCode::OK, &list);
    }
    match inner.gets.get(&path) {
        Some((code, body)) => json_response(*code, body),
        None => json_response(
            StatusCode::NOT_FOUND,
            &status(StatusCode::NOT_FOUND, "NotFound", &format!("{path} not found")),
        ),
    }
}
