//! The views of an audit report: the table (coloured on a terminal), the Markdown of a
//! pull-request comment and the `mapper.audit/v1` JSON document, and the texts they share.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use mapper_intents::audit::{AuditReport, AuditTotals, ClientAudit};
use mapper_intents::{Edge, Target, Workload};
use serde_json::{Value, json};

use crate::edges::{time_of, unix_ms_before};

pub(super) fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// What failed an audit: the ClientIntents' findings (when any were declared) and the calls
/// the declared NetworkPolicies deny (when any were declared).
pub(super) fn findings_text(t: &AuditTotals, intents: bool, denied: Option<usize>) -> String {
    let mut parts = Vec::new();
    if intents {
        parts.push(format!(
            "{} (blocked once enforced), {} declared but not observed",
            plural(t.missing, "missing call", "missing calls"),
            plural(t.unused, "target", "targets")
        ));
    }
    if let Some(denied) = denied {
        parts.push(format!("{} the NetworkPolicies deny", plural(denied, "observed call", "observed calls")));
    }
    parts.join(", ")
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

/// A report with what the views show around it.
pub(super) struct View<'a> {
    /// The diff.
    pub(super) report: &'a AuditReport,
    /// Per client, the addresses mapper-server could not attribute.
    pub(super) unattributed: &'a BTreeMap<Workload, Vec<String>>,
    /// `--since`.
    pub(super) since: Option<Duration>,
    /// Now, for the JSON's `generated`.
    pub(super) now_ms: i64,
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

    pub(super) fn table(&self, color: bool) -> String {
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

    pub(super) fn markdown(&self) -> String {
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

    /// The `mapper.audit/v1` document as a value (see [`View::json_text`] for the output).
    pub(super) fn json(&self) -> Value {
        let clients: Vec<Value> = self.report.clients.iter().map(|c| self.client_json(c)).collect();
        let mut doc = self.json_without_clients();
        doc["clients"] = Value::Array(clients);
        doc
    }

    /// The document as `{:#}` prints [`View::json`], ending in a newline, written a client at a
    /// time: only one client's value exists at once, not the whole document's.
    pub(super) fn json_text(&self) -> String {
        let mut doc = self.json_without_clients();
        doc["clients"] = Value::Array(Vec::new());
        let frame = format!("{doc:#}\n");
        // Keys are sorted, so the document is the frame with its empty list filled in.
        let Some((head, tail)) = frame.split_once("\n  \"clients\": [],\n") else {
            return format!("{:#}\n", self.json());
        };
        if self.report.clients.is_empty() {
            return frame;
        }
        let mut out = String::with_capacity(frame.len() + self.report.clients.len() * 1024);
        out.push_str(head);
        out.push_str("\n  \"clients\": [\n");
        for (i, c) in self.report.clients.iter().enumerate() {
            if i > 0 {
                out.push_str(",\n");
            }
            for (j, line) in format!("{:#}", self.client_json(c)).lines().enumerate() {
                if j > 0 {
                    out.push('\n');
                }
                out.push_str("    ");
                out.push_str(line);
            }
        }
        out.push_str("\n  ],\n");
        out.push_str(tail);
        out
    }

    /// Every field of the document but `clients`.
    fn json_without_clients(&self) -> Value {
        let t = self.report.totals();
        json!({
            "apiVersion": "mapper.audit/v1",
            "generated": rfc3339(self.now_ms),
            "window": {"since": self.since.map(|d| rfc3339(unix_ms_before(time_of(self.now_ms), d)))},
            "summary": {"clients": t.clients, "missing": t.missing, "unused": t.unused, "covered": t.covered},
        })
    }

    /// One element of the document's `clients`.
    fn client_json(&self, c: &ClientAudit) -> Value {
        let port_list = |e: &Edge| json!(e.ports);
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
    }
}
