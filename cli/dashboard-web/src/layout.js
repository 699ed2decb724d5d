// The layout of large maps, where a force-directed layout of thousands of nodes would take
// seconds and still pile namespaces onto each other: each group (namespace, Helm release,
// outside addresses …) is a tile; its workloads sit in a grid inside it, in breadth-first
// order of the calls between them (callers next to what they call); tiles are packed in rows,
// each next to the tiles it exchanges the most calls with. Linear in nodes and edges.

const GAP_X = 120;
const GAP_Y = 64;
const PAD = 36;
const SPACE = 60;

// Breadth-first order of `leaves` over the calls among them, highest degree first.
function bfsOrder(leaves) {
  const inSet = new Set(leaves.map((n) => n.id()));
  const degree = new Map(leaves.map((n) => [n.id(), n.degree(false)]));
  const byDegree = leaves.toArray().sort((a, b) => degree.get(b.id()) - degree.get(a.id()) || (a.id() < b.id() ? -1 : 1));
  const seen = new Set();
  const out = [];
  for (const start of byDegree) {
    if (seen.has(start.id())) continue;
    seen.add(start.id());
    const queue = [start];
    while (queue.length) {
      const n = queue.shift();
      out.push(n);
      const next = n.neighborhood('node').filter((m) => inSet.has(m.id()) && !seen.has(m.id())).toArray()
        .sort((a, b) => degree.get(b.id()) - degree.get(a.id()));
      for (const m of next) { seen.add(m.id()); queue.push(m); }
    }
  }
  return out;
}

// Tiles in the order that puts each next to the one it exchanges the most calls with.
function orderTiles(groups) {
  if (groups.length < 3) return groups;
  const of = new Map();
  groups.forEach((g, i) => g.descendants().forEach((d) => of.set(d.id(), i)));
  const weight = groups.map(() => new Map());
  groups.forEach((g, i) => g.descendants().connectedEdges().forEach((e) => {
    const a = of.get(e.source().id()); const b = of.get(e.target().id());
    if (a === undefined || b === undefined || a === b) return;
    weight[a].set(b, (weight[a].get(b) || 0) + 1);
    weight[b].set(a, (weight[b].get(a) || 0) + 1);
  }));
  const size = groups.map((g) => g.descendants().length);
  const left = new Set(groups.map((_, i) => i));
  const order = [];
  let current = [...left].sort((a, b) => size[b] - size[a])[0];
  while (left.size) {
    left.delete(current);
    order.push(current);
    let best = null; let bestW = -1;
    for (const i of left) {
      const w = weight[current].get(i) || 0;
      if (w > bestW || (w === bestW && size[i] > size[best])) { best = i; bestW = w; }
    }
    current = best;
  }
  return order.map((i) => groups[i]);
}

function shelf(items) {
  const area = items.reduce((a, it) => a + (it.w + SPACE) * (it.h + SPACE), 0);
  const maxW = Math.max(Math.sqrt(area) * 1.6, ...items.map((it) => it.w));
  let x = 0; let y = 0; let rowH = 0; let width = 0;
  const placed = [];
  for (const it of items) {
    if (x > 0 && x + it.w > maxW) { y += rowH + SPACE; x = 0; rowH = 0; }
    placed.push([it, x, y]);
    x += it.w + SPACE;
    rowH = Math.max(rowH, it.h);
    width = Math.max(width, x - SPACE);
  }
  return { w: width, h: y + rowH, place: (ox, oy) => placed.forEach(([it, px, py]) => it.place(ox + px, oy + py)) };
}

function box(children) {
  const leaves = children.filter((n) => !n.isParent());
  const groups = children.filter((n) => n.isParent());
  const items = [];
  if (leaves.nonempty()) {
    const ordered = bfsOrder(leaves);
    const cols = Math.max(1, Math.ceil(Math.sqrt(ordered.length * 0.6)));
    const rows = Math.ceil(ordered.length / cols);
    items.push({
      w: cols * GAP_X,
      h: rows * GAP_Y,
      place: (x, y) => ordered.forEach((n, i) => n.position({ x: x + (i % cols) * GAP_X + GAP_X / 2, y: y + Math.floor(i / cols) * GAP_Y + GAP_Y / 2 })),
    });
  }
  for (const g of orderTiles(groups.toArray())) {
    const inner = box(g.children());
    items.push({ w: inner.w + 2 * PAD, h: inner.h + 2 * PAD, place: (x, y) => inner.place(x + PAD, y + PAD) });
  }
  return shelf(items);
}

export function tileLayout(cy, parts = {}) {
  let t = performance.now();
  const roots = cy.nodes().filter((n) => n.isOrphan());
  const tiles = box(roots);
  parts.plan = performance.now() - t;
  t = performance.now();
  cy.batch(() => tiles.place(0, 0));
  parts.place = performance.now() - t;
  // The extent is known: no bounding-box pass over every element (seconds at 10 000 calls).
  t = performance.now();
  const pad = 30;
  const zoom = Math.min((cy.width() - 2 * pad) / Math.max(tiles.w, 1), (cy.height() - 2 * pad) / Math.max(tiles.h, 1), 1);
  cy.viewport({ zoom, pan: { x: (cy.width() - tiles.w * zoom) / 2, y: (cy.height() - tiles.h * zoom) / 2 } });
  parts.fit = performance.now() - t;
}
