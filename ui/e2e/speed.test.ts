// Speed: the run page under a 30,000-item sweep while its items run
// (fixtures/sweep-30000.toml), and the runs page of a workflow with 10,000
// past runs (fixtures/tiny.toml). The figures are printed and written to
// docs/benchmarks.md ("The web UI under a 30,000-item sweep").

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import type { Browser } from 'playwright-core';
import { Kaon, forDocs, launch, open, repo, screenshot, signedIn, sleep, until, watchErrors } from './harness.ts';

const ITEMS = 30_000;
const PAST_RUNS = Number(process.env.KAON_E2E_PAST_RUNS ?? 10_000);
/** How long the page is watched while the sweep's items run. */
const WATCH_MS = 20_000;

let k: Kaon;
let browser: Browser;
const figures: { what: string; value: string; target: string }[] = [];
const notes: string[] = [];

before(async () => {
  k = await Kaon.start('speed');
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await k?.stop();
  if (figures.length) record();
});

/** Records every long task (> 50 ms on the main thread) from page load on. */
const LONG_TASKS = `
  window.__kaonLongTasks = [];
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) window.__kaonLongTasks.push({ start: e.startTime, duration: e.duration });
    }).observe({ type: 'longtask', buffered: true });
  } catch (e) { window.__kaonLongTasksError = String(e); }
`;

/** The time from navigation to the first `[data-testid=run-row]`, seen by
 * a mutation observer installed before the page's own scripts. */
const FIRST_ROW = `
  window.__kaonFirstRow = null;
  const look = () => {
    if (window.__kaonFirstRow === null && document.querySelector('[data-testid=run-row]')) {
      window.__kaonFirstRow = performance.now();
    }
  };
  new MutationObserver(look).observe(document, { childList: true, subtree: true });
`;

test(`the run page of a ${ITEMS.toLocaleString('en')}-item sweep renders in < 2 s and keeps its DOM small while items run`, { timeout: 240_000 }, async () => {
  const wf = await k.deploy('fixtures/sweep-30000.toml');
  const id = await k.submit(wf, { n: ITEMS });
  // The server has expanded the for-each: every item's node exists.
  const t0 = Date.now();
  const expanded = await k.waitRun(id, 120_000, (d) => d.nodes.filter((n) => n.name === 'fit').length === ITEMS, 500);
  const done0 = expanded.nodes.filter((n) => n.name === 'fit' && n.state === 'succeeded').length;
  console.log(`# sweep ${id}: ${ITEMS} items expanded within ${Date.now() - t0} ms, ${done0} done`);

  const ctx = await signedIn(browser, k, { initScripts: [LONG_TASKS] });
  const page = await ctx.newPage();
  const errors = watchErrors(page);
  await open(page, k, `#/runs/${id}`);
  const rendered = await until('the run page marks kaon:run-rendered', 30_000, () =>
    page.evaluate(() => performance.getEntriesByName('kaon:run-rendered')[0]?.startTime ?? null),
  );
  const domAtRender = await page.evaluate(() => document.getElementsByTagName('*').length);
  const counts0 = await page.locator('[data-testid=foreach-counts]').first().textContent().catch(() => null);

  // Watch the page while the items run.
  let domMax = domAtRender;
  const countsSeen = new Set<string>();
  if (counts0) countsSeen.add(counts0);
  const watchStart = Date.now();
  while (Date.now() - watchStart < WATCH_MS) {
    await sleep(1000);
    domMax = Math.max(domMax, await page.evaluate(() => document.getElementsByTagName('*').length));
    const c = await page.locator('[data-testid=foreach-counts]').first().textContent().catch(() => null);
    if (c) countsSeen.add(c);
  }
  const detail = await k.run(id);
  const doneEnd = detail.nodes.filter((n) => n.name === 'fit' && n.state === 'succeeded').length;
  const lt = await page.evaluate(() => ({
    tasks: ((window as any).__kaonLongTasks ?? []) as { start: number; duration: number }[],
    error: (window as any).__kaonLongTasksError as string | undefined,
  }));
  assert.equal(lt.error, undefined, 'the long-task observer works in this Chromium');
  const afterRender = lt.tasks.filter((t) => t.start >= rendered);
  const longest = Math.max(0, ...afterRender.map((t) => t.duration));
  const longestLoad = Math.max(0, ...lt.tasks.filter((t) => t.start < rendered).map((t) => t.duration));
  const blocked = afterRender.reduce((s, t) => s + t.duration, 0);

  // The for-each table open on all 30,000 items: its rows must not all be
  // in the DOM either.
  await page.locator('[data-testid=dag-node][data-kind=for-each]').first().click();
  await page.locator('[data-testid=foreach-panel]').waitFor();
  await until('the for-each table shows rows', 20_000, async () => (await page.locator('[data-testid=foreach-row]').count()) > 0);
  const rowsShown = await page.locator('[data-testid=foreach-row]').count();
  const domTable = await page.evaluate(() => document.getElementsByTagName('*').length);
  const tableCount = ((await page.locator('[data-testid=foreach-count]').textContent()) ?? '').trim();
  await screenshot(page, 'sweep');

  // Where the first render's time goes: the server's side of it, timed
  // from here (the page waits for its event stream's first event, the
  // run's snapshot).
  const api = await serverTimes(id);

  // The release build may finish all 30,000 items within the watch.
  if ((await k.run(id)).run.status === 'running') {
    await k.post(`/api/v1/runs/${id}/cancel`, { reason: 'speed test over' }).catch((e) => {
      if (e?.status !== 409) throw e; // ended meanwhile
    });
  }
  await k.waitEnd(id, 60_000);
  await ctx.close();

  figures.push(
    { what: 'run page: time to first render (`kaon:run-rendered`)', value: `${Math.round(rendered)} ms`, target: '< 2,000 ms' },
    { what: 'run page: elements in the DOM at first render / most while watched', value: `${domAtRender} / ${domMax}`, target: '< 5,000' },
    { what: `run page: longest main-thread task over ${WATCH_MS / 1000} s of updates`, value: longest ? `${Math.round(longest)} ms` : 'none over 50 ms', target: 'recorded' },
    { what: `run page: long tasks (> 50 ms) over those ${WATCH_MS / 1000} s, their total`, value: `${afterRender.length}, ${Math.round(blocked)} ms`, target: 'recorded' },
    { what: 'run page: longest task before the first render (loading)', value: longestLoad ? `${Math.round(longestLoad)} ms` : 'none over 50 ms', target: 'recorded' },
    { what: `run page: elements in the DOM with the for-each table open (${tableCount}, ${rowsShown} rows in the DOM)`, value: `${domTable}`, target: '< 5,000' },
    { what: `API, timed from Node after the watch: the run's event stream to its first event (the snapshot, ${(api.snapshotBytes / 1e6).toFixed(1)} MB)`, value: `${Math.round(api.snapshotMs)} ms`, target: '' },
    { what: `API, timed from Node after the watch: \`GET /api/v1/runs/{id}\` (${(api.detailBytes / 1e6).toFixed(1)} MB)`, value: `${Math.round(api.detailMs)} ms`, target: '' },
    { what: `items finished while watched (of ${ITEMS.toLocaleString('en')})`, value: `${doneEnd - done0} (${done0} → ${doneEnd})`, target: '' },
  );
  console.log(`# for-each counts seen: ${[...countsSeen].join(' | ')}`);
  assert.ok(doneEnd > done0, 'items changed state while the page was watched');
  assert.ok(countsSeen.size > 1, `the page's item counts changed while items ran: ${[...countsSeen].join(' | ')}`);
  assert.ok(rendered < 2000, `first render took ${Math.round(rendered)} ms (target < 2000)`);
  assert.ok(domMax < 5000, `${domMax} DOM elements (target < 5000): the page must not make one per item`);
  assert.ok(domTable < 5000, `${domTable} DOM elements with the for-each table open (target < 5000): the table must not make one row per item`);
  assert.deepEqual(errors, [], 'no errors on the page');
});

