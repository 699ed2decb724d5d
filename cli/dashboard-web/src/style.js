// The map's look. `large` maps draw straight edges and hide labels until zoomed in.
export function style(large) {
  return [
    { selector: 'node', style: {
      'label': 'data(label)', 'font-size': 10, 'text-valign': 'bottom', 'text-margin-y': 3, 'text-wrap': 'wrap',
      'text-max-width': large ? 110 : 140, 'width': 18, 'height': 18, 'background-color': '#3b7dd8', 'color': '#1d2430',
      'min-zoomed-font-size': large ? 9 : 5, 'border-width': 0,
    } },
    { selector: 'node.service', style: { 'background-color': '#7b61ff', 'shape': 'round-rectangle' } },
    { selector: 'node.api', style: { 'background-color': '#334155', 'shape': 'hexagon', 'width': 24, 'height': 24 } },
    { selector: 'node.external', style: { 'background-color': '#e67e22', 'shape': 'round-diamond' } },
    { selector: 'node.unresolved', style: { 'background-color': '#9aa0a6', 'shape': 'diamond' } },
    { selector: 'node.node', style: { 'background-color': '#8d6e63', 'shape': 'rectangle' } },
    { selector: 'node.group', style: {
      'background-color': '#1f5fa8', 'background-opacity': 0.05, 'border-width': 1, 'border-color': '#9fb6d3',
      'label': 'data(label)', 'text-valign': 'top', 'text-halign': 'center', 'text-margin-y': -2, 'font-size': 12,
      'font-weight': 600, 'color': '#1f5fa8', 'padding': 14, 'text-max-width': 2000, 'shape': 'round-rectangle', 'min-zoomed-font-size': 4,
      // Large maps are seen zoomed out: namespace names readable from afar.
      ...(large ? { 'font-size': 44 } : {}),
    } },
    { selector: 'node.group.release', style: { 'border-style': 'dashed', 'background-color': '#0f766e', 'color': '#0f766e', 'border-color': '#5eada4', 'font-size': 11 } },
    { selector: 'node.group.outside', style: { 'background-color': '#e67e22', 'border-color': '#f0b27a', 'color': '#b45309' } },
    { selector: 'node.group.unresolved-group, node.group.nodes', style: { 'background-color': '#6b7280', 'border-color': '#c4c8ce', 'color': '#4b5563' } },
    { selector: 'edge', style: {
      'width': 'data(width)', 'line-color': '#8a96a3', 'target-arrow-color': '#8a96a3', 'target-arrow-shape': 'triangle',
      // Large maps: haystack lines (the cheapest to draw; no arrowheads but on the selected call).
      'arrow-scale': 0.8, 'curve-style': large ? 'haystack' : 'bezier', 'haystack-radius': 0, 'opacity': 0.85,
      // Large maps: the ports only on the selected call (10 000 labels cost seconds to measure).
      'label': large ? '' : 'data(label)', 'font-size': 8, 'color': '#4b5563', 'text-rotation': 'autorotate',
      'min-zoomed-font-size': large ? 12 : 7, 'text-background-color': '#fbfcfd', 'text-background-opacity': 0.8,
      'text-background-padding': 1,
    } },
    { selector: 'edge.failed-only', style: { 'curve-style': large ? 'straight' : 'bezier', 'line-style': 'dashed', 'line-color': '#d64545', 'target-arrow-color': '#d64545', 'color': '#b42318' } },
    { selector: 'edge.audit-missing', style: { 'curve-style': large ? 'straight' : 'bezier', 'line-color': '#e8590c', 'target-arrow-color': '#e8590c', 'width': 5, 'opacity': 1, 'color': '#c2410c', 'z-index': 10 } },
    { selector: 'edge.audit-covered', style: { 'curve-style': large ? 'straight' : 'bezier', 'line-color': '#2f9e44', 'target-arrow-color': '#2f9e44', 'width': 3.5, 'opacity': 1 } },
    { selector: 'edge.audit-unused', style: { 'curve-style': large ? 'straight' : 'bezier', 'line-color': '#ae3ec9', 'target-arrow-color': '#ae3ec9', 'line-style': 'dashed', 'width': 3, 'opacity': 1, 'color': '#9333ea' } },
    { selector: 'edge.audit-out', style: { 'opacity': 0.2 } },
    { selector: 'node.ghost', style: { 'background-opacity': 0.15, 'border-width': 2, 'border-style': 'dashed', 'border-color': '#ae3ec9', 'background-color': '#ae3ec9', 'color': '#9333ea' } },
    { selector: '.match', style: { 'border-width': 4, 'border-color': '#f59f00' } },
    { selector: '.dimmed', style: { 'opacity': 0.15 } },
    { selector: 'node:selected', style: { 'border-width': 4, 'border-color': '#111827' } },
    { selector: 'edge:selected', style: { 'label': 'data(label)', 'min-zoomed-font-size': 0, 'curve-style': large ? 'straight' : 'bezier', 'overlay-color': '#111827', 'overlay-opacity': 0.25, 'overlay-padding': 4, 'opacity': 1, 'z-index': 20 } },
    { selector: '.hidden', style: { 'display': 'none' } },
  ];
}
