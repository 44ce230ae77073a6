// Acting on runs from the UI: cancel a long run (fixtures/sleeper.toml),
// send the signal a wait step waits for (fixtures/approval.toml), the runs
// and workflows pages that list them, and a schedule paused, resumed and
// triggered from the workflows page (fixtures/nightly.toml).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser, BrowserContext } from 'playwright-core';
import { Kaon, launch, open, screenshot, signedIn, until, watchErrors } from './harness.ts';

let k: Kaon;
let browser: Browser;
let ctx: BrowserContext;

before(async () => {
  k = await Kaon.start('actions');
  browser = await launch();
  ctx = await signedIn(browser, k);
});

after(async () => {
  await browser?.close();
  await k?.stop();
});

const statusText = async (page: import('playwright-core').Page) =>
  ((await page.locator('[data-testid=run-status]').textContent()) ?? '').trim();

test('cancel from the UI: the sleeping run ends cancelled', { timeout: 120_000 }, async () => {
  const wf = await k.deploy('fixtures/sleeper.toml');
  const id = await k.submit(wf);
  await k.waitRun(id, 30_000, (d) => d.nodes.some((n) => n.name === 'nap' && n.state === 'running'));

  const page = await ctx.newPage();
  const errors = watchErrors(page);
  await open(page, k, `#/runs/${id}`);
  const nap = page.locator('[data-testid=dag-node][data-name=nap]');
  await until('nap is shown running', 20_000, async () => (await nap.getAttribute('data-state')) === 'running');
  assert.match(await statusText(page), /running/);
  // A run with no wait step offers no signal; cancel it does.
  await page.locator('[data-testid=run-cancel]').waitFor();
  assert.equal(await page.locator('[data-testid=signal-open]').count(), 0, 'no signal form for a run without wait steps');

  const dialogs: string[] = [];
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    void d.accept();
  });
  await page.locator('[data-testid=run-cancel]').click();
  await until('run-status says cancelled', 30_000, async () => /cancelled/.test(await statusText(page)));
  assert.equal(dialogs.length, 1, 'the cancel asked for confirmation once');
  const d = await k.waitEnd(id, 30_000);
  assert.equal(d.run.status, 'cancelled');
  assert.equal(d.nodes.find((n) => n.name === 'nap')?.state, 'cancelled');
  await until('nap is shown cancelled', 10_000, async () => (await nap.getAttribute('data-state')) === 'cancelled');
  assert.equal(await page.locator('[data-testid=action-error]').count(), 0, 'no action error shown');
  assert.deepEqual(errors, [], 'no errors on the page');
  await page.close();
});

test('signal from the UI: the waiting approval goes on with the value sent', { timeout: 120_000 }, async () => {
  const wf = await k.deploy('fixtures/approval.toml');
  const id = await k.submit(wf);
  await k.waitRun(id, 30_000, (d) => d.nodes.some((n) => n.name === 'approve' && n.state === 'running'));

  const page = await ctx.newPage();
  const errors = watchErrors(page);
  await open(page, k, `#/runs/${id}`);
  // A wait step waiting for its signal is `running` in the store; the
  // page says it waits for a signal.
  const approve = page.locator('[data-testid=dag-node][data-name=approve]');
  await until('approve is shown running', 20_000, async () => (await approve.getAttribute('data-state')) === 'running');
  await until('the page says approve waits for its signal', 10_000, async () => {
    const node = (await approve.textContent()) ?? '';
    const title = (await approve.locator('title').allTextContents()).join(' ');
    const body = (await page.locator('body').textContent()) ?? '';
    return /wait/i.test(node + title) || /waiting for (the )?signal/i.test(body);
  });

  const value = { by: 'e2e', note: 'ship it' };
  await page.locator('[data-testid=signal-open]').click();
  await page.locator('[data-testid=signal-name]').fill('approve');
  await page.locator('[data-testid=signal-value]').fill(JSON.stringify(value));
  await screenshot(page, 'signal');
  await page.locator('[data-testid=signal-send]').click();

  await until('run-status says succeeded', 30_000, async () => /succeeded/.test(await statusText(page)));
  const d = await k.waitEnd(id, 10_000);
  assert.equal(d.run.status, 'succeeded');
  const ship = d.nodes.find((n) => n.name === 'ship');
  assert.equal(ship?.data.outputs?.message, 'approved by e2e: ship it');

  // The downstream step's output, in its drawer's log view.
  const shipNode = page.locator('[data-testid=dag-node][data-name=ship]');
  await until('ship is shown succeeded', 10_000, async () => (await shipNode.getAttribute('data-state')) === 'succeeded');
  await shipNode.click();
  const drawer = page.locator('[data-testid=step-drawer]');
  await drawer.waitFor();
  await until("ship's log shows the value", 10_000, async () =>
    ((await drawer.locator('[data-testid=log-view]').textContent()) ?? '').includes('approved by e2e: ship it'),
  );
  assert.equal(await page.locator('[data-testid=action-error]').count(), 0, 'no action error shown');
  assert.deepEqual(errors, [], 'no errors on the page');
  await page.close();
});

