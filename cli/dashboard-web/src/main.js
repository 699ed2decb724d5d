// The page `mapper dashboard` serves: the map drawn with cytoscape.js (laid out by
// cytoscape-fcose), filters, a workload panel, the audit overlay. Every answer comes from the
// dashboard process under the same token-bearing URL (relative URLs): the map (api/map), a
// workload's ClientIntents rendered by `mapper export`'s code (api/intents) and the audit
// decided by `mapper audit`'s implementation (api/audit). Nothing is computed here that the
// CLI decides; this file draws and filters.
import cytoscape from 'cytoscape';
import fcose from 'cytoscape-fcose';
import { elementsOf, groupIds } from './elements.js';
import { filterState, applyFilters } from './filters.js';
import { renderPanel } from './panel.js';
import { style } from './style.js';
import { tileLayout } from './layout.js';

cytoscape.use(fcose);

const REFRESH_MS = 3000;
const LARGE = 1500; // elements beyond which drawing favours speed
const FORCE_NODES = 400; // beyond, the tile layout (layout.js)
const FORCE_EDGES = 2000;

const $ = (id) => document.getElementById(id);
const state = {
  data: null, // the last map answer
  version: null,
  audit: null, // the last audit answer
  auditSource: null, // what to audit again when the map changes: {files} or {from_cluster}
  byRelease: true,
  laidOut: false,
  large: null,
};
const timings = { start: performance.now() };
const dashboard = { state, timings, cy: null, firstRender: null };
window.mapperDashboard = dashboard;

let firstRenderDone;
dashboard.firstRender = new Promise((resolve) => { firstRenderDone = resolve; });

function status(text) { $('status').textContent = text; }
function showError(text) { $('error').textContent = text || ''; }

async function getJSON(url, options) {
  const response = await fetch(url, { cache: 'no-store', ...options });
  const text = await response.text();
  let body;
  try { body = JSON.parse(text); } catch { body = null; }
  if (!response.ok) {
    throw new Error((body && body.error) || text || `${response.status} ${response.statusText}`);
  }
  return body;
}

function windowStart() {
  const since = Number($('since').value);
  return since > 0 ? Date.now() - since : null;
}

let cy = null;

// Made with the first map: a large one is drawn from a texture while panning and zooming.
function createCy(large) {
  cy = cytoscape({
    container: $('cy'),
    elements: [],
    style: style(large),
    wheelSensitivity: 0.3,
    minZoom: 0.02,
    maxZoom: 4,
    boxSelectionEnabled: false,
    textureOnViewport: large,
    hideEdgesOnViewport: large,
    pixelRatio: large ? 1 : 'auto',
  });
  cy.on('select unselect', () => renderPanel(cy, state));
  cy.on('tap', (ev) => { if (ev.target === cy) renderPanel(cy, state); });
  dashboard.cy = cy;
}

function layoutOptions() {
  return {
    name: 'fcose',
    quality: 'default',
    randomize: true,
    animate: false,
    fit: true,
    padding: 30,
    nodeDimensionsIncludeLabels: true,
    packComponents: true,
    nodeRepulsion: 6500,
    idealEdgeLength: 90,
    edgeElasticity: 0.45,
    nestingFactor: 0.1,
    gravity: 0.25,
    numIter: 2500,
    tile: true,
    tilingPaddingVertical: 12,
    tilingPaddingHorizontal: 12,
  };
}

// A force-directed layout (fcose) reads best while it is quick; larger maps get tiles.
function runLayout() {
  const started = performance.now();
  const leaves = cy.nodes().filter((n) => n.data('node')).length;
  if (leaves <= FORCE_NODES && cy.edges().length <= FORCE_EDGES) {
    cy.layout(layoutOptions()).run();
    timings.layout = 'fcose';
  } else {
    timings.layoutParts = {};
    tileLayout(cy, timings.layoutParts);
    timings.layout = 'tiles';
  }
  timings.layoutMs = performance.now() - started;
}

