// The HTTP front: keep-alive, chunked bodies, the idle timeout. Bad input (limits, smuggling, malformed
// HTTP, slow clients, max connections, pipelining) is the table's: bad-inputs.test.mjs.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { configFor, rawExchange, startLexora, startSim } from '../lib/harness.mjs';

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

  test('header names are matched whatever their case, and only in full', async () => {
    // A name of the same length that differs in its last letter comes first: it must not be taken.
    const r = await rawExchange(lx.port, [request(body, 'X-REQUEST-IX: wrong-1\r\nx-ReQuEsT-iD: case-1\r\n')], { ms: 1500 });
    assert.deepEqual(statuses(r.data), [200]);
    assert.match(r.data, /\r\nX-Request-Id: case-1\r\n/);
  });

  test('a chunked request body', async () => {
    const half = Math.floor(body.length / 2);
    const chunked = 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n'
      + `${half.toString(16)}\r\n${body.slice(0, half)}\r\n${(body.length - half).toString(16)}\r\n${body.slice(half)}\r\n0\r\n\r\n`;
    const r = await rawExchange(lx.port, [chunked], { ms: 1500 });
    assert.deepEqual(statuses(r.data), [200]);
  });

  test('an idle keep-alive connection is closed after idle_timeout', async () => {
    const t0 = Date.now();
    const r = await rawExchange(lx.port, [request()], { ms: 5000 });
    assert.deepEqual(statuses(r.data), [200]);
    assert.ok(r.closed);
    assert.ok(Date.now() - t0 >= 1900);
  });

  test('a second request moves the idle deadline on', async () => {
    // idle_timeout 2 s: the timer armed after the first answer fires at 2 s, finds the deadline the second
    // request (at 1.5 s) set, and waits on until about 3.5 s
    const t0 = Date.now();
    const r = await rawExchange(lx.port, [request(), request()], { ms: 8000, gapMs: 1500 });
    assert.deepEqual(statuses(r.data), [200, 200]);
    assert.ok(r.closed);
    assert.ok(Date.now() - t0 >= 3400, `closed after ${Date.now() - t0} ms`);
  });
});
