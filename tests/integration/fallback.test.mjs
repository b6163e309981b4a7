// routing.fallbacks end to end, against real simulators on loopback: a model whose backends are all down
// goes to its fallback at once; one whose tries are used up on retryable failures goes there after them; one
// that waited fallback_after_queue_seconds in the line moves there; never once a stream has begun; and the
// three ways to refuse it (x_fallback: false, X-Lexora-Fallback: off, rate_limits.users.USER.fallback: false).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import OpenAI from 'openai';
import {
  accessRecord, chat, health, runLexora, sseData, startSim, stats, waitFor, withLexora, writeConfig,
} from '../lib/harness.mjs';

const FAST = ['--ttft-ms', '2', '--tokens-per-sec', '0'];
const QUIET_HC = { interval_seconds: 60, failure_threshold: 10, cooldown_seconds: 30, timeout_seconds: 1 };
const ask = (extra = {}) => ({ model: 'qwen3-32b', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, ...extra });
const inference = async (sim) => (await sim.requests()).filter((r) => r.path === '/v1/chat/completions');

// primary serves qwen3-32b, spare serves claude-sonnet-4-5; qwen3-32b falls back to it.
function config(primary, spare, extra = {}) {
  return {
    server: { host: '127.0.0.1', port: 0 },
    backends: {
      gpu: { type: 'vllm', url: primary.url, models: ['qwen3-32b'], max_concurrency: 1 },
      cloud: { type: 'vllm', url: spare.url, models: ['claude-sonnet-4-5'] },
    },
    routing: { fallbacks: { 'qwen3-32b': ['claude-sonnet-4-5'] } },
    logging: { level: 'INFO', format: 'json' },
    metrics: { enabled: false, port: 9090 },
    retry: { max_attempts: 3, delay_seconds: 0.02, backoff_multiplier: 1, max_delay_seconds: 1 },
    health_check: QUIET_HC,
    usage: { enabled: false },
    rate_limits: { default: { requests_per_minute: 100000, tokens_per_minute: 100000000 } },
    ...extra,
  };
}

async function withPair(primaryArgs, fn, extra = {}) {
  const primary = await startSim([...FAST, ...primaryArgs]);
  const spare = await startSim([...FAST, '--model', 'claude-sonnet-4-5']);
  try {
    await withLexora(config(primary, spare, extra), (lx) => fn(lx, primary, spare));
  } finally {
    await primary.stop();
    await spare.stop();
  }
}

function assertFellBack(r) {
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers.get('x-lexora-model'), 'claude-sonnet-4-5');
  assert.equal(r.headers.get('x-lexora-fallback'), 'qwen3-32b');
  assert.equal(r.headers.get('x-lexora-backend'), 'cloud');
}

