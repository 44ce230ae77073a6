// `kaon ui`: the web UI over the runs of `kaon run` on this machine, for
// one person, without a token.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser } from 'playwright-core';
import { LocalUi, launch, open, until, watchErrors } from './harness.ts';

let ui: LocalUi;
let browser: Browser;
let run = '';

before(async () => {
  ui = await LocalUi.start('ui', async (kaon) => {
    // A run of `kaon run`, before the UI starts: 30 items, the multiples of 7 fail.
    const r = await kaon(['run', 'fixtures/foreach-1000.toml', '-p', 'n=30', '-p', 'every=7', '--on-failure', 'continue', '--progress', 'plain']);
    assert.equal(r.code, 1, `kaon run fails (some items fail): ${r.stdout}${r.stderr}`);
    run = /^run (\S+):/m.exec(r.stdout)?.[1] ?? '';
    assert.ok(run, `kaon run printed its run id: ${r.stdout}`);
  });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await ui?.stop();
});

test("kaon ui shows kaon run's runs without a token, as the local user", { timeout: 60_000 }, async () => {
  // A fresh context with no token stored: the page must not ask for one.
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  const errors = watchErrors(page);
  await open(page, ui, '#/runs');
  const row = page.locator(`[data-testid=run-row][data-run-id="${run}"]`);
  await row.waitFor();
  assert.equal(await row.getAttribute('data-status'), 'failed');
  assert.equal(await page.locator('[data-testid=token]').count(), 0, 'no login form');
  assert.match((await page.locator('header').textContent()) ?? '', /local/, 'the header names the local user');

  await open(page, ui, `#/runs/${run}`);
  await until('run-status says failed', 20_000, async () => /failed/.test((await page.locator('[data-testid=run-status]').textContent()) ?? ''));
  const block = page.locator('[data-testid=dag-node][data-kind=for-each]').first();
  await until('the for-each is shown failed', 20_000, async () => (await block.getAttribute('data-state')) === 'failed');
  await ctx.close();
  assert.deepEqual(errors, [], 'no errors on the page');
});
