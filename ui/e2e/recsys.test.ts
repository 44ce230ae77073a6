// The recsys example through the UI: the run appears in the runs list, its
// DAG shows the states live (selectModel `waiting`, in the waiting colour,
// while the global model's branch still runs; green at the end), and after
// a second run with other parameters the artifact page of its
// feature_importance artifact shows its lineage and the metric chart.
//
// Needs the Spark runtimes 3.5 and 4.3 (`kaon spark install 3.5 4.3`).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser, BrowserContext, Locator, Page } from 'playwright-core';
import { Kaon, launch, open, screenshot, signedIn, sleep, until, watchErrors } from './harness.ts';

let k: Kaon;
let browser: Browser;
let ctx: BrowserContext;
let workflow: string;
/** The two runs (the second with another cohort date). */
const runs: string[] = [];

before(async () => {
  k = await Kaon.start('recsys');
  browser = await launch();
  ctx = await signedIn(browser, k);
  workflow = await k.deploy('examples/recsys/recsys.toml');
});

after(async () => {
  await browser?.close();
  await k?.stop();
});

/** The colours a CSS variable of the page's stylesheet resolves to, and
 * the computed fill and stroke of an element and its descendants. */
async function colours(page: Page, node: Locator, cssVar: string): Promise<{ want: string; seen: string[] }> {
  const want = await page.evaluate((v) => {
    const probe = document.createElement('div');
    probe.style.color = `var(${v})`;
    document.body.appendChild(probe);
    const c = getComputedStyle(probe).color;
    probe.remove();
    return c;
  }, cssVar);
  const seen = await node.evaluate((el) => {
    const out = new Set<string>();
    for (const e of [el, ...Array.from(el.querySelectorAll('*'))]) {
      const s = getComputedStyle(e);
      for (const c of [s.fill, s.stroke]) if (c && c !== 'none') out.add(c);
    }
    return [...out];
  });
  return { want, seen };
}

test('the recsys run appears and its DAG shows live states: selectModel waiting (blue) while a branch runs, then green', { timeout: 420_000 }, async () => {
  const id = await k.submit(workflow, { cohort_date: '2016-05-31' });
  runs.push(id);
  const page = await ctx.newPage();
  const errors = watchErrors(page);

  // The run appears in the runs list, running.
  await open(page, k, '#/runs');
  const row = page.locator(`[data-testid=run-row][data-run-id="${id}"]`);
  await row.waitFor();
  assert.equal(await row.getAttribute('data-status'), 'running');

  await open(page, k, `#/runs/${id}`);
  const select = page.locator('[data-testid=dag-node][data-name=selectModel]').first();
  await select.waitFor({ timeout: 60_000 });

  // Poll the DOM: every state selectModel shows, and at the moment it is
  // waiting, whether another branch runs and which colours it has.
  const seen: string[] = [];
  let waitingCheck: { want: string; seen: string[]; running: string[] } | null = null;
  const deadline = Date.now() + 360_000;
  for (;;) {
    const state = await select.getAttribute('data-state');
    if (state && seen[seen.length - 1] !== state) seen.push(state);
    if (state === 'waiting' && !waitingCheck) {
      const running = await page
        .locator('[data-testid=dag-node][data-state=running], [data-testid=dag-node][data-state=starting]')
        .evaluateAll((els) =>
          els.filter((e) => ['command', 'spark'].includes(e.getAttribute('data-kind') ?? '')).map((e) => e.getAttribute('data-name') ?? '?'),
        );
      const c = await colours(page, select, '--st-waiting');
      if (running.length) {
        waitingCheck = { ...c, running };
        await screenshot(page, 'run-page');
      }
    }
    const status = (await page.locator('[data-testid=run-status]').textContent()) ?? '';
    if (/succeeded|failed|cancelled/.test(status)) break;
    assert.ok(Date.now() < deadline, `the run did not end in 6 minutes; selectModel showed ${seen.join(' → ')}`);
    await sleep(100);
  }

  const detail = await k.waitEnd(id, 30_000);
  assert.equal(detail.run.status, 'succeeded', `run ${id}: ${detail.run.message}`);
  assert.ok(seen.includes('waiting'), `selectModel was never shown waiting; it showed ${seen.join(' → ')}`);
  assert.ok(waitingCheck, `selectModel showed waiting, but never while a step of another branch was shown running (${seen.join(' → ')})`);
  assert.ok(
    waitingCheck.seen.includes(waitingCheck.want),
    `selectModel waiting: no fill or stroke is --st-waiting ${waitingCheck.want}; saw ${waitingCheck.seen.join(', ')}`,
  );
  // The branch selectModel waits for: the global model's.
  assert.ok(
    waitingCheck.running.some((n) => n === 'trainGlobalModel' || n === 'validateGlobalModel' || n === 'trainRegModel' || n === 'validateRegModel'),
    `while selectModel waited, the steps shown running were ${waitingCheck.running.join(', ')}`,
  );

  // The end: the status says succeeded and the nodes turn green.
  await until('run-status says succeeded', 10_000, async () => /succeeded/.test((await page.locator('[data-testid=run-status]').textContent()) ?? ''));
  await until('selectModel shown succeeded', 10_000, async () => (await select.getAttribute('data-state')) === 'succeeded');
  const green = await colours(page, select, '--st-succeeded');
  assert.ok(green.seen.includes(green.want), `selectModel succeeded: no fill or stroke is --st-succeeded ${green.want}; saw ${green.seen.join(', ')}`);
  const steps = await page
    .locator('[data-testid=dag-node]')
    .evaluateAll((els) => els.map((e) => [e.getAttribute('data-name'), e.getAttribute('data-kind'), e.getAttribute('data-state')]));
  const notDone = steps.filter(([, kind, state]) => (kind === 'command' || kind === 'spark') && state !== 'succeeded');
  assert.deepEqual(notDone, [], 'every command and Spark step is shown succeeded at the end');
  console.log(`# selectModel showed: ${seen.join(' → ')}; while waiting, running: ${waitingCheck.running.join(', ')}`);
  assert.deepEqual(errors, [], 'no errors on the page');
  await page.close();
});

