// Hash routing (`#/runs/ID?node=3`): the server serves one page and needs no
// fallback route, and a link to any view can be pasted anywhere.
import { useEffect, useState } from 'preact/hooks';

export interface Route {
  /** Path segments after `#/`, decoded. */
  parts: string[];
  /** The query after `?`. */
  query: URLSearchParams;
}

export function parse(hash: string): Route {
  const h = hash.replace(/^#\/?/, '');
  const [path, q = ''] = h.split('?', 2) as [string, string?];
  return {
    parts: path.split('/').filter(Boolean).map(decodeURIComponent),
    query: new URLSearchParams(q),
  };
}

/** The current route; re-renders on navigation. */
export function useRoute(): Route {
  const [route, setRoute] = useState(() => parse(location.hash));
  useEffect(() => {
    const on = () => setRoute(parse(location.hash));
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return route;
}

/** A link target: `href('runs', id)` is `#/runs/<id>`. */
export function href(...parts: (string | number)[]): string {
  return '#/' + parts.map((p) => encodeURIComponent(String(p))).join('/');
}

/** Changes the query of the current route without adding history. */
export function setQuery(q: Record<string, string | null | undefined>): void {
  const r = parse(location.hash);
  for (const [k, v] of Object.entries(q)) {
    if (v === null || v === undefined || v === '') r.query.delete(k);
    else r.query.set(k, v);
  }
  const qs = r.query.toString();
  const next = '#/' + r.parts.map(encodeURIComponent).join('/') + (qs ? `?${qs}` : '');
  history.replaceState(null, '', next);
  dispatchEvent(new HashChangeEvent('hashchange'));
}
