// Deployed workflows and their schedules and triggers: when each fires
// next, what its last tick did, and (for operators) pause, resume and
// trigger now.
import { useEffect, useState } from 'preact/hooks';
import { api, type ScheduleView, type TickView, type WhoAmI, type WorkflowView } from '../api';
import { ago, clip, inline, short, when } from '../format';
import { href } from '../router';
import { errorText, useLoad } from '../components/hooks';

interface ActionError {
  schedule: string;
  action: string;
  message: string;
}

export function WorkflowsPage({ who }: { who: WhoAmI }) {
  const wfs = useLoad(() => api.workflows(), []);
  const scheds = useLoad(() => api.schedules(), []);
  const [local, setLocal] = useState<Record<string, boolean>>({});
  const [busy, setBusy] = useState<string | null>(null);
  const [failure, setFailure] = useState<ActionError | null>(null);
  const canOperate = who.role === 'operate' || who.role === 'admin';

  // What the server says wins over what a click assumed.
  useEffect(() => setLocal({}), [scheds.data]);

  const act = async (s: ScheduleView, action: 'pause' | 'resume' | 'trigger') => {
    setBusy(`${s.id}:${action}`);
    setFailure(null);
    try {
      if (action === 'trigger') {
        const r = await api.trigger(s.id);
        if (r?.run) {
          location.hash = href('runs', r.run);
          return;
        }
      } else {
        await (action === 'pause' ? api.pause(s.id) : api.resume(s.id));
        setLocal((m) => ({ ...m, [s.id]: action === 'pause' }));
      }
      scheds.reload();
    } catch (e) {
      setFailure({ schedule: s.id, action, message: errorText(e) });
    } finally {
      setBusy(null);
    }
  };

  if (wfs.error) {
    return (
      <div class="page lp">
        <h1>Workflows</h1>
        <p class="error" role="alert">{wfs.error}</p>
      </div>
    );
  }
  if (!wfs.data) return <div class="page lp loading">Loading workflows…</div>;

  const list = [...wfs.data].sort((a, b) => a.name.localeCompare(b.name));
  const all = (scheds.data ?? []).map((s) => (s.id in local ? { ...s, paused: local[s.id]! } : s));
  const byWf = new Map<string, ScheduleView[]>();
  for (const s of all) {
    const l = byWf.get(s.workflow) ?? [];
    l.push(s);
    byWf.set(s.workflow, l);
  }
  const orphans = all.filter((s) => !list.some((w) => w.name === s.workflow));

  return (
    <div class="page lp workflows-page">
      <div class="row">
        <h1>Workflows</h1>
        <span class="muted">
          {list.length} deployed
          {scheds.data ? ` · ${scheds.data.length} schedules and triggers` : ''}
        </span>
        <span class="spacer" />
        {!canOperate && <span class="muted small">read-only: pausing and triggering needs the operate role</span>}
      </div>
      {scheds.error && <p class="error">Schedules: {scheds.error}</p>}
      {list.length === 0 && (
        <p class="empty muted">
          No workflow is deployed. Deploy one with <code>kaon deploy FILE --server URL</code>.
        </p>
      )}
      {list.map((w) => (
        <WorkflowCard
          key={w.name}
          w={w}
          schedules={byWf.get(w.name) ?? []}
          schedulesLoading={scheds.loading && !scheds.data}
          canOperate={canOperate}
          busy={busy}
          failure={failure}
          act={act}
        />
      ))}
      {orphans.length > 0 && (
        <section class="panel workflow-card">
          <h2>Schedules of workflows not listed</h2>
          <Schedules list={orphans} canOperate={canOperate} busy={busy} failure={failure} act={act} />
        </section>
      )}
    </div>
  );
}

type Act = (s: ScheduleView, action: 'pause' | 'resume' | 'trigger') => void;

