// One artifact: what it is, where it came from and what used it (its
// lineage as a graph), what it holds (a preview), and, for a JSON object of
// named numbers, how those numbers went over the runs of its workflow.
import { useEffect, useState } from 'preact/hooks';
import { api, type ArtifactView, type LineageEdge, type Preview as PreviewData, type Series } from '../api';
import { ago, bytes, inline, when } from '../format';
import { href } from '../router';
import { errorText, pool, useLoad } from '../components/hooks';
import { LineageGraph } from '../components/LineageGraph';
import { MetricChart } from '../components/MetricChart';
import { Preview, namedNumbers } from '../components/Preview';

/** At most this many artifacts of a lineage are looked up for their names. */
const NAMED = 200;

export function ArtifactPage({ id }: { id: string; query: URLSearchParams }) {
  const art = useLoad(() => api.artifact(id), [id]);
  const a = art.data;

  if (art.error) {
    return (
      <div class="page lp">
        <h1>Artifact <span class="mono">{id}</span></h1>
        <p class="error" role="alert">{art.error}</p>
      </div>
    );
  }
  if (!a) return <div class="page lp loading">Loading artifact…</div>;
  return <Loaded key={a.id} a={a} />;
}

function Loaded({ a }: { a: ArtifactView }) {
  const [workflow, setWorkflow] = useState<string | null>(null);
  const [runError, setRunError] = useState<string | null>(null);
  useEffect(() => {
    if (!a.run) return;
    api.run(a.run).then(
      (d) => setWorkflow(d.run.workflow),
      (e) => setRunError(errorText(e)),
    );
  }, [a.run]);

  const preview = useLoad<PreviewData>(() => api.preview(a.id), [a.id]);
  const numbers = preview.data?.kind === 'json' ? namedNumbers(preview.data.json) : null;

  return (
    <div class="page lp artifact-page">
      <div class="row">
        <h1>
          <span class="muted">artifact</span> {a.name}
        </h1>
        <span class="mono muted">{a.id}</span>
      </div>
      <Meta a={a} workflow={workflow} runError={runError} />

      <h2>Lineage</h2>
      <Lineage a={a} />

      {numbers && (
        <>
          <h2>
            {a.name} over runs{workflow ? <span class="muted"> of {workflow}</span> : null}
          </h2>
          <Metric a={a} workflow={workflow} runError={runError} names={Object.keys(numbers)} />
        </>
      )}

      <h2>Content</h2>
      {preview.loading && !preview.data ? (
        <p class="muted loading">Loading preview…</p>
      ) : preview.error ? (
        <p class="error">No preview: {preview.error}</p>
      ) : preview.data ? (
        <Preview artifact={a} preview={preview.data} />
      ) : null}
    </div>
  );
}

function Meta({ a, workflow, runError }: { a: ArtifactView; workflow: string | null; runError: string | null }) {
  const tags = Object.entries(a.tags ?? {});
  const runLink = a.run ? `${href('runs', a.run)}${a.node !== null ? `?node=${a.node}` : ''}` : null;
  return (
    <dl class="meta panel" data-testid="artifact-meta">
      <dt>name</dt>
      <dd>{a.name}</dd>
      <dt>kind</dt>
      <dd>{a.kind}</dd>
      <dt>size</dt>
      <dd>
        {bytes(a.size)} <span class="muted">({a.size.toLocaleString()} bytes)</span>
      </dd>
      <dt>files</dt>
      <dd>{a.files}</dd>
      <dt>media type</dt>
      <dd class="mono">{a.media_type}</dd>
      <dt>digest</dt>
      <dd class="mono wrap">{a.digest}</dd>
      <dt>created</dt>
      <dd>
        {when(a.created_ms)} <span class="muted">{ago(a.created_ms)}</span>
      </dd>
      <dt>produced by</dt>
      <dd>
        {runLink ? (
          <>
            <a href={runLink} data-testid="artifact-run">
              {a.step_key ?? a.step ?? `node ${a.node}`}
            </a>{' '}
            <span class="muted">
              of run{' '}
            </span>
            <a href={href('runs', a.run!)} class="mono">{a.run}</a>
            {workflow && <span class="muted"> ({workflow})</span>}
            {a.attempt !== null && <span class="muted">, attempt {a.attempt}</span>}
            {runError && <span class="error small"> (run: {runError})</span>}
          </>
        ) : (
          <span class="muted">no run (put by hand)</span>
        )}
      </dd>
      {a.path && (
        <>
          <dt>written to</dt>
          <dd class="mono wrap">{a.path}</dd>
        </>
      )}
      {a.memoized_from && (
        <>
          <dt>memoized from</dt>
          <dd>
            <a href={href('artifacts', a.memoized_from)} class="mono">{a.memoized_from}</a>
          </dd>
        </>
      )}
      <dt>tags</dt>
      <dd>
        {tags.length === 0 ? (
          <span class="muted">none</span>
        ) : (
          tags.map(([k, v]) => (
            <span key={k} class="tag">
              {k}={inline(v)}
            </span>
          ))
        )}
      </dd>
    </dl>
  );
}

