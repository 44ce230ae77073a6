// The shell: who is signed in, the navigation, and which page shows.
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, setToken, type WhoAmI } from './api';
import { href, useRoute } from './router';
import { RunsPage } from './pages/Runs';
import { WorkflowsPage } from './pages/Workflows';
import { ArtifactPage } from './pages/Artifact';
import { RunPage } from './run/RunPage';

export function App() {
  const route = useRoute();
  const [who, setWho] = useState<WhoAmI | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [asked, setAsked] = useState(0);

  useEffect(() => {
    api.whoami().then(
      (w) => {
        setWho(w);
        setError(null);
      },
      (e) => setError(e instanceof ApiError && e.status === 401 ? 'login' : String(e.message ?? e)),
    );
  }, [asked]);

  if (error === 'login') return <Login onDone={() => setAsked(asked + 1)} />;
  if (error) return <div class="page"><p class="error">{error}</p></div>;
  if (!who) return <div class="page loading">Loading…</div>;

  const [section, id] = route.parts;
  let page;
  if (section === 'runs' && id) page = <RunPage id={id} who={who} query={route.query} />;
  else if (section === 'workflows') page = <WorkflowsPage who={who} />;
  else if (section === 'artifacts' && id) page = <ArtifactPage id={id} query={route.query} />;
  else page = <RunsPage query={route.query} />;

  return (
    <div class="shell">
      <header class="top">
        <a class="brand" href={href('runs')}>kaon</a>
        <nav>
          <a href={href('runs')} class={section === 'runs' || !section ? 'on' : ''}>Runs</a>
          <a href={href('workflows')} class={section === 'workflows' ? 'on' : ''}>Workflows</a>
        </nav>
        <span class="who" title={who.local ? 'kaon ui: the local user' : 'signed in with a token'}>
          {who.name ?? (who.local ? 'local' : 'token')} · {who.role}
          {!who.local && (
            <button class="link" onClick={() => { setToken(null); setAsked(asked + 1); }}>sign out</button>
          )}
        </span>
      </header>
      <main>{page}</main>
    </div>
  );
}

function Login({ onDone }: { onDone: () => void }) {
  const [value, setValue] = useState('');
  return (
    <div class="page login">
      <h1>kaon</h1>
      <p>This server needs a token. Make one with <code>kaon tokens create --role operate</code> and paste it here; it stays in this browser only.</p>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          setToken(value.trim());
          onDone();
        }}
      >
        <input
          type="password"
          data-testid="token"
          placeholder="kaon_…"
          value={value}
          onInput={(e) => setValue((e.target as HTMLInputElement).value)}
          autoFocus
        />
        <button type="submit">Sign in</button>
      </form>
    </div>
  );
}
