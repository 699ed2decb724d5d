//! `mapper visualize`: the map as a graph — Graphviz DOT, Mermaid, SVG, PNG or JPEG. Clients and
//! servers are grouped by namespace (addresses outside the cluster and unresolved ones in their
//! own groups); edges are labelled with the ports seen, and edges on which every attempt failed
//! are dashed.
//!
//! DOT and Mermaid are text ([`dot`], [`mermaid`]). SVG is laid out and drawn with the pure-Rust
//! `layout-rs` ([`draw`]), and PNG and JPEG rasterised from it with `resvg` ([`png`]), so no system
//! graphviz is needed.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use crate::cli::Error;
use crate::connect::{ConnectOpts, Mapper};
use crate::edges::{ObservedEdge, Peer, PeerView, QueryArgs, ports_text};
use crate::list::keep;
use crate::output;
use mapper_intents::Workload;

pub mod dot;
pub mod draw;
pub mod mermaid;
pub mod png;

/// What to draw the map as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Graphviz DOT (render with `dot -Tsvg`).
    Dot,
    /// A Mermaid flowchart (renders in GitHub and GitLab Markdown).
    Mermaid,
    /// SVG, laid out without graphviz.
    Svg,
    /// PNG, laid out without graphviz.
    Png,
    /// JPEG, laid out without graphviz (alias jpeg).
    #[value(alias = "jpeg")]
    Jpg,
}

impl Format {
    /// The format a file name's extension asks for.
    fn from_extension(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "dot" | "gv" => Some(Format::Dot),
            "mmd" | "mermaid" => Some(Format::Mermaid),
            "svg" => Some(Format::Svg),
            "png" => Some(Format::Png),
            "jpg" | "jpeg" => Some(Format::Jpg),
            _ => None,
        }
    }

    /// The format as `--format` names it.
    pub fn name(self) -> &'static str {
        match self {
            Format::Dot => "dot",
            Format::Mermaid => "mermaid",
            Format::Svg => "svg",
            Format::Png => "png",
            Format::Jpg => "jpg",
        }
    }

    /// Whether this format is bytes no terminal should get.
    fn is_binary(self) -> bool {
        matches!(self, Format::Png | Format::Jpg)
    }
}

/// The format to draw in: `--format`, else the one the -o extension names, else DOT on stdout.
/// A file whose extension names no format, or another one than `--format`, is refused: DOT
/// text in `map.jpg` would be no image.
pub fn choose_format(format: Option<Format>, output: Option<&Path>) -> Result<Format, VisualizeError> {
    let Some(path) = output else { return Ok(format.unwrap_or(Format::Dot)) };
    match (format, Format::from_extension(path)) {
        (None, Some(from_name)) => Ok(from_name),
        (Some(asked), Some(from_name)) if asked == from_name => Ok(asked),
        (Some(asked), Some(from_name)) => {
            Err(VisualizeError::FormatMismatch { path: path.to_path_buf(), asked, from_name })
        }
        // An extension no format has (map.txt) or none (map): what was asked, if anything.
        (Some(asked), None) if path.extension().is_none() => Ok(asked),
        (_, None) => Err(VisualizeError::UnknownExtension { path: path.to_path_buf(), asked: format }),
    }
}

/// `mapper visualize`.
#[derive(Debug, Clone, Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  mapper visualize -o map.svg            # the format follows the extension\n",
    "  mapper visualize -o map.jpg --as-kubernetes-service\n",
    "  mapper visualize -n team1 --format mermaid\n",
    "  mapper visualize --format dot | dot -Tpdf -o map.pdf\n\n",
    crate::exit_status_help!()
))]
pub struct VisualizeArgs {
    /// Which edges.
    #[command(flatten)]
    pub query: QueryArgs,
    /// Output format [default: from the -o extension (.dot, .mmd, .svg, .png, .jpg), else dot].
    /// An -o extension that names another format, or none mapper draws, is refused. svg, png
    /// and jpg lay out at most 200 edges (larger maps: narrow them, or use dot or mermaid).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Write to this file instead of stdout.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Also draw traffic with an end mapper-server could not attribute.
    #[arg(long)]
    pub include_unresolved: bool,
    /// Also draw traffic of node processes that are no pod (the kubelet's probes, node daemons).
    #[arg(long)]
    pub include_nodes: bool,
}

