// lexora-sim's model loading and unloading, driven over HTTP with no gateway: Ollama's load and unload through
// /api/generate, keep_alive (its default, durations, seconds, 0, expiry) and /api/ps; vLLM's sleep mode and runtime
// LoRA adapters; llama.cpp's router mode (/models states, load, unload, a request loading its model). Loads take
// --load-ms (checked as lower bounds only: the machine is shared), concurrent loads of one model are one load, a load
// over --memory-mb fails with each server's error, /sim/control fails the next load. Every wait is bounded.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sleep, startSim, waitFor } from '../lib/harness.mjs';

const LOAD_MS = 300;
const json = (url, body, method = 'POST') => fetch(url, {
  method, headers: { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body),
});
const chat = (url, model) => json(`${url}/v1/chat/completions`,
  { model, max_tokens: 2, messages: [{ role: 'user', content: 'hi' }] });
const timed = async (p) => {
  const t0 = performance.now();
  const res = await p;
  return { res, ms: performance.now() - t0, body: await res.text() };
};
const model = async (sim, name) => (await sim.stats()).models[name];

describe('--api ollama', () => {
  let sim;
  before(async () => {
    sim = await startSim(['--api', 'ollama', '--model', 'a:latest', '--model', 'b:latest', '--model', 'big:latest',
      '--start-unloaded', '--load-ms', String(LOAD_MS), '--memory-mb', '3000', '--model-mb', 'a:latest=2000',
      '--model-mb', 'b:latest=2000', '--model-mb', 'big:latest=4096', '--ttft-ms', '1', '--tokens-per-sec', '0']);
  });
  after(async () => { await sim?.stop(); });

  test('nothing loaded at start: /api/ps is empty, /sim/stats says unloaded', async () => {
    assert.deepEqual(await (await fetch(`${sim.url}/api/ps`)).json(), { models: [] });
    const st = await sim.stats();
    assert.equal(st.memory_mb, 3000);
    assert.equal(st.memory_used_mb, 0);
    assert.equal(st.models['a:latest'].state, 'unloaded');
  });

  test('/api/generate without a prompt loads in --load-ms; /api/ps lists it with its expiry', async () => {
    const t0 = Date.now();
    const { res, ms, body } = await timed(json(`${sim.url}/api/generate`, { model: 'a', keep_alive: '10m' }));
    assert.equal(res.status, 200);
    assert.ok(ms >= LOAD_MS - 5, `the load took ${ms} ms`);
    const b = JSON.parse(body);
    assert.deepEqual({ ...b, created_at: undefined },
      { model: 'a', created_at: undefined, response: '', done: true, done_reason: 'load' });
    assert.match(b.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
    const ps = await (await fetch(`${sim.url}/api/ps`)).json();
    assert.equal(ps.models.length, 1);
    const m = ps.models[0];
    assert.equal(m.name, 'a:latest');
    assert.equal(m.model, 'a:latest');
    assert.equal(m.size, 2000 * 1048576);
    assert.equal(m.size_vram, 2000 * 1048576);
    assert.match(m.digest, /^[0-9a-f]{64}$/);
    assert.equal(m.details.format, 'gguf');
    const left = Date.parse(m.expires_at) - t0;
    assert.ok(left > 9 * 60e3 && left < 11 * 60e3, `expires in ${left} ms`);
    const st = await model(sim, 'a:latest');
    assert.equal(st.state, 'loaded');
    assert.equal(st.loads, 1);
    assert.equal(st.keep_alive_ms, 600000);
    assert.ok(st.loaded_at_ms >= t0);
    // loaded already: answered at once, no second load
    const again = await timed(json(`${sim.url}/api/generate`, { model: 'a:latest' }));
    assert.equal(JSON.parse(again.body).done_reason, 'load');
    assert.equal((await model(sim, 'a:latest')).loads, 1);
  });

  test('keep_alive 0 unloads (done_reason unload); a bad keep_alive is 400 with Go\'s message', async () => {
    for (const ka of [0, '0']) {
      await json(`${sim.url}/api/generate`, { model: 'a' });
      const res = await json(`${sim.url}/api/generate`, { model: 'a', keep_alive: ka });
      assert.equal(res.status, 200);
      assert.equal((await res.json()).done_reason, 'unload');
      assert.equal((await model(sim, 'a:latest')).state, 'unloaded');
    }
    const bad = await json(`${sim.url}/api/generate`, { model: 'a', keep_alive: '300' });
    assert.equal(bad.status, 400);
    assert.deepEqual(await bad.json(), { error: 'time: missing unit in duration "300"' });
    const unknown = await json(`${sim.url}/api/generate`, { model: 'nope' });
    assert.equal(unknown.status, 404);
    assert.deepEqual(await unknown.json(), { error: "model 'nope' not found" });
    const none = await json(`${sim.url}/api/generate`, {});
    assert.equal(none.status, 400);
    assert.deepEqual(await none.json(), { error: 'model is required' });
  });

  test('a model unloads itself when its keep_alive runs out (a duration, or a number of seconds)', async () => {
    for (const ka of ['400ms', 0.4]) {
      const res = await json(`${sim.url}/api/generate`, { model: 'b', keep_alive: ka });
      assert.equal(res.status, 200);
      const loadedAt = Date.now();
      assert.equal((await model(sim, 'b:latest')).state, 'loaded');
      await waitFor(async () => (await model(sim, 'b:latest')).state === 'unloaded', `b unloads (${ka})`);
      assert.ok(Date.now() - loadedAt >= 390, 'not before its keep_alive');
      assert.deepEqual((await (await fetch(`${sim.url}/api/ps`)).json()).models.filter((m) => m.name === 'b:latest'),
        []);
    }
  });

  test('concurrent requests for a model being loaded share one load; each is counted', async () => {
    await json(`${sim.url}/api/generate`, { model: 'a', keep_alive: 0 });
    const before = await model(sim, 'a:latest');
    const n = 10;
    const all = await Promise.all([
      ...Array.from({ length: n }, () => timed(json(`${sim.url}/api/generate`, { model: 'a' }))),
      ...Array.from({ length: n }, () => timed(chat(sim.url, 'a'))),
    ]);
    for (const r of all) {
      assert.equal(r.res.status, 200, r.body);
      assert.ok(r.ms >= LOAD_MS - 5, `answered after ${r.ms} ms`);
    }
    const after = await model(sim, 'a:latest');
    assert.equal(after.loads - before.loads, 1);
    assert.equal(after.load_requests - before.load_requests, 2 * n);
    assert.equal(after.state, 'loaded');
  });

  test('a chat request loads its model on demand (load delay, then the answer)', async () => {
    await json(`${sim.url}/api/generate`, { model: 'a', keep_alive: 0 });
    const r = await timed(chat(sim.url, 'a'));
    assert.equal(r.res.status, 200);
    assert.ok(r.ms >= LOAD_MS - 5);
    assert.equal(JSON.parse(r.body).model, 'a');
    assert.equal((await model(sim, 'a:latest')).state, 'loaded');
  });

  test('the budget: idle models are unloaded to make room; a model larger than it is refused with 500', async () => {
    await json(`${sim.url}/api/generate`, { model: 'a' });
    const res = await json(`${sim.url}/api/generate`, { model: 'b' }); // 2000 + 2000 > 3000: a goes
    assert.equal(res.status, 200);
    assert.equal((await model(sim, 'a:latest')).state, 'unloaded');
    assert.equal((await model(sim, 'b:latest')).state, 'loaded');
    const big = await json(`${sim.url}/api/generate`, { model: 'big' });
    assert.equal(big.status, 500);
    assert.deepEqual(await big.json(),
      { error: 'model requires more system memory (4.0 GiB) than is available (1.0 GiB)' });
    assert.equal((await model(sim, 'b:latest')).state, 'loaded', 'nothing unloaded for a model that cannot fit');
    const viaChat = await chat(sim.url, 'big');
    assert.equal(viaChat.status, 500);
    assert.match((await viaChat.json()).error.message, /model requires more system memory/);
    assert.equal((await model(sim, 'big:latest')).load_failures, 2);
  });

  test('/sim/control: a smaller budget, and fail_next_load (Ollama\'s runner error, then the next load works)',
    async () => {
      const c = await (await sim.control({ fail_next_load: true, memory_mb: 8000 })).json();
      assert.equal(c.fail_next_load, 1);
      assert.equal(c.memory_mb, 8000);
      await json(`${sim.url}/api/generate`, { model: 'a', keep_alive: 0 });
      const res = await json(`${sim.url}/api/generate`, { model: 'a' });
      assert.equal(res.status, 500);
      assert.deepEqual(await res.json(), { error: 'llama runner process has terminated: exit status 2' });
      assert.equal((await model(sim, 'a:latest')).state, 'unloaded');
      assert.equal((await json(`${sim.url}/api/generate`, { model: 'a' })).status, 200);
      const bad = await sim.control({ fail_next_load: 'x' });
      assert.equal(bad.status, 400);
    });
});

describe('--api ollama defaults: every model loaded at start, kept until a request sets keep_alive', () => {
  let sim;
  before(async () => { sim = await startSim(['--api', 'ollama', '--model', 'a:latest', '--keep-alive', '300ms']); });
  after(async () => { await sim?.stop(); });

  test('loaded at start; a /v1 request applies --keep-alive', async () => {
    const start = await model(sim, 'a:latest');
    assert.deepEqual([start.state, start.keep_alive_ms, start.expires_at_ms], ['loaded', -1, null]);
    assert.equal((await (await fetch(`${sim.url}/api/ps`)).json()).models.length, 1);
    assert.equal((await chat(sim.url, 'a')).status, 200);
    assert.equal((await model(sim, 'a:latest')).keep_alive_ms, 300);
    await waitFor(async () => (await model(sim, 'a:latest')).state === 'unloaded', 'a unloads after --keep-alive');
    assert.equal((await chat(sim.url, 'a')).status, 200); // loads again (--load-ms 0)
    assert.equal((await model(sim, 'a:latest')).loads, 1);
  });
});

describe('--api vllm --sleep-mode --runtime-lora', () => {
  let sim;
  before(async () => {
    sim = await startSim(['--sleep-mode', '--runtime-lora', '--load-ms', String(LOAD_MS), '--memory-mb', '100',
      '--model-mb', 'legal=60', '--model-mb', 'med=60', '--ttft-ms', '1', '--tokens-per-sec', '0']);
  });
  after(async () => { await sim?.stop(); });

  test('sleep, is_sleeping, inference while asleep fails, wake_up takes --load-ms', async () => {
    assert.deepEqual(await (await fetch(`${sim.url}/is_sleeping`)).json(), { is_sleeping: false });
    const s1 = await fetch(`${sim.url}/sleep?level=1`, { method: 'POST' });
    assert.equal(s1.status, 200);
    assert.equal(await s1.text(), '');
    assert.deepEqual(await (await fetch(`${sim.url}/is_sleeping`)).json(), { is_sleeping: true });
    const asleep = await chat(sim.url, 'qwen3-32b');
    assert.equal(asleep.status, 500);
    assert.equal((await asleep.json()).error.type, 'InternalServerError');
    const wakes = await Promise.all([0, 1, 2].map(() => timed(fetch(`${sim.url}/wake_up`, { method: 'POST' }))));
    for (const w of wakes) {
      assert.equal(w.res.status, 200);
      assert.ok(w.ms >= LOAD_MS - 5, `woke in ${w.ms} ms`);
    }
    assert.deepEqual(await (await fetch(`${sim.url}/is_sleeping`)).json(), { is_sleeping: false });
    assert.equal((await chat(sim.url, 'qwen3-32b')).status, 200);
    const st = await sim.stats();
    assert.equal(st.sleeping, false);
    assert.equal(st.sleep_level, 1);
    assert.equal(st.asleep_rejected, 1);
    assert.equal(st.models['qwen3-32b'].loads, 1, 'three wake_up calls, one wake');
    assert.equal(st.models['qwen3-32b'].unloads, 1);
    assert.equal((await fetch(`${sim.url}/sleep?level=2`, { method: 'POST' })).status, 200);
    assert.equal((await sim.stats()).sleep_level, 2);
    assert.equal((await fetch(`${sim.url}/wake_up`, { method: 'POST' })).status, 200);
  });

  test('a LoRA adapter: 404 before its load, loaded in --load-ms, listed with its parent, unloaded', async () => {
    const before = await chat(sim.url, 'legal');
    assert.equal(before.status, 404);
    assert.deepEqual(await before.json(), {
      error: { message: 'The model `legal` does not exist.', type: 'NotFoundError', param: null, code: 404 },
    });
    const loads = await Promise.all([0, 1].map(() =>
      timed(json(`${sim.url}/v1/load_lora_adapter`, { lora_name: 'legal', lora_path: '/loras/legal' }))));
    for (const l of loads) {
      assert.equal(l.res.status, 200);
      assert.equal(l.body, "Success: LoRA adapter 'legal' added successfully.");
      assert.ok(l.ms >= LOAD_MS - 5);
    }
    const st = await model(sim, 'legal');
    assert.deepEqual([st.lora, st.loads, st.load_requests, st.state], [true, 1, 2, 'loaded']);
    const list = (await (await fetch(`${sim.url}/v1/models`)).json()).data;
    const entry = list.find((m) => m.id === 'legal');
    assert.equal(entry.parent, 'qwen3-32b');
    assert.equal(entry.root, '/loras/legal');
    assert.equal(entry.object, 'model');
    assert.equal(list[0].parent, null);
    const answer = await chat(sim.url, 'legal');
    assert.equal(answer.status, 200);
    assert.equal((await answer.json()).model, 'legal');
    const again = await json(`${sim.url}/v1/load_lora_adapter`, { lora_name: 'legal', lora_path: '/loras/legal' });
    assert.equal(again.status, 400);
    assert.deepEqual((await again.json()).error,
      { message: "The lora adapter 'legal' has already been loaded.", type: 'InvalidUserInput', param: null,
        code: 400 });
    const missing = await json(`${sim.url}/v1/load_lora_adapter`, { lora_name: 'x' });
    assert.equal(missing.status, 400);
    assert.equal((await missing.json()).error.message, "Both 'lora_name' and 'lora_path' must be provided.");

    const over = await json(`${sim.url}/v1/load_lora_adapter`, { lora_name: 'med', lora_path: '/loras/med' });
    assert.equal(over.status, 400, '60 + 60 MB > --memory-mb 100');
    assert.equal((await over.json()).error.type, 'BadRequestError');

    const un = await json(`${sim.url}/v1/unload_lora_adapter`, { lora_name: 'legal' });
    assert.equal(un.status, 200);
    assert.equal(await un.text(), "Success: LoRA adapter 'legal' removed successfully.");
    const gone = await json(`${sim.url}/v1/unload_lora_adapter`, { lora_name: 'legal' });
    assert.equal(gone.status, 404);
    assert.deepEqual((await gone.json()).error,
      { message: "The lora adapter 'legal' cannot be found.", type: 'NotFoundError', param: null, code: 404 });
    assert.equal((await chat(sim.url, 'legal')).status, 404);
    assert.equal((await (await fetch(`${sim.url}/v1/models`)).json()).data.length, 1);
    // the room is back: med fits now; fail_next_load makes its load fail
    await sim.control({ fail_next_load: 1 });
    const failed = await json(`${sim.url}/v1/load_lora_adapter`, { lora_name: 'med', lora_path: '/loras/med' });
    assert.equal(failed.status, 400);
    assert.equal((await json(`${sim.url}/v1/load_lora_adapter`, { lora_name: 'med', lora_path: '/m' })).status, 200);
  });
});

describe('--api vllm without the flags: no sleep or LoRA endpoints', () => {
  let sim;
  before(async () => { sim = await startSim([]); });
  after(async () => { await sim?.stop(); });

  test('404 as vLLM answers a route it does not have', async () => {
    for (const [method, path] of [['POST', '/sleep'], ['POST', '/wake_up'], ['GET', '/is_sleeping'],
      ['POST', '/v1/load_lora_adapter'], ['POST', '/v1/unload_lora_adapter']]) {
      const res = await fetch(`${sim.url}${path}`, { method });
      assert.equal(res.status, 404, path);
    }
  });
});

describe('--api llamacpp --router', () => {
  let sim;
  const status = async (name) => (await (await fetch(`${sim.url}/models`)).json()).data.find((m) => m.id === name)
    .status;
  before(async () => {
    sim = await startSim(['--api', 'llamacpp', '--router', '--model', 'm1', '--model', 'm2', '--model', 'm3',
      '--loaded', 'm1', '--load-ms', String(LOAD_MS), '--memory-mb', '2500', '--model-mb', 'm3=4000',
      '--ttft-ms', '1', '--tokens-per-sec', '0']);
  });
  after(async () => { await sim?.stop(); });

  test('GET /models lists every model with its status', async () => {
    const body = await (await fetch(`${sim.url}/models`)).json();
    assert.equal(body.object, 'list');
    assert.deepEqual(body.data.map((m) => [m.id, m.status.value]), [['m1', 'loaded'], ['m2', 'unloaded'],
      ['m3', 'unloaded']]);
    const m = body.data[0];
    assert.equal(m.object, 'model');
    assert.equal(m.owned_by, 'llamacpp');
    assert.ok(Array.isArray(m.status.args));
    assert.deepEqual(await (await fetch(`${sim.url}/v1/models`)).json().then((b) => b.data.map((x) => x.id)),
      ['m1', 'm2', 'm3']);
  });

  test('POST /models/load answers at once; the status goes loading, then loaded', async () => {
    const t0 = Date.now();
    const res = await json(`${sim.url}/models/load`, { model: 'm2' });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { success: true });
    assert.equal((await status('m2')).value, 'loading');
    const dup = await json(`${sim.url}/models/load`, { model: 'm2' });
    assert.equal(dup.status, 400);
    assert.deepEqual(await dup.json(),
      { error: { code: 400, message: 'model is already running', type: 'invalid_request_error' } });
    await waitFor(async () => (await status('m2')).value === 'loaded', 'm2 loaded');
    assert.ok(Date.now() - t0 >= LOAD_MS - 5);
    const st = await model(sim, 'm2');
    assert.deepEqual([st.loads, st.load_requests], [1, 2]);
    const unknown = await json(`${sim.url}/models/load`, { model: 'zz' });
    assert.equal(unknown.status, 404);
    assert.deepEqual(await unknown.json(),
      { error: { code: 404, message: 'model is not found', type: 'not_found_error' } });
  });

  test('POST /models/unload; unloading a model not running is 400', async () => {
    const res = await json(`${sim.url}/models/unload`, { model: 'm2' });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { success: true });
    assert.equal((await status('m2')).value, 'unloaded');
    const again = await json(`${sim.url}/models/unload`, { model: 'm2' });
    assert.equal(again.status, 400);
    assert.deepEqual(await again.json(),
      { error: { code: 400, message: 'model is not running', type: 'invalid_request_error' } });
  });

  test('a request for a model not loaded loads it (one load for concurrent requests), then answers', async () => {
    const before = await model(sim, 'm2');
    const all = await Promise.all([0, 1, 2, 3, 4].map(() => timed(chat(sim.url, 'm2'))));
    for (const r of all) {
      assert.equal(r.res.status, 200, r.body);
      assert.ok(r.ms >= LOAD_MS - 5);
      assert.equal(JSON.parse(r.body).model, 'm2');
    }
    const after = await model(sim, 'm2');
    assert.equal(after.loads - before.loads, 1);
    assert.equal(after.load_requests - before.load_requests, 5);
    const unknown = await chat(sim.url, 'zz');
    assert.equal(unknown.status, 400);
    assert.deepEqual(await unknown.json(),
      { error: { code: 400, message: "model 'zz' not found", type: 'invalid_request_error' } });
  });

  test('a load over the budget fails: unloaded with failed and exit_code; waiting requests get 500', async () => {
    const r = await timed(chat(sim.url, 'm3'));
    assert.equal(r.res.status, 500);
    assert.ok(r.ms >= LOAD_MS - 5);
    assert.deepEqual(JSON.parse(r.body),
      { error: { code: 500, message: 'model name=m3 failed to load', type: 'server_error' } });
    const st = await status('m3');
    assert.deepEqual([st.value, st.failed, st.exit_code], ['unloaded', true, 1]);
    await sim.control({ memory_mb: 0 });
    assert.equal((await chat(sim.url, 'm3')).status, 200, 'no budget: it loads');
    const ok = await status('m3');
    assert.equal(ok.value, 'loaded');
    assert.equal(ok.failed, undefined);
    await sim.control({ fail_next_load: true });
    await json(`${sim.url}/models/unload`, { model: 'm3' });
    await json(`${sim.url}/models/load`, { model: 'm3' });
    await waitFor(async () => (await status('m3')).value === 'unloaded', 'the injected failure');
    assert.equal((await status('m3')).failed, true);
  });
});

