// Where an artifact came from and what used it, left to right: artifacts
// (boxes) and the step runs between them (pills). Every node is a link.
import { useMemo } from 'preact/hooks';
import { Graph, layout, type EdgeLabel, type GraphLabel, type NodeLabel } from '@dagrejs/dagre';
import type { ArtifactView, LineageEdge } from '../api';
import { clip, short } from '../format';
import { href } from '../router';

export interface LineageGraphProps {
  /** The page's artifact. */
  current: ArtifactView;
  edges: LineageEdge[];
  /** What is known of the artifacts the edges name (missing: shown by id). */
  artifacts: Map<string, ArtifactView>;
}

type Node =
  | { kind: 'artifact'; id: string; title: string; sub: string; current: boolean }
  | { kind: 'step'; id: string; run: string; node: number; title: string; sub: string };

const CHAR = 7;
const MAX_LABEL = 36;

function stepKey(run: string, node: number): string {
  return `step:${run}:${node}`;
}

export function LineageGraph({ current, edges, artifacts }: LineageGraphProps) {
  const laid = useMemo(() => {
    const nodes = new Map<string, Node>();
    const links = new Set<string>();
    const addArtifact = (id: string) => {
      if (nodes.has(id)) return;
      const a = id === current.id ? current : artifacts.get(id);
      nodes.set(id, {
        kind: 'artifact',
        id,
        title: clip(a?.name ?? id, MAX_LABEL),
        sub: a ? `${short(a.id, 10)} · ${a.kind}` : 'artifact',
        current: id === current.id,
      });
    };
    addArtifact(current.id);
    for (const e of edges) {
      addArtifact(e.from);
      addArtifact(e.to);
      const k = stepKey(e.run, e.node);
      if (!nodes.has(k)) {
        // The step that wrote `to` is the step run in between.
        const out = artifacts.get(e.to) ?? (e.to === current.id ? current : undefined);
        nodes.set(k, {
          kind: 'step',
          id: k,
          run: e.run,
          node: e.node,
          title: clip(out?.step_key ?? out?.step ?? `node ${e.node}`, MAX_LABEL),
          sub: short(e.run, 20),
        });
      }
      links.add(`${e.from}\u0000${k}`);
      links.add(`${k}\u0000${e.to}`);
    }

    const g = new Graph<GraphLabel, NodeLabel, EdgeLabel>();
    g.setGraph({ rankdir: 'LR', nodesep: 14, ranksep: 40, marginx: 10, marginy: 10 });
    g.setDefaultEdgeLabel(() => ({}));
    for (const n of nodes.values()) {
      const chars = Math.max(n.title.length, n.sub.length);
      g.setNode(n.id, {
        width: Math.max(n.kind === 'artifact' ? 110 : 90, chars * CHAR + 24),
        height: n.kind === 'artifact' ? 40 : 36,
      });
    }
    for (const l of links) {
      const [v, w] = l.split('\u0000') as [string, string];
      g.setEdge(v, w);
    }
    layout(g);
    const gl = g.graph();
    return {
      width: Math.ceil(gl.width ?? 200),
      height: Math.ceil(gl.height ?? 60),
      nodes: [...nodes.values()].map((n) => ({ n, l: g.node(n.id) })),
      edges: g.edges().map((e) => ({ key: `${e.v}>${e.w}`, points: g.edge(e).points ?? [] })),
    };
  }, [current, edges, artifacts]);

  return (
    <div class="lineage-scroll">
      <svg
        class="lineage"
        data-testid="lineage-graph"
        width={laid.width}
        height={laid.height}
        viewBox={`0 0 ${laid.width} ${laid.height}`}
        role="group"
        aria-label={`lineage of ${current.name}`}
      >
        <defs>
          <marker id="lineage-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto">
            <path d="M0,0 L10,5 L0,10 z" fill="#8a94a0" />
          </marker>
        </defs>
        {laid.edges.map((e) => (
          <path key={e.key} class="lineage-edge" d={pathOf(e.points)} marker-end="url(#lineage-arrow)" />
        ))}
        {laid.nodes.map(({ n, l }) => {
          const x = (l.x ?? 0) - l.width / 2;
          const y = (l.y ?? 0) - l.height / 2;
          if (n.kind === 'artifact') {
            return (
              <a key={n.id} href={href('artifacts', n.id)} aria-label={`artifact ${n.title} (${n.id})`}>
                <g
                  data-testid="lineage-node"
                  data-artifact-id={n.id}
                  data-current={n.current ? 'true' : undefined}
                  class={`lineage-node artifact${n.current ? ' current' : ''}`}
                  transform={`translate(${x},${y})`}
                >
                  <title>{`${n.title}\n${n.id}`}</title>
                  <rect width={l.width} height={l.height} rx={4} />
                  <text x={10} y={16} class="t1">{n.title}</text>
                  <text x={10} y={31} class="t2">{n.sub}</text>
                </g>
              </a>
            );
          }
          return (
            <a
              key={n.id}
              href={`${href('runs', n.run)}?node=${n.node}`}
              aria-label={`step ${n.title} of run ${n.run}`}
            >
              <g data-testid="lineage-step" class="lineage-node step" transform={`translate(${x},${y})`}>
                <title>{`step ${n.title}\nrun ${n.run}, node ${n.node}`}</title>
                <rect width={l.width} height={l.height} rx={l.height / 2} />
                <text x={l.width / 2} y={15} class="t1" text-anchor="middle">{n.title}</text>
                <text x={l.width / 2} y={28} class="t2" text-anchor="middle">{n.sub}</text>
              </g>
            </a>
          );
        })}
      </svg>
    </div>
  );
}

function pathOf(pts: { x: number; y: number }[]): string {
  if (!pts.length) return '';
  const [first, ...rest] = pts;
  if (rest.length === 0) return `M${first!.x},${first!.y}`;
  // A smooth curve through dagre's points (a quadratic per middle point).
  let d = `M${first!.x.toFixed(1)},${first!.y.toFixed(1)}`;
  for (let i = 0; i < rest.length - 1; i++) {
    const c = rest[i]!;
    const n = rest[i + 1]!;
    const mx = (c.x + n.x) / 2;
    const my = (c.y + n.y) / 2;
    d += ` Q${c.x.toFixed(1)},${c.y.toFixed(1)} ${mx.toFixed(1)},${my.toFixed(1)}`;
  }
  const last = rest[rest.length - 1]!;
  d += ` L${last.x.toFixed(1)},${last.y.toFixed(1)}`;
  return d;
}
