// The Anthropic-compatible front (issue 16): the official @anthropic-ai/sdk against Lexora's /v1/messages with
// lexora-sim (vLLM's OpenAI API) behind it — plain answers, streams through the SDK's helpers, tool use both ways,
// count_tokens, x-api-key and bearer auth, errors in Anthropic's shape (401, 429 with retry-after, 400, a backend
// failure before and after the stream began), and the same usage in stats and the ledger as the answer reports.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import {
  MODEL, accessRecord, configFor, needs, post, sleep, startLexora, startSim, stats, waitFor, withLexora,
} from '../lib/harness.mjs';
import { hasCommand } from '../lib/metrics.mjs';

const unlimited = { default: { requests_per_minute: 0, tokens_per_minute: 0 } };
const client = (lx, opts = {}) => new Anthropic({ baseURL: lx.url, apiKey: 'unused', maxRetries: 0, ...opts });
const ask = (text = 'Hello there', extra = {}) => ({
  model: MODEL, max_tokens: 5, messages: [{ role: 'user', content: text }], ...extra,
});
const weather = {
  name: 'get_weather',
  description: 'The weather in a city',
  input_schema: { type: 'object', properties: { input: { type: 'string' } }, required: ['input'] },
};
const haveSqlite = hasCommand('sqlite3', ['-version']);
const waitForRunning = (sim) => waitFor(async () => (await sim.stats()).running > 0, 'a request running on the sim');

/** Anthropic events of an SSE body: [{event, data}] */
function events(text) {
  return text.split('\n\n').filter((b) => b.trim()).map((b) => {
    const ev = /^event: (.*)$/m.exec(b)?.[1];
    const data = /^data: (.*)$/m.exec(b)?.[1];
    return { event: ev, data: data && JSON.parse(data) };
  });
}

