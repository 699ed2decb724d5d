// The side panel: a workload's callers and calls (ports, counts, first and last seen, the
// Service dialled), its ClientIntents as `mapper export` renders them (api/intents), and for
// a call its counts and audit verdict.

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

// "3 min ago", the full time as the tooltip: for the tables.
function ago(ms) {
  if (!ms) return 'never';
  const full = when(ms);
  return el('span', { title: full }, full.replace(/^.*\((.*)\)$/, '$1'));
}

export function when(ms) {
  if (!ms) return 'never';
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) return `${ms} ms`;
  const ago = Math.max(0, Date.now() - ms);
  const rel = ago < 60e3 ? `${Math.round(ago / 1e3)} s ago` : ago < 3600e3 ? `${Math.round(ago / 60e3)} min ago`
    : ago < 86400e3 ? `${Math.round(ago / 3600e3)} h ago` : `${Math.round(ago / 86400e3)} d ago`;
  return `${d.toISOString().replace(/\.\d+Z$/, 'Z')} (${rel})`;
}

function nodeName(n) {
  const d = n.data();
  if (d.type === 'workload' || d.type === 'service') return `${d.type === 'service' ? 'Service ' : ''}${d.name}.${d.namespace}`;
  if (d.type === 'external') return d.dns_names && d.dns_names.length ? `${d.dns_names.join(', ')} (${d.name})` : d.name;
  return d.label.replace('\n', ' ');
}

function verdict(e) {
  const v = e.data('audit');
  return v ? el('span', { class: `status-${v}` }, v) : '';
}

function callsTable(edges, peerOf, heading) {
  const rows = edges.filter((e) => !e.hasClass('ghost')).map((e) => {
    const d = e.data();
    return el('tr', { 'data-edge': e.id() },
      el('td', {}, el('a', { href: '#', onclick: (ev) => { ev.preventDefault(); e.cy().elements().unselect(); e.select(); } }, nodeName(peerOf(e)))),
      el('td', {}, d.ports.join(', ')),
      el('td', { class: 'num' }, d.established),
      el('td', { class: 'num' }, d.failed),
      el('td', {}, ago(d.first_seen_ms)),
      el('td', {}, ago(d.last_seen_ms)),
      el('td', {}, d.via_services.join(', ') || '—'),
      el('td', {}, verdict(e)));
  });
  if (!rows.length) return el('p', { class: 'hint' }, `${heading}: none`);
  return [el('h3', {}, `${heading} (${rows.length})`), el('table', {},
    el('tr', {}, ...['peer', 'ports', 'established', 'failed', 'first seen', 'last seen', 'via Service', ''].map((h) => el('th', {}, h))),
    ...rows)];
}

async function loadIntents(state, client, version, box) {
  box.replaceChildren(el('p', { class: 'hint' }, 'rendering…'));
  try {
    const r = await fetch(`api/intents?client=${encodeURIComponent(client)}&version=${encodeURIComponent(version)}`, { cache: 'no-store' });
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || r.statusText);
    if (!body.yaml) {
      box.replaceChildren(el('p', { class: 'hint' }, 'mapper export writes no ClientIntents for it (only calls that succeeded, cluster DNS left out).'));
      return;
    }
    const pre = el('pre', { id: 'intents-yaml' }, body.yaml);
    const copy = el('button', { type: 'button', onclick: async () => {
      try { await navigator.clipboard.writeText(body.yaml); copy.textContent = 'copied'; } catch { copy.textContent = 'copy failed: select the text'; }
    } }, 'Copy');
    const download = el('button', { type: 'button', onclick: () => {
      const a = el('a', { href: URL.createObjectURL(new Blob([body.yaml], { type: 'application/yaml' })), download: body.file_name || 'clientintents.yaml' });
      document.body.append(a);
      a.click();
      setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
    } }, 'Download');
    const note = body.dropped_internet ? el('p', { class: 'hint' }, `${body.dropped_internet} internet target(s) left out: ${version} cannot express them.`) : null;
    box.replaceChildren(...[el('div', { class: 'row' }, copy, download, el('span', { class: 'hint' }, body.file_name)), note, pre].filter(Boolean));
  } catch (e) {
    box.replaceChildren(el('p', { id: 'intents-error', class: 'status-MISSING' }, `cannot render: ${e.message}`));
  }
}

function auditOf(state, id) {
  return state.audit && state.audit.clients.find((c) => c.client === id);
}

