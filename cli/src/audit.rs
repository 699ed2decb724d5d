//! `mapper audit`: what the cluster does against what the charts declare. Per client workload:
//! the calls observed but not declared (**missing**: blocked once the ClientIntents are
//! enforced), the declared targets not observed (**unused**), and those that are both
//! (**covered**). mapper-intents computes the diff; this module reads the two sides and prints
//! it as a table, JSON or Markdown (`audit/render.rs` draws those).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::{ArgGroup, Args, ValueEnum};
use mapper_intents::audit::{AuditScope, Auditor, DeclaredDoc};
use mapper_intents::netpol::Policy;
use mapper_intents::{Edge, Workload};
use mapper_proto::v1 as pb;

use crate::cli::Error;
use crate::connect::{ConnectOpts, Mapper};
use crate::declared::{self, ReadError};
use crate::edges::{EdgeStream, ObservedEdge, Peer, QueryArgs, unix_ms, unix_ms_before};
use crate::netpolicies;
use crate::output;
use crate::releases::{self, ReleaseError};

mod render;

pub use render::target_text;
use render::{View, findings_text};
// What the tests (tests.rs) build reports and check views with.
#[cfg(test)]
use {mapper_intents::Target, mapper_intents::audit::AuditReport, serde_json::json};

/// Table, JSON or Markdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One block per client, a status per line (coloured on a terminal).
    Table,
    /// The `mapper.audit/v1` document (see the README).
    Json,
    /// A table for a pull-request comment.
    Markdown,
}

/// Which findings make the exit status 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// Observed calls that are not declared (they would be blocked).
    Missing,
    /// Declared targets not observed in the window.
    Unused,
    /// Either.
    Any,
    /// Never (report only).
    None,
}

/// When to colour the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Color {
    /// On a terminal, unless NO_COLOR is set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// `mapper audit`.
#[derive(Debug, Clone, Args)]
#[command(
    group(ArgGroup::new("declared_side").required(true).args(["declared", "from_cluster", "helm_release"])),
    after_help = concat!(
        "Examples:\n",
        "  mapper audit --declared charts/transaction-service/\n",
        "  helm template charts/shop | mapper audit --declared - -n shop --since 7d\n",
        "  mapper audit --from-cluster -n team1 --format markdown --fail-on any\n",
        "  mapper audit --helm-release payments -n team1\n",
        "  mapper audit --helm-release payments -n team1 --revision 3   # before `helm rollback payments 3`\n\n",
        "Missing: observed in the window, not declared (blocked once the ClientIntents are enforced). \
         Unused: declared, not observed in the window. Covered: both. Failed connection attempts count as \
         observed. Without -n or --workload, the clients audited are those in the namespaces of the declared \
         ClientIntents (every namespace when nothing is declared).\n\n",
        "NetworkPolicies (networking.k8s.io/v1, in --declared files or the --helm-release manifest) are evaluated \
         with Kubernetes semantics against every observed call into the pods they select: the calls no policy \
         admits are DENIED; those whose verdict needs labels, named ports or addresses mapper does not know \
         (labels come from the cluster, or --inventory) are UNKNOWN. Only ingress is evaluated; egress rules are not, and the \
         report says so. Denied calls count as missing for --fail-on.\n\n",
        "Exit status: 0 nothing --fail-on names was found; 3 it was; 1 error (server unreachable, bad declared \
         input: nothing is reported then); 2 usage error."
    )
)]
pub struct AuditArgs {
    /// Declared ClientIntents and NetworkPolicies: files, directories (read recursively:
    /// their .yaml, .yml and .json files) or - for stdin, any ClientIntents version, other
    /// kinds of objects skipped (as `helm template` prints them).
    #[arg(long, num_args = 1.., value_name = "PATH")]
    pub declared: Vec<PathBuf>,
    /// Read the declared ClientIntents from the cluster's API instead (with -n: from those
    /// namespaces), with the same kube credentials as the port-forward.
    #[arg(long)]
    pub from_cluster: bool,
    /// Read the declared ClientIntents and NetworkPolicies from the manifest of this Helm
    /// release's deployed revision, as Helm's storage keeps it in the cluster (Secrets, or
    /// ConfigMaps of the ConfigMap driver), with the same kube credentials as the
    /// port-forward. The release is looked up in the namespace -n names (the first, if
    /// several), else the kubeconfig context's; its namespace-less objects are in the
    /// release's namespace.
    #[arg(long, value_name = "NAME")]
    pub helm_release: Option<String>,
    /// With --helm-release: audit revision N instead of the deployed one — the preview of
    /// `helm rollback NAME N`: the calls its ClientIntents would block for the release's
    /// clients, and the callers of its servers its NetworkPolicies would deny.
    #[arg(long, requires = "helm_release", value_name = "N")]
    pub revision: Option<u32>,
    /// Audit the clients in these namespaces (repeatable, or comma-separated). With exactly one,
    /// declared ClientIntents without metadata.namespace are taken to be in it.
    #[arg(
        short = 'n',
        long = "namespaces",
        visible_alias = "namespace",
        value_delimiter = ',',
        value_name = "NAMESPACE"
    )]
    pub namespaces: Vec<String>,
    /// Audit only this client workload (repeatable).
    #[arg(long = "workload", value_parser = parse_workload, value_name = "NAME.NAMESPACE")]
    pub workloads: Vec<(String, String)>,
    /// The window: calls last seen longer ago than this are not observed (they only date an
    /// unused target's last use). Default: everything the server keeps.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub since: Option<Duration>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Which findings make the exit status 3.
    #[arg(long, value_enum, default_value = "missing", value_name = "FINDINGS")]
    pub fail_on: FailOn,
    /// Colour the table.
    #[arg(long, value_enum, default_value = "auto", value_name = "WHEN")]
    pub color: Color,
    /// Pods, their owners and Namespaces as `kubectl get -o yaml` prints them (files or
    /// directories, repeatable): the labels the declared NetworkPolicies select on. Without
    /// it they are read from the cluster (kube credentials as for the port-forward); without
    /// either, labels are unknown and calls whose verdict depends on them are reported so.
    #[arg(long, value_name = "PATH")]
    pub inventory: Vec<PathBuf>,
    /// With --helm-release: read the release's records from these files or directories
    /// (repeatable) of objects as `kubectl get secrets -A -o yaml` prints them, instead of from
    /// the cluster: Secrets or ConfigMaps named sh.helm.release.v1.NAME.vN labelled
    /// owner=helm,name=NAME. Without -n, the one namespace they hold the release in.
    #[arg(long, requires = "helm_release", value_name = "PATH")]
    pub release_records: Vec<PathBuf>,
    /// Also report undeclared calls to the cluster DNS (port 53 of kube-dns/CoreDNS in
    /// kube-system) as missing. Left out by default: the operator's policies never block
    /// them. Declared DNS targets are audited either way.
    #[arg(long)]
    pub include_dns: bool,
}

