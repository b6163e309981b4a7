// What clients get when the backend fails: unreachable, too slow, errors in either format, cut mid-stream;
// and routing by model across two backends. Retries are off here (failover.test.mjs has them).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { chatBody, configFor, freePort, post, sseData, startLexora, startSim } from '../lib/harness.mjs';

const chat = (extra = {}) => chatBody(extra, { max_tokens: 3 });

// One try per request: these tests are about the answer a failure becomes (retries: failover.test.mjs).
async function withGateway(simArgs, opts, fn) {
  const sim = simArgs ? await startSim(simArgs) : null;
  const url = sim ? sim.url : `http://127.0.0.1:${await freePort()}`;
  const lx = await startLexora(configFor(url, { ...opts, extra: { retry: { max_attempts: 1 }, ...(opts.extra || {}) } }));
  try {
    await fn(lx, sim);
  } finally {
    await lx.stop();
    await sim?.stop();
  }
}

describe('upstream failures', () => {
  test('a backend that cannot be reached: 502 upstream_unavailable', async () => {
    await withGateway(null, {}, async (lx) => {
      for (const stream of [false, true]) {
        const r = await post(`${lx.url}/v1/chat/completions`, chat({ stream }));
        assert.equal(r.status, 502);
        assert.equal(r.json.error.code, 'upstream_unavailable');
        assert.ok(r.headers.get('x-request-id'));
      }
    });
  });

  test('a backend slower than its timeout: 504 upstream_timeout', async () => {
    await withGateway(['--ttft-ms', '4000'], { timeout: 1 }, async (lx) => {
      const t0 = Date.now();
      const r = await post(`${lx.url}/v1/chat/completions`, chat());
      assert.equal(r.status, 504);
      assert.equal(r.json.error.code, 'upstream_timeout');
      assert.ok(Date.now() - t0 < 3900, 'answered before the backend would have');
    });
  });

  test("vLLM's flat (pre-0.10.1) error body is normalised to the nested envelope", async () => {
    await withGateway(['--flat-errors', '--max-model-len', '100'], {}, async (lx) => {
      const r = await post(`${lx.url}/v1/chat/completions`, chat({ max_tokens: 5000 }));
      assert.equal(r.status, 400);
      assert.equal(r.json.object, undefined);
      assert.match(r.json.error.message, /maximum context length/);
      assert.ok('type' in r.json.error && 'param' in r.json.error && 'code' in r.json.error);
    });
  });

  test('a nested backend error passes through with its status', async () => {
    await withGateway(['--fail-first', '1', '--fail-mode', '503'], {}, async (lx) => {
      const r = await post(`${lx.url}/v1/chat/completions`, chat());
      assert.equal(r.status, 503);
      assert.ok(r.json.error.message);
      const ok = await post(`${lx.url}/v1/chat/completions`, chat());
      assert.equal(ok.status, 200);
    });
  });

  test('a stream cut by the backend ends with an error event and [DONE]', async () => {
    await withGateway(['--fail-first', '1', '--fail-mode', 'midstream'], {}, async (lx) => {
      const r = await post(`${lx.url}/v1/chat/completions`, chat({ stream: true, max_tokens: 50 }));
      assert.equal(r.status, 200);
      const events = sseData(r.text);
      assert.equal(events.at(-1), '[DONE]');
      const err = JSON.parse(events.at(-2));
      assert.ok(err.error, 'an error event before [DONE]');
      assert.match(err.error.code, /^upstream_/);
    });
  });

  test('a dropped connection before any answer: 502', async () => {
    await withGateway(['--fail-first', '1', '--fail-mode', 'drop'], {}, async (lx) => {
      const r = await post(`${lx.url}/v1/chat/completions`, chat());
      assert.equal(r.status, 502);
      assert.match(r.json.error.code, /^upstream_/);
    });
  });
});

describe('routing by model', () => {
  test('each model goes to the backend that lists it; /v1/models merges them', async () => {
    const a = await startSim(['--model', 'qwen3-32b']);
    const b = await startSim(['--model', 'llama-8b']);
    const lx = await startLexora(configFor(a.url, {
      extra: {
        backends: {
          vllm: { url: a.url, models: ['qwen3-32b'] },
          'vllm-b': { type: 'vllm', url: b.url, models: ['llama-8b'] },
          ollama: { enabled: false, url: 'http://127.0.0.1:1' },
        },
      },
    }));
    try {
      const models = await (await fetch(`${lx.url}/v1/models`)).json();
      assert.deepEqual(models.data.map((m) => m.id), ['qwen3-32b', 'llama-8b']);
      const r1 = await post(`${lx.url}/v1/chat/completions`, chat({ model: 'llama-8b' }), { 'x-request-id': 'route-b' });
      assert.equal(r1.status, 200, r1.text);
      assert.equal(r1.headers.get('x-lexora-backend'), 'vllm-b');
      assert.equal((await b.requests()).filter((q) => q.request_id === 'route-b').length, 1);
      assert.equal((await a.requests()).filter((q) => q.request_id === 'route-b').length, 0);
    } finally {
      await lx.stop();
      await a.stop();
      await b.stop();
    }
  });
});

describe('backend credentials', () => {
  test("backends.NAME.api_key is sent as the backend's bearer token, never the client's", async () => {
    const sim = await startSim(['--model', 'qwen3-32b']);
    const lx = await startLexora(configFor(sim.url, {
      extra: { backends: { vllm: { url: sim.url, models: ['qwen3-32b'], api_key: 'sk-backend-1' } } },
    }));
    try {
      const r = await post(`${lx.url}/v1/chat/completions`, chat(),
        { 'x-request-id': 'cred-1', authorization: 'Bearer client-key' });
      assert.equal(r.status, 200, r.text);
      const [seen] = (await sim.requests()).filter((q) => q.request_id === 'cred-1');
      assert.equal(seen.headers.authorization, 'Bearer sk-backend-1');
    } finally {
      await lx.stop();
      await sim.stop();
    }
  });
});
