//! What mapper's daemons (mapper-agent, mapper-server) share to be run and
//! watched: one logging setup that owns `RUST_LOG` (and the `--log-format` flag
//! that picks plain or JSON), one wait for SIGTERM or Ctrl-C, and one HTTP
//! endpoint for `/metrics`, `/healthz` and `/readyz`.

#![forbid(unsafe_code)]

use std::sync::Arc;

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use prometheus_client::{encoding::text::encode, registry::Registry};
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

/// How a daemon writes its logs on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Plain,
    Json,
}

/// The logging flag every daemon takes; `#[command(flatten)]` it into the daemon's flags.
#[derive(Debug, clap::Args)]
pub struct LogArgs {
    /// Log format on stderr (RUST_LOG sets the level; default info).
    #[arg(long, env = "MAPPER_LOG_FORMAT", value_enum, default_value = "plain")]
    pub log_format: LogFormat,
}

/// Logs to stderr, plain or as JSON lines; `RUST_LOG` sets the level (default info).
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Plain => builder.init(),
    }
}

/// Resolves on SIGTERM (how Kubernetes stops a pod) or Ctrl-C.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    info!("signal received, stopping");
}

/// What a daemon exposes to its HTTP endpoint.
pub trait Health: Send + Sync + 'static {
    /// The metrics, registered for one scrape; [`serve`] encodes them.
    fn registry(&self) -> Registry;
    /// `Ok` when ready to serve; otherwise why not.
    fn readiness(&self) -> Result<(), &'static str>;
}

async fn metrics(State(h): State<Arc<dyn Health>>) -> impl IntoResponse {
    let mut body = String::new();
    if encode(&mut body, &h.registry()).is_err() {
        warn!("cannot encode metrics");
    }
    ([("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
}

async fn ready(State(h): State<Arc<dyn Health>>) -> (StatusCode, &'static str) {
    match h.readiness() {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, health: Arc<dyn Health>) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(health);
    info!(addr = ?listener.local_addr().ok(), "metrics listening");
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[derive(Debug)]
    struct Fixed(Counter);

    impl Health for Fixed {
        fn registry(&self) -> Registry {
            let mut r = Registry::with_prefix("test");
            r.register("events", "Events seen", self.0.clone());
            r
        }

        fn readiness(&self) -> Result<(), &'static str> {
            Err("not yet")
        }
    }

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .expect("send");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    }

    #[tokio::test]
    async fn serves_encoded_metrics_and_readiness() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let health = Fixed(Counter::default());
        health.0.inc_by(3);
        tokio::spawn(serve(listener, Arc::new(health)));

        let metrics = get(addr, "/metrics").await;
        assert!(metrics.contains("content-type: application/openmetrics-text"), "{metrics}");
        assert!(
            metrics.contains("# HELP test_events Events seen") && metrics.contains("test_events_total 3"),
            "{metrics}"
        );
        assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");
        let ready = get(addr, "/readyz").await;
        assert!(ready.starts_with("HTTP/1.1 503") && ready.ends_with("not yet"), "{ready}");
        let healthz = get(addr, "/healthz").await;
        assert!(healthz.starts_with("HTTP/1.1 200") && healthz.ends_with("ok"), "{healthz}");
    }
}
