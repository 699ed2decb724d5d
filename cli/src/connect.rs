//! Reaching mapper-server's Query API: directly at `--mapper-url`, or through a port-forward to
//! its Service; the bearer token from `--token-file`; and the one place where a gRPC status
//! becomes an error a person can act on.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use mapper_proto::v1::{self as pb, query_client::QueryClient};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::{Interceptor, interceptor::InterceptedService};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use crate::portforward::{self, ForwardTarget, PortForward, PortForwardError};

/// How to reach mapper-server (global flags).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Connecting to mapper-server")]
pub struct ConnectOpts {
    /// mapper-server's gRPC address (http://HOST:PORT). Without it, mapper port-forwards
    /// through the Kubernetes API to the server's Service.
    #[arg(long, env = "MAPPER_URL", global = true, value_name = "URL")]
    pub mapper_url: Option<String>,
    /// The Service to port-forward to when --mapper-url is not given.
    #[arg(long, env = "MAPPER_SERVICE_NAME", global = true, default_value = "mapper-server", value_name = "NAME")]
    pub mapper_service_name: String,
    /// The namespace of that Service.
    #[arg(long, env = "MAPPER_NAMESPACE", global = true, default_value = "mapper-system", value_name = "NAMESPACE")]
    pub mapper_namespace: String,
    /// The Service port mapper-server's gRPC API is on.
    #[arg(long, env = "MAPPER_SERVICE_PORT", global = true, default_value_t = 9090, value_name = "PORT")]
    pub mapper_service_port: u16,
    /// File holding the bearer token mapper-server expects (its --token-file).
    #[arg(long, env = "MAPPER_TOKEN_FILE", global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Kubeconfig file for the port-forward (default: KUBECONFIG, then ~/.kube/config, then
    /// the in-cluster configuration).
    #[arg(long, env = "MAPPER_KUBECONFIG", global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context for the port-forward (default: the current context).
    #[arg(long, env = "MAPPER_CONTEXT", global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// How long to wait for mapper-server to answer one request (humantime: 30s, 2m).
    #[arg(long, env = "MAPPER_TIMEOUT", global = true, default_value = "30s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
}

/// Adds `authorization: Bearer <token>` to every request when a token is configured.
#[derive(Clone)]
pub struct BearerAuth {
    header: Option<MetadataValue<Ascii>>,
}

impl fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuth").field("token", &self.header.as_ref().map(|_| "<redacted>")).finish()
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(header) = &self.header {
            request.metadata_mut().insert("authorization", header.clone());
        }
        Ok(request)
    }
}

/// Where mapper-server was reached; errors name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// `--mapper-url`.
    Url(String),
    /// A port-forward to a pod behind the Service.
    Forwarded {
        /// The pod.
        pod: String,
        /// Its namespace.
        namespace: String,
        /// The pod port forwarded to.
        port: u16,
    },
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Url(url) => f.write_str(url),
            Address::Forwarded { pod, namespace, port } => {
                write!(f, "pod/{pod} port {port} in namespace {namespace} (port-forward)")
            }
        }
    }
}

impl Address {
    /// What to do about a server that cannot be reached there.
    fn unreachable_hint(&self) -> String {
        match self {
            Address::Url(_) => "check that mapper-server is running there, or correct --mapper-url (MAPPER_URL); \
                                leave it unset to port-forward to the mapper-server Service in the cluster"
                .to_owned(),
            Address::Forwarded { namespace, .. } => {
                format!("check the mapper-server pods with `kubectl -n {namespace} get pods`, or pass --mapper-url")
            }
        }
    }
}

/// Why mapper-server could not be asked, or what it refused.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// `--mapper-url` is not something to connect to.
    #[error("--mapper-url {url}: {problem}")]
    BadUrl {
        /// As given.
        url: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The token file cannot be read.
    #[error("cannot read --token-file {}", path.display())]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        error: std::io::Error,
    },
    /// The token file holds nothing or something that cannot be sent.
    #[error("--token-file {}: {problem}", path.display())]
    BadToken {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: &'static str,
    },
    /// Setting up the port-forward failed.
    #[error(transparent)]
    PortForward(#[from] PortForwardError),
    /// Nothing answered at the address.
    #[error(
        "cannot reach mapper-server at {address} ({reason}): {hint}",
        reason = short_reason(error),
        hint = address.unreachable_hint()
    )]
    Unreachable {
        /// Where it was looked for.
        address: Address,
        /// What failed (the message names its innermost cause, `connection refused`).
        #[source]
        error: TransportError,
    },
    /// The server wants a token and none was given.
    #[error("mapper-server at {address} requires a bearer token: pass --token-file FILE (or set MAPPER_TOKEN_FILE)")]
    NeedsToken {
        /// The server.
        address: Address,
    },
    /// The server refused the token given.
    #[error(
        "mapper-server at {address} refused the token in {} ({message}): it must match the server's --token-file",
        path.display()
    )]
    TokenRefused {
        /// The server.
        address: Address,
        /// The token file.
        path: PathBuf,
        /// The server's message.
        message: String,
    },
    /// The server answered with an error.
    #[error("mapper-server at {address} could not {what}: {message} ({code:?})")]
    Failed {
        /// The server.
        address: Address,
        /// What was asked (`list the edges`).
        what: &'static str,
        /// The gRPC status code.
        code: Code,
        /// The server's message.
        message: String,
    },
}

