// The map answer (api/map) as cytoscape elements: a compound node per namespace, per Helm
// release inside it, and one each for outside addresses, unresolved addresses and node
// processes; a node per peer, an edge per call.

export const OUTSIDE = 'grp:internet';
export const UNRESOLVED = 'grp:unresolved';
export const NODES = 'grp:nodes';

export function groupIds() {
  return [OUTSIDE, UNRESOLVED, NODES];
}

function label(n) {
  switch (n.type) {
    case 'external': return n.dns_names && n.dns_names.length ? `${n.dns_names[0]}\n${n.name}` : n.name;
    case 'service': return `svc ${n.name}`;
    case 'api': return 'kubernetes API';
    case 'node': return `node ${n.name}`;
    default: return n.name;
  }
}

function parentOf(n, byRelease) {
  switch (n.type) {
    case 'workload':
      if (byRelease && n.release) return `rel:${n.namespace}/${n.release.namespace}/${n.release.name}`;
      return `ns:${n.namespace}`;
    case 'service': return `ns:${n.namespace}`;
    case 'external': return OUTSIDE;
    case 'unresolved': return UNRESOLVED;
    case 'node': return NODES;
    default: return undefined;
  }
}

export function elementsOf(data, byRelease) {
  const out = [];
  const groups = new Map();
  const group = (id, data) => { if (!groups.has(id)) groups.set(id, data); };
  for (const n of data.nodes) {
    const parent = parentOf(n, byRelease);
    if (n.namespace) group(`ns:${n.namespace}`, { label: `namespace ${n.namespace}`, type: 'namespace', namespace: n.namespace });
    if (parent && parent.startsWith('rel:')) {
      group(parent, { label: `release ${n.release.name}`, type: 'release', namespace: n.namespace, parent: `ns:${n.namespace}` });
    }
    if (parent === OUTSIDE) group(OUTSIDE, { label: 'outside the cluster', type: 'outside' });
    if (parent === UNRESOLVED) group(UNRESOLVED, { label: 'unresolved addresses', type: 'unresolved-group' });
    if (parent === NODES) group(NODES, { label: 'node processes', type: 'nodes' });
    const search = [n.name, n.namespace, n.kind, ...(n.dns_names || []), n.release && n.release.name]
      .filter(Boolean).join(' ').toLowerCase();
    out.push({
      group: 'nodes',
      classes: n.type,
      data: { ...n, id: n.id, label: label(n), parent, search, node: true },
    });
  }
  for (const [id, d] of groups) out.push({ group: 'nodes', classes: `group ${d.type}`, data: { id, isGroup: true, ...d } });
  for (const e of data.edges) {
    const calls = e.established + e.failed;
    const failedOnly = e.established === 0 && e.failed > 0;
    out.push({
      group: 'edges',
      classes: failedOnly ? 'failed-only' : '',
      data: {
        ...e,
        label: e.ports.join(', '),
        width: 1 + Math.min(5, Math.log10(1 + calls)),
        protocols: [...new Set(e.ports.map((p) => p.split('/')[1]))],
        failedOnly,
      },
    });
  }
  return out;
}
