// The request queue end to end: real lexora in front of real lexora-sim on loopback. The order in which
// requests are served is read from the simulator's arrival log (/sim/requests, seq), not from timing.
// Every test bounds its own waits; the only timing assertions are generous bounds.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import { describe, test } from 'node:test';
import { MODEL, accessLine, chatBody, configFor, post, sleep, startLexora, startSim, toYaml } from '../lib/harness.mjs';

const chat = (extra = {}) => chatBody(extra, { max_tokens: 1 });
// Rate limits off: these tests send bursts from one user on purpose.
const NO_LIMITS = { default: { requests_per_minute: 0, tokens_per_minute: 0 } };

function queueConfig(simUrl, { queue = {}, backend = {} } = {}) {
  return configFor(simUrl, {
    extra: {
      backends: { vllm: { url: simUrl, models: [MODEL], max_concurrency: 1, ...backend } },
      queue: { max_size: 100, default_timeout: 30, ...queue },
      rate_limits: NO_LIMITS,
    },
  });
}

async function until(cond, what, ms = 10000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

const send = (lx, id, extra = {}, headers = {}) =>
  post(`${lx.url}/v1/chat/completions`, chat(extra), { 'x-request-id': id, ...headers });

const seen = async (sim, id) => (await sim.requests()).find((r) => r.request_id === id);
/** The request ids the backend received, in arrival order, among `ids`. */
async function arrivalOrder(sim, ids) {
  return (await sim.requests()).filter((r) => ids.includes(r.request_id)).sort((a, b) => a.seq - b.seq)
    .map((r) => r.request_id);
}

/** Runs fn against a fresh simulator and gateway, and stops both whatever happens (a process left
 * running would keep the test file from ever exiting). */
async function withQueue(simArgs, opts, fn) {
  const sim = await startSim(['--model', MODEL, ...simArgs]);
  try {
    const lx = await startLexora(queueConfig(sim.url, opts));
    try {
      await fn(lx, sim);
    } finally {
      await lx.stop();
    }
  } finally {
    await sim.stop();
  }
}

/** Sends a long request that holds the only slot; resolves once the backend has it, to [its answer]
 * (in an array: an async function returning a bare promise would wait for it). */
async function occupy(lx, sim, id, maxTokens) {
  const pending = send(lx, id, { max_tokens: maxTokens });
  await until(() => seen(sim, id), `${id} at the backend`);
  return [pending];
}

describe('queue', () => {
  test('one slot, a slow backend: waiting requests are served high, normal, low', async () => {
    await withQueue(['--ttft-ms', '20', '--tokens-per-sec', '20'], {}, async (lx, sim) => {
      const [busy] = await occupy(lx, sim, 'busy', 40); // about 2 s
      const low = send(lx, 'low', { x_priority: 'low' });
      await sleep(50);
      const normal = send(lx, 'normal', {}, { 'x-priority': 'normal' });
      await sleep(50);
      const high = send(lx, 'high', {}, { 'x-priority': 'high' });
      const [b, l, n, h] = await Promise.all([busy, low, normal, high]);
      for (const r of [b, l, n, h]) assert.equal(r.status, 200, r.text);
      assert.deepEqual(await arrivalOrder(sim, ['busy', 'low', 'normal', 'high']), ['busy', 'high', 'normal', 'low']);
      // The wait is reported, and not counted as the gateway's overhead.
      const waited = Number(l.headers.get('x-lexora-queue-wait-ms'));
      assert.ok(waited > 500, `low waited ${waited} ms`);
      assert.ok(Number(l.headers.get('x-lexora-overhead-ms')) < waited / 2);
      await until(() => accessLine(lx, 'low'), 'the access line');
      const rec = accessLine(lx, 'low');
      assert.equal(rec.priority, 'low');
      assert.ok(rec.queue_wait_ms > 500, `queue_wait_ms ${rec.queue_wait_ms}`);
      assert.ok(rec.overhead_ms < rec.queue_wait_ms / 2);
    });
  });

  test("one user's flood does not starve another user's single request at the same priority", async () => {
    await withQueue(['--ttft-ms', '10', '--tokens-per-sec', '20'], {}, async (lx, sim) => {
      const [busy] = await occupy(lx, sim, 'busy', 30);
      const flood = Array.from({ length: 20 }, (_, i) => send(lx, `flood-${i}`, { x_user_id: 'noisy' }));
      await sleep(300);
      const solo = send(lx, 'solo', {}, { 'x-user-id': 'quiet' });
      const all = await Promise.all([busy, solo, ...flood]);
      for (const r of all) assert.equal(r.status, 200, r.text);
      const ids = ['busy', 'solo', ...flood.map((_, i) => `flood-${i}`)];
      const order = await arrivalOrder(sim, ids);
      assert.equal(order.length, 22);
      assert.equal(order[0], 'busy');
      assert.equal(order.indexOf('solo'), 2, `solo got the second turn, not the 21st: ${order.join(' ')}`);
      // Within the noisy user, first in first out.
      const noisy = order.filter((id) => id.startsWith('flood-')).map((id) => Number(id.slice(6)));
      assert.deepEqual(noisy, [...noisy].sort((a, b) => a - b));
    });
  });

  test('a queue deadline runs out: 504 queue_timeout, and the backend never sees the request', async () => {
    await withQueue(['--ttft-ms', '10', '--tokens-per-sec', '20'], {}, async (lx, sim) => {
      const [busy] = await occupy(lx, sim, 'busy', 60); // about 3 s
      const t0 = Date.now();
      const [viaBody, viaHeader] = await Promise.all([
        send(lx, 'late-body', { x_timeout: 0.3 }),
        send(lx, 'late-header', {}, { 'x-timeout': '0.4' }),
      ]);
      assert.ok(Date.now() - t0 < 2500, 'answered at its deadline, not when the slot freed');
      for (const r of [viaBody, viaHeader]) {
        assert.equal(r.status, 504, r.text);
        assert.equal(r.json.error.code, 'queue_timeout');
        assert.equal(r.json.error.type, 'server_error');
      }
      assert.equal((await busy).status, 200);
      await sleep(200);
      assert.equal(await seen(sim, 'late-body'), undefined);
      assert.equal(await seen(sim, 'late-header'), undefined);
      const rec = accessLine(lx, 'late-body');
      assert.equal(rec.status, 504);
      assert.equal(rec.error_code, 'queue_timeout');
    });
  });

  test('X-Timeout that is not a positive number: 400 naming x_timeout', async () => {
    await withQueue([], {}, async (lx) => {
      for (const bad of ['abc', '0', '-1', '1e999', '']) {
        const r = await send(lx, 'bad-timeout', {}, { 'x-timeout': bad });
        assert.equal(r.status, 400, `X-Timeout: ${bad}`);
        assert.equal(r.json.error.code, 'invalid_value');
        assert.equal(r.json.error.param, 'x_timeout');
      }
      const bad = await send(lx, 'bad-prio', {}, { 'x-priority': 'urgent' });
      assert.equal(bad.status, 400);
      assert.match(bad.json.error.message, /high, normal, low/);
    });
  });

  test('a full queue: 503 queue_full with Retry-After; a higher priority arrival displaces the newest lowest', async () => {
    await withQueue(['--ttft-ms', '10', '--tokens-per-sec', '20'], { queue: { max_size: 2 } }, async (lx, sim) => {
      const [busy] = await occupy(lx, sim, 'busy', 40);
      const w1 = send(lx, 'w1');
      await sleep(50);
      const w2 = send(lx, 'w2');
      await sleep(50);
      const refused = await send(lx, 'refused'); // normal, like both waiting: no room
      assert.equal(refused.status, 503, refused.text);
      assert.equal(refused.json.error.code, 'queue_full');
      const ra = Number(refused.headers.get('retry-after'));
      assert.ok(Number.isInteger(ra) && ra >= 1 && ra <= 60, `Retry-After ${ra}`);
      const high = send(lx, 'vip', { x_priority: 'high' });
      const displaced = await w2; // the newest of the lowest level gives its place
      assert.equal(displaced.status, 503, displaced.text);
      assert.equal(displaced.json.error.code, 'queue_full');
      assert.ok(Number(displaced.headers.get('retry-after')) >= 1);
      const [b, first, vip] = await Promise.all([busy, w1, high]);
      for (const r of [b, first, vip]) assert.equal(r.status, 200, r.text);
      assert.deepEqual(await arrivalOrder(sim, ['busy', 'w1', 'w2', 'refused', 'vip']), ['busy', 'vip', 'w1']);
    });
  });

  test('a client that disconnects while queued is removed at once and never reaches the backend', async () => {
    await withQueue(['--ttft-ms', '10', '--tokens-per-sec', '20'], {}, async (lx, sim) => {
      const [busy] = await occupy(lx, sim, 'busy', 30);
      const ac = new AbortController();
      const gone = fetch(`${lx.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-request-id': 'gone', 'x-priority': 'high' },
        body: JSON.stringify(chat()),
        signal: ac.signal,
      }).catch((e) => e);
      const after = send(lx, 'after', { x_priority: 'low' });
      await sleep(300);
      ac.abort();
      await gone;
      await until(() => accessLine(lx, 'gone'), 'the access line of the request that left');
      assert.equal(accessLine(lx, 'gone').status, 499);
      assert.equal((await busy).status, 200);
      assert.equal((await after).status, 200);
      await sleep(200);
      assert.equal(await seen(sim, 'gone'), undefined);
      assert.deepEqual(await arrivalOrder(sim, ['busy', 'gone', 'after']), ['busy', 'after']);
    });
  });

  test('forward_priority sends the priority number as vLLM\'s "priority" field; without it, nothing is added', async () => {
    await withQueue(['--ttft-ms', '0', '--tokens-per-sec', '0'], { backend: { forward_priority: true } }, async (lx, sim) => {
      assert.equal((await send(lx, 'fp-high', { x_priority: 'high' })).status, 200);
      assert.equal((await send(lx, 'fp-default')).status, 200);
      assert.equal((await send(lx, 'fp-low', {}, { 'x-priority': 'low' })).status, 200);
      const body = async (id) => JSON.parse((await seen(sim, id)).body);
      assert.equal((await body('fp-high')).priority, 1);
      assert.equal((await body('fp-default')).priority, 5);
      assert.equal((await body('fp-low')).priority, 10);
      assert.equal((await body('fp-low')).x_priority, undefined);
      // a client's own "priority" is replaced, not followed by a second key
      assert.equal((await send(lx, 'fp-own', { x_priority: 'high', priority: 99 })).status, 200);
      const raw = (await seen(sim, 'fp-own')).body;
      assert.equal(raw.match(/"priority"/g).length, 1, raw);
      assert.equal(JSON.parse(raw).priority, 1);
    });
    await withQueue(['--ttft-ms', '0', '--tokens-per-sec', '0'], {}, async (lx, sim) => {
      assert.equal((await send(lx, 'nofp', { x_priority: 'high' })).status, 200);
      assert.equal(JSON.parse((await seen(sim, 'nofp')).body).priority, undefined);
    });
  });

  test('a reload raises max_concurrency: the waiting requests go out, none is dropped', async () => {
    await withQueue(['--ttft-ms', '10', '--tokens-per-sec', '20'], {}, async (lx, sim) => {
      const [busy] = await occupy(lx, sim, 'busy', 80); // about 4 s
      const waiting = Array.from({ length: 3 }, (_, i) => send(lx, `w${i}`));
      await sleep(300);
      assert.equal((await sim.stats()).received, 1);
      const cfg = queueConfig(sim.url, { backend: { max_concurrency: 4 } });
      writeFileSync(lx.file, `${toYaml({ ...cfg, server: { ...cfg.server, port: lx.port } })}\n`);
      lx.proc.child.kill('SIGHUP');
      await until(async () => (await sim.stats()).received === 4, 'the three waiting requests at the backend', 3000);
      for (const r of await Promise.all([busy, ...waiting])) assert.equal(r.status, 200, r.text);
    });
  });

  test('shutdown: waiting requests are answered 503 shutting_down, the one in flight finishes', async () => {
    await withQueue(['--ttft-ms', '10', '--tokens-per-sec', '20'], {}, async (lx, sim) => {
      const [busy] = await occupy(lx, sim, 'busy', 30);
      const waiting = send(lx, 'waiting');
      await sleep(200);
      lx.proc.child.kill('SIGTERM');
      const w = await waiting;
      assert.equal(w.status, 503, w.text);
      assert.equal(w.json.error.code, 'shutting_down');
      assert.equal((await busy).status, 200);
      assert.equal(await seen(sim, 'waiting'), undefined);
      // Let it finish its own shutdown: a second SIGTERM (from stop()) would make it exit at once, with 1.
      const exit = await Promise.race([lx.proc.exited, sleep(10000).then(() => 'still running')]);
      assert.deepEqual(exit, { code: 0, signal: null });
    });
  });
});

describe('queue: adaptive', () => {
  test("adaptive holds dispatch while the backend reports requests waiting, so priority still decides", async () => {
    // The backend runs one request at a time; Lexora would allow three at once.
    const simArgs = ['--max-batch', '1', '--ttft-ms', '0', '--tokens-per-sec', '20'];
    await withQueue(simArgs, { backend: { max_concurrency: 3, adaptive: true } }, async (lx, sim) => {
      const [a] = await occupy(lx, sim, 'a', 120); // runs about 6 s
      await sleep(1300); // a read of /metrics saw it running, nothing waiting
      const b = send(lx, 'b', { max_tokens: 20 }); // a slot is free and the backend not saturated: sent
      await until(async () => (await sim.stats()).waiting === 1, 'b waiting inside the backend');
      await sleep(1300); // a read saw b waiting: saturated
      const low = send(lx, 'low', { x_priority: 'low' });
      await sleep(30);
      const normal = send(lx, 'normal');
      await sleep(30);
      const high = send(lx, 'high', { x_priority: 'high' });
      await sleep(300);
      const received = await arrivalOrder(sim, ['a', 'b', 'low', 'normal', 'high']);
      assert.deepEqual(received, ['a', 'b'], 'held in Lexora although a slot was free');
      for (const r of await Promise.all([a, b, low, normal, high])) assert.equal(r.status, 200, r.text);
      const order = await arrivalOrder(sim, ['low', 'normal', 'high']);
      assert.equal(order.at(-1), 'low', `low last: ${order.join(' ')}`);
    });
  });

  test('a KV cache above kv_cache_threshold holds dispatch (read from vLLM < 0.10\'s gpu_cache_usage_perc)', async () => {
    // A tiny KV cache: one running request fills it; nothing ever waits inside the backend.
    const simArgs = ['--old-metrics', '--kv-capacity-tokens', '16', '--ttft-ms', '0', '--tokens-per-sec', '20'];
    await withQueue(simArgs, { backend: { adaptive: true, max_concurrency: 4, kv_cache_threshold: 0.5 } },
      async (lx, sim) => {
        const [a] = await occupy(lx, sim, 'kv-a', 80); // about 4 s; its KV use passes 0.5 within 0.5 s
        await sleep(1800); // a read saw the cache over the threshold
        const b = send(lx, 'kv-b');
        await sleep(500);
        assert.equal(await seen(sim, 'kv-b'), undefined, 'held in Lexora while the KV cache is full');
        for (const r of await Promise.all([a, b])) assert.equal(r.status, 200, r.text);
        assert.ok(Number((await b).headers.get('x-lexora-queue-wait-ms')) > 500);
      });
  });

  test('a backend without /metrics is not held: dispatch falls back to max_concurrency', async () => {
    // It answers the API, but 404 on /metrics.
    const srv = http.createServer((req, res) => {
      if (req.url === '/metrics') { res.writeHead(404); res.end(); return; }
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id: 'x', object: 'chat.completion', choices: [], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } }));
      });
    });
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${srv.address().port}`;
    try {
      const lx = await startLexora(queueConfig(url, { backend: { adaptive: true, max_concurrency: 2 } }));
      try {
        await sleep(1200); // at least one failed read
        const all = await Promise.all(Array.from({ length: 6 }, (_, i) => send(lx, `nometrics-${i}`)));
        for (const r of all) assert.equal(r.status, 200, r.text);
        assert.match(lx.logs(), /adaptive: cannot read .*\/metrics \(HTTP 404\)/);
      } finally {
        await lx.stop();
      }
    } finally {
      srv.closeAllConnections();
      await new Promise((r) => srv.close(r));
    }
  });
});
