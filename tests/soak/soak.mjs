// The soak: a bounded run of mixed traffic through the real lexora (an ASan + LeakSanitizer build) in
// front of lexora-sim, on loopback. Run by scripts/soak.sh (`make soak`); docs/ROBUSTNESS.md#soak.
//
// Traffic, from SOAK_CONCURRENCY clients on keep-alive connections: ~50 % streamed chat completions
// (5 % of them abandoned by their client after the first bytes), ~20 % chat and ~19 % completions not
// streamed, ~10 % embeddings, ~1 % bad input (malformed JSON, no messages, unknown model). The backend
// fails SOAK_FAIL_RATE of its requests with a 503 (default 1 %), so retries run all along; with five tries
// a client sees such a 503 with odds of 1e-10 per request.
// Bounds: SOAK_REQUESTS requests (default 200,000), or SOAK_SECONDS seconds (default 900), whichever
// comes first. Checks at the end, each one failing the run (exit 1):
// - every request got its proper answer: a 200 with a complete body or stream, or the exact error
//   the bad input must get; no other status, no network error, no stream cut short;
// - lexora's own accounting agrees with what was sent: lexora_requests_total by status (/metrics) and
//   /stats total_requests, the 499s of abandoned streams included; the backend saw exactly the
//   good requests, plus one for each retry and failover lexora counted;
// - lexora's resident memory is flat after the warm-up (see RSS_TOLERANCE_KIB);
// - SIGTERM stops lexora with exit status 0 and no AddressSanitizer / LeakSanitizer / UBSan report.
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { configFor, sleep, startLexora, startSim } from '../lib/harness.mjs';

const REQUESTS = Number(process.env.SOAK_REQUESTS || 200000);
const SECONDS = Number(process.env.SOAK_SECONDS || 900);
const CONCURRENCY = Number(process.env.SOAK_CONCURRENCY || 32);
const FAIL_RATE = Number(process.env.SOAK_FAIL_RATE ?? 0.01);
const WARMUP = Math.max(1, Math.floor(REQUESTS / 10)); // requests before the RSS reference is taken
const SAMPLE_MS = 2000;
// Flat = no sample in the second half of the run more than this above the sample at the end of the
// warm-up. lexora runs with an 8 MiB ASan quarantine (freed blocks wait there before reuse; the 256 MiB
// default would make RSS climb for minutes with no leak at all) and it is full well before the warm-up
// ends; what is left is the allocator's noise. 8 MiB over ~180,000 requests after the warm-up: anything
// held per request, even 64 bytes with its redzones, would exceed it.
const RSS_TOLERANCE_KIB = 8 * 1024;
const MODEL = 'qwen3-32b';

const log = (...a) => console.log('[soak]', ...a);

// ---------- what one client sends ----------

const CHAT = (stream, maxTokens) => JSON.stringify({
  model: MODEL, messages: [{ role: 'user', content: 'Tell me about soak tests.' }], max_tokens: maxTokens,
  stream, x_user_id: 'soak',
});
const KINDS = [
  // [share, name, path, body(), expected]
  [0.50, 'stream', '/v1/chat/completions', () => CHAT(true, 48), { status: 200, sse: true }],
  [0.20, 'chat', '/v1/chat/completions', () => CHAT(false, 16), { status: 200, object: 'chat.completion' }],
  [0.19, 'completion', '/v1/completions', () => JSON.stringify({ model: MODEL, prompt: 'Once upon a time', max_tokens: 16 }),
    { status: 200, object: 'text_completion' }],
  [0.10, 'embedding', '/v1/embeddings', () => JSON.stringify({ model: MODEL, input: ['soak', 'test'] }),
    { status: 200, object: 'list' }],
  [0.004, 'bad_json', '/v1/chat/completions', () => '{"model": "qwen3-32b", "messages": [', { status: 400, code: 'invalid_json' }],
  [0.003, 'bad_messages', '/v1/chat/completions', () => JSON.stringify({ model: MODEL, max_tokens: 4 }),
    { status: 400, code: 'invalid_value' }],
  [0.003, 'bad_model', '/v1/chat/completions', () => JSON.stringify({ model: 'nope', messages: [{ role: 'user', content: 'x' }] }),
    { status: 404, code: 'model_not_found' }],
];
const ABORT_SHARE = 0.05; // of the streams

// Deterministic choice from the request's number, so a run is repeatable.
function pick(n) {
  let x = (n * 2654435761) >>> 0;
  x ^= x >>> 15; x = Math.imul(x, 2246822519) >>> 0; x = (x ^ (x >>> 13)) >>> 0;
  const u = x / 2 ** 32;
  let acc = 0;
  for (const k of KINDS) { acc += k[0]; if (u < acc) return k; }
  return KINDS[0];
}
const abandons = (n) => ((Math.imul(n, 40503) >>> 0) % 1000) < ABORT_SHARE * 1000;