describe('--api llamacpp --router --models-max 1 --no-models-autoload', () => {
  let sim;
  before(async () => {
    sim = await startSim(['--api', 'llamacpp', '--router', '--model', 'm1', '--model', 'm2', '--models-max', '1',
      '--no-models-autoload', '--unload-ms', '200']);
  });
  after(async () => { await sim?.stop(); });

  test('a request for a model not loaded is refused; a load beyond --models-max unloads the LRU', async () => {
    const res = await chat(sim.url, 'm1');
    assert.equal(res.status, 400);
    assert.equal((await res.json()).error.message, 'model is not loaded');
    await json(`${sim.url}/models/load`, { model: 'm1' });
    await waitFor(async () => (await model(sim, 'm1')).state === 'loaded', 'm1 loaded');
    assert.equal((await chat(sim.url, 'm1')).status, 200);
    await json(`${sim.url}/models/load`, { model: 'm2' });
    await waitFor(async () => (await model(sim, 'm2')).state === 'loaded', 'm2 loaded');
    assert.equal((await model(sim, 'm1')).state, 'unloaded');
    // --unload-ms: the router reports "loaded" until the child has gone
    await json(`${sim.url}/models/unload`, { model: 'm2' });
    assert.equal((await model(sim, 'm2')).state, 'unloading');
    const listed = (await (await fetch(`${sim.url}/models`)).json()).data.find((m) => m.id === 'm2');
    assert.equal(listed.status.value, 'loaded');
    await sleep(250);
    assert.equal((await model(sim, 'm2')).state, 'unloaded');
  });
});
