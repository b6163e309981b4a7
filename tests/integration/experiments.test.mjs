// A/B experiments end to end, against real simulators on loopback: the answer names the experiment and the
// variant, a user keeps its variant across requests and a restart, a forced variant (x_variant or
// X-Lexora-Variant), a request naming a variant itself is not in the experiment, /stats and /metrics per
// variant, a reload changing the weights, and adaptive weights moving toward the variant that fails less.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  accessRecord, chat, post, runLexora, startLexora, startSim, stats, toYaml, waitFor, withLexora,
} from '../lib/harness.mjs';
import { hasCommand } from '../lib/metrics.mjs';

const haveSqlite = hasCommand('sqlite3', ['-version']);

const FAST = ['--ttft-ms', '1', '--tokens-per-sec', '0'];
const ask = (extra = {}) => ({ model: 'code', messages: [{ role: 'user', content: 'write a loop' }], max_tokens: 2, ...extra });

function config(qwen, deepseek, experiment = {}, extra = {}) {
  return {
    server: { host: '127.0.0.1', port: 0 },
    backends: {
      a: { type: 'vllm', url: qwen.url, models: ['qwen-coder'] },
      b: { type: 'vllm', url: deepseek.url, models: ['deepseek-coder'] },
    },
    routing: { aliases: { code: 'qwen-coder' } },
    experiments: {
      'coder-2026-12': { model: 'code', variants: { 'qwen-coder': 90, 'deepseek-coder': 10 }, ...experiment },
    },
    logging: { level: 'INFO', format: 'json' },
    metrics: { enabled: false, port: 9090 },
    retry: { max_attempts: 1 },
    health_check: { interval_seconds: 60, failure_threshold: 100, cooldown_seconds: 30, timeout_seconds: 1 },
    usage: { enabled: false },
    rate_limits: { default: { requests_per_minute: 0, tokens_per_minute: 0 } },
    ...extra,
  };
}

async function withSims(qwenArgs, deepseekArgs, fn) {
  const qwen = await startSim([...FAST, '--model', 'qwen-coder', ...qwenArgs]);
  const deepseek = await startSim([...FAST, '--model', 'deepseek-coder', ...deepseekArgs]);
  try {
    await fn(qwen, deepseek);
  } finally {
    await qwen.stop();
    await deepseek.stop();
  }
}

const variantOf = async (lx, user, body = ask(), headers = {}) => {
  const r = await chat(lx, body, { 'X-User-Id': user, ...headers });
  assert.equal(r.status, 200, r.text);
  return r;
};