describe('fallback', () => {
  test('every backend of the model down: straight to its fallback, named in the answer, the log and /stats', async () => {
    const hc = { interval_seconds: 0.2, failure_threshold: 1, cooldown_seconds: 30, timeout_seconds: 1 };
    await withPair([], async (lx, primary, spare) => {
      await primary.stop();
      const gpuDown = async () => (await health(lx)).json.backends.find((b) => b.name === 'gpu').status === 'down';
      await waitFor(gpuDown, 'gpu down', { ms: 5000, stepMs: 50 });
      const r = await chat(lx, ask());
      assertFellBack(r);
      const body = (await spare.requests()).find((q) => q.path === '/v1/chat/completions').body;
      assert.equal(JSON.parse(body).model, 'claude-sonnet-4-5', 'the fallback backend is asked for its own model');
      const line = await accessRecord(lx, r.headers.get('x-request-id'));
      assert.equal(line.model, 'qwen3-32b');
      assert.equal(line.model_used, 'claude-sonnet-4-5');
      assert.equal(line.fallback_from, 'qwen3-32b');
      assert.equal((await stats(lx)).per_fallback['qwen3-32b'].requests, 1);
    }, { health_check: hc });
  });

  test('tries used up on retryable failures: the fallback after them, with tries of its own', async () => {
    await withPair(['--fail-rate', '1', '--fail-mode', '503'], async (lx, primary, spare) => {
      const r = await chat(lx, ask());
      assertFellBack(r);
      assert.equal((await inference(primary)).length, 3, 'retry.max_attempts tries on the model first');
      assert.equal((await inference(spare)).length, 1);
      const line = await accessRecord(lx, r.headers.get('x-request-id'));
      assert.equal(line.attempts, 4);
    });
  });

  test('a stream is sent to the fallback only before its first byte', async () => {
    await withPair(['--fail-first', '3', '--fail-mode', '503'], async (lx, primary, spare) => {
      const r = await chat(lx, ask({ stream: true }));
      assertFellBack(r);
      assert.equal(sseData(r.text).at(-1), '[DONE]');
      assert.equal((await inference(spare)).length, 1);
    });
    await withPair(['--tokens-per-sec', '200', '--fail-first', '1', '--fail-mode', 'midstream'], async (lx, primary, spare) => {
      const r = await chat(lx, ask({ stream: true, max_tokens: 20 }));
      assert.equal(r.status, 200);
      assert.equal(r.headers.get('x-lexora-fallback'), null);
      const events = sseData(r.text);
      assert.equal(JSON.parse(events.at(-2)).error.code, 'upstream_bad_response');
      assert.equal((await inference(spare)).length, 0, 'never once the answer has begun');
    });
  });

  test('refused by x_fallback: false, X-Lexora-Fallback: off, or the user\'s config; a bad header is 400', async () => {
    const users = { rate_limits: { default: { requests_per_minute: 100000, tokens_per_minute: 100000000 },
      users: { alice: { fallback: false } } } };
    await withPair(['--fail-rate', '1', '--fail-mode', '503'], async (lx, primary, spare) => {
      let r = await chat(lx, ask({ x_fallback: false }));
      assert.equal(r.status, 503, r.text);
      assert.equal(r.headers.get('x-lexora-fallback'), null);
      const body = (await inference(primary)).at(-1).body;
      assert.ok(!body.includes('x_fallback'), 'x_fallback is not forwarded');
      r = await chat(lx, ask(), { 'X-Lexora-Fallback': 'off' });
      assert.equal(r.status, 503);
      r = await chat(lx, ask({ x_user_id: 'alice' }));
      assert.equal(r.status, 503);
      assert.equal((await inference(spare)).length, 0);
      r = await chat(lx, ask({ x_user_id: 'bob' }), { 'X-Lexora-Fallback': 'on' });
      assertFellBack(r);
      r = await chat(lx, ask(), { 'X-Lexora-Fallback': 'maybe' });
      assert.equal(r.status, 400);
      assert.equal(r.json.error.param, 'x_fallback');
      r = await chat(lx, ask({ x_fallback: 'no' }));
      assert.equal(r.status, 400);
    }, users);
  });

  test('fallback_after_queue_seconds: a request that waited that long in the line moves to the fallback', async () => {
    await withPair(['--ttft-ms', '1500'], async (lx, primary, spare) => {
      const first = chat(lx, ask()); // holds gpu's only slot for 1.5 s
      await waitFor(async () => (await inference(primary)).length === 1, 'the first request running');
      const t0 = Date.now();
      const r = await chat(lx, ask());
      assertFellBack(r);
      assert.ok(Date.now() - t0 < 1400, 'it did not wait for the slot');
      const line = await accessRecord(lx, r.headers.get('x-request-id'));
      assert.ok(line.queue_wait_ms >= 200, `waited ${line.queue_wait_ms} ms in the line first`);
      const a = await first;
      assert.equal(a.status, 200);
      assert.equal(a.headers.get('x-lexora-fallback'), null);
    }, { routing: { fallbacks: { 'qwen3-32b': 'claude-sonnet-4-5' }, fallback_after_queue_seconds: 0.25 } });
  });

  test('no fallback configured for the model: 503 as before', async () => {
    await withPair(['--fail-rate', '1', '--fail-mode', '503'], async (lx) => {
      const r = await chat(lx, ask());
      assert.equal(r.status, 503);
      assert.equal(r.headers.get('x-lexora-fallback'), null);
    }, { routing: {} });
  });

  test('--check-config refuses a fallback to nothing, to itself, and from nothing', async () => {
    const file = writeConfig({
      backends: { gpu: { type: 'vllm', url: 'http://127.0.0.1:9', models: ['qwen3-32b'] } },
      routing: { fallbacks: { 'qwen3-32b': ['qwen3-32b', 'nope'], ghost: 'qwen3-32b' } },
    });
    const r = await runLexora(['--check-config', '--config', file]);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    const out = r.stdout + r.stderr;
    assert.match(out, /routing\.fallbacks\.qwen3-32b.*falls back to itself/);
    assert.match(out, /routing\.fallbacks\.qwen3-32b.*"nope".*a fallback to nothing/);
    assert.match(out, /routing\.fallbacks\.ghost.*"ghost" is neither/);
  });

  test('the openai SDK: the vLLM sim stopped, Claude (an anthropic backend) answers, streams and calls tools', async () => {
    const key = 'sk-ant-fallback-test';
    const gpu = await startSim(FAST);
    const claude = await startSim(['--api', 'anthropic', '--model', 'claude-sonnet-4-5', '--api-key', key, ...FAST]);
    const cfg = config(gpu, claude, {
      health_check: { interval_seconds: 0.2, failure_threshold: 1, cooldown_seconds: 30, timeout_seconds: 1 },
    });
    cfg.backends.cloud = { type: 'anthropic', url: claude.url, api_key: key, models: ['claude-sonnet-4-5'] };
    try {
      await withLexora(cfg, async (lx) => {
        await gpu.stop();
        const gpuDown = async () => (await health(lx)).json.backends.find((b) => b.name === 'gpu').status === 'down';
        await waitFor(gpuDown, 'gpu down', { ms: 5000, stepMs: 50 });
        const sdk = new OpenAI({ baseURL: `${lx.url}/v1`, apiKey: 'unused', maxRetries: 0 });
        const { data, response } = await sdk.chat.completions
          .create({ model: 'qwen3-32b', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 }).withResponse();
        assert.equal(response.headers.get('x-lexora-fallback'), 'qwen3-32b');
        assert.equal(response.headers.get('x-lexora-model'), 'claude-sonnet-4-5');
        assert.equal(data.object, 'chat.completion');
        assert.equal(data.usage.completion_tokens, 3);
        const stream = await sdk.chat.completions.create({ model: 'qwen3-32b', stream: true, max_tokens: 3,
          messages: [{ role: 'user', content: 'hi' }] });
        let text = '';
        for await (const chunk of stream) text += chunk.choices[0]?.delta?.content || '';
        assert.equal(text.trim().split(/\s+/).length, 3);
        const tools = [{ type: 'function', function: { name: 'get_weather', description: 'the weather',
          parameters: { type: 'object', properties: { input: { type: 'string' } }, required: ['input'] } } }];
        const t = await sdk.chat.completions.create({ model: 'qwen3-32b', tools, tool_choice: 'required',
          messages: [{ role: 'user', content: 'the weather in Tokyo?' }], max_tokens: 30 });
        assert.equal(t.choices[0].finish_reason, 'tool_calls');
        assert.equal(t.choices[0].message.tool_calls[0].function.name, 'get_weather');
        assert.doesNotThrow(() => JSON.parse(t.choices[0].message.tool_calls[0].function.arguments));
      });
    } finally {
      await gpu.stop();
      await claude.stop();
    }
  });
});