test('the artifact page of feature_importance shows its lineage and the metric chart over two runs', { timeout: 300_000 }, async () => {
  assert.ok(runs.length === 1, 'the first recsys run is there (previous test)');
  // A second run with another cohort: other data, other values.
  const id2 = await k.submit(workflow, { cohort_date: '2016-06-30' });
  runs.push(id2);
  const d2 = await k.waitEnd(id2, 360_000);
  assert.equal(d2.run.status, 'succeeded', `run ${id2}: ${d2.run.message}`);

  const arts: { id: string; name: string; step: string | null; run: string | null }[] = await k.get(
    `/api/v1/artifacts?run=${encodeURIComponent(id2)}&limit=200`,
  );
  const fi = arts.filter((a) => a.name === 'feature_importance');
  assert.ok(
    fi.length >= 1,
    `run ${id2} has no feature_importance artifact (examples/recsys should write one from trainGlobalModel); its artifacts: ${arts.map((a) => `${a.step}.${a.name}`).join(', ')}`,
  );
  const art = fi[fi.length - 1]!;

  const page = await ctx.newPage();
  const errors = watchErrors(page);
  await open(page, k, `#/artifacts/${art.id}`);
  await page.locator('[data-testid=artifact-meta]').waitFor();
  const graph = page.locator('[data-testid=lineage-graph]');
  await graph.waitFor();
  const nodes = graph.locator('[data-testid=lineage-node]');
  await until('the lineage graph has at least 2 nodes', 20_000, async () => (await nodes.count()) >= 2);
  const current = await graph.locator('[data-testid=lineage-node][data-current=true]').count();
  assert.equal(current, 1, 'one lineage node is the artifact shown (data-current=true)');
  const chart = page.locator('[data-testid=metric-chart]');
  await chart.waitFor();
  const points = await until('the metric chart has at least 2 points', 20_000, async () => {
    const p = Number(await chart.getAttribute('data-points'));
    return p >= 2 ? p : null;
  });
  const series = await chart.getAttribute('data-series');
  await page.locator('[data-testid=artifact-preview]').waitFor();
  console.log(`# artifact ${art.id}: ${await nodes.count()} lineage nodes, metric chart ${points} points, series ${series}`);
  await sleep(300); // the chart's canvas draws after its data
  await screenshot(page, 'artifact');
  assert.deepEqual(errors, [], 'no errors on the page');
  await page.close();
});