test(`the runs page of a workflow with ${PAST_RUNS.toLocaleString('en')} past runs shows its first rows in < 1 s`, { timeout: 240_000 }, async (t) => {
  const wf = await k.deploy('fixtures/tiny.toml');
  // Past runs, made the honest way: submitted through the API (16 at a
  // time) and driven by the server; at most 2 minutes for it.
  const start = Date.now();
  let next = 0;
  let made = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < PAST_RUNS && Date.now() - start < 120_000) {
        next++;
        await k.submit(wf);
        made++;
      }
    }),
  );
  const submitMs = Date.now() - start;
  if (made < PAST_RUNS) {
    notes.push(`only ${made} of ${PAST_RUNS} runs could be submitted in 2 minutes: the runs page was not timed`);
    t.skip(`only ${made} of ${PAST_RUNS} runs submitted in 2 minutes`);
    return;
  }
  await until('every past run ended', 120_000, async () => (await k.get('/api/v1/runs?status=running&limit=1')).length === 0, 500);
  console.log(`# ${made} runs of ${wf} submitted in ${submitMs} ms, all ended after ${Date.now() - start} ms`);

  const ctx = await signedIn(browser, k, { initScripts: [FIRST_ROW] });
  const page = await ctx.newPage();
  const errors = watchErrors(page);
  const times: number[] = [];
  for (let i = 0; i < 3; i++) {
    await open(page, k, `#/runs?workflow=${wf}`);
    await page.reload(); // a fresh load each time (a hash change alone does not reload)
    const ms = await until('a run row appears', 10_000, () => page.evaluate(() => (window as any).__kaonFirstRow as number | null));
    times.push(ms);
    const rows = page.locator('[data-testid=run-row]');
    const shown = await rows.count();
    assert.ok(shown > 0 && shown <= 1000, `${shown} rows shown`);
    const wfs = await rows.evaluateAll((els) => els.map((e) => e.textContent ?? ''));
    assert.ok(wfs.every((s) => s.includes(wf)), 'only runs of the workflow are listed');
  }
  await ctx.close();
  const best = Math.min(...times);
  const worst = Math.max(...times);
  figures.push({
    what: `runs page of a workflow with ${PAST_RUNS.toLocaleString('en')} runs: navigation to first rows (3 loads)`,
    value: `${Math.round(best)}–${Math.round(worst)} ms`,
    target: '< 1,000 ms',
  });
  notes.push(`the ${PAST_RUNS.toLocaleString('en')} runs were submitted through the API, 16 at a time, in ${(submitMs / 1000).toFixed(1)} s`);
  assert.ok(worst < 1000, `first rows after ${Math.round(worst)} ms (target < 1000)`);
  assert.deepEqual(errors, [], 'no errors on the page');
});

