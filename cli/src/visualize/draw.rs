//! SVG without graphviz: `layout-rs` places the nodes and routes the edges (a layered layout,
//! left to right), and [`Canvas`] writes what it draws as SVG.
//!
//! `layout-rs` has no clusters, so groups are shown three ways: each group has its own fill
//! colour, every namespaced node names its namespace, and a box is drawn around a group's nodes
//! whenever that box would hold no node of another group and cross no other box (otherwise a
//! legend maps colours to groups instead).

use std::collections::BTreeSet;
use std::fmt::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};

use layout::core::base::Orientation;
use layout::core::color::Color;
use layout::core::format::{ClipHandle, RenderBackend};
use layout::core::geometry::Point;
use layout::core::style::{LineStyleKind, StyleAttr};
use layout::std_shapes::shapes::{Arrow, Element, LineEndKind, ShapeKind};
use layout::topo::layout::VisualGraph;

use super::{Graph, Group};

/// The layout engine gave up on a graph.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot lay out this map as SVG ({reason}): use --format dot and render it with graphviz \
     (`mapper visualize --format dot | dot -Tsvg -o map.svg`)"
)]
pub struct LayoutError {
    /// The engine's complaint: the message of its panic, which is all there is (no error value).
    pub reason: String,
}

const NODE_FONT: usize = 13;
const LABEL_FONT: usize = 11;
const FONT_FAMILY: &str = "DejaVu Sans, Helvetica, Arial, sans-serif";
/// Fills for groups, in group order (repeating).
const PALETTE: [&str; 8] = ["#dbeafe", "#dcfce7", "#fef3c7", "#fce7f3", "#e0e7ff", "#ccfbf1", "#fee2e2", "#f3e8ff"];
const LOOSE_FILL: &str = "#f1f5f9";
const EDGE_COLOR: &str = "#4b5563";
const FAILED_COLOR: &str = "#c0392b";

fn color(web: &str) -> Color {
    Color::from_name(web).unwrap_or_else(|| Color::fast("black"))
}

