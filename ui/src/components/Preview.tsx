// What an artifact holds, as far as the server's preview shows it: a table
// (Parquet, CSV), JSON, text, an image, a directory's files, or nothing
// readable (binary), with a download in every case but a directory.
import { useEffect, useState } from 'preact/hooks';
import { api, blobUrl, type ArtifactView, type Preview as PreviewData } from '../api';
import { bytes, inline } from '../format';
import { errorText } from './hooks';

export function Preview({ artifact, preview }: { artifact: ArtifactView; preview: PreviewData }) {
  const p = preview;
  let body;
  switch (p.kind) {
    case 'parquet':
    case 'csv':
      body = <TablePreview p={p} />;
      break;
    case 'json':
      body = <JsonView value={p.json} />;
      break;
    case 'text':
      body = <pre class="preview-text">{p.text ?? ''}</pre>;
      break;
    case 'image':
      body = <ImagePreview artifact={artifact} />;
      break;
    case 'dir':
      body = <DirPreview p={p} />;
      break;
    default:
      body = (
        <p class="muted">
          No preview for {p.media_type || 'this content'} ({bytes(p.size)}).
        </p>
      );
  }
  return (
    <div class="artifact-preview" data-testid="artifact-preview" data-kind={p.kind}>
      <div class="row preview-head">
        <span class="muted">
          {p.kind} · {p.media_type} · {bytes(p.size)}
          {p.truncated && p.kind !== 'parquet' && p.kind !== 'csv' ? ' · preview cut short' : ''}
        </span>
        <span class="spacer" />
        {p.kind !== 'dir' && <Download artifact={artifact} />}
      </div>
      {body}
    </div>
  );
}

function TablePreview({ p }: { p: PreviewData }) {
  const rows = p.rows ?? [];
  const width = Math.max(p.schema?.length ?? 0, ...rows.map((r) => r.length));
  const cols = p.schema ?? Array.from({ length: width }, (_, i) => ({ name: `#${i + 1}`, type: '' }));
  return (
    <div>
      <p class="muted small" data-testid="preview-count">
        showing {rows.length} of {p.total_rows ?? (p.truncated ? 'more' : rows.length)} rows
        {cols.length ? ` · ${cols.length} columns` : ''}
      </p>
      <div class="table-scroll preview-scroll">
        <table class="grid dense" data-testid="preview-table">
          <thead>
            <tr>
              {cols.map((c, i) => (
                <th key={i} title={c.type ? `${c.name}: ${c.type}` : c.name}>
                  {c.name}
                  {c.type && <span class="coltype">{c.type}</span>}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {rows.map((r, i) => (
              <tr key={i}>
                {cols.map((_, j) => (
                  <Cell key={j} v={r[j]} />
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {rows.length === 0 && <p class="muted">No rows.</p>}
    </div>
  );
}

function Cell({ v }: { v: unknown }) {
  if (v === null || v === undefined) return <td class="muted">null</td>;
  if (typeof v === 'number') return <td class="num">{String(v)}</td>;
  const s = inline(v);
  return <td title={s.length > 60 ? s : undefined}>{s.length > 120 ? s.slice(0, 119) + '…' : s}</td>;
}

function DirPreview({ p }: { p: PreviewData }) {
  const files = p.files ?? [];
  return (
    <div>
      <p class="muted small">
        {files.length} file{files.length === 1 ? '' : 's'}
        {p.truncated ? ' shown; there are more' : ''}
      </p>
      <div class="table-scroll preview-scroll">
        <table class="grid dense">
          <thead>
            <tr>
              <th>path</th>
              <th>size</th>
            </tr>
          </thead>
          <tbody>
            {files.map((f) => (
              <tr key={f.path}>
                <td class="mono">{f.path}</td>
                <td class="num">{bytes(f.size)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </div>
  );
}

function ImagePreview({ artifact }: { artifact: ArtifactView }) {
  const [src, setSrc] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let url: string | null = null;
    let live = true;
    setSrc(null);
    setError(null);
    blobUrl(api.contentPath(artifact.id)).then(
      (u) => {
        if (live) {
          url = u;
          setSrc(u);
        } else URL.revokeObjectURL(u);
      },
      (e) => live && setError(errorText(e)),
    );
    return () => {
      live = false;
      if (url) URL.revokeObjectURL(url);
    };
  }, [artifact.id]);
  if (error) return <p class="error">Could not load the image: {error}</p>;
  if (!src) return <p class="muted loading">Loading image…</p>;
  return <img class="preview-image" src={src} alt={artifact.name} />;
}

/** A download of the artifact's content (through a blob: a link cannot send
 * the bearer token). */
export function Download({ artifact }: { artifact: ArtifactView }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const go = async () => {
    setBusy(true);
    setError(null);
    try {
      const u = await blobUrl(api.contentPath(artifact.id));
      const a = document.createElement('a');
      a.href = u;
      a.download = fileName(artifact);
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(u), 60_000);
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <span>
      <button type="button" data-testid="artifact-download" onClick={go} disabled={busy}>
        {busy ? 'Downloading…' : 'Download'}
      </button>
      {error && <span class="error small"> {error}</span>}
    </span>
  );
}

function fileName(a: ArtifactView): string {
  const base = a.path ? a.path.split(/[\\/]/).filter(Boolean).pop() : undefined;
  return base || a.name || a.id;
}

// ---- JSON ----

const BIG_LINES = 40;

/** JSON pretty-printed; a big value shows as a tree whose parts fold. */
export function JsonView({ value }: { value: unknown }) {
  const text = JSON.stringify(value, null, 2) ?? 'undefined';
  const lines = text.split('\n').length;
  if (lines <= BIG_LINES) return <pre class="preview-json">{text}</pre>;
  return (
    <div class="json-tree mono">
      <p class="muted small">{lines} lines; parts fold.</p>
      <JsonNode value={value} depth={0} />
    </div>
  );
}

function JsonNode({ name, value, depth }: { name?: string; value: unknown; depth: number }) {
  const key = name !== undefined ? <span class="json-key">{JSON.stringify(name)}: </span> : null;
  if (value === null || typeof value !== 'object') {
    return (
      <div class="json-leaf">
        {key}
        <span class={`json-${value === null ? 'null' : typeof value}`}>{JSON.stringify(value)}</span>
      </div>
    );
  }
  const arr = Array.isArray(value);
  const entries: [string | undefined, unknown][] = arr
    ? (value as unknown[]).map((v) => [undefined, v])
    : Object.entries(value as Record<string, unknown>);
  const open = arr ? '[' : '{';
  const close = arr ? ']' : '}';
  if (entries.length === 0) {
    return (
      <div class="json-leaf">
        {key}
        {open}
        {close}
      </div>
    );
  }
  return (
    <details open={depth < 2 && entries.length <= 200}>
      <summary>
        {key}
        {open}
        <span class="muted"> {entries.length} {arr ? 'items' : 'keys'} </span>
        {close}
      </summary>
      <div class="json-children">
        {entries.map(([k, v], i) => (
          <JsonNode key={k ?? i} name={k} value={v} depth={depth + 1} />
        ))}
      </div>
    </details>
  );
}

/** The named numbers of a JSON object (`{"auc": 0.81, ...}`), or null when
 * the value is not an object whose values are all numbers. */
export function namedNumbers(v: unknown): Record<string, number> | null {
  if (!v || typeof v !== 'object' || Array.isArray(v)) return null;
  const entries = Object.entries(v as Record<string, unknown>);
  if (!entries.length) return null;
  for (const [, x] of entries) if (typeof x !== 'number' || !isFinite(x)) return null;
  return v as Record<string, number>;
}
