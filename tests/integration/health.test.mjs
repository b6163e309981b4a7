// Active health checks and /health: backends going down and coming back, the status rule and its HTTP
// codes, the per-kind checks, GPU memory without NVML, every GPU of a fake NVML (tests/fake_nvml: four
// GPUs, GPU 2 failing, variants lacking a symbol) in /health and /metrics with backends.NAME.gpus,
// /health/live and /health/ready.
// Checks every 0.2 s, two failures mark a backend down; every wait is bounded.
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import {
  LEXORA_BIN, configFor, freePort, health, post, startLexora, startSim, toYaml, waitFor,
} from '../lib/harness.mjs';
import { parseMetrics } from '../lib/metrics.mjs';

const HC = { interval_seconds: 0.2, failure_threshold: 2, timeout_seconds: 1 };
const NO_NVML = { LEXORA_NVML_LIBRARY: '/nonexistent/libnvidia-ml.so.1' };
// The fake NVML libraries the build makes next to the binaries (CMakeLists.txt, tests/fake_nvml).
const fakeNvml = (variant = '') => {
  const file = path.join(path.dirname(LEXORA_BIN), `libfake_nvml${variant}.so`);
  assert.ok(existsSync(file), `${file} is built with the binaries`);
  return { LEXORA_NVML_LIBRARY: file };
};
const GIB = 1024 ** 3;

const backend = (h, name) => h.json.backends.find((b) => b.name === name);

/** Waits until GET /health satisfies cond; returns that answer. */
async function healthUntil(lx, cond, what) {
  let last;
  await waitFor(async () => cond((last = await health(lx))), what, { ms: 5000, stepMs: 50 })
    .catch((e) => { throw new Error(`${e.message}; last /health: ${JSON.stringify(last)}`); });
  return last;
}

/** A sim on a given port (to bring a stopped backend back where it was). */
// a (vllm) serves qwen3-32b and shared; b (an OpenAI backend) serves shared only.
function twoBackends(a, b) {
  return configFor(a.url, {
    extra: {
      backends: {
        vllm: { url: a.url, models: ['qwen3-32b', 'shared'] },
        b: { type: 'openai', url: b.url, models: ['shared'] },
      },
      health_check: HC,
    },
  });
}

