// Test harness: starts the real lexora and lexora-sim binaries on loopback with generated configs,
// and stops them at the end, failing the test if a process exits non-zero or a sanitizer complained.
// Binaries come from $LEXORA_BIN / $LEXORA_SIM_BIN (scripts/test.sh points them at the ASan build).
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const LEXORA_BIN = process.env.LEXORA_BIN || path.join(root, 'build-asan/lexora');
export const SIM_BIN = process.env.LEXORA_SIM_BIN || path.join(root, 'build-asan/lexora-sim');
export const ROOT = root;

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls cond() (sync or async) every stepMs until it is truthy; throws after ms with what. */
export async function waitFor(cond, what, { ms = 5000, stepMs = 20 } = {}) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(stepMs);
  }
}

function canConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.on('connect', () => { s.destroy(); resolve(true); });
    s.on('error', () => resolve(false));
  });
}

export async function waitForPort(port, proc, what) {
  const deadline = Date.now() + 15000;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`${what} exited with ${proc.exitCode}:\n${proc.output()}`);
    if (await canConnect(port)) return;
    await sleep(25);
  }
  throw new Error(`${what} did not listen on ${port} within 15 s:\n${proc.output()}`);
}

const SANITIZER = /AddressSanitizer|LeakSanitizer|runtime error:|UndefinedBehaviorSanitizer/;

/** Spawns bin (options: env, cwd) and returns { child, exitCode, output(), exited, stop() }. */
export function launch(bin, args, what, env = {}, { cwd } = {}) {
  const child = spawn(bin, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { out += d; });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const proc = {
    child,
    get exitCode() { return child.exitCode; },
    output: () => out,
    exited,
    // Stops the process and checks it ended cleanly (exit 0, no sanitizer report).
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10000);
      const { code, signal } = await exited;
      clearTimeout(timer);
      if (SANITIZER.test(out)) throw new Error(`${what}: sanitizer report:\n${out}`);
      if (code !== 0) throw new Error(`${what} exited with ${code ?? signal}:\n${out.slice(-4000)}`);
    },
  };
  return proc;
}

/**
 * Starts lexora-sim on a free port, or on `port` (to bring a stopped backend back where it was).
 * Returns { port, url, proc, stop, stats(), requests(), control() }.
 */
export async function startSim(args = [], { port } = {}) {
  port = port || await freePort();
  const proc = launch(SIM_BIN, ['--host', '127.0.0.1', '--port', String(port), '--quiet', ...args], 'lexora-sim');
  await waitForPort(port, proc, 'lexora-sim');
  const url = `http://127.0.0.1:${port}`;
  return {
    port, url, proc,
    stop: () => proc.stop(),
    stats: async () => (await fetch(`${url}/sim/stats`)).json(),
    requests: async () => (await fetch(`${url}/sim/requests`)).json(),
    control: async (obj) => fetch(`${url}/sim/control`, { method: 'POST', body: JSON.stringify(obj) }),
  };
}

// A small YAML writer: maps, lists, and scalars (strings quoted as JSON, which YAML accepts).
export function toYaml(value, indent = '') {
  if (Array.isArray(value)) {
    return value.map((v) => (typeof v === 'object' && v !== null
      ? `${indent}-\n${toYaml(v, indent + '  ')}`
      : `${indent}- ${scalar(v)}`)).join('\n');
  }
  return Object.entries(value).map(([k, v]) => {
    if (v !== null && typeof v === 'object') {
      const inner = toYaml(v, indent + '  ');
      return inner ? `${indent}${k}:\n${inner}` : `${indent}${k}: {}`;
    }
    return `${indent}${k}: ${scalar(v)}`;
  }).join('\n');
}
const scalar = (v) => (typeof v === 'string' ? JSON.stringify(v) : String(v));

export function writeConfig(config) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lexora-test-'));
  const file = path.join(dir, 'lexora_config.yaml');
  writeFileSync(file, typeof config === 'string' ? config : toYaml(config) + '\n');
  return file;
}

/** A config for one sim backend serving `models`; `extra` is merged over it (top-level sections). */
export function configFor(simUrl, { models = ['qwen3-32b'], timeout = 30, extra = {} } = {}) {
  return {
    server: { host: '127.0.0.1', port: 0, ...(extra.server || {}) },
    vllm: { url: simUrl, timeout },
    default_model: models[0],
    backends: extra.backends || { vllm: { url: simUrl, models } },
    logging: { level: 'INFO', format: 'json', ...(extra.logging || {}) },
    metrics: { enabled: false, port: 9090 },
    ...Object.fromEntries(Object.entries(extra).filter(([k]) => !['server', 'backends', 'logging'].includes(k))),
  };
}

