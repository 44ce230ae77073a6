// A run as the run page keeps it: its nodes and scopes indexed for the
// lookups the page makes (the node of a step in a scope, the passes of a
// repeat, the items of a for-each), updated in place from the event stream.
//
// Every update costs O(changed nodes × nesting depth): a node's change moves
// counters of the for-each items around it (and of those items' blocks), it
// never walks the other items. A 30,000-item sweep is indexed once, O(n), when
// its snapshot arrives, and never again.
import type { Graph, GraphNode, NodeState, NodeView, RunDetail, RunView, ScopeView } from '../api';

/** Every node state, in one fixed order (indexes of the count arrays). */
export const STATES: NodeState[] = [
  'pending', 'waiting', 'ready', 'starting', 'running', 'retrying',
  'succeeded', 'memoized', 'failed', 'skipped', 'cancelled',
];
const SI: Record<string, number> = Object.fromEntries(STATES.map((s, i) => [s, i]));
const NS = STATES.length;
const I = SI as Record<NodeState, number>;

/** The index of a state in the count arrays (unknown names count as pending). */
export function stateIndex(s: string): number {
  return SI[s] ?? 0;
}

const TERMINAL = new Set(['succeeded', 'memoized', 'failed', 'skipped', 'cancelled']);
export function isTerminal(s: string): boolean {
  return TERMINAL.has(s);
}

/** `subworkflow` and `sub-workflow` are the same kind. */
export function normKind(k: string | null | undefined): string {
  if (!k) return 'noop';
  return k === 'sub-workflow' || k === 'sub_workflow' ? 'subworkflow' : k;
}

/** How far a node has got within one attempt: a stale copy of a node (one
 * read before a fresher one) is never applied over it. */
function progressRank(s: string): number {
  switch (s) {
    case 'pending': return 0;
    case 'waiting': return 1;
    case 'ready': return 2;
    case 'starting': return 3;
    case 'running': return 4;
    case 'retrying': return 5;
    default: return 6;
  }
}

/** One for-each item: its scope and the counts of its nodes' states
 * (nodes of blocks nested in it included). */
export interface Item {
  index: number;
  scope: number;
  vars: Record<string, unknown>;
  /** Lowercased text searched: the item's key frame, `[reg=US, model=gbm]`
   * (its loop variables and values). */
  text: string;
  /** Node states over the item's nodes, by `STATES` index. */
  counts: Int32Array;
  /** Stored nodes directly in the item's scope. */
  direct: number;
  state: NodeState;
  started: number | null;
  finished: number | null;
  attempts: number;
  /** The item's node ids (nested ones too), in arrival order. */
  nodes: number[];
}

/** The items of one for-each block (one instance of it) and their states. */
export class ForEachAgg {
  /** Items in arrival order (normally index order; `sorted` says). */
  list: Item[] = [];
  sorted = true;
  /** Items by aggregate state, by `STATES` index. */
  counts = new Int32Array(NS);
  /** Bumps whenever an item's aggregate state, duration or attempts move. */
  version = 0;
  /** Bumps whenever items are added. */
  added = 0;
  constructor(
    public block: number,
    /** Nodes directly in one item (the body template's size). */
    public expected: number,
    /** The loop variables, in declaration order. */
    public vars: string[],
  ) {}

  /** Items in index order. */
  items(): Item[] {
    if (!this.sorted) {
      this.list.sort((a, b) => a.index - b.index);
      this.sorted = true;
    }
    return this.list;
  }
}

/** The aggregate state of an item from its nodes' counts: failed if any
 * failed, running if any is under way, succeeded (or memoized, when all
 * were) once all are done, waiting when some are done or queued. */
export function itemState(c: Int32Array, direct: number, expected: number): NodeState {
  if (c[I.failed]) return 'failed';
  if (c[I.running] || c[I.starting]) return 'running';
  if (c[I.retrying]) return 'retrying';
  if (c[I.cancelled]) return 'cancelled';
  const open = c[I.pending] + c[I.waiting] + c[I.ready];
  if (open === 0 && direct >= expected && direct > 0) {
    if (c[I.succeeded]) return 'succeeded';
    if (c[I.memoized]) return 'memoized';
    return 'skipped';
  }
  if (c[I.ready]) return 'ready';
  if (c[I.waiting] || c[I.succeeded] || c[I.memoized] || c[I.skipped]) return 'waiting';
  return 'pending';
}

