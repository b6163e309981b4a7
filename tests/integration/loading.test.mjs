// Loading and unloading models on demand (backends.NAME.load), against lexora-sim's emulation of each kind's
// endpoints: 50 requests waiting on one load, idle unload, least-recently-used eviction, alternating traffic
// with max_loaded 1 (switches bounded by time), a failed load and the next request trying again, on_demand
// false, the admin API, vLLM's LoRA adapters and sleep mode, and llama.cpp's router (a load that answers
// before the model is ready).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { chat, post, sleep, startSim, stats, waitFor, withLexora } from '../lib/harness.mjs';

const ADMIN = 'admin-token-loading-test';
const ask = (model, extra = {}) => ({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, ...extra });
const auth = { Authorization: `Bearer ${ADMIN}` };

function config(sim, type, models, load, extra = {}) {
  return {
    server: { host: '127.0.0.1', port: 0 },
    backends: { gpu: { type, url: sim.url, models, load, ...(extra.backend || {}) } },
    logging: { level: 'INFO', format: 'json' },
    metrics: { enabled: false, port: 9090 },
    retry: { max_attempts: 1 },
    health_check: { interval_seconds: 60, failure_threshold: 100, cooldown_seconds: 30, timeout_seconds: 1 },
    usage: { enabled: false },
    admin: { token: ADMIN },
    queue: { max_size: 200, default_timeout: 30 },
    rate_limits: { default: { requests_per_minute: 0, tokens_per_minute: 0 } },
  };
}

const simModel = async (sim, name) => (await sim.stats()).models[name];
const adminModels = async (lx) => (await (await fetch(`${lx.url}/admin/models`, { headers: auth })).json()).data;
const stateOf = async (lx, model) => (await adminModels(lx)).find((m) => m.model === model)?.state;

async function withSim(args, fn) {
  const sim = await startSim(args);
  try {
    await fn(sim);
  } finally {
    await sim.stop();
  }
}

const OLLAMA = ['--api', 'ollama', '--start-unloaded', '--ttft-ms', '1', '--tokens-per-sec', '0'];

