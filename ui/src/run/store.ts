// The run page's data: the root run (from its event stream's snapshot),
// the child runs opened in place (fetched on demand), their graphs, and
// the live changes from the root's stream applied to whichever run they
// are about. `follow()` hands events over at most once per animation
// frame; a batch costs O(nodes in it), then one re-render.
import { api, follow, type Graph, type RunDetail, type SseEvent } from '../api';
import { RunModel, graphFromNodes, parentOf } from './model';

export class RunStore {
  root: RunModel | null = null;
  models = new Map<string, RunModel>();
  error: string | null = null;
  notice: string | null = null;
  graphError: string | null = null;
  /** Bumps on every change the page shows. */
  version = 0;
  private graph: Graph | null = null;
  private graphDone = false;
  private snapshot: RunDetail | null = null;
  private early: SseEvent[] = [];
  private loading = new Map<string, SseEvent[]>();
  /** Graphs shared by runs of the same workflow version. */
  private graphs = new Map<string, Graph>();
  private stop: (() => void) | null = null;
  private dead = false;

  constructor(public id: string, private changed: () => void) {}

  start(): void {
    api.graph(this.id).then(
      (g) => {
        this.graph = g;
        this.graphDone = true;
        this.build();
      },
      (e) => {
        this.graphDone = true;
        this.graphError = String(e?.message ?? e);
        this.build();
      },
    );
    this.connect();
  }

  /** Follows the run's event stream (it ends when the run ends). */
  private connect(): void {
    this.stop?.();
    this.stop = follow(`/api/v1/runs/${encodeURIComponent(this.id)}/events`, (b) => this.batch(b), {
      onOpen: () => {
        if (this.notice === 'reconnecting…') this.notice = null;
      },
      onError: (e: any) => {
        if (this.dead) return;
        if (!this.root && !this.snapshot) this.error = String(e?.message ?? e);
        else this.notice = 'reconnecting…';
        this.bump();
      },
    });
  }

  /** Follows the run again after an action made an ended run go on (a
   * retry): its stream had ended with it. A fresh snapshot comes first. */
  resume(): void {
    if (!this.dead) this.connect();
  }

  close(): void {
    this.dead = true;
    this.stop?.();
  }

  private bump(): void {
    this.version++;
    if (!this.dead) this.changed();
  }

  private shared(detail: RunDetail, g: Graph): Graph {
    const k = `${detail.run.workflow}@${detail.run.digest}`;
    const hit = this.graphs.get(k);
    if (hit && JSON.stringify(hit) === JSON.stringify(g)) return hit;
    this.graphs.set(k, g);
    return g;
  }

  /** Builds the root once both its snapshot and its graph are in. */
  private build(): void {
    const d = this.snapshot;
    if (!d || !this.graphDone) return;
    const g = this.graph ? this.shared(d, this.graph) : graphFromNodes(d);
    this.graph = g;
    const m = new RunModel(d, g);
    this.root = m;
    this.models.set(this.id, m);
    this.snapshot = null;
    this.error = null;
    const early = this.early;
    this.early = [];
    if (early.length) this.apply(early);
    this.bump();
  }

  private batch(evs: SseEvent[]): void {
    if (this.dead) return;
    this.apply(evs);
    this.bump();
  }

  private apply(evs: SseEvent[]): void {
    for (const ev of evs) {
      const d = ev.data ?? {};
      switch (ev.event) {
        case 'snapshot': {
          // The first event, and again after a reconnect: the run as it is.
          this.snapshot = d as RunDetail;
          this.early = [];
          this.notice = null;
          this.build();
          // Children opened in place are read again too.
          for (const id of [...this.models.keys()]) if (id !== this.id) this.reload(id);
          break;
        }
        case 'nodes': {
          if (!this.root) {
            this.early.push(ev);
            break;
          }
          const m = this.models.get(d.run);
          if (m) {
            for (const s of d.scopes ?? []) m.addScope(s);
            for (const n of d.nodes ?? []) m.applyNode(n, false);
          }
          this.loading.get(d.run)?.push(ev);
          break;
        }
        case 'run': {
          if (!this.root) {
            this.early.push(ev);
            break;
          }
          const parent = parentOf(String(d.run));
          if (parent) this.models.get(parent)?.addChild(String(d.run), String(d.workflow ?? ''));
          break;
        }
        case 'finished': {
          if (!this.root) {
            this.early.push(ev);
            break;
          }
          const run = String(d.run);
          this.models.get(run)?.finished(run, d.status);
          const parent = parentOf(run);
          if (parent) this.models.get(parent)?.finished(run, d.status);
          if (run === this.id) this.refreshRun(run);
          else if (this.models.has(run)) this.refreshRun(run);
          break;
        }
        case 'released':
          this.notice = 'This server let go of the run; another carries it on (changes show when it ends).';
          break;
        case 'lagged':
          this.notice = 'Catching up…';
          this.reloadRoot();
          break;
      }
    }
  }

  /** Reads a run's own fields again (its outputs and message once ended). */
  private async refreshRun(id: string): Promise<void> {
    try {
      const d = await api.run(id);
      const m = this.models.get(id);
      if (!m) return;
      Object.assign(m.run, d.run);
      // Nodes changed after the last event (none normally) are taken too.
      for (const s of d.scopes ?? []) m.addScope(s);
      for (const n of d.nodes) m.applyNode(n, true);
      m.version++;
      this.bump();
    } catch {
      // the stream's status stands
    }
  }

  /** The stream missed changes: read the run again. */
  private async reloadRoot(): Promise<void> {
    try {
      const d = await api.run(this.id);
      const g = this.root?.graph ?? this.graph;
      if (!g) return;
      const m = new RunModel(d, g);
      this.root = m;
      this.models.set(this.id, m);
      this.notice = null;
      for (const id of [...this.models.keys()]) if (id !== this.id) this.reload(id);
      this.bump();
    } catch (e: any) {
      this.notice = `Could not catch up: ${e?.message ?? e}`;
      this.bump();
    }
  }

  private reload(id: string): void {
    this.ensure(id, true);
  }

  /** Loads a child run (its detail and graph) unless loaded or loading;
   * changes from the stream meanwhile are kept and applied after, each
   * only if newer than what was read. */
  ensure(id: string, again = false): void {
    if ((!again && this.models.has(id)) || this.loading.has(id) || this.dead) return;
    this.loading.set(id, []);
    Promise.all([api.run(id), api.graph(id).catch(() => null)]).then(
      ([d, g]) => {
        const buffered = this.loading.get(id) ?? [];
        this.loading.delete(id);
        const m = new RunModel(d, g ? this.shared(d, g) : graphFromNodes(d));
        for (const ev of buffered) {
          for (const s of ev.data.scopes ?? []) m.addScope(s);
          for (const n of ev.data.nodes ?? []) m.applyNode(n, true);
        }
        this.models.set(id, m);
        this.bump();
      },
      (e) => {
        this.loading.delete(id);
        this.notice = `Could not load run ${id}: ${e?.message ?? e}`;
        this.bump();
      },
    );
  }
}
