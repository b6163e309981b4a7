// Operations: reload (POST /admin/reload and SIGHUP) without dropping a request, a refused reload, the
// admin token, graceful shutdown on SIGTERM (and a second signal), logging.file and its reopening.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import {
  MODEL, chatBody, configFor, freePort, post, sleep, sseData, startLexora, startSim, toYaml, waitFor,
} from '../lib/harness.mjs';

const chat = (extra = {}) => chatBody(extra, { max_tokens: 4 });
// No limit gets in the way of the load: every user unlimited, except the one the reloads change.
const unlimited = (alice) => ({
  default: { requests_per_minute: 0, tokens_per_minute: 0 },
  users: { alice: { requests_per_minute: alice, tokens_per_minute: 0 } },
});

/** Rewrites the running gateway's config file (keeping its port). */
function rewrite(lx, config) {
  writeFileSync(lx.file, `${toYaml({ ...config, server: { ...(config.server || {}), port: lx.port } })}\n`);
}

const reload = (lx, headers = {}) => post(`${lx.url}/admin/reload`, '', headers);
const count = (text, re) => (text.match(re) || []).length;
const sighupReloads = (lx) => count(lx.logs(), /config reloaded \(SIGHUP\)/g);

/** One request; null when it succeeded, else what went wrong. */
async function tryRequest(url, stream, user) {
  let r;
  try {
    r = await post(`${url}/v1/chat/completions`, chat({ stream, x_user_id: user }));
  } catch (e) {
    return `fetch failed: ${e.cause?.code || e.message}`;
  }
  if (r.status !== 200) return `status ${r.status}: ${r.text.slice(0, 300)}`;
  if (!stream) return r.json?.object === 'chat.completion' ? null : `not a completion: ${r.text.slice(0, 300)}`;
  const data = sseData(r.text);
  if (data.at(-1) !== '[DONE]') return `stream without [DONE]: ${r.text.slice(-300)}`;
  if (data.some((d) => d.startsWith('{"error"'))) return `stream with an error event: ${r.text.slice(-300)}`;
  return null;
}

/** Starts a streamed chat request and resolves once its first chunk arrived: { next(), rest(), done }. */
async function openStream(url, maxTokens) {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(chat({ stream: true, max_tokens: maxTokens })),
  });
  assert.equal(res.status, 200);
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  const s = { text: '', done: false, error: null };
  const first = await reader.read();
  s.text += dec.decode(first.value || new Uint8Array());
  s.rest = (async () => {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        s.text += dec.decode(value);
      }
    } catch (e) {
      s.error = e;
    }
    s.done = true;
    return s;
  })();
  return s;
}

function connectOutcome(port) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    sock.on('connect', () => { sock.destroy(); resolve('connected'); });
    sock.on('error', (e) => resolve(e.code));
  });
}