describe('Anthropic front, vLLM behind', () => {
  let sim;
  let dir;
  let lx;
  before(async () => {
    sim = await startSim(['--model', MODEL, '--ttft-ms', '2', '--tokens-per-sec', '0']);
    dir = mkdtempSync(path.join(os.tmpdir(), 'lexora-anthropic-'));
    lx = await startLexora(configFor(sim.url, {
      extra: { rate_limits: unlimited, usage: { db_path: path.join(dir, 'usage.db') } },
    }));
  });
  after(async () => {
    await lx?.stop();
    await sim?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('a plain message: the SDK reads an Anthropic message; stats count the same usage', async () => {
    const before = await stats(lx);
    const { data: msg, response } = await client(lx).messages.create(ask('Hello there', {
      system: [{ type: 'text', text: 'Be terse.', cache_control: { type: 'ephemeral' } }],
      temperature: 0.2, stop_sequences: ['\n\n'], metadata: { user_id: 'u1' },
    })).withResponse();
    assert.equal(msg.type, 'message');
    assert.equal(msg.role, 'assistant');
    assert.equal(msg.model, MODEL);
    assert.match(msg.id, /^msg_/);
    assert.equal(msg.content.length, 1);
    assert.equal(msg.content[0].type, 'text');
    assert.ok(msg.content[0].text.length > 0);
    assert.equal(msg.stop_reason, 'max_tokens');
    assert.equal(msg.usage.output_tokens, 5);
    assert.ok(msg.usage.input_tokens > 0);
    assert.equal(response.headers.get('x-lexora-backend'), 'vllm');
    const rec = await accessRecord(lx, response.headers.get('x-request-id'));
    assert.equal(rec.path, '/v1/messages');
    assert.equal(rec.prompt_tokens, msg.usage.input_tokens);
    assert.equal(rec.completion_tokens, msg.usage.output_tokens);
    const after = await stats(lx);
    assert.equal(after.total_requests, before.total_requests + 1);
    assert.equal(after.total_tokens - before.total_tokens, msg.usage.input_tokens + msg.usage.output_tokens);
    // the sim saw an OpenAI chat request: system first, the user's message, max_tokens and stop translated
    const seen = (await sim.requests()).at(-1);
    assert.equal(seen.path, '/v1/chat/completions');
    const body = JSON.parse(seen.body);
    assert.deepEqual(body.messages, [{ role: 'system', content: 'Be terse.' }, { role: 'user', content: 'Hello there' }]);
    assert.equal(body.max_tokens, 5);
    assert.deepEqual(body.stop, ['\n\n']);
    assert.equal(body.user, 'u1');
    assert.equal(body.temperature, 0.2);
  });

  test('a stream: the SDK\'s helpers see text as it comes and a final message with usage', async () => {
    const stream = client(lx).messages.stream(ask('Tell me more', { max_tokens: 6 }));
    let text = '';
    stream.on('text', (t) => { text += t; });
    const msg = await stream.finalMessage();
    assert.equal(msg.content[0].type, 'text');
    assert.equal(msg.content[0].text, text);
    assert.equal(text.trim().split(/\s+/).length, 6);
    assert.equal(msg.stop_reason, 'max_tokens');
    assert.equal(msg.usage.output_tokens, 6);
    assert.ok(msg.usage.input_tokens > 0);
  });

  test('the raw event sequence is Anthropic\'s, in order', async () => {
    const r = await post(`${lx.url}/v1/messages`, ask('Hi', { stream: true, max_tokens: 3 }),
      { 'x-request-id': 'anth-raw' });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /^text\/event-stream/);
    const evs = events(r.text);
    assert.deepEqual(evs.map((e) => e.event), ['message_start', 'content_block_start', 'content_block_delta',
      'content_block_delta', 'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop']);
    for (const e of evs) assert.equal(e.data.type, e.event);
    assert.equal(evs.at(-2).data.usage.output_tokens, 3);
    const rec = await accessRecord(lx, 'anth-raw');
    assert.equal(rec.completion_tokens, 3, 'usage read from the OpenAI stream before translation');
    assert.equal(rec.prompt_tokens, evs.at(-2).data.usage.input_tokens);
  });

  test('tools: a tool_use answer, whole and streamed, and the tool_result round trip', async () => {
    const c = client(lx);
    const q = 'Please call get_weather for Paris';
    const msg = await c.messages.create(ask(q, { max_tokens: 50, tools: [weather] }));
    assert.equal(msg.stop_reason, 'tool_use');
    const use = msg.content.find((b) => b.type === 'tool_use');
    assert.equal(use.name, 'get_weather');
    assert.deepEqual(use.input, { input: q });

    const stream = c.messages.stream(ask(q, { max_tokens: 50, tools: [weather], tool_choice: { type: 'any' } }));
    let partial = '';
    stream.on('inputJson', (delta) => { partial += delta; });
    const streamed = await stream.finalMessage();
    assert.equal(streamed.stop_reason, 'tool_use');
    const su = streamed.content.find((b) => b.type === 'tool_use');
    assert.deepEqual(su.input, { input: q });
    assert.deepEqual(JSON.parse(partial), { input: q });

    const answer = await c.messages.create({
      model: MODEL, max_tokens: 4, tools: [weather],
      messages: [
        { role: 'user', content: q },
        { role: 'assistant', content: msg.content },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: 'sunny, 21 C' }] },
      ],
    });
    assert.equal(answer.stop_reason, 'max_tokens');
    assert.equal(answer.content[0].type, 'text');
    const sent = JSON.parse((await sim.requests()).at(-1).body);
    assert.deepEqual(sent.messages.slice(1), [
      { role: 'assistant', content: null, tool_calls: [{ id: use.id, type: 'function',
        function: { name: 'get_weather', arguments: JSON.stringify({ input: q }) } }] },
      { role: 'tool', tool_call_id: use.id, content: 'sunny, 21 C' },
    ]);
    assert.equal(sent.tools[0].function.name, 'get_weather');
    assert.deepEqual(sent.tools[0].function.parameters, weather.input_schema);
  });

  test('count_tokens: Lexora\'s estimate, no backend request, no stats', async () => {
    const before = await stats(lx);
    const simBefore = (await sim.stats()).received;
    const c = client(lx);
    const short = await c.messages.countTokens({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] });
    const long = await c.messages.countTokens({
      model: MODEL, system: 'Be terse.', tools: [weather],
      messages: [{ role: 'user', content: 'a much longer question about the weather in Paris, '.repeat(20) }],
    });
    assert.ok(short.input_tokens > 0);
    assert.ok(long.input_tokens > short.input_tokens + 200, `${long.input_tokens} vs ${short.input_tokens}`);
    assert.equal((await sim.stats()).received, simBefore);
    assert.equal((await stats(lx)).total_requests, before.total_requests);
    await assert.rejects(c.messages.countTokens({ model: 'nope', messages: [{ role: 'user', content: 'hi' }] }),
      (e) => e instanceof Anthropic.NotFoundError && e.error.error.type === 'not_found_error');
  });

  test('400 in Anthropic\'s shape naming the field; nothing reaches the backend', async () => {
    const simBefore = (await sim.stats()).received;
    const c = client(lx);
    await assert.rejects(c.messages.create(ask('hi', { thinking: { type: 'enabled', budget_tokens: 1024 } })), (e) => {
      assert.ok(e instanceof Anthropic.BadRequestError, String(e));
      assert.equal(e.error.type, 'error');
      assert.equal(e.error.error.type, 'invalid_request_error');
      assert.match(e.error.error.message, /^thinking: /);
      return true;
    });
    const r = await post(`${lx.url}/v1/messages`, { model: MODEL, messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(r.status, 400);
    assert.deepEqual(r.json, { type: 'error', error: { type: 'invalid_request_error', message: 'max_tokens: Field required' } });
    const bad = await post(`${lx.url}/v1/messages`, '{"model":');
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.type, 'invalid_request_error');
    const get = await fetch(`${lx.url}/v1/messages`);
    assert.equal(get.status, 405);
    assert.equal(get.headers.get('allow'), 'POST');
    assert.deepEqual(await get.json(), { type: 'error', error: { type: 'invalid_request_error',
      message: 'Method GET is not allowed here; use POST' } });
    const unknown = await post(`${lx.url}/v1/messages`, ask('hi', { model: 'nope' }));
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json.error.type, 'not_found_error');
    assert.equal((await sim.stats()).received, simBefore);
  });

  test('x_priority in the body still sets the priority; the ledger has the row with the usage', {
    skip: needs(haveSqlite, 'the sqlite3 command'),
  }, async () => {
    const r = await post(`${lx.url}/v1/messages`, ask('Hello', { x_priority: 'high', x_user_id: 'carol' }),
      { 'x-request-id': 'anth-ledger' });
    assert.equal(r.status, 200);
    const rec = await accessRecord(lx, 'anth-ledger');
    assert.equal(rec.priority, 'high');
    assert.equal(rec.user, 'carol');
    const db = path.join(dir, 'usage.db');
    let row;
    for (let i = 0; i < 60 && !row; i++) {
      const out = spawnSync('sqlite3', ['-json', '-readonly', db,
        "SELECT * FROM usage WHERE request_id = 'anth-ledger'"], { encoding: 'utf8' }).stdout.trim();
      row = out ? JSON.parse(out)[0] : undefined;
      if (!row) await sleep(50);
    }
    assert.ok(row, 'the ledger row');
    assert.equal(row.user, 'carol');
    assert.equal(row.priority, 'high');
    assert.equal(row.prompt_tokens, r.json.usage.input_tokens);
    assert.equal(row.completion_tokens, r.json.usage.output_tokens);
  });
});

