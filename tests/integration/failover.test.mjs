// Retries, failover and the circuit breaker, against real simulators with failure injection: the backoff
// between tries (lower bounds only: the timer cannot fire early; noise only adds), what is retried and
// what is not, a dying backend failed over and a restored one rejoining, mid-stream failures, the circuit
// opening and its half-open trial, and 503 no_healthy_backend at once when nothing is up.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  accessLines, chat, configFor, health, sseData, startLexora, startSim, stats, waitFor,
} from '../lib/harness.mjs';

const CHAT = { messages: [{ role: 'user', content: 'hello' }], max_tokens: 4 };
const FAST = ['--ttft-ms', '5', '--tokens-per-sec', '0'];
// Active checks rarely (their verdicts are not what these tests are about), passive checks lenient.
const QUIET_HC = { interval_seconds: 60, failure_threshold: 10, cooldown_seconds: 30, timeout_seconds: 1 };


function oneBackend(sim, extra = {}) {
  return configFor(sim.url, {
    extra: {
      retry: { max_attempts: 3, delay_seconds: 0.3, backoff_multiplier: 2, max_delay_seconds: 5 },
      health_check: QUIET_HC,
      ...extra,
    },
  });
}

// a (priority 0) and b (priority 1) both serve qwen3-32b.
function twoBackends(a, b, extra = {}) {
  return configFor(a.url, {
    extra: {
      backends: {
        a: { type: 'vllm', url: a.url, priority: 0, models: ['qwen3-32b'] },
        b: { type: 'vllm', url: b.url, priority: 1, models: ['qwen3-32b'] },
      },
      retry: { max_attempts: 3, delay_seconds: 0.05, backoff_multiplier: 2, max_delay_seconds: 1 },
      health_check: QUIET_HC,
      ...extra,
    },
  });
}

const inference = async (sim) => (await sim.requests()).filter((r) => r.path === '/v1/chat/completions');

