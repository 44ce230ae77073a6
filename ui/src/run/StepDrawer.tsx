// The step drawer: everything known about one node, its logs, why it ran,
// and (for a failed step of a failed run) a retry.
import { Fragment } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import type { GraphNode, LaunchView, NodeView } from '../api';
import { api, launch as fetchLaunch } from '../api';
import { href } from '../router';
import { bytes, duration, when } from '../format';
import { LogView } from './LogView';
import { type RunModel, isTerminal, normKind, toText } from './model';
import { KIND_LABEL, failureOf, memoFrom, signalOf, skipReason, sparkFacts, sparkText } from './facts';

export interface StepDrawerProps {
  model: RunModel;
  node: NodeView | undefined;
  /** The instance key (known even for a node not stored yet). */
  stepKey: string;
  gn: GraphNode | null;
  version: number;
  now: number;
  canOperate: boolean;
  error: string | null;
  onRetry: (model: RunModel, key: string) => Promise<void>;
  onClose: () => void;
}

/** Keys of `data` shown in their own sections (the rest is listed raw). */
const SHOWN = new Set([
  'state', 'attempt', 'attempts', 'handle', 'at', 'last', 'from', 'failure', 'reason', 'user_failures',
  'platform_failures', 'started', 'attempt_started', 'finished', 'exit_code', 'outputs', 'progress', 'kill',
  'items', 'note', 'artifacts', 'inputs', 'memo_key', 'spark',
]);
/** Keys that may carry the resolved command or Spark application. */
const LAUNCH = ['command', 'argv', 'args', 'app', 'main_class', 'class', 'conf', 'spark_conf', 'env', 'params', 'workdir', 'cwd', 'master', 'resolved', 'launch', 'submit'];

