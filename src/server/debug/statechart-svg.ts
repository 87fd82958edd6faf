/**
 * Renders an XState v5 machine as a standalone statechart SVG, laid out
 * automatically by ELK (layered algorithm, hierarchical so compound states
 * contain their children). The drawing comes from the machine definition, so
 * it never drifts from the code.
 *
 * The SVG is made for CSS-only live highlighting: every state is a
 * `<g class="state …" data-state-id="<xstate id>">` and every transition a
 * `<g class="transition" data-event=… data-source=… data-target=…>`. Adding the
 * class `active` to a group lights it (see the embedded `<style>`); the page
 * never has to lay anything out again.
 */
import type { ELK, ElkExtendedEdge, ElkLabel, ElkNode, ElkPoint } from 'elkjs/lib/elk-api.js';
import type { AnyStateMachine } from 'xstate';
import { machineToGraph, type StatechartEdge, type StatechartGraph, type StatechartNode } from './statechart-graph.js';

export interface RenderStatechartOptions {
  /** Main flow direction of the layout. Default `'RIGHT'`. */
  direction?: 'RIGHT' | 'DOWN' | 'LEFT' | 'UP';
  /** Prefix for ids inside the SVG (markers), so several SVGs can share one page. Default `'sc-'`. */
  idPrefix?: string;
  /** State ids to render with the `active` class already set (e.g. from `activeStateIds`). */
  activeStateIds?: Iterable<string>;
  /** Show entry/exit actions and invoked actors inside states. Default `true`. */
  showDetails?: boolean;
  /** Show transition actions on edge labels (`grant / notify`). Default `false`. */
  showTransitionActions?: boolean;
  /** Text of the SVG `<title>`. Default: the machine id. */
  title?: string;
  /** Extra CSS appended to the embedded stylesheet. */
  extraCss?: string;
  /** Extra ELK layout options applied to every level of the hierarchy (escape hatch for tuning). */
  elkOptions?: Record<string, string>;
}

// ---------------------------------------------------------------------------
// Text measurement (approximate: ~7px per character at 12px).

const FONT_FAMILY = "ui-sans-serif, system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif";
const LABEL_SIZE = 12;
const DETAIL_SIZE = 10.5;
const EDGE_SIZE = 11;

function charFactor(ch: string): number {
  if ("ijl.,:;!|'`".includes(ch)) return 0.3;
  if ('frt()[]{} /-'.includes(ch)) return 0.42;
  if ('mwMW@%&'.includes(ch)) return 0.9;
  if (ch >= 'A' && ch <= 'Z') return 0.7;
  if (ch >= '0' && ch <= '9') return 0.58;
  if (ch.charCodeAt(0) > 0x2e80) return 1.0; // CJK and other wide scripts
  return 0.58;
}

/** Approximate rendered width of `text` at `size`px (bold text is ~8% wider). */
export function measureText(text: string, size = LABEL_SIZE, bold = false): number {
  let w = 0;
  for (const ch of text) w += charFactor(ch);
  return Math.ceil(w * size * (bold ? 1.08 : 1));
}

// ---------------------------------------------------------------------------
// XML helpers

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) =>
    c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : c === '"' ? '&quot;' : '&apos;',
  );
}

const n2 = (v: number): string => (Math.round(v * 100) / 100).toString();