describe('retries', () => {
  test('the first two tries fail (503), the third succeeds, after the configured backoff', async () => {
    const sim = await startSim([...FAST, '--fail-first', '2']);
    const lx = await startLexora(oneBackend(sim));
    try {
      const r = await chat(lx, CHAT);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.object, 'chat.completion');
      const tries = await inference(sim);
      assert.equal(tries.length, 3);
      assert.ok(tries.every((t) => t.request_id === r.headers.get('x-request-id')), 'same X-Request-Id on every try');
      // delay_seconds 0.3 × 2^n with at most −20 % jitter: ≥ 0.24 s, then ≥ 0.48 s
      assert.ok(tries[1].received_ms - tries[0].received_ms >= 240, `first wait ${tries[1].received_ms - tries[0].received_ms} ms`);
      assert.ok(tries[2].received_ms - tries[1].received_ms >= 480, `second wait ${tries[2].received_ms - tries[1].received_ms} ms`);
      const s = await stats(lx);
      assert.equal(s.retries, 2);
      assert.equal(s.per_backend.vllm.retries, 2);
      assert.equal(s.failovers, 0);
      await waitFor(() => accessLines(lx).length === 1, 'the access line');
      assert.equal(accessLines(lx)[0].attempts, 3);
      assert.equal(accessLines(lx)[0].status, 200);
    } finally {
      await lx.stop();
      await sim.stop();
    }
  });

  test('every try fails: the last answer after max_attempts (503 passed on; a dropped connection is 502)', async () => {
    const sim = await startSim([...FAST, '--fail-rate', '1']);
    const lx = await startLexora(oneBackend(sim, {
      retry: { max_attempts: 2, delay_seconds: 0.05, backoff_multiplier: 2, max_delay_seconds: 1 },
    }));
    try {
      let r = await chat(lx, CHAT);
      assert.equal(r.status, 503);
      assert.match(r.json.error.message, /Simulated failure/);
      assert.equal((await inference(sim)).length, 2);

      await sim.control({ fail_mode: 'drop' });
      r = await chat(lx, CHAT);
      assert.equal(r.status, 502);
      assert.equal(r.json.error.code, 'upstream_unavailable');
      // 2 tries; libcurl itself re-sends once on a fresh connection when a reused one dies before any
      // byte of the answer (the keep-alive race), so the sim may see a third
      const n = (await inference(sim)).length - 2;
      assert.ok(n >= 2 && n <= 4, `${n} requests`);
      assert.equal((await stats(lx)).total_errors, 2);
    } finally {
      await lx.stop();
      await sim.stop();
    }
  });

  test('a 400 (or another 4xx, or a 500) is never retried', async () => {
    const sim = await startSim([...FAST, '--fail-first', '1', '--fail-mode', '400']);
    const lx = await startLexora(oneBackend(sim));
    try {
      let r = await chat(lx, CHAT);
      assert.equal(r.status, 400);
      assert.equal((await inference(sim)).length, 1);
      await sim.control({ fail_first: 1, fail_mode: '500' });
      r = await chat(lx, CHAT);
      assert.equal(r.status, 500);
      assert.equal((await inference(sim)).length, 2);
      assert.equal((await stats(lx)).retries, 0);
    } finally {
      await lx.stop();
      await sim.stop();
    }
  });

  test('a 429 is retried after its Retry-After, and passed on with it when tries run out', async () => {
    const sim = await startSim([...FAST, '--fail-first', '1', '--fail-mode', '429']);
    const lx = await startLexora(oneBackend(sim, {
      retry: { max_attempts: 2, delay_seconds: 0.05, backoff_multiplier: 2, max_delay_seconds: 5 },
    }));
    try {
      let r = await chat(lx, CHAT);
      assert.equal(r.status, 200, r.text);
      const tries = await inference(sim);
      assert.equal(tries.length, 2);
      assert.ok(tries[1].received_ms - tries[0].received_ms >= 950, 'waited for Retry-After: 1');

      await sim.control({ fail_first: 2 });
      r = await chat(lx, CHAT);
      assert.equal(r.status, 429);
      assert.equal(r.headers.get('retry-after'), '1');
    } finally {
      await lx.stop();
      await sim.stop();
    }
  });

  test('a backend that hangs times out before its first byte and is retried', async () => {
    const sim = await startSim([...FAST, '--fail-first', '1', '--fail-mode', 'hang']);
    const cfg = oneBackend(sim, {
      retry: { max_attempts: 2, delay_seconds: 0.05, backoff_multiplier: 2, max_delay_seconds: 1 },
    });
    cfg.backends.vllm.timeout = 0.5;
    const lx = await startLexora(cfg);
    try {
      const r = await chat(lx, CHAT);
      assert.equal(r.status, 200, r.text);
      assert.equal((await inference(sim)).length, 2);
      const s = await sim.stats();
      assert.equal(s.failed, 1); // the hung one, closed by Lexora's timeout
      assert.equal(s.completed, 1);
    } finally {
      await lx.stop();
      await sim.stop();
    }
  });

  test('no retry would end past the request deadline (x_timeout): the first answer stands', async () => {
    const sim = await startSim([...FAST, '--fail-first', '1']);
    const lx = await startLexora(oneBackend(sim, {
      retry: { max_attempts: 3, delay_seconds: 2, backoff_multiplier: 2, max_delay_seconds: 5 },
    }));
    try {
      const r = await chat(lx, { ...CHAT, x_timeout: 1 });
      assert.equal(r.status, 503);
      assert.equal((await inference(sim)).length, 1);
    } finally {
      await lx.stop();
      await sim.stop();
    }
  });

  test('a client that leaves while a retry waits: nothing more is sent, the request is accounted as 499', async () => {
    const sim = await startSim([...FAST, '--fail-first', '1']);
    const lx = await startLexora(oneBackend(sim, {
      retry: { max_attempts: 3, delay_seconds: 1, backoff_multiplier: 2, max_delay_seconds: 5 },
    }));
    try {
      const ac = new AbortController();
      const pending = fetch(`${lx.url}/v1/chat/completions`, {
        method: 'POST', body: JSON.stringify(CHAT), signal: ac.signal, headers: { 'content-type': 'application/json' },
      }).catch((e) => e);
      await waitFor(async () => (await inference(sim)).length === 1, 'the first try');
      await waitFor(() => /try 2 of 3/.test(lx.logs()), 'the retry scheduled');
      ac.abort();
      await pending;
      await waitFor(() => /client went away while waiting to retry/.test(lx.logs()), 'the abort noticed');
      await new Promise((r) => setTimeout(r, 1300)); // past the backoff: the timer must be gone
      assert.equal((await inference(sim)).length, 1);
      await waitFor(() => accessLines(lx).some((l) => l.status === 499), 'a 499 access line');
      assert.equal((await chat(lx, CHAT)).status, 200);
    } finally {
      await lx.stop();
      await sim.stop();
    }
  });

  test('a failure mid-stream ends the stream with an error event and [DONE], never retried', async () => {
    const sim = await startSim(['--ttft-ms', '5', '--tokens-per-sec', '200', '--fail-first', '1',
      '--fail-mode', 'midstream']);
    const lx = await startLexora(oneBackend(sim));
    try {
      const r = await chat(lx, { ...CHAT, max_tokens: 20, stream: true });
      assert.equal(r.status, 200);
      const events = sseData(r.text);
      assert.equal(events.at(-1), '[DONE]');
      const err = JSON.parse(events.at(-2));
      assert.equal(err.error.code, 'upstream_bad_response');
      assert.ok(events.length > 3, 'some tokens came first');
      assert.equal((await inference(sim)).length, 1);
      const s = await stats(lx);
      assert.equal(s.retries + s.failovers, 0);
      assert.equal(s.total_errors, 1);
    } finally {
      await lx.stop();
      await sim.stop();
    }
  });
});

