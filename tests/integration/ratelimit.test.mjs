// Per-user rate limits and API keys end to end (issue 4): real lexora in front of real lexora-sim on
// loopback, and for the shared mode a real redis-server started here on a free port. Limits are chosen so
// that refill during a test is negligible (a few per minute) or, in wait mode, about a second; no
// assertion depends on tight timing.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  MODEL, accessRecord, chatBody, configFor, freePort, launch, post, sleep, sseData, startLexora, startSim, waitFor, waitForPort,
} from '../lib/harness.mjs';

const chat = (extra = {}) => chatBody(extra, { max_tokens: 1 });

function rlConfig(simUrl, rateLimits, extra = {}) {
  return configFor(simUrl, { extra: { rate_limits: { default_max_tokens: 16, ...rateLimits }, ...extra } });
}

const send = (lx, extra = {}, headers = {}) => post(`${lx.url}/v1/chat/completions`, chat(extra), headers);

describe('rate limits', () => {
  let sim;
  before(async () => { sim = await startSim(['--ttft-ms', '0', '--tokens-per-sec', '0']); });
  after(async () => { await sim.stop(); });

  test('a burst gets exactly the limit, then 429 in the OpenAI envelope with the rate-limit headers', async () => {
    const lx = await startLexora(rlConfig(sim.url, { default: { requests_per_minute: 5, tokens_per_minute: 100000 } }));
    try {
      const results = [];
      for (let i = 0; i < 8; i++) results.push(await send(lx, { x_user_id: 'burst' }, { 'x-request-id': `burst-${i}` }));
      assert.deepEqual(results.map((r) => r.status), [200, 200, 200, 200, 200, 429, 429, 429]);
      results.slice(0, 5).forEach((r, i) => {
        assert.equal(r.headers.get('x-ratelimit-limit-requests'), '5');
        assert.equal(r.headers.get('x-ratelimit-remaining-requests'), String(4 - i));
        assert.match(r.headers.get('x-ratelimit-reset-requests'), /^[0-9.hms]+$/);
        assert.equal(r.headers.get('x-ratelimit-limit-tokens'), '100000');
        assert.ok(Number(r.headers.get('x-ratelimit-remaining-tokens')) < 100000);
        assert.match(r.headers.get('x-ratelimit-reset-tokens'), /^[0-9.hms]+$/);
      });
      const r = results[5];
      assert.equal(r.json.error.type, 'requests');
      assert.equal(r.json.error.code, 'rate_limit_exceeded');
      assert.equal(r.json.error.param, null);
      assert.match(r.json.error.message, /Rate limit reached for user `burst` on requests per min \(RPM\): Limit 5/);
      const retryMs = Number(r.headers.get('retry-after-ms'));
      assert.ok(retryMs > 0 && retryMs <= 12000, `retry-after-ms ${retryMs}`);
      assert.equal(r.headers.get('retry-after'), String(Math.ceil(retryMs / 1000)));
      assert.equal(r.headers.get('x-ratelimit-limit-requests'), '5');
      assert.equal(r.headers.get('x-ratelimit-remaining-requests'), '0');
      assert.ok(r.headers.get('x-ratelimit-reset-requests'));
      assert.equal(r.headers.get('x-ratelimit-limit-tokens'), '100000');
      assert.ok(r.headers.get('x-ratelimit-remaining-tokens'));
      assert.ok(r.headers.get('x-ratelimit-reset-tokens'));
      assert.equal(r.headers.get('x-should-retry'), null);
      assert.equal(r.headers.get('x-request-id'), 'burst-5');
      const rec = await accessRecord(lx, 'burst-5');
      assert.equal(rec.status, 429);
      assert.equal(rec.error_code, 'rate_limit_exceeded');
      assert.equal(rec.user, 'burst');
      // another user has its own bucket
      assert.equal((await send(lx, { x_user_id: 'other' })).status, 200);
    } finally {
      await lx.stop();
    }
  });

  test('per-user overrides (rate_limits.users)', async () => {
    const lx = await startLexora(rlConfig(sim.url, {
      default: { requests_per_minute: 2, tokens_per_minute: 0 },
      users: { vip: { requests_per_minute: 6 } },
    }));
    try {
      const count = async (user) => {
        let ok = 0;
        for (let i = 0; i < 9; i++) if ((await send(lx, { x_user_id: user })).status === 200) ok++;
        return ok;
      };
      assert.equal(await count('vip'), 6);
      assert.equal(await count('plain'), 2);
    } finally {
      await lx.stop();
    }
  });

  test('TPM is reconciled with the real streamed usage', async () => {
    // Both users reserve the same (no max_tokens: default_max_tokens 1000, or max_tokens 1000); the sim
    // then writes 16 tokens for one and 1000 for the other. Only reconciliation tells them apart.
    const lx = await startLexora(rlConfig(sim.url, {
      default: { requests_per_minute: 0, tokens_per_minute: 3000 }, default_max_tokens: 1000,
    }));
    try {
      const run = async (user, extra) => {
        const statuses = [];
        for (let i = 0; i < 8; i++) {
          const body = { model: MODEL, messages: [{ role: 'user', content: 'hi' }], stream: true, x_user_id: user, ...extra };
          const r = await post(`${lx.url}/v1/chat/completions`, body);
          if (r.status === 200) assert.equal(sseData(r.text).at(-1), '[DONE]');
          statuses.push(r.status);
        }
        return statuses;
      };
      const short = await run('short', {});
      const long = await run('long', { max_tokens: 1000 });
      assert.deepEqual(short, Array(8).fill(200));
      const longOk = long.filter((s) => s === 200).length;
      assert.ok(longOk >= 1 && longOk <= 3, `long answers admitted: ${long}`);
      assert.ok(long.includes(429));
    } finally {
      await lx.stop();
    }
  });

  test('a request whose estimate alone exceeds the TPM limit is refused at once', async () => {
    const lx = await startLexora(rlConfig(sim.url, { default: { requests_per_minute: 0, tokens_per_minute: 1000 } }));
    try {
      const r = await send(lx, { x_user_id: 'big', max_tokens: 5000 });
      assert.equal(r.status, 429);
      assert.equal(r.json.error.type, 'tokens');
      assert.equal(r.json.error.code, 'rate_limit_exceeded');
      assert.match(r.json.error.message, /Request too large/);
      assert.match(r.json.error.message, /Limit 1000/);
      assert.equal(r.headers.get('x-should-retry'), 'false');
      // it cost nothing: a request that fits still passes
      assert.equal((await send(lx, { x_user_id: 'big', max_tokens: 10 })).status, 200);
    } finally {
      await lx.stop();
    }
  });

  test('wait mode: a request over its limit waits for it, within its deadline', async () => {
    const lx = await startLexora(rlConfig(sim.url, {
      default: { requests_per_minute: 60, tokens_per_minute: 0 }, mode: 'wait',
    }));
    try {
      const burst = await Promise.all(Array.from({ length: 60 }, () => send(lx, { x_user_id: 'waiter' })));
      assert.ok(burst.every((r) => r.status === 200));
      const t0 = Date.now();
      const r = await send(lx, { x_user_id: 'waiter' }, { 'x-request-id': 'waited-1' });
      const took = Date.now() - t0;
      assert.equal(r.status, 200);
      assert.ok(took >= 200 && took < 15000, `took ${took} ms`);
      // a deadline the wait cannot fit in: refused, not held
      const short = await send(lx, { x_user_id: 'waiter', x_timeout: 0.05 });
      assert.equal(short.status, 429);
      assert.equal(short.json.error.code, 'rate_limit_exceeded');
    } finally {
      await lx.stop();
    }
  });
});

