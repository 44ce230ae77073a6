// The browser tests' harness: a real `kaon server` (the built release binary)
// with a data directory of its own, an admin token, the fixtures deployed
// through the API, and headless Chromium (Debian's package) driven by
// playwright-core.
//
// Knobs (environment):
//   KAON_BIN          the kaon binary (default: ${CARGO_TARGET_DIR:-target}/release/kaon,
//                     the build users run and the speed figures are about)
//   KAON_E2E_DOCS=1   write the screenshots into docs/ui and the speed figures
//                     into docs/benchmarks.md (otherwise both go to
//                     ${CARGO_TARGET_DIR:-target}/ui-e2e, so a test run leaves
//                     the working tree as it was)
//   KAON_E2E_CHROMIUM the browser (default: /usr/bin/chromium)
//   KAON_E2E_KEEP=1   keep the temp directory (server log, data) after the tests
//   KAON_SPARK_DIR    where the Spark runtimes are (inherited by the server,
//                     as everything else in the environment: by default kaon
//                     looks in ~/.local/share/kaon/spark, where
//                     `kaon spark install 3.5 4.3` in scripts/test puts them)

import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

const execFileP = promisify(execFile);

/** The repository's root (ui/e2e/../..). */
export const repo = path.resolve(import.meta.dirname, '..', '..');
export const fixtures = path.join(import.meta.dirname, 'fixtures');
const target = process.env.CARGO_TARGET_DIR
  ? path.resolve(repo, process.env.CARGO_TARGET_DIR)
  : path.join(repo, 'target');
/** True when the run refreshes the documentation's screenshots and figures. */
export const forDocs = process.env.KAON_E2E_DOCS === '1';
/** Where the screenshots go (docs/ui.md shows them when made for the docs). */
export const shots = forDocs ? path.join(repo, 'docs', 'ui') : path.join(target, 'ui-e2e');

export function kaonBin(): string {
  if (process.env.KAON_BIN) return path.resolve(process.env.KAON_BIN);
  return path.join(target, 'release', 'kaon');
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The environment kaon commands of the harness run with. */
function kaonEnv(data: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, KAON_DATA_DIR: data, NO_COLOR: '1' };
  // Nothing of the caller's own kaon setup leaks in.
  for (const k of ['KAON_SERVER', 'KAON_TOKEN', 'KAON_DB', 'KAON_LISTEN', 'KAON_ARTIFACTS', 'KAON_CONFIG', 'KAON_CPUS', 'KAON_MEMORY', 'KAON_PUBLIC_URL']) {
    delete env[k];
  }
  return env;
}

/** Copies a folder, leaving out `work` and `__pycache__` (what runs leave). */
export function copyDir(from: string, to: string): void {
  fs.mkdirSync(to, { recursive: true });
  for (const e of fs.readdirSync(from, { withFileTypes: true })) {
    if (e.name === 'work' || e.name === '__pycache__' || e.name === '.kaon') continue;
    const src = path.join(from, e.name);
    const dst = path.join(to, e.name);
    if (e.isDirectory()) copyDir(src, dst);
    else fs.copyFileSync(src, dst);
  }
}

export interface NodeView {
  id: number;
  scope: number;
  key: string;
  name: string;
  kind: string;
  state: string;
  attempt: number;
  data: Record<string, any>;
}

export interface RunDetail {
  run: { id: string; workflow: string; status: string; message: string | null; outputs: any; params: any };
  nodes: NodeView[];
  scopes?: unknown[];
}

export class HttpError extends Error {
  constructor(public status: number, public body: string, what: string) {
    super(`${what}: ${status} ${body}`);
  }
}

/** A running `kaon server` and a client of its API. */
export class Kaon {
  private stopped = false;

  private constructor(
    public readonly dir: string,
    public readonly data: string,
    public readonly url: string,
    public readonly token: string,
    private readonly child: ChildProcess,
    public readonly log: string,
  ) {}

  /**
   * Starts a server on a free port of 127.0.0.1, with a temp directory
   * (its data directory and copies of the fixtures and examples), and
   * makes an admin token.
   */
  static async start(name: string): Promise<Kaon> {
    const bin = kaonBin();
    if (!fs.existsSync(bin)) {
      throw new Error(`${bin} is missing: build it first (cargo build --locked --bin kaon)`);
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `kaon-e2e-${name}-`));
    const data = path.join(dir, 'data');
    fs.mkdirSync(data, { recursive: true });
    // Copies, so that runs write their `work` folders here, not in the repo.
    copyDir(fixtures, path.join(dir, 'fixtures'));
    copyDir(path.join(repo, 'examples', 'recsys'), path.join(dir, 'examples', 'recsys'));
    copyDir(path.join(repo, 'examples', 'lib'), path.join(dir, 'examples', 'lib'));