interface LineageData {
  edges: LineageEdge[];
  artifacts: Map<string, ArtifactView>;
  unnamed: number;
}

function Lineage({ a }: { a: ArtifactView }) {
  const data = useLoad<LineageData>(async () => {
    const [up, down] = await Promise.all([api.lineage(a.id, 'upstream', 10), api.lineage(a.id, 'downstream', 10)]);
    const seen = new Set<string>();
    const edges: LineageEdge[] = [];
    for (const e of [...up, ...down]) {
      const k = `${e.from}>${e.run}/${e.node}>${e.to}`;
      if (seen.has(k)) continue;
      seen.add(k);
      edges.push(e);
    }
    const ids = new Set<string>();
    for (const e of edges) {
      ids.add(e.from);
      ids.add(e.to);
    }
    ids.delete(a.id);
    const want = [...ids].slice(0, NAMED);
    const got = await pool(want, 6, (x) => api.artifact(x));
    const artifacts = new Map<string, ArtifactView>([[a.id, a]]);
    want.forEach((x, i) => {
      const v = got[i];
      if (v) artifacts.set(x, v);
    });
    return { edges, artifacts, unnamed: ids.size - want.length };
  }, [a.id]);

  if (data.loading && !data.data) return <p class="muted loading">Loading lineage…</p>;
  if (data.error) return <p class="error">Lineage: {data.error}</p>;
  const d = data.data!;
  const ups = d.edges.filter((e) => e.to === a.id).length;
  const downs = d.edges.filter((e) => e.from === a.id).length;
  return (
    <div class="panel lineage-panel">
      <LineageGraph current={a} edges={d.edges} artifacts={d.artifacts} />
      <p class="muted small">
        {d.edges.length === 0
          ? 'No lineage recorded: no step read this artifact, and it was not made from other artifacts.'
          : `${ups ? `made from ${ups} input${ups === 1 ? '' : 's'}` : 'made from no recorded inputs'}; ${
              downs ? `read by ${downs} step run${downs === 1 ? '' : 's'}` : 'read by no step yet'
            } · ${d.edges.length} hops within 10 · click an artifact to open it`}
        {d.unnamed > 0 && ` · ${d.unnamed} artifacts shown by id only`}
      </p>
    </div>
  );
}

function Metric({
  a,
  workflow,
  runError,
  names,
}: {
  a: ArtifactView;
  workflow: string | null;
  runError: string | null;
  names: string[];
}) {
  const [series, setSeries] = useState<Series | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    if (!workflow) return;
    let live = true;
    setSeries(null);
    setError(null);
    api.series({ workflow, name: a.name, step: a.step ?? undefined }).then(
      (s) => live && setSeries(s),
      (e) => live && setError(errorText(e)),
    );
    return () => {
      live = false;
    };
  }, [workflow, a.name, a.step]);

  if (!a.run) {
    return (
      <p class="muted" data-testid="metric-empty">
        This artifact belongs to no run, so it has no series over runs.
      </p>
    );
  }
  if (runError) return <p class="error">Could not read its run: {runError}</p>;
  if (error) return <p class="error">Series: {error}</p>;
  if (!series) return <p class="muted loading">Loading the series of {names.length} values…</p>;
  const n = series.points.length;
  if (n < 2) {
    return (
      <p class="muted panel" data-testid="metric-empty" data-points={n} data-series={series.names.length}>
        {n === 0 ? 'No run' : 'Only one run'} of {workflow} has written <b>{a.name}</b>
        {a.step ? ` from ${a.step}` : ''} so far: a chart needs at least 2.
      </p>
    );
  }
  return (
    <div class="panel">
      <MetricChart series={series} current={a.id} />
    </div>
  );
}
