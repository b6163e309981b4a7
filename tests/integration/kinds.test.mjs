// Backend kinds for real: the gateway in front of lexora-sim speaking Ollama's wire format (--api ollama,
// config type: ollama) and llama.cpp's (--api llamacpp, type: llamacpp). Chat whole and streamed with the
// usage counted in /stats, completions, embeddings, each server's error shapes brought to OpenAI's
// envelope, health through each server's own endpoint (llama.cpp's 503 while loading), model lists, and
// llama.cpp's timings passed through. Every wait is bounded.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  configFor, health, post, sseData, startLexora, startSim, stats, waitFor,
} from '../lib/harness.mjs';

const HC = { interval_seconds: 0.2, failure_threshold: 1, timeout_seconds: 1 };
const unlimited = { default: { requests_per_minute: 0, tokens_per_minute: 0 } };
// lexora-sim counts ceil(bytes / 4) prompt tokens: "Hello there" is 11 bytes, 3 tokens.
const msgs = [{ role: 'user', content: 'Hello there' }];

function kindConfig(sim, type, models) {
  return configFor(sim.url, {
    models,
    extra: { backends: { local: { type, url: sim.url, models } }, rate_limits: unlimited, health_check: HC },
  });
}

const backendHealth = async (lx) => (await health(lx)).json.backends.find((b) => b.name === 'local');
const events = (text) => sseData(text).filter((d) => d !== '[DONE]').map((d) => JSON.parse(d));

