// A backend of type anthropic, for real: the official openai SDK → the gateway → lexora-sim --api anthropic
// (Anthropic's Messages API, x-api-key checked). Chat whole and streamed, tool use whole and streamed (and
// the tool's result sent back), 429 and 529 retried before any byte, an error event mid-stream, completions
// and embeddings refused, a field Anthropic cannot express refused by name, usage in /stats and the ledger,
// and the key never shown: not in logs, /health, /stats, error answers, --check-config or a reload's report.
// https:// with ca_file / tls_verify is tests/integration/tls_backend.test.mjs. Every wait is bounded.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import {
  configFor, health, needs, post, runLexora, sseData, startLexora, startSim, stats, waitFor,
} from '../lib/harness.mjs';
import { hasCommand } from '../lib/metrics.mjs';

const MODEL = 'claude-sonnet-4-5';
const KEY = `sk-ant-lexora-test-${process.pid}-${Date.now().toString(36)}`;
const HC = { interval_seconds: 0.2, failure_threshold: 3, cooldown_seconds: 0.2, timeout_seconds: 1 };
const unlimited = { default: { requests_per_minute: 0, tokens_per_minute: 0 } };
const weather = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'The weather of a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};
const haveSqlite = hasCommand('sqlite3', ['-version']);

describe('type: anthropic', () => {
  let sim;
  let lx;
  let dir;
  let db;
  let client;
  let config;
  before(async () => {
    sim = await startSim(['--api', 'anthropic', '--model', MODEL, '--api-key', KEY, '--ttft-ms', '5',
      '--tokens-per-sec', '1000', '--default-max-tokens', '8']);
    dir = mkdtempSync(path.join(os.tmpdir(), 'lexora-anthropic-'));
    const keyFile = path.join(dir, 'anthropic.key');
    writeFileSync(keyFile, `${KEY}\n`, { mode: 0o600 });
    db = path.join(dir, 'usage.db');
    config = configFor(sim.url, {
      models: [MODEL],
      extra: {
        backends: { claude: { type: 'anthropic', url: sim.url, models: [MODEL], api_key_file: keyFile, default_max_tokens: 100 } },
        rate_limits: unlimited,
        health_check: HC,
        retry: { max_attempts: 3, delay_seconds: 0.05, max_delay_seconds: 5 },
        usage: { db_path: db },
        logging: { level: 'DEBUG' },
      },
    });
    lx = await startLexora(config);
    client = new OpenAI({ baseURL: `${lx.url}/v1`, apiKey: 'not-the-backend-key', maxRetries: 0 });
  });
  after(async () => {
    await lx?.stop();
    await sim?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const lastInference = async () => (await sim.requests()).filter((r) => r.path === '/v1/messages').at(-1);

  test('the health check reaches GET /v1/models with the key', async () => {
    await waitFor(async () => (await health(lx)).json.backends.find((b) => b.name === 'claude')?.status === 'up',
      'the anthropic backend up', { ms: 5000 });
    const probes = (await sim.requests()).filter((r) => r.path === '/v1/models');
    assert.ok(probes.length > 0);
    assert.equal(probes.at(-1).headers['x-api-key'], KEY);
    assert.equal(probes.at(-1).headers['anthropic-version'], '2023-06-01');
  });

  test('chat: the Messages API upstream, a chat.completion back', async () => {
    const r = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'system', content: 'Be terse.' }, { role: 'user', content: 'Hello there' }],
      max_tokens: 4,
      temperature: 0.3,
      user: 'alice',
    });
    assert.equal(r.object, 'chat.completion');
    assert.match(r.id, /^msg_/);
    assert.equal(r.model, MODEL);
    assert.equal(r.choices[0].message.role, 'assistant');
    assert.equal(r.choices[0].message.content.trim().split(' ').length, 4);
    assert.equal(r.choices[0].finish_reason, 'length', 'max_tokens → length');
    assert.equal(r.usage.completion_tokens, 4);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + 4);
    const seen = await lastInference();
    assert.equal(seen.headers['x-api-key'], KEY);
    assert.equal(seen.headers['anthropic-version'], '2023-06-01');
    assert.equal(seen.headers.authorization, undefined);
    assert.deepEqual(JSON.parse(seen.body), {
      model: MODEL, max_tokens: 4, system: [{ type: 'text', text: 'Be terse.' }],
      messages: [{ role: 'user', content: [{ type: 'text', text: 'Hello there' }] }],
      temperature: 0.3, metadata: { user_id: 'alice' },
    });
    // the client's anthropic-beta header is passed on
    const b = await post(`${lx.url}/v1/chat/completions`, { model: MODEL, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 },
      { 'anthropic-beta': 'prompt-caching-2024-07-31' });
    assert.equal(b.status, 200, b.text);
    assert.equal((await lastInference()).headers['anthropic-beta'], 'prompt-caching-2024-07-31');
    assert.equal(seen.headers['anthropic-beta'], undefined);
    // no max_tokens: the backend's default_max_tokens (100); the sim stops by itself (end_turn → stop)
    const d = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }] });
    assert.equal(d.choices[0].finish_reason, 'stop');
    assert.equal(JSON.parse((await lastInference()).body).max_tokens, 100);
  });

  test('stream: events translated as they come, usage on request, [DONE] at the end', async () => {
    const stream = await client.chat.completions.create({
      model: MODEL, messages: [{ role: 'user', content: 'Hello there' }], max_tokens: 5, stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    const text = chunks.map((c) => c.choices[0]?.delta?.content || '').join('');
    assert.equal(text.trim().split(' ').length, 5);
    assert.equal(chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0].finish_reason, 'length');
    const last = chunks.at(-1);
    assert.deepEqual(last.choices, []);
    assert.equal(last.usage.completion_tokens, 5);
    assert.ok(last.usage.prompt_tokens >= 1);
    assert.equal(JSON.parse((await lastInference()).body).stream, true);

    // without include_usage: no usage chunk reaches the client
    const raw = await post(`${lx.url}/v1/chat/completions`,
      { model: MODEL, messages: [{ role: 'user', content: 'Hello there' }], max_tokens: 3, stream: true });
    assert.equal(raw.status, 200);
    const data = sseData(raw.text);
    assert.equal(data.at(-1), '[DONE]');
    assert.ok(data.slice(0, -1).every((d) => JSON.parse(d).usage === undefined), raw.text);
  });

  test('tools: a tool call whole, then its result sent back as tool_result', async () => {
    const r = await client.chat.completions.create({
      model: MODEL, messages: [{ role: 'user', content: 'What is the weather? Use get_weather.' }], tools: [weather],
      tool_choice: 'auto', parallel_tool_calls: false,
    });
    const call = r.choices[0].message.tool_calls?.[0];
    assert.equal(r.choices[0].finish_reason, 'tool_calls');
    assert.equal(r.choices[0].message.content, 'Let me check.');
    assert.equal(call.type, 'function');
    assert.equal(call.function.name, 'get_weather');
    assert.deepEqual(JSON.parse(call.function.arguments), { city: 'lexora' });
    assert.match(call.id, /^toolu_/);
    const sent = JSON.parse((await lastInference()).body);
    assert.deepEqual(sent.tools, [{ name: 'get_weather', description: 'The weather of a city', input_schema: weather.function.parameters }]);
    assert.deepEqual(sent.tool_choice, { type: 'auto', disable_parallel_tool_use: true });

    const follow = await client.chat.completions.create({
      model: MODEL, tools: [weather], max_tokens: 3,
      messages: [
        { role: 'user', content: 'What is the weather? Use get_weather.' },
        r.choices[0].message,
        { role: 'tool', tool_call_id: call.id, content: '18 C and sunny' },
      ],
    });
    assert.equal(follow.choices[0].finish_reason, 'length');
    assert.ok(follow.choices[0].message.content.length > 0);
    const back = JSON.parse((await lastInference()).body);
    assert.deepEqual(back.messages[1], {
      role: 'assistant',
      content: [{ type: 'text', text: 'Let me check.' }, { type: 'tool_use', id: call.id, name: 'get_weather', input: { city: 'lexora' } }],
    });
    assert.deepEqual(back.messages[2], { role: 'user', content: [{ type: 'tool_result', tool_use_id: call.id, content: '18 C and sunny' }] });
  });

  test('tools streamed: input_json_delta pieces become tool_calls argument deltas', async () => {
    const stream = await client.chat.completions.create({
      model: MODEL, messages: [{ role: 'user', content: 'Weather please: get_weather' }], tools: [weather],
      tool_choice: 'required', stream: true,
    });
    const calls = [];
    let finish;
    let pieces = 0;
    for await (const c of stream) {
      for (const tc of c.choices[0]?.delta?.tool_calls || []) {
        calls[tc.index] ??= { id: tc.id, name: tc.function?.name, args: '' };
        if (tc.function?.arguments) {
          calls[tc.index].args += tc.function.arguments;
          pieces++;
        }
      }
      finish = c.choices[0]?.finish_reason || finish;
    }
    assert.equal(finish, 'tool_calls');
    assert.equal(calls.length, 1);
    assert.equal(calls[0].name, 'get_weather');
    assert.match(calls[0].id, /^toolu_/);
    assert.ok(pieces >= 2, `the arguments came in ${pieces} pieces`);
    assert.deepEqual(JSON.parse(calls[0].args), { city: 'lexora' });
    assert.deepEqual(JSON.parse((await lastInference()).body).tool_choice, { type: 'any' });
  });

  for (const mode of ['429', '529']) {
    test(`${mode} is retried before any byte, then the answer passes`, async () => {
      const before = (await sim.stats()).failed;
      await sim.control({ fail_mode: mode, fail_first: 1 });
      const t0 = Date.now();
      const r = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 });
      assert.equal(r.usage.completion_tokens, 2);
      assert.equal((await sim.stats()).failed, before + 1, 'one injected failure, then the retry');
      if (mode === '429') assert.ok(Date.now() - t0 >= 900, `the sim's Retry-After: 1 was honoured (${Date.now() - t0} ms)`);
    });
  }

  test('429 and 529 with no retry left reach the client in OpenAI\'s envelope, Retry-After kept', async () => {
    await sim.control({ fail_mode: '429', fail_first: 5 });
    const r = await post(`${lx.url}/v1/chat/completions`, { model: MODEL, messages: [{ role: 'user', content: 'Hi' }], x_timeout: 1 });
    await sim.control({ fail_first: 0 });
    assert.equal(r.status, 429, r.text);
    assert.equal(r.json.error.code, 'rate_limit_exceeded');
    assert.match(r.json.error.message, /Simulated failure/);
    assert.equal(r.headers.get('retry-after'), '1');

    await sim.control({ fail_mode: '529', fail_first: 5 });
    const o = await post(`${lx.url}/v1/chat/completions`, { model: MODEL, messages: [{ role: 'user', content: 'Hi' }] });
    await sim.control({ fail_first: 0, fail_mode: '503' });
    assert.equal(o.status, 529, o.text);
    assert.equal(o.json.error.code, 'overloaded');
    assert.equal(o.json.error.type, 'server_error');
    await new Promise((r) => setTimeout(r, 300)); // the circuit those failures opened (cooldown 0.2 s) closes
  });

  test('an error event mid-stream: OpenAI\'s error event, and the request counted failed', async () => {
    const before = await stats(lx);
    await sim.control({ fail_mode: 'midstream', fail_first: 1 });
    const r = await post(`${lx.url}/v1/chat/completions`,
      { model: MODEL, messages: [{ role: 'user', content: 'Hello there' }], max_tokens: 6, stream: true });
    await sim.control({ fail_mode: '503' });
    assert.equal(r.status, 200);
    const data = sseData(r.text);
    assert.equal(data.at(-1), '[DONE]');
    const err = JSON.parse(data.at(-2));
    assert.equal(err.error.code, 'overloaded');
    assert.match(err.error.message, /Overloaded/);
    const words = data.slice(0, -2).map((d) => JSON.parse(d).choices[0]?.delta?.content || '').join('');
    assert.equal(words.trim().split(' ').length, 3, 'the tokens before the error reached the client');
    const after = await waitFor(async () => {
      const s = await stats(lx);
      return s.total_errors > before.total_errors ? s : null;
    }, 'the failed stream counted', { ms: 3000 });
    assert.equal(after.total_errors, before.total_errors + 1);

    // the SDK raises it
    await sim.control({ fail_mode: 'midstream', fail_first: 1 });
    const stream = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }], stream: true });
    await assert.rejects(async () => {
      for await (const c of stream) assert.ok(c);
    }, /Overloaded/);
    await sim.control({ fail_mode: '503', fail_first: 0 });
  });

  test('completions and embeddings: a clear 400', async () => {
    await assert.rejects(client.completions.create({ model: MODEL, prompt: 'Hi' }),
      (e) => e.status === 400 && /serves only \/v1\/chat\/completions/.test(e.message) && /\/v1\/completions/.test(e.message));
    await assert.rejects(client.embeddings.create({ model: MODEL, input: 'Hi' }),
      (e) => e.status === 400 && /serves only \/v1\/chat\/completions/.test(e.message));
  });

  test('a field Anthropic cannot express: 400 naming it, nothing sent', async () => {
    const sent = (await sim.requests()).length;
    for (const [field, value] of [['n', 2], ['seed', 7], ['logprobs', true], ['presence_penalty', 0.5],
      ['response_format', { type: 'json_schema', json_schema: { name: 'x', schema: {} } }]]) {
      await assert.rejects(
        client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }], [field]: value }),
        (e) => e.status === 400 && e.param === field && e.code === 'invalid_value' && e.message.includes(field), field);
    }
    const r = await post(`${lx.url}/v1/chat/completions`, {
      model: MODEL, messages: [{ role: 'user', content: [{ type: 'input_audio', input_audio: { data: 'x', format: 'wav' } }] }],
    });
    assert.equal(r.status, 400);
    assert.match(r.json.error.message, /messages\[0\]\.content\[0\]: a part of type "input_audio"/);
    assert.equal((await sim.requests()).filter((q) => q.path === '/v1/messages').length,
      (await sim.requests()).slice(0, sent).filter((q) => q.path === '/v1/messages').length, 'nothing reached the backend');
  });

  test('usage is counted in /stats and written to the ledger', { skip: needs(haveSqlite, 'the sqlite3 command') }, async () => {
    const r = await post(`${lx.url}/v1/chat/completions`,
      { model: MODEL, messages: [{ role: 'user', content: 'Hello there' }], max_tokens: 3, x_user_id: 'ledger-u' },
      { 'x-request-id': 'anth-ledger-1' });
    assert.equal(r.status, 200);
    const s = await stats(lx);
    assert.equal(s.per_user['ledger-u'].completion_tokens, 3);
    assert.equal(s.per_user['ledger-u'].prompt_tokens, r.json.usage.prompt_tokens);
    assert.ok(s.per_backend.claude.completion_tokens >= 3);
    const row = await waitFor(() => {
      const q = spawnSync('sqlite3', ['-json', '-readonly', db, "SELECT * FROM usage WHERE request_id = 'anth-ledger-1'"], { encoding: 'utf8' });
      return q.status === 0 && q.stdout.trim() ? JSON.parse(q.stdout)[0] : null;
    }, 'the ledger row', { ms: 3000 });
    assert.equal(row.backend, 'claude');
    assert.equal(row.model, MODEL);
    assert.equal(row.completion_tokens, 3);
    assert.equal(row.prompt_tokens, r.json.usage.prompt_tokens);
  });

  test('the key is never shown: logs, /health, /stats, errors, --check-config, reload', async () => {
    const bodies = [
      await (await fetch(`${lx.url}/health`)).text(),
      await (await fetch(`${lx.url}/stats`)).text(),
      (await post(`${lx.url}/v1/embeddings`, { model: MODEL, input: 'x' })).text,
      (await post(`${lx.url}/admin/reload`, '')).text,
    ];
    const check = await runLexora(['--check-config', '--config', lx.file]);
    assert.equal(check.code, 0, check.stderr);
    bodies.push(check.stdout, check.stderr);
    // a key the backend refuses: its 401 reaches the client, still without any key in it
    const badDir = mkdtempSync(path.join(os.tmpdir(), 'lexora-anthropic-bad-'));
    const badKey = path.join(badDir, 'k');
    const wrong = `${KEY}-wrong`;
    writeFileSync(badKey, wrong);
    const lx2 = await startLexora({ ...config, backends: { claude: { ...config.backends.claude, api_key_file: badKey } }, usage: { enabled: false } });
    try {
      const r = await post(`${lx2.url}/v1/chat/completions`, { model: MODEL, messages: [{ role: 'user', content: 'Hi' }] });
      assert.equal(r.status, 401);
      assert.equal(r.json.error.code, 'invalid_api_key');
      bodies.push(r.text, await (await fetch(`${lx2.url}/health`)).text());
      await lx2.stop();
      bodies.push(lx2.logs());
    } finally {
      await lx2.stop();
      rmSync(badDir, { recursive: true, force: true });
    }
    // a new key in the file: a reload applies it and reports the field, never the key
    writeFileSync(path.join(dir, 'anthropic.key'), `${KEY}-2\n`);
    const rl = await post(`${lx.url}/admin/reload`, '');
    assert.equal(rl.status, 200, rl.text);
    assert.ok(rl.json.changed.includes('backends.claude.api_key'), rl.text);
    bodies.push(rl.text);
    const refused = await post(`${lx.url}/v1/chat/completions`, { model: MODEL, messages: [{ role: 'user', content: 'Hi' }] });
    assert.equal(refused.status, 401, 'the new key is the one sent');
    bodies.push(refused.text);
    writeFileSync(path.join(dir, 'anthropic.key'), `${KEY}\n`);
    assert.equal((await post(`${lx.url}/admin/reload`, '')).status, 200);
    const back = await post(`${lx.url}/v1/chat/completions`, { model: MODEL, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 1 });
    assert.equal(back.status, 200, back.text);
    bodies.push(lx.logs());
    assert.ok(bodies.join('').includes('claude'), 'what was searched speaks of the backend');
    for (const b of bodies) assert.ok(!b.includes(KEY), `the key shows in: ${b.slice(0, 300)}`);
  });
});
