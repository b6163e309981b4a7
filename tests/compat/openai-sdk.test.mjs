// Compatibility with the official openai npm SDK: what users call Lexora with.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { configFor, startLexora, startSim } from '../lib/harness.mjs';

describe('openai SDK against lexora', () => {
  let sim;
  let lx;
  let client;
  before(async () => {
    sim = await startSim(['--model', 'qwen3-32b', '--ttft-ms', '5', '--tokens-per-sec', '1000']);
    lx = await startLexora(configFor(sim.url, { extra: { routing: { aliases: { reasoning: 'qwen3-32b' } } } }));
    client = new OpenAI({ baseURL: `${lx.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  });
  after(async () => {
    await lx?.stop();
    await sim?.stop();
  });

  test('chat.completions.create', async () => {
    const r = await client.chat.completions.create({
      model: 'qwen3-32b', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 6,
    });
    assert.equal(r.object, 'chat.completion');
    assert.ok(r.choices[0].message.content.length > 0);
    assert.equal(r.usage.completion_tokens, 6);
  });

  test('chat.completions.create with stream: true, iterated', async () => {
    const stream = await client.chat.completions.create({
      model: 'qwen3-32b', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 6, stream: true,
    });
    let text = '';
    let chunks = 0;
    for await (const chunk of stream) {
      chunks += 1;
      text += chunk.choices[0]?.delta?.content ?? '';
    }
    assert.ok(chunks >= 6);
    assert.ok(text.length > 0);
  });

  test('stream with include_usage gives the usage chunk', async () => {
    const stream = await client.chat.completions.create({
      model: 'qwen3-32b', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 4, stream: true,
      stream_options: { include_usage: true },
    });
    let usage;
    for await (const chunk of stream) if (chunk.usage) usage = chunk.usage;
    assert.equal(usage.completion_tokens, 4);
  });

  test('completions.create', async () => {
    const r = await client.completions.create({ model: 'qwen3-32b', prompt: 'Say this', max_tokens: 3 });
    assert.equal(r.object, 'text_completion');
    assert.ok(r.choices[0].text.length > 0);
  });

  test('embeddings.create', async () => {
    const r = await client.embeddings.create({ model: 'qwen3-32b', input: 'hello world' });
    assert.equal(r.data.length, 1);
    assert.ok(r.data[0].embedding.length > 0);
  });

  test('models.list: the models, then the aliases (an alias is a model to the SDK)', async () => {
    const page = await client.models.list();
    assert.deepEqual(page.data.map((m) => m.id), ['qwen3-32b', 'reasoning']);
    assert.deepEqual(page.data[1].lexora, { alias_of: ['qwen3-32b'] });
    const one = await client.models.retrieve('reasoning');
    assert.equal(one.owned_by, 'lexora');
  });

  test('an alias works as a model name', async () => {
    const { data, response } = await client.chat.completions.create({
      model: 'reasoning', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 2,
    }).withResponse();
    assert.equal(data.object, 'chat.completion');
    assert.equal(response.headers.get('x-lexora-model'), 'qwen3-32b');
  });

  test('an unknown model surfaces as an APIError with status 404 and code model_not_found', async () => {
    await assert.rejects(
      client.chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'x' }] }),
      (err) => {
        assert.ok(err instanceof OpenAI.APIError);
        assert.equal(err.status, 404);
        assert.equal(err.code, 'model_not_found');
        assert.equal(err.param, 'model');
        return true;
      },
    );
  });
});
