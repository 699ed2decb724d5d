//! Graphviz DOT: one `cluster_` subgraph per group, so `dot` draws a box around each namespace.

use std::fmt::Write;

use super::Graph;

/// A DOT string literal.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A node's label: its lines joined with DOT's `\n`.
fn label(lines: &[String]) -> String {
    let escaped: Vec<String> = lines.iter().map(|l| l.replace('\\', "\\\\").replace('"', "\\\"")).collect();
    format!("\"{}\"", escaped.join("\\n"))
}

/// The graph as DOT.
pub fn render(graph: &Graph) -> String {
    let mut out = String::from(
        "digraph mapper {\n  rankdir=LR;\n  fontname=\"Helvetica\";\n  \
         node [shape=box, style=\"rounded,filled\", fillcolor=\"#eef2f7\", fontname=\"Helvetica\"];\n  \
         edge [fontname=\"Helvetica\", fontsize=10, color=\"#555555\"];\n",
    );
    let (groups, loose) = graph.groups();
    let node = |out: &mut String, indent: &str, i: usize| {
        let _ = writeln!(out, "{indent}n{i} [label={}];", label(&graph.nodes[i].lines));
    };
    for (g, (group, members)) in groups.iter().enumerate() {
        let _ = writeln!(out, "  subgraph cluster_{g} {{\n    label={};\n    style=rounded;", quote(&group.title()));
        for &i in members {
            node(&mut out, "    ", i);
        }
        out.push_str("  }\n");
    }
    for &i in &loose {
        node(&mut out, "  ", i);
    }
    for link in &graph.links {
        let style = if link.failed_only { ", style=dashed, color=\"#c0392b\"" } else { "" };
        let _ = writeln!(out, "  n{} -> n{} [label={}{style}];", link.from, link.to, quote(&link.label));
    }
    out.push_str("}\n");
    out
}
