//! `mapper dashboard`: the live map in a browser. A local web server (loopback by default)
//! serves the page embedded in the binary and, under the same random token, the map as JSON,
//! a workload's ClientIntents (rendered by `mapper export`'s code) and the audit overlay
//! (decided by `mapper audit`'s implementation). mapper-server is reached as every other
//! command reaches it; the map is read again every `--refresh`, by this process, whatever the
//! number of open pages.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::Args;
use tokio::sync::RwLock;

use crate::cli::Error;
use crate::connect::{ConnectOpts, Mapper};
use crate::edges::{ObservedEdge, QueryArgs, unix_ms};

mod api;
mod assets;
mod http;
pub mod map;
pub mod security;

pub use http::router;
pub use security::{Guard, Refusal};

/// `mapper dashboard`.
#[derive(Debug, Clone, Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  mapper dashboard\n",
    "  mapper dashboard -n team1 -n team2 --no-browser\n",
    "  mapper --mapper-url http://127.0.0.1:9090 --token-file token dashboard --listen 127.0.0.1:0\n\n",
    "The first line on stdout is the URL served, with its token: http://127.0.0.1:8090/<token>/.\n",
    "Only requests that carry the token, name this machine in their Host header (localhost or an\n",
    "IP address, with the dashboard's port) and come from the dashboard's own page (Origin,\n",
    "Sec-Fetch-Site) are answered: other local users and other sites' pages (DNS rebinding\n",
    "included) cannot read the map. The dashboard only reads: it offers no reset. Every file the\n",
    "page uses is in the binary; nothing is fetched from the internet.\n\n",
    crate::exit_status_help!()
))]
pub struct DashboardArgs {
    /// Which edges (the server applies these, as for `mapper list`).
    #[command(flatten)]
    pub query: QueryArgs,
    /// Where to serve the page. Loopback by default; on another address anyone who can reach
    /// it and has the URL reads the map, over plain HTTP.
    #[arg(long, env = "MAPPER_DASHBOARD_LISTEN", default_value = "127.0.0.1:8090", value_name = "ADDR:PORT")]
    pub listen: SocketAddr,
    /// Do not open a browser (print the URL only).
    #[arg(long, env = "MAPPER_DASHBOARD_NO_BROWSER")]
    pub no_browser: bool,
    /// How often to read the map again from mapper-server (the page follows).
    #[arg(long, env = "MAPPER_DASHBOARD_REFRESH", default_value = "5s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub refresh: Duration,
    /// The most edges to hold and draw; beyond, the page says the map is cut short (narrow it
    /// with -n, --server or --since).
    #[arg(long, env = "MAPPER_DASHBOARD_MAX_EDGES", default_value_t = 50_000, value_name = "N")]
    pub max_edges: usize,
    /// Also show node processes that are no pod (the kubelet's probes, node daemons).
    #[arg(long, env = "MAPPER_DASHBOARD_INCLUDE_NODES")]
    pub include_nodes: bool,
}

/// Why the dashboard could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// The listen address cannot be bound.
    #[error("cannot listen on --listen {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        error: std::io::Error,
    },
    /// Serving failed.
    #[error("the dashboard's web server failed")]
    Serve(#[source] std::io::Error),
    /// No token could be drawn.
    #[error(transparent)]
    Token(#[from] security::TokenError),
}

/// The map as last read from mapper-server.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Its edges, in the server's order.
    pub edges: Vec<ObservedEdge>,
    /// The page's JSON of it ([`map::MapView`] and what the page shows beside it).
    pub json: Vec<u8>,
    /// [`map::MapView::version`] of the map part.
    pub version: String,
}

/// What the handlers share.
#[derive(Debug)]
pub struct App {
    /// The token and the port.
    pub guard: Guard,
    /// The current map.
    pub snapshot: RwLock<Arc<Snapshot>>,
    /// How to reach the cluster (`audit` from the cluster).
    pub connect: ConnectOpts,
}

impl App {
    /// An app serving `snapshot`.
    pub fn new(guard: Guard, connect: ConnectOpts, snapshot: Snapshot) -> Arc<Self> {
        Arc::new(Self { guard, snapshot: RwLock::new(Arc::new(snapshot)), connect })
    }
}

/// What a read of the map found, for the page.
struct Reading<'a> {
    edges: &'a [ObservedEdge],
    truncated: bool,
    max_edges: usize,
    error: Option<String>,
    server: String,
    ready: bool,
}

/// The snapshot of one reading.
fn snapshot(reading: &Reading<'_>) -> Snapshot {
    let view = map::MapView::of(reading.edges);
    let map_json = serde_json::to_vec(&view).unwrap_or_default();
    let version = map::MapView::version(&map_json);
    let doc = serde_json::json!({
        "version": version,
        "fetched_ms": unix_ms(SystemTime::now()),
        "server": reading.server,
        "ready": reading.ready,
        "truncated": reading.truncated,
        "max_edges": reading.max_edges,
        "error": reading.error,
        "versions": api::versions(),
        "nodes": view.nodes,
        "edges": view.edges,
    });
    Snapshot { edges: reading.edges.to_vec(), json: serde_json::to_vec(&doc).unwrap_or_default(), version }
}