describe('Anthropic front: auth, limits, failures', () => {
  let sim;
  before(async () => { sim = await startSim(['--model', MODEL, '--ttft-ms', '1', '--tokens-per-sec', '0']); });
  after(async () => { await sim?.stop(); });

  test('auth on: x-api-key (the SDK\'s apiKey) or a bearer token (authToken); none or wrong → 401', async () => {
    const sha = createHash('sha256').update('sk-dave-secret').digest('hex');
    await withLexora(configFor(sim.url, {
      extra: { rate_limits: unlimited, auth: { enabled: true, keys: [{ key_sha256: sha, user: 'dave' }] } },
    }), async (lx) => {
      const { response } = await client(lx, { apiKey: 'sk-dave-secret' }).messages.create(ask()).withResponse();
      assert.equal((await accessRecord(lx, response.headers.get('x-request-id'))).user, 'dave');
      const viaBearer = await client(lx, { apiKey: null, authToken: 'sk-dave-secret' }).messages.countTokens({
        model: MODEL, messages: [{ role: 'user', content: 'hi' }],
      });
      assert.ok(viaBearer.input_tokens > 0);
      await assert.rejects(client(lx, { apiKey: 'sk-wrong' }).messages.create(ask()), (e) => {
        assert.ok(e instanceof Anthropic.AuthenticationError, String(e));
        assert.equal(e.error.error.type, 'authentication_error');
        assert.ok(!JSON.stringify(e.error).includes('sk-wrong'));
        return true;
      });
      const none = await post(`${lx.url}/v1/messages`, ask());
      assert.equal(none.status, 401);
      assert.equal(none.json.type, 'error');
      assert.equal(none.json.error.type, 'authentication_error');
    });
  });

  test('429 from Lexora\'s own rate limit: rate_limit_error with retry-after', async () => {
    await withLexora(configFor(sim.url, {
      extra: { rate_limits: { default: { requests_per_minute: 1, tokens_per_minute: 0 } } },
    }), async (lx) => {
      const c = client(lx);
      await c.messages.create(ask());
      await assert.rejects(c.messages.create(ask()), (e) => {
        assert.ok(e instanceof Anthropic.RateLimitError, String(e));
        assert.equal(e.status, 429);
        assert.equal(e.error.error.type, 'rate_limit_error');
        assert.ok(Number(e.headers.get('retry-after')) >= 1);
        assert.ok(e.headers.get('x-ratelimit-remaining-requests') !== null);
        return true;
      });
    });
  });

  test('the queue: 504 queue_timeout and 503 queue_full in Anthropic\'s shape, Retry-After kept', async () => {
    const slow = await startSim(['--model', MODEL, '--ttft-ms', '1', '--tokens-per-sec', '20']);
    try {
      await withLexora(configFor(slow.url, {
        extra: {
          backends: { vllm: { url: slow.url, models: [MODEL], max_concurrency: 1 } },
          queue: { max_size: 1, default_timeout: 30 }, rate_limits: unlimited,
        },
      }), async (lx) => {
        const busy = post(`${lx.url}/v1/messages`, ask('long', { max_tokens: 40 })); // about 2 s
        await waitForRunning(slow);
        const waiting = post(`${lx.url}/v1/messages`, ask('late', { x_timeout: 0.5 }));
        await sleep(100);
        const full = await post(`${lx.url}/v1/messages`, ask('no room'));
        assert.equal(full.status, 503, full.text);
        assert.deepEqual(Object.keys(full.json), ['type', 'error']);
        assert.equal(full.json.error.type, 'overloaded_error');
        assert.ok(Number(full.headers.get('retry-after')) >= 1);
        const late = await waiting;
        assert.equal(late.status, 504, late.text);
        assert.equal(late.json.type, 'error');
        assert.equal(late.json.error.type, 'api_error');
        assert.match(late.json.error.message, /free slot/);
        assert.equal((await busy).status, 200);
      });
    } finally {
      await slow.stop();
    }
  });

  test('a backend failure: api_error before the answer began, an error event after', async () => {
    const failing = await startSim(['--model', MODEL, '--ttft-ms', '1', '--tokens-per-sec', '0',
      '--fail-rate', '1', '--fail-mode', '500']);
    const cutting = await startSim(['--model', MODEL, '--ttft-ms', '1', '--tokens-per-sec', '200',
      '--fail-rate', '1', '--fail-mode', 'midstream']);
    try {
      await withLexora(configFor(failing.url, { extra: { rate_limits: unlimited, retry: { max_attempts: 1 } } }),
        async (lx) => {
          await assert.rejects(client(lx).messages.create(ask()), (e) => {
            assert.ok(e instanceof Anthropic.InternalServerError, String(e));
            assert.equal(e.status, 500);
            assert.equal(e.error.type, 'error');
            assert.equal(e.error.error.type, 'api_error');
            return true;
          });
        });
      await withLexora(configFor(cutting.url, { extra: { rate_limits: unlimited, retry: { max_attempts: 1 } } }),
        async (lx) => {
          const r = await post(`${lx.url}/v1/messages`, ask('hi', { stream: true, max_tokens: 50 }));
          assert.equal(r.status, 200);
          const evs = events(r.text);
          assert.equal(evs[0].event, 'message_start');
          assert.equal(evs.at(-1).event, 'error');
          assert.equal(evs.at(-1).data.error.type, 'api_error');
          assert.ok(!evs.some((e) => e.event === 'message_stop'));
          await assert.rejects(client(lx).messages.stream(ask('hi', { max_tokens: 50 })).finalMessage(),
            (e) => e instanceof Anthropic.APIError || /api_error|backend/.test(String(e)));
        });
    } finally {
      await failing.stop();
      await cutting.stop();
    }
  });
});

