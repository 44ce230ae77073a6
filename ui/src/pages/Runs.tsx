// The home page: runs, newest first, a page of 50 at a time by the server's
// cursor, filtered by workflow, state, schedule and dates (all in the URL,
// so a filtered view can be shared), kept live by the server's event
// stream; above them, each workflow's recent durations as a sparkline.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, follow, type RunStatus, type RunView, type ScheduleView, type SseEvent } from '../api';
import { ago, clip, dayMs, dayOf, duration, paramsLine, when } from '../format';
import { href, setQuery } from '../router';
import { errorText, pool, useNow } from '../components/hooks';
import { Sparkline } from '../components/Sparkline';
import { StateBadge } from '../components/StateBadge';

const PAGE = 50;
const STATES: RunStatus[] = ['running', 'succeeded', 'failed', 'cancelled'];
/** Sparklines drawn at most (each costs one small request). */
const SPARKS = 24;
const SPARK_RUNS = 30;

interface Filters {
  workflow: string;
  status: string;
  schedule: string;
  /** ms, or '' */
  since: string;
  until: string;
  after: string;
}

function filtersOf(q: URLSearchParams): Filters {
  return {
    workflow: q.get('workflow') ?? '',
    status: q.get('status') ?? '',
    schedule: q.get('schedule') ?? '',
    since: q.get('since') ?? '',
    until: q.get('until') ?? '',
    after: q.get('after') ?? '',
  };
}

/** A date bound of the URL (ms, or a `YYYY-MM-DD` day) as ms. */
function boundMs(v: string, end: boolean): number | undefined {
  if (!v) return undefined;
  if (/^\d+$/.test(v)) return Number(v);
  return dayMs(v, end) ?? undefined;
}