/** Times the run's event stream to its first event, and the run's detail. */
async function serverTimes(id: string): Promise<{ snapshotMs: number; snapshotBytes: number; detailMs: number; detailBytes: number }> {
  const headers = { Authorization: `Bearer ${k.token}` };
  let t = performance.now();
  const r = await fetch(`${k.url}/api/v1/runs/${encodeURIComponent(id)}/events`, { headers });
  const reader = r.body!.getReader();
  let snapshotBytes = 0;
  // The first event ends at the first blank line; only the new bytes (and
  // the last one before them) are looked at, so that measuring an 11 MB
  // event is not quadratic.
  let last = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    snapshotBytes += value.length;
    let end = false;
    for (let i = 0; i < value.length; i++) {
      if (value[i] === 10 && last === 10) {
        end = true;
        break;
      }
      last = value[i];
    }
    if (end) break;
  }
  const snapshotMs = performance.now() - t;
  await reader.cancel();
  t = performance.now();
  const body = await (await fetch(`${k.url}/api/v1/runs/${encodeURIComponent(id)}`, { headers })).arrayBuffer();
  return { snapshotMs, snapshotBytes, detailMs: performance.now() - t, detailBytes: body.byteLength };
}

/** Prints the figures and writes them to docs/benchmarks.md. */
function record(): void {
  const chromium = (() => {
    try {
      return execFileSync(process.env.KAON_E2E_CHROMIUM ?? '/usr/bin/chromium', ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return 'Chromium';
    }
  })();
  const table = [
    '| what | measured | target |',
    '|---|---:|---|',
    ...figures.map((f) => `| ${f.what} | ${f.value} | ${f.target} |`),
  ].join('\n');
  console.log(`# The web UI under a ${ITEMS}-item sweep\n${table.split('\n').map((l) => `# ${l}`).join('\n')}`);
  const day = new Date().toISOString().slice(0, 10);
  const section = `## The web UI under a 30,000-item sweep

Command:

\`\`\`sh
cargo build --locked --release --bin kaon && cd ui && npm ci && KAON_E2E_DOCS=1 node --import tsx --test e2e/speed.test.ts
\`\`\`

The browser test \`ui/e2e/speed.test.ts\` starts the release \`kaon server\`
(SQLite, \`--cpus 64\`), submits \`ui/e2e/fixtures/sweep-30000.toml\` (a
for-each of 30,000 \`true\` commands over a list made at run time), waits
until the server has expanded the for-each (30,000 item nodes), then opens
the run page in headless Chromium (1280x800) while the items run, on the
same two cores as the server and the items' processes.
First render is the \`kaon:run-rendered\` mark the run page sets after its
first paint with data, from the start of navigation; long tasks come from a
\`PerformanceObserver\` for \`longtask\` installed before the page's scripts;
the DOM is counted (\`document.getElementsByTagName('*')\`) at first render
and every second for ${WATCH_MS / 1000} s while items change state, then once more
with the for-each table open on all its items; then the run is cancelled.
The two API rows time, from Node right after the watch, what the page
waits for before its first render (its event stream's first event, the
run's snapshot) and the run's detail.
The runs page is timed from navigation to the first \`run-row\` (a
\`MutationObserver\` installed before the page's scripts), reloaded three times,
on \`#/runs?workflow=e2e-tiny\` after ${PAST_RUNS.toLocaleString('en')} runs of a one-step workflow.

Measured ${day}, ${os.cpus().length} cores, the release build of kaon (as the tests use it),
${chromium}:

${table}
${notes.length ? '\n' + notes.map((n) => `- ${n}`).join('\n') + '\n' : ''}
The first render and DOM size are asserted by the test (it fails past the
targets); the long-task figures are recorded, not asserted.
`;
  if (!forDocs) {
    console.log('# (KAON_E2E_DOCS=1 writes these figures into docs/benchmarks.md)');
    return;
  }
  const file = path.join(repo, 'docs', 'benchmarks.md');
  const text = fs.readFileSync(file, 'utf8');
  const heading = '## The web UI under a 30,000-item sweep';
  let out: string;
  const at = text.indexOf(heading);
  if (at >= 0) {
    const rest = text.slice(at + heading.length);
    const nextAt = rest.search(/\n## /);
    out = text.slice(0, at) + section + (nextAt >= 0 ? rest.slice(nextAt) : '');
  } else {
    out = text.replace(/\n*$/, '\n\n') + section;
  }
  fs.writeFileSync(file, out);
  console.log(`# written to ${path.relative(repo, file)}`);
}