/// Reads the map (at most `max` edges; `true` when there were more) and whether the server
/// has synced its cluster state.
async fn read_map(
    mapper: &mut Mapper,
    args: &DashboardArgs,
) -> Result<(Vec<ObservedEdge>, bool, bool), crate::edges::FetchError> {
    let ready = mapper.health().await?.ready;
    let mut stream = args.query.stream(mapper, true, args.include_nodes).await?;
    let mut edges = Vec::new();
    while let Some(edge) = stream.next().await? {
        if edges.len() == args.max_edges {
            return Ok((edges, true, ready));
        }
        edges.push(edge);
    }
    Ok((edges, false, ready))
}

/// Reads the map every `--refresh` into the app's snapshot; a failed read keeps the last map
/// and tells the page why; the connection is made again on the next round.
async fn refresh_loop(app: Arc<App>, mut mapper: Option<Mapper>, args: DashboardArgs) {
    let mut last: Vec<ObservedEdge> = Vec::new();
    let mut server = String::new();
    loop {
        tokio::time::sleep(args.refresh).await;
        if mapper.is_none() {
            match Mapper::connect(&app.connect).await {
                Ok(m) => mapper = Some(m),
                Err(e) => {
                    let error = mapper_intents::error_chain(&e);
                    let reading = Reading {
                        edges: &last,
                        truncated: false,
                        max_edges: args.max_edges,
                        error: Some(error),
                        server: server.clone(),
                        ready: false,
                    };
                    *app.snapshot.write().await = Arc::new(snapshot(&reading));
                    continue;
                }
            }
        }
        let Some(m) = mapper.as_mut() else { continue };
        server = m.address().to_string();
        let reading = match read_map(m, &args).await {
            Ok((edges, truncated, ready)) => {
                last = edges;
                Reading {
                    edges: &last,
                    truncated,
                    max_edges: args.max_edges,
                    error: None,
                    server: server.clone(),
                    ready,
                }
            }
            Err(e) => {
                mapper = None;
                Reading {
                    edges: &last,
                    truncated: false,
                    max_edges: args.max_edges,
                    error: Some(mapper_intents::error_chain(&e)),
                    server: server.clone(),
                    ready: false,
                }
            }
        };
        let fresh = snapshot(&reading);
        let mut current = app.snapshot.write().await;
        *current = Arc::new(fresh);
    }
}

/// Opens `url` in the user's browser ($BROWSER, else the system's opener), without waiting.
fn open_browser(url: &str) {
    let (program, args): (String, Vec<String>) = match std::env::var("BROWSER") {
        Ok(b) if !b.trim().is_empty() => (b, vec![url.to_owned()]),
        _ if cfg!(target_os = "macos") => ("open".to_owned(), vec![url.to_owned()]),
        _ if cfg!(windows) => ("cmd".to_owned(), vec!["/C".into(), "start".into(), String::new(), url.to_owned()]),
        _ => ("xdg-open".to_owned(), vec![url.to_owned()]),
    };
    let spawned = std::process::Command::new(&program)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match spawned {
        // Reaped in the background: the opener exits at once, the browser lives on.
        Ok(mut child) => {
            std::thread::spawn(move || child.wait());
        }
        Err(e) => eprintln!("Could not start a browser ({program}: {e}); open the URL above (--no-browser hides this)"),
    }
}

/// Runs `mapper dashboard` until interrupted.
pub async fn run(connect: &ConnectOpts, args: &DashboardArgs) -> Result<(), Error> {
    // The server must answer before anything is served: a wrong URL or token fails here.
    let mut mapper = Mapper::connect(connect).await?;
    let (edges, truncated, ready) = read_map(&mut mapper, args).await?;
    let server = mapper.address().to_string();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|error| DashboardError::Bind { addr: args.listen, error })?;
    let local = listener.local_addr().map_err(|error| DashboardError::Bind { addr: args.listen, error })?;
    let guard = Guard::random(local.port()).map_err(DashboardError::from)?;
    let host = if local.ip().is_unspecified() { "127.0.0.1".to_owned() } else { local.ip().to_string() };
    let host = if local.is_ipv6() && !local.ip().is_unspecified() { format!("[{host}]") } else { host };
    let url = format!("http://{host}:{}/{}/", local.port(), guard.token());
    let reading =
        Reading { edges: &edges, truncated, max_edges: args.max_edges, error: None, server: server.clone(), ready };
    let app = App::new(guard, connect.clone(), snapshot(&reading));
    drop(edges);
    crate::output::stdout(format!("{url}\n").as_bytes())?;
    if !local.ip().is_loopback() {
        eprintln!(
            "warning: serving on {local}, not loopback: whoever reaches it with the URL reads the map (plain HTTP)"
        );
    }
    eprintln!("Serving the map of mapper-server at {server} on {url} (Ctrl-C stops)");
    if !args.no_browser {
        open_browser(&url);
    }
    tokio::spawn(refresh_loop(app.clone(), Some(mapper), args.clone()));
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    axum::serve(listener, router(app)).with_graceful_shutdown(shutdown).await.map_err(DashboardError::Serve)?;
    Ok(())
}
