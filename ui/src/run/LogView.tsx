// A step's stdout or stderr: read a page at a time and followed while the
// step runs, ANSI colours rendered (HTML escaped: ansi_up's default, kept),
// the DOM capped at the last ~2 MB with a control to load earlier text, and
// a search that highlights matches (CSS Custom Highlights: no DOM change)
// and jumps between them.
import { AnsiUp } from 'ansi_up';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError } from '../api';
import { bytes } from '../format';

const CAP = 2 * 1024 * 1024;
const EARLIER = 1024 * 1024;
const MAX_MATCHES = 10000;

interface Chunk {
  bytes: number;
  el: HTMLElement;
}

export interface LogViewProps {
  run: string;
  step: string;
  /** Attempts started so far (0: not started; -1: unknown, the server
   * shows the latest). */
  attempts: number;
  /** True while the step may still write. */
  live: boolean;
  /** The step failed (its stderr is shown first). */
  failed?: boolean;
}

function ansi(): AnsiUp {
  const a = new AnsiUp();
  a.escape_html = true;
  a.use_classes = false;
  return a;
}

const highlights = (): Map<string, unknown> | null => {
  const c = (globalThis as any).CSS;
  return c && c.highlights && typeof (globalThis as any).Highlight === 'function' ? c.highlights : null;
};

