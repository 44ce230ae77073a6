// A for-each's items as a table: virtualised (fixed row height, only the
// rows in view are in the DOM), searchable, filterable by state, sortable
// by any column.
//
// The page re-renders at most once per animation frame; this table then
// re-renders only its visible rows (O(rows in view)). Its row order is
// rebuilt (O(n log n)) when the user changes the search, the filter or the
// sort, and, while items change state under a filter or a sort by a column
// that moves (state, duration, attempts), at most once a second.
import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import type { GraphNode, NodeState, NodeView } from '../api';
import { duration } from '../format';
import { aggView } from './Dag';
import { type ForEachAgg, type Item, type RunModel, isTerminal, toText } from './model';

const ROW = 26;
const OVERSCAN = 8;
const RESORT_MS = 1000;

export const FILTERS = ['all', 'failed', 'running', 'waiting', 'ready', 'pending', 'succeeded', 'memoized', 'skipped', 'cancelled'] as const;

const STATE_ORDER: Record<string, number> = {
  failed: 0, running: 1, retrying: 1, starting: 1, ready: 2, waiting: 3, pending: 4,
  cancelled: 5, skipped: 6, memoized: 7, succeeded: 8,
};

function matches(state: NodeState, f: string): boolean {
  if (f === 'all') return true;
  if (f === 'running') return state === 'running' || state === 'retrying' || state === 'starting';
  return state === f;
}

function itemDuration(it: Item, now: number): number {
  if (!it.started) return -1;
  const end = isTerminal(it.state) ? it.finished ?? it.started : now;
  return end - it.started;
}

interface Sort {
  col: string;
  dir: 1 | -1;
}

interface OrderCache {
  key: string;
  agg: ForEachAgg | null;
  added: number;
  version: number;
  at: number;
  rows: Item[];
}

export interface ForEachPanelProps {
  model: RunModel;
  block: NodeView | undefined;
  gn: GraphNode;
  version: number;
  now: number;
  selectedKey: string | null;
  onClose: () => void;
  onOpen: (model: RunModel, node: NodeView | undefined, key: string) => void;
}