describe('identity', () => {
  let sim;
  before(async () => { sim = await startSim(['--ttft-ms', '0', '--tokens-per-sec', '0']); });
  after(async () => { await sim.stop(); });
  const NO_LIMITS = { default: { requests_per_minute: 0, tokens_per_minute: 0 } };

  test('auth on: the bearer key decides the user; no key or a wrong one is 401', async () => {
    const sha = createHash('sha256').update('sk-alice-secret').digest('hex');
    const lx = await startLexora(rlConfig(sim.url, NO_LIMITS, {
      auth: { enabled: true, keys: [{ key_sha256: sha, user: 'alice' }] },
    }));
    try {
      const none = await send(lx, { x_user_id: 'alice' }, { 'x-request-id': 'auth-none' });
      assert.equal(none.status, 401);
      assert.equal(none.json.error.code, 'invalid_api_key');
      assert.equal(none.headers.get('www-authenticate'), 'Bearer');
      assert.equal((await accessRecord(lx, 'auth-none')).error_code, 'invalid_api_key');
      const wrong = await send(lx, {}, { authorization: 'Bearer sk-wrong' });
      assert.equal(wrong.status, 401);
      assert.equal(wrong.json.error.code, 'invalid_api_key');
      assert.ok(!wrong.text.includes('sk-wrong'));
      const right = await send(lx, { x_user_id: 'mallory' }, {
        authorization: 'Bearer sk-alice-secret', 'x-user-id': 'mallory', 'x-request-id': 'auth-ok',
      });
      assert.equal(right.status, 200);
      assert.equal((await accessRecord(lx, 'auth-ok')).user, 'alice');
    } finally {
      await lx.stop();
    }
  });

  test('auth off: x_user_id, else X-User-Id, else anonymous', async () => {
    const lx = await startLexora(rlConfig(sim.url, NO_LIMITS));
    try {
      await send(lx, { x_user_id: 'bodyuser' }, { 'x-user-id': 'hdruser', 'x-request-id': 'id-1' });
      await send(lx, {}, { 'x-user-id': 'hdruser', 'x-request-id': 'id-2' });
      await send(lx, {}, { 'x-request-id': 'id-3', authorization: 'Bearer whatever' });
      assert.equal((await accessRecord(lx, 'id-1')).user, 'bodyuser');
      assert.equal((await accessRecord(lx, 'id-2')).user, 'hdruser');
      assert.equal((await accessRecord(lx, 'id-3')).user, 'anonymous');
    } finally {
      await lx.stop();
    }
  });
});