describe('failover', () => {
  test('a backend that dies is failed over to the second; after its cooldown a trial brings it back', async () => {
    const a = await startSim(FAST);
    const b = await startSim(FAST);
    // no active check in the test's time: the requests themselves find a dead, and the circuit decides
    const lx = await startLexora(twoBackends(a, b, {
      health_check: { interval_seconds: 60, failure_threshold: 2, cooldown_seconds: 1, timeout_seconds: 1 },
    }));
    try {
      let r = await chat(lx, CHAT);
      assert.equal(r.headers.get('x-lexora-backend'), 'a', 'priority 0 first');
      await a.stop();
      r = await chat(lx, CHAT);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.headers.get('x-lexora-backend'), 'b');
      const streamed = await chat(lx, { ...CHAT, stream: true });
      assert.equal(streamed.status, 200);
      assert.equal(sseData(streamed.text).at(-1), '[DONE]');
      const s = await stats(lx);
      assert.equal(s.failovers, 2);
      assert.equal(s.per_backend.a.failovers, 2);
      const h = await health(lx);
      assert.equal(h.status, 200);
      assert.equal(h.json.status, 'degraded');
      assert.equal(h.json.backends.find((x) => x.name === 'a').circuit, 'open'); // two failures in a row
      r = await chat(lx, CHAT);
      assert.equal(r.headers.get('x-lexora-backend'), 'b', 'while open, a is not tried');
      assert.equal((await stats(lx)).failovers, 2);

      const back = await startSim(FAST, { port: a.port });
      try {
        await waitFor(async () => (await health(lx)).json.backends.find((x) => x.name === 'a').circuit === 'half_open',
          'a half-open', { ms: 5000, stepMs: 50 });
        r = await chat(lx, CHAT);
        assert.equal(r.headers.get('x-lexora-backend'), 'a', 'the restored backend takes its traffic back');
        assert.equal((await inference(back)).length, 1);
      } finally {
        await back.stop();
      }
    } finally {
      await lx.stop();
      await b.stop();
    }
  });

  test('equal priorities share the load by requests in flight', async () => {
    const a = await startSim(['--ttft-ms', '300', '--tokens-per-sec', '0']);
    const b = await startSim(['--ttft-ms', '300', '--tokens-per-sec', '0']);
    const cfg = twoBackends(a, b);
    cfg.backends.b.priority = 0;
    const lx = await startLexora(cfg);
    try {
      const all = await Promise.all([1, 2, 3, 4].map(() => chat(lx, CHAT)));
      assert.ok(all.every((r) => r.status === 200));
      assert.equal((await inference(a)).length, 2);
      assert.equal((await inference(b)).length, 2);
    } finally {
      await lx.stop();
      await a.stop();
      await b.stop();
    }
  });

  test('all backends down: 503 no_healthy_backend at once, with Retry-After; one back serves again', async () => {
    const a = await startSim(FAST);
    const b = await startSim(FAST);
    const lx = await startLexora(twoBackends(a, b, {
      health_check: { interval_seconds: 0.2, failure_threshold: 1, cooldown_seconds: 30, timeout_seconds: 1 },
    }));
    try {
      await a.stop();
      await b.stop();
      await waitFor(async () => (await health(lx)).status === 503, '/health unhealthy', { ms: 5000, stepMs: 50 });
      let r = await chat(lx, CHAT);
      assert.equal(r.status, 503);
      assert.equal(r.json.error.code, 'no_healthy_backend');
      assert.match(r.json.error.message, /qwen3-32b/);
      assert.ok(Number(r.headers.get('retry-after')) >= 1);
      assert.equal((await stats(lx)).retries, 0);

      const back = await startSim(FAST, { port: b.port }); // marked up by its next check: it serves again
      try {
        await waitFor(async () => (await health(lx)).json.status === 'degraded', 'b up', { ms: 5000, stepMs: 50 });
        r = await chat(lx, CHAT);
        assert.equal(r.status, 200, r.text);
        assert.equal(r.headers.get('x-lexora-backend'), 'b');
      } finally {
        await back.stop();
      }
    } finally {
      await lx.stop();
    }
  });
});

