// A workflow's recent run durations at a glance: one point per finished
// run, oldest left, coloured by how it ended. A point is a link to its run.
import { useState } from 'preact/hooks';
import type { RunView } from '../api';
import { duration, stateClass, when } from '../format';
import { href } from '../router';

export interface SparklineProps {
  workflow: string;
  /** Runs newest first (as the server lists them); unfinished ones are left out. */
  runs: RunView[];
  width?: number;
  height?: number;
}

export function Sparkline({ workflow, runs, width = 240, height = 40 }: SparklineProps) {
  const [tip, setTip] = useState<number | null>(null);
  const done = runs.filter((r) => r.finished_ms !== null).slice(0, 30).reverse();
  const pad = 5;
  const dur = done.map((r) => Math.max(0, (r.finished_ms ?? r.created_ms) - r.created_ms));
  const max = Math.max(1, ...dur);
  const step = done.length > 1 ? (width - 2 * pad) / (done.length - 1) : 0;
  const pts = done.map((r, i) => ({
    run: r,
    ms: dur[i]!,
    x: done.length > 1 ? pad + i * step : width / 2,
    y: height - pad - (dur[i]! / max) * (height - 2 * pad),
  }));
  const failed = done.filter((r) => r.status === 'failed').length;
  const last = pts[pts.length - 1];
  const shown = tip !== null ? pts[tip] : undefined;

  return (
    <div class="sparkline" data-testid="sparkline" data-workflow={workflow}>
      <div class="sparkline-head">
        <a href={href('runs') + '?workflow=' + encodeURIComponent(workflow)} title={`runs of ${workflow}`}>
          {workflow}
        </a>
        <span class="muted">
          {done.length === 0
            ? 'no finished runs'
            : `last ${duration(last?.ms)}${failed ? ` · ${failed} failed` : ''}`}
        </span>
      </div>
      <div class="sparkline-plot">
        <svg
          width={width}
          height={height}
          viewBox={`0 0 ${width} ${height}`}
          role="img"
          aria-label={`durations of the last ${done.length} finished runs of ${workflow}`}
        >
          {pts.length > 1 && (
            <polyline
              class="sparkline-line"
              points={pts.map((p) => `${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(' ')}
            />
          )}
          {pts.map((p, i) => (
            <a
              key={p.run.id}
              href={href('runs', p.run.id)}
              aria-label={`${p.run.id}: ${p.run.status}, ${duration(p.ms)}`}
              onMouseEnter={() => setTip(i)}
              onMouseLeave={() => setTip(null)}
              onFocus={() => setTip(i)}
              onBlur={() => setTip(null)}
            >
              <circle
                data-testid="sparkline-point"
                data-run-id={p.run.id}
                data-status={p.run.status}
                class={stateClass(p.run.status)}
                cx={p.x}
                cy={p.y}
                r={tip === i ? 4.5 : 3}
              >
                <title>{`${p.run.id} · ${p.run.status} · ${duration(p.ms)}`}</title>
              </circle>
            </a>
          ))}
        </svg>
        {shown && (
          <div
            class="sparkline-tip"
            role="tooltip"
            style={{ left: `${Math.min(Math.max(shown.x, 60), width - 60)}px` }}
          >
            <span class="mono">{shown.run.id}</span>
            <br />
            {duration(shown.ms)} · {shown.run.status} · {when(shown.run.created_ms)}
          </div>
        )}
      </div>
    </div>
  );
}
