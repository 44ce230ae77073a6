// The run page: header and actions, the DAG (live), a for-each's items,
// and the step drawer. The URL keeps what is open: `?node=<id>` (and
// `in=<child run>` for a node of a sub-workflow's run), `foreach=<id>`.
import { useEffect, useLayoutEffect, useMemo, useReducer, useRef, useState } from 'preact/hooks';
import type { Graph, NodeView, WhoAmI } from '../api';
import { api } from '../api';
import { setQuery } from '../router';
import { Dag, resolve, type Ctx } from './Dag';
import { ForEachPanel } from './ForEachPanel';
import { Header } from './Header';
import { layout, type DCluster, type DNode, type Layout } from './layout';
import { isTerminal, type RunModel } from './model';
import { StepDrawer } from './StepDrawer';
import { RunStore } from './store';

export function RunPage(p: { id: string; who: WhoAmI; query: URLSearchParams }) {
  return <Run key={p.id} {...p} />;
}

interface ActionError {
  where: 'header' | 'drawer';
  msg: string;
}

function Run({ id, who, query }: { id: string; who: WhoAmI; query: URLSearchParams }) {
  const [, render] = useReducer((x: number, _: undefined) => x + 1, 0);
  const store = useMemo(() => new RunStore(id, () => render(undefined)), [id]);
  const [open, setOpen] = useState<string[]>([]);
  const [passSel, setPassSel] = useState<Map<string, number>>(() => new Map());
  const [now, setNow] = useState(() => Date.now());
  const [actionError, setActionError] = useState<ActionError | null>(null);
  const [top, setTop] = useState(48);
  const page = useRef<HTMLDivElement>(null);
  const marked = useRef(false);
  const canOperate = who.role === 'operate' || who.role === 'admin';

  useEffect(() => {
    store.start();
    return () => store.close();
  }, [store]);

  // The page fills the window below the shell's bar.
  useLayoutEffect(() => {
    const el = page.current;
    if (el) setTop(Math.max(0, el.getBoundingClientRect().top + window.scrollY));
  }, [store.root !== null]);

  const root = store.root;
  const anyRunning = root ? [...store.models.values()].some((m) => m.run.status === 'running') : false;
  useEffect(() => {
    if (!anyRunning) return;
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, [anyRunning]);

  // Esc closes the drawer.
  useEffect(() => {
    const on = (e: KeyboardEvent) => {
      if (e.key === 'Escape' && !(e.target instanceof HTMLInputElement || e.target instanceof HTMLTextAreaElement)) {
        setQuery({ node: null, in: null });
      }
    };
    addEventListener('keydown', on);
    return () => removeEventListener('keydown', on);
  }, []);

  // The layout, with open sub-workflows drawn from their child runs'
  // graphs: known graphs are used, and a graph that arrives (or changes,
  // as a repeat's pass is switched) lays the drawing out again (cached).
  const need: string[] = [];
  let lay: Layout | null = null;
  let ctxs = new Map<string, Ctx>();
  if (root) {
    let graphs = new Map<string, Graph>();
    for (let round = 0; round < 6; round++) {
      const g = graphs;
      lay = layout(root.graph, open, (x) => g.get(x) ?? null);
      ctxs = resolve(lay, root, store.models, passSel);
      const byId = new Map(lay.nodes.map((n) => [n.id, n]));
      const next = new Map<string, Graph>();
      need.length = 0;
      for (const o of open) {
        const dn = byId.get(o);
        if (!dn) continue;
        const c = ctxs.get(dn.ctx);
        const inst = c?.model?.nodeIn(c.scope, dn.name);
        const child = inst && c?.model ? c.model.childOf(inst) : null;
        if (!child) continue;
        const m = store.models.get(child);
        if (m) next.set(o, m.graph);
        else need.push(child);
      }
      let same = next.size === graphs.size;
      for (const [k, v] of next) if (graphs.get(k) !== v) same = false;
      if (same) break;
      graphs = next;
    }
  }
  const needKey = need.join(' ');
  useEffect(() => {
    for (const c of need) store.ensure(c);
  }, [needKey]);

  // The drawer's node: `node` is a node id (or, for a node not stored
  // yet, its key); `in` names a child run.
  const nodeRef = query.get('node');
  const inRun = query.get('in') || id;
  const feRef = query.get('foreach');
  const feRun = query.get('fin') || id;
  const drawerModel = nodeRef ? store.models.get(inRun) : undefined;
  const feModel = feRef ? store.models.get(feRun) : undefined;
  useEffect(() => {
    if (nodeRef && inRun !== id) store.ensure(inRun);
    if (feRef && feRun !== id) store.ensure(feRun);
  }, [nodeRef, inRun, feRef, feRun, root !== null]);

  const find = (m: RunModel | undefined, ref: string | null): { node: NodeView | undefined; key: string } | null => {
    if (!m || !ref) return null;
    if (/^\d+$/.test(ref)) {
      const node = m.nodes.get(Number(ref));
      return node ? { node, key: node.key } : null;
    }
    return { node: m.nodeByKey(ref), key: ref };
  };
  const drawer = find(drawerModel, nodeRef);
  const fe = find(feModel, feRef);

  // A waiting `wait` step, for the signal form.
  let wait: { model: RunModel; node: NodeView } | null = null;
  if (root) {
    for (const m of store.models.values()) {
      for (const nid of m.waits) {
        const n = m.nodes.get(nid);
        if (n && !isTerminal(n.state)) {
          wait = { model: m, node: n };
          break;
        }
      }
      if (wait) break;
    }
  }

  const openNode = (m: RunModel, node: NodeView | undefined, key: string) => {
    setActionError(null);
    setQuery({ node: node ? String(node.id) : key, in: m.id === id ? null : m.id });
  };
  const onNode = (dn: DNode, ctx: Ctx, inst: NodeView | undefined) => {
    const m = ctx.model;
    if (!m) return;
    if (dn.role === 'foreach') {
      setQuery({ foreach: inst ? String(inst.id) : m.keyOf(dn.name, ctx.scope), fin: m.id === id ? null : m.id });
      return;
    }
    openNode(m, inst, inst?.key ?? m.keyOf(dn.name, ctx.scope));
  };
  const onCluster = (c: DCluster, ctx: Ctx) => {
    const pc = ctxs.get(c.ctx);
    const m = pc?.model;
    if (!m) return;
    openNode(m, ctx.inst, ctx.inst?.key ?? m.keyOf(c.name, pc?.scope));
  };
  const onToggle = (dnId: string) => setOpen((o) => (o.includes(dnId) ? o.filter((x) => x !== dnId) : [...o, dnId]));
  const onPass = (cid: string, pass: number) =>
    setPassSel((m) => {
      const n = new Map(m);
      n.set(cid, pass);
      return n;
    });

  const onPainted = () => {
    if (marked.current) return;
    marked.current = true;
    requestAnimationFrame(() => performance.mark('kaon:run-rendered'));
  };

  const act = async (where: ActionError['where'], f: () => Promise<unknown>): Promise<boolean> => {
    setActionError(null);
    try {
      await f();
      return true;
    } catch (e) {
      setActionError({ where, msg: String((e as Error).message ?? e) });
      return false;
    }
  };
  const onCancel = async () => {
    if (!confirm(`Cancel run ${id}? Running steps are stopped and nothing new starts.`)) return;
    await act('header', () => api.cancel(id, 'cancelled from the web UI'));
  };
  const onSignal = (run: string, name: string, value: unknown) => act('header', () => api.signal(run, name, value));
  const onRetry = async (m: RunModel, key: string) => {
    // The run goes on: its stream, which ended with it, is followed again.
    if (await act('drawer', () => api.retry(m.id, key))) store.resume();
  };

  if (store.error && !root) {
    return <div class="page"><p class="error">{store.error}</p></div>;
  }
  if (!root || !lay) {
    return <div class="page loading" ref={page}>Loading run {id}…</div>;
  }

  const selected = drawer && drawerModel ? `${drawerModel.id}|${drawer.key}` : null;
  const drawerGn = drawer && drawerModel ? drawerModel.graphNode(drawer.node, drawer.key.split('[')[0]) : null;
  const feGn = fe && feModel ? feModel.graphNode(fe.node, fe.key.split('[')[0]) : null;

  return (
    <div class="run-page" ref={page} style={{ height: `calc(100vh - ${top}px)` }}>
      <Header
        model={root}
        now={now}
        canOperate={canOperate}
        wait={wait}
        signals={root.graph.tmpls.some((t) => t.nodes.some((n) => n.kind === 'wait')) || root.graph.tmpls.some((t) => t.nodes.some((n) => n.kind === 'subworkflow'))}
        error={actionError?.where === 'header' ? actionError.msg : null}
        notice={[store.graphError ? `The run's graph could not be read (${store.graphError}); its top steps show without edges.` : null, store.notice].filter(Boolean).join(' ') || null}
        onCancel={onCancel}
        onSignal={onSignal}
      />
      <div class="run-main">
        <div class="run-left">
          <Dag
            lay={lay}
            ctxs={ctxs}
            version={store.version}
            now={now}
            selected={selected}
            open={new Set(open)}
            onNode={onNode}
            onCluster={onCluster}
            onToggle={onToggle}
            onPass={onPass}
            onPainted={onPainted}
          />
          {fe && feModel && feGn && (
            <ForEachPanel
              key={`${feModel.id}|${fe.key}`}
              model={feModel}
              block={fe.node}
              gn={feGn}
              version={store.version}
              now={now}
              selectedKey={selected}
              onClose={() => setQuery({ foreach: null, fin: null })}
              onOpen={openNode}
            />
          )}
        </div>
        {drawer && drawerModel && (
          <StepDrawer
            key={`${drawerModel.id}|${drawer.key}`}
            model={drawerModel}
            node={drawer.node}
            stepKey={drawer.key}
            gn={drawerGn}
            version={store.version}
            now={now}
            canOperate={canOperate}
            error={actionError?.where === 'drawer' ? actionError.msg : null}
            onRetry={onRetry}
            onClose={() => setQuery({ node: null, in: null })}
          />
        )}
      </div>
    </div>
  );
}