describe('type: ollama', () => {
  const MODEL = 'llama3.2:latest';
  let sim;
  let lx;
  before(async () => {
    sim = await startSim(['--api', 'ollama', '--model', MODEL, '--ttft-ms', '5', '--tokens-per-sec', '1000']);
    // gone:latest and big:cloud are configured but the server has neither: its errors reach the client.
    lx = await startLexora(kindConfig(sim, 'ollama', [MODEL, 'gone:latest', 'big:cloud']));
  });
  after(async () => {
    await lx?.stop();
    await sim?.stop();
  });

  test('the sim speaks Ollama: its endpoints, none of vLLM\'s', async () => {
    assert.equal(await (await fetch(`${sim.url}/`)).text(), 'Ollama is running');
    assert.match((await (await fetch(`${sim.url}/api/version`)).json()).version, /^\d+\.\d+\.\d+$/);
    const tags = await (await fetch(`${sim.url}/api/tags`)).json();
    assert.deepEqual(tags.models.map((m) => m.name), [MODEL]);
    assert.equal(tags.models[0].details.format, 'gguf');
    const models = await (await fetch(`${sim.url}/v1/models`)).json();
    assert.deepEqual(models.data.map((m) => [m.id, m.owned_by]), [[MODEL, 'library']]);
    for (const p of ['/metrics', '/version', '/health']) assert.equal((await fetch(`${sim.url}${p}`)).status, 404, p);
  });

  test('health comes from GET /api/version; the gateway lists the configured models', async () => {
    await waitFor(async () => (await backendHealth(lx))?.status === 'up', 'the ollama backend up', { ms: 5000 });
    const list = await (await fetch(`${lx.url}/v1/models`)).json();
    assert.ok(list.data.some((m) => m.id === MODEL));
  });

  test('chat, whole and streamed, with the usage counted in /stats', async () => {
    const a = await post(`${lx.url}/v1/chat/completions`, { model: MODEL, messages: msgs, max_tokens: 4, x_user_id: 'ol-a' });
    assert.equal(a.status, 200, a.text);
    assert.equal(a.json.system_fingerprint, 'fp_ollama');
    assert.equal(a.json.usage.completion_tokens, 4);
    assert.equal(a.json.choices[0].message.role, 'assistant');

    const s = await post(`${lx.url}/v1/chat/completions`,
      { model: MODEL, messages: msgs, max_tokens: 5, stream: true, x_user_id: 'ol-b' });
    assert.equal(s.status, 200);
    const ev = events(s.text);
    assert.equal(sseData(s.text).at(-1), '[DONE]');
    assert.equal(ev[0].choices[0].delta.role, 'assistant');
    assert.ok(ev.every((e) => e.usage === undefined), 'the client did not ask for usage');
    assert.equal(ev.filter((e) => e.choices[0]?.delta?.content).length, 5);

    const u = await post(`${lx.url}/v1/chat/completions`, {
      model: MODEL, messages: msgs, max_tokens: 2, stream: true, stream_options: { include_usage: true }, x_user_id: 'ol-c',
    });
    const last = events(u.text).at(-1);
    assert.deepEqual(last.choices, []);
    assert.deepEqual(last.usage, { prompt_tokens: 3, total_tokens: 5, completion_tokens: 2 });

    const st = await stats(lx);
    assert.equal(st.per_user['ol-a'].completion_tokens, 4);
    assert.equal(st.per_user['ol-b'].completion_tokens, 5);
    assert.equal(st.per_user['ol-b'].prompt_tokens, 3);
    assert.equal(st.per_user['ol-c'].total_tokens, 5);
  });

  test('completions streams: Ollama\'s zeroed usage on every chunk is cut unless usage was asked for', async () => {
    const body = { model: MODEL, prompt: 'Hello there', max_tokens: 3, stream: true, x_user_id: 'ol-d' };
    const s = await post(`${lx.url}/v1/completions`, body);
    assert.equal(s.status, 200);
    const ev = events(s.text);
    assert.ok(ev.length >= 3);
    assert.ok(ev.every((e) => e.usage === undefined), s.text);
    assert.equal(ev.map((e) => e.choices[0].text).join('').trim().split(' ').length, 3);

    const u = await post(`${lx.url}/v1/completions`, { ...body, stream_options: { include_usage: true }, x_user_id: 'ol-e' });
    const uev = events(u.text);
    assert.deepEqual(uev[0].usage, { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 }, 'as Ollama sends it');
    assert.deepEqual(uev.at(-1).usage, { prompt_tokens: 3, total_tokens: 6, completion_tokens: 3 });

    const st = await stats(lx);
    assert.equal(st.per_user['ol-d'].completion_tokens, 3);
    assert.equal(st.per_user['ol-e'].completion_tokens, 3);
  });

  test('embeddings', async () => {
    const r = await post(`${lx.url}/v1/embeddings`, { model: MODEL, input: ['Hello there', 'again'] });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.data.length, 2);
    assert.equal(r.json.data[1].embedding.length, 16);
    assert.equal(r.json.usage.prompt_tokens, 5);
  });

  test('its error shapes reach the client as OpenAI\'s envelope, status and message kept', async () => {
    const body = (model) => ({ model, messages: msgs, max_tokens: 2 });
    // the OpenAI layer's {"error":{"message","type":"not_found_error","param":null,"code":null}}
    const nf = await post(`${lx.url}/v1/chat/completions`, body('gone:latest'));
    assert.equal(nf.status, 404, nf.text);
    assert.deepEqual(nf.json, { error: {
      message: "model 'gone:latest' not found", type: 'invalid_request_error', param: null, code: 'model_not_found',
    } });
    // the native {"error":"..."} (the cloud-model check runs before the OpenAI layer)
    const cloud = await post(`${lx.url}/v1/chat/completions`, body('big:cloud'));
    assert.equal(cloud.status, 403, cloud.text);
    assert.deepEqual(cloud.json, { error: {
      message: 'ollama cloud is disabled: remote model is unavailable', type: 'invalid_request_error', param: null,
      code: 'permission_denied',
    } });
    // what the sim answered, to be sure both shapes were really sent
    const log = await sim.requests();
    assert.ok(log.some((r) => r.body.includes('big:cloud')));
    const direct = await post(`${sim.url}/v1/chat/completions`, body('big:cloud'));
    assert.deepEqual(direct.json, { error: 'ollama cloud is disabled: remote model is unavailable' });
  });
});

