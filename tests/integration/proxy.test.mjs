// The proxy end to end: real lexora in front of real lexora-sim on loopback.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { chatBody, configFor, post, sleep, sseData, startLexora, startSim } from '../lib/harness.mjs';

const hello = (extra = {}) => chatBody(extra, { messages: [{ role: 'user', content: 'Hello there' }], max_tokens: 5 });

describe('proxy', () => {
  let sim;
  let lx;
  before(async () => {
    sim = await startSim(['--model', 'qwen3-32b', '--ttft-ms', '5', '--tokens-per-sec', '1000']);
    lx = await startLexora(configFor(sim.url));
  });
  after(async () => {
    await lx?.stop();
    await sim?.stop();
  });

  test('GET /v1/models lists the configured models in OpenAI list shape', async () => {
    const res = await fetch(`${lx.url}/v1/models`);
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.object, 'list');
    assert.deepEqual(body.data.map((m) => m.id), ['qwen3-32b']);
    assert.equal(body.data[0].object, 'model');
  });

  test('chat completion, non-streaming: the backend answer passes through with request id and overhead', async () => {
    const r = await post(`${lx.url}/v1/chat/completions`, hello(), { 'x-request-id': 'my-req-1' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.object, 'chat.completion');
    assert.equal(r.json.usage.completion_tokens, 5);
    assert.equal(r.headers.get('x-request-id'), 'my-req-1');
    assert.match(r.headers.get('content-type'), /application\/json/);
    const overhead = Number(r.headers.get('x-lexora-overhead-ms'));
    assert.ok(Number.isFinite(overhead) && overhead >= 0, `overhead ${overhead}`);
    const seen = (await sim.requests()).filter((q) => q.request_id === 'my-req-1');
    assert.equal(seen.length, 1, 'the request id reaches the backend');
  });

  test('a new request id is made when the client sends none', async () => {
    const r = await post(`${lx.url}/v1/chat/completions`, hello());
    assert.match(r.headers.get('x-request-id'), /^req_[0-9a-f]{24}$/);
  });

  test('x_* fields are removed before forwarding; everything else reaches the backend byte for byte', async () => {
    const raw = '{"model":"qwen3-32b","messages":[{"role":"user","content":"keep \\u00e9 this"}],'
      + '"x_priority":"high","max_tokens":3,"x_user_id":"alice","temperature":0.25,"x_timeout":30,'
      + '"extra_field":{"nested":[1,2,{"x_inner":true}]}}';
    const r = await post(`${lx.url}/v1/chat/completions`, raw, { 'x-request-id': 'strip-1' });
    assert.equal(r.status, 200, r.text);
    const [seen] = (await sim.requests()).filter((q) => q.request_id === 'strip-1');
    assert.equal(seen.body,
      '{"model":"qwen3-32b","messages":[{"role":"user","content":"keep \\u00e9 this"}],"max_tokens":3,'
      + '"temperature":0.25,"extra_field":{"nested":[1,2,{"x_inner":true}]}}');
  });

  test('a body without model gets default_model', async () => {
    const r = await post(`${lx.url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 },
      { 'x-request-id': 'nomodel-1' });
    assert.equal(r.status, 200, r.text);
    const [seen] = (await sim.requests()).filter((q) => q.request_id === 'nomodel-1');
    assert.equal(JSON.parse(seen.body).model, 'qwen3-32b');
  });

  test('streaming: SSE relayed, usage requested upstream and stripped when the client did not ask', async () => {
    const r = await post(`${lx.url}/v1/chat/completions`, hello({ stream: true }), { 'x-request-id': 'sse-1' });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /text\/event-stream/);
    const events = sseData(r.text);
    assert.equal(events.at(-1), '[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
    assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk'));
    assert.ok(chunks.every((c) => c.choices.length > 0), 'no usage-only chunk reaches the client');
    const text = chunks.map((c) => c.choices[0].delta.content || '').join('');
    assert.ok(text.length > 0);
    const [seen] = (await sim.requests()).filter((q) => q.request_id === 'sse-1');
    assert.deepEqual(JSON.parse(seen.body).stream_options, { include_usage: true });
  });

  test('streaming with include_usage: the client gets the usage chunk', async () => {
    const r = await post(`${lx.url}/v1/chat/completions`,
      hello({ stream: true, stream_options: { include_usage: true } }));
    const events = sseData(r.text);
    const usage = JSON.parse(events.at(-2));
    assert.deepEqual(usage.choices, []);
    assert.equal(usage.usage.completion_tokens, 5);
  });

  test('completions, streaming and not', async () => {
    const body = { model: 'qwen3-32b', prompt: 'Once upon a time', max_tokens: 4 };
    const r = await post(`${lx.url}/v1/completions`, body);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.object, 'text_completion');
    const s = await post(`${lx.url}/v1/completions`, { ...body, stream: true });
    const events = sseData(s.text);
    assert.equal(events.at(-1), '[DONE]');
    assert.ok(events.slice(0, -1).every((e) => JSON.parse(e).choices.length > 0));
  });

  test('embeddings', async () => {
    const r = await post(`${lx.url}/v1/embeddings`, { model: 'qwen3-32b', input: ['a', 'b'] });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.object, 'list');
    assert.equal(r.json.data.length, 2);
  });

  test('client disconnect mid-stream cancels the upstream request at once', async () => {
    const before = await sim.stats();
    const ac = new AbortController();
    const res = await fetch(`${lx.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(hello({ stream: true, max_tokens: 20000 })),
      signal: ac.signal,
    });
    const reader = res.body.getReader();
    await reader.read();
    ac.abort();
    let stats;
    for (let i = 0; i < 100; i++) {
      stats = await sim.stats();
      if (stats.cancelled > before.cancelled) break;
      await sleep(20);
    }
    assert.equal(stats.cancelled, before.cancelled + 1);
    assert.equal(stats.running, 0);
  });

  test('one access-log line per request, with id, user, model, backend, status and tokens', async () => {
    await post(`${lx.url}/v1/chat/completions`, hello({ x_user_id: 'carol' }), { 'x-request-id': 'log-1' });
    await sleep(100);
    const lines = lx.logs().split('\n').filter((l) => l.includes('"request_id":"log-1"') && l.includes('"access"'));
    assert.equal(lines.length, 1);
    const rec = JSON.parse(lines[0]);
    assert.equal(rec.user, 'carol');
    assert.equal(rec.model, 'qwen3-32b');
    assert.equal(rec.backend, 'vllm');
    assert.equal(rec.status, 200);
    assert.equal(rec.completion_tokens, 5);
    assert.ok(rec.prompt_tokens > 0);
  });
});