/// Why the map could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum VisualizeError {
    /// PNG or JPEG bytes would go to a terminal.
    #[error("refusing to write an image to a terminal: pass -o FILE, or redirect stdout")]
    BinaryToTerminal,
    /// The -o file's extension names no format mapper draws.
    #[error(
        "cannot tell what to draw {} as from its extension: name it .png, .jpg, .svg, .dot or .mmd{}",
        path.display(),
        if asked.is_some() { " (or give a file without extension with --format)" } else { ", or give --format and a file without extension" }
    )]
    UnknownExtension {
        /// The file.
        path: PathBuf,
        /// The --format given, if any.
        asked: Option<Format>,
    },
    /// `--format` and the -o extension disagree.
    #[error("--format {} and the extension of {} ({}) disagree: drop --format, or rename the file", asked.name(), path.display(), from_name.name())]
    FormatMismatch {
        /// The file.
        path: PathBuf,
        /// The --format given.
        asked: Format,
        /// The format its extension names.
        from_name: Format,
    },
    /// Laying out failed.
    #[error(transparent)]
    Layout(#[from] draw::LayoutError),
    /// Rasterising failed.
    #[error(transparent)]
    Png(#[from] png::PngError),
    /// The graph is too large to lay out in reasonable time.
    #[error(
        "the map has {links} edges between {nodes} nodes: --format svg and png lay out at most {MAX_DRAWN_LINKS} \
         edges (the layout's time grows with the cube of the size); narrow it with -n NAMESPACE, --server or \
         --since, or use --format dot (render with graphviz) or mermaid"
    )]
    TooLarge {
        /// Edges in the graph.
        links: usize,
        /// Nodes in the graph.
        nodes: usize,
    },
}

/// The most edges `--format svg` and `png` lay out: the layout's time grows roughly with the
/// cube of the graph's size, and this many take a few seconds.
pub const MAX_DRAWN_LINKS: usize = 200;

impl VisualizeError {
    /// Whether the command line is at fault: exit status 2.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            VisualizeError::BinaryToTerminal
                | VisualizeError::UnknownExtension { .. }
                | VisualizeError::FormatMismatch { .. }
        )
    }
}

/// A box the graph groups nodes in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Group {
    /// A Kubernetes namespace.
    Namespace(String),
    /// Addresses outside the cluster.
    Outside,
    /// Addresses mapper-server could not attribute.
    Unresolved,
    /// Node processes that are no pod.
    Nodes,
}

impl Group {
    /// The group's caption.
    pub fn title(&self) -> String {
        match self {
            Group::Namespace(ns) => format!("namespace {ns}"),
            Group::Outside => "outside the cluster".to_owned(),
            Group::Unresolved => "unresolved addresses".to_owned(),
            Group::Nodes => "nodes".to_owned(),
        }
    }
}

/// One node: a peer, the group it is drawn in, and its label lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The peer, with the DNS names clients resolved to it.
    pub peer: PeerView,
    /// Its group; the API server is in none.
    pub group: Option<Group>,
    /// Label lines: the name first, then what it is.
    pub lines: Vec<String>,
}

/// One edge between nodes (indexes into [`Graph::nodes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The client's node.
    pub from: usize,
    /// The server's node.
    pub to: usize,
    /// `8080/TCP, 8443/TCP`.
    pub label: String,
    /// Every attempt failed.
    pub failed_only: bool,
}

/// The map as nodes and links, in a fixed order (groups, then names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Graph {
    /// Nodes, sorted by group then peer.
    pub nodes: Vec<Node>,
    /// Links, sorted by (from, to).
    pub links: Vec<Link>,
}

fn group_of(peer: &Peer) -> Option<Group> {
    match peer {
        Peer::Workload(Workload { namespace, .. }) | Peer::Service { namespace, .. } => {
            Some(Group::Namespace(namespace.to_string()))
        }
        Peer::ApiServer => None,
        Peer::External { .. } => Some(Group::Outside),
        Peer::Unresolved { .. } => Some(Group::Unresolved),
        Peer::Node { .. } => Some(Group::Nodes),
    }
}

fn lines_of(view: &PeerView) -> Vec<String> {
    match &view.peer {
        Peer::Workload(w) => vec![w.name.to_string(), w.kind().unwrap_or("workload").to_owned()],
        Peer::Service { name, .. } => vec![name.to_string(), "Service (no pods)".to_owned()],
        Peer::ApiServer => vec!["Kubernetes API server".to_owned(), "kubernetes.default".to_owned()],
        Peer::External { ip } if view.dns_names.is_empty() => vec![ip.to_string()],
        Peer::External { ip } => vec![view.dns_names.join(", "), ip.to_string()],
        Peer::Unresolved { ip, reason } => vec![ip.to_string(), reason.to_string()],
        Peer::Node { name } => vec![name.to_string(), "node process".to_owned()],
    }
}