export function StepDrawer(p: StepDrawerProps) {
  const { model, node: n, gn } = p;
  const kind = normKind(n?.kind ?? gn?.kind);
  const [explain, setExplain] = useState<{ lines: string[] } | { error: string } | null>(null);
  const [explaining, setExplaining] = useState(false);
  const [retrying, setRetrying] = useState(false);
  const [launched, setLaunched] = useState<LaunchView | { error: string } | null>(null);
  useEffect(() => setExplain(null), [model.id, p.stepKey]);

  const state = n?.state ?? 'pending';
  const fail = failureOf(n);
  const memo = memoFrom(n);
  const spark = kind === 'spark' ? sparkFacts(n?.data) : null;
  const d = (n?.data ?? {}) as Record<string, any>;
  const dur = n?.started_ms ? (n.finished_ms ?? (isTerminal(n.state) ? n.started_ms : p.now)) - n.started_ms : null;
  const attemptStarted = typeof d.attempt_started === 'number' ? d.attempt_started : null;
  const child = kind === 'subworkflow' && n ? model.childOf(n) : null;
  const launch = LAUNCH.filter((k) => d[k] !== undefined && d[k] !== null);
  const rest = Object.keys(d).filter((k) => !SHOWN.has(k) && !LAUNCH.includes(k));
  const hasLogs = kind === 'command' || kind === 'spark' || (!['marker', 'noop', 'for-each', 'repeat', 'when', 'wait', 'subworkflow'].includes(kind));
  const showRetry = p.canOperate && state === 'failed' && model.run.status !== 'running';
  const history: any[] = Array.isArray(d.history) ? d.history : Array.isArray(d.attempts_log) ? d.attempts_log : [];
  // What the step launched (its resolved command line and settings), once
  // it has: asked again when a new attempt starts.
  const hasLaunched = (kind === 'command' || kind === 'spark') && (n?.attempt ?? 0) > 0;
  useEffect(() => {
    setLaunched(null);
    if (!hasLaunched) return;
    let live = true;
    fetchLaunch(model.id, p.stepKey).then(
      (l) => live && setLaunched(l),
      (e) => live && setLaunched({ error: String((e as Error).message ?? e) }),
    );
    return () => {
      live = false;
    };
  }, [model.id, p.stepKey, hasLaunched, n?.attempt]);
  const launchArgv = launched && !('error' in launched)
    ? launched.settings.filter((s) => /^argv\[\d+\]$/.test(s.name)).map((s) => s.value)
    : [];

  const doExplain = async () => {
    setExplaining(true);
    try {
      const r = await api.explain(model.id, p.stepKey);
      setExplain({ lines: r.lines ?? [] });
    } catch (e) {
      setExplain({ error: String((e as Error).message ?? e) });
    } finally {
      setExplaining(false);
    }
  };
  const doRetry = async () => {
    setRetrying(true);
    try {
      await p.onRetry(model, p.stepKey);
    } finally {
      setRetrying(false);
    }
  };

  return (
    <aside class="drawer" data-testid="step-drawer" data-key={p.stepKey} data-state={state}>
      <header class="dr-head">
        <div class="dr-title">
          <span class={`badge st-${state}`}>{state === 'memoized' ? '↺ ' : ''}{state}</span>
          <strong class="mono" title={p.stepKey}>{p.stepKey}</strong>
        </div>
        <button class="link dr-close" data-testid="drawer-close" title="Close (Esc)" onClick={p.onClose}>✕</button>
      </header>
      <div class="dr-body">
        <dl class="facts">
          <dt>kind</dt>
          <dd>
            {KIND_LABEL[kind] ?? kind}
            {gn?.spark ? <span class="tag">Spark {gn.spark}</span> : null}
            {gn?.workflow ? <span class="tag">{gn.workflow}</span> : null}
          </dd>
          {model.run.parent && (
            <>
              <dt>run</dt>
              <dd><a href={href('runs', model.id)}>{model.id}</a> (a sub-workflow's run)</dd>
            </>
          )}
          {gn?.description && (
            <>
              <dt>about</dt>
              <dd>{gn.description}</dd>
            </>
          )}
          <dt>attempts</dt>
          <dd>
            {n?.attempt ?? 0}
            {d.user_failures ? <span class="muted"> · {d.user_failures} failed (step's retries)</span> : null}
            {d.platform_failures ? <span class="muted"> · {d.platform_failures} lost (platform)</span> : null}
          </dd>
          {n?.started_ms ? (
            <>
              <dt>started</dt>
              <dd>{when(n.started_ms)}{attemptStarted && attemptStarted !== n.started_ms ? <span class="muted"> · this attempt {when(attemptStarted)}</span> : null}</dd>
            </>
          ) : null}
          {n?.finished_ms ? (
            <>
              <dt>finished</dt>
              <dd>{when(n.finished_ms)}</dd>
            </>
          ) : null}
          {dur !== null && (
            <>
              <dt>duration</dt>
              <dd>{duration(dur)}{!isTerminal(state) ? ' (running)' : ''}</dd>
            </>
          )}
          {typeof d.exit_code === 'number' && (
            <>
              <dt>exit code</dt>
              <dd class="mono">{d.exit_code}</dd>
            </>
          )}
          {fail && (
            <>
              <dt>{state === 'retrying' ? 'last failure' : 'failure'}</dt>
              <dd class="failure">
                {fail.class && <span class="tag">{fail.class}</span>}
                {fail.exit !== null && <span class="tag">exit {fail.exit}</span>}
                <span class="mono">{fail.message}</span>
              </dd>
            </>
          )}
          {state === 'retrying' && typeof d.at === 'number' && (
            <>
              <dt>next attempt</dt>
              <dd>{when(d.at)} (attempt {n!.attempt + 1})</dd>
            </>
          )}
          {skipReason(n) && (
            <>
              <dt>skipped</dt>
              <dd>{skipReason(n)}</dd>
            </>
          )}
          {d.kill && (
            <>
              <dt>stop asked</dt>
              <dd>{String(d.kill)}</dd>
            </>
          )}
          {typeof d.note === 'string' && (
            <>
              <dt>note</dt>
              <dd>{d.note}{kind === 'wait' && signalOf(n) ? <span class="muted"> (signal name: <code>{signalOf(n)}</code>)</span> : null}</dd>
            </>
          )}
          {memo && (
            <>
              <dt>reused</dt>
              <dd>
                from <a href={href('runs', memo.run)} class="mono">{memo.run}</a>
                {memo.key ? <span class="mono"> / {memo.key}</span> : null}
              </dd>
            </>
          )}
          {typeof d.items === 'number' && (
            <>
              <dt>{kind === 'repeat' ? 'passes' : 'items'}</dt>
              <dd>{d.items}</dd>
            </>
          )}
          {child && (
            <>
              <dt>child run</dt>
              <dd><a href={href('runs', child)} class="mono">{child}</a></dd>
            </>
          )}
        </dl>

        {spark && (
          <section>
            <h3>Spark</h3>
            <div class="spark-line">
              <div class="pbar-html"><i style={{ width: `${Math.round((spark.percent ?? (state === 'succeeded' ? 100 : 0)))}%` }} /></div>
              <span>{sparkText(spark) || (state === 'succeeded' ? 'done' : 'no progress reported yet')}</span>
              {spark.ui && <a href={spark.ui} target="_blank" rel="noopener noreferrer">Spark UI ↗</a>}
            </div>
            {spark.app && <div class="muted mono">{spark.app}</div>}
          </section>
        )}

        {!spark && d.progress && (typeof d.progress.percent === 'number' || d.progress.message) && (
          <section>
            <h3>Progress</h3>
            <div class="spark-line">
              {typeof d.progress.percent === 'number' && <div class="pbar-html"><i style={{ width: `${Math.round(d.progress.percent)}%` }} /></div>}
              <span>{typeof d.progress.percent === 'number' ? `${Math.round(d.progress.percent)}%` : ''} {d.progress.message ?? ''}</span>
            </div>
          </section>
        )}

        {history.length > 0 && (
          <section>
            <h3>Attempts</h3>
            <table class="grid compact">
              <thead><tr><th>#</th><th>exit</th><th>reason</th><th>started</th><th>took</th></tr></thead>
              <tbody>
                {history.map((h, i) => (
                  <tr key={i}>
                    <td>{h.attempt ?? i + 1}</td>
                    <td class="mono">{h.exit_code ?? h.failure?.exit_code ?? ''}</td>
                    <td>{h.failure ? `${h.failure.class ? `[${h.failure.class}] ` : ''}${h.failure.message ?? ''}` : h.state ?? ''}</td>
                    <td>{when(h.started ?? h.started_ms)}</td>
                    <td>{h.started && h.finished ? duration(h.finished - h.started) : ''}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </section>
        )}

        {(launch.length > 0 || hasLaunched) && (
          <section>
            <h3>
              {kind === 'spark' ? 'Application' : 'Command'}
              {launched && !('error' in launched) && launched.settings.length > 0 ? <span class="muted"> as attempt {launched.attempt} ran</span> : null}
            </h3>
            {launch.length > 0 && (
              <dl class="facts">
                {launch.map((k) => (
                  <Fragment key={k}>
                    <dt>{k}</dt>
                    <dd><Value v={d[k]} /></dd>
                  </Fragment>
                ))}
              </dl>
            )}
            {hasLaunched && (launched === null ? (
              <div class="muted">Loading…</div>
            ) : 'error' in launched ? (
              <p class="error">{launched.error}</p>
            ) : (
              <>
                {launchArgv.length > 0 && <div class="launch-argv"><Value v={launchArgv} /></div>}
                {launched.settings.length > 0 && (
                  <table class="grid compact" data-testid="launch-settings">
                    <thead><tr><th>setting</th><th>value</th></tr></thead>
                    <tbody>
                      {launched.settings.map((s) => (
                        <tr key={s.name} data-name={s.name}>
                          <td class="mono">{s.name}</td>
                          <td>
                            {s.hidden ? (
                              <span title="Secret parameters and environment values are never shown: this is a keyed digest of the value">
                                <span class="tag">hidden</span> <span class="muted mono">{toText(s.value)}</span>
                              </span>
                            ) : <Value v={s.value} />}
                          </td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                )}
                {launched.note && <div class="muted">{launched.note}</div>}
              </>
            ))}
          </section>
        )}

        {(d.outputs && Object.keys(d.outputs).length > 0) || (Array.isArray(d.artifacts) && d.artifacts.length > 0) ? (
          <section>
            <h3>Outputs</h3>
            {d.outputs && (
              <dl class="facts">
                {Object.entries(d.outputs as Record<string, unknown>).map(([k, v]) => {
                  const art = Array.isArray(d.artifacts) ? d.artifacts.find((a: any) => a?.name === k) : null;
                  return (
                    <Fragment key={k}>
                      <dt>{k}</dt>
                      <dd>
                        <Value v={v} />
                        {art && <> · <a href={href('artifacts', art.id)}>artifact</a></>}
                      </dd>
                    </Fragment>
                  );
                })}
              </dl>
            )}
            {Array.isArray(d.artifacts) && d.artifacts.length > 0 && (
              <ul class="arts">
                {d.artifacts.map((a: any) => (
                  <li key={a.id}>
                    <a href={href('artifacts', a.id)} data-testid="artifact-link">{a.name ?? a.id}</a>
                    <span class="muted"> {a.kind ?? ''} {typeof a.size === 'number' ? bytes(a.size) : ''} {a.files > 1 ? `${a.files} files` : ''}</span>
                    {a.memoized_from && <span class="muted"> · reused <a href={href('artifacts', a.memoized_from)}>{String(a.memoized_from).slice(0, 12)}</a></span>}
                    {a.digest && <span class="muted mono digest"> {String(a.digest).slice(0, 19)}</span>}
                  </li>
                ))}
              </ul>
            )}
          </section>
        ) : null}

        {Array.isArray(d.inputs) && d.inputs.length > 0 && (
          <section>
            <h3>Inputs</h3>
            <ul class="arts">
              {d.inputs.map((a: any, i: number) => (
                <li key={i}>
                  <span class="mono">{a.source}</span> → <a href={href('artifacts', a.artifact)}>{String(a.artifact).slice(0, 16)}</a>
                  {a.digest && <span class="muted mono digest"> {String(a.digest).slice(0, 19)}</span>}
                </li>
              ))}
            </ul>
          </section>
        )}

        {(d.memo_key || kind === 'command' || kind === 'spark') && (
          <section>
            <h3>Cache</h3>
            {d.memo_key ? <div class="mono memo-key" title="memo key">{d.memo_key}</div> : <div class="muted">No memo key recorded.</div>}
            <div class="row">
              <button onClick={doExplain} disabled={explaining} data-testid="explain-open">
                {explaining ? 'Asking…' : explain ? 'Ask again' : 'Why did it run?'}
              </button>
            </div>
            {explain && ('error' in explain ? (
              <p class="error" data-testid="explain-lines">{explain.error}</p>
            ) : (
              <pre class="explain" data-testid="explain-lines">{explain.lines.join('\n') || '(nothing to say)'}</pre>
            ))}
          </section>
        )}

        {rest.length > 0 && (
          <details class="raw">
            <summary>Other facts</summary>
            <pre>{JSON.stringify(Object.fromEntries(rest.map((k) => [k, d[k]])), null, 2)}</pre>
          </details>
        )}

        {showRetry && (
          <section class="dr-actions">
            <button class="danger" data-testid="step-retry" disabled={retrying} onClick={doRetry}>
              {retrying ? 'Retrying…' : 'Retry this step'}
            </button>
            {p.error && <span class="error" data-testid="action-error">{p.error}</span>}
          </section>
        )}

        {hasLogs && memo && !n?.attempt ? (
          <section class="dr-logs">
            <h3>Logs <span class="muted">of the step run reused: {memo.run} / {memo.key}</span></h3>
            <LogView run={memo.run} step={memo.key || p.stepKey} attempts={-1} live={false} />
          </section>
        ) : hasLogs ? (
          <section class="dr-logs">
            <h3>Logs</h3>
            <LogView run={model.id} step={p.stepKey} attempts={n?.attempt ?? 0} live={!isTerminal(state)} failed={state === 'failed' || state === 'retrying'} />
          </section>
        ) : null}
      </div>
    </aside>
  );
}

function Value({ v }: { v: unknown }) {
  if (v === null || v === undefined) return <span class="muted">—</span>;
  if (Array.isArray(v) && v.every((x) => typeof x !== 'object' || x === null)) {
    return <code class="argv">{v.map((x) => quote(toText(x))).join(' ')}</code>;
  }
  if (typeof v === 'object') return <pre class="val">{JSON.stringify(v, null, 2)}</pre>;
  return <code>{toText(v)}</code>;
}

function quote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}
