// The run's DAG as SVG: boxes keyed by their place in the drawing, so that
// a state change only changes a box's attributes (its layout never moves);
// pan by dragging, zoom with the wheel, fit to the screen.
import { Component } from 'preact';
import { useEffect, useLayoutEffect, useRef } from 'preact/hooks';
import type { NodeState, NodeView, ScopeView } from '../api';
import { href } from '../router';
import { duration } from '../format';
import type { DCluster, DNode, Layout } from './layout';
import { type ForEachAgg, type RunModel, isTerminal, STATES } from './model';
import { KIND_ICON, KIND_LABEL, memoFrom, short, signalOf, sparkFacts, sparkShare, sparkText } from './facts';

/** Where a part of the drawing takes its states from: a run and a scope
 * of it (a repeat's selected pass, a when's branch, a child run). */
export interface Ctx {
  model: RunModel | null;
  scope: number | null;
  dim: boolean;
  /** A branch its `when` did not take. */
  notTaken: boolean;
  /** The block ended without running this part (it was skipped, failed
   * or cancelled first): its nodes show as skipped. */
  gone: boolean;
  /** A repeat's passes and the one shown. */
  passes?: ScopeView[];
  pass?: number;
  /** The block (or sub-workflow step) instance behind a cluster. */
  inst?: NodeView;
}

