// The kaon server's HTTP API, typed as the server shows it (see
// /openapi.json). Every call goes to the server that served the page: the
// UI never talks to another origin.

export type RunStatus = 'running' | 'succeeded' | 'failed' | 'cancelled';
export type NodeState =
  | 'pending' | 'waiting' | 'ready' | 'starting' | 'running' | 'retrying'
  | 'succeeded' | 'memoized' | 'failed' | 'skipped' | 'cancelled';
export type Role = 'read' | 'operate' | 'admin';

export interface RunView {
  id: string;
  workflow: string;
  path: string;
  digest: string;
  status: RunStatus;
  params: Record<string, unknown>;
  parent: string | null;
  parent_node: number | null;
  created_ms: number;
  finished_ms: number | null;
  owner: string | null;
  outputs: Record<string, unknown> | null;
  message: string | null;
  signals: Record<string, unknown> | null;
}

export interface NodeView {
  id: number;
  scope: number;
  key: string;
  name: string;
  kind: string;
  state: NodeState;
  attempt: number;
  started_ms: number | null;
  finished_ms: number | null;
  /** Facts of the state: exit_code, failure, outputs, progress, artifacts,
   * memo_key, items, note, `from` (memoized), Spark progress... */
  data: Record<string, any>;
}

export interface ScopeView {
  id: number;
  tmpl: number;
  /** The block node this scope is the body of (null: the top flow). */
  parent: number | null;
  /** Item index (for-each) or pass from 0 (repeat). */
  index: number;
  vars: Record<string, unknown>;
}

export interface RunDetail {
  run: RunView;
  nodes: NodeView[];
  children: RunView[];
  scopes: ScopeView[];
}

export interface GraphNode {
  name: string;
  kind: string;
  description: string | null;
  spark: string | null;
  workflow: string | null;
  body: number | null;
  then: number | null;
  otherwise: number | null;
  vars: string[] | null;
  max: number | null;
  until: string | null;
  cond: string | null;
}

export interface GraphTmpl {
  parent: [number, number] | null;
  nodes: GraphNode[];
  preds: number[][];
}

export interface Graph {
  tmpls: GraphTmpl[];
}

export interface WorkflowView {
  name: string;
  digest: string;
  path: string;
  deployed_ms: number;
  declares: any;
}

export interface TickView {
  tick: string;
  due_ms: number;
  run: string | null;
  outcome: string;
}

export interface ScheduleView {
  id: string;
  workflow: string;
  digest: string;
  spec: any;
  paused: boolean;
  last: TickView | null;
}

export interface ArtifactView {
  id: string;
  digest: string;
  kind: string;
  size: number;
  files: number;
  media_type: string;
  name: string;
  run: string | null;
  node: number | null;
  step: string | null;
  step_key: string | null;
  attempt: number | null;
  path: string | null;
  created_ms: number;
  memoized_from?: string | null;
  tags?: Record<string, unknown>;
}

export interface LineageEdge {
  depth: number;
  /** The artifact read. */
  from: string;
  run: string;
  node: number;
  /** The artifact written. */
  to: string;
}

export interface Preview {
  kind: 'parquet' | 'csv' | 'json' | 'text' | 'image' | 'binary' | 'dir';
  media_type: string;
  size: number;
  schema: { name: string; type: string }[] | null;
  rows: unknown[][] | null;
  total_rows: number | null;
  json: unknown;
  text: string | null;
  truncated: boolean;
  files: { path: string; size: number }[] | null;
}

export interface SeriesPoint {
  run: string;
  created_ms: number;
  artifact: string;
  values: Record<string, number>;
}

export interface Series {
  points: SeriesPoint[];
  names: string[];
}

export interface LogPage {
  step: string;
  attempt: number;
  stream: string;
  offset: number;
  next: number;
  size: number;
  text: string;
  done: boolean;
}

export interface Explain {
  steps: unknown[];
  lines: string[];
}

export interface WhoAmI {
  role: Role;
  name: string | null;
  local: boolean;
}

/** An error the server answered with (its body's `error` text). */
export class ApiError extends Error {
  constructor(public status: number, message: string) {
    super(message);
  }
}

const TOKEN_KEY = 'kaon.token';

export function token(): string | null {
  return localStorage.getItem(TOKEN_KEY);
}

export function setToken(t: string | null): void {
  if (t) localStorage.setItem(TOKEN_KEY, t);
  else localStorage.removeItem(TOKEN_KEY);
}

