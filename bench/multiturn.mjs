// multiturn: a multi-turn chat workload over 3 lexora-sim replicas behind Lexora, for each balancing
// strategy with and without `routing.affinity: prefix`.
//
// Each of C conversations (default 24, all at once) has its own long system prompt and runs T turns
// (default 6): every turn streams a chat completion whose messages are the whole history so far plus a
// new user message, then appends the answer. The replicas model a prefix cache (lexora-sim
// --prefix-cache-entries, --prefix-hit-ttft-ms): a request whose prompt starts with blocks the same
// replica saw recently gets its first token sooner. Measured per configuration, from the client: time to
// first token (first SSE data line) mean and p95, requests per second over the run, and the replicas'
// prefix-cache hit rate (vllm:prefix_cache_hits / vllm:prefix_cache_queries, read from their /metrics).
// Fresh simulators and a fresh Lexora for every configuration, so no cache carries over. Loopback only.
//
// Usage: node bench/multiturn.mjs [--lexora build/lexora] [--sim build/lexora-sim] [--conversations 24]
//        [--turns 6] [--ttft-ms 120] [--hit-ttft-ms 20]
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { freePort, sleep, waitPort } from './lib.mjs';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const LEXORA = arg('lexora', 'build/lexora');
const SIM = arg('sim', 'build/lexora-sim');
const CONVERSATIONS = Number(arg('conversations', 24));
const TURNS = Number(arg('turns', 6));
const TTFT_MS = arg('ttft-ms', '120');
const HIT_TTFT_MS = arg('hit-ttft-ms', '20');
const STRATEGIES = ['least_loaded', 'round_robin', 'weighted', 'peak_ewma'];

async function start(bin, args) {
  const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => { err = (err + d).slice(-4000); });
  child.on('exit', (code) => { if (code && code !== 143) process.stderr.write(`${bin} exited ${code}: ${err}\n`); });
  return child;
}

const stop = (child) => new Promise((r) => {
  if (child.exitCode !== null) return r();
  child.on('exit', r);
  child.kill('SIGTERM');
});

async function startSims() {
  const sims = [];
  for (let i = 0; i < 3; i++) {
    const port = await freePort();
    const proc = await start(SIM, ['--host', '127.0.0.1', '--port', String(port), '--quiet', '--model', 'qwen3-32b',
      '--ttft-ms', TTFT_MS, '--prefix-hit-ttft-ms', HIT_TTFT_MS, '--tokens-per-sec', '400', '--max-batch', '32']);
    await waitPort(port);
    sims.push({ port, proc });
  }
  return sims;
}

async function startLexora(sims, balance, affinity) {
  const port = await freePort();
  const backends = {};
  sims.forEach((s, i) => {
    backends[`r${i}`] = { type: 'vllm', url: `http://127.0.0.1:${s.port}`, models: ['qwen3-32b'], weight: i === 0 ? 2 : 1 };
  });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lexora-multiturn-'));
  const file = path.join(dir, 'lexora_config.json.yaml');
  // JSON is YAML: the config is written as JSON.
  writeFileSync(file, JSON.stringify({
    server: { host: '127.0.0.1', port },
    backends,
    routing: { balance, affinity },
    rate_limits: { default: { requests_per_minute: 0, tokens_per_minute: 0 } },
    logging: { level: 'WARNING' },
    metrics: { enabled: false },
    usage: { enabled: false },
  }));
  const proc = await start(LEXORA, ['--config', file]);
  await waitPort(port);
  return { port, proc };
}

/** One streamed turn: resolves { ttft_ms, ok, text }. */
function turn(port, messages) {
  const body = JSON.stringify({ model: 'qwen3-32b', messages, max_tokens: 24, stream: true });
  const t0 = process.hrtime.bigint();
  return new Promise((resolve) => {
    let ttft = null;
    let text = '';
    const req = http.request({ port, host: '127.0.0.1', method: 'POST', path: '/v1/chat/completions',
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.setEncoding('utf8');
      res.on('data', (d) => {
        if (ttft === null && d.includes('data: ')) ttft = Number(process.hrtime.bigint() - t0) / 1e6;
        for (const m of d.matchAll(/"content":"((?:[^"\\]|\\.)*)"/g)) text += m[1];
      });
      res.on('end', () => resolve({ ttft_ms: ttft, ok: res.statusCode === 200, text }));
    });
    req.on('error', () => resolve({ ttft_ms: null, ok: false, text }));
    req.end(body);
  });
}