/** How an item's loop values read, e.g. `reg=US, model=gbm`. */
export function frameText(vars: Record<string, unknown>, order?: string[]): string {
  const keys = order && order.length ? order : Object.keys(vars);
  return keys.map((k) => `${k}=${toText(vars[k])}`).join(', ');
}

/** A value as kaon writes it into keys and commands. */
export function toText(v: unknown): string {
  if (typeof v === 'string') return v;
  if (v === null || v === undefined) return '';
  return JSON.stringify(v);
}

/** Moves an item's counts from a node's old state to its new one. */
function count(agg: ForEachAgg, item: Item, old: NodeView | undefined, n: NodeView): void {
  if (old) item.counts[stateIndex(old.state)]--;
  else {
    item.nodes.push(n.id);
    if (item.scope === n.scope) item.direct++;
  }
  item.counts[stateIndex(n.state)]++;
  let moved = false;
  if (n.started_ms && (item.started === null || n.started_ms < item.started)) {
    item.started = n.started_ms;
    moved = true;
  }
  if (n.finished_ms && (item.finished === null || n.finished_ms > item.finished)) {
    item.finished = n.finished_ms;
    moved = true;
  }
  if (n.attempt > item.attempts) {
    item.attempts = n.attempt;
    moved = true;
  }
  const st = itemState(item.counts, item.direct, agg.expected);
  if (st !== item.state) {
    agg.counts[stateIndex(item.state)]--;
    agg.counts[stateIndex(st)]++;
    item.state = st;
    moved = true;
  }
  if (moved) agg.version++;
}

/** A run's nodes, scopes and for-each items. */
export class RunModel {
  run: RunView;
  graph: Graph;
  children: RunView[];
  nodes = new Map<number, NodeView>();
  scopes = new Map<number, ScopeView>();
  /** scope → step/block name → node id */
  private byScope = new Map<number, Map<string, number>>();
  /** block node (repeat, when) → its scopes, by index */
  private blockScopes = new Map<number, ScopeView[]>();
  /** for-each block node → its items */
  aggs = new Map<number, ForEachAgg>();
  /** item scope → item */
  private itemOfScope = new Map<number, { agg: ForEachAgg; item: Item }>();
  /** scope → the items it counts towards (its own and enclosing ones) */
  private refs = new Map<number, { agg: ForEachAgg; item: Item }[]>();
  /** instance key → node id */
  private byKey = new Map<string, number>();
  private childIds = new Map<string, RunView>();
  private childrenByNode = new Map<number, RunView[]>();
  /** wait steps not yet done: what a signal form offers */
  waits = new Set<number>();
  /** Bumps on every applied change. */
  version = 0;

  constructor(detail: RunDetail, graph: Graph) {
    this.run = detail.run;
    this.graph = graph;
    this.children = detail.children ?? [];
    for (const c of this.children) {
      this.childIds.set(c.id, c);
      this.indexChild(c);
    }
    for (const s of detail.scopes ?? []) this.addScope(s);
    const nodes = [...detail.nodes].sort((a, b) => a.id - b.id);
    for (const n of nodes) this.applyNode(n, false);
  }

  get id(): string {
    return this.run.id;
  }

  /** The graph node a scope's template hangs off (the block whose body
   * it is), or null for the top flow. */
  blockOf(tmpl: number): GraphNode | null {
    const t = this.graph.tmpls[tmpl];
    if (!t || !t.parent) return null;
    const [pt, pi] = t.parent;
    return this.graph.tmpls[pt]?.nodes[pi] ?? null;
  }

  private blockKindOfScope(s: ScopeView): string {
    const g = this.blockOf(s.tmpl);
    if (g) return normKind(g.kind);
    return s.parent !== null ? normKind(this.nodes.get(s.parent)?.kind) : '';
  }