export function RunsPage({ query }: { query: URLSearchParams }) {
  const f = filtersOf(query);
  const since = boundMs(f.since, false);
  const until = boundMs(f.until, true);
  const filterKey = JSON.stringify([f.workflow, f.status, f.schedule, since ?? '', until ?? '']);
  const pageKey = filterKey + '|' + f.after;

  const [rows, setRows] = useState<RunView[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);
  const [workflows, setWorkflows] = useState<string[] | null>(null);
  const [schedules, setSchedules] = useState<ScheduleView[]>([]);
  const [live, setLive] = useState<'connecting' | 'live' | 'down'>('connecting');
  /** Cursors of the pages before this one (for "Newer"). */
  const back = useRef<string[]>([]);
  const lastFetch = useRef(0);
  const pending = useRef<ReturnType<typeof setTimeout> | null>(null);
  const shownKey = useRef('');

  // The page.
  useEffect(() => {
    const ctrl = new AbortController();
    if (shownKey.current !== pageKey) {
      // Another page or filter: what is shown is no longer it.
      setRows(null);
      shownKey.current = pageKey;
    }
    setLoading(true);
    lastFetch.current = Date.now();
    api
      .runs(
        {
          workflow: f.workflow || undefined,
          status: f.status || undefined,
          schedule: f.schedule || undefined,
          since,
          until,
          after: f.after || undefined,
          limit: PAGE,
        },
        ctrl.signal,
      )
      .then(
        (r) => {
          setRows(r);
          setError(null);
          setLoading(false);
        },
        (e) => {
          if (ctrl.signal.aborted) return;
          setError(errorText(e));
          setLoading(false);
        },
      );
    return () => ctrl.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [pageKey, tick]);

  // A new filter starts over at the first page.
  useEffect(() => {
    back.current = [];
  }, [filterKey]);

  // What the selects offer.
  useEffect(() => {
    api.workflows().then(
      (w) => setWorkflows([...new Set(w.map((x) => x.name))].sort()),
      () => setWorkflows([]),
    );
    api.schedules().then(
      (s) => setSchedules([...s].sort((a, b) => a.id.localeCompare(b.id))),
      () => setSchedules([]),
    );
  }, []);

  // Sparklines: the recent finished runs of each workflow (of the deployed
  // ones; of those on the page while none is deployed).
  const sparkNames = f.workflow
    ? [f.workflow]
    : [...new Set(workflows?.length ? workflows : (rows ?? []).map((r) => r.workflow))].sort();
  const [sparks, setSparks] = useState<Map<string, RunView[] | 'error'>>(new Map());
  const sparksRef = useRef(sparks);
  sparksRef.current = sparks;
  /** Workflows whose sparkline a run's end made out of date. */
  const staleSparks = useRef(new Set<string>());
  const [staleN, setStaleN] = useState(0);
  const sparkReady = workflows !== null && rows !== null;
  const sparkKey = sparkNames.slice(0, SPARKS).join('\n');
  useEffect(() => {
    if (!sparkReady) return;
    let on = true;
    const stale = staleSparks.current;
    staleSparks.current = new Set();
    const todo = sparkNames.slice(0, SPARKS).filter((n) => !sparksRef.current.has(n) || stale.has(n));
    if (!todo.length) return;
    void pool(todo, 4, async (w) => {
      let v: RunView[] | 'error';
      try {
        v = await api.runs({ workflow: w, limit: SPARK_RUNS });
      } catch {
        v = 'error';
      }
      if (on) setSparks((m) => new Map(m).set(w, v));
    });
    return () => {
      on = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [sparkReady, sparkKey, staleN]);

  // Live: new runs and ends, from the server's event stream.
  const state = useRef({ f, rows, since, until });
  state.current = { f, rows, since, until };
  const runWorkflow = useRef(new Map<string, string>());
  useEffect(() => {
    const refetch = () => {
      if (pending.current) return;
      const wait = Math.max(0, 1000 - (Date.now() - lastFetch.current));
      pending.current = setTimeout(() => {
        pending.current = null;
        setTick((t) => t + 1);
      }, wait);
    };
    let sparkTimer: ReturnType<typeof setTimeout> | null = null;
    const staleSpark = (w: string) => {
      staleSparks.current.add(w);
      if (sparkTimer) return;
      sparkTimer = setTimeout(() => {
        sparkTimer = null;
        setStaleN((n) => n + 1);
      }, 2000);
    };
    const onBatch = (events: SseEvent[]) => {
      const { f, rows, until } = state.current;
      const first = !f.after;
      let again = false;
      const ended = new Map<string, RunStatus>();
      for (const e of events) {
        const d = e.data ?? {};
        if (e.event === 'run') {
          if (typeof d.run === 'string' && typeof d.workflow === 'string') runWorkflow.current.set(d.run, d.workflow);
          if (d.run !== d.root) continue; // a sub-workflow's run: not listed
          if (f.workflow && d.workflow !== f.workflow) continue;
          if (f.status && f.status !== 'running') continue;
          if (until !== undefined && until < Date.now()) continue;
          again = true;
        } else if (e.event === 'finished') {
          if (d.run !== d.root) continue;
          ended.set(d.run, d.status);
          const w = runWorkflow.current.get(d.run) ?? rows?.find((r) => r.id === d.run)?.workflow;
          if (w) staleSpark(w);
          if (rows?.some((r) => r.id === d.run) || (f.status && f.status !== 'running')) again = true;
        } else if (e.event === 'lagged') {
          again = true;
        }
      }
      if (ended.size) {
        const now = Date.now();
        setRows((rs) =>
          rs
            ? rs.map((r) => {
                const s = ended.get(r.id);
                return s && r.status === 'running' ? { ...r, status: s, finished_ms: r.finished_ms ?? now } : r;
              })
            : rs,
        );
      }
      // Only the first page changes by itself; older pages stay as read.
      if (again && first) refetch();
    };
    const stop = follow('/api/v1/events', onBatch, {
      onOpen: () => setLive('live'),
      onError: () => setLive('down'),
    });
    return () => {
      stop();
      if (pending.current) clearTimeout(pending.current);
      pending.current = null;
      if (sparkTimer) clearTimeout(sparkTimer);
    };
  }, []);

  const anyRunning = rows?.some((r) => r.status === 'running') ?? false;
  const now = useNow(anyRunning ? 1000 : 30_000);

  const set = (q: Record<string, string | null>) => setQuery({ ...q, after: null });
  const next = () => {
    if (!rows?.length) return;
    back.current.push(f.after);
    setQuery({ after: rows[rows.length - 1]!.id });
  };
  const newer = () => {
    const prev = back.current.pop();
    setQuery({ after: prev || null });
  };
  const filtered = !!(f.workflow || f.status || f.schedule || f.since || f.until);

  const wfOptions = [...new Set([...(workflows ?? []), ...(f.workflow ? [f.workflow] : [])])].sort();
  const schedOptions = schedules.map((s) => s.id);
  if (f.schedule && !schedOptions.includes(f.schedule)) schedOptions.push(f.schedule);

  return (
    <div class="page lp runs-page">
      <div class="row">
        <h1>Runs</h1>
        <span class={`live-dot ${live}`} title={live === 'live' ? 'following the server\u2019s events' : live === 'down' ? 'event stream lost; reconnecting' : 'connecting'}>
          {live === 'live' ? 'live' : live === 'down' ? 'reconnecting…' : 'connecting…'}
        </span>
      </div>

      <section class="sparklines" aria-label="recent durations by workflow">
        {sparkNames.length === 0 && workflows !== null && rows !== null ? (
          <p class="muted small">No workflows yet: deploy one with <code>kaon deploy</code>.</p>
        ) : (
          sparkNames.slice(0, SPARKS).map((w) => {
            const s = sparks.get(w);
            if (s === 'error') {
              return (
                <div class="sparkline" data-testid="sparkline" data-workflow={w} key={w}>
                  <div class="sparkline-head">
                    <span>{w}</span>
                    <span class="error small">could not load</span>
                  </div>
                </div>
              );
            }
            if (!s) {
              return (
                <div class="sparkline loading" key={w}>
                  <div class="sparkline-head">
                    <span>{w}</span>
                    <span class="muted">…</span>
                  </div>
                </div>
              );
            }
            return <Sparkline key={w} workflow={w} runs={s} />;
          })
        )}
        {sparkNames.length > SPARKS && (
          <p class="muted small">
            and {sparkNames.length - SPARKS} more workflows: filter by one to see its durations.
          </p>
        )}
      </section>

      <form class="filters row" onSubmit={(e) => e.preventDefault()} aria-label="filters">
        <label>
          workflow{' '}
          <select
            data-testid="filter-workflow"
            value={f.workflow}
            onChange={(e) => set({ workflow: (e.target as HTMLSelectElement).value })}
          >
            <option value="">any</option>
            {wfOptions.map((w) => (
              <option key={w} value={w}>
                {w}
              </option>
            ))}
          </select>
        </label>
        <WorkflowText value={f.workflow} onSet={(w) => set({ workflow: w })} />
        <label>
          state{' '}
          <select
            data-testid="filter-status"
            value={f.status}
            onChange={(e) => set({ status: (e.target as HTMLSelectElement).value })}
          >
            <option value="">any</option>
            {STATES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </label>
        <label>
          schedule{' '}
          <select
            data-testid="filter-schedule"
            value={f.schedule}
            onChange={(e) => set({ schedule: (e.target as HTMLSelectElement).value })}
          >
            <option value="">any</option>
            {schedOptions.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </label>
        <label>
          from{' '}
          <input
            type="date"
            data-testid="filter-since"
            value={since !== undefined ? dayOf(since) : ''}
            onChange={(e) => {
              const v = (e.target as HTMLInputElement).value;
              const ms = dayMs(v, false);
              set({ since: ms === null ? null : String(ms) });
            }}
          />
        </label>
        <label>
          to{' '}
          <input
            type="date"
            data-testid="filter-until"
            value={until !== undefined ? dayOf(until) : ''}
            onChange={(e) => {
              const v = (e.target as HTMLInputElement).value;
              const ms = dayMs(v, true);
              set({ until: ms === null ? null : String(ms) });
            }}
          />
        </label>
        {filtered && (
          <button
            type="button"
            class="link"
            onClick={() => setQuery({ workflow: null, status: null, schedule: null, since: null, until: null, after: null })}
          >
            clear filters
          </button>
        )}
        <span class="spacer" />
        {loading && rows && <span class="muted small">updating…</span>}
      </form>

      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {rows === null && !error && <p class="muted loading">Loading runs…</p>}
      {rows !== null && (
        <div class="table-scroll">
          <table class="grid runs" data-testid="runs-table">
            <thead>
              <tr>
                <th>state</th>
                <th>run</th>
                <th>workflow</th>
                <th>created</th>
                <th>duration</th>
                <th>params</th>
                <th>message</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((r) => (
                <RunRow key={r.id} r={r} now={now} />
              ))}
            </tbody>
          </table>
          {rows.length === 0 && (
            <p class="empty muted">
              {f.after
                ? 'No older runs.'
                : filtered
                  ? 'No run matches these filters.'
                  : 'No runs yet. Start one with kaon run, or deploy a workflow and trigger it.'}
            </p>
          )}
        </div>
      )}

      <div class="row pager">
        <button type="button" data-testid="runs-newer" onClick={newer} disabled={!f.after}>
          ← Newer
        </button>
        <button
          type="button"
          data-testid="runs-next"
          onClick={next}
          disabled={!rows || rows.length < PAGE}
        >
          Next page →
        </button>
        <span class="muted small">
          {rows && rows.length > 0 && `${f.after ? 'older runs' : 'newest runs'}, ${rows.length} shown`}
        </span>
      </div>
    </div>
  );
}

function RunRow({ r, now }: { r: RunView; now: number }) {
  const params = paramsLine(r.params);
  const ms = r.finished_ms !== null ? r.finished_ms - r.created_ms : r.status === 'running' ? now - r.created_ms : null;
  return (
    <tr data-testid="run-row" data-run-id={r.id} data-status={r.status}>
      <td>
        <StateBadge state={r.status} />
      </td>
      <td>
        <a class="mono" href={href('runs', r.id)}>
          {r.id}
        </a>
      </td>
      <td>
        <a href={`${href('runs')}?workflow=${encodeURIComponent(r.workflow)}`} title={`only ${r.workflow}`}>
          {r.workflow}
        </a>
      </td>
      <td title={new Date(r.created_ms).toString()}>
        {when(r.created_ms)} <span class="muted">{ago(r.created_ms, now)}</span>
      </td>
      <td class={`num${r.status === 'running' ? ' ticking' : ''}`}>{ms === null ? '' : duration(Math.max(0, ms))}</td>
      <td class="clip mono" title={params}>
        {clip(params, 60)}
      </td>
      <td class="clip" title={r.message ?? ''}>
        {r.message ? clip(r.message, 80) : ''}
      </td>
    </tr>
  );
}

/** A workflow name typed (one not deployed, or faster than the list). */
function WorkflowText({ value, onSet }: { value: string; onSet: (w: string) => void }) {
  const [text, setText] = useState(value);
  useEffect(() => setText(value), [value]);
  const apply = () => {
    if (text.trim() !== value) onSet(text.trim());
  };
  return (
    <input
      type="search"
      class="wf-text"
      data-testid="filter-workflow-text"
      aria-label="workflow name"
      placeholder="or type a name"
      value={text}
      onInput={(e) => setText((e.target as HTMLInputElement).value)}
      onKeyDown={(e) => {
        if (e.key === 'Enter') apply();
      }}
      onBlur={apply}
    />
  );
}