/// `#rrggbbaa` from layout-rs as an SVG paint (`none` when fully transparent).
fn paint(c: Color) -> String {
    let web = c.to_web_color();
    if web.ends_with("00") { "none".to_owned() } else { web[..7].to_owned() }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Collects layout-rs's drawing calls as SVG elements, tracking the drawn area.
#[derive(Debug, Default)]
struct Canvas {
    body: String,
    /// Edge labels, drawn last so that no edge crosses them.
    labels: String,
    min: Option<(f64, f64)>,
    max: (f64, f64),
    markers: BTreeSet<String>,
    clips: usize,
}

impl Canvas {
    fn grow(&mut self, x: f64, y: f64) {
        let (min_x, min_y) = self.min.unwrap_or((x, y));
        self.min = Some((min_x.min(x), min_y.min(y)));
        self.max = (self.max.0.max(x), self.max.1.max(y));
    }

    fn rect(&mut self, (x, y): (f64, f64), (w, h): (f64, f64), fill: &str, stroke: &str, dashed: bool) {
        let rx = if w.min(h) < 20. { 3 } else { 8 };
        self.grow(x, y);
        self.grow(x + w, y + h);
        let dash = if dashed { " stroke-dasharray=\"4,3\"" } else { "" };
        let _ = writeln!(
            self.body,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" rx=\"{rx}\" fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"1\"{dash}/>"
        );
    }

    fn text(&mut self, (x, y): (f64, f64), text: &str, size: usize, anchor: &str, weight: &str) {
        let _ = writeln!(
            self.body,
            "<text x=\"{x:.1}\" y=\"{y:.1}\" font-size=\"{size}\" text-anchor=\"{anchor}\"{weight}>{}</text>",
            esc(text)
        );
    }
}

impl RenderBackend for Canvas {
    fn draw_rect(&mut self, xy: Point, size: Point, look: &StyleAttr, _: Option<String>, _: Option<ClipHandle>) {
        self.grow(xy.x, xy.y);
        self.grow(xy.x + size.x, xy.y + size.y);
        let fill = look.fill_color.map_or_else(|| "none".to_owned(), paint);
        let _ = writeln!(
            self.body,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" rx=\"{}\" fill=\"{fill}\" stroke=\"{}\" stroke-width=\"{}\"/>",
            xy.x,
            xy.y,
            size.x,
            size.y,
            look.rounded,
            paint(look.line_color),
            look.line_width
        );
    }

    fn draw_line(&mut self, start: Point, stop: Point, look: &StyleAttr, _: Option<String>) {
        self.grow(start.x, start.y);
        self.grow(stop.x, stop.y);
        let _ = writeln!(
            self.body,
            "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{}\" stroke-width=\"{}\"/>",
            start.x,
            start.y,
            stop.x,
            stop.y,
            paint(look.line_color),
            look.line_width
        );
    }

    fn draw_circle(&mut self, xy: Point, size: Point, look: &StyleAttr, _: Option<String>) {
        self.grow(xy.x - size.x / 2., xy.y - size.y / 2.);
        self.grow(xy.x + size.x / 2., xy.y + size.y / 2.);
        let fill = look.fill_color.map_or_else(|| "none".to_owned(), paint);
        let _ = writeln!(
            self.body,
            "<ellipse cx=\"{:.1}\" cy=\"{:.1}\" rx=\"{:.1}\" ry=\"{:.1}\" fill=\"{fill}\" stroke=\"{}\"/>",
            xy.x,
            xy.y,
            size.x / 2.,
            size.y / 2.,
            paint(look.line_color)
        );
    }

    fn draw_text(&mut self, xy: Point, text: &str, look: &StyleAttr) {
        let lines: Vec<&str> = text.lines().collect();
        let line_height = look.font_size as f64 * 1.3;
        let first = xy.y - (lines.len().saturating_sub(1) as f64) * line_height / 2.;
        // Edge labels sit on their edge: a white halo keeps them legible.
        let label = look.font_size == LABEL_FONT;
        let halo = if label { " paint-order=\"stroke\" stroke=\"#ffffff\" stroke-width=\"4\"" } else { "" };
        let mut out = format!("<text font-size=\"{}\" text-anchor=\"middle\"{halo}>", look.font_size);
        for (i, line) in lines.iter().enumerate() {
            let y = first + i as f64 * line_height + look.font_size as f64 * 0.35;
            let weight = if i == 0 && !label { " font-weight=\"bold\"" } else { "" };
            let _ = write!(out, "<tspan x=\"{:.1}\" y=\"{y:.1}\"{weight}>{}</tspan>", xy.x, esc(line));
            let half = line.chars().count() as f64 * look.font_size as f64 * 0.3;
            self.grow(xy.x - half, y - look.font_size as f64);
            self.grow(xy.x + half, y + look.font_size as f64 * 0.3);
        }
        out.push_str("</text>\n");
        if label { self.labels.push_str(&out) } else { self.body.push_str(&out) }
    }

    fn draw_arrow(
        &mut self,
        path: &[(Point, Point)],
        dashed: bool,
        head: (bool, bool),
        look: &StyleAttr,
        _: Option<String>,
        text: &str,
    ) {
        let Some(((start, control), rest)) = path.split_first().map(|(f, r)| (*f, r)) else { return };
        let mut d = format!("M {:.1} {:.1} C {:.1} {:.1}", start.x, start.y, control.x, control.y);
        for (i, (entry, point)) in rest.iter().enumerate() {
            let verb = if i == 0 { "," } else { " S" };
            let _ = write!(d, "{verb} {:.1} {:.1}, {:.1} {:.1}", entry.x, entry.y, point.x, point.y);
        }
        for (a, b) in path {
            self.grow(a.x, a.y);
            self.grow(b.x, b.y);
        }
        let stroke = paint(look.line_color);
        let marker_id = format!("arrow-{}", stroke.trim_start_matches('#'));
        let end = if head.1 { format!(" marker-end=\"url(#{marker_id})\"") } else { String::new() };
        let begin = if head.0 { format!(" marker-start=\"url(#{marker_id})\"") } else { String::new() };
        self.markers.insert(stroke.clone());
        let dash = if dashed { " stroke-dasharray=\"6,4\"" } else { "" };
        let _ = writeln!(
            self.body,
            "<path d=\"{d}\" fill=\"none\" stroke=\"{stroke}\" stroke-width=\"{}\"{dash}{begin}{end}/>",
            look.line_width
        );
        if !text.is_empty()
            && let Some((last, _)) = path.last()
        {
            let mid = Point::new((start.x + last.x) / 2., (start.y + last.y) / 2.);
            self.draw_text(mid, text, look);
        }
    }

    fn create_clip(&mut self, _: Point, _: Point, _: usize) -> ClipHandle {
        // Only records use clips; the map has none.
        self.clips += 1;
        self.clips
    }
}

fn node_lines(graph: &Graph, i: usize) -> String {
    let node = &graph.nodes[i];
    let mut lines = node.lines.clone();
    if let (Some(Group::Namespace(ns)), Some(last)) = (&node.group, lines.last_mut()) {
        last.push_str(&format!(" · {ns}"));
    }
    lines.join("\n")
}

fn text_size(text: &str, font: usize) -> Point {
    let width = text.lines().map(|l| l.chars().count()).max().unwrap_or(1) as f64;
    let lines = text.lines().count().max(1) as f64;
    Point::new(width * font as f64 * 0.62 + 28., lines * font as f64 * 1.3 + 18.)
}

/// Lays the graph out; returns the canvas and each node's box (top-left, bottom-right).
fn lay_out(graph: &Graph) -> Result<(Canvas, Vec<(Point, Point)>), LayoutError> {
    let (groups, _) = graph.groups();
    let fill_of = |i: usize| match &graph.nodes[i].group {
        Some(group) => {
            let g = groups.iter().position(|(candidate, _)| *candidate == group).unwrap_or(0);
            PALETTE[g % PALETTE.len()]
        }
        None => LOOSE_FILL,
    };
    let mut vg = VisualGraph::new(Orientation::LeftToRight);
    let handles: Vec<_> = (0..graph.nodes.len())
        .map(|i| {
            let text = node_lines(graph, i);
            let look = StyleAttr::new(color("#4b5563"), 1, Some(color(fill_of(i))), 6, NODE_FONT);
            let size = text_size(&text, NODE_FONT);
            vg.add_node(Element::create(ShapeKind::new_box(&text), look, Orientation::LeftToRight, size))
        })
        .collect();
    for link in &graph.links {
        let (style, stroke) =
            if link.failed_only { (LineStyleKind::Dashed, FAILED_COLOR) } else { (LineStyleKind::Normal, EDGE_COLOR) };
        let look = StyleAttr::new(color(stroke), 1, None, 0, LABEL_FONT);
        let arrow = Arrow::new(LineEndKind::None, LineEndKind::Arrow, style, &link.label, &look, &None, &None);
        vg.add_edge(arrow, handles[link.from], handles[link.to]);
    }
    let mut canvas = Canvas::default();
    // layout-rs asserts on graphs it cannot handle; turn that into an error, quietly.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let laid_out = catch_unwind(AssertUnwindSafe(|| {
        vg.do_it(false, false, false, &mut canvas);
        handles.iter().map(|&h| vg.pos(h).bbox(false)).collect::<Vec<_>>()
    }));
    std::panic::set_hook(hook);
    let boxes = laid_out.map_err(|panic| LayoutError {
        reason: panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "internal error".to_owned()),
    })?;
    Ok((canvas, boxes))
}

