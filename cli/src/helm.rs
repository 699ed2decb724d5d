//! `mapper helm history NAME`: per revision of a Helm release, the calls its ClientIntents added
//! and removed relative to the revision before, and for each removed call whether the observed
//! traffic still uses it (then it is blocked once that revision's intents are enforced, unless
//! a later revision declares it again). Whether a call is used is decided by the audit itself
//! (mapper-intents' [`Auditor`]): a removed call is "still used" exactly when `mapper audit`
//! would find a declaration of it covered.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand, ValueEnum};
use mapper_intents::audit::{AuditScope, Auditor, DeclaredDoc};
use mapper_intents::helm::Release;
use mapper_intents::{ClientIntentsDoc, Edge, IntentsVersion, Target, Workload};
use serde_json::{Value, json};

use crate::audit::{AuditError, target_text};
use crate::cli::Error;
use crate::connect::{ConnectOpts, Mapper};
use crate::declared::ReadError;
use crate::edges::{EdgeStream, QueryArgs, timestamp_text, unix_ms, unix_ms_before};
use crate::output;
use crate::releases::{self, History};

/// `mapper helm`.
#[derive(Debug, Clone, Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  mapper helm history payments -n team1\n",
    "  mapper helm history payments -n team1 -o markdown --since 7d\n\n",
    "Exit status: 0 no removed call is still in use (or --fail-on none); 3 one is; 1 error (cluster or server \
     unreachable, bad release record); 2 usage error."
))]
pub struct HelmArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: HelmCommand,
}

/// The `mapper helm` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum HelmCommand {
    /// Per revision of a release: the calls its ClientIntents added and removed, and whether
    /// observed traffic still uses the removed ones.
    History(HistoryArgs),
}

/// Text, JSON or Markdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One paragraph per revision.
    Text,
    /// The `mapper.helm-history/v1` document (see the README).
    Json,
    /// A table for a pull-request comment.
    Markdown,
}

/// Which findings make the exit status 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// A removed call, not declared again since, that observed traffic still uses (blocked
    /// once the deployed intents are enforced).
    Blocked,
    /// Never (report only).
    None,
}

/// `mapper helm history`.
#[derive(Debug, Clone, Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  mapper helm history payments -n team1\n",
    "  mapper helm history payments -o json --since 24h\n\n",
    "The release's revisions are read from the cluster as Helm keeps them (Secrets, or ConfigMaps of the \
     ConfigMap driver), with the same kube credentials as the port-forward; observed traffic comes from \
     mapper-server. A removed call is still in use when a call it would cover was observed in the window; it is \
     blocked once enforced unless a later revision declares it again.\n\n",
    "Exit status: 0 nothing --fail-on names was found; 3 it was; 1 error (cluster or server unreachable, bad \
     release record); 2 usage error."
))]
pub struct HistoryArgs {
    /// The release.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The release's namespace (default: the kubeconfig context's).
    #[arg(short = 'n', long = "namespace", value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text", value_name = "FORMAT")]
    pub format: Format,
    /// The window: calls last seen longer ago than this do not count as in use.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub since: Option<Duration>,
    /// Which findings make the exit status 3.
    #[arg(long, value_enum, default_value = "blocked", value_name = "FINDINGS")]
    pub fail_on: FailOn,
    /// Read the release's records from these files or directories (repeatable) of objects
    /// as `kubectl get secrets -A -o yaml` prints them, instead of from the cluster: Secrets or
    /// ConfigMaps named sh.helm.release.v1.NAME.vN labelled owner=helm,name=NAME. Without -n,
    /// the one namespace they hold the release in.
    #[arg(long, value_name = "PATH")]
    pub release_records: Vec<PathBuf>,
}

/// One declared call: a client and a target (normalized: the namespace always written).
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The client workload.
    pub client: Workload,
    /// What it declares it calls.
    pub target: Target,
}

/// A removed call and what the observed traffic says of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Removed {
    /// The call.
    pub call: Call,
    /// The last observed call it covers, in the window (Unix ms); `None`: not in use.
    pub last_used_ms: Option<i64>,
    /// The first later revision that declares it again.
    pub declared_again_in: Option<u32>,
}