/// What failed when mapper-server could not be reached.
#[derive(Debug)]
pub enum TransportError {
    /// Connecting failed.
    Connect(tonic::transport::Error),
    /// A call ended `Unavailable`: the connection broke (the status carries the transport's
    /// error), or the server said so itself (its message says why).
    Call(Box<Status>),
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Connect(error) => fmt::Display::fmt(error, f),
            TransportError::Call(status) => f.write_str(status.message()),
        }
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TransportError::Connect(error) => error.source(),
            TransportError::Call(status) => status.source(),
        }
    }
}

/// The innermost cause of an error, in a few words: `connection refused`, `timed out`. Not the
/// chain ([`mapper_intents::error_chain`] joins that): the one cause a message names in
/// passing, as in `cannot reach mapper-server at … (connection refused): …`.
pub fn short_reason(error: &(dyn std::error::Error + 'static)) -> String {
    tidy(&mapper_intents::innermost_cause(error).to_string())
}

/// An error message without the OS error number, starting in lower case.
pub fn tidy(text: &str) -> String {
    let text = mapper_intents::errors::without_os_error(text);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "no reason given".to_owned(),
    }
}

fn read_token(path: &Path) -> Result<MetadataValue<Ascii>, ConnectError> {
    let text =
        std::fs::read_to_string(path).map_err(|error| ConnectError::TokenFile { path: path.to_owned(), error })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(ConnectError::BadToken { path: path.to_owned(), problem: "the file is empty" });
    }
    format!("Bearer {token}").parse().map_err(|_| ConnectError::BadToken {
        path: path.to_owned(),
        problem: "the token holds characters that cannot be sent in an HTTP header",
    })
}

/// `HOST:PORT` gets `http://`; anything but `http` is refused (mapper-server speaks plain gRPC).
fn normalize_url(url: &str) -> Result<String, ConnectError> {
    let bad = |problem: &str| ConnectError::BadUrl { url: url.to_owned(), problem: problem.to_owned() };
    let full = if url.contains("://") { url.to_owned() } else { format!("http://{url}") };
    match full.split_once("://") {
        Some(("http", rest)) if !rest.is_empty() => Ok(full),
        Some(("https", _)) => Err(bad("https is not supported: mapper-server serves plain gRPC; use http://")),
        _ => Err(bad("expected http://HOST:PORT")),
    }
}

/// The largest message the CLI reads: a page of StreamEdges is about 1 MiB (at least one
/// edge), so this leaves room for one very large edge, and for the single answer of an older
/// server's ListEdges up to this size.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Turns a status into an error naming the server and what to do.
fn status_error(address: &Address, token_file: Option<&Path>, status: &Status, what: &'static str) -> ConnectError {
    let address = address.clone();
    match (status.code(), token_file) {
        (Code::Unauthenticated, None) => ConnectError::NeedsToken { address },
        (Code::Unauthenticated, Some(path)) => {
            ConnectError::TokenRefused { address, path: path.to_owned(), message: status.message().to_owned() }
        }
        (Code::Unavailable, _) => {
            ConnectError::Unreachable { address, error: TransportError::Call(Box::new(status.clone())) }
        }
        (code, _) => ConnectError::Failed { address, what, code, message: status.message().to_owned() },
    }
}

/// The pages of a StreamEdges answer (or the one answer of a server without StreamEdges).
#[derive(Debug)]
pub struct EdgePages {
    stream: Option<tonic::Streaming<pb::ListEdgesResponse>>,
    single: Option<Vec<pb::Edge>>,
    address: Address,
    token_file: Option<PathBuf>,
}

impl EdgePages {
    /// The next page; `None` at the end.
    pub async fn next(&mut self) -> Result<Option<Vec<pb::Edge>>, ConnectError> {
        if let Some(edges) = self.single.take() {
            return Ok(Some(edges));
        }
        let Some(stream) = &mut self.stream else { return Ok(None) };
        match stream.message().await {
            Ok(page) => Ok(page.map(|p| p.edges)),
            Err(status) => Err(status_error(&self.address, self.token_file.as_deref(), &status, "list the edges")),
        }
    }
}

/// The gRPC client with its token.
pub type Client = QueryClient<InterceptedService<Channel, BearerAuth>>;

/// A connection to mapper-server's Query API. Keeps the port-forward, if any, open.
#[derive(Debug)]
pub struct Mapper {
    client: Client,
    address: Address,
    token_file: Option<PathBuf>,
    _forward: Option<PortForward>,
}