fn overlaps(a: (Point, Point), b: (Point, Point)) -> bool {
    a.0.x < b.1.x && b.0.x < a.1.x && a.0.y < b.1.y && b.0.y < a.1.y
}

/// The box around each group's nodes, or `None` when any box would hold another group's node
/// or cross another box.
fn group_boxes(graph: &Graph, boxes: &[(Point, Point)]) -> Option<Vec<(String, (Point, Point))>> {
    const PAD: f64 = 12.;
    const TITLE: f64 = 20.;
    let (groups, _) = graph.groups();
    let mut out = Vec::new();
    for (group, members) in &groups {
        let (mut lo, mut hi) = (Point::new(f64::MAX, f64::MAX), Point::new(f64::MIN, f64::MIN));
        for &i in members {
            lo = Point::new(lo.x.min(boxes[i].0.x), lo.y.min(boxes[i].0.y));
            hi = Point::new(hi.x.max(boxes[i].1.x), hi.y.max(boxes[i].1.y));
        }
        let area = (Point::new(lo.x - PAD, lo.y - PAD - TITLE), Point::new(hi.x + PAD, hi.y + PAD));
        let foreign = (0..graph.nodes.len()).filter(|i| !members.contains(i)).any(|i| overlaps(area, boxes[i]));
        if foreign || out.iter().any(|(_, other)| overlaps(area, *other)) {
            return None;
        }
        out.push((group.title(), area));
    }
    Some(out)
}