function headers(json: boolean): Record<string, string> {
  const h: Record<string, string> = {};
  const t = token();
  if (t) h['Authorization'] = `Bearer ${t}`;
  if (json) h['Content-Type'] = 'application/json';
  return h;
}

async function check(r: Response): Promise<Response> {
  if (r.ok) return r;
  let msg = `${r.status} ${r.statusText}`;
  try {
    const body = await r.json();
    if (body && typeof body.error === 'string') msg = body.error;
    // The server's shape: {"error": {"code": "conflict", "message": "..."}}.
    else if (body && body.error && typeof body.error.message === 'string') msg = body.error.message;
  } catch {
    // not JSON: keep the status line
  }
  throw new ApiError(r.status, msg);
}

/** Builds `path?k=v&...`, leaving out empty values. */
export function url(path: string, q: Record<string, string | number | boolean | null | undefined> = {}): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) {
    if (v !== null && v !== undefined && v !== '') p.set(k, String(v));
  }
  const s = p.toString();
  return s ? `${path}?${s}` : path;
}

export async function get<T>(path: string, signal?: AbortSignal): Promise<T> {
  const r = await check(await fetch(path, { headers: headers(false), signal }));
  return (await r.json()) as T;
}

export async function post<T>(path: string, body: unknown): Promise<T | null> {
  const r = await check(
    await fetch(path, { method: 'POST', headers: headers(true), body: JSON.stringify(body ?? {}) }),
  );
  const text = await r.text();
  return text ? (JSON.parse(text) as T) : null;
}

/** A URL an <img> or a download link can use. Images cannot send a bearer
 * header, so content is fetched and shown as a blob URL instead. */
export async function blobUrl(path: string): Promise<string> {
  const r = await check(await fetch(path, { headers: headers(false) }));
  return URL.createObjectURL(await r.blob());
}

export const api = {
  whoami: () => get<WhoAmI>('/api/v1/whoami'),
  runs: (q: { workflow?: string; status?: string; schedule?: string; since?: number; until?: number; after?: string; limit?: number; children?: boolean }, signal?: AbortSignal) =>
    get<RunView[]>(url('/api/v1/runs', q), signal),
  run: (id: string) => get<RunDetail>(`/api/v1/runs/${encodeURIComponent(id)}`),
  graph: (id: string) => get<Graph>(`/api/v1/runs/${encodeURIComponent(id)}/graph`),
  cancel: (id: string, reason?: string) => post(`/api/v1/runs/${encodeURIComponent(id)}/cancel`, { reason }),
  signal: (id: string, name: string, value: unknown) =>
    post(`/api/v1/runs/${encodeURIComponent(id)}/signal`, { name, value }),
  retry: (id: string, step: string) => post(`/api/v1/runs/${encodeURIComponent(id)}/retry`, { step }),
  logs: (id: string, q: { step: string; stream?: string; attempt?: number; offset?: number; limit?: number; follow?: boolean }, signal?: AbortSignal) =>
    get<LogPage>(url(`/api/v1/runs/${encodeURIComponent(id)}/logs`, q), signal),
  explain: (run: string, step: string) => get<Explain>(url('/api/v1/cache/explain', { run, step })),
  workflows: () => get<WorkflowView[]>('/api/v1/workflows'),
  workflow: (name: string) => get<WorkflowView>(`/api/v1/workflows/${encodeURIComponent(name)}`),
  submit: (workflow: string, params: Record<string, unknown>) => post<{ id: string }>('/api/v1/runs', { workflow, params }),
  schedules: () => get<ScheduleView[]>('/api/v1/schedules'),
  ticks: (id: string, limit = 20) => get<TickView[]>(url(`/api/v1/schedules/${encodeURIComponent(id)}/ticks`, { limit })),
  pause: (id: string) => post(`/api/v1/schedules/${encodeURIComponent(id)}/pause`, {}),
  resume: (id: string) => post(`/api/v1/schedules/${encodeURIComponent(id)}/resume`, {}),
  trigger: (id: string) => post<{ run: string }>(`/api/v1/schedules/${encodeURIComponent(id)}/trigger`, {}),
  artifacts: (q: { run?: string; step?: string; name?: string; digest?: string; limit?: number }) =>
    get<ArtifactView[]>(url('/api/v1/artifacts', q)),
  artifact: (id: string) => get<ArtifactView>(`/api/v1/artifacts/${encodeURIComponent(id)}`),
  lineage: (id: string, direction: 'upstream' | 'downstream', depth = 10) =>
    get<LineageEdge[]>(url(`/api/v1/artifacts/${encodeURIComponent(id)}/lineage`, { direction, depth })),
  preview: (id: string, rows = 50) => get<Preview>(url(`/api/v1/artifacts/${encodeURIComponent(id)}/preview`, { rows })),
  contentPath: (id: string) => `/api/v1/artifacts/${encodeURIComponent(id)}/content`,
  series: (q: { workflow: string; name: string; step?: string; limit?: number }) =>
    get<Series>(url('/api/v1/artifacts/series', q)),
};

