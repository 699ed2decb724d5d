//! The dashboard's HTTP surface: every request passes [`Guard::check`] first; then the page's
//! files, `GET api/map`, `GET api/intents`, `POST api/audit`. Nothing else, and nothing that
//! changes mapper-server (no reset).

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::api::{self, ApiError, AuditRequest};
use super::{App, assets};
use crate::declared;

/// The largest audit upload taken (the declared files, as JSON): beyond it, 413.
pub const MAX_UPLOAD_BYTES: usize = 16 << 20;

/// The router of an app: one handler for every path, so that nothing is answered before the
/// checks.
pub fn router(app: Arc<App>) -> Router {
    Router::new().fallback(handle).with_state(app)
}

fn with_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn text(status: StatusCode, message: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], message).into_response()
}

fn json_bytes(bytes: Vec<u8>) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

fn json<T: serde::Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => json_bytes(bytes),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot write the answer as JSON: {e}")),
    }
}

fn api_error(e: &ApiError) -> Response {
    let message = mapper_intents::error_chain(e);
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({"error": message}).to_string(),
    )
        .into_response()
}

/// The value of query parameter `name`.
fn param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

async fn handle(State(app): State<Arc<App>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let rest = match app.guard.check(request.headers(), &path) {
        Ok(rest) => rest.to_owned(),
        Err(refusal) => return with_headers(text(StatusCode::FORBIDDEN, format!("{refusal}\n"))),
    };
    let method = request.method().clone();
    let response = match (&method, rest.as_str()) {
        (&Method::GET, "/api/map") => {
            let snapshot = app.snapshot.read().await.clone();
            if param(query.as_deref(), "known").as_deref() == Some(snapshot.version.as_str()) {
                json(&serde_json::json!({"unchanged": true, "version": snapshot.version}))
            } else {
                json_bytes(snapshot.json.clone())
            }
        }
        (&Method::GET, "/api/intents") => {
            let snapshot = app.snapshot.read().await.clone();
            let client = param(query.as_deref(), "client").unwrap_or_default();
            let version = param(query.as_deref(), "version").unwrap_or_else(|| "v2beta1".to_owned());
            match api::intents(&snapshot.edges, &client, &version) {
                Ok(intents) => json(&intents),
                Err(e) => api_error(&e),
            }
        }
        (&Method::POST, "/api/audit") => audit(&app, request.into_body()).await,
        (&Method::GET, path) => match assets::get(path) {
            Some((bytes, content_type)) => {
                (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], Body::from(Bytes::from_static(bytes)))
                    .into_response()
            }
            None => text(StatusCode::NOT_FOUND, format!("not found: {path}\n")),
        },
        _ => text(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not served here (the dashboard only reads)\n")),
    };
    with_headers(response)
}

async fn audit(app: &App, body: Body) -> Response {
    let bytes = match axum::body::to_bytes(body, MAX_UPLOAD_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the declared files exceed {} MiB, the most the dashboard takes\n", MAX_UPLOAD_BYTES >> 20),
            );
        }
    };
    let request: AuditRequest = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => return api_error(&ApiError::BadRequest(format!("the audit request is not the page's JSON: {e}"))),
    };
    let read = if request.from_cluster { read_cluster(app).await } else { api::read_uploaded(&request) };
    let (docs, warnings) = match read {
        Ok(read) => read,
        Err(e) => return api_error(&e),
    };
    let snapshot = app.snapshot.read().await.clone();
    match api::audit(&snapshot.edges, docs, warnings, request.namespace.as_deref(), request.since_ms) {
        Ok(view) => json(&view),
        Err(e) => api_error(&e),
    }
}

/// The cluster's ClientIntents, read with the user's kube credentials as `mapper audit
/// --from-cluster` reads them.
async fn read_cluster(app: &App) -> Result<(Vec<mapper_intents::audit::DeclaredDoc>, Vec<String>), ApiError> {
    let (client, _url) =
        crate::portforward::kube_client(app.connect.kubeconfig.as_deref(), app.connect.context.as_deref())
            .await
            .map_err(|error| declared::ReadError::ClusterConfig { error })?;
    Ok((declared::read_cluster(client, &[]).await?, Vec::new()))
}
