// GET /stats/stream: the dashboard's SSE feed. The first event carries the 15-minute history and the
// recent requests; then one event a second with only what is new, and a heartbeat comment every 15 s;
// a client that leaves frees its place (the 17th stream is refused until one closes); a graceful stop
// ends the streams instead of waiting on them. Real lexora in front of real lexora-sim on loopback.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LEXORA_BIN, MODEL, chatBody, configFor, post, sleep, startLexora, startSim } from '../lib/harness.mjs';

const MAX_STREAMS = 16; // LX_STATS_STREAMS_MAX (src/api/stats_stream.h)
const HISTORY_SECONDS = 900;
const unlimited = { default: { requests_per_minute: 0, tokens_per_minute: 0 } };

/** Opens /stats/stream; events() resolves the parsed events seen so far, next() waits for one more. */
async function openStream(url) {
  const ac = new AbortController();
  const res = await fetch(`${url}/stats/stream`, { signal: ac.signal });
  const out = { res, events: [], comments: [], close: () => ac.abort() };
  if (res.status !== 200) {
    await res.text();
    return out;
  }
  const waiters = [];
  (async () => {
    let buf = '';
    const dec = new TextDecoder();
    try {
      for await (const chunk of res.body) {
        buf += dec.decode(chunk, { stream: true });
        let cut;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          for (const line of block.split('\n')) {
            if (line.startsWith('data: ')) out.events.push({ at: Date.now(), ev: JSON.parse(line.slice(6)) });
            else if (line.startsWith(':')) out.comments.push(line);
          }
          while (waiters.length) waiters.shift()();
        }
      }
    } catch { /* aborted */ }
  })();
  out.next = async (n = out.events.length + 1, ms = 5000) => {
    const deadline = Date.now() + ms;
    while (out.events.length < n) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for event ${n} (have ${out.events.length})`);
      await new Promise((r) => { waiters.push(r); setTimeout(r, 100); });
    }
    return out.events[n - 1].ev;
  };
  return out;
}

describe('GET /stats/stream', () => {
  let sim;
  let lx;
  before(async () => {
    sim = await startSim(['--model', MODEL, '--ttft-ms', '5', '--tokens-per-sec', '1000']);
    lx = await startLexora(configFor(sim.url, {
      extra: { rate_limits: unlimited, routing: { aliases: { fast: [MODEL] } } },
    }));
  });
  after(async () => {
    await lx?.stop();
    await sim?.stop();
  });

  test('the first event: the whole 15 minutes, the requests so far, /stats and the state', async () => {
    const r = await post(`${lx.url}/v1/chat/completions`, chatBody({ max_tokens: 3 }), { 'x-request-id': 'stream-first' });
    assert.equal(r.status, 200, r.text);
    const s = await openStream(lx.url);
    try {
      assert.equal(s.res.status, 200);
      assert.match(s.res.headers.get('content-type'), /^text\/event-stream/);
      assert.equal(s.res.headers.get('cache-control'), 'no-store');
      const ev = await s.next(1);
      assert.equal(ev.full, true);
      assert.ok(Math.abs(ev.time - Date.now()) < 5000, 'time is Unix milliseconds');
      // the series: every completed second of the window, ending with the last complete second
      assert.equal(ev.series.step, 1);
      assert.equal(ev.series.requests.length, HISTORY_SECONDS - 1);
      for (const k of ['errors', 'rate_limited', 'prompt_tokens', 'completion_tokens'])
        assert.equal(ev.series[k].length, HISTORY_SECONDS - 1, k);
      const end = ev.series.start + ev.series.requests.length;
      assert.ok(Math.abs(end * 1000 - ev.time) <= 2000, `the series ends now (${end} vs ${ev.time})`);
      assert.equal(ev.percentiles.step, 10);
      assert.equal(ev.percentiles.latency_ms.p99.length, HISTORY_SECONDS / 10 - 1);
      // the request sent before: in the recent list, with what the access log says, never the prompt
      const mine = ev.recent.find((x) => x.id === 'stream-first');
      assert.ok(mine, JSON.stringify(ev.recent));
      assert.equal(mine.status, 200);
      assert.equal(mine.model, MODEL);
      assert.equal(mine.backend, 'vllm');
      assert.equal(mine.completion_tokens, 3);
      assert.ok(mine.latency_ms > 0);
      assert.ok(!JSON.stringify(ev.recent).includes('"content"'));
      // /stats, and the state the page draws
      assert.equal(typeof ev.stats.total_requests, 'number');
      assert.ok(ev.stats.total_requests >= 1);
      assert.equal(ev.state.backends[0].name, 'vllm');
      assert.deepEqual(ev.state.backends[0].models, [MODEL]);
      assert.equal(typeof ev.state.backends[0].max_concurrency, 'number');
      assert.deepEqual(ev.state.aliases, [{ name: 'fast', models: [MODEL] }]);
      assert.deepEqual(ev.state.limits.default, { requests_per_minute: 0, tokens_per_minute: 0 });
    } finally {
      s.close();
    }
  });

  test('then one event a second, each with only what is new', async () => {
    const s = await openStream(lx.url);
    try {
      const first = await s.next(1);
      const seenBefore = first.recent.length;
      assert.ok(seenBefore >= 1);
      const r = await post(`${lx.url}/v1/chat/completions`, chatBody({ max_tokens: 2 }), { 'x-request-id': 'stream-delta' });
      assert.equal(r.status, 200, r.text);
      await s.next(5, 8000);
      const evs = s.events.slice(0, 5);
      for (let i = 1; i < evs.length; i++) {
        assert.equal(evs[i].ev.full, false);
        const gap = evs[i].at - evs[i - 1].at;
        assert.ok(gap > 400 && gap < 2500, `events ${i - 1} and ${i} are ${gap} ms apart`);
      }
      // each later event extends the series where the one before stopped, and never repeats a request
      let end = first.series.start + first.series.requests.length;
      const ids = [];
      for (const { ev } of evs.slice(1)) {
        if (ev.series.requests.length) {
          assert.equal(ev.series.start, end);
          end += ev.series.requests.length;
        }
        ids.push(...ev.recent.map((x) => x.id));
      }
      assert.deepEqual(ids, ['stream-delta']);
      // and the seconds add up: every request so far is counted once (they all ended over a second ago)
      const total = evs.reduce((a, { ev }) => a + ev.series.requests.reduce((x, y) => x + y, 0), 0);
      assert.equal(total, evs[4].ev.stats.total_requests);
    } finally {
      s.close();
    }
  });

  test('at most 16 streams; a client that leaves frees its place', async () => {
    const streams = [];
    try {
      for (let i = 0; i < MAX_STREAMS; i++) {
        const s = await openStream(lx.url);
        assert.equal(s.res.status, 200, `stream ${i + 1}`);
        streams.push(s);
      }
      const over = await openStream(lx.url);
      assert.equal(over.res.status, 503);
      streams.shift().close();
      // the server sees the connection close, and the place is free again
      let again;
      for (let i = 0; i < 50; i++) {
        again = await openStream(lx.url);
        if (again.res.status === 200) break;
        await sleep(100);
      }
      assert.equal(again.res.status, 200);
      streams.push(again);
      await again.next(1);
    } finally {
      for (const s of streams) s.close();
    }
    // every one of them is gone: 16 can be opened again
    await sleep(300);
    const reopened = [];
    try {
      for (let i = 0; i < MAX_STREAMS; i++) reopened.push(await openStream(lx.url));
      assert.deepEqual(reopened.map((s) => s.res.status), Array(MAX_STREAMS).fill(200));
    } finally {
      for (const s of reopened) s.close();
    }
  });

  test('a heartbeat comment every 15 s', async () => {
    const s = await openStream(lx.url);
    try {
      await s.next(1);
      const deadline = Date.now() + 20000;
      while (!s.comments.length && Date.now() < deadline) await sleep(200);
      assert.deepEqual(s.comments.slice(0, 1), [': ping']);
      assert.ok(s.events.length >= 10, `${s.events.length} events meanwhile`);
    } finally {
      s.close();
    }
  });

  test('POST /stats/stream is 405', async () => {
    const r = await post(`${lx.url}/stats/stream`, '');
    assert.equal(r.status, 405);
    assert.equal(r.headers.get('allow'), 'GET');
  });
});

test('a graceful stop ends open streams at once instead of waiting for them', async () => {
  const sim = await startSim(['--model', MODEL]);
  try {
    const lx = await startLexora(configFor(sim.url, { extra: { server: { shutdown_timeout: 20 } } }));
    const s = await openStream(lx.url);
    await s.next(1);
    const t0 = Date.now();
    await lx.stop();
    assert.ok(Date.now() - t0 < 5000, `stopped in ${Date.now() - t0} ms`);
    s.close();
  } finally {
    await sim.stop();
  }
});

test('the state carries each GPU and the GPUs of each backend (the fake NVML: four GPUs, GPU 2 failing)', async () => {
  const lib = path.join(path.dirname(LEXORA_BIN), 'libfake_nvml.so');
  assert.ok(existsSync(lib), `${lib} is built with the binaries`);
  const sim = await startSim(['--model', MODEL]);
  try {
    const lx = await startLexora(configFor(sim.url, {
      extra: { backends: { 'vllm-0': { type: 'vllm', url: sim.url, models: [MODEL], gpus: [0, 1] } } },
    }), { env: { LEXORA_NVML_LIBRARY: lib } });
    const s = await openStream(lx.url);
    try {
      const GIB = 1024 ** 3;
      let ev = await s.next(1);
      for (let n = 2; ev.state.gpus.length < 4 && n < 8; n++) ev = await s.next(n);
      assert.deepEqual(ev.state.gpus.map((g) => [g.index, g.used_bytes, g.total_bytes]),
        [[0, 24 * GIB, 80 * GIB], [1, 70 * GIB, 80 * GIB], [2, null, null], [3, GIB, 24 * GIB]]);
      assert.equal(ev.state.gpus[3].name, 'NVIDIA L4');
      assert.deepEqual(ev.state.backends[0].gpus, [0, 1]);
    } finally {
      s.close();
      await lx.stop();
    }
  } finally {
    await sim.stop();
  }
});
