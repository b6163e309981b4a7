// The ModelRouter end to end, against real simulators on loopback: aliases and upstream_name, an alias list
// falling to its next model, the line per model (a waiting request goes to whichever replica frees first),
// the balancing strategies' shares, affinity and its yield rule, models: auto (and a backend that lists
// nothing), a replica dying mid-run, and a reload that changes aliases while requests wait.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { writeFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import {
  accessRecord, chat, freePort, post, sleep, startSim, stats, toYaml, waitFor, withLexora,
} from '../lib/harness.mjs';

const FAST = ['--ttft-ms', '2', '--tokens-per-sec', '0'];
const QUIET_HC = { interval_seconds: 60, failure_threshold: 1, cooldown_seconds: 30, timeout_seconds: 1 };
const ask = (model, extra = {}) => ({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, ...extra });

function gatewayConfig(backends, extra = {}) {
  return {
    server: { host: '127.0.0.1', port: 0 },
    backends,
    logging: { level: 'INFO', format: 'json' },
    metrics: { enabled: false, port: 9090 },
    retry: { max_attempts: 3, delay_seconds: 0.02, backoff_multiplier: 1, max_delay_seconds: 1 },
    health_check: QUIET_HC,
    usage: { enabled: false },
    rate_limits: { default: { requests_per_minute: 100000, tokens_per_minute: 100000000 } },
    ...extra,
  };
}

async function withSims(argsList, fn) {
  const sims = [];
  try {
    for (const args of argsList) sims.push(await startSim(args));
    await fn(sims);
  } finally {
    for (const s of sims) await s.stop();
  }
}


// Sends n requests, `width` at a time; returns how many each backend answered.
async function spread(lx, n, width, body) {
  const count = {};
  let next = 0;
  const worker = async () => {
    while (next < n) {
      next++;
      const r = await chat(lx, body);
      assert.equal(r.status, 200, r.text);
      const b = r.headers.get('x-lexora-backend');
      count[b] = (count[b] || 0) + 1;
    }
  };
  await Promise.all(Array.from({ length: width }, worker));
  return count;
}