    const env = kaonEnv(data);
    const { stdout } = await execFileP(bin, ['tokens', 'create', `e2e-${name}`, '--role', 'admin'], { cwd: dir, env });
    const token = stdout.trim();
    if (!token) throw new Error('kaon tokens create printed no token');

    const log = path.join(dir, 'server.log');
    const { child, url } = await spawnListening(
      bin,
      ['server', '--listen', '127.0.0.1:0', '--cpus', '64', '--memory', '64g', '--kill-grace', '2s'],
      { cwd: dir, env, log },
    );
    const k = new Kaon(dir, data, url, token, child, log);
    await k.ready();
    return k;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  private async ready(): Promise<void> {
    const until = Date.now() + 60_000;
    for (;;) {
      try {
        const r = await fetch(`${this.url}/readyz`);
        if (r.ok) return;
      } catch {
        // not yet
      }
      if (Date.now() > until) throw new Error(`kaon server at ${this.url} not ready in 60 s (log: ${this.log})`);
      await sleep(100);
    }
  }

  async call(method: string, p: string, body?: unknown): Promise<any> {
    const r = await fetch(`${this.url}${p}`, {
      method,
      headers: {
        Authorization: `Bearer ${this.token}`,
        ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    if (!r.ok) throw new HttpError(r.status, text, `${method} ${p}`);
    return text ? JSON.parse(text) : null;
  }

  get(p: string): Promise<any> {
    return this.call('GET', p);
  }

  post(p: string, body: unknown): Promise<any> {
    return this.call('POST', p, body);
  }

  /** Deploys a workflow file (a path relative to the temp dir, e.g.
   * `fixtures/approval.toml`); its name. */
  async deploy(rel: string): Promise<string> {
    const v = await this.post('/api/v1/workflows', { path: path.join(this.dir, rel) });
    return v.workflow.name as string;
  }

  /** Submits a run; its id. */
  async submit(workflow: string, params: Record<string, unknown> = {}, opts: { on_failure?: 'stop' | 'continue' } = {}): Promise<string> {
    const v = await this.post('/api/v1/runs', { workflow, params, ...opts });
    return v.id as string;
  }

  run(id: string): Promise<RunDetail> {
    return this.get(`/api/v1/runs/${encodeURIComponent(id)}`);
  }

  /** Polls a run's detail until `done` says yes; fails after `ms`. */
  async waitRun(id: string, ms: number, done: (d: RunDetail) => boolean, every = 250): Promise<RunDetail> {
    const until = Date.now() + ms;
    for (;;) {
      const d = await this.run(id);
      if (done(d)) return d;
      if (Date.now() > until) {
        const states: Record<string, number> = {};
        for (const n of d.nodes) states[n.state] = (states[n.state] ?? 0) + 1;
        throw new Error(`run ${id} (${d.run.workflow}) did not get there in ${ms} ms: ${d.run.status}, nodes ${JSON.stringify(states)}, message ${d.run.message}`);
      }
      await sleep(every);
    }
  }

  /** Waits for a run to end; its detail. */
  waitEnd(id: string, ms: number): Promise<RunDetail> {
    return this.waitRun(id, ms, (d) => d.run.status !== 'running');
  }

  /** Cancels every run still running and waits (bounded) for them to end,
   * so that no step outlives the server; then stops the server (SIGTERM to
   * its pid, SIGKILL after 15 s) and removes the temp directory. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    try {
      const running: { id: string }[] = await this.get('/api/v1/runs?status=running&limit=1000');
      for (const r of running) {
        try {
          await this.post(`/api/v1/runs/${encodeURIComponent(r.id)}/cancel`, { reason: 'the browser tests are over' });
        } catch {
          // it ended meanwhile
        }
      }
      const until = Date.now() + 30_000;
      while (Date.now() < until) {
        const left: unknown[] = await this.get('/api/v1/runs?status=running&limit=10');
        if (!left.length) break;
        await sleep(250);
      }
    } catch (e) {
      console.error(`# could not cancel the server's runs: ${e}`);
    }
    await stopChild(this.child);
    if (process.env.KAON_E2E_KEEP === '1') {
      console.log(`# kept ${this.dir} (server log: ${this.log})`);
    } else {
      fs.rmSync(this.dir, { recursive: true, force: true });
    }
  }
}

/** The servers this process started and has not stopped: killed (by pid)
 * if the test process ends or is interrupted before its `after` hooks. */
const started = new Set<ChildProcess>();
const killStarted = () => {
  for (const c of started) c.kill('SIGKILL');
};
process.on('exit', killStarted);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    killStarted();
    process.exit(130);
  });
}

/**
 * Starts a kaon command that serves HTTP (`kaon server`, `kaon ui`) and
 * waits for the URL it prints on stdout; its stderr goes to `log`.
 */
export async function spawnListening(
  bin: string,
  args: string[],
  opts: { cwd: string; env: NodeJS.ProcessEnv; log: string },
): Promise<{ child: ChildProcess; url: string }> {
  const err = fs.openSync(opts.log, 'a');
  const child = spawn(bin, args, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', 'pipe', err] });
  fs.closeSync(err);
  started.add(child);
  child.once('exit', () => started.delete(child));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`kaon ${args[0]} printed no address in 60 s (log: ${opts.log})`));
    }, 60_000);
    const lines = createInterface({ input: child.stdout! });
    let found = false;
    lines.on('line', (line) => {
      if (found) return; // keep draining the pipe
      const m = /https?:\/\/[^\s),;]+/.exec(line);
      if (m) {
        found = true;
        clearTimeout(timer);
        resolve(m[0].replace(/[.]+$/, '').replace(/\/$/, ''));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (!found) reject(new Error(`kaon ${args[0]} exited (${code}) before listening: ${fs.readFileSync(opts.log, 'utf8')}`));
    });
  });
  return { child, url };
}

