// Who may see what: every endpoint × caller, as README's "Access control" tables say, row by row, with
// auth on and off. The tables below are README's, cell for cell; change both together.
// The callers: "none" and the key/token holders call from a non-loopback address of this machine (the
// server listens on 0.0.0.0), so that the loopback rule does not hide what a credential grants;
// "loopback" calls 127.0.0.1 with no credential. Without a non-loopback address, the cells that need
// one are skipped (said in the test's output).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import { createHash } from 'node:crypto';
import { startSim, startLexora, configFor, chatBody, MODEL } from '../lib/harness.mjs';

const KEY = 'sk-alice-access-test';
const BOB_KEY = 'sk-bob-access-test';
const ADMIN = 'admin-token-access-test';
const METRICS = 'metrics-token-access-test';
const sha = (s) => createHash('sha256').update(s).digest('hex');

const CALLERS = ['none', 'client', 'admin', 'metrics', 'loopback'];
const BEARER = { none: null, client: KEY, admin: ADMIN, metrics: METRICS, loopback: null };

// [method, path, expected for none, client, admin, metrics, loopback]. "200 full" / "200 redacted": /health
// with, or without, backend URLs and error texts.
const ON = [
  ['GET', '/health', '200 redacted', '200 redacted', '200 full', '200 redacted', '200 redacted'],
  ['GET', '/health/live', 200, 200, 200, 200, 200],
  ['GET', '/health/ready', 200, 200, 200, 200, 200],
  ['GET', '/v1/models', 401, 200, 200, 401, 401],
  ['GET', `/v1/models/${MODEL}`, 401, 200, 200, 401, 401],
  ['POST', '/v1/chat/completions', 401, 200, 401, 401, 401],
  ['GET', '/v1/usage', 401, 200, 403, 401, 401],
  ['GET', '/stats', 401, 403, 200, 401, 401],
  ['GET', '/stats?user=alice', 401, 200, 200, 401, 401],
  ['GET', '/stats?user=bob', 401, 403, 200, 401, 401],
  ['GET', '/stats/stream', 401, 403, 200, 401, 401],
  ['GET', '/dashboard', 200, 200, 200, 200, 200],
  ['POST', '/v1/messages', 401, 200, 401, 401, 401],
  ['POST', '/v1/messages/count_tokens', 401, 200, 401, 401, 401],
  ['POST', '/v1/feedback', 401, 404, 404, 401, 401],
  ['GET', '/metrics', 401, 401, 200, 200, 401],
  ['POST', '/admin/reload', 401, 401, 200, 401, 401],
  ['POST', '/admin/backends/vllm/undrain', 401, 401, 200, 401, 401],
  ['GET', '/admin/models', 401, 401, 200, 401, 401],
  ['POST', '/admin/models/load', 401, 401, 400, 401, 401],
];

// auth on but no admin token: loopback clients are the admin (a bearer that is no key is nobody)
const ON_NO_ADMIN = [
  ['GET', '/health', '200 redacted', '200 redacted', '200 redacted', '200 redacted', '200 full'],
  ['GET', '/health/live', 200, 200, 200, 200, 200],
  ['GET', '/health/ready', 200, 200, 200, 200, 200],
  ['GET', '/v1/models', 401, 200, 401, 401, 200],
  ['GET', `/v1/models/${MODEL}`, 401, 200, 401, 401, 200],
  ['POST', '/v1/chat/completions', 401, 200, 401, 401, 401],
  ['GET', '/v1/usage', 401, 200, 401, 401, 403],
  ['GET', '/stats', 401, 403, 401, 401, 200],
  ['GET', '/stats?user=alice', 401, 200, 401, 401, 200],
  ['GET', '/stats?user=bob', 401, 403, 401, 401, 200],
  ['GET', '/stats/stream', 401, 403, 401, 401, 200],
  ['GET', '/dashboard', 200, 200, 200, 200, 200],
  ['POST', '/v1/messages', 401, 200, 401, 401, 401],
  ['POST', '/v1/messages/count_tokens', 401, 200, 401, 401, 401],
  ['POST', '/v1/feedback', 401, 404, 401, 401, 404],
  ['GET', '/metrics', 200, 200, 200, 200, 200],
  ['POST', '/admin/reload', 403, 403, 403, 403, 200],
  ['POST', '/admin/backends/vllm/undrain', 403, 403, 403, 403, 200],
  ['GET', '/admin/models', 403, 403, 403, 403, 200],
  ['POST', '/admin/models/load', 403, 403, 403, 403, 400],
];