describe('type: llamacpp', () => {
  const MODEL = 'qwen3-8b';
  let sim;
  let lx;
  before(async () => {
    sim = await startSim(['--api', 'llamacpp', '--model', MODEL, '--ttft-ms', '5', '--tokens-per-sec', '1000',
      '--max-model-len', '64', '--load-ms', '3000']);
    lx = await startLexora(kindConfig(sim, 'llamacpp', [MODEL]));
  });
  after(async () => {
    await lx?.stop();
    await sim?.stop();
  });

  test('health: 503 "Loading model" is not ready, then /health 200 is', async () => {
    const early = await fetch(`${sim.url}/health`);
    assert.equal(early.status, 503);
    assert.deepEqual(await early.json(), { error: { code: 503, message: 'Loading model', type: 'unavailable_error' } });
    await waitFor(async () => (await backendHealth(lx))?.status === 'down', 'the loading backend down', { ms: 2500 });
    await waitFor(async () => (await backendHealth(lx))?.status === 'up', 'the backend up once loaded', { ms: 5000 });
    assert.deepEqual(await (await fetch(`${sim.url}/health`)).json(), { status: 'ok' });
    const models = await (await fetch(`${sim.url}/v1/models`)).json();
    assert.deepEqual(models.data.map((m) => [m.id, m.owned_by]), [[MODEL, 'llamacpp']]);
    assert.equal((await fetch(`${sim.url}/metrics`)).status, 404);
  });

  test('chat whole and streamed: usage counted, timings passed through', async () => {
    await waitFor(async () => (await backendHealth(lx))?.status === 'up', 'the backend up', { ms: 5000 });
    const a = await post(`${lx.url}/v1/chat/completions`, { model: MODEL, messages: msgs, max_tokens: 4, x_user_id: 'lc-a' });
    assert.equal(a.status, 200, a.text);
    assert.equal(a.json.usage.completion_tokens, 4);
    assert.equal(a.json.timings.predicted_n, 4);
    assert.equal(a.json.timings.prompt_n + a.json.timings.cache_n, 3);

    // no usage asked for: the usage chunk is dropped, its timings move onto the finish chunk
    const s = await post(`${lx.url}/v1/chat/completions`,
      { model: MODEL, messages: msgs, max_tokens: 5, stream: true, x_user_id: 'lc-b' });
    assert.equal(s.status, 200);
    const ev = events(s.text);
    assert.ok(ev.every((e) => e.usage === undefined), s.text);
    const fin = ev.at(-1);
    assert.equal(fin.choices[0].finish_reason, 'length');
    assert.equal(fin.timings.predicted_n, 5);
    assert.equal(ev.filter((e) => e.timings).length, 1);

    // usage asked for: the last chunk is llama.cpp's usage chunk with its timings, as it came
    const u = await post(`${lx.url}/v1/chat/completions`, {
      model: MODEL, messages: msgs, max_tokens: 2, stream: true, stream_options: { include_usage: true }, x_user_id: 'lc-c',
    });
    const last = events(u.text).at(-1);
    assert.deepEqual(last.choices, []);
    assert.equal(last.usage.completion_tokens, 2);
    assert.equal(last.timings.predicted_n, 2);
    assert.equal(events(u.text).at(-2).timings, undefined);

    const st = await stats(lx);
    assert.equal(st.per_user['lc-a'].completion_tokens, 4);
    assert.equal(st.per_user['lc-b'].completion_tokens, 5);
    assert.equal(st.per_user['lc-b'].prompt_tokens, 3);
    assert.equal(st.per_user['lc-c'].completion_tokens, 2);
  });

  test('completions and embeddings', async () => {
    const c = await post(`${lx.url}/v1/completions`,
      { model: MODEL, prompt: 'Hello there', max_tokens: 3, stream: true, x_user_id: 'lc-d' });
    assert.equal(c.status, 200);
    const last = events(c.text).at(-1);
    assert.equal(last.choices[0].finish_reason, 'length');
    assert.equal(last.timings.predicted_n, 3);
    assert.equal((await stats(lx)).per_user['lc-d'].completion_tokens, 3);
    const e = await post(`${lx.url}/v1/embeddings`, { model: MODEL, input: 'Hello there' });
    assert.equal(e.status, 200, e.text);
    assert.equal(e.json.data[0].embedding.length, 16);
  });

  test('its error shape reaches the client as OpenAI\'s envelope, status and message kept', async () => {
    const long = 'x'.repeat(400); // 100 tokens, more than --max-model-len 64
    const direct = await post(`${sim.url}/v1/chat/completions`, { messages: [{ role: 'user', content: long }] });
    assert.equal(direct.json.error.type, 'exceed_context_size_error');
    const r = await post(`${lx.url}/v1/chat/completions`, { model: MODEL, messages: [{ role: 'user', content: long }] });
    assert.equal(r.status, 400, r.text);
    assert.deepEqual(r.json, { error: {
      message: direct.json.error.message, type: 'invalid_request_error', param: null, code: 'context_length_exceeded',
    } });
  });
});