function once(agent, port, kind, abandon) {
  const [, name, path, body, exp] = kind;
  const payload = body();
  return new Promise((resolve) => {
    const req = http.request({
      host: '127.0.0.1', port, method: 'POST', path, agent,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
    }, (res) => {
      const chunks = [];
      res.on('data', (d) => {
        chunks.push(d);
        if (abandon && res.statusCode === 200) { req.destroy(); resolve({ cls: 'stream_abandoned' }); }
      });
      res.on('error', () => {});
      res.on('end', () => {
        if (req.destroyed && abandon) return;
        const text = Buffer.concat(chunks).toString('utf8');
        resolve(judge(name, exp, res.statusCode, text));
      });
    });
    req.on('error', (e) => { if (!abandon || !req.destroyed) resolve({ cls: 'network_error', detail: `${name}: ${e.message}` }); });
    req.end(payload);
  });
}

function judge(name, exp, status, text) {
  if (status !== exp.status) return { cls: `unexpected_${status}`, detail: `${name}: ${status} ${text.slice(0, 200)}` };
  if (exp.code) {
    let code;
    try { code = JSON.parse(text).error.code; } catch { /* judged below */ }
    return code === exp.code ? { cls: `${status}_${code}` } : { cls: 'wrong_error', detail: `${name}: ${text.slice(0, 200)}` };
  }
  if (exp.sse) {
    const events = text.split('\n\n').filter((e) => e.startsWith('data: '));
    const ok = events.length >= 2 && events.at(-1) === 'data: [DONE]' && !text.includes('"error"');
    return ok ? { cls: `ok_${name}` } : { cls: 'stream_incomplete', detail: `${name}: ${text.slice(-200)}` };
  }
  let obj;
  try { obj = JSON.parse(text).object; } catch { /* judged below */ }
  return obj === exp.object ? { cls: `ok_${name}` } : { cls: 'bad_body', detail: `${name}: ${text.slice(0, 200)}` };
}

// ---------- lexora's view ----------

function getText(port, path) {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let t = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { t += d; });
      res.on('end', () => resolve(t));
    }).on('error', reject);
  });
}

function requestsByStatus(metrics) {
  const out = {};
  for (const m of metrics.matchAll(/^lexora_requests_total\{[^}]*status="(\d+)"[^}]*\} (\d+)/gm))
    out[m[1]] = (out[m[1]] || 0) + Number(m[2]);
  return out;
}

const vmRssKiB = (pid) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
const mib = (kib) => `${(kib / 1024).toFixed(1)} MiB`;

// ---------- the run ----------

