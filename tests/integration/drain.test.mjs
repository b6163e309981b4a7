// Draining a backend for maintenance: POST /admin/backends/NAME/drain and /undrain, end to end against
// real simulators on loopback (no admin token is configured: loopback clients are the admin). A drained
// backend takes no new request — neither routed to it nor dispatched to it from the queue — while those
// in flight finish; it shows in /health, /stats and /metrics; a reload keeps it; undrain brings it back.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { startSim, startLexora, chat, chatBody, waitFor, sleep, MODEL, configFor } from '../lib/harness.mjs';

const admin = (lx, name, verb, method = 'POST') =>
  fetch(`${lx.url}/admin/backends/${name}/${verb}`, { method }).then(async (r) => ({ status: r.status, json: await r.json() }));
const inference = async (sim) => (await sim.requests()).filter((r) => r.path === '/v1/chat/completions').length;
const backendOf = async (lx, name) => (await (await fetch(`${lx.url}/health`)).json()).backends.find((b) => b.name === name);

function twoBackends(a, b, backend = {}) {
  return configFor(a.url, {
    extra: {
      backends: {
        a: { type: 'vllm', url: a.url, models: [MODEL], ...backend },
        b: { type: 'vllm', url: b.url, models: [MODEL], ...backend },
      },
    },
  });
}

async function withTwo(simArgs, backend, fn) {
  const [a, b] = [await startSim(simArgs), await startSim(simArgs)];
  let lx;
  try {
    lx = await startLexora(twoBackends(a, b, backend));
    await fn(lx, a, b);
  } finally {
    await lx?.stop();
    await a.stop();
    await b.stop();
  }
}

