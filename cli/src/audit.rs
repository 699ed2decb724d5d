//! `mapper audit`: what the cluster does against what the charts declare. Per client workload:
//! the calls observed but not declared (**missing**: blocked once the ClientIntents are
//! enforced), the declared targets not observed (**unused**), and those that are both
//! (**covered**). mapper-intents computes the diff; this module reads the two sides and prints
//! it as a table, JSON or Markdown.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::{ArgGroup, Args, ValueEnum};
use mapper_intents::audit::{AuditReport, AuditScope, AuditTotals, ClientAudit, DeclaredDoc};
use mapper_intents::{Edge, Target, Workload};
use mapper_proto::v1 as pb;
use serde_json::{Value, json};

use crate::cli::Error;
use crate::connect::{ConnectOpts, Mapper};
use crate::declared::{self, ReadError};
use crate::edges::{EdgeStream, ObservedEdge, Peer, QueryArgs, time_of, unix_ms, unix_ms_before};
use crate::output;

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
    group(ArgGroup::new("declared_side").required(true).args(["declared", "from_cluster"])),
    after_help = concat!(
        "Examples:\n",
        "  mapper audit --declared charts/transaction-service/\n",
        "  helm template charts/shop | mapper audit --declared - -n shop --since 7d\n",
        "  mapper audit --from-cluster -n team1 --format markdown --fail-on any\n\n",
        "Missing: observed in the window, not declared (blocked once the ClientIntents are enforced). \
         Unused: declared, not observed in the window. Covered: both. Failed connection attempts count as \
         observed. Without -n or --workload, the clients audited are those in the namespaces of the declared \
         ClientIntents (every namespace when nothing is declared).\n\n",
        "Exit status: 0 nothing --fail-on names was found; 3 it was; 1 error (server unreachable, bad declared \
         input: nothing is reported then); 2 usage error."
    )
)]
pub struct AuditArgs {
    /// Declared ClientIntents: files, directories (read recursively: their .yaml, .yml and
    /// .json files) or - for stdin, any version, other kinds of objects skipped (as `helm
    /// template` prints them).
    #[arg(long, num_args = 1.., value_name = "PATH")]
    pub declared: Vec<PathBuf>,
    /// Read the declared ClientIntents from the cluster's API instead (with -n: from those
    /// namespaces), with the same kube credentials as the port-forward.
    #[arg(long)]
    pub from_cluster: bool,
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
    /// The audit found what --fail-on names.
    #[error("audit: {findings} (--fail-on {fail_on})")]
    Findings {
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

/// Reads the declared side (before contacting the server: bad input fails fast and alone).
async fn read_declared(connect: &ConnectOpts, args: &AuditArgs) -> Result<Vec<DeclaredDoc>, ReadError> {
    let mut docs = if args.from_cluster {
        let (client, _url) = crate::portforward::kube_client(connect.kubeconfig.as_deref(), connect.context.as_deref())
            .await
            .map_err(|reason| ReadError::Cluster { reason })?;
        declared::read_cluster(client, &args.namespaces).await?
    } else {
        declared::read_paths(&args.declared, true, "audit --declared")?
    };
    let default_namespace = match args.namespaces.as_slice() {
        [one] => Some(one.as_str()),
        _ => None,
    };
    declared::fill_namespaces(&mut docs, default_namespace)?;
    Ok(docs)
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

/// Runs `mapper audit`.
pub async fn run(connect: &ConnectOpts, args: &AuditArgs) -> Result<(), Error> {
    let declared = read_declared(connect, args).await.map_err(AuditError::from)?;
    let mut mapper = Mapper::connect(connect).await?;
    let now = SystemTime::now();
    let edges = EdgeStream::start(&mut mapper, request(args, &declared, now), Vec::new()).await?.collect().await?;
    let window_start_ms = args.since.map_or(i64::MIN, |since| unix_ms_before(now, since));
    let observed = observed(&edges, window_start_ms);
    let scope = AuditScope { namespaces: args.namespaces.clone(), workloads: args.workloads.clone() };
    let mut report = mapper_intents::audit::audit(&declared, &observed.edges, &scope, window_start_ms);
    if !args.include_dns {
        report = report.without_cluster_dns();
    }
    let view = View { report: &report, unattributed: &observed.unattributed, since: args.since, now_ms: unix_ms(now) };
    let text = match args.format {
        Format::Table => view.table(use_color(args.color)),
        Format::Json => format!("{:#}\n", view.json()),
        Format::Markdown => view.markdown(),
    };
    output::stdout(text.as_bytes())?;
    let totals = report.totals();
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
        return Err(AuditError::Findings { findings: findings_text(&totals), fail_on }.into());
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

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn findings_text(t: &AuditTotals) -> String {
    format!(
        "{} (blocked once enforced), {} declared but not observed",
        plural(t.missing, "missing call", "missing calls"),
        plural(t.unused, "target", "targets")
    )
}

fn rfc3339(ms: i64) -> String {
    crate::edges::timestamp_text(ms, false)
}

fn workload_text(w: &Workload) -> String {
    format!("{}.{}", w.name, w.namespace)
}

/// A target as people write it: `ledger.team3`, `svc:ledger.team3`, `kubernetes.default`,
/// `internet 203.0.113.7 (api.example.com)`, `kafka kafka.infra`.
pub fn target_text(t: &Target) -> String {
    match t {
        Target::Workload(w) => format!("{}.{}", w.name, w.namespace.as_deref().unwrap_or("?")),
        Target::Service(s) => format!("svc:{}.{}", s.name, s.namespace.as_deref().unwrap_or("?")),
        Target::ApiServer => "kubernetes.default (API server)".to_owned(),
        Target::Internet(i) => {
            let mut text = String::from("internet");
            for part in i.ips.iter().chain(&i.domains) {
                text.push(' ');
                text.push_str(part);
            }
            if !i.ports.is_empty() {
                let ports: Vec<String> = i.ports.iter().map(u16::to_string).collect();
                let _ = write!(text, " port {}", ports.join(","));
            }
            text
        }
        Target::Other(o) => {
            let body = &o.body;
            let name = ["name", "arn", "resource", "scope"]
                .iter()
                .find_map(|k| body.get(*k).and_then(|v| v.as_str()))
                .unwrap_or_default();
            format!("{} {name}", o.kind.key())
        }
    }
}

/// An observed server as a target line: the name, with its kind when known.
fn server_text(e: &Edge) -> String {
    match &e.server {
        Target::Workload(w) => match &w.kind {
            Some(kind) => format!("{} ({kind})", target_text(&e.server)),
            None => target_text(&e.server),
        },
        Target::Service(_) => format!("{} (no pods)", target_text(&e.server)),
        _ => target_text(&e.server),
    }
}

fn ports_text(e: &Edge) -> String {
    e.ports.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

fn counts_text(established: u64, failed: u64) -> String {
    match (established, failed) {
        (0, f) => format!("all {} failed", plural(f as usize, "attempt", "attempts")),
        (n, 0) => plural(n as usize, "connection", "connections"),
        (n, f) => format!("{}, {f} failed", plural(n as usize, "connection", "connections")),
    }
}

fn sum<'a>(edges: impl IntoIterator<Item = &'a Edge>) -> (u64, u64, i64) {
    // Saturating: counts near u64::MAX are possible values of the server's.
    edges.into_iter().fold((0, 0, 0), |(e, f, l), x| {
        (e.saturating_add(x.established), f.saturating_add(x.failed), l.max(x.last_seen_ms))
    })
}

/// What a line of the table or of the Markdown says of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Missing,
    Unused,
    Covered,
    /// Declared, and not something mapper can observe (SQL, cloud).
    Declared,
}

impl Status {
    /// The table's word for it.
    fn word(self) -> &'static str {
        match self {
            Status::Missing => "MISSING",
            Status::Unused => "UNUSED",
            Status::Covered => "COVERED",
            Status::Declared => "DECLARED",
        }
    }

    /// The ANSI colour of that word on a terminal.
    fn color(self) -> &'static str {
        match self {
            Status::Missing => "1;31",
            Status::Unused => "33",
            Status::Covered => "32",
            Status::Declared => "2",
        }
    }

    /// The Markdown cell.
    fn markdown(self) -> &'static str {
        match self {
            Status::Missing => "❌ missing",
            Status::Unused => "⚠️ unused",
            Status::Covered => "✅ covered",
            Status::Declared => "ℹ️ declared",
        }
    }
}