const OFF_TOKEN = [
  ['GET', '/health', '200 full', '200 full', '200 full', '200 full', '200 full'],
  ['GET', '/health/live', 200, 200, 200, 200, 200],
  ['GET', '/health/ready', 200, 200, 200, 200, 200],
  ['GET', '/v1/models', 200, 200, 200, 200, 200],
  ['GET', `/v1/models/${MODEL}`, 200, 200, 200, 200, 200],
  ['POST', '/v1/chat/completions', 200, 200, 200, 200, 200],
  ['GET', '/v1/usage', 200, 200, 200, 200, 200],
  ['GET', '/stats', 200, 200, 200, 200, 200],
  ['GET', '/stats?user=alice', 200, 200, 200, 200, 200],
  ['GET', '/stats?user=bob', 200, 200, 200, 200, 200],
  ['GET', '/stats/stream', 200, 200, 200, 200, 200],
  ['GET', '/dashboard', 200, 200, 200, 200, 200],
  ['POST', '/v1/messages', 200, 200, 200, 200, 200],
  ['POST', '/v1/messages/count_tokens', 200, 200, 200, 200, 200],
  ['POST', '/v1/feedback', 404, 404, 404, 404, 404],
  ['GET', '/metrics', 200, 200, 200, 200, 200],
  ['POST', '/admin/reload', 401, 401, 200, 401, 401],
  ['POST', '/admin/backends/vllm/undrain', 401, 401, 200, 401, 401],
  ['GET', '/admin/models', 401, 401, 200, 401, 401],
  ['POST', '/admin/models/load', 401, 401, 400, 401, 401],
];

const OFF = [
  ['GET', '/health', '200 full', '200 full', '200 full', '200 full', '200 full'],
  ['GET', '/health/live', 200, 200, 200, 200, 200],
  ['GET', '/health/ready', 200, 200, 200, 200, 200],
  ['GET', '/v1/models', 200, 200, 200, 200, 200],
  ['GET', `/v1/models/${MODEL}`, 200, 200, 200, 200, 200],
  ['POST', '/v1/chat/completions', 200, 200, 200, 200, 200],
  ['GET', '/v1/usage', 200, 200, 200, 200, 200],
  ['GET', '/stats', 200, 200, 200, 200, 200],
  ['GET', '/stats?user=alice', 200, 200, 200, 200, 200],
  ['GET', '/stats?user=bob', 200, 200, 200, 200, 200],
  ['GET', '/stats/stream', 200, 200, 200, 200, 200],
  ['GET', '/dashboard', 200, 200, 200, 200, 200],
  ['POST', '/v1/messages', 200, 200, 200, 200, 200],
  ['POST', '/v1/messages/count_tokens', 200, 200, 200, 200, 200],
  ['POST', '/v1/feedback', 404, 404, 404, 404, 404],
  ['GET', '/metrics', 200, 200, 200, 200, 200],
  ['POST', '/admin/reload', 403, 403, 403, 403, 200],
  ['POST', '/admin/backends/vllm/undrain', 403, 403, 403, 403, 200],
  ['GET', '/admin/models', 403, 403, 403, 403, 200],
  ['POST', '/admin/models/load', 403, 403, 403, 403, 400],
];

/** A non-loopback IPv4 address of this machine, or null. */
function remoteAddress() {
  for (const list of Object.values(os.networkInterfaces()))
    for (const a of list || []) if (a.family === 'IPv4' && !a.internal) return a.address;
  return null;
}

async function call(port, host, method, path, bearer) {
  const headers = bearer ? { authorization: `Bearer ${bearer}` } : {};
  let body;
  if (method === 'POST' && path.startsWith('/v1/')) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(path === '/v1/feedback' ? { request_id: 'req_no_such_request', score: 1 }
      : chatBody(path.startsWith('/v1/messages') ? { max_tokens: 2 } : {}));
  }
  const ac = new AbortController();
  const res = await fetch(`http://${host}:${port}${path}`, { method, headers, body, signal: ac.signal });
  if (path === '/stats/stream' && res.status === 200) { // a stream does not end: its status is the answer
    ac.abort();
    return { status: res.status, headers: res.headers, text: '' };
  }
  const text = await res.text();
  return { status: res.status, headers: res.headers, text };
}