// Puts nodes that arrived with a refresh next to what is already placed in their own group
// (a neighbour there, else any member of it, else a neighbour anywhere): the group grows a
// little and nothing else moves, so the view stays where the user left it.
function placeNew(added) {
  added.nodes().filter((n) => n.data('node')).forEach((n) => {
    const placed = (c) => c.filter((m) => !added.contains(m) && m.data('node'));
    // Members of its own group first (not of a group inside it: a release's box).
    const siblings = n.parent().nonempty() ? placed(n.parent().children()) : cy.collection();
    const inside = n.parent().nonempty() ? placed(n.parent().descendants()) : cy.collection();
    const neighbours = placed(n.neighborhood('node'));
    const anchor = neighbours.intersection(siblings)[0] || siblings[0] || inside[0] || neighbours[0];
    const base = anchor ? anchor.position() : { x: (cy.width() / 2 - cy.pan().x) / cy.zoom(), y: (cy.height() / 2 - cy.pan().y) / cy.zoom() };
    n.position({ x: base.x + (Math.random() - 0.5) * 80, y: base.y + 40 + Math.random() * 40 });
  });
}

// Brings the graph to `data`: new elements added, gone ones removed, the others updated in
// place (positions, pan, zoom and selection kept).
function sync(data) {
  const wanted = elementsOf(data, state.byRelease);
  const wantedIds = new Set(wanted.map((e) => e.data.id));
  const large = data.edges.length + data.nodes.length > LARGE;
  if (state.large !== large) {
    state.large = large;
    cy.style(style(large));
  }
  // Parents before their children (cytoscape needs a parent first).
  const order = (e) => (e.data.isGroup ? (e.data.parent ? 1 : 0) : 2);
  const nodes = wanted.filter((e) => e.group === 'nodes').sort((a, b) => order(a) - order(b));
  const edges = wanted.filter((e) => e.group === 'edges');
  const present = new Set(cy.elements().map((x) => x.id()));
  const isNew = (e) => !present.has(e.data.id);
  let added = cy.collection();
  cy.batch(() => {
    // New nodes in one call (cytoscape indexes a whole array at once), then the others
    // updated and moved into their group, then what is gone removed (a group only once its
    // members have moved out), then the new edges.
    const newNodes = nodes.filter(isNew);
    const oldNodes = nodes.filter((e) => !isNew(e));
    if (newNodes.length) added = added.union(cy.add(newNodes));
    for (const e of oldNodes) {
      let existing = cy.getElementById(e.data.id);
      if ((existing.data('parent') || null) !== (e.data.parent || null)) existing = existing.move({ parent: e.data.parent || null });
      const { parent, ...rest } = e.data;
      existing.data(rest);
      existing.classes(e.classes || '');
    }
    cy.elements().filter((x) => !wantedIds.has(x.id()) && !x.hasClass('ghost')).remove();
    const newEdges = edges.filter(isNew);
    for (const e of edges) {
      if (isNew(e)) continue;
      const existing = cy.getElementById(e.data.id);
      existing.data(e.data);
      existing.classes(e.classes || '');
    }
    if (newEdges.length) added = added.union(cy.add(newEdges));
  });
  return added;
}

function populateFilters(data) {
  const namespaces = [...new Set(data.nodes.map((n) => n.namespace).filter(Boolean))].sort();
  const list = $('ns-list');
  const known = new Set([...list.querySelectorAll('input[data-ns]')].map((i) => i.dataset.ns));
  if (!list.querySelector('.ns-actions')) {
    const actions = document.createElement('div');
    actions.className = 'ns-actions';
    for (const [label, value] of [['all', true], ['none', false]]) {
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = label;
      b.addEventListener('click', () => {
        list.querySelectorAll('input[data-ns]').forEach((i) => { i.checked = value; });
        refilter();
      });
      actions.append(b, ' ');
    }
    list.append(actions);
  }
  for (const ns of namespaces) {
    if (known.has(ns)) continue;
    const label = document.createElement('label');
    const input = document.createElement('input');
    input.type = 'checkbox';
    input.checked = true;
    input.dataset.ns = ns;
    input.addEventListener('change', refilter);
    label.append(input, ` ${ns}`);
    list.append(label);
  }
  const datalist = $('workload-list');
  datalist.replaceChildren(...data.nodes.filter((n) => n.type === 'workload').map((n) => {
    const o = document.createElement('option');
    o.value = `${n.name}.${n.namespace}`;
    return o;
  }));
}