describe('Anthropic front, other backend kinds behind (their streams translated to OpenAI first)', () => {
  for (const [api, model] of [['ollama', 'llama3.2:latest'], ['llamacpp', 'qwen2.5-7b-instruct']]) {
    test(`type: ${api}: a message and a stream through the SDK, usage as the backend reports it`, async () => {
      const sim = await startSim(['--api', api, '--model', model, '--ttft-ms', '1', '--tokens-per-sec', '0']);
      try {
        await withLexora(configFor(sim.url, {
          models: [model],
          extra: { backends: { local: { type: api, url: sim.url, models: [model] } }, rate_limits: unlimited },
        }), async (lx) => {
          const c = client(lx);
          const { data: msg, response } = await c.messages.create({ ...ask('Hello there'), model }).withResponse();
          assert.equal(msg.content[0].type, 'text');
          assert.equal(msg.usage.output_tokens, 5);
          const rec = await accessRecord(lx, response.headers.get('x-request-id'));
          assert.equal(rec.completion_tokens, 5);
          assert.equal(rec.prompt_tokens, msg.usage.input_tokens);
          const stream = c.messages.stream({ ...ask('Hello again', { max_tokens: 4 }), model });
          let text = '';
          stream.on('text', (t) => { text += t; });
          const fin = await stream.finalMessage();
          assert.equal(fin.content[0].text, text);
          assert.equal(text.trim().split(/\s+/).length, 4);
          assert.equal(fin.stop_reason, 'max_tokens');
          assert.equal(fin.usage.output_tokens, 4);
        });
      } finally {
        await sim.stop();
      }
    });
  }
});