/** Runs one mode's table against a running lexora. */
function tableTests(name, rows, ctx) {
  for (const [method, path, ...cells] of rows) {
    test(`${name}: ${method} ${path}`, async (t) => {
      for (let i = 0; i < CALLERS.length; i++) {
        const caller = CALLERS[i];
        const host = caller === 'loopback' ? '127.0.0.1' : ctx.remote;
        if (host == null) {
          t.diagnostic(`${caller}: no non-loopback address on this machine; cell skipped`);
          continue;
        }
        const r = await call(ctx.lx.port, host, method, path, BEARER[caller]);
        const [status, detail] = String(cells[i]).split(' ');
        assert.equal(r.status, Number(status), `${caller}: ${method} ${path} → ${r.status} ${r.text.slice(0, 200)}`);
        if (r.status >= 400) {
          const err = JSON.parse(r.text).error;
          if (path.startsWith('/v1/messages')) // the Anthropic front answers in Anthropic's shape
            assert.ok(err && err.message && err.type === 'authentication_error', `${caller}: Anthropic's error: ${r.text}`);
          else
            assert.ok(err && err.message && err.code, `${caller}: OpenAI's error envelope: ${r.text}`);
          assert.ok(!r.text.includes(ADMIN) && !r.text.includes(KEY) && !r.text.includes(METRICS), 'no secret quoted');
          if (r.status === 401) assert.match(r.headers.get('www-authenticate') || '', /^Bearer/, `${caller}: ${path}`);
        }
        if (detail) {
          const h = JSON.parse(r.text);
          const b = h.backends.find((x) => x.name === 'vllm');
          if (detail === 'full') assert.equal(b.url, ctx.simUrl, `${caller}: /health shows the URL`);
          else {
            assert.equal(b.url, null, `${caller}: /health hides the URL`);
            assert.equal(b.last_error, null);
            assert.equal(b.last_request_error, null);
            assert.ok(!r.text.includes(ctx.simUrl), `${caller}: no backend URL anywhere in /health`);
            assert.equal(typeof b.status, 'string');
            assert.equal(typeof b.in_flight, 'number');
          }
        }
      }
    });
  }
}

function mode(name, rows, extra) {
  describe(name, () => {
    const ctx = { remote: remoteAddress() };
    before(async () => {
      ctx.sim = await startSim();
      ctx.simUrl = ctx.sim.url;
      ctx.lx = await startLexora(configFor(ctx.sim.url, { extra: { server: { host: '0.0.0.0' }, ...extra } }));
    });
    after(async () => {
      await ctx.lx?.stop();
      await ctx.sim?.stop();
    });
    tableTests(name, rows, ctx);
  });
}

const KEYS = { keys: [{ key_sha256: sha(KEY), user: 'alice' }, { key_sha256: sha(BOB_KEY), user: 'bob' }] };

mode('auth on', ON, {
  auth: { enabled: true, ...KEYS },
  admin: { token: ADMIN },
  metrics: { enabled: false, port: 9090, token: METRICS },
});
mode('auth on, no admin token', ON_NO_ADMIN, { auth: { enabled: true, ...KEYS } });
mode('auth off, admin.token set', OFF_TOKEN, { admin: { token: ADMIN } });
mode('auth off, no tokens', OFF, {});