function refilter() {
  if (!cy) return;
  applyFilters(cy, filterState(windowStart()));
  applyAudit();
  search();
}

function search() {
  if (!cy) return;
  const q = $('search').value.trim().toLowerCase();
  cy.batch(() => {
    if (!q) {
      cy.elements('.match, .dimmed').removeClass('match dimmed');
      return;
    }
    const leaves = cy.nodes().filter((n) => n.data('node'));
    const matches = leaves.filter((n) => (n.data('search') || '').includes(q));
    const ids = new Set(matches.map((n) => n.id()));
    const dim = leaves.difference(matches).union(cy.edges().filter((e) => !ids.has(e.data('source')) && !ids.has(e.data('target'))));
    // Only what changes is restyled.
    cy.elements('.match').difference(matches).removeClass('match');
    cy.elements('.dimmed').difference(dim).removeClass('dimmed');
    matches.filter((n) => !n.hasClass('match')).addClass('match');
    dim.filter((e) => !e.hasClass('dimmed')).addClass('dimmed');
  });
}

function applyAudit() {
  if (!cy) return;
  const audit = state.audit;
  document.body.classList.toggle('auditing', Boolean(audit));
  cy.batch(() => {
    cy.elements('.ghost').remove();
    cy.edges().removeClass('audit-missing audit-covered audit-out');
    if (!audit) return;
    cy.edges().forEach((e) => {
      const verdict = audit.edges[e.id()];
      e.addClass(verdict === 'MISSING' ? 'audit-missing' : verdict === 'COVERED' ? 'audit-covered' : 'audit-out');
      e.data('audit', verdict || null);
    });
    for (const u of audit.unused) {
      if (cy.getElementById(u.client).empty()) continue;
      let target = u.node;
      if (!target || cy.getElementById(target).empty()) {
        target = `ghost:${u.target}`;
        if (cy.getElementById(target).empty()) {
          const parent = u.namespace && cy.getElementById(`ns:${u.namespace}`).nonempty() ? `ns:${u.namespace}` : undefined;
          const near = cy.getElementById(u.client).position();
          cy.add({ group: 'nodes', classes: 'ghost', data: { id: target, label: `${u.target} (declared)`, parent, type: 'declared' }, position: { x: near.x + 120, y: near.y + 40 } });
        }
      }
      cy.add({
        group: 'edges',
        classes: 'ghost audit-unused',
        data: { id: `ghost:${u.client}|${u.target}`, source: u.client, target, label: 'UNUSED', audit: 'UNUSED', unused: u },
      });
    }
  });
}