describe('loading models on demand (Ollama)', () => {
  test('50 requests waiting for one model: one load reaches the backend, then they all go', async () => {
    await withSim([...OLLAMA, '--model', 'a', '--model', 'b', '--load-ms', '400'], async (sim) => {
      await withLexora(config(sim, 'ollama', ['a', 'b'], { max_loaded: 1 }), async (lx) => {
        const answers = await Promise.all(Array.from({ length: 50 }, () => chat(lx, ask('a'))));
        for (const r of answers) assert.equal(r.status, 200, r.text);
        const waits = answers.map((r) => Number(r.headers.get('x-lexora-load-wait-ms')));
        assert.ok(waits.filter((w) => w >= 300).length >= 45, `most waited for the load: ${waits.join(' ')}`);
        const m = await simModel(sim, 'a');
        assert.equal(m.loads, 1, 'one load');
        assert.equal(m.state, 'loaded');
        assert.equal(await stateOf(lx, 'a'), 'loaded');
        const h = await (await fetch(`${lx.url}/health`)).json();
        assert.deepEqual(h.backends[0].loaded_models, { a: 'loaded', b: 'unloaded' });
        const metrics = await (await fetch(`${lx.url}/metrics`)).text();
        assert.match(metrics, /lexora_model_loaded\{backend="gpu",model="a"\} 1\n/);
        assert.match(metrics, /lexora_model_loads_total\{backend="gpu",model="a"\} 1\n/);
        // the access log has it too
        assert.match(lx.logs(), /"load_wait_ms":\d/);
      });
    });
  });

  test('idle_unload_seconds unloads a model nobody used; the next request loads it again', async () => {
    await withSim([...OLLAMA, '--model', 'a'], async (sim) => {
      await withLexora(config(sim, 'ollama', ['a'], { idle_unload_seconds: 1, min_resident_seconds: 0 }), async (lx) => {
        assert.equal((await chat(lx, ask('a'))).status, 200);
        assert.equal((await simModel(sim, 'a')).state, 'loaded');
        await waitFor(async () => (await simModel(sim, 'a')).state === 'unloaded', 'the idle unload', { ms: 5000 });
        assert.equal(await stateOf(lx, 'a'), 'unloaded');
        assert.equal((await chat(lx, ask('a'))).status, 200);
        assert.equal((await simModel(sim, 'a')).loads, 2);
      });
    });
  });

  test('max_loaded: the least recently used idle model makes room', async () => {
    await withSim([...OLLAMA, '--model', 'a', '--model', 'b', '--model', 'c'], async (sim) => {
      const load = { max_loaded: 2, min_resident_seconds: 0, switch_after_seconds: 0 };
      await withLexora(config(sim, 'ollama', ['a', 'b', 'c'], load), async (lx) => {
        assert.equal((await chat(lx, ask('a'))).status, 200);
        await sleep(20);
        assert.equal((await chat(lx, ask('b'))).status, 200);
        await sleep(20);
        assert.equal((await chat(lx, ask('c'))).status, 200);
        const s = (await sim.stats()).models;
        assert.equal(s.a.state, 'unloaded', 'a was the least recently used');
        assert.equal(s.b.state, 'loaded');
        assert.equal(s.c.state, 'loaded');
        assert.match(lx.logs(), /model a makes room for c/);
      });
    });
  });

  test('alternating traffic with max_loaded 1: switches are bounded by time, not by requests', async () => {
    await withSim([...OLLAMA, '--model', 'a', '--model', 'b', '--load-ms', '50'], async (sim) => {
      const load = { max_loaded: 1, min_resident_seconds: 0, switch_after_seconds: 1 };
      await withLexora(config(sim, 'ollama', ['a', 'b'], load), async (lx) => {
        const started = Date.now();
        const pending = [];
        for (let i = 0; Date.now() - started < 4000; i++) {
          pending.push(chat(lx, ask(i % 2 ? 'a' : 'b')));
          await sleep(50);
        }
        const answers = await Promise.all(pending);
        for (const r of answers) assert.equal(r.status, 200, r.text);
        const s = (await sim.stats()).models;
        const loads = s.a.loads + s.b.loads;
        const seconds = (Date.now() - started) / 1000;
        assert.ok(answers.length >= 60, `${answers.length} requests`);
        assert.ok(loads <= seconds / 1 + 2, `${loads} loads in ${seconds.toFixed(1)} s for ${answers.length} requests`);
        assert.ok(loads >= 2, 'both models were served');
      });
    });
  });

  test('a failed load: its waiters get 503 model_load_failed with the reason; the next request tries again', async () => {
    await withSim([...OLLAMA, '--model', 'a', '--load-ms', '100'], async (sim) => {
      await withLexora(config(sim, 'ollama', ['a'], {}), async (lx) => {
        await sim.control({ fail_next_load: true });
        const failed = await Promise.all([chat(lx, ask('a')), chat(lx, ask('a'))]);
        for (const r of failed) {
          assert.equal(r.status, 503, r.text);
          assert.equal(r.json.error.code, 'model_load_failed');
          assert.match(r.json.error.message, /llama runner process has terminated/);
        }
        assert.equal(await stateOf(lx, 'a'), 'failed');
        const r = await chat(lx, ask('a'));
        assert.equal(r.status, 200, r.text);
        const m = await simModel(sim, 'a');
        assert.equal(m.loads, 2, 'one failed load, one that worked: no retry loop');
      });
    });
  });

  test('a model over the backend\'s memory budget: 503 model_load_failed naming the backend\'s reason', async () => {
    await withSim([...OLLAMA, '--model', 'small', '--model', 'big', '--memory-mb', '2000', '--model-mb', 'big=4000'],
      async (sim) => {
        await withLexora(config(sim, 'ollama', ['small', 'big'], {}), async (lx) => {
          const r = await chat(lx, ask('big'));
          assert.equal(r.status, 503, r.text);
          assert.equal(r.json.error.code, 'model_load_failed');
          assert.match(r.json.error.message, /requires more system memory/);
          assert.equal((await chat(lx, ask('small'))).status, 200, 'another model still loads');
        });
      });
  });

  test('on_demand false: 503 model_not_loaded until the admin loads it; the admin API\'s answers', async () => {
    await withSim([...OLLAMA, '--model', 'a', '--load-ms', '500'], async (sim) => {
      await withLexora(config(sim, 'ollama', ['a'], { on_demand: false, min_resident_seconds: 0 }), async (lx) => {
        let r = await chat(lx, ask('a'));
        assert.equal(r.status, 503);
        assert.equal(r.json.error.code, 'model_not_loaded');
        const cmd = (verb, body, headers = auth) => post(`${lx.url}/admin/models/${verb}`, body, headers);
        assert.equal((await cmd('load', { model: 'a' }, {})).status, 401, 'the admin token is needed');
        r = await cmd('load', { model: 'a' });
        assert.equal(r.status, 202, r.text);
        assert.deepEqual(r.json, { backend: 'gpu', model: 'a', state: 'loading' });
        r = await cmd('unload', { model: 'a', backend: 'gpu' });
        assert.equal(r.status, 409, 'not while it loads');
        assert.equal(r.json.error.code, 'load_conflict');
        assert.equal((await cmd('load', { model: 'nope' })).status, 404);
        assert.equal((await cmd('load', { model: 'a', backend: 'elsewhere' })).status, 404);
        assert.equal((await cmd('load', {})).status, 400);
        await waitFor(async () => (await stateOf(lx, 'a')) === 'loaded', 'loaded');
        assert.equal((await chat(lx, ask('a'))).status, 200);
        r = await cmd('unload', { model: 'a' });
        assert.equal(r.status, 202, r.text);
        await waitFor(async () => (await simModel(sim, 'a')).state === 'unloaded', 'unloaded by the admin');
        const list = await adminModels(lx);
        assert.equal(list.length, 1);
        assert.equal(list[0].backend, 'gpu');
        assert.equal(list[0].loads, 1);
        assert.ok(list[0].since && list[0].last_used);
        assert.equal((await fetch(`${lx.url}/admin/models`)).status, 401, 'GET /admin/models needs the admin token');
      });
    });
  });
});