impl Removed {
    /// Still used and never declared again: blocked once enforced.
    pub fn blocked(&self) -> bool {
        self.last_used_ms.is_some() && self.declared_again_in.is_none()
    }
}

/// One revision's changes.
#[derive(Debug, Clone, PartialEq)]
pub struct RevisionChanges {
    /// The revision.
    pub revision: u32,
    /// Its status (`deployed`, `superseded`, …).
    pub status: String,
    /// When it was deployed (RFC 3339), when recorded.
    pub last_deployed: Option<String>,
    /// The chart, `payments 1.2.0`.
    pub chart: String,
    /// Helm's description of it.
    pub description: String,
    /// Calls declared here and not in the revision before (every call, for the first kept).
    pub added: Vec<Call>,
    /// Calls declared in the revision before and not here.
    pub removed: Vec<Removed>,
}

/// `target` with its namespace written out (a namespace-less one is in the client's).
fn explicit(target: &Target, client_namespace: &str) -> Target {
    let mut target = target.clone();
    match &mut target {
        Target::Workload(w) => {
            w.namespace.get_or_insert_with(|| client_namespace.to_owned());
        }
        Target::Service(s) => {
            s.namespace.get_or_insert_with(|| client_namespace.to_owned());
        }
        _ => {}
    }
    target
}

/// The calls a revision's ClientIntents declare, in document order, each once.
fn calls_of(docs: &[DeclaredDoc]) -> Vec<Call> {
    let mut calls: Vec<Call> = Vec::new();
    for d in docs {
        let client = d.doc.client("");
        for target in &d.doc.targets {
            let call = Call { client: client.clone(), target: explicit(target, &client.namespace) };
            if !calls.iter().any(|c| same_call(c, &call)) {
                calls.push(call);
            }
        }
    }
    calls
}

/// The same call, whatever kind the client was declared with.
fn same_call(a: &Call, b: &Call) -> bool {
    a.client.name == b.client.name && a.client.namespace == b.client.namespace && a.target == b.target
}

/// A revision and the ClientIntents in its manifest.
#[derive(Debug, Clone)]
pub struct DeclaredRevision<'a> {
    /// The revision.
    pub release: &'a Release,
    /// Its ClientIntents.
    pub docs: Vec<DeclaredDoc>,
}

