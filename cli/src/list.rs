//! `mapper list`: per client, the servers it calls and the ports seen — as text in the Otterize
//! CLI's layout (`X in namespace N calls:` / `  - S in namespace M`), or as JSON.

use std::collections::BTreeMap;

use clap::{Args, ValueEnum};
use mapper_intents::Port;
use serde::Serialize;

use crate::cli::Error;
use crate::connect::{ConnectOpts, Mapper};
use crate::edges::{ObservedEdge, Peer, PeerView, QueryArgs, ports_text};
use crate::output;

/// Text or JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One block per client.
    Text,
    /// An array of `{client, calls}`.
    Json,
}

/// `mapper list`.
#[derive(Debug, Clone, Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  mapper list -n team1\n",
    "  mapper list --server ledger.team3 --format json | jq '.[].client.name'\n\n",
    crate::exit_status_help!()
))]
pub struct ListArgs {
    /// Which edges.
    #[command(flatten)]
    pub query: QueryArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Also show traffic with an end mapper-server could not attribute (node addresses,
    /// addresses of pods it never saw).
    #[arg(long)]
    pub include_unresolved: bool,
    /// Also show traffic of node processes that are no pod (the kubelet's probes, node
    /// daemons), as `node NAME`. Never exported as ClientIntents.
    #[arg(long)]
    pub include_nodes: bool,
}

/// One server a client calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Call {
    /// The server.
    pub server: PeerView,
    /// Ports seen, sorted.
    pub ports: Vec<Port>,
    /// Connections established.
    pub established: u64,
    /// Connection attempts that failed.
    pub failed: u64,
    /// First seen (RFC 3339).
    pub first_seen: String,
    /// Last seen (RFC 3339).
    pub last_seen: String,
    /// Seen by the client's node agent.
    pub seen_by_client: bool,
    /// Seen by the server's node agent.
    pub seen_by_server: bool,
}

/// A client and what it calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientCalls {
    /// The client.
    pub client: PeerView,
    /// Its calls, sorted by server.
    pub calls: Vec<Call>,
}

fn rfc3339(ms: i64) -> String {
    crate::edges::timestamp_text(ms, true)
}

/// Groups edges by client; clients and calls sorted by name, then namespace.
pub fn group(edges: &[ObservedEdge]) -> Vec<ClientCalls> {
    let mut by_client: BTreeMap<&Peer, Vec<Call>> = BTreeMap::new();
    for edge in edges {
        by_client.entry(&edge.client).or_default().push(Call {
            server: PeerView { peer: edge.server.clone(), dns_names: edge.dns_names.clone() },
            ports: edge.ports.clone(),
            established: edge.established,
            failed: edge.failed,
            first_seen: rfc3339(edge.first_seen_ms),
            last_seen: rfc3339(edge.last_seen_ms),
            seen_by_client: edge.seen_by_client,
            seen_by_server: edge.seen_by_server,
        });
    }
    by_client
        .into_iter()
        .map(|(client, mut calls)| {
            calls.sort_by(|a, b| (&a.server, &a.ports).cmp(&(&b.server, &b.ports)));
            ClientCalls { client: PeerView::of(client), calls }
        })
        .collect()
}

/// The text layout.
pub fn render_text(clients: &[ClientCalls]) -> String {
    let mut out = String::new();
    for client in clients {
        out.push_str(&format!("{} calls:\n", client.client));
        for call in &client.calls {
            let mut notes = Vec::new();
            if !call.ports.is_empty() {
                notes.push(ports_text(&call.ports));
            }
            if call.established == 0 && call.failed > 0 {
                notes.push(format!("all {} attempts failed", call.failed));
            }
            let notes = if notes.is_empty() { String::new() } else { format!(" ({})", notes.join("; ")) };
            out.push_str(&format!("  - {}{notes}\n", call.server));
        }
    }
    out
}

/// The JSON layout: pretty-printed, ending in a newline.
pub fn render_json(clients: &[ClientCalls]) -> String {
    // Plain strings, numbers and enums with string tags: serialization cannot fail.
    let mut text = serde_json::to_string_pretty(clients).unwrap_or_else(|_| "[]".to_owned());
    text.push('\n');
    text
}

/// Keeps edges whose ends are both attributed (a node process counts as attributed) unless
/// `include_unresolved`.
pub fn keep(edges: Vec<ObservedEdge>, include_unresolved: bool) -> Vec<ObservedEdge> {
    if include_unresolved {
        return edges;
    }
    edges
        .into_iter()
        .filter(|e| matches!(e.client, Peer::Workload { .. } | Peer::Node { .. }) && e.server.is_resolved())
        .collect()
}

/// One client's calls as an element of the JSON array [`render_json`] writes (indented the same).
fn json_element(client: &ClientCalls) -> String {
    // As in render_json: serialization cannot fail.
    let text = serde_json::to_string_pretty(client).unwrap_or_default();
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for line in text.lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out.pop();
    out
}