describe('/health', () => {
  test('healthy → degraded → healthy again → unhealthy (503) as backends stop and come back', async () => {
    const a = await startSim();
    let b = await startSim();
    const lx = await startLexora(twoBackends(a, b), { env: NO_NVML });
    try {
      let h = await healthUntil(lx, (x) => x.json.backends.every((be) => be.status === 'up'), 'both backends up');
      assert.equal(h.status, 200);
      assert.equal(h.json.status, 'healthy');
      assert.equal(h.json.model, 'qwen3-32b');
      assert.equal(h.json.vllm_status, 'connected');
      assert.equal(typeof h.json.uptime, 'string');
      assert.match(h.json.uptime, /^(\d+d )?(\d+h )?\d+m$/);
      assert.ok(Number.isInteger(h.json.uptime_seconds) && h.json.uptime_seconds >= 0);
      const bb = backend(h, 'b');
      assert.deepEqual(Object.keys(bb).sort(),
        ['circuit', 'consecutive_failures', 'drain_state', 'drained', 'gpus', 'in_flight', 'kind', 'last_check',
          'last_error', 'last_request_error', 'name', 'request_failures', 'status', 'url'].sort());
      assert.deepEqual(bb.gpus, []);
      assert.equal(bb.drained, false);
      assert.equal(bb.drain_state, 'serving');
      assert.equal(bb.circuit, 'closed');
      assert.equal(bb.request_failures, 0);
      assert.equal(bb.last_request_error, null);
      assert.equal(bb.kind, 'openai');
      assert.equal(bb.url, b.url);
      assert.equal(bb.consecutive_failures, 0);
      assert.equal(bb.last_error, null);
      assert.ok(!Number.isNaN(Date.parse(bb.last_check)), bb.last_check);
      assert.equal(backend(h, 'vllm').kind, 'vllm');
      assert.equal((await health(lx, '/health/ready')).status, 200);

      // b stops: its only model is still served by a → degraded, 200.
      const bPort = b.port;
      await b.stop();
      h = await healthUntil(lx, (x) => backend(x, 'b').status === 'down', 'b marked down');
      assert.equal(h.status, 200);
      assert.equal(h.json.status, 'degraded');
      assert.ok(backend(h, 'b').consecutive_failures >= 2);
      assert.match(backend(h, 'b').last_error, /connect/i);
      assert.equal(backend(h, 'vllm').status, 'up');
      assert.equal(h.json.vllm_status, 'connected');
      assert.equal((await health(lx, '/health/ready')).status, 200);

      // b comes back on the same port: one good check and it is up again.
      b = await startSim([], { port: bPort });
      h = await healthUntil(lx, (x) => x.json.status === 'healthy', 'healthy again');
      assert.equal(h.status, 200);
      assert.equal(backend(h, 'b').status, 'up');
      assert.equal(backend(h, 'b').consecutive_failures, 0);

      // a stops: qwen3-32b has no backend left → unhealthy, 503.
      await a.stop();
      h = await healthUntil(lx, (x) => backend(x, 'vllm').status === 'down', 'a marked down');
      assert.equal(h.status, 503);
      assert.equal(h.json.status, 'unhealthy');
      assert.equal(h.json.vllm_status, 'disconnected');
      const ready = await health(lx, '/health/ready');
      assert.equal(ready.status, 503);
      assert.equal((await health(lx, '/health/live')).status, 200);

      // /metrics shows it down too.
      const m = await (await fetch(`${lx.url}/metrics`)).text();
      assert.match(m, /lexora_backend_up\{backend="vllm"\} 0/);
      assert.match(m, /lexora_backend_up\{backend="b"\} 1/);

      // Everything down.
      await b.stop();
      h = await healthUntil(lx, (x) => x.json.backends.every((be) => be.status === 'down'), 'all down');
      assert.equal(h.status, 503);
      assert.equal(h.json.status, 'unhealthy');
    } finally {
      await lx.stop();
      await a.stop().catch(() => {});
      await b.stop().catch(() => {});
    }
  });

  test('the check per backend kind; without NVML the GPU fields are null and gpu says why', async () => {
    const sim = await startSim();
    // The sim answers GET /health and GET /v1/models, but not Ollama's GET /api/version (404), so an ollama-kind entry on it fails.
    const cfg = configFor(sim.url, {
      extra: {
        backends: {
          vllm: { url: sim.url, models: ['qwen3-32b'] },
          llamacpp: { url: sim.url, models: ['qwen3-32b'] },
          oai: { type: 'openai', url: sim.url, models: ['qwen3-32b'] },
          ollama: { url: sim.url, models: ['other'] },
        },
        health_check: HC,
      },
    });
    const lx = await startLexora(cfg, { env: NO_NVML });
    try {
      const h = await healthUntil(lx, (x) => backend(x, 'ollama').status === 'down', 'ollama-kind down');
      assert.equal(h.status, 503); // "other" has no backend up
      assert.equal(h.json.status, 'unhealthy');
      assert.equal(backend(h, 'ollama').last_error, 'HTTP 404');
      for (const name of ['vllm', 'llamacpp', 'oai']) assert.equal(backend(h, name).status, 'up', name);
      assert.equal(backend(h, 'llamacpp').kind, 'llamacpp');
      assert.equal(h.json.gpu_memory_used, null);
      assert.equal(h.json.gpu_memory_total, null);
      assert.match(h.json.gpu, /^NVML not available: .*libnvidia-ml\.so\.1/);
      assert.deepEqual(h.json.gpus, []);
      assert.doesNotMatch(await (await fetch(`${lx.url}/metrics`)).text(), /lexora_gpu_/);
    } finally {
      await lx.stop();
      await sim.stop();
    }
  });

  test('/health/live and /health/ready; the default NVML library either reports memory or says why', async () => {
    const sim = await startSim();
    const lx = await startLexora(configFor(sim.url, { extra: { health_check: HC } }));
    try {
      const live = await health(lx, '/health/live');
      assert.equal(live.status, 200);
      assert.deepEqual(live.json, { status: 'alive' });
      await healthUntil(lx, (x) => backend(x, 'vllm').status === 'up', 'up');
      const ready = await health(lx, '/health/ready');
      assert.equal(ready.status, 200);
      assert.equal(ready.json.status, 'ready');
      const h = await health(lx);
      if (h.json.gpu_memory_total === null) assert.match(h.json.gpu, /NVML/);
      else assert.match(h.json.gpu_memory_total, /^\d+(GB|MB)$/);
      const post = await fetch(`${lx.url}/health`, { method: 'POST' });
      assert.equal(post.status, 405);
      await sim.stop();
      await healthUntil(lx, (x) => x.status === 503, 'unhealthy after the only backend stopped');
      assert.equal((await health(lx, '/health/ready')).status, 503);
      assert.equal((await health(lx, '/health/live')).status, 200);
    } finally {
      await lx.stop();
      await sim.stop().catch(() => {});
    }
  });

  test('a backend added by a reload is checked at once; a removed one leaves /health', async () => {
    const sim = await startSim();
    const dead = `http://127.0.0.1:${await freePort()}`; // nothing listens there
    const base = configFor(sim.url, { extra: { health_check: { ...HC, interval_seconds: 30 } } });
    const lx = await startLexora(base, { env: NO_NVML });
    const rewrite = (cfg) => writeFileSync(lx.file, `${toYaml({ ...cfg, server: { ...cfg.server, port: lx.port } })}\n`);
    try {
      // With a 30 s interval, only the immediate first check can mark the new one within the wait.
      await healthUntil(lx, (x) => backend(x, 'vllm').status === 'up', 'first check at start');
      rewrite({
        ...base,
        backends: { vllm: { url: sim.url, models: ['qwen3-32b'] }, extra: { type: 'llamacpp', url: dead, models: ['x'] } },
        health_check: { ...HC, interval_seconds: 30, failure_threshold: 1 },
      });
      assert.equal((await post(`${lx.url}/admin/reload`, '')).status, 200);
      const h = await healthUntil(lx, (x) => backend(x, 'extra')?.status === 'down', 'added backend checked');
      assert.equal(h.status, 503);
      assert.equal(backend(h, 'extra').kind, 'llamacpp');
      assert.equal(backend(h, 'extra').consecutive_failures, 1);
      rewrite(base);
      assert.equal((await post(`${lx.url}/admin/reload`, '')).status, 200);
      const after = await health(lx);
      assert.equal(after.status, 200);
      assert.equal(backend(after, 'extra'), undefined);
    } finally {
      await lx.stop();
      await sim.stop();
    }
  });

  test('every GPU of a fake NVML: figures, a GPU that fails, backends.NAME.gpus; /metrics; a reload moves them', async () => {
    const sim = await startSim();
    const cfg = configFor(sim.url, {
      extra: {
        backends: {
          'vllm-0': { type: 'vllm', url: sim.url, models: ['qwen3-32b'], gpus: [0] },
          'vllm-1': { type: 'vllm', url: sim.url, models: ['qwen3-32b'], gpus: [1, 2] },
          spare: { type: 'vllm', url: sim.url, models: ['qwen3-32b'], gpus: [3], enabled: false },
        },
        health_check: HC,
      },
    });
    const lx = await startLexora(cfg, { env: fakeNvml() });
    const rewrite = (c) => writeFileSync(lx.file, `${toYaml({ ...c, server: { ...c.server, port: lx.port } })}\n`);
    try {
      const h = await healthUntil(lx, (x) => x.json.gpus.length === 4, 'the four GPUs read');
      assert.equal(h.status, 200);
      assert.equal(h.json.gpu_memory_used, '95GB'); // 24 + 70 + 1: GPU 2 is not in the sums
      assert.equal(h.json.gpu_memory_total, '184GB');
      assert.equal(h.json.gpu, 'NVML: GPU 2: nvmlDeviceGetMemoryInfo: GPU is lost');
      const uuid = (i) => `GPU-6a1f0c52-0000-4000-8000-00000000000${i}`;
      const h100 = 'NVIDIA H100 80GB HBM3';
      const fig = (used, total) => ({
        memory_used: `${used}GB`, memory_used_bytes: used * GIB, memory_total: `${total}GB`, memory_total_bytes: total * GIB,
      });
      const none = { memory_used: null, memory_used_bytes: null, memory_total: null, memory_total_bytes: null };
      assert.deepEqual(h.json.gpus, [
        { index: 0, name: h100, uuid: uuid(0), ...fig(24, 80), utilization_percent: 37, temperature_celsius: 61, backends: ['vllm-0'], error: null },
        { index: 1, name: h100, uuid: uuid(1), ...fig(70, 80), utilization_percent: 81, temperature_celsius: 74, backends: ['vllm-1'], error: null },
        { index: 2, name: h100, uuid: uuid(2), ...none, utilization_percent: null, temperature_celsius: null, backends: ['vllm-1'], error: 'nvmlDeviceGetMemoryInfo: GPU is lost' },
        { index: 3, name: 'NVIDIA L4', uuid: uuid(3), ...fig(1, 24), utilization_percent: null, temperature_celsius: null, backends: [], error: null },
      ]);
      assert.deepEqual(backend(h, 'vllm-0').gpus, [0]);
      assert.deepEqual(backend(h, 'vllm-1').gpus, [1, 2]);
      assert.equal(backend(h, 'spare'), undefined); // disabled: neither listed nor named by GPU 3

      const m = parseMetrics(await (await fetch(`${lx.url}/metrics`)).text());
      const at = (name, i) => m.get(`${name}{gpu="${i}",uuid="${uuid(i)}"}`);
      assert.equal(m.get(`lexora_gpu_info{gpu="3",uuid="${uuid(3)}",name="NVIDIA L4"}`), 1);
      assert.deepEqual([0, 1, 2, 3].map((i) => at('lexora_gpu_up', i)), [1, 1, 0, 1]);
      assert.deepEqual([0, 1, 2, 3].map((i) => at('lexora_gpu_memory_used_bytes', i)), [24 * GIB, 70 * GIB, undefined, GIB]);
      assert.deepEqual([0, 1, 2, 3].map((i) => at('lexora_gpu_memory_total_bytes', i)), [80 * GIB, 80 * GIB, undefined, 24 * GIB]);
      assert.deepEqual([0, 1, 2, 3].map((i) => at('lexora_gpu_utilization_ratio', i)), [0.37, 0.81, undefined, undefined]);
      assert.deepEqual([0, 1, 2, 3].map((i) => at('lexora_gpu_temperature_celsius', i)), [61, 74, undefined, undefined]);
      assert.match(lx.logs(), /GPU 2 not read: nvmlDeviceGetMemoryInfo: GPU is lost/);

      // The spare takes GPU 3 and vllm-1 gives up GPU 2: a reload shows it at once.
      rewrite({
        ...cfg,
        backends: {
          ...cfg.backends,
          'vllm-1': { ...cfg.backends['vllm-1'], gpus: [1] },
          spare: { ...cfg.backends.spare, enabled: true },
        },
      });
      const r = await post(`${lx.url}/admin/reload`, '');
      assert.equal(r.status, 200, r.text);
      assert.ok(r.json.changed.includes('backends.vllm-1.gpus'), r.text);
      const after = await health(lx);
      assert.deepEqual(after.json.gpus.map((g) => g.backends), [['vllm-0'], ['vllm-1'], [], ['spare']]);
      assert.deepEqual(backend(after, 'spare').gpus, [3]);
    } finally {
      await lx.stop();
      await sim.stop();
    }
  });

  test('a fake NVML lacking a symbol: one Lexora needs gives no figures and says why; one it can do without only drops its figure', async () => {
    const sim = await startSim();
    const cfg = configFor(sim.url, { extra: { health_check: HC } });
    const noCount = fakeNvml('_no_count');
    let lx = await startLexora(cfg, { env: noCount });
    try {
      const h = await healthUntil(lx, (x) => x.json.gpu !== 'GPU memory not read yet', 'the first reading');
      assert.equal(h.status, 200);
      assert.equal(h.json.gpu_memory_used, null);
      assert.equal(h.json.gpu_memory_total, null);
      assert.equal(h.json.gpu, `NVML not available: ${noCount.LEXORA_NVML_LIBRARY} lacks nvmlDeviceGetCount_v2`);
      assert.deepEqual(h.json.gpus, []);
      assert.doesNotMatch(await (await fetch(`${lx.url}/metrics`)).text(), /lexora_gpu_/);
    } finally {
      await lx.stop();
    }
    lx = await startLexora(cfg, { env: fakeNvml('_no_temperature') });
    try {
      const h = await healthUntil(lx, (x) => x.json.gpus.length === 4, 'the four GPUs read');
      assert.equal(h.json.gpu_memory_used, '95GB');
      assert.deepEqual(h.json.gpus.map((g) => g.temperature_celsius), [null, null, null, null]);
      assert.deepEqual(h.json.gpus.map((g) => g.utilization_percent), [37, 81, null, null]);
      const text = await (await fetch(`${lx.url}/metrics`)).text();
      assert.doesNotMatch(text, /lexora_gpu_temperature_celsius/); // no series: no HELP/TYPE either
      assert.match(text, /^lexora_gpu_memory_used_bytes\{gpu="0",uuid="GPU-[^"]+"\} 25769803776$/m);
    } finally {
      await lx.stop();
      await sim.stop();
    }
  });
});