impl Graph {
    /// The graph of `edges`.
    pub fn new(edges: &[ObservedEdge]) -> Self {
        // An outside server's DNS names, from the edges that reach it.
        let mut names: BTreeMap<&Peer, BTreeSet<&str>> = BTreeMap::new();
        for e in edges {
            names.entry(&e.server).or_default().extend(e.dns_names.iter().map(String::as_str));
        }
        let peers: BTreeSet<(Option<Group>, &Peer)> =
            edges.iter().flat_map(|e| [&e.client, &e.server]).map(|p| (group_of(p), p)).collect();
        let nodes: Vec<Node> = peers
            .into_iter()
            .map(|(group, peer)| {
                let dns_names =
                    names.get(peer).map(|n| n.iter().map(|s| (*s).to_owned()).collect()).unwrap_or_default();
                let view = PeerView { peer: peer.clone(), dns_names, release: None };
                Node { lines: lines_of(&view), peer: view, group }
            })
            .collect();
        let index: BTreeMap<&Peer, usize> = nodes.iter().enumerate().map(|(i, n)| (&n.peer.peer, i)).collect();
        let mut links: Vec<Link> = edges
            .iter()
            .filter_map(|e| {
                let failed_only = e.established == 0 && e.failed > 0;
                let mut label = ports_text(&e.ports);
                if failed_only {
                    label = if label.is_empty() { "failed".to_owned() } else { format!("{label} (failed)") };
                }
                Some(Link { from: *index.get(&e.client)?, to: *index.get(&e.server)?, label, failed_only })
            })
            .collect();
        links.sort_by(|a, b| (a.from, a.to, &a.label).cmp(&(b.from, b.to, &b.label)));
        Self { nodes, links }
    }

    /// The groups in order, each with its nodes' indexes; then the nodes in no group.
    pub fn groups(&self) -> (Vec<(&Group, Vec<usize>)>, Vec<usize>) {
        let mut groups: Vec<(&Group, Vec<usize>)> = Vec::new();
        let mut loose = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            match &node.group {
                Some(group) => match groups.last_mut() {
                    Some((last, members)) if *last == group => members.push(i),
                    _ => groups.push((group, vec![i])),
                },
                None => loose.push(i),
            }
        }
        (groups, loose)
    }
}

/// The map drawn in `format`.
pub fn render(graph: &Graph, format: Format) -> Result<Vec<u8>, VisualizeError> {
    match format {
        Format::Dot => Ok(dot::render(graph).into_bytes()),
        Format::Mermaid => Ok(mermaid::render(graph).into_bytes()),
        Format::Svg | Format::Png | Format::Jpg if graph.links.len() > MAX_DRAWN_LINKS => {
            Err(VisualizeError::TooLarge { links: graph.links.len(), nodes: graph.nodes.len() })
        }
        Format::Svg => Ok(draw::svg(graph)?.into_bytes()),
        Format::Png => Ok(png::png(&draw::svg(graph)?)?),
        Format::Jpg => Ok(png::jpg(&draw::svg(graph)?)?),
    }
}

/// Runs `mapper visualize`.
pub async fn run(connect: &ConnectOpts, args: &VisualizeArgs) -> Result<(), Error> {
    let format = choose_format(args.format, args.output.as_deref())?;
    if format.is_binary() && args.output.is_none() && std::io::stdout().is_terminal() {
        return Err(VisualizeError::BinaryToTerminal.into());
    }
    let mut mapper = Mapper::connect(connect).await?;
    let fetched = args.query.fetch(&mut mapper, true, args.include_nodes).await?;
    let edges = keep(args.query.view(fetched), args.include_unresolved);
    if edges.is_empty() {
        eprintln!("No connections found.");
    }
    let mut graph = Graph::new(&edges);
    if args.query.as_kubernetes_service {
        // The Services drawn are the ones clients dialled, pods behind them or not.
        for node in graph.nodes.iter_mut().filter(|n| matches!(n.peer.peer, Peer::Service { .. })) {
            node.lines.truncate(1);
            node.lines.push("Service".to_owned());
        }
    }
    let bytes = render(&graph, format)?;
    output::to(args.output.as_deref(), &bytes)?;
    if let Some(path) = &args.output {
        eprintln!("Wrote the map to {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