/** Stops a process we started: SIGTERM to its pid, SIGKILL after `graceMs`. */
export async function stopChild(child: ChildProcess, graceMs = 15_000): Promise<void> {
  const exited = new Promise<void>((r) => {
    if (child.exitCode !== null || child.signalCode !== null) r();
    else child.once('exit', () => r());
  });
  child.kill('SIGTERM');
  const killer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(killer);
}

/** `kaon ui` over a data directory (no token: the local user). */
export class LocalUi {
  private constructor(
    public readonly dir: string,
    public readonly data: string,
    public readonly url: string,
    private readonly child: ChildProcess,
    public readonly log: string,
  ) {}

  /** A temp dir with a data directory; `prepare` runs kaon commands (e.g.
   * `kaon run`) in it before the UI starts. */
  static async start(name: string, prepare: (kaon: (args: string[]) => Promise<{ code: number; stdout: string; stderr: string }>, dir: string) => Promise<void>): Promise<LocalUi> {
    const bin = kaonBin();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `kaon-e2e-${name}-`));
    const data = path.join(dir, '.kaon');
    copyDir(fixtures, path.join(dir, 'fixtures'));
    const env = kaonEnv(data);
    await prepare(
      (args) =>
        new Promise((resolve) => {
          execFile(bin, args, { cwd: dir, env }, (e, stdout, stderr) =>
            resolve({ code: e ? Number((e as { code?: number }).code ?? 1) : 0, stdout, stderr }),
          );
        }),
      dir,
    );
    const log = path.join(dir, 'ui.log');
    const { child, url } = await spawnListening(bin, ['ui', '--listen', '127.0.0.1:0', '--data', data], { cwd: dir, env, log });
    return new LocalUi(dir, data, url, child, log);
  }

  async stop(): Promise<void> {
    await stopChild(this.child);
    if (process.env.KAON_E2E_KEEP === '1') console.log(`# kept ${this.dir} (log: ${this.log})`);
    else fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Debian's Chromium, headless (Playwright's own browser download is not used). */
export async function launch(): Promise<Browser> {
  const executablePath = process.env.KAON_E2E_CHROMIUM ?? '/usr/bin/chromium';
  if (!fs.existsSync(executablePath)) {
    throw new Error(`${executablePath} is missing: apt-get install -y --no-install-recommends chromium`);
  }
  return chromium.launch({ executablePath, headless: true, args: CHROMIUM_ARGS });
}

/** A fresh context (its own storage) whose pages carry the server's token
 * (`kaon.token` in localStorage, as the login form stores it). */
export async function signedIn(browser: Browser, k: Kaon, opts: { initScripts?: string[] } = {}): Promise<BrowserContext> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1 });
  await context.addInitScript((t: string) => {
    try {
      localStorage.setItem('kaon.token', t);
    } catch {
      // about:blank has no storage
    }
  }, k.token);
  for (const s of opts.initScripts ?? []) await context.addInitScript(s);
  context.setDefaultTimeout(20_000);
  return context;
}

/** Opens `#/…` of the server's UI. */
export async function open(page: Page, k: { url: string }, hash: string): Promise<void> {
  await page.goto(`${k.url}/${hash.startsWith('#') ? hash : '#' + hash}`);
}

/** Saves a screenshot of the page (1280x800) as NAME.png in `shots`. */
export async function screenshot(page: Page, name: string): Promise<string> {
  fs.mkdirSync(shots, { recursive: true });
  const file = path.join(shots, `${name}.png`);
  await page.screenshot({ path: file, fullPage: false, animations: 'disabled', caret: 'hide' });
  return file;
}

/** Collects what the page logged to its console as errors, and uncaught
 * exceptions, to show when a test fails. */
export function watchErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  return errors;
}

/** Polls `f` until it returns a truthy value; fails with `what` after `ms`. */
export async function until<T>(what: string, ms: number, f: () => Promise<T | null | undefined | false>, every = 100): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms${last ? ` (last error: ${last})` : ''}`);
    await sleep(every);
  }
}
