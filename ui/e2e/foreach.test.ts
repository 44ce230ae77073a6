// The for-each of 1,000 items (fixtures/foreach-1000.toml): its failed items
// can be filtered and searched in the for-each table, and a failed item's
// stderr is shown in its drawer.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { Kaon, launch, open, screenshot, signedIn, until, watchErrors } from './harness.ts';

/** The fixture's parameters, given explicitly so the expectations follow. */
const N = 1000;
const EVERY = 97;
/** Items 1..N divisible by EVERY fail: 97, 194, ..., 970. */
const FAILING = Array.from({ length: N }, (_, i) => i + 1).filter((i) => i % EVERY === 0);

let k: Kaon;
let browser: Browser;
let ctx: BrowserContext;
let run: string;

before(async () => {
  k = await Kaon.start('foreach');
  browser = await launch();
  ctx = await signedIn(browser, k);
  const wf = await k.deploy('fixtures/foreach-1000.toml');
  // `continue`: a failed item does not stop the others.
  run = await k.submit(wf, { n: N, every: EVERY }, { on_failure: 'continue' });
  const d = await k.waitEnd(run, 180_000);
  assert.equal(d.run.status, 'failed');
  const failed = d.nodes.filter((n) => n.name === 'check' && n.state === 'failed').length;
  assert.equal(failed, FAILING.length, 'the server failed the expected items');
});

after(async () => {
  await browser?.close();
  await k?.stop();
});

/** Opens the run page and its for-each panel. */
async function forEachPanel(page: Page): Promise<void> {
  await open(page, k, `#/runs/${run}`);
  const panel = page.locator('[data-testid=foreach-panel]');
  const block = page.locator('[data-testid=dag-node][data-kind=for-each]').first();
  await block.waitFor();
  if (!(await panel.isVisible())) {
    // The block's node (or its item counts) opens the panel.
    const counts = page.locator('[data-testid=foreach-counts]').first();
    if (await counts.isVisible()) await counts.click();
    if (!(await panel.isVisible())) await block.click();
  }
  await panel.waitFor();
}

async function countText(page: Page): Promise<string> {
  return ((await page.locator('[data-testid=foreach-count]').textContent()) ?? '').replace(/[,\u00a0\u202f ]/g, ' ').replace(/\s+/g, ' ').trim();
}

/** "N of M items", with thousands separators or not. */
function parseCount(s: string): [number, number] | null {
  const m = /([\d\s]+?)\s*of\s*([\d\s]+?)\s*items?/.exec(s);
  if (!m) return null;
  return [Number(m[1]!.replace(/\s/g, '')), Number(m[2]!.replace(/\s/g, ''))];
}

test('the for-each of 1,000 items can be filtered to its failed items, and searched', { timeout: 120_000 }, async () => {
  const page = await ctx.newPage();
  const errors = watchErrors(page);
  await forEachPanel(page);

  const all = await until('foreach-count shows the total', 20_000, async () => parseCount(await countText(page)));
  assert.equal(all[1], N, `foreach-count: ${await countText(page)}`);

  await page.locator('[data-testid=foreach-state]').selectOption('failed');
  const failed = await until(`foreach-count says ${FAILING.length} of ${N}`, 20_000, async () => {
    const c = parseCount(await countText(page));
    return c && c[0] === FAILING.length ? c : null;
  });
  assert.deepEqual(failed, [FAILING.length, N], `foreach-count: ${await countText(page)}`);
  const rows = page.locator('[data-testid=foreach-row]');
  await until('failed rows shown', 10_000, async () => (await rows.count()) > 0);
  const states = await rows.evaluateAll((els) => els.map((e) => e.getAttribute('data-state')));
  assert.ok(states.length > 0 && states.length <= FAILING.length, `${states.length} rows shown`);
  assert.deepEqual([...new Set(states)], ['failed'], 'every row shown is failed');
  await screenshot(page, 'foreach-table');

  // Search within the failed items: 194 is one of them.
  await page.locator('[data-testid=foreach-search]').fill('194');
  await until('the search narrows to one item', 10_000, async () => {
    const c = parseCount(await countText(page));
    return c && c[0] === 1 && (await rows.count()) === 1;
  });
  const text = (await rows.first().textContent()) ?? '';
  assert.match(text, /194/, `the row found: ${text}`);
  assert.equal(await rows.first().getAttribute('data-state'), 'failed');

  // A search that matches no failed item: none shown.
  await page.locator('[data-testid=foreach-search]').fill('195');
  await until('no failed item matches 195', 10_000, async () => {
    const c = parseCount(await countText(page));
    return c && c[0] === 0 && (await rows.count()) === 0;
  });

  // Back to every state: the search alone filters.
  await page.locator('[data-testid=foreach-state]').selectOption('all');
  await until('item 195 is found among all items', 10_000, async () => {
    const c = parseCount(await countText(page));
    return c && c[0] >= 1 && (await rows.count()) >= 1;
  });
  const found = await rows.evaluateAll((els) => els.map((e) => [e.getAttribute('data-state') ?? '', e.textContent ?? ''] as [string, string]));
  assert.ok(found.every(([, t]) => t.includes('195')), `rows found for 195: ${JSON.stringify(found)}`);
  assert.ok(found.some(([s]) => s === 'succeeded'), 'item 195 succeeded');
  assert.deepEqual(errors, [], 'no errors on the page');
  await page.close();
});

test("a failed item's logs are visible: its drawer shows the stderr message", { timeout: 120_000 }, async () => {
  const page = await ctx.newPage();
  const errors = watchErrors(page);
  await forEachPanel(page);
  await page.locator('[data-testid=foreach-state]').selectOption('failed');
  const row = page.locator('[data-testid=foreach-row][data-state=failed]').first();
  await row.waitFor();
  const rowText = (await row.textContent()) ?? '';
  const item = FAILING.find((i) => new RegExp(`\\b${i}\\b`).test(rowText));
  assert.ok(item, `the first failed row names a failing item: ${rowText}`);
  await row.click();

  const drawer = page.locator('[data-testid=step-drawer]');
  await drawer.waitFor();
  const key = (await drawer.getAttribute('data-key')) ?? '';
  assert.match(key, new RegExp(`check\\[item=${item}\\]`), `the drawer is the item's step: ${key}`);
  const log = drawer.locator('[data-testid=log-view]');
  await log.waitFor();
  const want = `item ${item} is a multiple of ${EVERY}: failing on purpose`;
  // The message is on stderr, where a failed step's logs open.
  await until('the log view shows the stderr message', 10_000, async () => ((await log.textContent()) ?? '').includes(want));
  // The stdout tab does not have it; stderr again does.
  await drawer.locator('[data-testid=log-stream-stdout]').click();
  await until('the stdout tab shows stdout', 10_000, async () => !((await log.textContent()) ?? '').includes(want));
  await drawer.locator('[data-testid=log-stream-stderr]').click();
  await until('the stderr tab shows the message again', 10_000, async () => ((await log.textContent()) ?? '').includes(want));
  await screenshot(page, 'step-logs');
  await drawer.locator('[data-testid=drawer-close]').click();
  await until('the drawer closes', 5_000, async () => !(await drawer.isVisible()));
  assert.deepEqual(errors, [], 'no errors on the page');
  await page.close();
});