function attrs(a: Record<string, string | number | undefined>): string {
  let out = '';
  for (const [k, v] of Object.entries(a)) {
    if (v === undefined) continue;
    out += ` ${k}="${escapeXml(typeof v === 'number' ? n2(v) : v)}"`;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Geometry of state boxes

const PAD_X = 12;
const HEADER_H = 26; // label line
const DETAIL_LINE_H = 14;
const MIN_STATE_W = 64;
const CHILD_PAD = 14;
const INITIAL_DOT = 10;
const HISTORY_D = 28;

interface Box {
  labelText: string;
  details: string[];
  /** Targetless transitions of a compound state, listed in its header instead of drawn as loops. */
  inState: Array<{ edge: StatechartEdge; text: string }>;
  width: number;
  /** Height of the header (label + detail lines). For leaf states this is the whole height. */
  headerHeight: number;
}

function detailLines(node: StatechartNode): string[] {
  const lines: string[] = [];
  if (node.entry?.length) lines.push(`entry / ${node.entry.join(', ')}`);
  if (node.exit?.length) lines.push(`exit / ${node.exit.join(', ')}`);
  for (const inv of node.invokes ?? []) lines.push(`invoke / ${inv}`);
  return lines;
}

function inStateText(edge: StatechartEdge): string {
  const guard = edge.guard ? ` [${edge.guard}]` : '';
  const actions = edge.actions?.length ? ` / ${edge.actions.join(', ')}` : '';
  return `${edge.event}${guard}${actions}`;
}

function boxFor(node: StatechartNode, isRoot: boolean, showDetails: boolean, inStateEdges: StatechartEdge[]): Box {
  const labelText = isRoot ? node.id : node.key;
  const details = showDetails ? detailLines(node) : [];
  const inState = inStateEdges.map((edge) => ({ edge, text: inStateText(edge) }));
  const lines = [...details, ...inState.map((t) => t.text)];
  const textW = Math.max(measureText(labelText, LABEL_SIZE, true), ...lines.map((d) => measureText(d, DETAIL_SIZE)));
  const width = Math.max(MIN_STATE_W, textW + 2 * PAD_X + (node.final ? 6 : 0));
  const headerHeight = HEADER_H + (lines.length ? lines.length * DETAIL_LINE_H + 6 : 0);
  return { labelText, details, inState, width, headerHeight };
}

// ---------------------------------------------------------------------------
// Edge labels

interface EdgeLabelSpec {
  lines: Array<{ text: string; cls: string }>;
  width: number;
  height: number;
}

const EDGE_LINE_H = 14;

function edgeLabelFor(edge: StatechartEdge, showActions: boolean): EdgeLabelSpec {
  const lines: Array<{ text: string; cls: string }> = [];
  const guard = edge.guard ? `[${edge.guard}]` : '';
  const oneLine = guard && edge.event.length + guard.length <= 22;
  lines.push({ text: oneLine ? `${edge.event} ${guard}` : edge.event, cls: 'event' });
  if (guard && !oneLine) lines.push({ text: guard, cls: 'guard' });
  if (showActions && edge.actions?.length) lines.push({ text: `/ ${edge.actions.join(', ')}`, cls: 'actions' });
  const width = Math.max(...lines.map((l) => measureText(l.text, EDGE_SIZE, l.cls === 'event'))) + 8;
  return { lines, width, height: lines.length * EDGE_LINE_H + 4 };
}

// ---------------------------------------------------------------------------
// ELK

type ElkConstructor = new () => ELK;
let elkInstance: Promise<ELK> | undefined;

/**
 * The shared ELK instance, loaded on first use: the bundle is ~1.6 MB and takes
 * a few hundred ms to parse, which a gateway that never draws should not pay.
 */
function elk(): Promise<ELK> {
  elkInstance ??= import('elkjs/lib/elk.bundled.js').then((mod) => {
    // elk.bundled.js is CommonJS: module.exports is the constructor, which also
    // carries itself as `.default`. Accept whichever layer the loader hands us.
    let candidate: unknown = mod;
    for (let i = 0; i < 3 && typeof candidate !== 'function'; i++) {
      candidate = (candidate as { default?: unknown } | undefined)?.default;
    }
    if (typeof candidate !== 'function') throw new Error('elkjs: could not find the ELK constructor');
    return new (candidate as ElkConstructor)();
  });
  return elkInstance;
}

const elkNodeId = (stateId: string) => `n:${stateId}`;
const elkInitId = (stateId: string) => `i:${stateId}`;

interface Layout {
  /** Absolute boxes by ELK node id. */
  boxes: Map<string, { x: number; y: number; width: number; height: number }>;
  edges: Map<string, { points: ElkPoint[][]; labels: ElkLabel[] }>;
  width: number;
  height: number;
}

const ROOT_LAYOUT_OPTIONS: Record<string, string> = {
  'elk.hierarchyHandling': 'INCLUDE_CHILDREN',
  'elk.json.shapeCoords': 'ROOT',
  'elk.json.edgeCoords': 'ROOT',
  'elk.padding': '[top=16,left=16,bottom=16,right=16]',
};

/** Options read per containing node (not inherited), so every compound node repeats them. */
const LEVEL_OPTIONS: Record<string, string> = {
  'elk.algorithm': 'layered',
  'elk.edgeRouting': 'ORTHOGONAL',
  'elk.edgeLabels.placement': 'CENTER',
  // Depth-first from the initial markers keeps the flow in document order (initial state first).
  'elk.layered.cycleBreaking.strategy': 'DEPTH_FIRST',
  'elk.layered.nodePlacement.strategy': 'NETWORK_SIMPLEX',
  'elk.spacing.nodeNode': '24',
  'elk.spacing.edgeNode': '16',
  'elk.spacing.edgeEdge': '12',
  'elk.spacing.edgeLabel': '4',
  'elk.spacing.labelLabel': '6',
  'elk.spacing.nodeSelfLoop': '18',
  'elk.layered.spacing.nodeNodeBetweenLayers': '36',
  'elk.layered.spacing.edgeNodeBetweenLayers': '16',
  'elk.layered.spacing.edgeEdgeBetweenLayers': '12',
};

const FALLBACK_OPTIONS: Record<string, string> = {
  'elk.layered.cycleBreaking.strategy': 'GREEDY',
  'elk.layered.nodePlacement.strategy': 'BRANDES_KOEPF',
};

function buildElkGraph(
  graph: StatechartGraph,
  opts: Required<Pick<RenderStatechartOptions, 'direction' | 'elkOptions'>>,
  boxes: Map<string, Box>,
  labels: Map<string, EdgeLabelSpec>,
): ElkNode {
  const childrenOf = new Map<string, StatechartNode[]>();
  for (const n of graph.nodes) {
    if (n.parentId === null) continue;
    let list = childrenOf.get(n.parentId);
    if (!list) childrenOf.set(n.parentId, (list = []));
    list.push(n);
  }

  const edges: ElkExtendedEdge[] = [];
  const levelOptions = { ...LEVEL_OPTIONS, 'elk.direction': opts.direction, ...opts.elkOptions };

  const toElk = (node: StatechartNode): ElkNode => {
    const box = boxes.get(node.id)!;
    const kids = childrenOf.get(node.id) ?? [];
    if (node.type === 'history') {
      return { id: elkNodeId(node.id), width: HISTORY_D, height: HISTORY_D };
    }
    if (kids.length === 0) {
      return { id: elkNodeId(node.id), width: box.width, height: box.headerHeight + (box.details.length || box.inState.length ? 0 : 6) };
    }
    const children: ElkNode[] = [];
    const initialKid = node.type === 'compound' ? kids.find((k) => k.initial) : undefined;
    if (initialKid) {
      children.push({ id: elkInitId(node.id), width: INITIAL_DOT, height: INITIAL_DOT });
      edges.push({ id: `ie:${node.id}`, sources: [elkInitId(node.id)], targets: [elkNodeId(initialKid.id)] });
    }
    for (const k of kids) children.push(toElk(k));
    return {
      id: elkNodeId(node.id),
      children,
      layoutOptions: {
        ...levelOptions,
        'elk.padding': `[top=${box.headerHeight + 8},left=${CHILD_PAD},bottom=${CHILD_PAD},right=${CHILD_PAD}]`,
        'elk.nodeSize.constraints': '[MINIMUM_SIZE]',
        'elk.nodeSize.minimum': `(${box.width}, ${box.headerHeight + 30})`,
      },
    };
  };

  const root = graph.nodes.find((n) => n.id === graph.rootId)!;
  const rootElk = toElk(root);

  for (const e of graph.edges) {
    const spec = labels.get(e.id)!;
    edges.push({
      id: `e:${e.id}`,
      sources: [elkNodeId(e.source)],
      targets: [elkNodeId(e.target)],
      labels: [
        {
          id: `l:${e.id}`,
          text: e.event,
          width: spec.width,
          height: spec.height,
          // Inline: the edge runs through its (opaque) label, so a label can't be mistaken for a neighbour's.
          layoutOptions: { 'elk.edgeLabels.inline': 'true' },
        },
      ],
    });
  }

  return {
    id: '__statechart__',
    layoutOptions: { ...ROOT_LAYOUT_OPTIONS, ...levelOptions },
    children: [rootElk],
    edges,
  };
}

function collectLayout(result: ElkNode): Layout {
  const boxes: Layout['boxes'] = new Map();
  const edges: Layout['edges'] = new Map();
  const visit = (n: ElkNode): void => {
    boxes.set(n.id, { x: n.x ?? 0, y: n.y ?? 0, width: n.width ?? 0, height: n.height ?? 0 });
    for (const e of (n.edges ?? []) as ElkExtendedEdge[]) {
      const points = (e.sections ?? []).map((s) => [s.startPoint, ...(s.bendPoints ?? []), s.endPoint]);
      edges.set(e.id, { points, labels: e.labels ?? [] });
    }
    for (const c of n.children ?? []) visit(c);
  };
  visit(result);
  return { boxes, edges, width: result.width ?? 0, height: result.height ?? 0 };
}

// ---------------------------------------------------------------------------
// SVG drawing

/** An orthogonal polyline with its corners rounded. */
function roundedPath(points: ElkPoint[], radius = 6): string {
  if (points.length === 0) return '';
  let d = `M${n2(points[0].x)},${n2(points[0].y)}`;
  for (let i = 1; i < points.length; i++) {
    const p = points[i];
    const next = points[i + 1];
    if (!next) {
      d += ` L${n2(p.x)},${n2(p.y)}`;
      break;
    }
    const prev = points[i - 1];
    const lenIn = Math.hypot(p.x - prev.x, p.y - prev.y);
    const lenOut = Math.hypot(next.x - p.x, next.y - p.y);
    const r = Math.min(radius, lenIn / 2, lenOut / 2);
    if (r < 0.5) {
      d += ` L${n2(p.x)},${n2(p.y)}`;
      continue;
    }
    const ax = p.x - ((p.x - prev.x) / lenIn) * r;
    const ay = p.y - ((p.y - prev.y) / lenIn) * r;
    const bx = p.x + ((next.x - p.x) / lenOut) * r;
    const by = p.y + ((next.y - p.y) / lenOut) * r;
    d += ` L${n2(ax)},${n2(ay)} Q${n2(p.x)},${n2(p.y)} ${n2(bx)},${n2(by)}`;
  }
  return d;
}

function styleSheet(p: string, extra: string): string {
  return `
.statechart { font-family: ${FONT_FAMILY}; max-width: 100%; height: auto; }
.statechart text { fill: #1e293b; }
.state > .box { fill: #ffffff; stroke: #64748b; stroke-width: 1.25; }
.state > .inner { fill: none; stroke: #64748b; stroke-width: 1.25; }
.state.compound > .box, .state.parallel > .box { fill: #f8fafc; }
.state.root > .box { fill: #fcfcfd; stroke: #cbd5e1; }
.state.region > .box { stroke-dasharray: 5 3; }
.state > .label { font-size: ${LABEL_SIZE}px; font-weight: 600; }
.state > .detail { font-size: ${DETAIL_SIZE}px; fill: #64748b; }
.state > .divider { stroke: #e2e8f0; stroke-width: 1; }
.state.history > .label { font-size: 11px; }
.state.active > .box { stroke: #2563eb; stroke-width: 2.5; }
.state.active > .inner { stroke: #2563eb; }
.state.active:not(.compound):not(.parallel) > .box { fill: #dbeafe; }
.state.active.compound > .box, .state.active.parallel > .box { fill: #f0f6ff; }
.state.root.active > .box { stroke: #cbd5e1; stroke-width: 1.25; fill: #fcfcfd; }
.state.active > .label { fill: #1d4ed8; }
.state.root.active > .label { fill: #1e293b; }
.initial > circle { fill: #334155; }
.initial > path { fill: none; stroke: #334155; stroke-width: 1.25; }
.transition > path { fill: none; stroke: #94a3b8; stroke-width: 1.3; }
.transition.internal > path { stroke-dasharray: 4 3; }
.transition > .edge-label > rect { fill: #ffffff; fill-opacity: 0.92; stroke: #e2e8f0; stroke-width: 0.75; }
.transition > .edge-label > text { font-size: ${EDGE_SIZE}px; }
.transition > .edge-label > .event { font-weight: 600; fill: #334155; }
.transition > .edge-label > .guard { fill: #7c3aed; }
.transition > .edge-label > .actions { fill: #64748b; }
.transition.active > path { stroke: #2563eb; stroke-width: 2.2; marker-end: url(#${p}arrow-active); }
.transition.active > .edge-label > rect { stroke: #2563eb; fill: #eff6ff; }
.transition.in-state > text { font-size: ${DETAIL_SIZE}px; fill: #475569; }
.transition.in-state.active > text { fill: #2563eb; font-weight: 600; }
#${p}arrow > path { fill: #94a3b8; }
#${p}arrow-init > path { fill: #334155; }
#${p}arrow-active > path { fill: #2563eb; }
${extra}`;
}

function transitionData(e: StatechartEdge): Record<string, string | undefined> {
  return {
    'data-edge-id': e.id,
    'data-event': e.event,
    'data-event-type': e.eventType,
    'data-source': e.source,
    'data-target': e.target,
    'data-guard': e.guard,
  };
}

/**
 * Lays out and draws a statechart graph (see `machineToGraph`) as a standalone
 * SVG document string.
 */
export async function renderGraphSvg(graph: StatechartGraph, options: RenderStatechartOptions = {}): Promise<string> {
  const opts = {
    direction: options.direction ?? 'RIGHT',
    showDetails: options.showDetails ?? true,
    showTransitionActions: options.showTransitionActions ?? false,
    elkOptions: options.elkOptions ?? {},
  } as const;
  const p = options.idPrefix ?? 'sc-';
  const active = new Set(options.activeStateIds ?? []);

  const boxes = new Map<string, Box>();
  // Targetless transitions of compound states would be drawn as loops around the
  // whole container; list them in the container's header instead ("EVENT / action").
  const hasChildren = new Set(graph.nodes.map((n) => n.parentId).filter((id): id is string => id !== null));
  const inStateEdges = new Map<string, StatechartEdge[]>();
  const drawnEdges: StatechartEdge[] = [];
  for (const e of graph.edges) {
    if (e.internal && hasChildren.has(e.source)) {
      let list = inStateEdges.get(e.source);
      if (!list) inStateEdges.set(e.source, (list = []));
      list.push(e);
    } else {
      drawnEdges.push(e);
    }
  }
  const drawnGraph: StatechartGraph = { ...graph, edges: drawnEdges };
  for (const n of graph.nodes) {
    boxes.set(n.id, boxFor(n, n.id === graph.rootId, opts.showDetails, inStateEdges.get(n.id) ?? []));
  }
  const labelSpecs = new Map<string, EdgeLabelSpec>();
  for (const e of drawnEdges) labelSpecs.set(e.id, edgeLabelFor(e, opts.showTransitionActions));

  let result: ElkNode;
  try {
    result = await (await elk()).layout(buildElkGraph(drawnGraph, opts, boxes, labelSpecs));
  } catch (err) {
    // ELK's tuned strategies occasionally trip on unusual hierarchies; a plain
    // layered layout is uglier but always better than no picture.
    if (Object.keys(opts.elkOptions).length) throw err;
    result = await (await elk()).layout(buildElkGraph(drawnGraph, { ...opts, elkOptions: FALLBACK_OPTIONS }, boxes, labelSpecs));
  }
  const layout = collectLayout(result);

  const childrenOf = new Map<string, StatechartNode[]>();
  for (const n of graph.nodes) {
    if (n.parentId === null) continue;
    let list = childrenOf.get(n.parentId);
    if (!list) childrenOf.set(n.parentId, (list = []));
    list.push(n);
  }
  const byId = new Map(graph.nodes.map((n) => [n.id, n] as const));

  const out: string[] = [];
  const width = Math.ceil(layout.width);
  const height = Math.ceil(layout.height);
  const title = options.title ?? graph.machineId;
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg"${attrs({
      class: 'statechart',
      'data-machine-id': graph.machineId,
      width,
      height,
      viewBox: `0 0 ${width} ${height}`,
      role: 'img',
      'aria-label': `Statechart of ${title}`,
    })}>`,
  );
  out.push(`<title>${escapeXml(title)}</title>`);
  // Only `&` and `<` need escaping in element text; CSS child selectors keep their `>`.
  const css = styleSheet(p, options.extraCss ?? '').replace(/&/g, '&amp;').replace(/</g, '&lt;');
  out.push(`<style>${css}</style>`);
  const marker = (id: string) =>
    `<marker id="${escapeXml(p + id)}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" markerHeight="8" markerUnits="userSpaceOnUse" orient="auto"><path d="M0,1 L10,5 L0,9 z"/></marker>`;
  out.push(`<defs>${marker('arrow')}${marker('arrow-init')}${marker('arrow-active')}</defs>`);
  out.push(`<rect width="100%" height="100%" fill="#ffffff"/>`);

  const initialMarkers: string[] = [];

  const drawState = (node: StatechartNode, depth: number): void => {
    const b = layout.boxes.get(elkNodeId(node.id));
    const box = boxes.get(node.id)!;
    if (!b) return;
    const kids = childrenOf.get(node.id) ?? [];
    const parent = node.parentId ? byId.get(node.parentId) : undefined;
    const classes = ['state', node.type];
    if (node.id === graph.rootId) classes.push('root');
    if (parent?.type === 'parallel') classes.push('region');
    if (active.has(node.id)) classes.push('active');
    const indent = '  '.repeat(depth);
    out.push(`${indent}<g${attrs({ class: classes.join(' '), 'data-state-id': node.id, 'data-state-type': node.type })}>`);
    out.push(`${indent}  <title>${escapeXml(node.id)}</title>`);

    if (node.type === 'history') {
      const cx = b.x + b.width / 2;
      const cy = b.y + b.height / 2;
      out.push(`${indent}  <circle class="box"${attrs({ cx, cy, r: b.width / 2 })}/>`);
      out.push(
        `${indent}  <text class="label"${attrs({ x: cx, y: cy + 4, 'text-anchor': 'middle' })}>${node.history === 'deep' ? 'H*' : 'H'}</text>`,
      );
    } else {
      const leaf = kids.length === 0;
      const rx = leaf ? 8 : 10;
      out.push(`${indent}  <rect class="box"${attrs({ x: b.x, y: b.y, width: b.width, height: b.height, rx, ry: rx })}/>`);
      if (node.final) {
        out.push(
          `${indent}  <rect class="inner"${attrs({ x: b.x + 3.5, y: b.y + 3.5, width: b.width - 7, height: b.height - 7, rx: rx - 3, ry: rx - 3 })}/>`,
        );
      }
      // Leaf states without details centre their label; others put it in the header.
      const labelY = leaf && !box.details.length ? b.y + b.height / 2 + 4 : b.y + 17 + (node.final ? 1 : 0);
      if (leaf) {
        out.push(
          `${indent}  <text class="label"${attrs({ x: b.x + b.width / 2, y: labelY, 'text-anchor': 'middle' })}>${escapeXml(box.labelText)}</text>`,
        );
      } else {
        out.push(`${indent}  <text class="label"${attrs({ x: b.x + PAD_X, y: labelY })}>${escapeXml(box.labelText)}</text>`);
      }
      const lineCount = box.details.length + box.inState.length;
      if (lineCount) {
        const inset = leaf ? 6 : 1;
        const divY = b.y + HEADER_H - 2;
        out.push(`${indent}  <line class="divider"${attrs({ x1: b.x + inset, y1: divY, x2: b.x + b.width - inset, y2: divY })}/>`);
        const lineY = (i: number) => b.y + HEADER_H + 10 + i * DETAIL_LINE_H;
        box.details.forEach((line, i) => {
          out.push(`${indent}  <text class="detail"${attrs({ x: b.x + PAD_X, y: lineY(i) })}>${escapeXml(line)}</text>`);
        });
        box.inState.forEach(({ edge, text }, j) => {
          out.push(
            `${indent}  <g${attrs({ class: 'transition internal in-state', ...transitionData(edge) })}><text${attrs({ x: b.x + PAD_X, y: lineY(box.details.length + j) })}>${escapeXml(text)}</text></g>`,
          );
        });
      }
    }

    const dot = layout.boxes.get(elkInitId(node.id));
    const initEdge = layout.edges.get(`ie:${node.id}`);
    if (dot) {
      let svg = `<g${attrs({ class: 'initial', 'data-initial-for': node.id })}>`;
      svg += `<circle${attrs({ cx: dot.x + dot.width / 2, cy: dot.y + dot.height / 2, r: INITIAL_DOT / 2 })}/>`;
      for (const pts of initEdge?.points ?? []) {
        svg += `<path${attrs({ d: roundedPath(pts), 'marker-end': `url(#${p}arrow-init)` })}/>`;
      }
      svg += '</g>';
      initialMarkers.push(svg);
    }

    for (const k of kids) drawState(k, depth + 1);
    out.push(`${indent}</g>`);
  };

  out.push('<g class="states">');
  const root = byId.get(graph.rootId);
  if (root) drawState(root, 1);
  out.push('</g>');
  out.push('<g class="initials">');
  for (const m of initialMarkers) out.push(`  ${m}`);
  out.push('</g>');

  out.push('<g class="transitions">');
  for (const e of drawnEdges) {
    const l = layout.edges.get(`e:${e.id}`);
    const spec = labelSpecs.get(e.id)!;
    const classes = ['transition'];
    if (e.selfLoop) classes.push('self-loop');
    if (e.internal) classes.push('internal');
    out.push(`  <g${attrs({ class: classes.join(' '), ...transitionData(e) })}>`);
    for (const pts of l?.points ?? []) {
      out.push(`    <path${attrs({ d: roundedPath(pts), 'marker-end': `url(#${p}arrow)` })}/>`);
    }
    const lab = l?.labels[0];
    if (lab && lab.x !== undefined && lab.y !== undefined) {
      const w = lab.width ?? spec.width;
      const h = lab.height ?? spec.height;
      out.push(`    <g class="edge-label">`);
      out.push(`      <rect${attrs({ x: lab.x, y: lab.y, width: w, height: h, rx: 3, ry: 3 })}/>`);
      spec.lines.forEach((line, i) => {
        out.push(
          `      <text${attrs({ class: line.cls, x: lab.x! + w / 2, y: lab.y! + 2 + (i + 1) * EDGE_LINE_H - 3.5, 'text-anchor': 'middle' })}>${escapeXml(line.text)}</text>`,
        );
      });
      out.push(`    </g>`);
    }
    out.push('  </g>');
  }
  out.push('</g>');
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/**
 * Draws `machine` as a standalone statechart SVG. Each state is a
 * `<g class="state" data-state-id="…">` and each transition a
 * `<g class="transition" data-event="…" data-source="…" data-target="…">`;
 * toggle the `active` class on them to light the current state.
 */
export async function renderStatechartSvg(machine: AnyStateMachine, opts?: RenderStatechartOptions): Promise<string> {
  return renderGraphSvg(machineToGraph(machine), opts);
}
