// Named numbers an artifact holds, over the runs of its workflow: one line
// per name, with a legend that reads out the values under the cursor. A
// click on the chart opens the artifact of the run under the cursor.
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import type { Series } from '../api';
import { num, short, when } from '../format';
import { href } from '../router';

const PALETTE = [
  '#3b5bdb', '#e8590c', '#2f9e44', '#c2255c', '#7048e8', '#0c8599',
  '#f08c00', '#5c940d', '#862e9c', '#1098ad', '#d6336c', '#495057',
];

export function seriesColor(i: number): string {
  return PALETTE[i % PALETTE.length]!;
}

export interface MetricChartProps {
  series: Series;
  /** The artifact the page shows: its run is marked on the chart. */
  current?: string;
  height?: number;
}

export function MetricChart({ series, current, height = 280 }: MetricChartProps) {
  const box = useRef<HTMLDivElement>(null);
  const points = [...series.points].sort((a, b) => a.created_ms - b.created_ms);
  const names = series.names;

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const xs = points.map((p) => p.created_ms);
    const data: uPlot.AlignedData = [
      xs,
      ...names.map((n) => points.map((p) => (typeof p.values[n] === 'number' ? p.values[n]! : null))),
    ];
    const mark = points.findIndex((p) => p.artifact === current);
    const opts: uPlot.Options = {
      width: Math.max(320, el.clientWidth),
      height,
      ms: 1,
      scales: { x: { time: true } },
      cursor: { focus: { prox: 24 }, points: { size: 8 } },
      focus: { alpha: 0.35 },
      legend: { live: true },
      series: [
        {
          label: 'run',
          value: (_u, v, _si, idx) =>
            idx === null || idx === undefined || v === null
              ? '—'
              : `${when(v)} · ${points[idx]?.run ?? ''}`,
        },
        ...names.map((n, i) => ({
          label: n,
          stroke: seriesColor(i),
          width: 1.5,
          spanGaps: true,
          points: { show: true, size: 5 },
          value: (_u: uPlot, v: number | null) => (v === null ? '—' : num(v)),
        })),
      ],
      axes: [
        { stroke: '#66707c', grid: { stroke: '#eef0f3' } },
        { stroke: '#66707c', grid: { stroke: '#eef0f3' }, size: 64, values: (_u, vs) => vs.map((v) => num(v)) },
      ],
      hooks: {
        draw: [
          (u) => {
            if (mark < 0) return;
            const x = Math.round(u.valToPos(xs[mark]!, 'x', true));
            const ctx = u.ctx;
            ctx.save();
            ctx.strokeStyle = '#1d232b';
            ctx.globalAlpha = 0.35;
            ctx.setLineDash([4, 4]);
            ctx.lineWidth = 1 * devicePixelRatio;
            ctx.beginPath();
            ctx.moveTo(x, u.bbox.top);
            ctx.lineTo(x, u.bbox.top + u.bbox.height);
            ctx.stroke();
            ctx.restore();
          },
        ],
      },
    };
    const u = new uPlot(opts, data, el);
    const open = () => {
      const i = u.cursor.idx;
      const p = i === null || i === undefined ? undefined : points[i];
      if (p) location.hash = href('artifacts', p.artifact);
    };
    u.over.addEventListener('click', open);
    u.over.style.cursor = 'pointer';
    const ro = typeof ResizeObserver === 'undefined'
      ? null
      : new ResizeObserver(() => {
          const w = Math.max(320, el.clientWidth);
          if (Math.abs(w - u.width) > 2) u.setSize({ width: w, height });
        });
    ro?.observe(el);
    return () => {
      ro?.disconnect();
      u.over.removeEventListener('click', open);
      u.destroy();
    };
    // The chart is made again when the data change; `points` is derived from `series`.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [series, current, height]);

  return (
    <div>
      <div
        class="metric-chart"
        data-testid="metric-chart"
        data-points={points.length}
        data-series={names.length}
        ref={box}
      />
      <details class="metric-data">
        <summary>Values by run ({points.length})</summary>
        <div class="table-scroll">
          <table class="grid dense">
            <thead>
              <tr>
                <th>run date</th>
                <th>run</th>
                {names.map((n, i) => (
                  <th key={n}>
                    <span class="swatch" style={{ background: seriesColor(i) }} /> {n}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {[...points].reverse().map((p) => (
                <tr key={p.artifact} class={p.artifact === current ? 'current' : ''}>
                  <td>{when(p.created_ms)}</td>
                  <td>
                    <a href={href('artifacts', p.artifact)} title={`artifact ${p.artifact}`}>
                      {p.run}
                    </a>
                    {p.artifact === current && <span class="muted"> (this one)</span>}
                  </td>
                  {names.map((n) => (
                    <td key={n} class="num">{num(p.values[n])}</td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </details>
      <p class="muted small">
        {points.length} runs · {names.length} series · click the chart to open the artifact of the run under
        the cursor{current ? `; the dashed line marks this artifact (${short(current)})` : ''}.
      </p>
    </div>
  );
}