/// One line of the table or of the Markdown.
struct Line {
    status: Status,
    target: String,
    ports: String,
    counts: String,
    when: String,
    note: String,
}

fn lines(c: &ClientAudit) -> Vec<Line> {
    let mut out = Vec::new();
    for e in &c.missing {
        let note = if e.established == 0 { "already failing".to_owned() } else { "blocked once enforced".to_owned() };
        out.push(Line {
            status: Status::Missing,
            target: server_text(e),
            ports: ports_text(e),
            counts: counts_text(e.established, e.failed),
            when: format!("last seen {}", rfc3339(e.last_seen_ms)),
            note,
        });
    }
    for u in &c.unused {
        let hint = match &u.target {
            Target::Workload(w) if w.name == "kubernetes" && w.namespace.as_deref() == Some("default") => {
                "the API server is a Service target: svc:kubernetes.default / service: {name: kubernetes.default}"
                    .to_owned()
            }
            _ => String::new(),
        };
        out.push(Line {
            status: Status::Unused,
            target: target_text(&u.target),
            ports: String::new(),
            counts: String::new(),
            when: match u.last_seen_ms {
                Some(ms) => format!("last seen {} (before the window)", rfc3339(ms)),
                None => "never seen".to_owned(),
            },
            note: hint,
        });
    }
    for cov in &c.covered {
        let (established, failed, last) = sum(&cov.observed);
        let mut ports: Vec<String> = cov.observed.iter().map(ports_text).filter(|p| !p.is_empty()).collect();
        ports.sort();
        ports.dedup();
        out.push(Line {
            status: Status::Covered,
            target: target_text(&cov.target),
            ports: ports.join(","),
            counts: counts_text(established, failed),
            when: format!("last seen {}", rfc3339(last)),
            note: String::new(),
        });
    }
    for t in &c.not_observable {
        out.push(Line {
            status: Status::Declared,
            target: target_text(t),
            ports: String::new(),
            counts: String::new(),
            when: String::new(),
            note: "not a network call mapper can observe".to_owned(),
        });
    }
    out
}