function workloadPanel(n, state) {
  const d = n.data();
  const out = [el('h2', {}, `${d.name}.${d.namespace}`),
    el('p', { class: 'meta' }, [d.kind || 'unknown kind', d.release ? ` · Helm release ${d.release.name} (namespace ${d.release.namespace})` : ' · no Helm release'].join(''))];
  out.push(callsTable(n.connectedEdges().filter((e) => e.source().same(n)), (e) => e.target(), 'Calls'));
  out.push(callsTable(n.connectedEdges().filter((e) => e.target().same(n)), (e) => e.source(), 'Callers'));
  const a = auditOf(state, d.id);
  if (a) {
    out.push(el('h3', {}, 'Audit'), el('dl', {},
      el('dt', {}, 'declared in'), el('dd', {}, a.declared_in.join('; ') || 'no ClientIntents'),
      el('dt', { class: 'status-MISSING' }, 'MISSING'), el('dd', {}, a.missing.join(', ') || '—'),
      el('dt', { class: 'status-COVERED' }, 'COVERED'), el('dd', {}, a.covered.join(', ') || '—'),
      el('dt', { class: 'status-UNUSED' }, 'UNUSED'), el('dd', {}, a.unused.join(', ') || '—')));
  }
  if (n.outgoers('edge').nonempty()) {
    const versions = (state.data && state.data.versions) || ['v2beta1'];
    state.intentsVersion = state.intentsVersion || versions[0];
    const box = el('div', { id: 'intents' });
    const select = el('select', { id: 'intents-version', 'aria-label': 'ClientIntents version', onchange: (ev) => {
      state.intentsVersion = ev.target.value;
      loadIntents(state, d.id, state.intentsVersion, box);
    } }, ...versions.map((v) => {
      const o = el('option', { value: v }, v);
      if (v === state.intentsVersion) o.selected = true;
      return o;
    }));
    out.push(el('h3', {}, 'ClientIntents ', select), box);
    loadIntents(state, d.id, state.intentsVersion, box);
  }
  return out;
}

function edgePanel(e) {
  const d = e.data();
  if (d.unused) {
    return [el('h2', {}, `${nodeName(e.source())} → ${d.unused.target}`),
      el('p', {}, el('span', { class: 'status-UNUSED' }, 'UNUSED'), ': declared, not observed in the window; ',
        d.unused.last_seen_ms ? `last seen ${when(d.unused.last_seen_ms)}` : 'never seen')];
  }
  return [el('h2', {}, `${nodeName(e.source())} → ${nodeName(e.target())}`),
    d.audit ? el('p', {}, 'audit: ', verdict(e), d.audit === 'MISSING' ? ' — observed, not declared: blocked once enforced' : ' — declared and observed') : null,
    el('dl', { id: 'edge-details' },
      el('dt', {}, 'ports'), el('dd', {}, d.ports.join(', ')),
      el('dt', {}, 'established'), el('dd', { id: 'edge-established' }, d.established),
      el('dt', {}, 'failed'), el('dd', { id: 'edge-failed' }, d.failedOnly ? `${d.failed} (every attempt failed)` : d.failed),
      el('dt', {}, 'first seen'), el('dd', {}, when(d.first_seen_ms)),
      el('dt', {}, 'last seen'), el('dd', {}, when(d.last_seen_ms)),
      el('dt', {}, 'via Service'), el('dd', {}, d.via_services.join(', ') || '— (pod address dialled)'),
      el('dt', {}, 'seen by'), el('dd', {}, [d.seen_by_client && "the client's node agent", d.seen_by_server && "the server's node agent"].filter(Boolean).join(', ') || '—'))];
}

function otherPanel(n) {
  const d = n.data();
  const out = [el('h2', {}, nodeName(n))];
  if (d.type === 'unresolved') out.push(el('p', { class: 'meta' }, `unresolved: ${d.reason || 'unknown'}`));
  if (d.type === 'external') out.push(el('p', { class: 'meta' }, 'outside the cluster'));
  if (d.type === 'service') out.push(el('p', { class: 'meta' }, 'a Service with no pods behind it'));
  out.push(callsTable(n.connectedEdges().filter((e) => e.target().same(n)), (e) => e.source(), 'Callers'));
  out.push(callsTable(n.connectedEdges().filter((e) => e.source().same(n)), (e) => e.target(), 'Calls'));
  return out;
}

export function renderPanel(cy, state) {
  const panel = document.getElementById('panel');
  const sel = cy.$(':selected');
  let content;
  if (sel.empty()) {
    content = [el('p', { class: 'hint' }, 'Click a workload or a call for its details. Drop declared ClientIntents files anywhere to audit them.')];
    if (state.audit) {
      content.push(el('h3', {}, 'Audit by client'), el('table', {},
        el('tr', {}, ...['client', 'missing', 'covered', 'unused'].map((h) => el('th', {}, h))),
        ...state.audit.clients.map((c) => el('tr', {}, el('td', {}, c.name), el('td', { class: 'status-MISSING' }, c.missing.join(', ')),
          el('td', { class: 'status-COVERED' }, c.covered.join(', ')), el('td', { class: 'status-UNUSED' }, c.unused.join(', '))))));
    }
  } else {
    const x = sel[0];
    if (x.isEdge()) content = edgePanel(x);
    else if (x.data('isGroup')) content = [el('h2', {}, x.data('label')), el('p', { class: 'meta' }, `${x.descendants().filter((n) => n.data('node')).length} members`)];
    else if (x.data('type') === 'workload') content = workloadPanel(x, state);
    else content = otherPanel(x);
  }
  panel.replaceChildren(...content.flat().filter(Boolean));
}