describe('the caller\'s own usage, the metrics token', () => {
  test('GET /v1/usage: the key\'s own requests and tokens against its limits, and its 429s', async () => {
    const sim = await startSim();
    const lx = await startLexora(configFor(sim.url, {
      extra: {
        auth: { enabled: true, ...KEYS },
        admin: { token: ADMIN },
        rate_limits: { default: { requests_per_minute: 2, tokens_per_minute: 200 }, default_max_tokens: 16 },
      },
    }));
    try {
      const as = (key) => ({ authorization: `Bearer ${key}` });
      const chat = (key) => fetch(`${lx.url}/v1/chat/completions`, {
        method: 'POST', headers: { ...as(key), 'content-type': 'application/json' }, body: JSON.stringify(chatBody()),
      });
      assert.equal((await chat(KEY)).status, 200);
      assert.equal((await chat(KEY)).status, 200);
      assert.equal((await chat(KEY)).status, 429);
      assert.equal((await chat(BOB_KEY)).status, 200);
      const u = await (await fetch(`${lx.url}/v1/usage`, { headers: as(KEY) })).json();
      assert.equal(u.object, 'usage');
      assert.equal(u.user, 'alice');
      assert.equal(u.minute.requests.limit, 2);
      assert.equal(u.minute.requests.used, 2);
      assert.equal(u.minute.requests.remaining, 0);
      assert.ok(u.minute.requests.reset_ms > 0 && u.minute.requests.reset_ms <= 60000);
      // a bucket drains at its limit per minute: 200 tokens a minute is 3.3 a second, so two answers' tokens
      // (about 25 each) are still there when the test asks
      assert.equal(u.minute.tokens.limit, 200);
      assert.ok(u.minute.tokens.used > 10, JSON.stringify(u.minute));
      assert.equal(u.minute.tokens.used + u.minute.tokens.remaining, 200);
      assert.equal(u.since_start.requests, 3, 'the 429 is a request too');
      assert.equal(u.since_start.rate_limited, 1);
      assert.equal(u.since_start.errors, 1);
      assert.ok(u.since_start.total_tokens > 0);
      assert.equal(u.since_start.total_tokens, u.since_start.prompt_tokens + u.since_start.completion_tokens);
      assert.equal(u.today.date, new Date().toISOString().slice(0, 10));
      assert.equal(u.today.requests, 3);
      assert.equal(u.today.rate_limited, 1);
      assert.equal(u.today.errors, 1);
      assert.equal(u.today.total_tokens, u.since_start.total_tokens);
      // the 429 was refused before routing: it counts under "-", as in /stats
      assert.deepEqual(Object.keys(u.today.per_model).sort(), ['-', MODEL].sort());
      assert.equal(u.today.per_model[MODEL].requests, 2);
      assert.equal(u.today.per_model['-'].requests, 1);
      assert.equal(u.today.per_model['-'].rate_limited, 1);
      assert.equal(u.today.per_model[MODEL].total_tokens, u.today.total_tokens);
      const b = await (await fetch(`${lx.url}/v1/usage`, { headers: as(BOB_KEY) })).json();
      assert.equal(b.user, 'bob');
      assert.equal(b.since_start.requests, 1, 'bob sees his own, not alice\'s');
      assert.equal(b.minute.requests.used, 1);
      assert.equal(b.today.requests, 1);
      // /stats?user= narrowed to the key's own user: the same counts
      const s = await (await fetch(`${lx.url}/stats?user=alice`, { headers: as(KEY) })).json();
      assert.ok(!JSON.stringify(s).includes('"bob"'), 'alice\'s /stats says nothing of bob');
    } finally {
      await lx.stop();
      await sim.stop();
    }
  });

  test('auth on, no admin token: a client key from loopback is still its user', async () => {
    const sim = await startSim();
    const lx = await startLexora(configFor(sim.url, { extra: { auth: { enabled: true, ...KEYS } } }));
    try {
      const u = await (await fetch(`${lx.url}/v1/usage`, { headers: { authorization: `Bearer ${BOB_KEY}` } })).json();
      assert.equal(u.user, 'bob');
    } finally {
      await lx.stop();
      await sim.stop();
    }
  });

  test('metrics.token_file guards /metrics on the main port and on metrics.port', async () => {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const path = await import('node:path');
    const { freePort } = await import('../lib/harness.mjs');
    const dir = mkdtempSync(path.join(os.tmpdir(), 'lexora-metrics-token-'));
    const file = path.join(dir, 'token');
    writeFileSync(file, `${METRICS}\n`);
    const sim = await startSim();
    const mport = await freePort();
    const lx = await startLexora(configFor(sim.url, { extra: { metrics: { enabled: true, port: mport, token_file: file } } }));
    try {
      for (const base of [lx.url, `http://127.0.0.1:${mport}`]) {
        const none = await fetch(`${base}/metrics`);
        assert.equal(none.status, 401, base);
        assert.match(none.headers.get('www-authenticate'), /^Bearer realm="lexora-metrics"/);
        assert.equal((await none.json()).error.code, 'invalid_metrics_token');
        const wrong = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${METRICS}x` } });
        assert.equal(wrong.status, 401);
        const ok = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${METRICS}` } });
        assert.equal(ok.status, 200, base);
        assert.match(await ok.text(), /^lexora_backend_drained\{backend="vllm"\} 0$/m);
      }
    } finally {
      await lx.stop();
      await sim.stop();
    }
  });
});