export function ForEachPanel(p: ForEachPanelProps) {
  const { model, block, gn } = p;
  const agg = block ? model.aggs.get(block.id) : undefined;
  const vars = gn.vars?.length ? gn.vars : agg?.vars?.length ? agg.vars : Object.keys(agg?.list[0]?.vars ?? {});
  const [search, setSearch] = useState('');
  const [q, setQ] = useState('');
  const [filter, setFilter] = useState<string>('all');
  const [sort, setSort] = useState<Sort>({ col: 'index', dir: 1 });
  const [scroll, setScroll] = useState(0);
  const [height, setHeight] = useState(400);
  const [sel, setSel] = useState<number | null>(null);
  const [, bump] = useState(0);
  const cache = useRef<OrderCache>({ key: '', agg: null, added: -1, version: -1, at: 0, rows: [] });
  const scroller = useRef<HTMLDivElement>(null);
  const raf = useRef(0);
  const timer = useRef<number | null>(null);

  // Search waits for a pause in typing (a 30,000-row filter per key is
  // cheap, but not free).
  useEffect(() => {
    const t = setTimeout(() => setQ(search.trim().toLowerCase()), 120);
    return () => clearTimeout(t);
  }, [search]);

  useLayoutEffect(() => {
    const el = scroller.current;
    if (!el) return;
    const ro = new ResizeObserver(() => setHeight(el.clientHeight));
    ro.observe(el);
    setHeight(el.clientHeight);
    return () => ro.disconnect();
  }, []);

  useEffect(() => () => {
    cancelAnimationFrame(raf.current);
    if (timer.current !== null) clearTimeout(timer.current);
  }, []);

  // A new filter, search or sort starts at the top.
  useEffect(() => {
    const el = scroller.current;
    if (el && el.scrollTop) {
      el.scrollTop = 0;
      setScroll(0);
    }
  }, [sort.col, sort.dir, filter, q]);

  const onScroll = () => {
    cancelAnimationFrame(raf.current);
    raf.current = requestAnimationFrame(() => setScroll(scroller.current?.scrollTop ?? 0));
  };

  // The row order.
  const now = p.now;
  const key = `${sort.col}|${sort.dir}|${filter}|${q}`;
  const dynamic = filter !== 'all' || ['state', 'duration', 'attempts'].includes(sort.col);
  const identity = sort.col === 'index' && sort.dir === 1 && filter === 'all' && !q;
  const c = cache.current;
  let rows: Item[];
  if (!agg) rows = [];
  else if (identity) rows = agg.items();
  else {
    const t = performance.now();
    const changedKey = c.key !== key || c.agg !== agg;
    const stale = c.added !== agg.added || (dynamic && c.version !== agg.version);
    if (changedKey || (stale && t - c.at >= RESORT_MS)) {
      c.rows = order(agg.items(), filter, q, sort, vars, now);
      c.key = key;
      c.agg = agg;
      c.added = agg.added;
      c.version = agg.version;
      c.at = t;
    } else if (stale && timer.current === null) {
      // Changes arrived since the last sort: sort again when it is due.
      timer.current = window.setTimeout(() => {
        timer.current = null;
        bump((x) => x + 1);
      }, RESORT_MS - (t - c.at) + 10);
    }
    rows = c.rows;
  }

  const view = aggView(agg, block);
  const n = rows.length;
  const first = Math.max(0, Math.floor(scroll / ROW) - OVERSCAN);
  const last = Math.min(n, Math.ceil((scroll + height) / ROW) + OVERSCAN);
  const body = gn.body !== null ? model.graph.tmpls[gn.body] : undefined;
  const steps = body ? body.nodes.filter((x) => x.kind !== 'marker') : [];
  const cols = `64px ${vars.map(() => 'minmax(72px, 220px)').join(' ')} 104px 92px 64px minmax(${Math.max(40, steps.length * 14 + 12)}px, 1fr)`;
  const selItem = sel !== null ? model.itemOf(sel) ?? null : null;

  const sortBy = (col: string) => setSort((s) => (s.col === col ? { col, dir: (s.dir === 1 ? -1 : 1) as 1 | -1 } : { col, dir: 1 }));
  const head = (col: string, label: string, cls = '') => (
    <span
      class={`fe-h ${cls}${sort.col === col ? ' on' : ''}`}
      data-testid={`foreach-sort-${col}`}
      role="columnheader"
      aria-sort={sort.col === col ? (sort.dir === 1 ? 'ascending' : 'descending') : 'none'}
      onClick={() => sortBy(col)}
    >
      {label}
      {sort.col === col ? (sort.dir === 1 ? ' ▲' : ' ▼') : ''}
    </span>
  );

  const openItem = (it: Item) => {
    setSel(it.scope);
    // One step per item: open it at once.
    if (steps.length === 1 && steps[0].kind !== 'for-each' && steps[0].kind !== 'repeat' && steps[0].kind !== 'when') {
      const name = steps[0].name;
      const node = model.nodeIn(it.scope, name);
      p.onOpen(model, node, node?.key ?? model.keyOf(name, it.scope));
    }
  };

  return (
    <section class="fe-panel" data-testid="foreach-panel">
      <header class="fe-top">
        <strong class="fe-title" title={gn.name}>⊞ {gn.name}</strong>
        <span class={`badge st-${block?.state ?? 'pending'}`} data-testid="foreach-block-state">{block?.state ?? 'pending'}</span>
        <span class="fe-sum mono">{view.counts}</span>
        {block && (
          <button class="link" title="The block's facts (and a retry of its failed items)" onClick={() => p.onOpen(model, block, block.key)}>
            details
          </button>
        )}
        <input
          type="search"
          class="fe-search"
          data-testid="foreach-search"
          placeholder={`Search ${vars.length ? vars.join(', ') : 'items'} or key…`}
          value={search}
          onInput={(e) => setSearch((e.target as HTMLInputElement).value)}
        />
        <select data-testid="foreach-state" value={filter} onChange={(e) => setFilter((e.target as HTMLSelectElement).value)}>
          {FILTERS.map((f) => (
            <option key={f} value={f}>
              {f === 'all' ? 'all states' : f}
              {f !== 'all' && agg ? ` (${countOf(agg, f)})` : ''}
            </option>
          ))}
        </select>
        <span class="fe-count muted" data-testid="foreach-count">{`${n} of ${view.total} items`}</span>
        <span class="spacer" />
        <button class="link" data-testid="foreach-close" onClick={p.onClose} title="Close">✕</button>
      </header>
      <div class="fe-table" role="table" aria-rowcount={n}>
        <div class="fe-head" role="row" style={{ gridTemplateColumns: cols }}>
          {head('index', '#', 'num')}
          {vars.map((v) => head(v, v))}
          {head('state', 'state')}
          {head('duration', 'duration', 'num')}
          {head('attempts', 'attempts', 'num')}
          <span class="fe-h steps" title={steps.map((s) => s.name).join(', ')}>steps</span>
        </div>
        <div class="fe-scroll" ref={scroller} onScroll={onScroll}>
          <div class="fe-spacer" style={{ height: `${n * ROW}px` }}>
            {rows.slice(first, last).map((it, i) => {
              const at = first + i;
              return (
                <div
                  key={it.scope}
                  role="row"
                  class={`fe-row${sel === it.scope ? ' sel' : ''}`}
                  data-testid="foreach-row"
                  data-state={it.state}
                  data-index={it.index}
                  style={{ transform: `translateY(${at * ROW}px)`, gridTemplateColumns: cols }}
                  onClick={() => openItem(it)}
                >
                  {/* Spaces between cells (ignored by the grid) keep the row's text readable. */}
                  <span class="num mono">{it.index}</span>{' '}
                  {vars.map((v) => (
                    <span key={v} class="mono cell" title={toText(it.vars[v])}>{toText(it.vars[v])} </span>
                  ))}
                  <span><span class={`badge st-${it.state}`}>{it.state}</span></span>{' '}
                  <span class="num">{duration(itemDuration(it, now) >= 0 ? itemDuration(it, now) : null)}</span>{' '}
                  <span class="num">{it.attempts > 1 ? it.attempts : it.attempts ? '1' : ''}</span>{' '}
                  <span class="dots">
                    {steps.map((s) => {
                      const nd = model.nodeIn(it.scope, s.name);
                      return <i key={s.name} class={`st-${nd?.state ?? 'pending'}`} title={`${s.name}: ${nd?.state ?? 'pending'}`} />;
                    })}
                  </span>
                </div>
              );
            })}
          </div>
          {!n && <p class="muted fe-empty">{agg ? 'No item matches.' : block ? 'No items yet.' : 'This for-each has not started.'}</p>}
        </div>
      </div>
      {selItem && (
        <div class="fe-item" data-testid="foreach-item">
          <span class="muted">item {selItem.index}</span>
          <span class="mono">[{vars.map((v) => `${v}=${toText(selItem.vars[v])}`).join(', ')}]</span>
          {itemNodes(model, selItem, steps).map(({ name, node, key: k }) => (
            <button
              key={k}
              class={`step-chip st-${node?.state ?? 'pending'}${p.selectedKey === `${model.id}|${k}` ? ' on' : ''}`}
              data-testid="foreach-item-step"
              onClick={() => p.onOpen(model, node, k)}
              title={k}
            >
              <i />
              {name}
              <span class="muted"> {node?.state ?? 'pending'}</span>
            </button>
          ))}
        </div>
      )}
    </section>
  );
}

