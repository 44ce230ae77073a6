// The DAG's shape: the run's templates turned into boxes, clusters and
// edges, laid out left to right by dagre (a compound graph: repeat and
// when blocks and opened sub-workflows are clusters).
//
// The layout depends on the workflow's structure only (its templates, and
// which sub-workflows are open), never on states: every template is drawn
// once, and which pass of a repeat or which branch of a when shows is a
// matter of which scope supplies the states. So it is computed when the
// page opens and again only when a sub-workflow is opened or closed; it is
// cached by that structure.
import dagre from '@dagrejs/dagre';
import type { Graph, GraphNode } from '../api';
import { normKind } from './model';

export type Role = 'step' | 'marker' | 'foreach' | 'spark';

/** A drawn box: a step, a marker, or a for-each block. */
export interface DNode {
  /** `<frame><tmpl>.<index>`: unique in the drawing. */
  id: string;
  name: string;
  /** The graph's kind, as the server names it. */
  kind: string;
  /** The kind, normalised (`subworkflow`). */
  k: string;
  role: Role;
  gn: GraphNode;
  /** The context (see `Ctx`) whose scope holds this node's instance. */
  ctx: string;
  /** The cluster drawn around it. */
  parent: string | null;
  x: number;
  y: number;
  w: number;
  h: number;
}

export type ClusterKind = 'repeat' | 'when' | 'then' | 'otherwise' | 'subflow';

/** A drawn frame: a repeat's body, a when and its branches, an opened
 * sub-workflow. */