describe('shared limits in Redis', () => {
  let sim;
  let redisPort;
  let redis;
  const startRedis = async () => {
    redis = launch('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      'redis-server');
    await waitForPort(redisPort, redis, 'redis-server');
  };
  const killRedis = async () => {
    redis.child.kill('SIGKILL');
    await redis.exited;
  };
  before(async () => {
    sim = await startSim(['--ttft-ms', '0', '--tokens-per-sec', '0']);
    redisPort = await freePort();
    await startRedis();
  });
  after(async () => {
    await sim.stop();
    if (redis.exitCode === null && redis.child.signalCode === null) await killRedis();
  });

  test('two gateways share one limit; without Redis each falls back to its own; shared again after', async () => {
    const limits = { default: { requests_per_minute: 6, tokens_per_minute: 0 } };
    const cfg = () => rlConfig(sim.url, { ...limits, store: 'redis', redis_url: `redis://127.0.0.1:${redisPort}` });
    const a = await startLexora(cfg());
    const b = await startLexora(cfg());
    const both = async (user, n) => {
      const statuses = [];
      for (let i = 0; i < n; i++) statuses.push((await send(i % 2 ? b : a, { x_user_id: user })).status);
      return statuses;
    };
    // /stats says whether the limiter's Redis answers; wait for both to be connected (or give it time).
    const redisUp = async (lx, want) => {
      try {
        const s = await (await fetch(`${lx.url}/stats`)).json();
        const v = JSON.stringify(s).match(/"redis_up":(true|false|1|0)/);
        if (v) return (v[1] === 'true' || v[1] === '1') === want;
      } catch { /* not there: fall through */ }
      return null;
    };
    const waitRedis = async (want) => {
      const deadline = Date.now() + 10000;
      for (;;) {
        const [x, y] = [await redisUp(a, want), await redisUp(b, want)];
        if (x === null || y === null) { await sleep(3000); return; }
        if (x && y) return;
        if (Date.now() > deadline) throw new Error(`redis_up never became ${want}`);
        await sleep(100);
      }
    };
    try {
      await waitRedis(true);
      const shared = await both('shared-1', 12);
      assert.equal(shared.filter((s) => s === 200).length, 6, `shared: ${shared}`);
      assert.ok(shared.every((s) => s === 200 || s === 429));

      await killRedis();
      const alone = await both('local-1', 6);
      assert.deepEqual(alone, Array(6).fill(200), `fallback: ${alone}`);
      const over = await both('local-2', 16);
      // each instance now enforces the limit alone: 6 each at most
      assert.equal(over.filter((s) => s === 200).length, 12, `local limits: ${over}`);

      await startRedis();
      await waitRedis(true);
      const again = await both('shared-2', 12);
      assert.equal(again.filter((s) => s === 200).length, 6, `shared again: ${again}`);

      // every request accounted, by the instance that answered it: 46 sent, alternately
      const refused = [shared, alone, over, again].flat().filter((s) => s === 429).length;
      const [sa, sb] = [await (await fetch(`${a.url}/stats`)).json(), await (await fetch(`${b.url}/stats`)).json()];
      assert.equal(sa.total_requests, 23);
      assert.equal(sb.total_requests, 23);
      assert.equal(sa.rate_limited.total + sb.rate_limited.total, refused);
      assert.ok(sa.rate_limited.store_fallbacks > 0 && sb.rate_limited.store_fallbacks > 0, 'decided locally while Redis was down');
    } finally {
      await a.stop();
      await b.stop();
    }
  });
});