describe('Anthropic front, an anthropic backend behind: passed on as it is', () => {
  const KEY = 'sk-ant-test-passthrough';
  let sim;
  let lx;
  before(async () => {
    sim = await startSim(['--api', 'anthropic', '--model', 'claude-up', '--api-key', KEY, '--ttft-ms', '1',
      '--tokens-per-sec', '0']);
    lx = await startLexora(configFor(sim.url, {
      models: ['claude-sonnet-4-5'],
      extra: {
        backends: {
          claude: { type: 'anthropic', url: sim.url, api_key: KEY,
            models: [{ name: 'claude-sonnet-4-5', upstream_name: 'claude-up' }] },
        },
        rate_limits: unlimited,
      },
    }));
  });
  after(async () => {
    await lx?.stop();
    await sim?.stop();
  });

  test('the request goes on as it came (model renamed, its headers kept); the answer comes back untranslated', async () => {
    const body = {
      model: 'claude-sonnet-4-5', max_tokens: 6, x_priority: 'high',
      system: [{ type: 'text', text: 'Be terse.', cache_control: { type: 'ephemeral' } }],
      messages: [{ role: 'user', content: [{ type: 'text', text: 'Hello', cache_control: { type: 'ephemeral' } }] }],
    };
    const r = await post(`${lx.url}/v1/messages`, body, { 'anthropic-version': '2023-06-01', 'anthropic-beta': 'prompt-caching-2024-07-31' });
    assert.equal(r.status, 200, r.text);
    const seen = (await sim.requests()).filter((q) => q.path === '/v1/messages').at(-1);
    const sent = JSON.parse(seen.body);
    const { x_priority, ...rest } = body;
    assert.equal(x_priority, 'high');
    assert.deepEqual(sent, { ...rest, model: 'claude-up' }, 'the body as it came, cache_control kept, x_* dropped');
    assert.equal(seen.headers['anthropic-beta'], 'prompt-caching-2024-07-31');
    assert.equal(seen.headers['x-api-key'], KEY);
    assert.equal(r.json.type, 'message');
    assert.ok(!r.json.id.startsWith('msg_req_'), 'the backend\'s own message, not a translation');
    const rec = await accessRecord(lx, r.headers.get('x-request-id'));
    assert.equal(rec.completion_tokens, r.json.usage.output_tokens);
    assert.equal(rec.prompt_tokens, r.json.usage.input_tokens);
  });

  test('a stream is relayed event for event, its usage counted; the SDK reads it', async () => {
    const c = client(lx);
    const stream = c.messages.stream({ model: 'claude-sonnet-4-5', max_tokens: 4, messages: [{ role: 'user', content: 'Hi' }] });
    let text = '';
    stream.on('text', (t) => { text += t; });
    const fin = await stream.finalMessage();
    assert.equal(fin.content[0].text, text);
    assert.equal(fin.usage.output_tokens, 4);
    const raw = await post(`${lx.url}/v1/messages`, { model: 'claude-sonnet-4-5', max_tokens: 3, stream: true,
      messages: [{ role: 'user', content: 'Hi' }] });
    const evs = events(raw.text);
    assert.equal(evs[0].event, 'message_start');
    assert.equal(evs.at(-1).event, 'message_stop');
    const rec = await accessRecord(lx, raw.headers.get('x-request-id'));
    assert.equal(rec.completion_tokens, 3);
    assert.ok(rec.prompt_tokens > 0);
  });

  test('the backend\'s errors come back in its own shape, with its status', async () => {
    await sim.control({ fail_rate: 1, fail_mode: '400' });
    try {
      const r = await post(`${lx.url}/v1/messages`, { model: 'claude-sonnet-4-5', max_tokens: 3,
        messages: [{ role: 'user', content: 'Hi' }] });
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json.type, 'error');
      assert.equal(r.json.error.type, 'invalid_request_error');
    } finally {
      await sim.control({ fail_rate: 0 });
    }
  });
});