function WorkflowCard({
  w,
  schedules,
  schedulesLoading,
  canOperate,
  busy,
  failure,
  act,
}: {
  w: WorkflowView;
  schedules: ScheduleView[];
  schedulesLoading: boolean;
  canOperate: boolean;
  busy: string | null;
  failure: ActionError | null;
  act: Act;
}) {
  const d = w.declares && typeof w.declares === 'object' ? w.declares : {};
  const description: string | null = typeof d.description === 'string' ? d.description : null;
  const params = paramRows(d.params);
  return (
    <section class="panel workflow-card" data-testid="workflow-card" data-workflow={w.name}>
      <div class="row card-head">
        <h2>{w.name}</h2>
        <span class="mono muted" title={w.digest}>{short(w.digest)}</span>
        <span class="muted" title={when(w.deployed_ms)}>
          deployed {when(w.deployed_ms)} ({ago(w.deployed_ms)})
        </span>
        <span class="spacer" />
        <a href={`${href('runs')}?workflow=${encodeURIComponent(w.name)}`} data-testid="workflow-runs">
          runs →
        </a>
      </div>
      <div class="mono muted small wrap">{w.path}</div>
      {description && <p class="description">{description}</p>}
      {params.length > 0 && (
        <table class="grid dense params">
          <thead>
            <tr>
              <th>parameter</th>
              <th>type</th>
              <th>default</th>
              <th>about</th>
            </tr>
          </thead>
          <tbody>
            {params.map((p) => (
              <tr key={p.name}>
                <td class="mono">{p.name}</td>
                <td class="mono muted">{p.type}</td>
                <td class="mono">{p.default}</td>
                <td class="wrap">{p.about}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {schedulesLoading ? (
        <p class="muted small">Loading schedules…</p>
      ) : schedules.length ? (
        <Schedules list={schedules} canOperate={canOperate} busy={busy} failure={failure} act={act} />
      ) : (
        <p class="muted small">No schedules or triggers.</p>
      )}
    </section>
  );
}

interface ParamRow {
  name: string;
  type: string;
  default: string;
  about: string;
}

/** Declared parameters, as a list of `{name, type, default, description}`
 * or a table of them by name. */
function paramRows(p: unknown): ParamRow[] {
  if (!p || typeof p !== 'object') return [];
  const one = (name: string, v: any): ParamRow => {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      return {
        name: String(v.name ?? name),
        type: v.type === undefined ? '' : inline(v.type),
        default: v.default === undefined ? '' : inline(v.default),
        about: typeof v.description === 'string' ? v.description : '',
      };
    }
    return { name, type: '', default: inline(v), about: '' };
  };
  if (Array.isArray(p)) return p.map((v, i) => one(String(v?.name ?? i), v));
  return Object.entries(p as Record<string, unknown>).map(([k, v]) => one(k, v));
}

function Schedules({
  list,
  canOperate,
  busy,
  failure,
  act,
}: {
  list: ScheduleView[];
  canOperate: boolean;
  busy: string | null;
  failure: ActionError | null;
  act: Act;
}) {
  const [open, setOpen] = useState<string | null>(null);
  const mine = failure && list.some((s) => s.id === failure.schedule) ? failure : null;
  return (
    <div class="schedules">
      <table class="grid dense">
        <thead>
          <tr>
            <th>schedule</th>
            <th>fires</th>
            <th>next</th>
            <th>state</th>
            <th>last tick</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {[...list]
            .sort((a, b) => a.id.localeCompare(b.id))
            .map((s) => (
              <ScheduleRow
                key={s.id}
                s={s}
                canOperate={canOperate}
                busy={busy}
                act={act}
                ticksOpen={open === s.id}
                toggleTicks={() => setOpen(open === s.id ? null : s.id)}
              />
            ))}
        </tbody>
      </table>
      {mine && (
        <p class="error action-failure" role="alert">
          <span class="muted">
            {mine.action} {mine.schedule}:{' '}
          </span>
          <span data-testid="action-error" class="action-error">
            {mine.message}
          </span>
        </p>
      )}
    </div>
  );
}

function ScheduleRow({
  s,
  canOperate,
  busy,
  act,
  ticksOpen,
  toggleTicks,
}: {
  s: ScheduleView;
  canOperate: boolean;
  busy: string | null;
  act: Act;
  ticksOpen: boolean;
  toggleTicks: () => void;
}) {
  const spec = s.spec && typeof s.spec === 'object' ? s.spec : {};
  const name = s.id.startsWith(`${s.workflow}:`) ? s.id.slice(s.workflow.length + 1) : s.id;
  const nextMs: number | null =
    num((s as any).next_ms) ?? num(spec.next_ms) ?? (typeof spec.next === 'string' ? Date.parse(spec.next) || null : num(spec.next));
  const mine = busy?.startsWith(`${s.id}:`) ?? false;
  return (
    <>
      <tr data-testid="schedule-row" data-schedule-id={s.id} data-paused={s.paused ? 'true' : 'false'}>
        <td>
          <a class="mono" href={`${href('runs')}?schedule=${encodeURIComponent(s.id)}`} title={`runs started by ${s.id}`}>
            {name}
          </a>
          {s.digest && <span class="muted mono small" title={`starts version ${s.digest}`}> {short(s.digest, 8)}</span>}
        </td>
        <td>
          {spec.kind === 'trigger' ? (
            <span>
              when <b>{String(spec.on_success ?? '?')}</b> succeeds
            </span>
          ) : spec.cron ? (
            <span>
              <code>{String(spec.cron)}</code> <span class="muted">{String(spec.timezone ?? 'UTC')}</span>
            </span>
          ) : (
            <code>{inline(spec)}</code>
          )}
          {spec.params && typeof spec.params === 'object' && Object.keys(spec.params).length > 0 && (
            <div class="muted small mono" title={inline(spec.params)}>
              {Object.entries(spec.params as Record<string, unknown>)
                .map(([k, v]) => `${k}=${inline(v)}`)
                .join(', ')}
            </div>
          )}
        </td>
        <td>
          {s.paused ? (
            <span class="muted">paused</span>
          ) : nextMs ? (
            <span title={new Date(nextMs).toString()}>{when(nextMs)}</span>
          ) : (
            <span class="muted">{spec.kind === 'trigger' ? 'on an upstream success' : '—'}</span>
          )}
        </td>
        <td>{s.paused ? <span class="badge paused">paused</span> : <span class="badge active">active</span>}</td>
        <td>
          {s.last ? (
            <span>
              <span title={s.last.tick}>{when(s.last.due_ms)}</span> <TickOutcome t={s.last} />{' '}
              {s.last.run && (
                <a class="mono" href={href('runs', s.last.run)}>
                  {s.last.run}
                </a>
              )}
            </span>
          ) : (
            <span class="muted">never fired</span>
          )}
        </td>
        <td class="actions">
          <button type="button" class="link" onClick={toggleTicks} aria-expanded={ticksOpen}>
            ticks
          </button>
          {canOperate && (
            <>
              {s.paused ? (
                <button
                  type="button"
                  data-testid="schedule-resume"
                  disabled={mine}
                  onClick={() => act(s, 'resume')}
                >
                  Resume
                </button>
              ) : (
                <button type="button" data-testid="schedule-pause" disabled={mine} onClick={() => act(s, 'pause')}>
                  Pause
                </button>
              )}
              <button
                type="button"
                class="primary"
                data-testid="schedule-trigger"
                disabled={mine}
                onClick={() => act(s, 'trigger')}
              >
                {busy === `${s.id}:trigger` ? 'Starting…' : 'Trigger now'}
              </button>
            </>
          )}
        </td>
      </tr>
      {ticksOpen && (
        <tr class="ticks-row">
          <td colSpan={6}>
            <Ticks id={s.id} />
          </td>
        </tr>
      )}
    </>
  );
}

function num(v: unknown): number | null {
  return typeof v === 'number' && isFinite(v) ? v : null;
}

function TickOutcome({ t }: { t: TickView }) {
  const o = t.outcome;
  const cut = o.indexOf(':');
  const head = (cut < 0 ? o : o.slice(0, cut)).trim();
  const why = cut < 0 ? '' : o.slice(cut + 1).trim();
  const cls =
    head === 'started' ? 'st-succeeded' : head === 'failed' ? 'st-failed' : head === 'skipped' ? 'st-skipped' : 'st-waiting';
  return (
    <span class="tick-outcome" title={o}>
      <span class={`badge ${cls}`}>{head}</span>
      {why && <span class="muted small"> {clip(why, 60)}</span>}
    </span>
  );
}

function Ticks({ id }: { id: string }) {
  const t = useLoad(() => api.ticks(id, 10), [id]);
  if (t.error) return <p class="error small">{t.error}</p>;
  if (!t.data) return <p class="muted small">Loading ticks…</p>;
  if (!t.data.length) return <p class="muted small">No ticks yet.</p>;
  return (
    <table class="grid dense ticks">
      <tbody>
        {t.data.map((x) => (
          <tr key={x.tick}>
            <td title={x.tick}>{when(x.due_ms)}</td>
            <td><TickOutcome t={x} /></td>
            <td>{x.run && <a class="mono" href={href('runs', x.run)}>{x.run}</a>}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
