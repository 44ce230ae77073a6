// Reading a node's `data` (the facts of its state). Every key may be
// absent: what is missing is simply not shown.
import type { NodeView } from '../api';

export interface SparkFacts {
  stagesDone: number | null;
  stagesTotal: number | null;
  tasksDone: number | null;
  tasksTotal: number | null;
  /** 0..100 */
  percent: number | null;
  ui: string | null;
  app: string | null;
  message: string | null;
}

const num = (v: unknown): number | null => (typeof v === 'number' && isFinite(v) ? v : null);
const str = (v: unknown): string | null => (typeof v === 'string' && v ? v : null);

/** Spark progress: the stage and task counts, wherever the server puts
 * them (`data.spark`, `data.progress.spark`, `data.progress`), else read
 * from the progress message (`stage 2/5 · tasks 120/400 · app-…`). */
export function sparkFacts(d: Record<string, any> | null | undefined): SparkFacts {
  const p = (d?.progress ?? {}) as Record<string, any>;
  const s = (d?.spark ?? p.spark ?? {}) as Record<string, any>;
  const pick = (k: string) => num(s[k]) ?? num(p[k]) ?? num(d?.[k]);
  const out: SparkFacts = {
    stagesDone: pick('stages_done'),
    stagesTotal: pick('stages_total'),
    tasksDone: pick('tasks_done'),
    tasksTotal: pick('tasks_total'),
    percent: num(s.percent) ?? num(p.percent),
    ui: str(s.ui_url) ?? str(p.ui_url) ?? str(d?.ui_url) ?? str(d?.spark_ui) ?? handleUi(d),
    app: str(s.app_id) ?? str(p.app_id) ?? str(d?.app_id),
    message: str(p.message),
  };
  if (out.message && out.stagesTotal === null) {
    const m = /stage (\d+)\/(\d+)\s*·\s*tasks (\d+)\/(\d+)(?:\s*·\s*(\S+))?/.exec(out.message);
    if (m) {
      out.stagesDone = +m[1];
      out.stagesTotal = +m[2];
      out.tasksDone = +m[3];
      out.tasksTotal = +m[4];
      out.app = out.app ?? m[5] ?? null;
    }
  }
  if (out.percent === null && out.tasksTotal) out.percent = (100 * Math.min(out.tasksDone ?? 0, out.tasksTotal)) / out.tasksTotal;
  if (out.ui && !/^https?:\/\//i.test(out.ui)) out.ui = null;
  return out;
}

/** The driver's UI a running Spark step's handle names (`handle.ui`):
 * it lives as long as the application, so only while the step runs. */
function handleUi(d: Record<string, any> | null | undefined): string | null {
  const h = d?.handle;
  if (!h || typeof h !== 'object') return null;
  if (d?.state && !['running', 'starting'].includes(d.state)) return null;
  return str(h.ui_url) ?? str(h.ui) ?? str(h.spark_ui);
}

/** The share of a Spark step done, 0..1, or null when unknown. */
export function sparkShare(f: SparkFacts): number | null {
  if (f.percent !== null) return Math.max(0, Math.min(1, f.percent / 100));
  return null;
}

/** `stages 2/5 · tasks 120/400` (or the percent). */
export function sparkText(f: SparkFacts): string {
  const parts: string[] = [];
  if (f.stagesTotal !== null) parts.push(`stages ${Math.min(f.stagesDone ?? 0, f.stagesTotal)}/${f.stagesTotal}`);
  if (f.tasksTotal !== null) parts.push(`tasks ${Math.min(f.tasksDone ?? 0, f.tasksTotal)}/${f.tasksTotal}`);
  if (!parts.length && f.percent !== null) parts.push(`${Math.round(f.percent)}%`);
  return parts.join(' · ');
}

/** A memoized node's source: `<run>/<step key>`. */
export function memoFrom(n: NodeView | undefined): { run: string; key: string } | null {
  const f = n?.data?.from;
  if (typeof f !== 'string' || !f) return null;
  const i = f.indexOf('/');
  return i < 0 ? { run: f, key: '' } : { run: f.slice(0, i), key: f.slice(i + 1) };
}

/** The failure of a failed (or retrying) node. */
export function failureOf(n: NodeView | undefined): { class: string | null; message: string; exit: number | null } | null {
  const f = n?.data?.failure ?? n?.data?.last;
  if (!f || typeof f !== 'object') return null;
  return {
    class: str(f.class),
    message: typeof f.message === 'string' ? f.message : JSON.stringify(f),
    exit: num(f.exit_code) ?? num(n?.data?.exit_code),
  };
}

/** Why a node was skipped. */
export function skipReason(n: NodeView | undefined): string | null {
  const r = n?.data?.reason;
  if (!r || typeof r !== 'object') return null;
  switch (r.why) {
    case 'upstream_failed': return `upstream ${r.upstream ?? ''} failed`.replace('  ', ' ');
    case 'condition_false': return 'branch not taken';
    case 'run_stopped': return 'the run stopped launching';
    default: return String(r.why ?? JSON.stringify(r));
  }
}

/** The signal a waiting `wait` step waits for (from its note). */
export function signalOf(n: NodeView | undefined): string | null {
  const note = n?.data?.note;
  if (typeof note !== 'string') return null;
  const m = /signal\s+`([^`]+)`/.exec(note) ?? /signal\s+"([^"]+)"/.exec(note) ?? /signal\s+(\S+)/.exec(note);
  return m ? m[1] : null;
}

/** `12.3 s`-style durations drop to short forms in boxes. */
export function short(s: string, max: number): string {
  return s.length <= max ? s : s.slice(0, Math.max(1, max - 1)) + '…';
}

export const KIND_ICON: Record<string, string> = {
  command: '$',
  spark: '✦',
  wait: '◷',
  subworkflow: '↳',
  noop: '·',
  marker: '●',
  'for-each': '⊞',
  repeat: '↻',
  when: '◇',
};

export const KIND_LABEL: Record<string, string> = {
  command: 'command',
  spark: 'spark',
  wait: 'wait',
  subworkflow: 'sub-workflow',
  noop: 'noop',
  marker: 'marker',
  'for-each': 'for each',
  repeat: 'repeat',
  when: 'when',
};
