// Backend faults: a backend killed in the middle of streams, one that hangs, one that answers garbage or a
// truncated body, one slow to accept. In each, every client gets a proper answer (a success, an OpenAI
// error, or a stream ended by an error event and [DONE]), the next request is served, and the counters
// agree with what was sent (requests in = requests accounted in /stats). Fake backends that misbehave at
// the byte level are node sockets on loopback; Redis dying and a read-only ledger are in
// ratelimit.test.mjs and usage.test.mjs.
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test } from 'node:test';
import {
  chat, configFor, post, sseData, startLexora, startSim, stats, waitFor,
} from '../lib/harness.mjs';

const CHAT = { messages: [{ role: 'user', content: 'hello' }], max_tokens: 8 };

function config(url, { timeout = 5, attempts = 2, hc = {} } = {}) {
  return configFor(url, {
    timeout,
    extra: {
      retry: { max_attempts: attempts, delay_seconds: 0.05, backoff_multiplier: 2, max_delay_seconds: 1 },
      health_check: { interval_seconds: 60, failure_threshold: 3, cooldown_seconds: 1, timeout_seconds: 1, ...hc },
    },
  });
}

/** Every request was accounted once: /stats total_requests equals what the test sent. */
async function assertAccounted(lx, sent) {
  await waitFor(async () => (await stats(lx)).total_requests === sent, `${sent} requests accounted`,
    { ms: 3000, stepMs: 50 }).catch(async (e) => {
    throw new Error(`${e.message}: /stats total_requests = ${(await stats(lx)).total_requests}`);
  });
}

/**
 * A backend speaking raw bytes: for each connection, once a POST's head and body have arrived,
 * answer(socket) writes whatever it wants; GETs (Lexora's health check) get an empty 200. Counts POSTs.
 */
