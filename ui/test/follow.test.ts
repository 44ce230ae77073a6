// follow(): the run page's reader of server-sent events, against a fetch
// that replays streams (a unit test of its logic; the browser tests run it
// against a real server).
import { test } from 'node:test';
import assert from 'node:assert/strict';

const g = globalThis as any;
g.localStorage = { getItem: () => null, setItem() {}, removeItem() {} };
g.document = { hidden: false };
g.requestAnimationFrame = (f: () => void) => setTimeout(f, 0);

const { follow } = await import('../src/api.ts');

/** A fetch that answers each call with the next stream, cut into `chunks`. */
function replay(streams: string[][]): { calls: () => number } {
  let n = 0;
  g.fetch = async () => {
    const chunks = streams[Math.min(n, streams.length - 1)];
    n++;
    const enc = new TextEncoder();
    const body = new ReadableStream({
      start(c) {
        for (const k of chunks) c.enqueue(enc.encode(k));
        c.close();
      },
    });
    return new Response(body, { status: 200 });
  };
  return { calls: () => n };
}

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('events split anywhere across reads arrive whole, in order', async () => {
  const big = JSON.stringify({ nodes: Array.from({ length: 2000 }, (_, i) => ({ id: i })) });
  const text = `event: snapshot\ndata: ${big}\n\nevent: nodes\ndata: {"run":"r"}\n\nevent: finished\ndata: {"run":"r","root":"r"}\n\n`;
  // Cut at every awkward place: inside the blank line, inside "data:".
  const cuts = [1, 17, text.indexOf('\n\n') + 1, text.indexOf('\n\n') + 2, text.length - 1];
  const chunks: string[] = [];
  let at = 0;
  for (const c of cuts) {
    chunks.push(text.slice(at, c));
    at = c;
  }
  chunks.push(text.slice(at));
  replay([chunks]);
  const seen: { event: string; data: any }[] = [];
  const stop = follow('/api/v1/runs/r/events', (b) => seen.push(...b), { retryMs: 10 });
  await wait(100);
  stop();
  assert.deepEqual(seen.map((e) => e.event), ['snapshot', 'nodes', 'finished']);
  assert.equal(seen[0].data.nodes.length, 2000);
});

test("a sub-workflow's end does not end its parent's stream: a drop after it reconnects", async () => {
  const child = 'event: finished\ndata: {"run":"r.1-1","root":"r"}\n\n';
  const own = 'event: finished\ndata: {"run":"r","root":"r"}\n\n';
  const f = replay([[child], [own]]);
  const stop = follow('/api/v1/runs/r/events', () => {}, { retryMs: 10 });
  await wait(200);
  stop();
  assert.equal(f.calls(), 2, 'reconnected once after the drop, then ended with its own run');
});
