//! `mapper list`: per client, the servers it calls and the ports seen — as text in the Otterize
//! CLI's layout (`X in namespace N calls:` / `  - S in namespace M`), or as JSON; with
//! `--by-release`, the clients grouped by the Helm release they belong to.

use std::collections::BTreeMap;

use clap::{Args, ValueEnum};
use mapper_intents::Port;
use serde::Serialize;

use crate::cli::Error;
use crate::connect::{ConnectOpts, Mapper};
use crate::edges::{ObservedEdge, Peer, PeerView, QueryArgs, Release, ports_text};
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
    "  mapper list --server ledger.team3 --format json | jq '.[].client.name'\n",
    "  mapper list --by-release -n team1\n\n",
    "--by-release groups the clients by the Helm release their workload belongs to (the\n",
    "meta.helm.sh/release-name and release-namespace annotations of the top object of its owner\n",
    "chain, as mapper-server's cluster state has them now): one block per release, sorted by name\n",
    "and namespace, then the clients in no release (`no release:`). As JSON: an array of\n",
    "{\"release\": {\"name\", \"namespace\"} or null, \"clients\": [...]}.\n\n",
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
    /// Group the clients by the Helm release they belong to, clients in no release last (see
    /// below). Holds every client's calls until the end, not one client's at a time.
    #[arg(long)]
    pub by_release: bool,
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
    let mut by_client: BTreeMap<&Peer, (Option<&Release>, Vec<Call>)> = BTreeMap::new();
    for edge in edges {
        let (release, calls) = by_client.entry(&edge.client).or_default();
        *release = release.or(edge.client_release.as_ref());
        calls.push(Call {
            server: PeerView {
                peer: edge.server.clone(),
                dns_names: edge.dns_names.clone(),
                release: edge.server_release.clone(),
            },
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
        .map(|(client, (release, mut calls))| {
            calls.sort_by(|a, b| (&a.server, &a.ports).cmp(&(&b.server, &b.ports)));
            ClientCalls { client: PeerView { release: release.cloned(), ..PeerView::of(client) }, calls }
        })
        .collect()
}

/// The clients of one Helm release, or of none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseClients {
    /// The release; `None` for the clients in no release.
    pub release: Option<Release>,
    /// Its clients, in the order they came.
    pub clients: Vec<ClientCalls>,
}

/// Groups clients by release: releases sorted by (name, namespace), the clients in no release
/// last; inside a group, clients keep their order.
pub fn by_release(clients: Vec<ClientCalls>) -> Vec<ReleaseClients> {
    let mut groups: BTreeMap<(bool, Option<Release>), Vec<ClientCalls>> = BTreeMap::new();
    for client in clients {
        let release = client.client.release.clone();
        groups.entry((release.is_none(), release)).or_default().push(client);
    }
    groups.into_iter().map(|((_, release), clients)| ReleaseClients { release, clients }).collect()
}

/// The text layout of [`by_release`]: a heading per release (`release payments in namespace
/// platform:`, `no release:`) and its clients' blocks indented under it, a blank line between.
pub fn render_releases_text(groups: &[ReleaseClients]) -> String {
    let mut out = String::new();
    for (i, group) in groups.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        match &group.release {
            Some(r) => out.push_str(&format!("release {} in namespace {}:\n", r.name, r.namespace)),
            None => out.push_str("no release:\n"),
        }
        for line in render_text(&group.clients).lines() {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The JSON layout of [`by_release`]: pretty-printed, ending in a newline.
pub fn render_releases_json(groups: &[ReleaseClients]) -> String {
    // As in render_json: serialization cannot fail.
    let mut text = serde_json::to_string_pretty(groups).unwrap_or_else(|_| "[]".to_owned());
    text.push('\n');
    text
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
    if args.by_release {
        let mut clients = Vec::new();
        while let Some(run) = edges.next_run(args.query.run_grouping()).await? {
            clients.extend(group(&keep(args.query.view(run), args.include_unresolved)));
        }
        if clients.is_empty() && args.format == Format::Text {
            eprintln!("No connections found.");
        }
        let groups = by_release(clients);
        let text = match args.format {
            Format::Text => render_releases_text(&groups),
            Format::Json => render_releases_json(&groups),
        };
        out.write(text.as_bytes())?;
        out.finish()?;
        return Ok(());
    }
    let mut clients = 0usize;
    while let Some(run) = edges.next_run(args.query.run_grouping()).await? {
        for client in group(&keep(args.query.view(run), args.include_unresolved)) {
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
            client_release: None,
            server_release: None,
            client_labels: Vec::new(),
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
    fn clients_group_by_release_with_the_clients_in_none_last() {
        let in_release = |e: ObservedEdge, r: Option<(&str, &str)>| ObservedEdge {
            client_release: r.map(|(n, ns)| Release::new(n, ns)),
            ..e
        };
        let ledger = workload("ledger", "team3", "StatefulSet");
        let edges = vec![
            in_release(
                edge(workload("api", "shop", "Deployment"), ledger.clone(), &[8080], 3, 0),
                Some(("shop", "platform")),
            ),
            in_release(
                edge(workload("cron", "shop", "CronJob"), ledger.clone(), &[8080], 1, 0),
                Some(("batch", "platform")),
            ),
            in_release(edge(workload("debug", "shop", "Pod"), ledger.clone(), &[8080], 1, 0), None),
            in_release(edge(workload("web", "shop", "Deployment"), ledger, &[8080], 2, 0), Some(("shop", "platform"))),
        ];
        let groups = by_release(group(&edges));
        assert_eq!(
            render_releases_text(&groups),
            "release batch in namespace platform:\n\
             \x20 cron in namespace shop calls:\n\
             \x20   - ledger in namespace team3 (8080/TCP)\n\
             \n\
             release shop in namespace platform:\n\
             \x20 api in namespace shop calls:\n\
             \x20   - ledger in namespace team3 (8080/TCP)\n\
             \x20 web in namespace shop calls:\n\
             \x20   - ledger in namespace team3 (8080/TCP)\n\
             \n\
             no release:\n\
             \x20 debug in namespace shop calls:\n\
             \x20   - ledger in namespace team3 (8080/TCP)\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render_releases_json(&groups)).unwrap_or_else(|e| panic!("not JSON: {e}"));
        assert_eq!(json[1]["release"], serde_json::json!({"name": "shop", "namespace": "platform"}));
        assert_eq!(json[1]["clients"][1]["client"]["name"], "web");
        assert_eq!(json[1]["clients"][1]["client"]["release"]["name"], "shop", "the client names its release too");
        assert_eq!(json[2]["release"], serde_json::Value::Null);
        assert!(json[2]["clients"][0]["client"].get("release").is_none(), "no release, no field");
        assert_eq!(json.as_array().map(Vec::len), Some(3));
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