describe('circuit breaker', () => {
  test('while the half-open trial is out, new requests wait for its verdict instead of being refused', async () => {
    const sim = await startSim(['--ttft-ms', '600', '--tokens-per-sec', '0', '--fail-first', '1']);
    const lx = await startLexora(oneBackend(sim, {
      retry: { max_attempts: 1, delay_seconds: 0.05, backoff_multiplier: 2, max_delay_seconds: 1 },
      health_check: { interval_seconds: 60, failure_threshold: 1, cooldown_seconds: 0.5, timeout_seconds: 1 },
    }));
    try {
      assert.equal((await chat(lx, CHAT)).status, 503); // opens the circuit
      await waitFor(async () => (await health(lx)).json.backends[0].circuit === 'half_open', 'half-open',
        { ms: 5000, stepMs: 50 });
      const trial = chat(lx, CHAT);
      await waitFor(async () => (await inference(sim)).length === 2, 'the trial sent');
      const waiting = await chat(lx, CHAT); // arrives while the trial is out: waits, then goes
      assert.equal(waiting.status, 200, waiting.text);
      assert.equal((await trial).status, 200);
      const tries = await inference(sim);
      assert.equal(tries.length, 3);
      assert.ok(tries[2].received_ms - tries[1].received_ms >= 600, 'sent once the trial had its answer');
    } finally {
      await lx.stop();
      await sim.stop();
    }
  });

  test('a backend restarted while its circuit is open is tried at its next passing check, not after the cooldown', async () => {
    const sim = await startSim([...FAST, '--fail-first', '1']);
    const lx = await startLexora(oneBackend(sim, {
      retry: { max_attempts: 1, delay_seconds: 0.05, backoff_multiplier: 2, max_delay_seconds: 1 },
      health_check: { interval_seconds: 0.2, failure_threshold: 1, cooldown_seconds: 600, timeout_seconds: 1 },
    }));
    try {
      assert.equal((await chat(lx, CHAT)).status, 503); // the try fails: the circuit opens for 600 s
      await sim.stop(); // and then the backend dies: its checks mark it down
      await waitFor(async () => (await health(lx)).json.backends[0].consecutive_failures >= 1, 'a failed check');
      let h = await health(lx);
      assert.equal(h.json.backends[0].circuit, 'open');
      const back = await startSim(FAST, { port: sim.port });
      try {
        await waitFor(async () => (await health(lx)).json.backends[0].circuit === 'half_open', 'half-open early',
          { ms: 5000, stepMs: 50 });
        const r = await chat(lx, CHAT);
        assert.equal(r.status, 200, r.text);
        h = await health(lx);
        assert.equal(h.json.backends[0].circuit, 'closed');
        assert.match(lx.logs(), /cooldown ends early/);
      } finally {
        await back.stop();
      }
    } finally {
      await lx.stop();
    }
  });

  test('failure_threshold failed requests open it; after the cooldown one trial closes it', async () => {
    const sim = await startSim([...FAST, '--fail-rate', '1']);
    const lx = await startLexora(oneBackend(sim, {
      retry: { max_attempts: 1, delay_seconds: 0.05, backoff_multiplier: 2, max_delay_seconds: 1 },
      health_check: { interval_seconds: 60, failure_threshold: 2, cooldown_seconds: 1, timeout_seconds: 1 },
    }));
    try {
      assert.equal((await chat(lx, CHAT)).status, 503);
      assert.equal((await chat(lx, CHAT)).status, 503);
      let r = await chat(lx, CHAT);
      assert.equal(r.status, 503);
      assert.equal(r.json.error.code, 'no_healthy_backend');
      assert.equal(r.headers.get('retry-after'), '1');
      assert.equal((await inference(sim)).length, 2, 'the third was not sent');
      let h = await health(lx);
      assert.equal(h.status, 503);
      assert.equal(h.json.status, 'unhealthy');
      const be = h.json.backends[0];
      assert.equal(be.status, 'down');
      assert.equal(be.circuit, 'open');
      assert.equal(be.request_failures, 2);
      assert.match(be.last_request_error, /503/);

      await sim.control({ fail_rate: 0 });
      await waitFor(async () => (await health(lx)).json.backends[0].circuit === 'half_open', 'half-open',
        { ms: 5000, stepMs: 50 });
      r = await chat(lx, CHAT); // the trial
      assert.equal(r.status, 200, r.text);
      h = await health(lx);
      assert.equal(h.json.status, 'healthy');
      assert.equal(h.json.backends[0].circuit, 'closed');
      assert.equal(h.json.backends[0].request_failures, 0);
      assert.match(lx.logs(), /taking no new requests for 1 s/);
      assert.match(lx.logs(), /taking requests again/);
    } finally {
      await lx.stop();
      await sim.stop();
    }
  });
});