async function conversation(port, id, ttfts) {
  const system = `You are assistant #${id}. ` + `Conversation ${id} keeps this long system prompt. `.repeat(40);
  const messages = [{ role: 'system', content: system }];
  let ok = 0;
  for (let t = 0; t < TURNS; t++) {
    messages.push({ role: 'user', content: `Turn ${t} of conversation ${id}: tell me more.` });
    const r = await turn(port, messages);
    if (r.ok && r.ttft_ms !== null) {
      ttfts.push(r.ttft_ms);
      ok++;
    }
    messages.push({ role: 'assistant', content: r.text || 'ok' });
  }
  return ok;
}

function getText(port, path) {
  return new Promise((resolve) => {
    http.get({ port, host: '127.0.0.1', path }, (res) => {
      let b = '';
      res.on('data', (d) => { b += d; });
      res.on('end', () => resolve(b));
    }).on('error', () => resolve(''));
  });
}

/** Lexora's affinity counters, summed over the replicas: { hits, yields }. */
async function affinityCounters(port) {
  const s = JSON.parse((await getText(port, '/stats')) || '{}');
  const per = Object.values(s.per_backend || {});
  return { hits: per.reduce((a, b) => a + (b.affinity_hits || 0), 0), yields: per.reduce((a, b) => a + (b.affinity_yields || 0), 0) };
}

async function prefixCounters(sims) {
  let hits = 0;
  let queries = 0;
  for (const s of sims) {
    const text = await getText(s.port, '/metrics');
    const sum = (name) => [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+]+)$`, 'gm'))]
      .reduce((a, m) => a + Number(m[1]), 0);
    hits += sum('vllm:prefix_cache_hits_total') || sum('vllm:prefix_cache_hits');
    queries += sum('vllm:prefix_cache_queries_total') || sum('vllm:prefix_cache_queries');
  }
  return { hits, queries };
}

const mean = (v) => v.reduce((a, b) => a + b, 0) / (v.length || 1);
const p95 = (v) => [...v].sort((a, b) => a - b)[Math.min(v.length - 1, Math.floor(0.95 * v.length))];

async function run(balance, affinity) {
  const sims = await startSims();
  const lx = await startLexora(sims, balance, affinity);
  try {
    const ttfts = [];
    const t0 = Date.now();
    const done = await Promise.all(Array.from({ length: CONVERSATIONS }, (_, i) => conversation(lx.port, i, ttfts)));
    const secs = (Date.now() - t0) / 1000;
    const { hits, queries } = await prefixCounters(sims);
    const aff = await affinityCounters(lx.port);
    return {
      affinity_hits: aff.hits, affinity_yields: aff.yields,
      balance, affinity, requests: done.reduce((a, b) => a + b, 0), failed: CONVERSATIONS * TURNS - done.reduce((a, b) => a + b, 0),
      ttft_mean_ms: mean(ttfts), ttft_p95_ms: p95(ttfts), req_per_s: ttfts.length / secs,
      prefix_hit_rate: queries ? hits / queries : null,
    };
  } finally {
    await stop(lx.proc);
    for (const s of sims) await stop(s.proc);
  }
}

const rows = [];
for (const balance of STRATEGIES) {
  for (const affinity of ['none', 'prefix']) rows.push(await run(balance, affinity));
}
console.log(`multiturn: ${CONVERSATIONS} conversations x ${TURNS} turns over 3 replicas ` +
  `(ttft ${TTFT_MS} ms, ${HIT_TTFT_MS} ms on a prefix-cache hit)`);
console.log('strategy       affinity  ttft mean ms  ttft p95 ms   req/s  prefix hits  failed  affinity hits/yields');
for (const r of rows) {
  console.log(`${r.balance.padEnd(14)} ${r.affinity.padEnd(8)} ${r.ttft_mean_ms.toFixed(1).padStart(13)} ` +
    `${r.ttft_p95_ms.toFixed(1).padStart(12)} ${r.req_per_s.toFixed(1).padStart(7)} ` +
    `${r.prefix_hit_rate === null ? '   n/a' : `${(100 * r.prefix_hit_rate).toFixed(0).padStart(10)} %`} ${String(r.failed).padStart(7)}` +
    `  ${r.affinity === 'none' ? '' : `${r.affinity_hits}/${r.affinity_yields}`}`);
}
writeFileSync(arg('json', '/dev/null'), JSON.stringify(rows, null, 2));