fn client_header(c: &ClientAudit) -> String {
    let kind = c.client.kind.as_deref().map(|k| format!(" ({k})")).unwrap_or_default();
    let declared = if c.sources.is_empty() {
        "no ClientIntents: every call would be blocked once enforced".to_owned()
    } else {
        format!("declared in {}", c.sources.join("; "))
    };
    let observed = if c.observed { "" } else { "; never observed" };
    format!("{}{kind} — {declared}{observed}", workload_text(&c.client))
}

struct View<'a> {
    report: &'a AuditReport,
    unattributed: &'a BTreeMap<Workload, Vec<String>>,
    since: Option<Duration>,
    now_ms: i64,
}

impl View<'_> {
    fn window_text(&self) -> String {
        match self.since {
            Some(d) => format!("the last {}", humantime::format_duration(d)),
            None => "everything mapper-server keeps".to_owned(),
        }
    }

    fn unattributed_of(&self, c: &ClientAudit) -> Option<&Vec<String>> {
        self.unattributed.get(&c.client).or_else(|| {
            self.unattributed
                .iter()
                .find(|(w, _)| w.name == c.client.name && w.namespace == c.client.namespace)
                .map(|(_, v)| v)
        })
    }

    fn summary_line(&self) -> String {
        let t = self.report.totals();
        format!(
            "{} (blocked once enforced) · {} · {} · {} · window: {}",
            plural(t.missing, "missing call", "missing calls"),
            plural(t.unused, "unused target", "unused targets"),
            plural(t.covered, "covered target", "covered targets"),
            plural(t.clients, "client", "clients"),
            self.window_text()
        )
    }

    fn table(&self, color: bool) -> String {
        let paint = |status: Status| -> String {
            let word = status.word();
            if color { format!("\x1b[{}m{word:<8}\x1b[0m", status.color()) } else { format!("{word:<8}") }
        };
        let mut out = String::new();
        if self.report.clients.is_empty() {
            out.push_str("No clients to audit: nothing declared or observed in scope.\n");
        }
        for c in &self.report.clients {
            let _ = writeln!(out, "{}", client_header(c));
            let lines = lines(c);
            let width = |f: fn(&Line) -> &String| lines.iter().map(|l| f(l).chars().count()).max().unwrap_or(0);
            let (wt, wp, wc) = (width(|l| &l.target), width(|l| &l.ports), width(|l| &l.counts));
            for l in &lines {
                let mut row =
                    format!("  {} {:<wt$}  {:<wp$}  {:<wc$}  {}", paint(l.status), l.target, l.ports, l.counts, l.when);
                if !l.note.is_empty() {
                    let _ = write!(row, "  ({})", l.note);
                }
                let _ = writeln!(out, "{}", row.trim_end());
            }
            if let Some(ips) = self.unattributed_of(c) {
                let _ = writeln!(
                    out,
                    "  {} to addresses mapper-server could not attribute ({}): mapper list --include-unresolved",
                    plural(ips.len(), "call", "calls"),
                    ips.join(", ")
                );
            }
            out.push('\n');
        }
        out.push_str(&self.summary_line());
        out.push('\n');
        out
    }

    fn markdown(&self) -> String {
        let t = self.report.totals();
        let mut out = format!(
            "### mapper audit: {}, {}, {}\n\n",
            plural(t.missing, "missing call", "missing calls"),
            plural(t.unused, "unused target", "unused targets"),
            plural(t.covered, "covered target", "covered targets")
        );
        if t.missing > 0 {
            out.push_str("**Missing calls are blocked once these ClientIntents are enforced.**\n\n");
        }
        out.push_str("| | Client | Target | Ports | Seen | Last seen |\n|---|---|---|---|---|---|\n");
        let cell = |s: &str| s.replace('|', "\\|");
        for c in &self.report.clients {
            for l in lines(c) {
                let status = l.status.markdown();
                let when = l.when.trim_start_matches("last seen ");
                let seen = if l.note.is_empty() { l.counts.clone() } else { format!("{} ({})", l.counts, l.note) };
                let _ = writeln!(
                    out,
                    "| {status} | `{}` | `{}` | {} | {} | {} |",
                    workload_text(&c.client),
                    cell(&l.target),
                    l.ports,
                    cell(seen.trim()),
                    cell(when)
                );
            }
            if c.missing.is_empty() && c.unused.is_empty() && c.covered.is_empty() && c.not_observable.is_empty() {
                let _ = writeln!(out, "| | `{}` | (nothing declared or observed) | | | |", workload_text(&c.client));
            }
        }
        let _ = writeln!(out, "\nWindow: {}. Generated by `mapper audit`.", self.window_text());
        out
    }

    fn json(&self) -> Value {
        let t = self.report.totals();
        let port_list = |e: &Edge| json!(e.ports);
        let clients: Vec<Value> = self
            .report
            .clients
            .iter()
            .map(|c| {
                let missing: Vec<Value> = c
                    .missing
                    .iter()
                    .map(|e| {
                        json!({
                            "target": target_text(&e.server),
                            "server": e.server,
                            "ports": port_list(e),
                            "established": e.established,
                            "failed": e.failed,
                            "first_seen": rfc3339(e.first_seen_ms),
                            "last_seen": rfc3339(e.last_seen_ms),
                            "via_services": e.via_services.iter().map(|s| format!("{}.{}", s.name, s.namespace)).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                let unused: Vec<Value> = c
                    .unused
                    .iter()
                    .map(|u| {
                        json!({
                            "target": target_text(&u.target),
                            "declared": u.target,
                            "last_seen": u.last_seen_ms.map(rfc3339),
                        })
                    })
                    .collect();
                let covered: Vec<Value> = c
                    .covered
                    .iter()
                    .map(|cov| {
                        let (established, failed, last) = sum(&cov.observed);
                        json!({
                            "target": target_text(&cov.target),
                            "declared": cov.target,
                            "servers": cov.observed.iter().map(|e| json!({"server": e.server, "ports": port_list(e)})).collect::<Vec<_>>(),
                            "established": established,
                            "failed": failed,
                            "last_seen": rfc3339(last),
                        })
                    })
                    .collect();
                let not_observable: Vec<Value> =
                    c.not_observable.iter().map(|t| json!({"target": target_text(t), "declared": t})).collect();
                json!({
                    "client": c.client,
                    "declared_in": c.sources,
                    "observed": c.observed,
                    "missing": missing,
                    "unused": unused,
                    "covered": covered,
                    "not_observable": not_observable,
                    "unattributed_addresses": self.unattributed_of(c).cloned().unwrap_or_default(),
                })
            })
            .collect();
        json!({
            "apiVersion": "mapper.audit/v1",
            "generated": rfc3339(self.now_ms),
            "window": {"since": self.since.map(|d| rfc3339(unix_ms_before(time_of(self.now_ms), d)))},
            "summary": {"clients": t.clients, "missing": t.missing, "unused": t.unused, "covered": t.covered},
            "clients": clients,
        })
    }
}

#[cfg(test)]
mod tests;