/// The map as a standalone SVG document.
pub fn svg(graph: &Graph) -> Result<String, LayoutError> {
    let canvas = if graph.nodes.is_empty() {
        let mut canvas = Canvas::default();
        canvas.text((10., 24.), "No connections found.", NODE_FONT, "start", "");
        canvas.grow(0., 0.);
        canvas.grow(200., 32.);
        canvas
    } else {
        let (mut canvas, boxes) = lay_out(graph)?;
        let nodes = std::mem::take(&mut canvas.body);
        match group_boxes(graph, &boxes) {
            Some(areas) => {
                for (title, (lo, hi)) in areas {
                    canvas.rect((lo.x, lo.y), (hi.x - lo.x, hi.y - lo.y), "#fafafa", "#9ca3af", true);
                    canvas.text((lo.x + 8., lo.y + 15.), &title, LABEL_FONT, "start", " font-weight=\"bold\"");
                }
            }
            None => {
                let (groups, _) = graph.groups();
                let mut y = canvas.max.1 + 20.;
                let x = canvas.min.map_or(0., |m| m.0);
                for (g, (group, _)) in groups.iter().enumerate() {
                    canvas.rect((x, y), (14., 14.), PALETTE[g % PALETTE.len()], "#4b5563", false);
                    canvas.text((x + 20., y + 11.), &group.title(), LABEL_FONT, "start", "");
                    canvas.grow(x + 20. + group.title().chars().count() as f64 * 7., y + 14.);
                    y += 20.;
                }
            }
        }
        canvas.body.push_str(&nodes);
        let labels = std::mem::take(&mut canvas.labels);
        canvas.body.push_str(&labels);
        canvas
    };
    let (min_x, min_y) = canvas.min.unwrap_or((0., 0.));
    let (x, y) = (min_x - 10., min_y - 10.);
    let (w, h) = (canvas.max.0 - x + 10., canvas.max.1 - y + 10.);
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w:.0}\" height=\"{h:.0}\" \
         viewBox=\"{x:.1} {y:.1} {w:.1} {h:.1}\" font-family=\"{FONT_FAMILY}\">\n<defs>\n"
    );
    for stroke in &canvas.markers {
        let _ = writeln!(
            out,
            "<marker id=\"arrow-{}\" markerWidth=\"10\" markerHeight=\"7\" refX=\"10\" refY=\"3.5\" orient=\"auto\">\
             <polygon points=\"0 0, 10 3.5, 0 7\" fill=\"{stroke}\"/></marker>",
            stroke.trim_start_matches('#')
        );
    }
    let _ =
        writeln!(out, "</defs>\n<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"#ffffff\"/>");
    out.push_str(&canvas.body);
    out.push_str("</svg>\n");
    Ok(out)
}