/** Starts lexora with a config object (its server.port is replaced by a free port). */
export async function startLexora(config, { env = {} } = {}) {
  const port = await freePort();
  if (typeof config === 'object') config = { ...config, server: { ...(config.server || {}), port } };
  const file = writeConfig(config);
  const proc = launch(LEXORA_BIN, ['--config', file], 'lexora', env);
  await waitForPort(port, proc, 'lexora');
  const url = `http://127.0.0.1:${port}`;
  return {
    port, url, proc, file, stop: () => proc.stop(), logs: () => proc.output(),
    signal: (sig) => proc.child.kill(sig),
  };
}

/** Starts lexora with config, runs fn(lx), and stops it however fn ends. */
export async function withLexora(config, fn) {
  const lx = await startLexora(config);
  try {
    return await fn(lx);
  } finally {
    await lx.stop();
  }
}

/** Runs lexora with arguments to completion: { code, stdout, stderr }. */
export function runLexora(args, env = {}) {
  return new Promise((resolve) => {
    const child = spawn(LEXORA_BIN, args, { env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** POST JSON (or a raw string) and return { status, headers, text, json }. */
export async function post(url, body, headers = {}) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, headers: res.headers, text, json };
}

/** Parses an SSE body into its data payloads (strings). */
export function sseData(text) {
  return text.split(/\r?\n\r?\n/).filter((e) => e.trim()).map((e) => e.split(/\r?\n/)
    .filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n'));
}

/** Sends raw bytes on a fresh TCP connection and collects everything until the server closes or ms pass. */
export function rawExchange(port, chunks, { ms = 3000, gapMs = 0 } = {}) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let data = '';
    let closed = false;
    const done = () => { clearTimeout(t); s.destroy(); resolve({ data, closed }); };
    const t = setTimeout(done, ms);
    s.on('data', (d) => { data += d; });
    s.on('end', () => { closed = true; done(); });
    s.on('error', () => { closed = true; done(); });
    s.on('connect', async () => {
      for (const c of [].concat(chunks)) {
        if (s.destroyed) return;
        s.write(c);
        if (gapMs) await sleep(gapMs);
      }
    });
  });
}

// ---- requests and answers the test files share ----------------------------------------------------

export const MODEL = 'qwen3-32b';

/** A chat-completions body: MODEL and one user message "hi", then `base` (a file's defaults), then `extra`. */
export const chatBody = (extra = {}, base = {}) => ({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], ...base, ...extra });

/** POSTs body (default: chatBody()) to lx's /v1/chat/completions: { status, headers, text, json }. */
export const chat = (lx, body = chatBody(), headers = {}) => post(`${lx.url}/v1/chat/completions`, body, headers);

/** GET /stats, parsed. */
export const stats = async (lx) => (await fetch(`${lx.url}/stats`)).json();

/** GET /health (or path): { status, json }. */
export async function health(lx, path = '/health') {
  const r = await fetch(`${lx.url}${path}`);
  return { status: r.status, json: await r.json() };
}

/** Every access-log line lexora wrote so far (logging.format: json), parsed. */
export const accessLines = (lx) => lx.logs().split('\n').filter((l) => l.includes('"msg":"access"')).map((l) => JSON.parse(l));

/** The access-log line of request `id`, or undefined when it is not written yet. */
export const accessLine = (lx, id) => accessLines(lx).find((r) => r.request_id === id);

/** Waits for the access-log line of request `id` and returns it. */
export const accessRecord = (lx, id) => waitFor(() => accessLine(lx, id), `the access-log line of ${id}`);

// ---- tools a test needs ------------------------------------------------------------------------

/** True when running under CI (CI=true, as .ci/run sets): a missing tool is then a failure, not a skip. */
export const IN_CI = /^(1|true|yes)$/i.test(process.env.CI || '');

/**
 * The `skip` option for a describe/test that needs a command: false when `available`; otherwise, under
 * CI, it throws (the run fails: CI must have every tool); locally, a message saying what to install.
 */
export function needs(available, what, install = 'make deps installs it') {
  if (available) return false;
  if (IN_CI) throw new Error(`${what} is required under CI (CI=${process.env.CI}) but is not installed (${install})`);
  return `${what} is not installed (${install})`;
}