describe('reload', () => {
  test('20 reloads through both paths under mixed load: not one request fails, the new limits take effect', async () => {
    const sim = await startSim(['--model', MODEL, '--model', 'qwen-extra', '--ttft-ms', '2', '--tokens-per-sec', '2000']);
    const variant = (i, { maxBody = 65536, models = [MODEL] } = {}) => configFor(sim.url, {
      models,
      extra: {
        server: { max_body_bytes: maxBody, idle_timeout: 30 + i },
        logging: { format: i % 2 ? 'text' : 'json' },
        rate_limits: unlimited(100000 + i),
      },
    });
    const lx = await startLexora(variant(0));
    try {
      // a body between the new limit (4 KiB) and the old one (64 KiB)
      const bigBody = chat({ messages: [{ role: 'user', content: 'x'.repeat(8000) }] });
      assert.equal((await post(`${lx.url}/v1/chat/completions`, bigBody)).status, 200);

      const failures = [];
      let sent = 0;
      let reloading = true;
      const MIN = 120;
      const MAX = 1500;
      const worker = async () => {
        while ((reloading || sent < MIN) && sent < MAX) {
          const i = sent++;
          const err = await tryRequest(lx.url, i % 2 === 0, i % 3 ? 'alice' : 'bob');
          if (err) failures.push(`request #${i}: ${err}`);
        }
      };
      const reloader = async () => {
        try {
          for (let i = 1; i <= 20; i++) {
            rewrite(lx, variant(i));
            if (i % 2) {
              const r = await reload(lx);
              assert.equal(r.status, 200, r.text);
              assert.equal(r.json.status, 'reloaded');
              assert.ok(r.json.changed.includes('rate_limits.users.alice'), r.text);
              assert.ok(r.json.changed.includes('server.idle_timeout'), r.text);
              assert.deepEqual(r.json.restart_required, []);
            } else {
              const before = sighupReloads(lx);
              lx.signal('SIGHUP');
              await waitFor(() => sighupReloads(lx) > before, 'the SIGHUP reload in the log');
            }
            await sleep(20);
          }
        } finally {
          reloading = false;
        }
      };
      await Promise.all([reloader(), ...Array.from({ length: 6 }, worker)]);
      assert.deepEqual(failures, [], `${failures.length} of ${sent} requests failed`);
      assert.ok(sent >= MIN, `only ${sent} requests`);
      await waitFor(() => count(lx.logs(), /config reloaded \(POST \/admin\/reload\)/g) === 10, '10 POST reloads logged');
      assert.equal(sighupReloads(lx), 10);

      // the new limits: a smaller body cap, and one more model served
      rewrite(lx, variant(21, { maxBody: 4096, models: [MODEL, 'qwen-extra'] }));
      const r = await reload(lx);
      assert.equal(r.status, 200, r.text);
      for (const key of ['server.max_body_bytes', 'backends.vllm.models']) assert.ok(r.json.changed.includes(key), r.text);
      const big = await post(`${lx.url}/v1/chat/completions`, bigBody);
      assert.equal(big.status, 413);
      assert.equal(big.json.error.code, 'request_too_large');
      const models = await (await fetch(`${lx.url}/v1/models`)).json();
      assert.deepEqual(models.data.map((m) => m.id), [MODEL, 'qwen-extra']);
      assert.equal((await post(`${lx.url}/v1/chat/completions`, chat({ model: 'qwen-extra' }))).status, 200);
    } finally {
      await lx.stop();
      await sim.stop();
    }
  });

  test('a request in flight finishes under the config it started with', async () => {
    const sim = await startSim(['--model', MODEL, '--ttft-ms', '5', '--tokens-per-sec', '40']);
    const lx = await startLexora(configFor(sim.url));
    try {
      const s = await openStream(lx.url, 30);
      const dead = `http://127.0.0.1:${await freePort()}`;
      rewrite(lx, configFor(dead));
      const r = await reload(lx);
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.json.changed, ['vllm.url', 'backends.vllm.url']);
      assert.equal(s.done, false, 'the stream was still running during the reload');
      const after = await post(`${lx.url}/v1/chat/completions`, chat());
      assert.equal(after.status, 502, 'a new request goes to the new (dead) backend');
      await s.rest;
      assert.equal(s.error, null);
      const data = sseData(s.text);
      assert.equal(data.at(-1), '[DONE]');
      assert.ok(!data.some((d) => d.startsWith('{"error"')), s.text);
    } finally {
      await lx.stop();
      await sim.stop();
    }
  });

  test('a bad file is refused with every problem; the running config stays', async () => {
    const sim = await startSim(['--model', MODEL, '--ttft-ms', '1', '--tokens-per-sec', '1000']);
    const good = configFor(sim.url, { extra: { server: { max_body_bytes: 8192 } } });
    const lx = await startLexora(good);
    try {
      writeFileSync(lx.file, `server:\n  host: "127.0.0.1"\n  port: ${lx.port}\n  max_body_bytes: "lots"\n`
        + `default_model: "${MODEL}"\nvllm:\n  url: "${sim.url}"\nqueue:\n  max_size: -5\n  maxsize: 3\n`);
      const r = await reload(lx);
      assert.equal(r.status, 400);
      assert.equal(r.json.error.code, 'config_invalid');
      const msg = r.json.error.message;
      assert.match(msg, /the running config stays/);
      for (const want of [`${lx.file}:4: server.max_body_bytes`, `${lx.file}:9: queue.max_size`,
        `${lx.file}:10: queue.maxsize: unknown key`]) assert.ok(msg.includes(want), `"${want}" in:\n${msg}`);

      // still serving, under the old config (its 8 KiB body cap)
      assert.equal((await post(`${lx.url}/v1/chat/completions`, chat())).status, 200);
      const big = chat({ messages: [{ role: 'user', content: 'x'.repeat(9000) }] });
      assert.equal((await post(`${lx.url}/v1/chat/completions`, big)).status, 413);

      // the same through SIGHUP: refused, said in the log, still serving
      lx.signal('SIGHUP');
      await waitFor(() => lx.logs().includes('reload (SIGHUP) refused'), 'the refused SIGHUP reload in the log');
      await waitFor(() => lx.logs().includes('queue.maxsize: unknown key'), 'the problems in the log');
      assert.equal((await post(`${lx.url}/v1/chat/completions`, chat())).status, 200);

      // a key that needs a restart: reported, not applied, and reported again until then
      const other = await freePort();
      writeFileSync(lx.file, `${toYaml({ ...good, server: { ...good.server, port: other } })}\n`);
      for (let i = 0; i < 2; i++) {
        const again = await reload(lx);
        assert.equal(again.status, 200, again.text);
        assert.deepEqual(again.json.restart_required, ['server.port']);
      }
      assert.equal((await fetch(`${lx.url}/v1/models`)).status, 200, 'still on the old port');
      assert.equal(await connectOutcome(other), 'ECONNREFUSED');
    } finally {
      await lx.stop();
      await sim.stop();
    }
  });
});