describe('loading models on demand (vLLM and llama.cpp)', () => {
  test('vLLM: a LoRA adapter loaded on demand; the base model put to sleep and woken', async () => {
    const args = ['--sleep-mode', '--runtime-lora', '--load-ms', '200', '--model', 'qwen3-32b', '--ttft-ms', '1',
      '--tokens-per-sec', '0'];
    await withSim(args, async (sim) => {
      const models = ['qwen3-32b', { name: 'legal', lora_path: '/models/lora/legal' }];
      const cfg = config(sim, 'vllm', models, { min_resident_seconds: 0 }, { backend: { sleep_mode: true } });
      await withLexora(cfg, async (lx) => {
        assert.equal(await stateOf(lx, 'qwen3-32b'), 'loaded', 'vLLM starts awake');
        let r = await chat(lx, ask('legal'));
        assert.equal(r.status, 200, r.text);
        assert.ok(Number(r.headers.get('x-lexora-load-wait-ms')) >= 150);
        assert.equal((await simModel(sim, 'legal')).state, 'loaded');
        r = await post(`${lx.url}/admin/models/unload`, { model: 'qwen3-32b' }, auth);
        assert.equal(r.status, 202, r.text);
        await waitFor(async () => (await stateOf(lx, 'qwen3-32b')) === 'sleeping', 'asleep');
        assert.equal((await sim.stats()).sleeping, true);
        r = await chat(lx, ask('qwen3-32b'));
        assert.equal(r.status, 200, r.text);
        assert.equal((await sim.stats()).sleeping, false, 'woken for the request');
      });
    });
  });

  test('llama.cpp router: the load answers at once; requests wait until its status says loaded', async () => {
    const args = ['--api', 'llamacpp', '--router', '--model', 'm1', '--model', 'm2', '--load-ms', '400', '--ttft-ms', '1',
      '--tokens-per-sec', '0'];
    await withSim(args, async (sim) => {
      await withLexora(config(sim, 'llamacpp', ['m1', 'm2'], { max_loaded: 1, min_resident_seconds: 0 }), async (lx) => {
        const r = await chat(lx, ask('m1'));
        assert.equal(r.status, 200, r.text);
        assert.ok(Number(r.headers.get('x-lexora-load-wait-ms')) >= 350, r.headers.get('x-lexora-load-wait-ms'));
        assert.equal((await simModel(sim, 'm1')).state, 'loaded');
        assert.equal((await simModel(sim, 'm1')).loads, 1);
        assert.equal((await stats(lx)).models_loading.data.find((m) => m.model === 'm1').state, 'loaded');
      });
    });
  });
});