  addScope(s: ScopeView): void {
    if (this.scopes.has(s.id)) return;
    this.scopes.set(s.id, s);
    if (s.parent === null) return;
    const kind = this.blockKindOfScope(s);
    if (kind === 'for-each') {
      const agg = this.aggFor(s.parent, s.tmpl);
      const item: Item = {
        index: s.index,
        scope: s.id,
        vars: s.vars ?? {},
        text: `[${frameText(s.vars ?? {}, agg.vars)}]`.toLowerCase(),
        counts: new Int32Array(NS),
        direct: 0,
        state: 'pending',
        started: null,
        finished: null,
        attempts: 0,
        nodes: [],
      };
      const last = agg.list[agg.list.length - 1];
      if (last && last.index > item.index) agg.sorted = false;
      agg.list.push(item);
      agg.counts[I.pending]++;
      agg.added++;
      this.itemOfScope.set(s.id, { agg, item });
      // Nodes of the item that came before their scope are counted now.
      for (const id of this.byScope.get(s.id)?.values() ?? []) {
        const n = this.nodes.get(id);
        if (n) count(agg, item, undefined, n);
      }
    } else {
      let l = this.blockScopes.get(s.parent);
      if (!l) this.blockScopes.set(s.parent, (l = []));
      l.push(s);
      if (l.length > 1 && l[l.length - 2].index > s.index) l.sort((a, b) => a.index - b.index);
    }
    this.version++;
  }

  private aggFor(block: number, bodyTmpl: number): ForEachAgg {
    let agg = this.aggs.get(block);
    if (!agg) {
      const g = this.blockOf(bodyTmpl);
      agg = new ForEachAgg(block, this.graph.tmpls[bodyTmpl]?.nodes.length ?? 1, g?.vars ?? []);
      this.aggs.set(block, agg);
    }
    return agg;
  }

  /** The items a node of scope `s` counts towards, innermost first. */
  private refsOf(s: number): { agg: ForEachAgg; item: Item }[] {
    const hit = this.refs.get(s);
    if (hit) return hit;
    const out: { agg: ForEachAgg; item: Item }[] = [];
    let cur: number | undefined = s;
    let complete = true;
    for (let depth = 0; cur !== undefined && depth < 64; depth++) {
      const sc = this.scopes.get(cur);
      if (!sc) {
        complete = cur === 0;
        break;
      }
      const it = this.itemOfScope.get(cur);
      if (it) out.push(it);
      if (sc.parent === null) break;
      const b = this.nodes.get(sc.parent);
      if (!b) {
        complete = false;
        break;
      }
      cur = b.scope;
    }
    if (complete) this.refs.set(s, out);
    return out;
  }

  /** Applies a node as the server sent it. `guard`: drop it when it is
   * older than the copy held (events read before a fresher snapshot). */
  applyNode(n: NodeView, guard: boolean): void {
    const old = this.nodes.get(n.id);
    if (guard && old) {
      if (n.attempt < old.attempt) return;
      if (n.attempt === old.attempt && progressRank(n.state) < progressRank(old.state)) return;
    }
    this.nodes.set(n.id, n);
    if (!old) {
      let m = this.byScope.get(n.scope);
      if (!m) this.byScope.set(n.scope, (m = new Map()));
      m.set(n.name, n.id);
      this.byKey.set(n.key, n.id);
    }
    if (normKind(n.kind) === 'wait') {
      if (isTerminal(n.state)) this.waits.delete(n.id);
      else this.waits.add(n.id);
    }
    for (const { agg, item } of this.refsOf(n.scope)) count(agg, item, old, n);
    this.version++;
  }

  /** The node of step (or block) `name` in scope `scope`, if stored. */
  nodeIn(scope: number | null | undefined, name: string): NodeView | undefined {
    if (scope === null || scope === undefined) return undefined;
    const id = this.byScope.get(scope)?.get(name);
    return id === undefined ? undefined : this.nodes.get(id);
  }

  /** The node with instance key `key`, if stored. */
  nodeByKey(key: string): NodeView | undefined {
    const id = this.byKey.get(key);
    return id === undefined ? undefined : this.nodes.get(id);
  }

  /** The graph node of a stored node (by its scope's template), or the
   * first graph node named `name`. */
  graphNode(n: NodeView | undefined, name: string): GraphNode | null {
    if (n) {
      const sc = this.scopes.get(n.scope);
      const t = this.graph.tmpls[sc ? sc.tmpl : 0];
      const g = t?.nodes.find((x) => x.name === n.name);
      if (g) return g;
    }
    for (const t of this.graph.tmpls) {
      const g = t.nodes.find((x) => x.name === name);
      if (g) return g;
    }
    return null;
  }