test('the runs and workflows pages list what ran', { timeout: 60_000 }, async () => {
  // A failed run too: a small for-each whose multiples of 7 fail.
  const fe = await k.deploy('fixtures/foreach-1000.toml');
  const failed = await k.submit(fe, { n: 50, every: 7 }, { on_failure: 'continue' });
  assert.equal((await k.waitEnd(failed, 60_000)).run.status, 'failed');

  const page = await ctx.newPage();
  const errors = watchErrors(page);
  await open(page, k, '#/runs');
  const rows = page.locator('[data-testid=run-row]');
  await until('three runs listed', 10_000, async () => (await rows.count()) >= 3);
  const statuses = await rows.evaluateAll((els) => els.map((e) => e.getAttribute('data-status')));
  assert.deepEqual([...statuses].sort(), ['cancelled', 'failed', 'succeeded'], `statuses: ${statuses.join(', ')}`);
  // The status filter narrows the list.
  await page.locator('[data-testid=filter-status]').selectOption('cancelled');
  await until('only the cancelled run is listed', 10_000, async () => {
    const s = await rows.evaluateAll((els) => els.map((e) => e.getAttribute('data-status')));
    return s.length === 1 && s[0] === 'cancelled';
  });
  await page.locator('[data-testid=filter-status]').selectOption('');
  await until('every run listed again', 10_000, async () => (await rows.count()) >= 3);
  await screenshot(page, 'runs');

  await open(page, k, '#/workflows');
  const cards = page.locator('[data-testid=workflow-card]');
  await until('three workflow cards', 10_000, async () => (await cards.count()) >= 3);
  const text = (await cards.allTextContents()).join(' ');
  assert.match(text, /e2e-sleeper/);
  assert.match(text, /e2e-approval/);
  assert.match(text, /e2e-foreach/);
  assert.deepEqual(errors, [], 'no errors on the page');
  await page.close();
});

test('a schedule is paused, resumed and triggered from the workflows page', { timeout: 60_000 }, async () => {
  const wf = await k.deploy('fixtures/nightly.toml');
  const id = `${wf}:yearly`;
  const page = await ctx.newPage();
  const errors = watchErrors(page);
  await open(page, k, '#/workflows');
  const row = page.locator(`[data-testid=schedule-row][data-schedule-id="${id}"]`);
  await row.waitFor();
  assert.equal(await row.getAttribute('data-paused'), 'false');
  const paused = async () => ((await k.get('/api/v1/schedules')) as { id: string; paused: boolean }[]).find((s) => s.id === id)?.paused;

  await row.locator('[data-testid=schedule-pause]').click();
  await until('the row says paused', 10_000, async () => (await row.getAttribute('data-paused')) === 'true');
  assert.equal(await paused(), true, 'the server has the schedule paused');

  await row.locator('[data-testid=schedule-resume]').click();
  await until('the row says not paused', 10_000, async () => (await row.getAttribute('data-paused')) === 'false');
  assert.equal(await paused(), false, 'the server has the schedule running again');
  await screenshot(page, 'workflows');

  // Trigger now: a run starts (the page may open it).
  await row.locator('[data-testid=schedule-trigger]').click();
  const runs = await until('the trigger made a run', 10_000, async () => {
    const r: { id: string }[] = await k.get(`/api/v1/runs?workflow=${wf}`);
    return r.length === 1 ? r : null;
  });
  assert.equal((await k.waitEnd(runs[0]!.id, 30_000)).run.status, 'succeeded');
  assert.equal(await page.locator('[data-testid=action-error]').count(), 0, 'no action error shown');
  assert.deepEqual(errors, [], 'no errors on the page');
  await page.close();
});