describe('admin endpoints', () => {
  test('admin.token: a bearer token is required, compared exactly', async () => {
    const lx = await startLexora(configFor('http://127.0.0.1:9', { extra: { admin: { token: 's3cret-token' } } }));
    try {
      for (const headers of [{}, { authorization: 'Bearer wrong' }, { authorization: 'Bearer s3cret-toke' },
        { authorization: 'Bearer s3cret-token2' }, { authorization: 's3cret-token' }]) {
        const r = await reload(lx, headers);
        assert.equal(r.status, 401, JSON.stringify(headers));
        assert.equal(r.json.error.code, 'invalid_admin_token');
        assert.match(r.headers.get('www-authenticate'), /^Bearer/);
      }
      assert.equal((await reload(lx, { authorization: 'Bearer s3cret-token' })).status, 200);
      assert.equal((await reload(lx, { authorization: 'bearer s3cret-token' })).status, 200);
      assert.equal((await fetch(`${lx.url}/admin/reload`)).status, 405);
    } finally {
      await lx.stop();
    }
  });

  test('admin.token_file: read at each reload, so the token can be rotated', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'lexora-token-'));
    const tokenFile = path.join(dir, 'admin.token');
    writeFileSync(tokenFile, 'token-one\n');
    const config = configFor('http://127.0.0.1:9', { extra: { admin: { token_file: tokenFile } } });
    const lx = await startLexora(config);
    try {
      writeFileSync(tokenFile, 'token-two\n');
      const r = await reload(lx, { authorization: 'Bearer token-one' });
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.json.changed, ['admin.token']);
      assert.ok(!r.text.includes('token-two'), 'the secret is never shown');
      assert.equal((await reload(lx, { authorization: 'Bearer token-one' })).status, 401);
      assert.equal((await reload(lx, { authorization: 'Bearer token-two' })).status, 200);
    } finally {
      await lx.stop();
    }
  });

  test('without an admin token, a loopback client may reload', async () => {
    const lx = await startLexora(configFor('http://127.0.0.1:9'));
    try {
      const r = await reload(lx);
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.json, { status: 'reloaded', changed: [], restart_required: [] });
    } finally {
      await lx.stop();
    }
  });
});