export interface DCluster {
  id: string;
  kind: ClusterKind;
  /** The block's (or sub-workflow step's) name. */
  name: string;
  gn: GraphNode;
  /** The context the block's instance is found in. */
  ctx: string;
  parent: string | null;
  /** For a branch: its template. */
  tmpl: number | null;
  depth: number;
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface DEdge {
  id: string;
  from: string;
  to: string;
  ctx: string;
  /** False when the edge ends at a cluster's inner junction. */
  arrow: boolean;
  d: string;
}

export interface Layout {
  key: string;
  nodes: DNode[];
  clusters: DCluster[];
  edges: DEdge[];
  width: number;
  height: number;
}

export const SIZE = {
  step: { w: 184, h: 54 },
  spark: { w: 184, h: 66 },
  foreach: { w: 224, h: 70 },
  marker: { w: 16, h: 16 },
};

/** Graphs have a serial number: a layout's cache key names graphs by it. */
const serials = new WeakMap<Graph, number>();
let nextSerial = 1;
export function serial(g: Graph): number {
  let s = serials.get(g);
  if (s === undefined) serials.set(g, (s = nextSerial++));
  return s;
}

/** The layout's cache key: the graphs drawn and where. */
export function layoutKey(root: Graph, open: string[], childGraph: (id: string) => Graph | null): string {
  const parts = [String(serial(root))];
  for (const id of [...open].sort()) {
    const g = childGraph(id);
    if (g) parts.push(`${id}=${serial(g)}`);
  }
  return parts.join('|');
}

const cache = new Map<string, Layout>();

/** The layout of `root` with the sub-workflows `open` drawn in place
 * (`childGraph` gives an open one's graph, when known). */
export function layout(root: Graph, open: string[], childGraph: (id: string) => Graph | null): Layout {
  const key = layoutKey(root, open, childGraph);
  const hit = cache.get(key);
  if (hit) return hit;
  const l = compute(root, new Set(open), childGraph, key);
  if (cache.size > 24) cache.delete(cache.keys().next().value!);
  cache.set(key, l);
  return l;
}

interface Ends {
  ins: string[];
  outs: string[];
}

function compute(root: Graph, open: Set<string>, childGraph: (id: string) => Graph | null, key: string): Layout {
  const g = new dagre.graphlib.Graph({ compound: true, multigraph: false });
  g.setGraph({ rankdir: 'LR', nodesep: 22, ranksep: 44, edgesep: 28, marginx: 24, marginy: 28 });
  g.setDefaultEdgeLabel(() => ({}));

  const nodes: DNode[] = [];
  const clusters: DCluster[] = [];
  const ports = new Set<string>();
  const edgeCtx = new Map<string, string>();
  const depthOf = new Map<string, number>();

  const addLeaf = (dn: Omit<DNode, 'x' | 'y'>) => {
    g.setNode(dn.id, { width: dn.w, height: dn.h });
    if (dn.parent) g.setParent(dn.id, dn.parent);
    nodes.push({ ...dn, x: 0, y: 0 });
  };
  const addCluster = (c: Omit<DCluster, 'x' | 'y' | 'w' | 'h' | 'depth'>) => {
    g.setNode(c.id, {});
    if (c.parent) g.setParent(c.id, c.parent);
    const depth = c.parent ? (depthOf.get(c.parent) ?? 0) + 1 : 0;
    depthOf.set(c.id, depth);
    clusters.push({ ...c, depth, x: 0, y: 0, w: 0, h: 0 });
  };
  const addPort = (id: string, parent: string) => {
    g.setNode(id, { width: 1, height: 1 });
    g.setParent(id, parent);
    ports.add(id);
  };
  const edge = (a: string, b: string, ctx: string) => {
    if (a === b) return;
    g.setEdge(a, b);
    edgeCtx.set(`${a}\u0000${b}`, ctx);
  };

  // Draws template `t` of `graph`; returns its entry and exit points.
  const draw = (graph: Graph, t: number, frame: string, ctx: string, parent: string | null, guard: number): Ends => {
    const tm = graph.tmpls[t];
    if (!tm || guard > 24) return { ins: [], outs: [] };
    const ent: string[][] = [];
    const ext: string[][] = [];
    tm.nodes.forEach((gn, i) => {
      const id = `${frame}${t}.${i}`;
      const k = normKind(gn.kind);
      if (k === 'repeat' && gn.body !== null && graph.tmpls[gn.body]) {
        addCluster({ id, kind: 'repeat', name: gn.name, gn, ctx, parent, tmpl: gn.body });
        const pin = `${id}>in`;
        const pout = `${id}>out`;
        addPort(pin, id);
        addPort(pout, id);
        const inner = draw(graph, gn.body, frame, id, id, guard + 1);
        link(pin, pout, inner, id);
        ent.push([pin]);
        ext.push([pout]);
      } else if (k === 'when' && (gn.then !== null || gn.otherwise !== null)) {
        addCluster({ id, kind: 'when', name: gn.name, gn, ctx, parent, tmpl: null });
        const pin = `${id}>in`;
        const pout = `${id}>out`;
        addPort(pin, id);
        addPort(pout, id);
        for (const [which, bt] of [['then', gn.then], ['otherwise', gn.otherwise]] as const) {
          if (bt === null || !graph.tmpls[bt]) continue;
          const bid = `${id}:${which}`;
          addCluster({ id: bid, kind: which, name: gn.name, gn, ctx, parent: id, tmpl: bt });
          const inner = draw(graph, bt, frame, bid, bid, guard + 1);
          if (!inner.ins.length) {
            // An empty branch still shows as a frame on the way through.
            const p = `${bid}>pass`;
            addPort(p, bid);
            inner.ins.push(p);
            inner.outs.push(p);
          }
          link(pin, pout, inner, bid);
        }
        ent.push([pin]);
        ext.push([pout]);
      } else if (k === 'subworkflow' && open.has(id) && childGraph(id)) {
        const cg = childGraph(id)!;
        const cid = `${id}#sub`;
        addCluster({ id: cid, kind: 'subflow', name: gn.name, gn, ctx, parent, tmpl: null });
        addLeaf({ id, name: gn.name, kind: gn.kind, k, role: 'step', gn, ctx, parent: cid, ...wh('step') });
        const inner = draw(cg, 0, `${id}>`, cid, cid, guard + 1);
        for (const s of inner.ins) edge(id, s, cid);
        ent.push([id]);
        ext.push(inner.outs.length ? inner.outs : [id]);
      } else {
        const role: Role = k === 'marker' ? 'marker' : k === 'for-each' ? 'foreach' : k === 'spark' ? 'spark' : 'step';
        addLeaf({ id, name: gn.name, kind: gn.kind, k, role, gn, ctx, parent, ...wh(role) });
        ent.push([id]);
        ext.push([id]);
      }
    });
    const hasSucc = new Array(tm.nodes.length).fill(false);
    tm.preds.forEach((ps, j) => {
      for (const p of ps ?? []) {
        if (!ext[p] || !ent[j]) continue;
        hasSucc[p] = true;
        for (const a of ext[p]) for (const b of ent[j]) edge(a, b, ctx);
      }
    });
    const ins: string[] = [];
    const outs: string[] = [];
    tm.nodes.forEach((_, i) => {
      if (!(tm.preds[i] ?? []).length) ins.push(...ent[i]);
      if (!hasSucc[i]) outs.push(...ext[i]);
    });
    return { ins, outs };
  };
  const link = (pin: string, pout: string, inner: Ends, ctx: string) => {
    if (!inner.ins.length) {
      edge(pin, pout, ctx);
      return;
    }
    for (const s of inner.ins) edge(pin, s, ctx);
    for (const s of inner.outs) edge(s, pout, ctx);
  };

  draw(root, 0, '', '', null, 0);
  dagre.layout(g);

  for (const n of nodes) {
    const d = g.node(n.id);
    n.x = (d.x ?? 0) - n.w / 2;
    n.y = (d.y ?? 0) - n.h / 2;
  }
  for (const c of clusters) {
    const d = g.node(c.id);
    c.w = d.width ?? 0;
    c.h = d.height ?? 0;
    c.x = (d.x ?? 0) - c.w / 2;
    c.y = (d.y ?? 0) - c.h / 2;
  }
  const edges: DEdge[] = [];
  for (const e of g.edges()) {
    const pts = g.edge(e)?.points ?? [];
    if (!pts.length) continue;
    edges.push({
      id: `${e.v}->${e.w}`,
      from: e.v,
      to: e.w,
      ctx: edgeCtx.get(`${e.v}\u0000${e.w}`) ?? '',
      arrow: !ports.has(e.w),
      d: curve(pts),
    });
  }
  const gl = g.graph();
  return { key, nodes, clusters, edges, width: gl.width ?? 0, height: gl.height ?? 0 };
}

function wh(role: Role): { w: number; h: number } {
  return { ...SIZE[role] };
}

/** A smooth path through dagre's points: a uniform B-spline, drawn as
 * d3's curveBasis draws it. */
function curve(p: { x: number; y: number }[]): string {
  const f = (n: number) => Math.round(n * 10) / 10;
  let d = '';
  let x0 = NaN, y0 = NaN, x1 = NaN, y1 = NaN;
  let state = 0;
  const bez = (x: number, y: number) => {
    d += `C${f((2 * x0 + x1) / 3)},${f((2 * y0 + y1) / 3)},${f((x0 + 2 * x1) / 3)},${f((y0 + 2 * y1) / 3)},${f((x0 + 4 * x1 + x) / 6)},${f((y0 + 4 * y1 + y) / 6)}`;
  };
  const point = (x: number, y: number) => {
    if (state === 0) {
      state = 1;
      d += `M${f(x)},${f(y)}`;
    } else if (state === 1) {
      state = 2;
    } else {
      if (state === 2) {
        state = 3;
        d += `L${f((5 * x0 + x1) / 6)},${f((5 * y0 + y1) / 6)}`;
      }
      bez(x, y);
    }
    x0 = x1; x1 = x; y0 = y1; y1 = y;
  };
  for (const q of p) point(q.x, q.y);
  if (state === 3) point(x1, y1);
  if (state >= 2) d += `L${f(x1)},${f(y1)}`;
  return d;
}