/// The changes of every revision (oldest first), the removed calls checked against
/// `observed` (edges of the clients concerned) in the window starting at `window_start_ms`.
pub fn changes(revisions: &[DeclaredRevision<'_>], observed: &[Edge], window_start_ms: i64) -> Vec<RevisionChanges> {
    let calls: Vec<Vec<Call>> = revisions.iter().map(|r| calls_of(&r.docs)).collect();
    let mut out = Vec::new();
    for (i, DeclaredRevision { release, .. }) in revisions.iter().enumerate() {
        let before: &[Call] = if i == 0 { &[] } else { &calls[i - 1] };
        let now = &calls[i];
        let added = now.iter().filter(|c| !before.iter().any(|b| same_call(b, c))).cloned().collect();
        let removed_calls: Vec<Call> =
            before.iter().filter(|b| !now.iter().any(|c| same_call(b, c))).cloned().collect();
        let removed = removed_calls
            .into_iter()
            .map(|call| {
                let declared_again_in = revisions[i + 1..]
                    .iter()
                    .zip(&calls[i + 1..])
                    .find(|(_, later)| later.iter().any(|c| same_call(c, &call)))
                    .map(|(r, _)| r.release.revision);
                let last_used_ms = last_used(&call, observed, window_start_ms);
                Removed { call, last_used_ms, declared_again_in }
            })
            .collect();
        out.push(RevisionChanges {
            revision: release.revision,
            status: release.status.clone(),
            last_deployed: release.last_deployed.clone(),
            chart: format!("{} {}", release.chart_name, release.chart_version),
            description: release.description.clone(),
            added,
            removed,
        });
    }
    out
}

/// When `call` was last used in the window: the audit of a declaration of it alone, covered.
fn last_used(call: &Call, observed: &[Edge], window_start_ms: i64) -> Option<i64> {
    let doc = ClientIntentsDoc {
        name: call.client.name.to_string(),
        namespace: Some(call.client.namespace.to_string()),
        client_name: call.client.name.to_string(),
        client_kind: None,
        targets: vec![call.target.clone()],
    };
    let declared = [DeclaredDoc { doc, version: IntentsVersion::V2Beta1, source: String::new() }];
    let scope = AuditScope {
        namespaces: Vec::new(),
        workloads: vec![(call.client.name.to_string(), call.client.namespace.to_string())],
    };
    let mut auditor = Auditor::new(&declared, &scope, window_start_ms);
    auditor.observe(observed);
    let report = auditor.finish();
    report.clients.iter().flat_map(|c| &c.covered).flat_map(|c| &c.observed).map(|e| e.last_seen_ms).max()
}

fn client_text(w: &Workload) -> String {
    format!("{}.{}", w.name, w.namespace)
}

/// `2 minutes ago`, `3 hours ago`, `just now`.
pub fn ago_text(now_ms: i64, at_ms: i64) -> String {
    let secs = (now_ms.saturating_sub(at_ms) / 1000).max(0);
    let (n, unit) = match secs {
        0..60 => return "just now".to_owned(),
        60..3_600 => (secs / 60, "minute"),
        3_600..86_400 => (secs / 3_600, "hour"),
        _ => (secs / 86_400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

fn date_of(r: &RevisionChanges) -> String {
    r.last_deployed.as_deref().and_then(|d| d.get(..10)).unwrap_or("date unknown").to_owned()
}

/// What the traffic says of a removed call, as one clause.
fn verdict(r: &Removed, now_ms: i64) -> String {
    let who = &r.call.client.name;
    match (r.last_used_ms, r.declared_again_in) {
        (Some(at), None) => format!("{who} still called it {}: blocked once enforced", ago_text(now_ms, at)),
        (Some(at), Some(again)) => {
            format!("{who} still called it {}; declared again in revision {again}", ago_text(now_ms, at))
        }
        (None, Some(again)) => format!("not observed since; declared again in revision {again}"),
        (None, None) => format!("{who} was not observed calling it in the window"),
    }
}

fn heading(r: &RevisionChanges) -> String {
    let mut facts = vec![date_of(r)];
    if !r.status.is_empty() {
        facts.push(r.status.clone());
    }
    facts.push(format!("chart {}", r.chart));
    format!("revision {} ({})", r.revision, facts.join(", "))
}

/// The text view.
pub fn text(history: &History, changes: &[RevisionChanges], now_ms: i64) -> String {
    let mut out = format!("Helm release {}/{}: {} revisions kept\n", history.namespace, history.name, changes.len());
    for r in changes {
        out.push_str(&heading(r));
        out.push('\n');
        if r.added.is_empty() && r.removed.is_empty() {
            out.push_str("  no change to the declared calls\n");
        }
        for c in &r.added {
            out.push_str(&format!("  added {} to {}\n", target_text(&c.target), client_text(&c.client)));
        }
        for rm in &r.removed {
            out.push_str(&format!(
                "  revision {} ({}) removed {} from {}; {}\n",
                r.revision,
                date_of(r),
                target_text(&rm.call.target),
                client_text(&rm.call.client),
                verdict(rm, now_ms)
            ));
        }
    }
    out
}

/// The Markdown view: one table row per change.
pub fn markdown(history: &History, changes: &[RevisionChanges], now_ms: i64) -> String {
    let mut out = format!(
        "### Helm release `{}/{}`\n\n| Revision | Deployed | Change | Client | Target | Observed |\n|---|---|---|---|---|---|\n",
        history.namespace, history.name
    );
    for r in changes {
        let status = if r.status.is_empty() { String::new() } else { format!(" ({})", r.status) };
        for c in &r.added {
            out.push_str(&format!(
                "| {}{status} | {} | added | `{}` | `{}` | |\n",
                r.revision,
                date_of(r),
                client_text(&c.client),
                target_text(&c.target)
            ));
        }
        for rm in &r.removed {
            let mark = if rm.blocked() { "**blocked once enforced**: " } else { "" };
            out.push_str(&format!(
                "| {}{status} | {} | removed | `{}` | `{}` | {mark}{} |\n",
                r.revision,
                date_of(r),
                client_text(&rm.call.client),
                target_text(&rm.call.target),
                verdict(rm, now_ms)
            ));
        }
    }
    out
}

fn call_json(c: &Call) -> Value {
    json!({"client": {"name": &*c.client.name, "namespace": &*c.client.namespace}, "target": target_text(&c.target)})
}

/// The `mapper.helm-history/v1` document.
pub fn json_value(history: &History, changes: &[RevisionChanges]) -> Value {
    let revisions: Vec<Value> = changes
        .iter()
        .map(|r| {
            let removed: Vec<Value> = r
                .removed
                .iter()
                .map(|rm| {
                    let mut v = call_json(&rm.call);
                    v["last_used"] = rm.last_used_ms.map_or(Value::Null, |ms| timestamp_text(ms, false).into());
                    v["declared_again_in"] = rm.declared_again_in.map_or(Value::Null, Value::from);
                    v["blocked_once_enforced"] = rm.blocked().into();
                    v
                })
                .collect();
            json!({
                "revision": r.revision,
                "status": r.status,
                "last_deployed": r.last_deployed,
                "chart": r.chart,
                "description": r.description,
                "added": r.added.iter().map(call_json).collect::<Vec<_>>(),
                "removed": removed,
            })
        })
        .collect();
    let blocked = changes.iter().flat_map(|r| &r.removed).filter(|r| r.blocked()).count();
    json!({
        "apiVersion": "mapper.helm-history/v1",
        "release": {"name": history.name, "namespace": history.namespace},
        "revisions": revisions,
        "summary": {"revisions": changes.len(), "blocked": blocked},
    })
}

/// Runs `mapper helm`.
pub async fn run(connect: &ConnectOpts, args: &HelmArgs) -> Result<(), Error> {
    match &args.command {
        HelmCommand::History(args) => history(connect, args).await,
    }
}

async fn history(connect: &ConnectOpts, args: &HistoryArgs) -> Result<(), Error> {
    let history = releases::history(connect, &args.release_records, args.namespace.as_slice(), &args.name)
        .await
        .map_err(AuditError::from)?;
    let mut revisions = Vec::new();
    for release in &history.revisions {
        let (docs, warnings) = release.declared().map_err(|e| AuditError::from(ReadError::Parse(Box::new(e))))?;
        for warning in warnings {
            eprintln!("warning: {warning}");
        }
        revisions.push(DeclaredRevision { release, docs });
    }
    let mut clients: BTreeSet<(String, String)> = BTreeSet::new();
    for revision in &revisions {
        for call in calls_of(&revision.docs) {
            clients.insert((call.client.name.to_string(), call.client.namespace.to_string()));
        }
    }
    let now = SystemTime::now();
    let window_start_ms = args.since.map_or(i64::MIN, |since| unix_ms_before(now, since));
    let mut observed = Vec::new();
    if !clients.is_empty() {
        let mut mapper = Mapper::connect(connect).await?;
        let mut request = QueryArgs::default().request(now, false, false);
        request.client_workloads = clients.iter().map(|(name, ns)| format!("{name}.{ns}")).collect();
        let mut edges = EdgeStream::start(&mut mapper, request, Vec::new()).await?;
        while let Some(run) = edges.next_run(|a, b| a.client == b.client).await? {
            observed.extend(run.iter().filter_map(|e| e.to_intents_edge()));
        }
    }
    let changes = changes(&revisions, &observed, window_start_ms);
    let now_ms = unix_ms(now);
    let out = match args.format {
        Format::Text => text(&history, &changes, now_ms),
        Format::Json => format!("{:#}\n", json_value(&history, &changes)),
        Format::Markdown => markdown(&history, &changes, now_ms),
    };
    output::stdout(out.as_bytes())?;
    let blocked = changes.iter().flat_map(|r| &r.removed).filter(|r| r.blocked()).count();
    if args.fail_on == FailOn::Blocked && blocked > 0 {
        return Err(AuditError::Findings {
            command: "helm history",
            findings: format!(
                "{blocked} removed call{} still in use (blocked once enforced)",
                if blocked == 1 { "" } else { "s" }
            ),
            fail_on: "blocked",
        }
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