/** Starts a streamed chat and returns a promise of its whole body. */
function stream(lx, extra = {}) {
  return fetch(`${lx.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(chatBody({ stream: true, max_tokens: 20, ...extra })),
  }).then(async (r) => ({ status: r.status, text: await r.text() }));
}

describe('drain', () => {
  test('a drained backend gets no request while the other serves; undrain brings it back', async () => {
    await withTwo([], {}, async (lx, a, b) => {
      const d = await admin(lx, 'a', 'drain');
      assert.equal(d.status, 200);
      assert.deepEqual(d.json, { backend: 'a', drained: true, drain_state: 'drained', in_flight: 0, changed: true });
      const again = await admin(lx, 'a', 'drain');
      assert.equal(again.status, 200);
      assert.equal(again.json.changed, false, 'idempotent');
      assert.equal(again.json.drained, true);

      const h = await backendOf(lx, 'a');
      assert.equal(h.drained, true);
      assert.equal(h.drain_state, 'drained');
      assert.notEqual(h.status, 'down', 'drained is not down');
      assert.equal((await backendOf(lx, 'b')).drained, false);
      assert.equal((await (await fetch(`${lx.url}/health`)).json()).status, 'healthy', 'draining one does not make the gateway unhealthy');
      assert.deepEqual((await (await fetch(`${lx.url}/stats`)).json()).drained_backends, ['a']);
      const m = await (await fetch(`${lx.url}/metrics`)).text();
      assert.match(m, /^lexora_backend_drained\{backend="a"\} 1$/m);
      assert.match(m, /^lexora_backend_drained\{backend="b"\} 0$/m);

      const before = await inference(a);
      for (let i = 0; i < 12; i++) assert.equal((await chat(lx)).status, 200);
      assert.equal(await inference(a), before, 'nothing reached the drained backend');
      assert.equal(await inference(b), 12);

      const u = await admin(lx, 'a', 'undrain');
      assert.deepEqual(u.json, { backend: 'a', drained: false, drain_state: 'serving', in_flight: 0, changed: true });
      assert.equal((await admin(lx, 'a', 'undrain')).json.changed, false);
      for (let i = 0; i < 20; i++) assert.equal((await chat(lx)).status, 200);
      assert.ok(await inference(a) > 0, 'the undrained backend takes requests again');
      assert.deepEqual((await (await fetch(`${lx.url}/stats`)).json()).drained_backends, []);
    });
  });

  test('the streams in flight on a backend being drained finish; new ones go to the other', async () => {
    await withTwo(['--tokens-per-sec', '20'], {}, async (lx, a, b) => {
      await admin(lx, 'b', 'drain'); // so that the stream goes to a
      const s = stream(lx);
      await waitFor(async () => (await a.stats()).running === 1, 'the stream running on a');
      await admin(lx, 'b', 'undrain');
      const d = await admin(lx, 'a', 'drain');
      assert.equal(d.json.drain_state, 'draining');
      assert.equal(d.json.in_flight, 1);
      const h = await backendOf(lx, 'a');
      assert.equal(h.drain_state, 'draining');
      assert.equal(h.in_flight, 1);
      for (let i = 0; i < 3; i++) assert.equal((await chat(lx, chatBody({ max_tokens: 1 }))).status, 200);
      assert.equal(await inference(a), 1, 'only the stream reached a');
      const done = await s;
      assert.equal(done.status, 200);
      assert.match(done.text, /data: \[DONE\]/, 'the stream finished');
      assert.equal((done.text.match(/"content":"/g) || []).length >= 20, true, 'with every token');
      await waitFor(async () => (await backendOf(lx, 'a')).drain_state === 'drained', 'a drained once the stream ended');
    });
  });

  test('a reload keeps the drained flag; unknown backends are 404, GET is 405', async () => {
    await withTwo([], {}, async (lx) => {
      await admin(lx, 'a', 'drain');
      const r = await fetch(`${lx.url}/admin/reload`, { method: 'POST' });
      assert.equal(r.status, 200);
      assert.equal((await backendOf(lx, 'a')).drained, true);
      const nf = await admin(lx, 'nope', 'drain');
      assert.equal(nf.status, 404);
      assert.equal(nf.json.error.code, 'not_found');
      assert.match(nf.json.error.message, /nope/);
      const get = await fetch(`${lx.url}/admin/backends/a/drain`);
      assert.equal(get.status, 405);
      assert.equal(get.headers.get('allow'), 'POST');
    });
  });

  test('every backend of the model drained: 503 no_healthy_backend at once, as when all are down', async () => {
    await withTwo([], {}, async (lx, a, b) => {
      await admin(lx, 'a', 'drain');
      await admin(lx, 'b', 'drain');
      const r = await chat(lx);
      assert.equal(r.status, 503);
      assert.equal(r.json.error.code, 'no_healthy_backend');
      assert.match(r.json.error.message, /down or drained/);
      assert.ok(Number(r.headers.get('retry-after')) >= 1);
      assert.equal((await inference(a)) + (await inference(b)), 0);
      await admin(lx, 'b', 'undrain');
      assert.equal((await chat(lx)).status, 200);
    });
  });

  test('requests waiting in the queue are not dispatched to a drained backend', async () => {
    // One backend, one slot: a slow stream holds it, a second request waits in the queue. Draining the
    // backend answers the waiting one (503, as when its last backend goes down) instead of sending it
    // there when the slot frees; the stream in flight finishes.
    const sim = await startSim(['--tokens-per-sec', '20']);
    const lx = await startLexora(configFor(sim.url, {
      extra: { backends: { vllm: { url: sim.url, models: [MODEL], max_concurrency: 1 } }, queue: { default_timeout: 30 } },
    }));
    try {
      const s = stream(lx);
      await waitFor(async () => (await sim.stats()).running === 1, 'the stream running');
      const waiting = chat(lx, chatBody({ max_tokens: 1 }));
      await waitFor(async () => (await (await fetch(`${lx.url}/stats`)).json()).queue.depth.normal === 1,
        'the second request waiting in the queue');
      const d = await admin(lx, 'vllm', 'drain');
      assert.equal(d.json.drain_state, 'draining');
      const w = await waiting;
      assert.equal(w.status, 503);
      assert.equal(w.json.error.code, 'no_healthy_backend');
      const done = await s;
      assert.equal(done.status, 200);
      assert.match(done.text, /data: \[DONE\]/);
      await sleep(100);
      assert.equal((await sim.stats()).received, 1, 'the waiting request never reached the drained backend');
    } finally {
      await lx.stop();
      await sim.stop();
    }
  });
});