describe('experiments', () => {
  test('the answer and the log name experiment and variant; users keep theirs across requests and a restart', async () => {
    await withSims([], [], async (qwen, deepseek) => {
      const first = {};
      await withLexora(config(qwen, deepseek), async (lx) => {
        for (let i = 0; i < 60; i++) {
          const r = await variantOf(lx, `user-${i}`);
          assert.equal(r.headers.get('x-lexora-experiment'), 'coder-2026-12');
          first[i] = r.headers.get('x-lexora-variant');
          assert.equal(r.headers.get('x-lexora-model'), first[i]);
          assert.equal((await variantOf(lx, `user-${i}`)).headers.get('x-lexora-variant'), first[i]);
        }
        assert.ok(Object.values(first).includes('deepseek-coder'));
        assert.ok(Object.values(first).includes('qwen-coder'));
        const r = await variantOf(lx, 'user-0');
        const line = await accessRecord(lx, r.headers.get('x-request-id'));
        assert.equal(line.experiment, 'coder-2026-12');
        assert.equal(line.variant, first[0]);
        assert.equal(line.model, 'code');
      });
      await withLexora(config(qwen, deepseek), async (lx) => { // a restart: the same assignments
        for (let i = 0; i < 60; i++)
          assert.equal((await variantOf(lx, `user-${i}`)).headers.get('x-lexora-variant'), first[i]);
      });
    });
  });

  test('forced variants; naming a variant directly is not taking part; an unknown forced variant is 400', async () => {
    await withSims([], [], async (qwen, deepseek) => {
      await withLexora(config(qwen, deepseek), async (lx) => {
        let r = await variantOf(lx, 'u', ask({ x_variant: 'deepseek-coder' }));
        assert.equal(r.headers.get('x-lexora-variant'), 'deepseek-coder');
        const body = JSON.parse((await deepseek.requests()).at(-1).body);
        assert.equal(body.x_variant, undefined, 'x_variant is not forwarded');
        r = await variantOf(lx, 'u', ask(), { 'X-Lexora-Variant': 'qwen-coder' });
        assert.equal(r.headers.get('x-lexora-variant'), 'qwen-coder');
        r = await variantOf(lx, 'u', ask({ model: 'deepseek-coder' }));
        assert.equal(r.headers.get('x-lexora-experiment'), null);
        r = await chat(lx, ask({ x_variant: 'gpt-5' }));
        assert.equal(r.status, 400);
        assert.equal(r.json.error.param, 'x_variant');
        const s = (await stats(lx)).experiments['coder-2026-12'];
        assert.equal(s.variants['deepseek-coder'].requests, 1);
        assert.equal(s.variants['qwen-coder'].requests, 1);
        assert.equal(s.variants['qwen-coder'].weight, 90);
      });
    });
  });

  test('a reload changes the weights: only the users it must move', async () => {
    await withSims([], [], async (qwen, deepseek) => {
      const lx = await startLexora(config(qwen, deepseek));
      try {
        const before = [];
        for (let i = 0; i < 200; i++) before.push((await variantOf(lx, `u${i}`)).headers.get('x-lexora-variant'));
        writeFileSync(lx.file, toYaml(config(qwen, deepseek, { variants: { 'qwen-coder': 50, 'deepseek-coder': 50 } },
          { server: { host: '127.0.0.1', port: lx.port } })));
        const rl = await fetch(`${lx.url}/admin/reload`, { method: 'POST' });
        assert.equal(rl.status, 200, await rl.text());
        let moved = 0;
        for (let i = 0; i < 200; i++) {
          const now = (await variantOf(lx, `u${i}`)).headers.get('x-lexora-variant');
          if (now === before[i]) continue;
          assert.equal(before[i], 'qwen-coder', 'only qwen-coder users move to the grown deepseek-coder');
          moved++;
        }
        assert.ok(moved > 40 && moved < 120, `${moved} of 200 moved (40 % expected)`);
        assert.equal((await stats(lx)).experiments['coder-2026-12'].variants['deepseek-coder'].weight, 50);
      } finally {
        await lx.stop();
      }
    });
  });

  test('adaptive: the weights move toward the variant that fails less, never below min_weight', async () => {
    await withSims(['--fail-rate', '0.4', '--fail-mode', '500'], [], async (qwen, deepseek) => {
      const exp = { variants: { 'qwen-coder': 50, 'deepseek-coder': 50 }, mode: 'adaptive', metric: 'errors',
        sticky: 'request', min_weight: 5 };
      await withLexora(config(qwen, deepseek, exp), async (lx) => {
        for (let i = 0; i < 150; i++) await chat(lx, ask({ x_variant: i % 2 ? 'qwen-coder' : 'deepseek-coder' }));
        await new Promise((r) => setTimeout(r, 5200)); // the shares are recomputed every 5 s
        const counts = { 'qwen-coder': 0, 'deepseek-coder': 0 };
        for (let i = 0; i < 100; i++) {
          const r = await chat(lx, ask());
          counts[r.headers.get('x-lexora-variant')]++;
        }
        const v = (await stats(lx)).experiments['coder-2026-12'].variants;
        assert.ok(v['deepseek-coder'].weight > 80, `deepseek-coder's weight ${v['deepseek-coder'].weight}`);
        assert.ok(v['qwen-coder'].weight >= 5);
        assert.ok(counts['deepseek-coder'] > 70, JSON.stringify(counts));
        assert.ok(v['qwen-coder'].error_rate > 0.2);
      });
    });
  });

  test('feedback: stored once against the request, by its own user or the admin; every rule', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'lexora-feedback-'));
    const db = path.join(dir, 'usage.db');
    const ADMIN = 'admin-token-feedback';
    try {
      await withSims([], [], async (qwen, deepseek) => {
        await withLexora(config(qwen, deepseek, {}, { usage: { db_path: db }, admin: { token: ADMIN } }), async (lx) => {
          const r = await variantOf(lx, 'alice', ask({ x_variant: 'deepseek-coder' }));
          const id = r.headers.get('x-request-id');
          const fb = (body, headers = {}) => post(`${lx.url}/v1/feedback`, body, headers);
          let f = await fb({ request_id: id, score: 0.5, comment: 'good loop' }, { 'X-User-Id': 'alice' });
          assert.equal(f.status, 200, f.text);
          assert.deepEqual(f.json, { object: 'feedback', stored: true, score: 0.5, experiment: 'coder-2026-12',
            variant: 'deepseek-coder' });
          f = await fb({ request_id: id, score: 1 }, { 'X-User-Id': 'alice' });
          assert.equal(f.status, 409);
          assert.equal(f.json.error.code, 'feedback_exists');
          const other = (await variantOf(lx, 'bob')).headers.get('x-request-id');
          f = await fb({ request_id: other, score: true }, { 'X-User-Id': 'alice' });
          assert.equal(f.status, 403);
          f = await fb({ request_id: other, score: false }, { Authorization: `Bearer ${ADMIN}` });
          assert.equal(f.status, 200, f.text);
          assert.equal(f.json.score, -1);
          f = await fb({ request_id: 'req_nope', score: 1 }, { 'X-User-Id': 'alice' });
          assert.equal(f.status, 404);
          assert.equal(f.json.error.code, 'request_not_found');
          for (const bad of [{ request_id: id, score: 2 }, { request_id: id, score: 'great' }, { request_id: id },
            { score: 1 }, { request_id: id, score: 1, comment: 5 }, { request_id: id, score: 1, comment: 'x'.repeat(2001) }]) {
            f = await fb(bad, { 'X-User-Id': 'alice' });
            assert.equal(f.status, 400, JSON.stringify(bad));
          }
          const v = (await stats(lx)).experiments['coder-2026-12'].variants;
          assert.equal(v['deepseek-coder'].feedback_count, 1);
          assert.equal(v['deepseek-coder'].feedback_mean, 0.5);
          if (haveSqlite) {
            const { execFileSync } = await import('node:child_process');
            const rows = execFileSync('sqlite3', [db, `SELECT user, experiment, variant, score, comment FROM feedback
              WHERE request_id = '${id}'`]).toString().trim();
            assert.equal(rows, 'alice|coder-2026-12|deepseek-coder|0.5|good loop');
          }
        });
        await withLexora(config(qwen, deepseek, {}, { usage: { enabled: false } }), async (lx) => {
          const f = await post(`${lx.url}/v1/feedback`, { request_id: 'x', score: 1 });
          assert.equal(f.status, 503);
          assert.equal(f.json.error.code, 'ledger_unavailable');
        });
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('lexora experiments report: figures per variant from the ledger, and a verdict', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'lexora-report-'));
    const db = path.join(dir, 'usage.db');
    try {
      await withSims(['--fail-rate', '0.5', '--fail-mode', '500'], [], async (qwen, deepseek) => {
        const cfg = config(qwen, deepseek, { variants: { 'qwen-coder': 50, 'deepseek-coder': 50 }, metric: 'errors' },
          { usage: { db_path: db } });
        await withLexora(cfg, async (lx) => {
          for (let i = 0; i < 120; i++) await chat(lx, ask({ x_variant: i % 2 ? 'qwen-coder' : 'deepseek-coder' }));
          await waitFor(async () => (await stats(lx)).ledger.total_requests >= 120, 'the rows written', { ms: 5000 });
        });
        const out = await runLexora(['experiments', 'report', 'coder-2026-12', '--config', writeConfigFile(dir, cfg)]);
        assert.equal(out.code, 0, out.stderr);
        assert.match(out.stdout, /^qwen-coder\n  requests       60\n/m);
        assert.match(out.stdout, /^deepseek-coder\n  requests       60\n  errors         0, rate 0\.00 %/m);
        assert.match(out.stdout, /deepseek-coder is better than qwen-coder on errors by \d+\.\d\d ± \d+\.\d\d points/);
        const none = await runLexora(['experiments', 'report', 'nope', '--config', writeConfigFile(dir, cfg)]);
        assert.equal(none.code, 0);
        assert.match(none.stdout, /fewer than two variants have requests/);
        const bad = await runLexora(['experiments', 'report', 'coder-2026-12', '--metric', 'vibes', '--config',
          writeConfigFile(dir, cfg)]);
        assert.equal(bad.code, 2);
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

function writeConfigFile(dir, cfg) {
  const file = path.join(dir, 'lexora_config.yaml');
  writeFileSync(file, toYaml({ ...cfg, server: { host: '127.0.0.1', port: 8001 } })); // read only, never listened on
  return file;
}