export function LogView(p: LogViewProps) {
  // A failed step's reason is usually on stderr: open there.
  const [stream, setStream] = useState<'stdout' | 'stderr'>(p.failed ? 'stderr' : 'stdout');
  const [pick, setPick] = useState<number | null>(null);
  const [status, setStatus] = useState('');
  const [from, setFrom] = useState(0);
  const [size, setSize] = useState(0);
  const [query, setQuery] = useState('');
  const [hits, setHits] = useState<{ n: number; cur: number }>({ n: 0, cur: -1 });
  const [textVersion, setTextVersion] = useState(0);
  const box = useRef<HTMLDivElement>(null);
  const st = useRef({ chunks: [] as Chunk[], total: 0, from: 0, cap: CAP, loadingEarlier: false });
  const ranges = useRef<Range[]>([]);
  const attempt = pick ?? p.attempts;

  // Loads, then follows, the chosen log.
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    el.textContent = '';
    st.current = { chunks: [], total: 0, from: 0, cap: CAP, loadingEarlier: false };
    setFrom(0);
    setSize(0);
    setTextVersion((v) => v + 1);
    if (attempt === 0) {
      setStatus('The step has not started: no output yet.');
      return;
    }
    const ctrl = new AbortController();
    const au = ansi();
    let cutLine = false;
    const append = (text: string, n: number) => {
      if (cutLine) {
        const i = text.indexOf('\n');
        if (i >= 0 && i < 8192) {
          st.current.from += new TextEncoder().encode(text.slice(0, i + 1)).length;
          n -= new TextEncoder().encode(text.slice(0, i + 1)).length;
          text = text.slice(i + 1);
        }
        cutLine = false;
      }
      if (!text) return;
      const atEnd = el.scrollHeight - el.scrollTop - el.clientHeight < 32;
      const span = document.createElement('span');
      span.innerHTML = au.ansi_to_html(text);
      el.appendChild(span);
      const s = st.current;
      s.chunks.push({ bytes: n, el: span });
      s.total += n;
      while (s.total > s.cap && s.chunks.length > 1) {
        const c = s.chunks.shift()!;
        c.el.remove();
        s.total -= c.bytes;
        s.from += c.bytes;
      }
      setFrom(s.from);
      setTextVersion((v) => v + 1);
      if (atEnd) el.scrollTop = el.scrollHeight;
    };
    const q = { step: p.step, stream, attempt: attempt > 0 ? attempt : undefined };
    (async () => {
      setStatus('Loading…');
      for (let errors = 0; !ctrl.signal.aborted; ) {
        try {
          let page = await api.logs(p.run, { ...q, offset: 0 }, ctrl.signal);
          if (page.size > CAP) {
            const start = page.size - CAP;
            page = await api.logs(p.run, { ...q, offset: start }, ctrl.signal);
            st.current.from = page.offset;
            cutLine = true;
          }
          setSize(page.size);
          append(page.text, page.next - page.offset);
          while (!page.done && !ctrl.signal.aborted) {
            const caught = page.next >= page.size;
            setStatus(caught ? 'Following…' : 'Loading…');
            const next = await api.logs(p.run, { ...q, offset: page.next, follow: caught }, ctrl.signal);
            setSize(next.size);
            append(next.text, next.next - next.offset);
            page = next;
          }
          setStatus('');
          return;
        } catch (e) {
          if (ctrl.signal.aborted) return;
          if (e instanceof ApiError && (e.status === 404 || e.status === 400 || e.status === 409 || e.status === 401 || e.status === 403)) {
            setStatus(e.message);
            return;
          }
          errors++;
          setStatus(`${String((e as Error).message ?? e)} — trying again…`);
          await new Promise((r) => setTimeout(r, Math.min(10000, 1000 * errors)));
          // Start over: what was shown is dropped.
          el.textContent = '';
          st.current = { chunks: [], total: 0, from: 0, cap: CAP, loadingEarlier: false };
        }
      }
    })();
    return () => ctrl.abort();
  }, [p.run, p.step, stream, attempt]);

  const loadEarlier = async () => {
    const s = st.current;
    const el = box.current;
    if (!el || s.loadingEarlier || s.from <= 0) return;
    s.loadingEarlier = true;
    try {
      const offset = Math.max(0, s.from - EARLIER);
      const page = await api.logs(p.run, { step: p.step, stream, attempt: attempt > 0 ? attempt : undefined, offset, limit: s.from - offset });
      const span = document.createElement('span');
      span.innerHTML = ansi().ansi_to_html(page.text);
      const h = el.scrollHeight;
      el.insertBefore(span, el.firstChild);
      el.scrollTop += el.scrollHeight - h;
      const n = s.from - page.offset;
      s.chunks.unshift({ bytes: n, el: span });
      s.total += n;
      s.cap = Math.max(s.cap, s.total);
      s.from = page.offset;
      setFrom(s.from);
      setTextVersion((v) => v + 1);
    } catch (e) {
      setStatus(String((e as Error).message ?? e));
    } finally {
      s.loadingEarlier = false;
    }
  };

  // Search: all matches highlighted, the current one in another colour.
  // A new query is searched after a pause in typing; the new text of a
  // followed log is searched at most once a second.
  const queryRef = useRef(query);
  queryRef.current = query;
  const searched = useRef('');
  const timer = useRef<number | null>(null);
  const search = () => {
    timer.current = null;
    const q = queryRef.current;
    searched.current = q;
    const reg = highlights();
    const el = box.current;
    reg?.delete('kaon-log');
    reg?.delete('kaon-log-cur');
    ranges.current = [];
    if (!el || !q) {
      setHits({ n: 0, cur: -1 });
      return;
    }
    const needle = q.toLowerCase();
    const nodes: Text[] = [];
    const starts: number[] = [];
    let acc = '';
    const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      nodes.push(n as Text);
      starts.push(acc.length);
      acc += (n as Text).data;
    }
    const hay = acc.toLowerCase();
    const found: Range[] = [];
    const at = (i: number): [Text, number] => {
      let lo = 0, hi = starts.length - 1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (starts[mid] <= i) lo = mid;
        else hi = mid - 1;
      }
      return [nodes[lo], i - starts[lo]];
    };
    for (let i = hay.indexOf(needle); i >= 0 && found.length < MAX_MATCHES; i = hay.indexOf(needle, i + needle.length)) {
      const r = document.createRange();
      const [a, ao] = at(i);
      const [b, bo] = at(i + needle.length - 1);
      r.setStart(a, ao);
      r.setEnd(b, bo + 1);
      found.push(r);
    }
    ranges.current = found;
    if (reg && found.length) reg.set('kaon-log', new Highlight(...found));
    setHits((h) => {
      const cur = found.length ? Math.min(Math.max(h.cur, 0), found.length - 1) : -1;
      return { n: found.length, cur };
    });
  };
  useEffect(() => {
    if (searched.current !== query) {
      if (timer.current !== null) clearTimeout(timer.current);
      timer.current = window.setTimeout(search, 200);
    } else if (query && timer.current === null) {
      timer.current = window.setTimeout(search, 1000);
    }
  }, [query, textVersion]);
  useEffect(() => () => {
    if (timer.current !== null) clearTimeout(timer.current);
  }, []);

  useEffect(() => {
    const r = ranges.current[hits.cur];
    const reg = highlights();
    if (!r) {
      reg?.delete('kaon-log-cur');
      return;
    }
    if (reg) reg.set('kaon-log-cur', new Highlight(r));
    else {
      const sel = getSelection();
      sel?.removeAllRanges();
      sel?.addRange(r);
    }
  }, [hits]);

  const jump = (d: number) => {
    if (!hits.n) return;
    const cur = (hits.cur + d + hits.n) % hits.n;
    setHits({ n: hits.n, cur });
    const r = ranges.current[cur];
    const el = box.current;
    if (r && el) {
      const rr = r.getBoundingClientRect();
      const br = el.getBoundingClientRect();
      el.scrollTop += rr.top - br.top - br.height / 2;
    }
  };

  const tabs = (['stdout', 'stderr'] as const).map((s) => (
    <button
      key={s}
      class={stream === s ? 'tab on' : 'tab'}
      data-testid={`log-stream-${s}`}
      aria-selected={stream === s}
      onClick={() => setStream(s)}
    >
      {s}
    </button>
  ));

  return (
    <div class="logs">
      <div class="log-bar">
        {tabs}
        {p.attempts > 1 && (
          <select
            class="log-attempt"
            data-testid="log-attempt"
            value={String(attempt)}
            onChange={(e) => {
              const v = Number((e.target as HTMLSelectElement).value);
              setPick(v === p.attempts ? null : v);
            }}
          >
            {Array.from({ length: p.attempts }, (_, i) => p.attempts - i).map((a) => (
              <option key={a} value={String(a)}>attempt {a}{a === p.attempts ? ' (latest)' : ''}</option>
            ))}
          </select>
        )}
        <span class="spacer" />
        <input
          type="search"
          class="log-search"
          data-testid="log-search"
          placeholder="Search the log"
          value={query}
          onInput={(e) => setQuery((e.target as HTMLInputElement).value)}
          onKeyDown={(e) => {
            if (e.key === 'Enter') {
              e.preventDefault();
              jump(e.shiftKey ? -1 : 1);
            }
          }}
        />
        <span class="muted hits" data-testid="log-hits">{query ? (hits.n ? `${hits.cur + 1}/${hits.n}${hits.n >= MAX_MATCHES ? '+' : ''}` : '0/0') : ''}</span>
        <button class="link" title="Previous match (Shift+Enter)" disabled={!hits.n} onClick={() => jump(-1)}>↑</button>
        <button class="link" title="Next match (Enter)" disabled={!hits.n} onClick={() => jump(1)}>↓</button>
      </div>
      {from > 0 && (
        <div class="log-earlier">
          <button class="link" data-testid="log-earlier" onClick={loadEarlier}>Load earlier</button>
          <span class="muted">{bytes(from)} before this not shown</span>
        </div>
      )}
      <div class="log-view mono" data-testid="log-view" ref={box} />
      <div class="log-status muted">
        {status}
        {size ? <span> · {bytes(size)}</span> : null}
        {p.live && !status ? ' · live' : ''}
      </div>
    </div>
  );
}