describe('graceful shutdown', () => {
  test('SIGTERM while a stream runs: new connections refused, the stream completes, exit 0', async () => {
    const sim = await startSim(['--model', MODEL, '--ttft-ms', '5', '--tokens-per-sec', '25']);
    const lx = await startLexora(configFor(sim.url, { extra: { server: { shutdown_timeout: 20 } } }));
    try {
      // an idle keep-alive connection: closed at once on shutdown
      const idle = net.connect(lx.port, '127.0.0.1');
      let idleClosed = false;
      idle.on('close', () => { idleClosed = true; });
      idle.on('error', () => {});
      idle.write('GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n');
      await new Promise((r) => idle.once('data', r));

      const s = await openStream(lx.url, 40); // about 1.6 s at 25 tokens/s
      const t0 = Date.now();
      lx.signal('SIGTERM');
      await waitFor(async () => (await connectOutcome(lx.port)) === 'ECONNREFUSED', 'new connections refused');
      assert.equal(s.done, false, 'the stream was still running when new connections were refused');
      await waitFor(() => idleClosed, 'the idle keep-alive connection to close', { ms: 2000 });

      await s.rest;
      assert.equal(s.error, null);
      const data = sseData(s.text);
      assert.equal(data.at(-1), '[DONE]');
      assert.ok(!data.some((d) => d.startsWith('{"error"')), s.text);
      const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
      const text = chunks.map((c) => c.choices?.[0]?.delta?.content || '').join('');
      assert.ok(text.split(/\s+/).filter(Boolean).length >= 30, `the whole answer: ${text}`);

      const { code } = await lx.proc.exited;
      assert.equal(code, 0);
      assert.ok(Date.now() - t0 < 10000);
      assert.match(lx.logs(), /shutdown: every request finished/);
    } finally {
      await lx.stop();
      await sim.stop();
    }
  });

  test('SIGTERM: a request waiting in the queue is answered 503 shutting_down; the one running completes', async () => {
    const sim = await startSim(['--model', MODEL, '--ttft-ms', '5', '--tokens-per-sec', '25']);
    const lx = await startLexora(configFor(sim.url, {
      extra: { backends: { vllm: { url: sim.url, models: [MODEL], max_concurrency: 1 } } },
    }));
    try {
      const s = await openStream(lx.url, 25); // holds the backend's only slot for about 1 s
      const waiting = post(`${lx.url}/v1/chat/completions`, chat());
      await sleep(150);
      lx.signal('SIGTERM');
      const w = await waiting;
      assert.equal(w.status, 503, w.text);
      assert.equal(w.json.error.code, 'shutting_down');
      assert.equal(s.done, false, 'answered before the running stream ended');
      await s.rest;
      assert.equal(sseData(s.text).at(-1), '[DONE]');
      assert.equal((await lx.proc.exited).code, 0);
    } finally {
      await lx.stop();
      await sim.stop();
    }
  });

  test('server.shutdown_timeout: what is still running then is aborted; exit 0, nothing leaked', async () => {
    const sim = await startSim(['--model', MODEL, '--ttft-ms', '5', '--tokens-per-sec', '20']);
    const lx = await startLexora(configFor(sim.url, { extra: { server: { shutdown_timeout: 1 } } }));
    try {
      const streams = await Promise.all([openStream(lx.url, 400), openStream(lx.url, 400)]);
      const plain = post(`${lx.url}/v1/chat/completions`, chat({ max_tokens: 400 })).catch((e) => e);
      await sleep(100);
      const t0 = Date.now();
      lx.signal('SIGTERM');
      const { code } = await lx.proc.exited;
      assert.equal(code, 0);
      const took = Date.now() - t0;
      assert.ok(took >= 900 && took < 5000, `exited after ${took} ms`);
      for (const s of streams) {
        await s.rest;
        assert.notEqual(sseData(s.text).at(-1), '[DONE]', 'cut short');
      }
      assert.ok((await plain) instanceof Error, 'the unanswered request saw its connection close');
      assert.match(lx.logs(), /shutdown_timeout \(1 s\) reached; aborting 3 open connection/);
    } finally {
      await lx.stop(); // exit 0 and no sanitizer report (LeakSanitizer runs at exit)
      await sim.stop();
    }
  });

  test('a second signal exits at once', async () => {
    const sim = await startSim(['--model', MODEL, '--ttft-ms', '5', '--tokens-per-sec', '20']);
    const lx = await startLexora(configFor(sim.url, { extra: { server: { shutdown_timeout: 60 } } }));
    try {
      const s = await openStream(lx.url, 400);
      lx.signal('SIGTERM');
      await waitFor(() => lx.logs().includes('SIGTERM: shutting down'), 'the shutdown to begin');
      const t0 = Date.now();
      lx.signal('SIGINT');
      const { code } = await lx.proc.exited;
      assert.ok(Date.now() - t0 < 2000);
      assert.equal(code, 1);
      assert.match(lx.logs(), /second signal SIGINT: exiting now/);
      await s.rest;
    } finally {
      await sim.stop();
    }
  });
});

describe('logging', () => {
  test('logging.file: the log goes there, and SIGHUP reopens it (logrotate)', async () => {
    const sim = await startSim(['--model', MODEL, '--ttft-ms', '1', '--tokens-per-sec', '1000']);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'lexora-log-'));
    const logFile = path.join(dir, 'lexora.log');
    const config = (format) => configFor(sim.url, { extra: { logging: { file: logFile, format } } });
    const lx = await startLexora(config('text'));
    try {
      assert.equal((await post(`${lx.url}/v1/chat/completions`, chat())).status, 200);
      await waitFor(() => existsSync(logFile) && readFileSync(logFile, 'utf8').includes(' access '), 'the access line');
      const first = readFileSync(logFile, 'utf8');
      assert.match(first, /^\d{4}-\d\d-\d\dT[\d:.]+Z INFO +lexora .* listening on 127\.0\.0\.1:/m);
      assert.ok(!lx.logs().includes('access'), 'nothing on stderr');

      renameSync(logFile, `${logFile}.1`);
      rewrite(lx, config('json'));
      lx.signal('SIGHUP');
      await waitFor(() => existsSync(logFile) && readFileSync(logFile, 'utf8').includes('config reloaded (SIGHUP)'),
        'the reload line in a new file');
      assert.equal((await post(`${lx.url}/v1/chat/completions`, chat())).status, 200);
      await waitFor(() => readFileSync(logFile, 'utf8').includes('"msg":"access"'), 'the access line in the new file');
      const lines = readFileSync(logFile, 'utf8').trim().split('\n');
      for (const line of lines) assert.doesNotThrow(() => JSON.parse(line), line);
      assert.equal(count(readFileSync(`${logFile}.1`, 'utf8'), / access /g), 1, 'the old file got no more');
    } finally {
      await lx.stop();
      await sim.stop();
    }
  });
});