/** One server-sent event. */
export interface SseEvent {
  event: string;
  data: any;
}

/**
 * Follows a server-sent event stream with the bearer token (EventSource
 * cannot send headers, so this reads the stream with fetch). Events are
 * handed over in batches, at most one batch per animation frame, so that a
 * burst of thousands of changes costs one render, not thousands.
 * Reconnects after a drop, after `retryMs`; returns a function that stops.
 */
export function follow(
  path: string,
  onBatch: (events: SseEvent[]) => void,
  opts: { retryMs?: number; onOpen?: () => void; onError?: (e: unknown) => void } = {},
): () => void {
  const ctrl = new AbortController();
  let queue: SseEvent[] = [];
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    const batch = queue;
    queue = [];
    if (batch.length) onBatch(batch);
  };
  const push = (e: SseEvent) => {
    queue.push(e);
    if (!scheduled) {
      scheduled = true;
      // rAF stalls in a hidden tab; a timer keeps the queue bounded there.
      if (document.hidden) setTimeout(flush, 250);
      else requestAnimationFrame(flush);
    }
  };
  const m = /\/runs\/([^/?]+)\/events/.exec(path);
  const streamRun = m ? decodeURIComponent(m[1]) : null;
  const run = async () => {
    while (!ctrl.signal.aborted) {
      let ended = false;
      try {
        const r = await check(await fetch(path, { headers: headers(false), signal: ctrl.signal }));
        opts.onOpen?.();
        const reader = r.body!.pipeThrough(new TextDecoderStream()).getReader();
        // A snapshot can be megabytes in hundreds of reads: chunks of the
        // unfinished event are kept apart and joined once, so that each
        // byte is scanned once (one growing string rescanned per read
        // would cost the square of the snapshot's size).
        let parts: string[] = [];
        let endsNl = false;
        const handle = (block: string) => {
          let event = 'message';
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event:')) event = line.slice(6).trim();
            else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
          }
          if (!data.length) return;
          let parsed: unknown;
          try {
            parsed = JSON.parse(data.join('\n'));
          } catch {
            parsed = data.join('\n');
          }
          push({ event, data: parsed });
          // A run's stream also carries its sub-workflows' ends: only its
          // own ends it.
          if (event === 'finished' && (parsed as { run?: unknown } | null)?.run === streamRun) ended = true;
        };
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          let from = 0;
          if (endsNl && value.startsWith('\n')) {
            // The blank line fell across two reads.
            const block = parts.join('');
            parts = [];
            handle(block.slice(0, -1));
            from = 1;
          }
          let cut: number;
          while ((cut = value.indexOf('\n\n', from)) >= 0) {
            parts.push(value.slice(from, cut));
            const block = parts.join('');
            parts = [];
            handle(block);
            from = cut + 2;
          }
          const rest = value.slice(from);
          if (rest) parts.push(rest);
          endsNl = rest.endsWith('\n');
        }
      } catch (e) {
        if (ctrl.signal.aborted) return;
        opts.onError?.(e);
        if (e instanceof ApiError && (e.status === 401 || e.status === 403 || e.status === 404)) return;
      }
      if (ended) return;
      await new Promise((res) => setTimeout(res, opts.retryMs ?? 2000));
    }
  };
  void run();
  return () => ctrl.abort();
}

/** One setting of a step run, as its memo key recorded it. */
export interface LaunchSetting {
  name: string;
  value: unknown;
  /** An environment value's keyed digest, or a value holding a secret. */
  hidden?: boolean;
}

/** What a step run launched (`GET /api/v1/runs/{id}/steps/{key}/launch`). */
export interface LaunchView {
  instance: string;
  attempt: number;
  memo_key: string | null;
  settings: LaunchSetting[];
  inputs: { ref: string; digest: string }[];
  note: string | null;
}

/** The resolved command line, settings and input digests of a step run. */
export const launch = (run: string, step: string) =>
  get<LaunchView>(`/api/v1/runs/${encodeURIComponent(run)}/steps/${encodeURIComponent(step)}/launch`);
