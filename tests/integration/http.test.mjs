// The HTTP front: keep-alive, pipelining, chunked bodies, limits (413, 431, 408), smuggling, max connections.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { configFor, rawExchange, sleep, startLexora, startSim } from '../lib/harness.mjs';

const body = JSON.stringify({ model: 'qwen3-32b', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });
const request = (b = body, extra = '') => `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n`
  + `Content-Length: ${Buffer.byteLength(b)}\r\n${extra}\r\n${b}`;
const statuses = (data) => [...data.matchAll(/HTTP\/1\.1 (\d{3}) [A-Z]/g)].map((m) => Number(m[1]));

describe('http front', () => {
  let sim;
  let lx;
  before(async () => {
    sim = await startSim(['--ttft-ms', '1', '--tokens-per-sec', '1000']);
    lx = await startLexora(configFor(sim.url, {
      extra: {
        server: { max_body_bytes: 4096, max_header_bytes: 2048, header_timeout: 1, idle_timeout: 2, max_connections: 20 },
      },
    }));
  });
  after(async () => {
    await lx?.stop();
    await sim?.stop();
  });

  test('keep-alive: several requests on one connection', async () => {
    const r = await rawExchange(lx.port, [request(), request(), request()], { ms: 1500, gapMs: 200 });
    assert.deepEqual(statuses(r.data), [200, 200, 200]);
  });

  test('pipelined requests are answered in order', async () => {
    const r = await rawExchange(lx.port, [request() + request() + 'GET /nope HTTP/1.1\r\nHost: x\r\n\r\n'], { ms: 1500 });
    assert.deepEqual(statuses(r.data), [200, 200, 404]);
  });

  test('a chunked request body', async () => {
    const half = Math.floor(body.length / 2);
    const chunked = 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n'
      + `${half.toString(16)}\r\n${body.slice(0, half)}\r\n${(body.length - half).toString(16)}\r\n${body.slice(half)}\r\n0\r\n\r\n`;
    const r = await rawExchange(lx.port, [chunked], { ms: 1500 });
    assert.deepEqual(statuses(r.data), [200]);
  });

  test('a body over max_body_bytes: 413, with Content-Length and chunked', async () => {
    const big = 'x'.repeat(5000);
    const r1 = await rawExchange(lx.port, [request(big)]);
    assert.deepEqual(statuses(r1.data), [413]);
    assert.match(r1.data, /"code":"request_too_large"/);
    const chunked = 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n'
      + `1388\r\n${big}\r\n0\r\n\r\n`;
    const r2 = await rawExchange(lx.port, [chunked]);
    assert.deepEqual(statuses(r2.data), [413]);
  });

  test('headers over max_header_bytes: 431', async () => {
    const r = await rawExchange(lx.port, [request(body, `X-Big: ${'a'.repeat(3000)}\r\n`)]);
    assert.deepEqual(statuses(r.data), [431]);
    assert.match(r.data, /"code":"header_too_large"/);
  });

  test('both Content-Length and Transfer-Encoding: refused (request smuggling)', async () => {
    const r = await rawExchange(lx.port, [
      `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`]);
    assert.deepEqual(statuses(r.data), [400]);
    assert.ok(r.closed);
  });

  test('malformed HTTP: 400 with an error body, then close', async () => {
    const r = await rawExchange(lx.port, ['GARBAGE\r\n\r\n']);
    assert.deepEqual(statuses(r.data), [400]);
    assert.match(r.data, /"error"/);
  });

  test('a head that trickles in slower than header_timeout: 408 and close', async () => {
    const r = await rawExchange(lx.port, ['POST /v1/chat/completions HTTP/1.1\r\n', 'Host: x\r\n', 'X-A: 1\r\n', 'X-B: 2\r\n'],
      { ms: 4000, gapMs: 600 });
    assert.deepEqual(statuses(r.data), [408]);
    assert.ok(r.closed);
  });

  test('an idle keep-alive connection is closed after idle_timeout', async () => {
    const t0 = Date.now();
    const r = await rawExchange(lx.port, [request()], { ms: 5000 });
    assert.deepEqual(statuses(r.data), [200]);
    assert.ok(r.closed);
    assert.ok(Date.now() - t0 >= 1900);
  });

  test('connections over max_connections get 503, the others are unharmed', async () => {
    const socks = [];
    for (let i = 0; i < 20; i++) {
      const s = net.connect(lx.port, '127.0.0.1');
      await new Promise((r) => s.on('connect', r));
      socks.push(s);
    }
    await sleep(100);
    const extra = await rawExchange(lx.port, [request()]);
    assert.deepEqual(statuses(extra.data), [503]);
    assert.match(extra.data, /too_many_connections/);
    socks.forEach((s) => s.destroy());
    await sleep(200);
    const r = await rawExchange(lx.port, [request()], { ms: 1000 });
    assert.deepEqual(statuses(r.data), [200]);
  });
});
