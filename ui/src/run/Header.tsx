// The run page's header: what the run is, how it stands, and the actions
// a token with `operate` may take (cancel, signal).
import { useState } from 'preact/hooks';
import type { NodeView } from '../api';
import { href } from '../router';
import { duration, when } from '../format';
import type { RunModel } from './model';
import { signalOf } from './facts';

export interface HeaderProps {
  model: RunModel;
  now: number;
  canOperate: boolean;
  /** A wait step waiting for a signal, and its run. */
  wait: { model: RunModel; node: NodeView } | null;
  /** The run (or a sub-workflow of it) has wait steps: signals mean something. */
  signals: boolean;
  error: string | null;
  notice: string | null;
  onCancel: () => Promise<void>;
  onSignal: (run: string, name: string, value: unknown) => Promise<boolean>;
}

export function Header(p: HeaderProps) {
  const r = p.model.run;
  const [open, setOpen] = useState(false);
  const [name, setName] = useState<string | null>(null);
  const [value, setValue] = useState('true');
  const [parseError, setParseError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [sent, setSent] = useState<string | null>(null);
  const running = r.status === 'running';
  const dur = r.created_ms ? (r.finished_ms ?? (running ? p.now : r.created_ms)) - r.created_ms : null;
  const waitSignal = p.wait ? signalOf(p.wait.node) : null;
  const target = p.wait?.model.id ?? r.id;
  const shownName = name ?? waitSignal ?? '';

  const send = async (e: Event) => {
    e.preventDefault();
    let v: unknown;
    try {
      v = JSON.parse(value);
    } catch (err) {
      setParseError(`Not JSON: ${(err as Error).message}`);
      return;
    }
    setParseError(null);
    if (!shownName.trim()) {
      setParseError('A signal needs a name.');
      return;
    }
    setBusy(true);
    try {
      if (await p.onSignal(target, shownName.trim(), v)) {
        setSent(shownName.trim());
        setOpen(false);
        setName(null);
      }
    } finally {
      setBusy(false);
    }
  };

  return (
    <header class="run-head">
      <div class="rh-line">
        <h1 class="rh-id mono" title="run id">{r.id}</h1>
        <span class={`badge st-${r.status}`} data-testid="run-status">{r.status}</span>
        <a class="rh-wf" href={`${href('runs')}?workflow=${encodeURIComponent(r.workflow)}`} title="Runs of this workflow">{r.workflow}</a>
        {r.parent && (
          <span class="muted">
            sub-workflow run of <a href={href('runs', r.parent)}>{r.parent}</a>
          </span>
        )}
        <span class="muted" title={r.created_ms ? new Date(r.created_ms).toISOString() : ''}>{when(r.created_ms)}</span>
        <span class="rh-dur" data-testid="run-duration">{duration(dur)}{running ? ' …' : ''}</span>
        <span class="spacer" />
        {p.canOperate && running && (
          <>
            {p.wait && waitSignal && !open && <span class="rh-wait">◷ waiting for <code>{waitSignal}</code></span>}
            {(p.signals || p.wait) && <button data-testid="signal-open" class={p.wait ? 'primary' : ''} onClick={() => { setOpen(!open); setSent(null); }}>
              Signal…
            </button>}
            <button class="danger" data-testid="run-cancel" onClick={p.onCancel}>Cancel run</button>
          </>
        )}
      </div>
      {(Object.keys(r.params ?? {}).length > 0 || r.outputs || r.message) && (
        <div class="rh-line rh-kv">
          {Object.keys(r.params ?? {}).length > 0 && <KV label="params" obj={r.params} />}
          {r.outputs && Object.keys(r.outputs).length > 0 && <KV label="outputs" obj={r.outputs} />}
          {r.message && <span class={r.status === 'failed' ? 'rh-msg error' : 'rh-msg'} data-testid="run-message">{r.message}</span>}
        </div>
      )}
      {open && p.canOperate && (
        <form class="signal-form" onSubmit={send}>
          <label>
            signal
            <input data-testid="signal-name" value={shownName} placeholder="name" onInput={(e) => setName((e.target as HTMLInputElement).value)} />
          </label>
          <label class="grow">
            value (JSON)
            <textarea
              data-testid="signal-value"
              rows={2}
              value={value}
              onInput={(e) => {
                setValue((e.target as HTMLTextAreaElement).value);
                setParseError(null);
              }}
            />
          </label>
          <button type="submit" class="primary" data-testid="signal-send" disabled={busy}>{busy ? 'Sending…' : 'Send'}</button>
          <button type="button" onClick={() => setOpen(false)}>Close</button>
          {target !== r.id && <span class="muted">to run {target}</span>}
          {p.wait?.node.data?.note && <span class="muted">{String(p.wait.node.data.note)}</span>}
          {parseError && <span class="error" data-testid="signal-error">{parseError}</span>}
        </form>
      )}
      {sent && !open && <div class="rh-line muted">Signal <code>{sent}</code> sent.</div>}
      {p.error && <div class="rh-line"><span class="error" data-testid="action-error">{p.error}</span></div>}
      {p.notice && <div class="rh-line muted">{p.notice}</div>}
    </header>
  );
}

function KV({ label, obj }: { label: string; obj: Record<string, unknown> }) {
  const entries = Object.entries(obj);
  return (
    <span class="kv" data-testid={`run-${label}`}>
      <span class="muted">{label}</span>
      {entries.slice(0, 12).map(([k, v]) => {
        const s = typeof v === 'string' ? v : JSON.stringify(v);
        return (
          <span key={k} class="kv-item" title={`${k} = ${s}`}>
            <b>{k}</b>=<span class="mono">{s.length > 48 ? s.slice(0, 47) + '…' : s}</span>
          </span>
        );
      })}
      {entries.length > 12 && <span class="muted">+{entries.length - 12} more</span>}
    </span>
  );
}
