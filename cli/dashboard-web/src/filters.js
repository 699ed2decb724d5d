// The filters: namespaces, one workload and its peers, protocols, the time window (calls last
// seen before it are hidden, as `--since` leaves them out), failed-only calls.

const $ = (id) => document.getElementById(id);

export function filterState(windowStart) {
  const hiddenNs = new Set([...document.querySelectorAll('#ns-list input[data-ns]')].filter((i) => !i.checked).map((i) => i.dataset.ns));
  const protocols = new Set();
  if ($('proto-tcp').checked) protocols.add('TCP');
  if ($('proto-udp').checked) protocols.add('UDP');
  return {
    hiddenNs,
    protocols,
    windowStart,
    showFailed: $('show-failed').checked,
    focus: $('focus').value.trim(),
  };
}

export function applyFilters(cy, f) {
  const edgeFiltering = f.protocols.size < 2 || f.windowStart !== null || !f.showFailed || f.focus !== '';
  let focusId = null;
  if (f.focus) {
    const dot = f.focus.lastIndexOf('.');
    const [name, ns] = dot > 0 ? [f.focus.slice(0, dot), f.focus.slice(dot + 1)] : [f.focus, null];
    const hit = cy.nodes('.workload').filter((n) => n.data('name') === name && (ns === null || n.data('namespace') === ns));
    focusId = hit.nonempty() ? new Set(hit.map((n) => n.id())) : new Set();
  }
  // Plain maps of ids: no cytoscape collection per edge (tens of thousands of them cost
  // seconds on a large map).
  const hiddenNode = new Set();
  cy.nodes().forEach((n) => {
    const ns = n.data('namespace');
    if (ns && f.hiddenNs.has(ns)) hiddenNode.add(n.id());
  });
  const nsShown = (n) => !hiddenNode.has(n.id());
  cy.batch(() => {
    const visibleNodes = new Set();
    cy.edges().forEach((e) => {
      if (e.hasClass('ghost')) return;
      const d = e.data();
      const show = !hiddenNode.has(d.source) && !hiddenNode.has(d.target)
        && d.protocols.some((p) => f.protocols.has(p))
        && (f.windowStart === null || d.last_seen_ms >= f.windowStart)
        && (f.showFailed || !d.failedOnly)
        && (focusId === null || focusId.has(d.source) || focusId.has(d.target));
      if (e.hasClass('hidden') === show) e.toggleClass('hidden', !show);
      if (show) { visibleNodes.add(d.source); visibleNodes.add(d.target); }
    });
    const leaves = cy.nodes().filter((n) => n.data('node'));
    leaves.forEach((n) => {
      const show = nsShown(n) && (!edgeFiltering || visibleNodes.has(n.id()));
      if (n.hasClass('hidden') === show) n.toggleClass('hidden', !show);
    });
    // Groups: shown while something inside is (inner groups first).
    const groups = cy.nodes().filter((n) => n.data('isGroup')).sort((a, b) => b.ancestors().length - a.ancestors().length);
    groups.forEach((g) => {
      const shown = g.children().some((c) => !c.hasClass('hidden'));
      if (g.hasClass('hidden') === shown) g.toggleClass('hidden', !shown);
    });
  });
}