async function rawBackend(answer) {
  const seen = { connections: 0, requests: 0 };
  const server = net.createServer((sock) => {
    seen.connections++;
    let buf = '';
    sock.on('data', (d) => {
      buf += d;
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const len = Number(/content-length:\s*(\d+)/i.exec(buf.slice(0, end))?.[1] || 0);
      if (buf.length < end + 4 + len) return;
      const post = buf.startsWith('POST ');
      buf = '';
      if (!post) {
        sock.write('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
        return;
      }
      seen.requests++;
      answer(sock);
    });
    sock.on('error', () => {});
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${server.address().port}`;
  return { url, seen, close: () => new Promise((r) => server.close(r)) };
}

/** A TCP relay to `target` that lets each connection wait `delayMs` before a byte moves: slow to accept. */
async function slowRelay(targetPort, delayMs) {
  const socks = new Set();
  const server = net.createServer({ pauseOnConnect: true }, (client) => {
    socks.add(client);
    client.on('error', () => {});
    client.on('close', () => socks.delete(client));
    setTimeout(() => {
      if (client.destroyed) return;
      const up = net.connect(targetPort, '127.0.0.1');
      up.on('error', () => client.destroy());
      client.on('close', () => up.destroy());
      up.on('connect', () => { client.pipe(up); up.pipe(client); client.resume(); });
    }, delayMs);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => { for (const s of socks) s.destroy(); return new Promise((r) => server.close(r)); },
  };
}

describe('backend faults', () => {
  test('the backend is killed in the middle of streams: each ends with an error event and [DONE]', async () => {
    const sim = await startSim(['--ttft-ms', '5', '--tokens-per-sec', '20']);
    const lx = await startLexora(config(sim.url));
    let sent = 0;
    try {
      const streams = [1, 2, 3, 4].map(() => { sent++; return chat(lx, { ...CHAT, max_tokens: 200, stream: true }); });
      await waitFor(async () => (await sim.stats()).running === 4, 'four streams running', { ms: 5000 });
      await new Promise((r) => setTimeout(r, 200)); // a few tokens each
      sim.proc.child.kill('SIGKILL');
      for (const r of await Promise.all(streams)) {
        assert.equal(r.status, 200);
        const events = sseData(r.text);
        assert.equal(events.at(-1), '[DONE]');
        assert.match(JSON.parse(events.at(-2)).error.code, /^upstream_/);
      }
      // four failures in a row opened the circuit: the next request is told at once
      sent++;
      let r = await chat(lx, CHAT);
      assert.equal(r.status, 503);
      assert.equal(r.json.error.code, 'no_healthy_backend');
      // back on the same port: after the cooldown the trial succeeds
      const again = await startSim(['--ttft-ms', '5'], { port: sim.port });
      try {
        await waitFor(async () => {
          sent++;
          r = await chat(lx, CHAT);
          return r.status === 200;
        }, 'served again', { ms: 5000, stepMs: 200 });
        const s = await stats(lx);
        assert.ok(s.total_errors >= 5);
        await assertAccounted(lx, sent);
      } finally {
        await again.stop();
      }
    } finally {
      await lx.stop();
      await sim.stop().catch(() => {});
    }
  });

  test('the backend hangs: 504 upstream_timeout after every try, and the next request is served', async () => {
    const sim = await startSim(['--ttft-ms', '5', '--fail-rate', '1', '--fail-mode', 'hang']);
    // a threshold above the four timeouts: this test is about the answers, not the circuit
    const lx = await startLexora(config(sim.url, { timeout: 0.5, hc: { failure_threshold: 10 } }));
    try {
      let r = await chat(lx, CHAT);
      assert.equal(r.status, 504);
      assert.equal(r.json.error.code, 'upstream_timeout');
      assert.equal((await sim.requests()).length, 2);
      r = await chat(lx, { ...CHAT, stream: true });
      assert.equal(r.status, 504, 'a stream that never started is an ordinary error');
      await sim.control({ fail_rate: 0 });
      r = await chat(lx, CHAT);
      assert.equal(r.status, 200, r.text);
      await assertAccounted(lx, 3);
      assert.equal((await stats(lx)).total_errors, 2);
    } finally {
      await lx.stop();
      await sim.stop();
    }
  });

  test('the backend answers garbage: 502 upstream_bad_response, not retried', async () => {
    const be = await rawBackend((sock) => sock.end('SSH-2.0-OpenSSH_9.2\r\n\x00\xff\xfe garbage\r\n\r\n'));
    const lx = await startLexora(config(be.url));
    try {
      for (const stream of [false, true]) {
        const r = await chat(lx, { ...CHAT, stream });
        assert.equal(r.status, 502);
        assert.equal(r.json.error.code, 'upstream_bad_response');
      }
      assert.equal(be.seen.requests, 2);
      assert.equal((await fetch(`${lx.url}/health/live`)).status, 200);
      await assertAccounted(lx, 2);
    } finally {
      await lx.stop();
      await be.close();
    }
  });

  test('the backend cuts its answer short: 502 for a body, an error event for a stream', async () => {
    const be = await rawBackend((sock) => {
      if (be.streaming) {
        const event = 'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n';
        sock.end('HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n'
          + `${Buffer.byteLength(event).toString(16)}\r\n${event}\r\n`);
      } else {
        sock.end('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"id":"cmpl-1",');
      }
    });
    const lx = await startLexora(config(be.url));
    try {
      let r = await chat(lx, CHAT);
      assert.equal(r.status, 502);
      assert.equal(r.json.error.code, 'upstream_bad_response');
      be.streaming = true;
      r = await chat(lx, { ...CHAT, stream: true });
      assert.equal(r.status, 200);
      const events = sseData(r.text);
      assert.equal(events[0], '{"choices":[{"delta":{"content":"hi"}}]}', 'what came is relayed');
      assert.equal(events.at(-1), '[DONE]');
      assert.equal(JSON.parse(events.at(-2)).error.code, 'upstream_bad_response');
      assert.equal(be.seen.requests, 2, 'an answer that began is never retried');
      await assertAccounted(lx, 2);
      assert.equal((await stats(lx)).total_errors, 2);
    } finally {
      await lx.stop();
      await be.close();
    }
  });

  test('the backend is slow to accept: served when it is within the timeout, 504 when it is not', async () => {
    const sim = await startSim(['--ttft-ms', '5', '--tokens-per-sec', '0']);
    const slow = await slowRelay(sim.port, 800);
    const lx = await startLexora(config(slow.url, { timeout: 5 }));
    const tooSlow = await slowRelay(sim.port, 3000);
    const lx2 = await startLexora(config(tooSlow.url, { timeout: 0.5 }));
    try {
      let r = await chat(lx, CHAT);
      assert.equal(r.status, 200, r.text);
      r = await chat(lx2, CHAT);
      assert.equal(r.status, 504);
      assert.equal(r.json.error.code, 'upstream_timeout');
      await assertAccounted(lx, 1);
      await assertAccounted(lx2, 1);
    } finally {
      await lx.stop();
      await lx2.stop();
      await slow.close();
      await tooSlow.close();
      await sim.stop();
    }
  });
});