describe('models, aliases and replicas', () => {
  test('an alias resolves to its model; the backend sees the upstream name; the client sees both names', async () => {
    await withSims([[...FAST, '--model', 'Org/Coder-32B'], [...FAST, '--model', 'qwen3-32b']], async ([coder, big]) => {
      const config = gatewayConfig({
        gpu1: { type: 'vllm', url: coder.url, models: [{ name: 'qwen-coder', upstream_name: 'Org/Coder-32B' }] },
        gpu2: { type: 'vllm', url: big.url, models: ['qwen3-32b'] },
      }, { routing: { aliases: { code: 'qwen-coder', reasoning: ['qwen3-32b', 'qwen-coder'] } } });
      await withLexora(config, async (lx) => {
        const r = await chat(lx, ask('code'), { 'x-request-id': 'alias-1' });
        assert.equal(r.status, 200, r.text);
        assert.equal(r.headers.get('x-lexora-model'), 'qwen-coder');
        assert.equal(r.headers.get('x-lexora-backend'), 'gpu1');
        assert.equal(r.json.model, 'Org/Coder-32B'); // what the backend says
        const seen = (await coder.requests()).find((q) => q.request_id === 'alias-1');
        assert.equal(JSON.parse(seen.body).model, 'Org/Coder-32B');
        const rec = await accessRecord(lx, 'alias-1');
        assert.equal(rec.model, 'code');
        assert.equal(rec.model_used, 'qwen-coder');

        const direct = await chat(lx, ask('qwen-coder', { stream: true }));
        assert.equal(direct.status, 200);
        assert.equal(direct.headers.get('x-lexora-model'), 'qwen-coder');

        const models = await (await fetch(`${lx.url}/v1/models`)).json();
        assert.deepEqual(models.data.map((m) => m.id), ['qwen-coder', 'qwen3-32b', 'code', 'reasoning']);
        assert.deepEqual(models.data.find((m) => m.id === 'reasoning').lexora, { alias_of: ['qwen3-32b', 'qwen-coder'] });
        const one = await (await fetch(`${lx.url}/v1/models/code`)).json();
        assert.deepEqual(one.lexora.alias_of, ['qwen-coder']);

        const unknown = await chat(lx, ask('Org/Coder-32B'));
        assert.equal(unknown.status, 404);
        assert.equal(unknown.json.error.code, 'model_not_found');
        assert.match(unknown.json.error.message, /qwen-coder, qwen3-32b, code \(alias\), reasoning \(alias\)/);

        const s = await stats(lx);
        assert.equal(s.per_alias.code.requests, 1);
        assert.equal(s.per_model['qwen-coder'].requests, 2);
      });
    });
  });

  test('an alias list falls to its next model when the first has no routable backend', async () => {
    await withSims([[...FAST, '--model', 'small']], async ([small]) => {
      const config = gatewayConfig({
        big: { type: 'vllm', url: `http://127.0.0.1:${await freePort()}`, models: ['big'] }, // nobody listens
        small: { type: 'vllm', url: small.url, models: ['small'] },
      }, { routing: { aliases: { reasoning: ['big', 'small'] } }, health_check: { ...QUIET_HC, interval_seconds: 0.2 } });
      await withLexora(config, async (lx) => {
        const bigDown = async () => (await (await fetch(`${lx.url}/health`)).json()).backends
          .find((b) => b.name === 'big').status === 'down';
        await waitFor(bigDown, 'big marked down');
        const r = await chat(lx, ask('reasoning'));
        assert.equal(r.status, 200, r.text);
        assert.equal(r.headers.get('x-lexora-model'), 'small');
        const none = await chat(lx, ask('big'));
        assert.equal(none.status, 503);
        assert.equal(none.json.error.code, 'no_healthy_backend');
      });
    });
  });

  test('the line per model: a waiting request goes to whichever replica frees a slot first', async () => {
    // slow: 2 s per answer; quick: 0.3 s. One slot each.
    await withSims([['--ttft-ms', '2000', '--tokens-per-sec', '0', '--model', 'm'],
      ['--ttft-ms', '300', '--tokens-per-sec', '0', '--model', 'm']], async ([slow, quick]) => {
      const config = gatewayConfig({
        slow: { type: 'vllm', url: slow.url, max_concurrency: 1, models: ['m'] },
        quick: { type: 'vllm', url: quick.url, max_concurrency: 1, models: ['m'] },
      });
      await withLexora(config, async (lx) => {
        const first = [chat(lx, ask('m')), chat(lx, ask('m'))];
        await sleep(100); // both slots taken
        const waiting = await chat(lx, ask('m'));
        assert.equal(waiting.status, 200);
        assert.equal(waiting.headers.get('x-lexora-backend'), 'quick'); // not the slot it might have been tied to
        assert.ok(Number(waiting.headers.get('x-lexora-queue-wait-ms')) > 50);
        await Promise.all(first);
      });
    });
  });

  test('weighted: 2:1 within ±10 % over 300 requests; round_robin alternates', async () => {
    await withSims([[...FAST, '--model', 'm'], [...FAST, '--model', 'm']], async ([a, b]) => {
      const backends = {
        a: { type: 'vllm', url: a.url, weight: 2, models: ['m'] },
        b: { type: 'vllm', url: b.url, models: ['m'] },
      };
      await withLexora(gatewayConfig(backends, { routing: { balance: 'weighted' } }), async (lx) => {
        const count = await spread(lx, 300, 4, ask('m'));
        assert.ok(Math.abs(count.a - 200) <= 20 && Math.abs(count.b - 100) <= 10, JSON.stringify(count));
      });
      await withLexora(gatewayConfig(backends, { routing: { balance: 'round_robin' } }), async (lx) => {
        const count = await spread(lx, 20, 1, ask('m'));
        assert.deepEqual(count, { a: 10, b: 10 });
      });
    });
  });

  test('least_loaded and peak_ewma send less to a slow replica', async () => {
    await withSims([['--ttft-ms', '150', '--tokens-per-sec', '0', '--model', 'm'], [...FAST, '--model', 'm']],
      async ([slow, fast]) => {
        const backends = {
          slow: { type: 'vllm', url: slow.url, models: ['m'] },
          fast: { type: 'vllm', url: fast.url, models: ['m'] },
        };
        for (const balance of ['least_loaded', 'peak_ewma']) {
          await withLexora(gatewayConfig(backends, { routing: { balance } }), async (lx) => {
            const count = await spread(lx, 60, 6, ask('m'));
            assert.ok((count.fast || 0) > 2 * (count.slow || 0), `${balance}: ${JSON.stringify(count)}`);
          });
        }
      });
  });

  test('affinity: a conversation keeps to one replica, and yields when that one is much busier', async () => {
    await withSims([['--ttft-ms', '400', '--tokens-per-sec', '0', '--model', 'm'],
      ['--ttft-ms', '400', '--tokens-per-sec', '0', '--model', 'm']], async ([a, b]) => {
      const config = gatewayConfig({
        a: { type: 'vllm', url: a.url, models: ['m'] },
        b: { type: 'vllm', url: b.url, models: ['m'] },
      }, { routing: { affinity: 'prefix' } });
      await withLexora(config, async (lx) => {
        // a conversation: a long system prompt (several 256-byte prefix blocks), then its turns
        const system = (i) => `You are the assistant of conversation ${i}. ${'Keep answers short and exact. '.repeat(30)}`;
        const conv = (i, turns = 1) => ask('m', { messages: [{ role: 'system', content: system(i) },
          ...Array.from({ length: turns }, (_, t) => ({ role: 'user', content: `question ${t}` }))] });
        // one at a time: every later turn goes where the conversation's first went; conversations spread
        const home = {};
        for (let turns = 1; turns <= 3; turns++) {
          for (let i = 0; i < 8; i++) {
            const r = await chat(lx, conv(i, turns));
            const be = r.headers.get('x-lexora-backend');
            if (turns === 1) home[i] = be;
            else assert.equal(be, home[i], `conversation ${i}, turn ${turns}`);
          }
        }
        assert.equal(new Set(Object.values(home)).size, 2, JSON.stringify(home));
        // 10 at once of one conversation: its replica takes them until it is 4 ahead, then the rest yield
        const burst = await Promise.all(Array.from({ length: 10 }, () => chat(lx, conv(0, 4))));
        const to = burst.map((r) => r.headers.get('x-lexora-backend'));
        const atHome = to.filter((x) => x === home[0]).length;
        assert.ok(atHome >= 4 && atHome < 10, to.join(' '));
        const s = await stats(lx);
        const hits = Object.values(s.per_backend).reduce((n, b) => n + b.affinity_hits, 0);
        assert.ok(hits >= 16 + 4, JSON.stringify(s.per_backend));
        assert.ok(s.per_backend[home[0]].affinity_yields >= 1, JSON.stringify(s.per_backend));
      });
    });
  });

  test('models: auto serves what the backend lists; a backend that lists nothing serves nothing', async () => {
    const empty = createServer((req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(req.url === '/v1/models' ? '{"object":"list","data":[]}' : '{}');
    });
    const emptyPort = await freePort();
    await new Promise((r) => empty.listen(emptyPort, '127.0.0.1', r));
    try {
      await withSims([[...FAST, '--model', 'found-1', '--model', 'found-2']], async ([sim]) => {
        const config = gatewayConfig({
          disc: { type: 'vllm', url: sim.url, models: 'auto' },
          empty: { type: 'vllm', url: `http://127.0.0.1:${emptyPort}`, models: 'auto' },
        }, { routing: { aliases: { fav: 'found-2' } } });
        await withLexora(config, async (lx) => {
          await waitFor(async () => (await (await fetch(`${lx.url}/v1/models`)).json()).data.length === 3, 'discovery');
          const models = await (await fetch(`${lx.url}/v1/models`)).json();
          assert.deepEqual(models.data.map((m) => m.id), ['found-1', 'found-2', 'fav']);
          assert.equal(models.data[0].owned_by, 'disc');
          const r = await chat(lx, ask('fav'));
          assert.equal(r.status, 200, r.text);
          assert.equal(r.headers.get('x-lexora-model'), 'found-2');
          assert.equal((await chat(lx, ask('found-3'))).status, 404);
          await waitFor(() => /backend empty: models: auto, but .* lists no model/.test(lx.logs()), 'the warning');
        });
      });
    } finally {
      empty.close();
    }
  });

  test('a replica dying mid-run: every request still succeeds on the other', async () => {
    await withSims([[...FAST, '--model', 'm'], [...FAST, '--model', 'm']], async ([a, b]) => {
      const config = gatewayConfig({
        a: { type: 'vllm', url: a.url, models: ['m'] },
        b: { type: 'vllm', url: b.url, models: ['m'] },
      }, { routing: { balance: 'round_robin' } });
      await withLexora(config, async (lx) => {
        const results = [];
        for (let i = 0; i < 40; i++) {
          if (i === 10) await a.stop();
          results.push((await chat(lx, ask('m'))).status);
        }
        assert.deepEqual([...new Set(results)], [200]);
        const s = await stats(lx);
        assert.ok(s.per_backend.b.requests >= 30, JSON.stringify(s.per_backend));
      });
    });
  });

  test('a reload that changes aliases while requests wait: they are served, new ones use the new aliases', async () => {
    await withSims([['--ttft-ms', '600', '--tokens-per-sec', '0', '--model', 'one', '--model', 'two']], async ([sim]) => {
      const config = gatewayConfig({
        gpu: { type: 'vllm', url: sim.url, max_concurrency: 1, models: ['one', 'two'] },
      }, { routing: { aliases: { pick: 'one' } } });
      await withLexora(config, async (lx) => {
        const busy = chat(lx, ask('one'));
        await sleep(100);
        const waiting = [chat(lx, ask('pick')), chat(lx, ask('pick'))];
        await sleep(100);
        writeFileSync(lx.file, `${toYaml({ ...config, server: { host: '127.0.0.1', port: lx.port }, routing: { aliases: { pick: 'two', other: 'one' } } })}\n`);
        const rl = await post(`${lx.url}/admin/reload`, '');
        assert.equal(rl.status, 200, rl.text);
        for (const r of await Promise.all(waiting)) {
          assert.equal(r.status, 200, r.text);
          assert.equal(r.headers.get('x-lexora-model'), 'one'); // resolved when they arrived
        }
        assert.equal((await busy).status, 200);
        const after = await chat(lx, ask('pick'));
        assert.equal(after.headers.get('x-lexora-model'), 'two');
        assert.equal((await chat(lx, ask('other'))).headers.get('x-lexora-model'), 'one');
      });
    });
  });
});