async function runAudit() {
  if (!state.auditSource) return;
  $('audit-status').textContent = 'auditing…';
  try {
    const body = { ...state.auditSource, since_ms: windowStart(), namespace: $('audit-namespace').value.trim() || null };
    const audit = await getJSON('api/audit', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    state.audit = audit;
    const s = audit.summary;
    const warn = audit.warnings.length ? ` · ${audit.warnings.length} warning(s): ${audit.warnings.join('; ')}` : '';
    $('audit-status').textContent = `audit of ${audit.declared} declared ClientIntents: ${s.missing} missing (blocked once enforced) · ${s.unused} unused · ${s.covered} covered${warn}`;
    $('audit-clear').disabled = false;
    showError('');
  } catch (e) {
    state.audit = null;
    $('audit-status').textContent = '';
    showError(`audit: ${e.message}`);
  }
  applyAudit();
  if (cy) renderPanel(cy, state);
}

async function auditFiles(fileList) {
  const files = [];
  for (const f of fileList) files.push({ name: f.name, text: await f.text() });
  if (!files.length) return;
  state.auditSource = { files };
  await runAudit();
}

async function load() {
  const fetchStarted = performance.now();
  let data;
  try {
    data = await getJSON(`api/map${state.version ? `?known=${encodeURIComponent(state.version)}` : ''}`);
  } catch (e) {
    showError(`cannot reach the dashboard process: ${e.message}`);
    return;
  }
  if (timings.fetchMs === undefined) timings.fetchMs = performance.now() - fetchStarted;
  if (data.unchanged) {
    status(statusText(state.data));
    showError(state.data && state.data.error ? `mapper-server: ${state.data.error}` : '');
    return;
  }
  state.data = data;
  state.version = data.version;
  if (!cy) createCy(data.edges.length + data.nodes.length > LARGE);
  populateFilters(data);
  const syncStarted = performance.now();
  const added = sync(data);
  applyFilters(cy, filterState(windowStart()));
  if (timings.syncMs === undefined) timings.syncMs = performance.now() - syncStarted;
  const afterSync = performance.now();
  if (!state.laidOut) {
    runLayout();
    state.laidOut = true;
  } else if (added.nonempty()) {
    placeNew(added);
  }
  if (timings.afterLayoutMs === undefined) timings.afterLayoutMs = performance.now() - afterSync;
  status(statusText(data));
  showError(data.error ? `mapper-server: ${data.error}` : '');
  if (state.auditSource) await runAudit(); else applyAudit();
  search();
  renderPanel(cy, state);
  if (timings.firstRenderMs === undefined) {
    timings.beforeFrameMs = performance.now();
    requestAnimationFrame(() => requestAnimationFrame(() => {
      timings.firstRenderMs = performance.now();
      firstRenderDone(timings);
    }));
  }
}

function statusText(data) {
  if (!data) return '';
  const workloads = data.nodes.filter((n) => n.type === 'workload').length;
  const cut = data.truncated ? ` — cut short at ${data.max_edges} edges: narrow it with -n, --server or --since` : '';
  const sync = data.ready ? '' : ' (the server has not synced the cluster state yet)';
  return `${workloads} workloads, ${data.nodes.length} nodes, ${data.edges.length} calls from mapper-server at ${data.server}; read ${new Date(data.fetched_ms).toLocaleTimeString()}${sync}${cut}`;
}

// Controls.
for (const id of ['proto-tcp', 'proto-udp', 'since', 'show-failed', 'focus']) {
  $(id).addEventListener(id === 'focus' ? 'input' : 'change', () => {
    refilter();
    if (id === 'since' && state.auditSource) runAudit();
  });
}
$('search').addEventListener('input', search);
$('audit-namespace').addEventListener('change', () => { if (state.auditSource) runAudit(); });
$('search').addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && cy) {
    const m = cy.nodes('.match');
    if (m.nonempty()) cy.animate({ fit: { eles: m, padding: 80 } }, { duration: 250 });
  }
});
$('by-release').addEventListener('change', () => {
  state.byRelease = $('by-release').checked;
  if (state.data) {
    sync(state.data);
    refilter();
  }
});
$('fit').addEventListener('click', () => cy && cy.fit(cy.elements(':visible'), 30));
$('relayout').addEventListener('click', () => cy && runLayout());
$('audit-files').addEventListener('change', (ev) => auditFiles(ev.target.files));
$('audit-cluster').addEventListener('click', () => { state.auditSource = { from_cluster: true }; runAudit(); });
$('audit-clear').addEventListener('click', () => {
  state.auditSource = null;
  state.audit = null;
  $('audit-status').textContent = '';
  $('audit-clear').disabled = true;
  applyAudit();
  if (cy) renderPanel(cy, state);
});
document.addEventListener('dragover', (ev) => { ev.preventDefault(); document.body.classList.add('dragging'); });
document.addEventListener('dragleave', (ev) => { if (!ev.relatedTarget) document.body.classList.remove('dragging'); });
document.addEventListener('drop', (ev) => {
  ev.preventDefault();
  document.body.classList.remove('dragging');
  if (ev.dataTransfer && ev.dataTransfer.files.length) auditFiles(ev.dataTransfer.files);
});
export { groupIds };

(async function loop() {
  await load();
  setTimeout(loop, REFRESH_MS);
})();