fn parse_workload(s: &str) -> Result<(String, String), String> {
    match s.split_once('.') {
        Some((name, ns)) if !name.is_empty() && !ns.is_empty() && !ns.contains('.') => {
            Ok((name.to_owned(), ns.to_owned()))
        }
        _ => Err("expected NAME.NAMESPACE, e.g. transaction-service.team1".to_owned()),
    }
}

/// Why `audit` did not pass.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The declared side could not be read.
    #[error(transparent)]
    Declared(#[from] ReadError),
    /// The Helm release could not be read.
    #[error(transparent)]
    Release(#[from] ReleaseError),
    /// The --inventory could not be read.
    #[error(transparent)]
    Labels(#[from] netpolicies::LabelsError),
    /// The audit (or `helm history`) found what --fail-on names.
    #[error("{command}: {findings} (--fail-on {fail_on})")]
    Findings {
        /// The command: `audit`, `helm history`.
        command: &'static str,
        /// What was found, e.g. `1 missing call`.
        findings: String,
        /// The --fail-on value.
        fail_on: &'static str,
    },
}

impl AuditError {
    /// Whether this is the findings outcome (exit status 3), not an error.
    pub fn is_findings(&self) -> bool {
        matches!(self, AuditError::Findings { .. })
    }
}

/// The observed side for the audit: edges to attributed servers, and per client the addresses
/// mapper-server could not attribute.
struct Observed {
    edges: Vec<Edge>,
    unattributed: BTreeMap<Workload, Vec<String>>,
}

fn observed(edges: &[ObservedEdge], window_start_ms: i64) -> Observed {
    let mut out = Observed { edges: Vec::new(), unattributed: BTreeMap::new() };
    for e in edges {
        if let Some(edge) = e.to_intents_edge() {
            out.edges.push(edge);
        } else if let (Peer::Workload(client), Peer::Unresolved { ip, .. }) = (&e.client, &e.server)
            && e.last_seen_ms >= window_start_ms
        {
            out.unattributed.entry(client.clone()).or_default().push(ip.to_string());
        }
    }
    out
}

/// Reads the ClientIntents of a Helm release's deployed revision (or `revision`), saying on
/// stderr which revision and how many documents.
/// The records come from the `records` files when there are any, else from the cluster.
pub async fn read_release(
    connect: &ConnectOpts,
    records: &[PathBuf],
    name: &str,
    namespaces: &[String],
    revision: Option<u32>,
) -> Result<(Vec<DeclaredDoc>, Vec<Policy>), AuditError> {
    let history = releases::history(connect, records, namespaces, name).await?;
    let release = history.chosen(revision)?;
    let (docs, warnings) = release.declared().map_err(|e| ReadError::Parse(Box::new(e)))?;
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    let policies = release.policies().map_err(|e| ReadError::Policy(Box::new(e)))?;
    eprintln!(
        "Read {} declared ClientIntents and {} NetworkPolicies from {}",
        docs.len(),
        policies.len(),
        releases::describe(release)
    );
    Ok((docs, policies))
}

/// Reads the declared side (before contacting the server: bad input fails fast and alone).
async fn read_declared(connect: &ConnectOpts, args: &AuditArgs) -> Result<(Vec<DeclaredDoc>, Vec<Policy>), AuditError> {
    let mut policies = Vec::new();
    let mut docs = if let Some(name) = &args.helm_release {
        let (docs, read) = read_release(connect, &args.release_records, name, &args.namespaces, args.revision).await?;
        policies = read;
        docs
    } else if args.from_cluster {
        let (client, _url) = crate::portforward::kube_client(connect.kubeconfig.as_deref(), connect.context.as_deref())
            .await
            .map_err(|error| ReadError::ClusterConfig { error })?;
        declared::read_cluster(client, &args.namespaces).await?
    } else {
        let (docs, read) = declared::read_paths_and_policies(&args.declared, true, "audit --declared")?;
        policies = read;
        docs
    };
    let default_namespace = match args.namespaces.as_slice() {
        [one] => Some(one.as_str()),
        _ => None,
    };
    declared::fill_namespaces(&mut docs, default_namespace)?;
    declared::fill_policy_namespaces(&mut policies, default_namespace)?;
    Ok((docs, policies))
}

/// The edges the audit needs: those of the clients in scope, chosen by the server. The window
/// (`--since`) is applied here, not by the server: calls before it still date an unused
/// target's last use.
fn request(args: &AuditArgs, declared: &[DeclaredDoc], now: SystemTime) -> pb::ListEdgesRequest {
    let mut namespaces = args.namespaces.clone();
    if namespaces.is_empty() && args.workloads.is_empty() {
        // The scope mapper-intents' audit takes by default: the declared documents' namespaces.
        namespaces = declared.iter().map(|d| d.doc.client("").namespace.to_string()).collect();
        namespaces.sort();
        namespaces.dedup();
    }
    let mut request = QueryArgs { namespaces, ..QueryArgs::default() }.request(now, true, false);
    request.client_workloads = args.workloads.iter().map(|(name, ns)| format!("{name}.{ns}")).collect();
    request
}

/// How long the labels from the cluster may take to list (every pod and its owners).
const CLUSTER_LABELS_WAIT: Duration = Duration::from_secs(60);

/// The labels the declared NetworkPolicies select on, from the cluster when there is no
/// --inventory; without a cluster (or with one that refuses), every label is unknown, which
/// the report says per call, and a warning says why.
async fn cluster_labels(connect: &ConnectOpts, policies: &[Policy]) -> netpolicies::LabelSource {
    let unknown = |why: String| {
        eprintln!("warning: NetworkPolicies: labels unknown (give --inventory, or a cluster): {why}");
        netpolicies::LabelSource::default()
    };
    let client = match crate::portforward::kube_client(connect.kubeconfig.as_deref(), connect.context.as_deref()).await
    {
        Ok((client, _)) => client,
        Err(error) => return unknown(mapper_intents::error_chain(&error)),
    };
    let mut namespaces: Vec<String> = policies.iter().filter_map(|p| p.namespace.clone()).collect();
    namespaces.sort();
    namespaces.dedup();
    match netpolicies::LabelSource::from_cluster(client, &namespaces, CLUSTER_LABELS_WAIT).await {
        Ok(labels) => {
            eprintln!("Read pod and namespace labels from the cluster");
            labels
        }
        Err(error) => unknown(mapper_intents::error_chain(&error)),
    }
}

/// Runs `mapper audit`.
pub async fn run(connect: &ConnectOpts, args: &AuditArgs) -> Result<(), Error> {
    let (declared, policies) = read_declared(connect, args).await?;
    let labels = if args.inventory.is_empty() && !policies.is_empty() {
        cluster_labels(connect, &policies).await
    } else {
        netpolicies::LabelSource::load(&args.inventory).map_err(AuditError::from)?
    };
    let mut mapper = Mapper::connect(connect).await?;
    let now = SystemTime::now();
    let window_start_ms = args.since.map_or(i64::MIN, |since| unix_ms_before(now, since));
    let scope = AuditScope { namespaces: args.namespaces.clone(), workloads: args.workloads.clone() };
    // The server sends the edges sorted by client: each client is audited once its edges have
    // arrived, so memory holds one client's edges and the findings, not the map.
    let mut auditor = Auditor::new(&declared, &scope, window_start_ms);
    let mut unattributed: BTreeMap<Workload, Vec<String>> = BTreeMap::new();
    // Only NetworkPolicies declared: no ClientIntents audit (it would call every call missing).
    if !declared.is_empty() || policies.is_empty() {
        let mut edges = EdgeStream::start(&mut mapper, request(args, &declared, now), Vec::new()).await?;
        while let Some(run) = edges.next_run(|a, b| a.client == b.client).await? {
            let client = observed(&run, window_start_ms);
            auditor.observe(&client.edges);
            for (workload, addresses) in client.unattributed {
                unattributed.entry(workload).or_default().extend(addresses);
            }
        }
    }
    let policy_report = if policies.is_empty() {
        None
    } else {
        // Calls into the policies' namespaces, from any client.
        let mut into = Vec::new();
        let request = QueryArgs::default().request(now, false, false);
        let mut edges = EdgeStream::start(&mut mapper, request, Vec::new()).await?;
        while let Some(run) = edges.next_run(|a, b| a.client == b.client).await? {
            into.extend(run.into_iter().filter(|e| {
                matches!(&e.server, Peer::Workload(w) if policies.iter().any(|p| p.namespace.as_deref() == Some(&*w.namespace)))
            }));
        }
        Some(netpolicies::evaluate(&policies, &into, &labels, window_start_ms))
    };
    let mut report = auditor.finish();
    if !args.include_dns {
        report = report.without_cluster_dns();
    }
    let view = View { report: &report, unattributed: &unattributed, since: args.since, now_ms: unix_ms(now) };
    // Only NetworkPolicies declared: their report alone (a ClientIntents report of nothing
    // declared would only say so), but for JSON, whose document keeps its shape.
    let intents = !declared.is_empty() || policies.is_empty();
    let mut text = match args.format {
        Format::Table if intents => view.table(use_color(args.color)),
        Format::Markdown if intents => view.markdown(),
        Format::Table | Format::Markdown => String::new(),
        Format::Json => view.json_text(),
    };
    if let Some(policy_report) = &policy_report {
        match args.format {
            // Alone, without the blank line that parts it from the ClientIntents report.
            Format::Table if text.is_empty() => text = policy_report.text().trim_start().to_owned(),
            Format::Markdown if text.is_empty() => text = policy_report.markdown().trim_start().to_owned(),
            Format::Table => text.push_str(&policy_report.text()),
            Format::Markdown => text.push_str(&policy_report.markdown()),
            Format::Json => {
                if let Ok(mut doc) = serde_json::from_str::<serde_json::Value>(&text) {
                    doc["network_policies"] = policy_report.json();
                    text = format!("{doc:#}\n");
                }
            }
        }
    }
    output::stdout(text.as_bytes())?;
    // Denied calls count as missing for --fail-on.
    let mut totals = report.totals();
    let denied = policy_report.as_ref().map(|p| p.denied.len());
    totals.missing += denied.unwrap_or(0);
    let failing = match args.fail_on {
        FailOn::Missing => totals.missing > 0,
        FailOn::Unused => totals.unused > 0,
        FailOn::Any => totals.missing + totals.unused > 0,
        FailOn::None => false,
    };
    if failing {
        let fail_on = match args.fail_on {
            FailOn::Missing => "missing",
            FailOn::Unused => "unused",
            FailOn::Any => "any",
            FailOn::None => "none",
        };
        let findings = findings_text(&report.totals(), intents, denied);
        return Err(AuditError::Findings { command: "audit", findings, fail_on }.into());
    }
    Ok(())
}

fn use_color(color: Color) -> bool {
    match color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal(),
    }
}

#[cfg(test)]
mod tests;