async function main() {
  const failures = [];
  const sim = await startSim(['--model', MODEL, '--ttft-ms', '2', '--tokens-per-sec', '2000', '--max-batch', '64',
    '--fail-rate', String(FAIL_RATE)]);
  const lx = await startLexora(configFor(sim.url, {
    extra: {
      backends: { vllm: { url: sim.url, models: [MODEL], max_concurrency: 64 } },
      server: { max_connections: 1000 },
      logging: { level: 'WARNING' }, // no access log: 200,000 lines would only fill the harness's buffer
      rate_limits: { default: { requests_per_minute: 0, tokens_per_minute: 0 } },
      queue: { max_size: 1000 },
      retry: { max_attempts: 5, delay_seconds: 0.005, backoff_multiplier: 2, max_delay_seconds: 0.05 },
      health_check: { failure_threshold: 100 }, // random 503s must not open the circuit
      usage: { enabled: false },
      metrics: { enabled: false, port: 9090 },
    },
  }), { env: { ASAN_OPTIONS: `${process.env.ASAN_OPTIONS || 'detect_leaks=1'}:quarantine_size_mb=8` } });
  const pid = lx.proc.child.pid;
  log(`lexora pid ${pid} on :${lx.port}, lexora-sim on :${sim.port}; ${REQUESTS} requests or ${SECONDS} s, ${CONCURRENCY} clients`);

  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const counts = {};
  const details = [];
  let next = 0;
  let done = 0;
  let sentGood = 0; // requests that are meant to reach the backend
  const t0 = Date.now();
  const deadline = t0 + SECONDS * 1000;
  const samples = []; // { t, done, rss }
  let warm = null;
  const sampler = setInterval(() => {
    const s = { t: (Date.now() - t0) / 1000, done, rss: vmRssKiB(pid) };
    samples.push(s);
    if (!warm && done >= WARMUP) warm = s;
  }, SAMPLE_MS);

  async function client() {
    while (next < REQUESTS && Date.now() < deadline) {
      const n = next++;
      const kind = pick(n);
      const abandon = kind[1] === 'stream' && abandons(n);
      if (kind[4].status === 200) sentGood++;
      const r = await once(agent, lx.port, kind, abandon);
      counts[r.cls] = (counts[r.cls] || 0) + 1;
      if (r.detail && details.length < 20) details.push(r.detail);
      done++;
      if (done % 20000 === 0) log(`${done} requests, ${((Date.now() - t0) / 1000).toFixed(0)} s, VmRSS ${mib(vmRssKiB(pid))}`);
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, client));
  const seconds = (Date.now() - t0) / 1000;
  clearInterval(sampler);
  agent.destroy();
  samples.push({ t: seconds, done, rss: vmRssKiB(pid) });
  if (!warm) warm = samples[0];

  // Abandoned streams are accounted when lexora sees the close: wait until every request is counted.
  let stats;
  let byStatus;
  for (let i = 0; i < 100; i++) {
    stats = JSON.parse(await getText(lx.port, '/stats'));
    byStatus = requestsByStatus(await getText(lx.port, '/metrics'));
    if (stats.total_requests >= done) break;
    await sleep(100);
  }
  const simStats = JSON.parse(await getText(sim.port, '/sim/stats'));

  // 1. every answer as expected
  const good = Object.entries(counts).filter(([c]) => c.startsWith('ok_') || c === 'stream_abandoned' || /^4\d\d_/.test(c));
  const bad = Object.entries(counts).filter(([c]) => !good.some(([g]) => g === c));
  if (bad.length) failures.push(`unexpected answers: ${JSON.stringify(Object.fromEntries(bad))}; e.g. ${details.slice(0, 5).join(' | ')}`);
  if (done < REQUESTS && Date.now() < deadline) failures.push(`only ${done} of ${REQUESTS} requests were made`);

  // 2. lexora's accounting: every request counted once, under its status
  const abandoned = counts.stream_abandoned || 0;
  const ok = good.filter(([c]) => c.startsWith('ok_')).reduce((n, [, v]) => n + v, 0);
  const want4xx = {};
  for (const [c, v] of good) if (/^4\d\d_/.test(c)) want4xx[c.slice(0, 3)] = (want4xx[c.slice(0, 3)] || 0) + v;
  const got = (s) => byStatus[s] || 0;
  if (stats.total_requests !== done) failures.push(`/stats total_requests ${stats.total_requests}, requests made ${done}`);
  const metricTotal = Object.values(byStatus).reduce((a, b) => a + b, 0);
  if (metricTotal !== done) failures.push(`lexora_requests_total sums to ${metricTotal}, requests made ${done}`);
  // an abandoned stream whose answer was already complete when the client left is a 200, else a 499
  if (got('200') + got('499') !== ok + abandoned || got('499') > abandoned)
    failures.push(`200s ${got('200')} + 499s ${got('499')} vs ${ok} answered + ${abandoned} abandoned`);
  for (const [s, v] of Object.entries(want4xx)) if (got(s) !== v) failures.push(`${s}s: lexora counted ${got(s)}, sent ${v}`);
  const tries = sentGood + stats.retries + stats.failovers;
  if (simStats.received !== tries)
    failures.push(`the backend received ${simStats.received}; good requests sent ${sentGood} + retries ${stats.retries + stats.failovers}`);

  // 3. RSS flat after the warm-up
  const second = samples.filter((s) => s.t >= seconds / 2);
  const maxLate = Math.max(...second.map((s) => s.rss));
  const maxAll = Math.max(...samples.map((s) => s.rss));
  const end = samples.at(-1).rss;
  if (maxLate - warm.rss > RSS_TOLERANCE_KIB)
    failures.push(`RSS not flat: ${mib(maxLate)} in the second half vs ${mib(warm.rss)} after the warm-up`);

  // 4. a clean stop: exit 0, no sanitizer report (the harness checks both)
  let leakReport = 'none';
  try {
    await lx.stop();
  } catch (e) {
    leakReport = 'SEE BELOW';
    failures.push(`lexora stop: ${e.message.slice(0, 4000)}`);
  }
  try { await sim.stop(); } catch (e) { failures.push(`lexora-sim stop: ${e.message.slice(0, 2000)}`); }

  const fmt = (o) => Object.entries(o).sort().map(([k, v]) => `${k} ${v}`).join(', ');
  console.log(`
== soak summary (${new Date().toISOString().slice(0, 10)})
requests      ${done} in ${seconds.toFixed(1)} s = ${(done / seconds).toFixed(0)} req/s, ${CONCURRENCY} clients
answers       ${fmt(counts)}
lexora        total_requests ${stats.total_requests}; by status: ${fmt(byStatus)}
backend       received ${simStats.received}, completed ${simStats.completed}, cancelled ${simStats.cancelled}, failed (injected) ${simStats.failed}; lexora retries ${stats.retries}
VmRSS         after warm-up (${warm.done} requests, ${warm.t.toFixed(0)} s) ${mib(warm.rss)}; end ${mib(end)}; max ${mib(maxAll)}; max in 2nd half ${mib(maxLate)} (tolerance +${mib(RSS_TOLERANCE_KIB)})
RSS samples   ${samples.filter((_, i) => i % Math.max(1, Math.floor(samples.length / 12)) === 0).map((s) => mib(s.rss).replace(' MiB', '')).join(' ')} MiB
sanitizers    leak/error reports: ${leakReport}; exit status ${lx.proc.child.exitCode}; ASAN_OPTIONS ${process.env.ASAN_OPTIONS || "(default)"} + quarantine_size_mb=8
result        ${failures.length ? 'FAIL' : 'PASS'}`);
  for (const f of failures) console.log(`  - ${f}`);
  process.exit(failures.length ? 1 : 0);
}

main().catch((e) => { console.error(e); process.exit(1); });