  /** The scopes of a repeat (its passes) or a when (the branch taken). */
  scopesOf(block: number): ScopeView[] {
    return this.blockScopes.get(block) ?? [];
  }

  itemOf(scope: number): Item | undefined {
    return this.itemOfScope.get(scope)?.item;
  }

  /** The instance key of step `name` in scope `scope`, as the engine
   * makes it (for nodes not stored yet). */
  keyOf(name: string, scope: number | null | undefined): string {
    const groups: string[][] = [];
    let cur = scope ?? 0;
    for (let depth = 0; depth < 64; depth++) {
      const sc = this.scopes.get(cur);
      if (!sc || sc.parent === null) break;
      const kind = this.blockKindOfScope(sc);
      if (kind === 'for-each') {
        const order = this.blockOf(sc.tmpl)?.vars ?? undefined;
        groups.push((order && order.length ? order : Object.keys(sc.vars ?? {})).map((k) => `${k}=${toText(sc.vars?.[k])}`));
      } else if (kind === 'repeat') groups.push([`pass=${sc.index + 1}`]);
      const b = this.nodes.get(sc.parent);
      if (!b) break;
      cur = b.scope;
    }
    const frames = groups.reverse().flat();
    return frames.length ? `${name}[${frames.join(', ')}]` : name;
  }

  /** The child run of a sub-workflow node: its current attempt's. */
  childOf(n: NodeView): string | null {
    const want = `${this.run.id}.${n.id}-${n.attempt}`;
    let best: string | null = null;
    let bestA = -1;
    for (const c of this.childrenByNode.get(n.id) ?? []) {
      if (c.id === want) return want;
      const a = Number(/-(\d+)$/.exec(c.id)?.[1] ?? 0);
      if (a > bestA) {
        best = c.id;
        bestA = a;
      }
    }
    if (best) return best;
    if (typeof n.data?.handle === 'string') return n.data.handle;
    if (n.attempt > 0 && !['pending', 'waiting', 'ready'].includes(n.state)) return want;
    return null;
  }

  private indexChild(c: RunView): void {
    if (c.parent_node === null || c.parent_node === undefined) return;
    let l = this.childrenByNode.get(c.parent_node);
    if (!l) this.childrenByNode.set(c.parent_node, (l = []));
    l.push(c);
  }

  /** Records a child run the stream announced. */
  addChild(id: string, workflow: string): void {
    if (this.childIds.has(id)) return;
    const m = /^(.*)\.(\d+)-(\d+)$/.exec(id);
    const c: RunView = {
      id,
      workflow,
      path: '',
      digest: '',
      status: 'running',
      params: {},
      parent: this.run.id,
      parent_node: m ? Number(m[2]) : null,
      created_ms: Date.now(),
      finished_ms: null,
      owner: null,
      outputs: null,
      message: null,
      signals: null,
    };
    this.children.push(c);
    this.childIds.set(id, c);
    this.indexChild(c);
    this.version++;
  }

  /** A run of this model (itself or a child) ended. */
  finished(id: string, status: RunView['status']): void {
    const r = id === this.run.id ? this.run : this.childIds.get(id);
    if (r && r.status !== status) {
      r.status = status;
      r.finished_ms = r.finished_ms ?? Date.now();
      this.version++;
    }
  }
}

/** The run id a child run id hangs off (`<parent>.<node>-<attempt>`). */
export function parentOf(child: string): string | null {
  const m = /^(.*)\.(\d+)-(\d+)$/.exec(child);
  return m ? m[1] : null;
}

/** A graph from the nodes alone, for a server without `/graph`: the top
 * flow's nodes side by side, no edges. */
export function graphFromNodes(detail: RunDetail): Graph {
  const top = detail.nodes.filter((n) => n.scope === 0).sort((a, b) => a.id - b.id);
  return {
    tmpls: [
      {
        parent: null,
        nodes: top.map((n) => ({
          name: n.name, kind: n.kind, description: null, spark: null, workflow: null,
          body: null, then: null, otherwise: null, vars: null, max: null, until: null, cond: null,
        })),
        preds: top.map(() => []),
      },
    ],
  };
}