/** Resolves every cluster's context, parents first: O(clusters). */
export function resolve(lay: Layout, root: RunModel, models: Map<string, RunModel>, passSel: Map<string, number>): Map<string, Ctx> {
  const out = new Map<string, Ctx>();
  out.set('', { model: root, scope: 0, dim: false, notTaken: false, gone: false });
  const none: Ctx = { model: null, scope: null, dim: false, notTaken: false, gone: false };
  for (const c of lay.clusters) {
    const p = out.get(c.ctx) ?? none;
    const inst = p.model?.nodeIn(p.scope, c.name);
    if (c.kind === 'repeat') {
      const passes = inst && p.model ? p.model.scopesOf(inst.id) : [];
      let sel = passSel.get(c.id);
      if (sel === undefined || sel >= passes.length) sel = passes.length - 1;
      const gone = p.gone || p.notTaken || (!passes.length && !!inst && isTerminal(inst.state));
      out.set(c.id, { model: p.model, scope: sel >= 0 ? passes[sel].id : null, dim: p.dim || gone, notTaken: p.notTaken, gone, passes, pass: sel, inst });
    } else if (c.kind === 'then' || c.kind === 'otherwise') {
      const scopes = inst && p.model ? p.model.scopesOf(inst.id) : [];
      const sc = scopes.find((s) => s.tmpl === c.tmpl);
      const decided = !!inst && (scopes.length > 0 || inst.state === 'skipped' && inst.data?.reason?.why === 'condition_false' || typeof inst.data?.note === 'string' && /` is (true|false)$/.test(inst.data.note));
      const notTaken = p.notTaken || (decided && !sc);
      const gone = p.gone || notTaken || (!sc && !!inst && isTerminal(inst.state));
      out.set(c.id, { model: p.model, scope: sc ? sc.id : null, dim: p.dim || gone, notTaken, gone, inst });
    } else if (c.kind === 'subflow') {
      const child = inst && p.model ? p.model.childOf(inst) : null;
      const m = child ? models.get(child) ?? null : null;
      out.set(c.id, { model: m, scope: m ? 0 : null, dim: p.dim, notTaken: p.notTaken, gone: p.gone, inst });
    } else {
      out.set(c.id, { ...p, inst });
    }
  }
  return out;
}

const TOOLS_H = 34;

export interface DagProps {
  lay: Layout;
  ctxs: Map<string, Ctx>;
  version: number;
  now: number;
  /** The selected node: `<run>|<key>`. */
  selected: string | null;
  open: Set<string>;
  onNode: (dn: DNode, ctx: Ctx, inst: NodeView | undefined) => void;
  onCluster: (c: DCluster, ctx: Ctx) => void;
  onToggle: (id: string) => void;
  onPass: (cluster: string, pass: number) => void;
  onPainted?: () => void;
}

export function Dag(p: DagProps) {
  const svg = useRef<SVGSVGElement>(null);
  const vp = useRef<SVGGElement>(null);
  const view = useRef({ x: 0, y: 0, k: 1, fitted: '', touched: false, lastW: 0, lastH: 0 });
  const drag = useRef<{ x: number; y: number; vx: number; vy: number; moved: boolean; id: number } | null>(null);
  const suppress = useRef(false);
  const layRef = useRef(p.lay);
  layRef.current = p.lay;

  const apply = () => {
    const v = view.current;
    vp.current?.setAttribute('transform', `translate(${v.x.toFixed(1)},${v.y.toFixed(1)}) scale(${v.k.toFixed(4)})`);
  };
  /** Fits the drawing to the space: whole on the Fit button; on the first
   * view and after a resize no smaller than a readable scale (a wide DAG
   * is then panned), a resize keeping the selected node (or the view's
   * centre) in sight. */
  const fit = (mode: 'initial' | 'resize' | 'button') => {
    const el = svg.current;
    if (!el) return;
    const b = el.getBoundingClientRect();
    // The tools bar at the bottom keeps its strip: nothing is fitted under it.
    const r = { width: b.width, height: Math.max(40, b.height - TOOLS_H) };
    const w = Math.max(1, layRef.current.width), h = Math.max(1, layRef.current.height);
    const v = view.current;
    let k = Math.min(r.width / w, r.height / h, 1.25 / 0.96) * 0.96;
    const min = mode === 'button' ? 0.05 : 0.4;
    if (k >= min) {
      v.k = k;
      v.x = (r.width - w * k) / 2;
      v.y = (r.height - h * k) / 2;
    } else if (mode === 'resize' && v.fitted) {
      k = min;
      // What to keep in sight: the selected box, else the view's centre.
      let cx = (v.lastW / 2 - v.x) / v.k;
      let cy = (v.lastH / 2 - v.y) / v.k;
      const sel = vp.current?.querySelector('g.dn.sel');
      const m = sel && /translate\(([-\d.]+),([-\d.]+)\)/.exec(sel.getAttribute('transform') ?? '');
      if (m && sel) {
        const bb = (sel as SVGGraphicsElement).getBBox();
        cx = +m[1] + bb.x + bb.width / 2;
        cy = +m[2] + bb.y + bb.height / 2;
      }
      v.k = k;
      v.x = r.width / 2 - cx * k;
      v.y = r.height / 2 - cy * k;
    } else {
      k = min;
      v.k = k;
      v.x = 8;
      v.y = h * k <= r.height ? (r.height - h * k) / 2 : 8;
    }
    v.lastW = r.width;
    v.lastH = r.height;
    apply();
  };

  useLayoutEffect(() => {
    if (view.current.fitted === '' && p.lay.nodes.length) {
      view.current.fitted = p.lay.key;
      fit('initial');
      p.onPainted?.();
    } else if (view.current.fitted && view.current.fitted !== p.lay.key && !view.current.touched) {
      // The drawing grew or shrank (a sub-workflow opened or closed).
      view.current.fitted = p.lay.key;
      fit('resize');
    } else apply();
  }, [p.lay]);

  // While the user has not moved the view, it follows the space it has
  // (a panel or the drawer opening): the whole DAG stays in sight.
  useEffect(() => {
    const el = svg.current;
    if (!el) return;
    let last = '';
    const ro = new ResizeObserver(() => {
      const r = el.getBoundingClientRect();
      const k = `${Math.round(r.width)}x${Math.round(r.height)}`;
      if (k === last) return;
      last = k;
      if (!view.current.touched && view.current.fitted) fit('resize');
    });
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  useEffect(() => {
    const el = svg.current;
    if (!el) return;
    const wheel = (e: WheelEvent) => {
      e.preventDefault();
      view.current.touched = true;
      const r = el.getBoundingClientRect();
      const mx = e.clientX - r.left, my = e.clientY - r.top;
      const v = view.current;
      const dy = e.deltaMode === 1 ? e.deltaY * 16 : e.deltaY;
      const k = Math.max(0.05, Math.min(4, v.k * Math.exp(-dy * 0.0015)));
      v.x = mx - ((mx - v.x) * k) / v.k;
      v.y = my - ((my - v.y) * k) / v.k;
      v.k = k;
      apply();
    };
    el.addEventListener('wheel', wheel, { passive: false });
    return () => el.removeEventListener('wheel', wheel);
  }, []);

  const down = (e: PointerEvent) => {
    if (e.button !== 0) return;
    const v = view.current;
    drag.current = { x: e.clientX, y: e.clientY, vx: v.x, vy: v.y, moved: false, id: e.pointerId };
  };
  const move = (e: PointerEvent) => {
    const d = drag.current;
    if (!d) return;
    const dx = e.clientX - d.x, dy = e.clientY - d.y;
    if (!d.moved && Math.abs(dx) + Math.abs(dy) < 4) return;
    if (!d.moved) {
      d.moved = true;
      view.current.touched = true;
      svg.current?.setPointerCapture(d.id);
      svg.current?.classList.add('panning');
    }
    view.current.x = d.vx + dx;
    view.current.y = d.vy + dy;
    apply();
  };
  const up = () => {
    const d = drag.current;
    drag.current = null;
    svg.current?.classList.remove('panning');
    if (d?.moved) {
      suppress.current = true;
      setTimeout(() => (suppress.current = false), 0);
    }
  };
  const zoomBy = (f: number) => {
    const el = svg.current;
    if (!el) return;
    view.current.touched = true;
    const r = el.getBoundingClientRect();
    const v = view.current;
    const k = Math.max(0.05, Math.min(4, v.k * f));
    v.x = r.width / 2 - ((r.width / 2 - v.x) * k) / v.k;
    v.y = r.height / 2 - ((r.height / 2 - v.y) * k) / v.k;
    v.k = k;
    apply();
  };
  const guard = (fn: () => void) => (e: Event) => {
    e.stopPropagation();
    if (suppress.current) return;
    fn();
  };

  const { lay, ctxs } = p;
  return (
    <div class="dag-wrap">
      <svg
        ref={svg}
        class="dag"
        data-testid="dag"
        onPointerDown={down}
        onPointerMove={move}
        onPointerUp={up}
        onPointerCancel={up}
      >
        <defs>
          <marker id="kaon-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
            <path d="M0,0 L10,5 L0,10 z" class="arrow" />
          </marker>
        </defs>
        <g ref={vp}>
          {lay.clusters.map((c) => (
            <ClusterG key={c.id} c={c} ctx={ctxs.get(c.id)} parentCtx={ctxs.get(c.ctx)} version={p.version} onCluster={p.onCluster} onPass={p.onPass} guard={guard} />
          ))}
          <g class="edges">
            {lay.edges.map((e) => {
              const c = ctxs.get(e.ctx);
              return <path key={e.id} d={e.d} class={c?.dim ? 'edge dim' : 'edge'} marker-end={e.arrow ? 'url(#kaon-arrow)' : undefined} />;
            })}
          </g>
          {lay.nodes.map((dn) => {
            const ctx = ctxs.get(dn.ctx);
            const inst = ctx?.model?.nodeIn(ctx.scope, dn.name);
            const v = nodeView(dn, ctx, inst, p.now, p.open.has(dn.id));
            return (
              <NodeG
                key={dn.id}
                dn={dn}
                v={v}
                selected={!!p.selected && p.selected === `${ctx?.model?.id ?? ''}|${v.key}`}
                onClick={guard(() => ctx && p.onNode(dn, ctx, inst))}
                onToggle={guard(() => p.onToggle(dn.id))}
              />
            );
          })}
        </g>
      </svg>
      <div class="dag-tools">
        <button title="Fit to screen" onClick={() => { view.current.touched = false; fit('button'); }}>Fit</button>
        <button title="Zoom in" onClick={() => zoomBy(1.25)}>+</button>
        <button title="Zoom out" onClick={() => zoomBy(0.8)}>−</button>
        <span class="legend">
          {(['pending', 'waiting', 'ready', 'running', 'succeeded', 'memoized', 'failed', 'skipped'] as NodeState[]).map((s) => (
            <span key={s} class={`lg st-${s}`}><i />{s}</span>
          ))}
        </span>
      </div>
    </div>
  );
}

/** What a box shows; `sig` changes whenever anything shown does. */
interface NodeV {
  sig: string;
  state: NodeState;
  key: string;
  dim: boolean;
  notTaken: boolean;
  meta: string;
  attempts: number;
  title: string;
  memo: { run: string; key: string } | null;
  spark: { share: number | null; text: string; ui: string | null; version: string | null } | null;
  progress: number | null;
  agg: { counts: string; segs: [string, number][]; total: number; items: number } | null;
  child: string | null;
  subOpen: boolean;
}

function nodeView(dn: DNode, ctx: Ctx | undefined, n: NodeView | undefined, now: number, subOpen: boolean): NodeV {
  const state: NodeState = n?.state ?? (ctx?.gone ? 'skipped' : 'pending');
  const model = ctx?.model ?? null;
  const key = n?.key ?? (model ? model.keyOf(dn.name, ctx?.scope) : dn.name);
  let meta = '';
  const dur = n?.started_ms ? duration((n.finished_ms ?? (isTerminal(n.state) ? n.started_ms : now)) - n.started_ms) : '';
  if (ctx?.notTaken) meta = 'not taken';
  else if (ctx?.gone && !n) meta = 'did not run';
  else if (n) {
    meta = dur;
    if (dn.k === 'wait' && !isTerminal(n.state)) {
      const s = signalOf(n);
      meta = s ? `awaits signal ${s}` : n.data?.note ?? meta;
    } else if (n.state === 'failed') {
      const ex = n.data?.exit_code ?? n.data?.failure?.exit_code;
      meta = [dur, typeof ex === 'number' ? `exit ${ex}` : n.data?.failure?.class ?? ''].filter(Boolean).join(' · ');
    } else if (n.state === 'retrying') meta = `retrying · attempt ${n.attempt + 1}`;
  }
  const memo = n?.state === 'memoized' ? memoFrom(n) : null;
  let spark: NodeV['spark'] = null;
  if (dn.k === 'spark') {
    const f = sparkFacts(n?.data);
    spark = { share: sparkShare(f), text: sparkText(f), ui: f.ui, version: dn.gn.spark };
    if (n && !isTerminal(n.state) && spark.text) meta = [dur, spark.text.replace('stages ', 'stage ')].filter(Boolean).join(' · ');
  }
  const pct = n?.data?.progress?.percent;
  const progress = dn.k !== 'spark' && typeof pct === 'number' && !isTerminal(state) ? Math.max(0, Math.min(1, pct / 100)) : null;
  let agg: NodeV['agg'] = null;
  if (dn.role === 'foreach') {
    const a = n && model ? model.aggs.get(n.id) : undefined;
    agg = aggView(a, n);
  }
  const child = dn.k === 'subworkflow' && n && model ? model.childOf(n) : null;
  const title = [
    dn.name + (key !== dn.name ? `\n${key}` : ''),
    `${KIND_LABEL[dn.k] ?? dn.kind} · ${state}${n && n.attempt > 1 ? ` · attempt ${n.attempt}` : ''}`,
    dn.gn.description ?? '',
    n?.data?.note ?? '',
  ].filter(Boolean).join('\n');
  const v: NodeV = {
    sig: '',
    state,
    key,
    dim: !!ctx?.dim,
    notTaken: !!ctx?.notTaken,
    meta,
    attempts: n?.attempt ?? 0,
    title,
    memo,
    spark,
    progress,
    agg,
    child,
    subOpen,
  };
  v.sig = JSON.stringify([state, key, v.dim, meta, v.attempts, title, memo, spark, progress, agg?.counts, agg?.segs, child, subOpen]);
  return v;
}

const SEG_STATES: [string, NodeState[]][] = [
  ['succeeded', ['succeeded']],
  ['memoized', ['memoized']],
  ['running', ['running', 'starting', 'retrying']],
  ['failed', ['failed']],
  ['waiting', ['waiting']],
  ['ready', ['ready']],
  ['cancelled', ['cancelled', 'skipped']],
];

/** A for-each's counts: `997 ✓ 3 ✗ / 1000` and its stacked bar. */
export function aggView(a: ForEachAgg | undefined, n: NodeView | undefined): NonNullable<NodeV['agg']> {
  const c = (s: NodeState) => (a ? a.counts[STATES.indexOf(s)] : 0);
  const items = a ? a.list.length : 0;
  const total = Math.max(typeof n?.data?.items === 'number' ? n.data.items : 0, items);
  const done = c('succeeded');
  const run = c('running') + c('starting') + c('retrying');
  const failed = c('failed');
  const memo = c('memoized');
  const wait = c('waiting');
  const queued = c('ready');
  const stopped = c('cancelled') + c('skipped');
  const pending = Math.max(0, total - done - run - failed - memo - wait - queued - stopped);
  const parts = [`${done} ✓`];
  if (memo) parts.push(`${memo} ↺`);
  if (run) parts.push(`${run} ▶`);
  if (failed) parts.push(`${failed} ✗`);
  if (wait) parts.push(`${wait} ◷`);
  if (queued) parts.push(`${queued} ◌`);
  if (stopped) parts.push(`${stopped} ⊘`);
  if (pending && pending !== total) parts.push(`${pending} …`);
  const segs: [string, number][] = [];
  for (const [name, sts] of SEG_STATES) {
    const k = sts.reduce((s, x) => s + c(x), 0);
    if (k) segs.push([name, k]);
  }
  return { counts: `${parts.join(' ')} / ${total}`, segs, total, items };
}

interface NodeGProps {
  dn: DNode;
  v: NodeV;
  selected: boolean;
  onClick: (e: Event) => void;
  onToggle: (e: Event) => void;
}

/** One box. It re-renders only when what it shows changed. */
class NodeG extends Component<NodeGProps> {
  shouldComponentUpdate(np: NodeGProps) {
    return np.v.sig !== this.props.v.sig || np.selected !== this.props.selected || np.dn !== this.props.dn;
  }
  // The latest props' handlers (Preact keeps a skipped update's props).
  private click = (e: Event) => this.props.onClick(e);
  private toggle = (e: Event) => this.props.onToggle(e);
  render() {
    const { dn, v, selected } = this.props;
    const cls = `dn st-${v.state} role-${dn.role} k-${dn.k}${v.dim ? ' dim' : ''}${selected ? ' sel' : ''}${v.state === 'memoized' ? ' memo' : ''}`;
    const attrs = {
      'data-testid': 'dag-node',
      'data-name': dn.name,
      'data-kind': dn.kind,
      'data-state': v.state,
      'data-key': v.key,
      class: cls,
      transform: `translate(${dn.x},${dn.y})`,
      onClick: this.click,
    };
    if (dn.role === 'marker') {
      const r = dn.w / 2;
      return (
        <g {...attrs}>
          <title>{v.title}</title>
          <circle class="mk" cx={r} cy={r} r={r - 1} />
          {dn.name === 'end' && <circle class="mk-in" cx={r} cy={r} r={r - 5} />}
          <text class="mk-label" x={r} y={dn.h + 11}>{dn.name}</text>
        </g>
      );
    }
    const w = dn.w, h = dn.h;
    const icon = KIND_ICON[dn.k] ?? '·';
    if (dn.role === 'foreach' && v.agg) {
      const a = v.agg;
      const vars = dn.gn.vars?.length ? dn.gn.vars.join(' × ') : '';
      let x = 0;
      const bw = w - 20;
      return (
        <g {...attrs}>
          <title>{v.title}</title>
          <rect class="stack" x={5} y={5} width={w} height={h} rx={6} />
          <rect class="box" width={w} height={h} rx={6} />
          <rect class="stripe" width={4} height={h} rx={2} />
          <text class="kind" x={12} y={15}>{icon} for each {short(vars, 22)}</text>
          <text class="state-l" x={w - 8} y={15}>{v.state}</text>
          <text class="name" x={12} y={32}>{short(dn.name, 26)}</text>
          <text class="counts" data-testid="foreach-counts" x={12} y={48}>{a.counts}</text>
          <g class="fbar" transform={`translate(10,${h - 14})`}>
            <rect class="fbar-bg" width={bw} height={6} rx={3} />
            {a.total > 0 && a.segs.map(([s, k]) => {
              const sw = (k / a.total) * bw;
              const el = <rect key={s} class={`seg st-${s}`} x={x} width={Math.max(sw, 0.5)} height={6} />;
              x += sw;
              return el;
            })}
          </g>
        </g>
      );
    }
    const right = v.attempts > 1 ? `×${v.attempts}` : '';
    return (
      <g {...attrs}>
        <title>{v.title}</title>
        <rect class="box" width={w} height={h} rx={6} />
        <rect class="stripe" width={4} height={h} rx={2} />
        <text class="kind" x={12} y={15}>
          {icon} {KIND_LABEL[dn.k] ?? dn.kind}
          {v.spark?.version ? ` ${v.spark.version}` : ''}
        </text>
        <text class="state-l" x={w - 8} y={15}>
          {v.state === 'memoized' ? '↺ ' : ''}
          {v.state}
          {right ? ` ${right}` : ''}
        </text>
        <text class="name" x={12} y={33}>{short(dn.name, 24)}</text>
        {v.memo ? (
          <a href={href('runs', v.memo.run)} data-testid="memo-from" class="memo-from" onClick={(e) => e.stopPropagation()}>
            <text x={12} y={48}>from {short(v.memo.run, 24)}</text>
          </a>
        ) : (
          <text class="meta" x={12} y={48}>{short(v.meta, dn.k === 'subworkflow' ? 16 : 28)}</text>
        )}
        {v.progress !== null && (
          <g class="pbar" transform={`translate(4,${h - 4})`}>
            <rect class="pbar-fill" width={(w - 8) * v.progress} height={3} />
          </g>
        )}
        {v.spark && (
          <g data-testid="spark-progress" class="spark-bar" data-text={v.spark.text} transform={`translate(12,${h - 13})`}>
            <rect class="pbar-bg" width={v.spark.ui ? w - 78 : w - 24} height={6} rx={3} />
            <rect class="pbar-fill" width={(v.spark.ui ? w - 78 : w - 24) * (v.spark.share ?? (v.state === 'succeeded' ? 1 : 0))} height={6} rx={3} />
            <title>{v.spark.text || 'no Spark progress yet'}</title>
          </g>
        )}
        {v.spark?.ui && (
          <a href={v.spark.ui} target="_blank" rel="noopener noreferrer" data-testid="spark-ui-link" class="spark-ui" onClick={(e) => e.stopPropagation()}>
            <text x={w - 8} y={h - 7}>Spark UI ↗</text>
          </a>
        )}
        {dn.k === 'subworkflow' && (
          <g class="sub-tools">
            <g
              data-testid="subflow-toggle"
              class={v.child ? 'tog' : 'tog off'}
              data-open={v.subOpen ? 'true' : 'false'}
              onClick={v.child || v.subOpen ? this.toggle : (e: Event) => e.stopPropagation()}
              transform={`translate(${w - 62},${h - 19})`}
            >
              <rect width={54} height={15} rx={3} />
              <text x={27} y={11}>{v.subOpen ? '▾ close' : '▸ open'}</text>
              <title>{v.child ? (v.subOpen ? 'Close the child run' : 'Open the child run here') : 'The child run has not started'}</title>
            </g>
            {v.child && (
              <a href={href('runs', v.child)} class="child-link" onClick={(e) => e.stopPropagation()}>
                <text x={w - 68} y={h - 8}>run ↗</text>
                <title>{v.child}</title>
              </a>
            )}
          </g>
        )}
      </g>
    );
  }
}

interface ClusterGProps {
  c: DCluster;
  ctx: Ctx | undefined;
  parentCtx: Ctx | undefined;
  version: number;
  onCluster: (c: DCluster, ctx: Ctx) => void;
  onPass: (cluster: string, pass: number) => void;
  guard: (fn: () => void) => (e: Event) => void;
}

function ClusterG({ c, ctx, parentCtx, onCluster, onPass, guard }: ClusterGProps) {
  const inst = ctx?.inst;
  const dim = ctx?.dim ?? false;
  const state: NodeState = inst?.state ?? (parentCtx?.gone ? 'skipped' : 'pending');
  const charW = 6.2;
  const maxChars = Math.max(6, Math.floor((c.w - 20) / charW));
  const header = (text: string) => <text class="c-head" x={c.x + 10} y={c.y + 13}>{short(text, maxChars)}</text>;
  const click = guard(() => ctx && onCluster(c, ctx));
  if (c.kind === 'then' || c.kind === 'otherwise') {
    const notTaken = ctx?.notTaken && !parentCtx?.notTaken;
    return (
      <g class={`cl branch${ctx?.notTaken ? ' not-taken' : ''}${dim ? ' dim' : ''}`} data-testid="dag-branch" data-branch={c.kind} data-taken={ctx?.scope !== null && ctx?.scope !== undefined ? 'true' : ctx?.notTaken ? 'false' : ''}>
        <rect x={c.x} y={c.y} width={c.w} height={c.h} rx={8} />
        <text class="c-head" x={c.x + 10} y={c.y + 13}>
          {c.kind === 'then' ? 'then' : 'otherwise'}
          {notTaken ? ' · not taken' : ''}
        </text>
      </g>
    );
  }
  const model = parentCtx?.model;
  const key = inst?.key ?? (model ? model.keyOf(c.name, parentCtx?.scope) : c.name);
  const common = {
    'data-name': c.name,
    'data-kind': c.gn.kind,
    'data-state': state,
    'data-key': key,
  };
  if (c.kind === 'subflow') {
    const child = ctx?.model;
    return (
      <g class={`cl subflow st-${child?.run.status ?? 'pending'}${dim ? ' dim' : ''}`} data-testid="dag-subflow" {...common}>
        <rect x={c.x} y={c.y} width={c.w} height={c.h} rx={10} />
        {header(`↳ ${c.gn.workflow ?? 'sub-workflow'}${child ? ` · ${child.run.id} · ${child.run.status}` : ' · loading…'}`)}
      </g>
    );
  }
  if (c.kind === 'repeat') {
    const passes = ctx?.passes ?? [];
    const sel = ctx?.pass ?? -1;
    const n = passes.length;
    const latest = sel === n - 1;
    const cond = c.gn.until ? ` until ${c.gn.until}` : '';
    const label = n ? `pass ${sel + 1}/${n}${latest && inst && !isTerminal(inst.state) ? ' · current' : latest ? ' · last' : ''}` : 'no pass yet';
    const lw = label.length * 6.4;
    const selW = 14 + 6 + lw + 6 + 14;
    const sx = c.x + c.w - selW - 6;
    return (
      <g class={`cl block repeat st-${state}${dim ? ' dim' : ''}`} data-testid="dag-node" {...common}>
        <rect x={c.x} y={c.y} width={c.w} height={c.h} rx={10} onClick={click} />
        <text class="c-head" x={c.x + 10} y={c.y + 13} onClick={click}>{short(`↻ repeat${cond}${c.gn.max ? ` (max ${c.gn.max})` : ''}`, Math.max(4, maxChars - Math.ceil(selW / charW) - 1))}</text>
        <g class="pass-sel" transform={`translate(${sx},${c.y + 3})`}>
          <g data-testid="repeat-prev" class={sel > 0 ? 'pbtn' : 'pbtn off'} onClick={guard(() => sel > 0 && onPass(c.id, sel - 1))}>
            <rect width={14} height={14} rx={3} />
            <text x={7} y={10.5}>◀</text>
            <title>Previous pass</title>
          </g>
          <text data-testid="repeat-pass" class={latest ? 'pass cur' : 'pass'} x={20} y={11} data-pass={sel + 1} data-passes={n}>{label}</text>
          <g data-testid="repeat-next" class={sel < n - 1 ? 'pbtn' : 'pbtn off'} transform={`translate(${selW - 14},0)`} onClick={guard(() => sel < n - 1 && onPass(c.id, sel + 1))}>
            <rect width={14} height={14} rx={3} />
            <text x={7} y={10.5}>▶</text>
            <title>Next pass</title>
          </g>
        </g>
      </g>
    );
  }
  // when
  const note = typeof inst?.data?.note === 'string' ? ` — ${inst.data.note}` : c.gn.cond ? ` ${c.gn.cond}` : '';
  return (
    <g class={`cl block when st-${state}${dim ? ' dim' : ''}`} data-testid="dag-node" {...common}>
      <rect x={c.x} y={c.y} width={c.w} height={c.h} rx={10} onClick={click} />
      <text class="c-head" x={c.x + 10} y={c.y + 13} onClick={click}>{short(`◇ when${note}`, maxChars)}</text>
    </g>
  );
}