function countOf(agg: ForEachAgg, f: string): number {
  const i = (s: string) => agg.counts[['pending', 'waiting', 'ready', 'starting', 'running', 'retrying', 'succeeded', 'memoized', 'failed', 'skipped', 'cancelled'].indexOf(s)];
  if (f === 'running') return i('running') + i('starting') + i('retrying');
  if (f === 'pending') return i('pending');
  return i(f);
}

/** An item's steps: its body's, then those of blocks nested in it. */
function itemNodes(model: RunModel, it: Item, steps: GraphNode[]): { name: string; node: NodeView | undefined; key: string }[] {
  const out: { name: string; node: NodeView | undefined; key: string }[] = [];
  const seen = new Set<number>();
  for (const s of steps) {
    const node = model.nodeIn(it.scope, s.name);
    if (node) seen.add(node.id);
    out.push({ name: s.name, node, key: node?.key ?? model.keyOf(s.name, it.scope) });
  }
  for (const id of it.nodes) {
    if (seen.has(id) || out.length > 200) continue;
    const node = model.nodes.get(id);
    if (node && node.kind !== 'marker') out.push({ name: node.name, node, key: node.key });
  }
  return out;
}

/** Filters and sorts items: O(n log n), run on demand only. */
function order(items: Item[], filter: string, q: string, sort: Sort, vars: string[], now: number): Item[] {
  let rows = items;
  if (filter !== 'all') rows = rows.filter((it) => matches(it.state, filter));
  if (q) {
    const toks = q.split(/\s+/).filter(Boolean);
    rows = rows.filter((it) => toks.every((t) => it.text.includes(t)));
  }
  if (sort.col === 'index' && sort.dir === 1) return rows === items ? rows.slice() : rows;
  const d = sort.dir;
  let keyed: { it: Item; k: number | string }[];
  if (sort.col === 'index') keyed = rows.map((it) => ({ it, k: it.index }));
  else if (sort.col === 'state') keyed = rows.map((it) => ({ it, k: STATE_ORDER[it.state] ?? 9 }));
  else if (sort.col === 'duration') keyed = rows.map((it) => ({ it, k: itemDuration(it, now) }));
  else if (sort.col === 'attempts') keyed = rows.map((it) => ({ it, k: it.attempts }));
  else if (vars.includes(sort.col)) {
    const v = sort.col;
    const allNum = rows.every((it) => typeof it.vars[v] === 'number');
    keyed = rows.map((it) => ({ it, k: allNum ? (it.vars[v] as number) : toText(it.vars[v]) }));
  } else keyed = rows.map((it) => ({ it, k: it.index }));
  keyed.sort((a, b) => (a.k < b.k ? -d : a.k > b.k ? d : a.it.index - b.it.index));
  return keyed.map((x) => x.it);
}