impl Mapper {
    /// Connects as the flags say; a server that does not answer is an error here already.
    pub async fn connect(opts: &ConnectOpts) -> Result<Self, ConnectError> {
        let header = opts.token_file.as_deref().map(read_token).transpose()?;
        let (url, address, forward) = match &opts.mapper_url {
            Some(url) => {
                let url = normalize_url(url)?;
                (url.clone(), Address::Url(url), None)
            }
            None => {
                let target = ForwardTarget {
                    kubeconfig: opts.kubeconfig.clone(),
                    context: opts.context.clone(),
                    service: opts.mapper_service_name.clone(),
                    namespace: opts.mapper_namespace.clone(),
                    port: opts.mapper_service_port,
                };
                let forward = portforward::start(&target).await?;
                let address = Address::Forwarded {
                    pod: forward.pod().to_owned(),
                    namespace: opts.mapper_namespace.clone(),
                    port: forward.pod_port(),
                };
                (format!("http://{}", forward.local_addr()), address, Some(forward))
            }
        };
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|_| ConnectError::BadUrl { url: url.clone(), problem: "not a valid URL".to_owned() })?
            .connect_timeout(opts.timeout.min(Duration::from_secs(10)))
            .timeout(opts.timeout);
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| ConnectError::Unreachable { address: address.clone(), error: TransportError::Connect(e) })?;
        let client =
            QueryClient::with_interceptor(channel, BearerAuth { header }).max_decoding_message_size(MAX_MESSAGE_BYTES);
        Ok(Self { client, address, token_file: opts.token_file.clone(), _forward: forward })
    }

    /// Where the server was reached.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Turns a status into an error naming the server and what to do.
    fn error(&self, status: &Status, what: &'static str) -> ConnectError {
        status_error(&self.address, self.token_file.as_deref(), status, what)
    }

    /// The server's version and readiness.
    pub async fn health(&mut self) -> Result<pb::HealthResponse, ConnectError> {
        match self.client.health(pb::HealthRequest {}).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(self.error(&status, "report its health")),
        }
    }

    /// The edges matching `request`.
    pub async fn list_edges(&mut self, request: pb::ListEdgesRequest) -> Result<Vec<pb::Edge>, ConnectError> {
        match self.client.list_edges(request).await {
            Ok(response) => Ok(response.into_inner().edges),
            Err(status) => Err(self.error(&status, "list the edges")),
        }
    }

    /// The edges matching `request`, page by page (StreamEdges; ListEdges on a server that has
    /// no StreamEdges).
    pub async fn stream_edges(&mut self, request: pb::ListEdgesRequest) -> Result<EdgePages, ConnectError> {
        let (address, token_file) = (self.address.clone(), self.token_file.clone());
        let pages = move |stream, single| EdgePages { stream, single, address, token_file };
        match self.client.stream_edges(request.clone()).await {
            Ok(response) => Ok(pages(Some(response.into_inner()), None)),
            Err(status) if status.code() == Code::Unimplemented => {
                let edges = self.list_edges(request).await?;
                Ok(pages(None, Some(edges)))
            }
            Err(status) => Err(self.error(&status, "list the edges")),
        }
    }

    /// Forgets every edge; returns how many there were.
    pub async fn reset(&mut self) -> Result<u64, ConnectError> {
        match self.client.reset(pb::ResetRequest {}).await {
            Ok(response) => Ok(response.into_inner().removed_edges),
            Err(status) => Err(self.error(&status, "reset the map")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_get_a_scheme_and_https_is_refused() {
        assert_eq!(normalize_url("127.0.0.1:9090").ok().as_deref(), Some("http://127.0.0.1:9090"));
        assert_eq!(normalize_url("http://mapper:9090").ok().as_deref(), Some("http://mapper:9090"));
        let err = normalize_url("https://mapper:9090").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.starts_with("--mapper-url https://mapper:9090: https is not supported"), "{err}");
        assert!(normalize_url("ftp://x").is_err());
    }

    #[test]
    fn short_reasons_drop_os_error_numbers() {
        let io = std::io::Error::from_raw_os_error(111);
        #[derive(Debug, thiserror::Error)]
        #[error("transport error")]
        struct Outer(#[source] std::io::Error);
        assert_eq!(short_reason(&Outer(io)), "connection refused");
    }

    #[test]
    fn unreachable_names_the_address_and_the_fix_on_one_line() {
        let status = Status::unavailable("the store is not ready");
        let err = ConnectError::Unreachable {
            address: Address::Url("http://127.0.0.1:1".to_owned()),
            error: TransportError::Call(Box::new(status)),
        };
        let text = err.to_string();
        assert!(
            text.starts_with("cannot reach mapper-server at http://127.0.0.1:1 (the store is not ready): "),
            "{text}"
        );
        assert!(text.contains("--mapper-url") && !text.contains('\n'), "{text}");
        // The source is kept, and its message is not said twice.
        assert_eq!(mapper_intents::error_chain(&err), text);
    }

    #[test]
    fn tokens_are_trimmed_and_checked() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").unwrap_or_else(|e| panic!("write: {e}"));
        let header = read_token(&path).unwrap_or_else(|e| panic!("read_token: {e}"));
        assert_eq!(header.to_str().ok(), Some("Bearer s3cret"));
        std::fs::write(&path, "  \n").unwrap_or_else(|e| panic!("write: {e}"));
        let err = read_token(&path).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.ends_with("token: the file is empty"), "{err}");
        assert!(format!("{:?}", BearerAuth { header: Some(header) }).contains("redacted"));
    }
}