/// Runs `mapper list`: each client's block is written as soon as its edges have arrived (the
/// server sends them sorted by client), so memory holds one client's edges, not the map.
pub async fn run(connect: &ConnectOpts, args: &ListArgs) -> Result<(), Error> {
    let mut mapper = Mapper::connect(connect).await?;
    let mut edges = args.query.stream(&mut mapper, true, args.include_nodes).await?;
    let mut out = output::Sink::stdout();
    let mut clients = 0usize;
    while let Some(run) = edges.next_run(|a, b| a.client == b.client).await? {
        for client in group(&keep(run, args.include_unresolved)) {
            let text = match args.format {
                Format::Text => render_text(std::slice::from_ref(&client)),
                Format::Json => format!("{}{}", if clients == 0 { "[\n" } else { ",\n" }, json_element(&client)),
            };
            out.write(text.as_bytes())?;
            clients += 1;
        }
        if out.is_closed() {
            break;
        }
    }
    match args.format {
        Format::Text if clients == 0 => eprintln!("No connections found."),
        Format::Text => {}
        Format::Json => out.write(if clients == 0 { b"[]\n" } else { b"\n]\n" })?,
    }
    out.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use mapper_intents::Protocol;
    use mapper_model::UnresolvedReason;

    use super::*;

    fn workload(name: &str, namespace: &str, kind: &str) -> Peer {
        Peer::Workload(mapper_intents::Workload::new(name, namespace, kind))
    }

    fn edge(client: Peer, server: Peer, ports: &[u16], established: u64, failed: u64) -> ObservedEdge {
        ObservedEdge {
            client,
            server,
            dns_names: Vec::new(),
            ports: ports.iter().map(|&port| Port { port, protocol: Protocol::Tcp }).collect(),
            established,
            failed,
            first_seen_ms: 1_800_000_000_000,
            last_seen_ms: 1_800_000_060_000,
            seen_by_client: true,
            seen_by_server: false,
            via_services: Vec::new(),
        }
    }

    #[test]
    fn text_has_one_block_per_client_with_ports_and_failures() {
        let api = workload("api", "team1", "Deployment");
        let edges = vec![
            edge(api.clone(), workload("ledger", "team3", "Deployment"), &[8080, 8443], 5, 0),
            edge(api.clone(), Peer::Service { name: "legacy-db".into(), namespace: "team1".into() }, &[5432], 0, 3),
            edge(workload("report", "team1", "CronJob"), api, &[8080], 1, 0),
        ];
        assert_eq!(
            render_text(&group(&edges)),
            "api in namespace team1 calls:\n\
             \x20 - ledger in namespace team3 (8080/TCP, 8443/TCP)\n\
             \x20 - Service legacy-db in namespace team1 (5432/TCP; all 3 attempts failed)\n\
             report in namespace team1 calls:\n\
             \x20 - api in namespace team1 (8080/TCP)\n"
        );
    }

    #[test]
    fn unresolved_ends_are_kept_only_on_request() {
        let ip = "10.0.0.1".parse().unwrap_or_else(|e| panic!("{e}"));
        let edges = vec![
            edge(workload("a", "n", "Pod"), Peer::Unresolved { ip, reason: UnresolvedReason::NodeIp }, &[22], 1, 0),
            edge(Peer::Unresolved { ip, reason: UnresolvedReason::NodeIp }, workload("a", "n", "Pod"), &[80], 1, 0),
        ];
        assert!(keep(edges.clone(), false).is_empty());
        assert_eq!(keep(edges, true).len(), 2);
    }

    #[test]
    fn json_written_a_client_at_a_time_is_render_json() {
        let edges = vec![
            edge(workload("a", "n", "Deployment"), Peer::ApiServer, &[443], 2, 0),
            edge(workload("b", "n", "Deployment"), workload("a", "n", "Deployment"), &[80], 1, 0),
        ];
        let clients = group(&edges);
        let elements: Vec<String> = clients.iter().map(json_element).collect();
        assert_eq!(format!("[\n{}\n]\n", elements.join(",\n")), render_json(&clients));
    }

    #[test]
    fn timestamps_rfc3339_cannot_write_are_printed_as_numbers() {
        let mut e = edge(workload("a", "n", "Deployment"), Peer::ApiServer, &[443], 2, 0);
        for ms in [i64::MAX, 253_402_300_800_000, -1, i64::MIN] {
            e.first_seen_ms = ms;
            e.last_seen_ms = ms;
            let clients = group(std::slice::from_ref(&e));
            assert_eq!(clients[0].calls[0].last_seen, format!("{ms} ms since the Unix epoch"));
            let _ = render_json(&clients);
            let _ = render_text(&clients);
        }
        e.last_seen_ms = 253_402_300_799_999;
        assert_eq!(group(std::slice::from_ref(&e))[0].calls[0].last_seen, "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn json_carries_peers_ports_and_times() {
        let edges = vec![edge(workload("a", "n", "Deployment"), Peer::ApiServer, &[443], 2, 0)];
        let json: serde_json::Value =
            serde_json::from_str(&render_json(&group(&edges))).unwrap_or_else(|e| panic!("not JSON: {e}"));
        assert_eq!(json[0]["client"]["type"], "workload");
        assert_eq!(json[0]["calls"][0]["server"]["type"], "api_server");
        assert_eq!(json[0]["calls"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(json[0]["calls"][0]["first_seen"], "2027-01-15T08:00:00.000Z");
    }
}
