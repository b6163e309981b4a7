// /stats and /metrics: exact counts after a known set of requests with known token counts, ?user=,
// the metrics port, per-user series only with metrics.per_user, promtool check metrics on the real
// output, and every metric the Grafana dashboard queries exists.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  MODEL, ROOT, chatBody, configFor, needs, freePort, post, sleep, sseData, startLexora, startSim,
} from '../lib/harness.mjs';
import { hasCommand, parseMetrics, promtoolCheck } from '../lib/metrics.mjs';

// lexora-sim counts ceil(bytes / 4) prompt tokens: "Hello there" is 11 bytes, 3 tokens.
const PROMPT = 'Hello there';
const PROMPT_TOKENS = 3;
const chat = (extra = {}) => chatBody(extra, { messages: [{ role: 'user', content: PROMPT }] });
const unlimited = { default: { requests_per_minute: 0, tokens_per_minute: 0 } };

describe('/stats and /metrics', () => {
  let sim;
  let lx;
  let metricsPort;
  let dbDir;
  before(async () => {
    sim = await startSim(['--model', MODEL, '--ttft-ms', '5', '--tokens-per-sec', '1000']);
    metricsPort = await freePort();
    dbDir = mkdtempSync(path.join(os.tmpdir(), 'lexora-stats-'));
    lx = await startLexora(configFor(sim.url, {
      extra: {
        metrics: { enabled: true, port: metricsPort, per_user: true },
        usage: { db_path: path.join(dbDir, 'ledger.db') },
        rate_limits: unlimited,
      },
    }));
    // the known set: alice 3 × (3 + 5 tokens), bob 1 stream (3 + 7), carol 1 unknown model (an error)
    for (let i = 0; i < 3; i++) {
      const r = await post(`${lx.url}/v1/chat/completions`, chat({ max_tokens: 5, x_user_id: 'alice' }));
      assert.equal(r.status, 200, r.text);
    }
    const s = await post(`${lx.url}/v1/chat/completions`, chat({ max_tokens: 7, stream: true, x_user_id: 'bob' }));
    assert.equal(sseData(s.text).at(-1), '[DONE]');
    const e = await post(`${lx.url}/v1/chat/completions`, chat({ model: 'nope', x_user_id: 'carol' }));
    assert.equal(e.status, 404);
  });
  after(async () => {
    await lx?.stop();
    await sim?.stop();
  });

  test('the seed keys with exact values, and the breakdowns', async () => {
    const res = await fetch(`${lx.url}/stats`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /application\/json/);
    const s = await res.json();
    for (const k of ['total_requests', 'total_tokens', 'avg_latency_ms', 'requests_per_minute', 'errors_last_hour'])
      assert.equal(typeof s[k], 'number', k);
    assert.equal(s.total_requests, 5);
    assert.equal(s.prompt_tokens, 4 * PROMPT_TOKENS);
    assert.equal(s.completion_tokens, 3 * 5 + 7);
    assert.equal(s.total_tokens, 4 * PROMPT_TOKENS + 22);
    assert.equal(s.requests_per_minute, 5);
    assert.equal(s.errors_last_hour, 1);
    assert.equal(s.total_errors, 1);
    assert.ok(s.avg_latency_ms > 0 && s.avg_latency_ms < 5000, `avg_latency_ms ${s.avg_latency_ms}`);
    assert.ok(s.uptime_seconds > 0 && typeof s.uptime === 'string');

    assert.deepEqual(s.per_user.alice, {
      requests: 3, prompt_tokens: 9, completion_tokens: 15, total_tokens: 24, errors: 0,
      avg_latency_ms: s.per_user.alice.avg_latency_ms, requests_per_minute: 3, tokens_per_minute: 24, errors_last_hour: 0,
      rate_limited: 0,
    });
    assert.equal(s.per_user.bob.completion_tokens, 7);
    assert.equal(s.per_user.carol.errors, 1);
    assert.equal(s.per_model[MODEL].requests, 4);
    assert.equal(s.per_model[MODEL].total_tokens, 34);
    assert.equal(s.per_model.nope, undefined, 'a model nobody serves is not an entry of its own');
    assert.equal(s.per_model['-'].errors, 1);
    assert.equal(s.per_backend.vllm.requests, 4);
    assert.equal(s.per_backend.vllm.prompt_tokens, 12);
    assert.equal(s.per_backend.vllm.errors, 0);
    assert.equal(s.per_backend.vllm.up, true);
    assert.equal(s.per_backend.vllm.in_flight, 0);

    assert.equal(s.latency_ms.count, 5);
    assert.ok(s.latency_ms.p50 > 0 && s.latency_ms.p50 <= s.latency_ms.p95 && s.latency_ms.p95 <= s.latency_ms.p99);
    assert.equal(s.ttft_ms.count, 1, 'time to first token is measured on streams');
    assert.equal(s.stream_tokens_per_second.count, 1);
    assert.deepEqual(s.queue.depth, { high: 0, normal: 0, low: 0 });
    assert.equal(s.queue.wait_ms.count, 4);
    assert.equal(s.rate_limited.requests, 0);
    assert.equal(s.rate_limited.tokens, 0);
    assert.equal(s.rate_limited.total, 0);
    assert.equal(s.retries, 0);
    assert.equal(s.failovers, 0);
  });

  test('?user=NAME narrows it to one user', async () => {
    const a = await (await fetch(`${lx.url}/stats?user=alice`)).json();
    assert.equal(a.user, 'alice');
    assert.equal(a.total_requests, 3);
    assert.equal(a.total_tokens, 24);
    assert.equal(a.requests_per_minute, 3);
    assert.equal(a.errors_last_hour, 0);
    assert.equal(a.known, true);
    const c = await (await fetch(`${lx.url}/stats?user=car%6Fl`)).json();
    assert.equal(c.user, 'carol');
    assert.equal(c.errors_last_hour, 1);
    const n = await (await fetch(`${lx.url}/stats?user=nobody`)).json();
    assert.equal(n.total_requests, 0);
    assert.equal(n.known, false);
  });

  test('the ledger totals stand beside the totals since start', async () => {
    let s;
    for (let i = 0; i < 100; i++) {
      s = await (await fetch(`${lx.url}/stats`)).json();
      if (s.ledger.total_requests === 5) break;
      await sleep(50);
    }
    assert.equal(s.ledger.total_requests, 5);
    assert.equal(s.ledger.total_tokens, 34);
    assert.equal(s.ledger.total_errors, 1);
    assert.equal(s.ledger.writable, true);
    assert.equal(s.ledger.rows_lost.write_failed, 0);
    assert.match(s.ledger.began, /^\d{4}-\d\d-\d\dT/);
  });

  test('/metrics on the main port: exact counters', async () => {
    const res = await fetch(`${lx.url}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
    const m = parseMetrics(await res.text());
    assert.equal(m.get(`lexora_requests_total{model="${MODEL}",backend="vllm",status="200"}`), 4);
    assert.equal(m.get('lexora_requests_total{model="-",backend="-",status="404"}'), 1);
    assert.equal(m.get('lexora_request_errors_total{model="-",backend="-",code="model_not_found"}'), 1);
    assert.equal(m.get(`lexora_prompt_tokens_total{model="${MODEL}",backend="vllm"}`), 12);
    assert.equal(m.get(`lexora_completion_tokens_total{model="${MODEL}",backend="vllm"}`), 22);
    assert.equal(m.get(`lexora_request_duration_seconds_count{model="${MODEL}",backend="vllm"}`), 4);
    assert.equal(m.get(`lexora_request_duration_seconds_bucket{model="${MODEL}",backend="vllm",le="+Inf"}`), 4);
    assert.equal(m.get(`lexora_time_to_first_token_seconds_count{model="${MODEL}",backend="vllm"}`), 1);
    assert.equal(m.get('lexora_overhead_seconds_count'), 5);
    assert.equal(m.get('lexora_queue_wait_seconds_count{priority="normal"}'), 4);
    assert.equal(m.get('lexora_queue_depth{priority="high"}'), 0);
    assert.equal(m.get('lexora_rate_limited_total{kind="requests"}'), 0);
    assert.equal(m.get('lexora_retries_total{backend="vllm"}'), 0);
    assert.equal(m.get('lexora_backend_up{backend="vllm"}'), 1);
    assert.equal(m.get('lexora_backend_in_flight{backend="vllm"}'), 0);
    assert.equal(m.get('lexora_user_requests_total{user="alice"}'), 3);
    assert.equal(m.get('lexora_user_completion_tokens_total{user="bob"}'), 7);
    assert.equal(m.get('lexora_user_errors_total{user="carol"}'), 1);
    assert.equal([...m.keys()].filter((k) => k.startsWith('lexora_build_info{version=')).length, 1);
  });

  test('the metrics port serves GET /metrics and nothing else', async () => {
    const base = `http://127.0.0.1:${metricsPort}`;
    const res = await fetch(`${base}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
    const m = parseMetrics(await res.text());
    assert.equal(m.get(`lexora_requests_total{model="${MODEL}",backend="vllm",status="200"}`), 4);
    assert.equal((await fetch(`${base}/stats`)).status, 404);
    assert.equal((await fetch(`${base}/v1/models`)).status, 404);
    assert.equal((await fetch(`${base}/metrics`, { method: 'POST', body: '' })).status, 405);
  });

  test('promtool check metrics passes on the real output', async (t) => {
    const missing = needs(hasCommand('promtool'), 'promtool', 'Debian package prometheus; make deps installs it');
    if (missing) {
      t.skip(missing);
      return;
    }
    const text = await (await fetch(`${lx.url}/metrics`)).text();
    assert.ok(text.length > 1000);
    const r = promtoolCheck(text);
    assert.ok(r.ok, `promtool:\n${r.out}`);
  });

  test('every metric the Grafana dashboard queries is exported', async () => {
    const dash = JSON.parse(readFileSync(path.join(ROOT, 'deploy/grafana/lexora.json'), 'utf8'));
    const exprs = JSON.stringify(dash).match(/lexora_[a-z_]+/g);
    const text = await (await fetch(`${lx.url}/metrics`)).text();
    const families = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((x) => x[1]));
    const missing = [...new Set(exprs)].map((n) => n.replace(/_(bucket|sum|count)$/, ''))
      .filter((n) => !families.has(n));
    assert.deepEqual(missing, []);
  });
});

describe('/metrics without metrics.per_user', () => {
  test('no per-user series; the metrics port is not opened when metrics.enabled is false', async () => {
    const sim = await startSim(['--model', MODEL, '--ttft-ms', '0', '--tokens-per-sec', '0']);
    const lx = await startLexora(configFor(sim.url, { extra: { rate_limits: unlimited } }));
    try {
      const r = await post(`${lx.url}/v1/chat/completions`, chat({ max_tokens: 2, x_user_id: 'dave' }));
      assert.equal(r.status, 200);
      const text = await (await fetch(`${lx.url}/metrics`)).text();
      assert.doesNotMatch(text, /user=/);
      assert.equal(parseMetrics(text).get(`lexora_requests_total{model="${MODEL}",backend="vllm",status="200"}`), 1);
      assert.doesNotMatch(lx.logs(), /metrics on /);
    } finally {
      await lx.stop();
      await sim.stop();
    }
  });
});

describe('a metrics port that is taken', () => {
  test('is logged, and Lexora serves on (GET /metrics on the main port still answers)', async () => {
    const net = await import('node:net');
    const taken = await freePort();
    const srv = net.createServer().listen(taken, '127.0.0.1');
    await new Promise((r) => srv.on('listening', r));
    const sim = await startSim(['--model', MODEL, '--ttft-ms', '0', '--tokens-per-sec', '0']);
    const lx = await startLexora(configFor(sim.url, { extra: { metrics: { enabled: true, port: taken } } }));
    try {
      const re = new RegExp(`cannot listen on 127\\.0\\.0\\.1:${taken} for metrics`);
      for (let i = 0; i < 100 && !re.test(lx.logs()); i++) await sleep(20);
      assert.match(lx.logs(), re);
      assert.equal((await fetch(`${lx.url}/metrics`)).status, 200);
      assert.equal((await post(`${lx.url}/v1/chat/completions`, chat({ max_tokens: 1 }))).status, 200);
    } finally {
      srv.close();
      await lx.stop();
      await sim.stop();
    }
  });
});
