//! A Mermaid flowchart: one `subgraph` per group.

use std::fmt::Write;

use super::Graph;

/// Text inside a Mermaid `"…"` label: quotes and angle brackets as entities.
fn text(s: &str) -> String {
    s.replace('"', "#quot;").replace('<', "#lt;").replace('>', "#gt;")
}

/// The graph as a Mermaid flowchart.
pub fn render(graph: &Graph) -> String {
    let mut out = String::from("flowchart LR\n");
    let (groups, loose) = graph.groups();
    let node = |out: &mut String, indent: &str, i: usize| {
        let lines: Vec<String> = graph.nodes[i].lines.iter().map(|l| text(l)).collect();
        let _ = writeln!(out, "{indent}n{i}[\"{}\"]", lines.join("<br/>"));
    };
    for (g, (group, members)) in groups.iter().enumerate() {
        let _ = writeln!(out, "  subgraph g{g}[\"{}\"]", text(&group.title()));
        for &i in members {
            node(&mut out, "    ", i);
        }
        out.push_str("  end\n");
    }
    for &i in &loose {
        node(&mut out, "  ", i);
    }
    let mut failed = Vec::new();
    for (l, link) in graph.links.iter().enumerate() {
        let arrow = if link.failed_only { "-.->" } else { "-->" };
        if link.failed_only {
            failed.push(l.to_string());
        }
        if link.label.is_empty() {
            let _ = writeln!(out, "  n{} {arrow} n{}", link.from, link.to);
        } else {
            let _ = writeln!(out, "  n{} {arrow}|\"{}\"| n{}", link.from, text(&link.label), link.to);
        }
    }
    if !failed.is_empty() {
        let _ = writeln!(out, "  linkStyle {} stroke:#c0392b", failed.join(","));
    }
    out
}
