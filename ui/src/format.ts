// How times, sizes and states read on screen.
import type { NodeState, RunStatus } from './api';

export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !isFinite(ms)) return '';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  const h = Math.floor(m / 60);
  return `${h} h ${m % 60} min`;
}

export function since(start: number | null | undefined, end: number | null | undefined, now = Date.now()): number | null {
  if (!start) return null;
  return (end ?? now) - start;
}

export function when(ms: number | null | undefined): string {
  if (!ms) return '';
  const d = new Date(ms);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function ago(ms: number | null | undefined, now = Date.now()): string {
  if (!ms) return '';
  const s = Math.max(0, (now - ms) / 1000);
  if (s < 60) return `${Math.floor(s)} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${u[i]}`;
}

/** States that will not change again. */
export function terminal(s: NodeState | RunStatus): boolean {
  return ['succeeded', 'memoized', 'failed', 'skipped', 'cancelled'].includes(s);
}

/** The CSS class of a state: its colour everywhere (Meson's: green done,
 * yellow running, blue activated-but-waiting, red failed). */
export function stateClass(s: string): string {
  return `st-${s}`;
}

// ---- list and artifact pages (Runs, Workflows, Artifact) ----

/** The first `n` characters of an id or digest (`blake3:` kept out). */
export function short(id: string | null | undefined, n = 12): string {
  if (!id) return '';
  const s = id.replace(/^blake3:/, '');
  return s.length > n ? s.slice(0, n) : s;
}

/** A value as one short line: strings bare, the rest as JSON. */
export function inline(v: unknown): string {
  if (typeof v === 'string') return v;
  if (v === undefined) return '';
  try {
    return JSON.stringify(v);
  } catch {
    return String(v);
  }
}

/** `k=v, k=v` of a run's parameters. */
export function paramsLine(params: Record<string, unknown> | null | undefined): string {
  if (!params) return '';
  return Object.entries(params)
    .map(([k, v]) => `${k}=${inline(v)}`)
    .join(', ');
}

/** Cuts text to `n` characters with an ellipsis. */
export function clip(s: string, n: number): string {
  return s.length > n ? s.slice(0, n - 1) + '…' : s;
}

/** A number for reading: integers as they are, others to 4 significant digits. */
export function num(v: number | null | undefined): string {
  if (v === null || v === undefined || !isFinite(v)) return '';
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(3);
  return String(Number(v.toPrecision(4)));
}

/** `YYYY-MM-DD` of a time in local time (what a date input shows). */
export function dayOf(ms: number): string {
  const d = new Date(ms);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

/** The first (`end` false) or last (`end` true) ms of a local `YYYY-MM-DD`. */
export function dayMs(day: string, end = false): number | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(day);
  if (!m) return null;
  const start = new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]) + (end ? 1 : 0)).getTime();
  return end ? start - 1 : start;
}
