// The usage ledger: one SQLite row per finished request, written within about a second; it survives a
// restart and a kill -9 after a second; a read-only ledger does not stop serving (rows are counted as
// lost); `lexora usage` prints it as a table.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  LEXORA_BIN, MODEL, chatBody, configFor, freePort, needs, post, runLexora, sleep, sseData, startLexora, startSim, stats, toYaml,
} from '../lib/harness.mjs';
import { hasCommand, parseMetrics } from '../lib/metrics.mjs';

const chat = (extra = {}) => chatBody(extra, { messages: [{ role: 'user', content: 'Hello there' }], max_tokens: 4 });
const unlimited = { default: { requests_per_minute: 0, tokens_per_minute: 0 } };
const haveSqlite = hasCommand('sqlite3', ['-version']);

/** Rows of a query on the ledger (sqlite3 -json), [] when there are none. */
function rows(db, sql) {
  const r = spawnSync('sqlite3', ['-json', '-readonly', db, sql], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim() ? JSON.parse(r.stdout) : [];
}

async function waitRows(db, sql, n, ms = 3000) {
  const deadline = Date.now() + ms;
  let got = [];
  while (Date.now() < deadline) {
    got = rows(db, sql);
    if (got.length >= n) return got;
    await sleep(50);
  }
  return got;
}

describe('usage ledger', { skip: needs(haveSqlite, 'the sqlite3 command') }, () => {
  let sim;
  let dir;
  let db;
  let config;
  before(async () => {
    sim = await startSim(['--model', MODEL, '--ttft-ms', '2', '--tokens-per-sec', '0']);
    dir = mkdtempSync(path.join(os.tmpdir(), 'lexora-ledger-'));
    db = path.join(dir, 'usage.db');
    config = configFor(sim.url, { extra: { usage: { db_path: db }, rate_limits: unlimited } });
  });
  after(async () => {
    await sim?.stop();
    if (dir) {
      chmodSync(dir, 0o755);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('every finished request is one row with its details, within about a second', async () => {
    const lx = await startLexora(config);
    try {
      const a = await post(`${lx.url}/v1/chat/completions`, chat({ x_user_id: 'alice', x_priority: 'high' }),
        { 'x-request-id': 'ledger-a' });
      assert.equal(a.status, 200);
      const b = await post(`${lx.url}/v1/chat/completions`, chat({ stream: true, max_tokens: 6 }),
        { 'x-request-id': 'ledger-b', 'x-user-id': 'bob' });
      assert.equal(sseData(b.text).at(-1), '[DONE]');
      const c = await post(`${lx.url}/v1/chat/completions`, chat({ model: 'nope' }), { 'x-request-id': 'ledger-c' });
      assert.equal(c.status, 404);
      const t0 = Date.now();
      const got = await waitRows(db, "SELECT * FROM usage WHERE request_id LIKE 'ledger-%' ORDER BY id", 3);
      assert.equal(got.length, 3, 'three rows');
      assert.ok(Date.now() - t0 < 2000, `rows appeared after ${Date.now() - t0} ms`);
      const [ra, rb, rc] = got;
      assert.equal(ra.request_id, 'ledger-a');
      assert.equal(ra.user, 'alice');
      assert.equal(ra.model, MODEL);
      assert.equal(ra.backend, 'vllm');
      assert.equal(ra.priority, 'high');
      assert.equal(ra.status, 200);
      assert.equal(ra.prompt_tokens, 3);
      assert.equal(ra.completion_tokens, 4);
      assert.equal(ra.stream, 0);
      assert.equal(ra.error_code, null);
      assert.ok(ra.latency_ms > 0 && ra.queue_wait_ms >= 0);
      assert.match(ra.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.ok(Math.abs(Date.parse(ra.time) - Date.now()) < 60000);
      assert.equal(rb.user, 'bob');
      assert.equal(rb.stream, 1);
      assert.equal(rb.completion_tokens, 6);
      assert.ok(rb.ttft_ms >= 0);
      assert.equal(rc.status, 404);
      assert.equal(rc.error_code, 'model_not_found');
      assert.equal(rc.backend, null);
      assert.equal(rc.prompt_tokens, null);
      assert.equal(rows(db, 'PRAGMA journal_mode')[0].journal_mode, 'wal');
      const s = await stats(lx);
      assert.equal(s.ledger.total_requests, 3);
      assert.equal(s.ledger.total_tokens, 3 + 4 + 3 + 6);
      assert.equal(s.ledger.total_errors, 1);
    } finally {
      await lx.stop();
    }
  });

  test('the ledger survives a restart: its totals carry on beside the new totals since start', async () => {
    const lx = await startLexora(config);
    try {
      let s = await stats(lx);
      assert.equal(s.total_requests, 0, 'since start');
      assert.equal(s.ledger.total_requests, 3, 'since the ledger began');
      const r = await post(`${lx.url}/v1/chat/completions`, chat({ x_user_id: 'alice' }));
      assert.equal(r.status, 200);
      for (let i = 0; i < 60 && s.ledger.total_requests !== 4; i++) {
        await sleep(50);
        s = await stats(lx);
      }
      assert.equal(s.ledger.total_requests, 4);
      assert.equal(s.total_requests, 1);
    } finally {
      await lx.stop();
    }
    assert.equal(rows(db, 'SELECT COUNT(*) AS n FROM usage')[0].n, 4);
    assert.equal(rows(db, 'SELECT requests FROM ledger_totals')[0].requests, 4);
  });

  test('rows answered a second before kill -9 are in the ledger', async () => {
    const lx = await startLexora(config);
    for (let i = 0; i < 5; i++) {
      const r = await post(`${lx.url}/v1/chat/completions`, chat({ x_user_id: 'kim' }), { 'x-request-id': `kill-${i}` });
      assert.equal(r.status, 200);
    }
    await sleep(1000);
    lx.proc.child.kill('SIGKILL');
    const { signal } = await lx.proc.exited;
    assert.equal(signal, 'SIGKILL');
    assert.doesNotMatch(lx.logs(), /AddressSanitizer|runtime error:/);
    assert.equal(rows(db, "SELECT COUNT(*) AS n FROM usage WHERE request_id LIKE 'kill-%'")[0].n, 5);
    // and the next start reads the totals of what was committed
    const again = await startLexora(config);
    try {
      assert.equal((await stats(again)).ledger.total_requests, 9);
    } finally {
      await again.stop();
    }
  });

  test('lexora usage prints the ledger by user, model or day; exit codes', async () => {
    const file = path.join(dir, 'usage-cli.yaml');
    writeFileSync(file, `${toYaml({ ...config, server: { host: '127.0.0.1', port: 1 } })}\n`);
    const byUser = await runLexora(['usage', '--config', file]);
    assert.equal(byUser.code, 0, byUser.stderr);
    const lines = byUser.stdout.trim().split('\n');
    assert.match(lines[0], /^user\s+requests\s+prompt_tokens\s+completion_tokens\s+errors\s+avg_latency_ms$/);
    const line = (who) => lines.find((l) => l.split(/\s+/)[0] === who)?.split(/\s+/);
    assert.deepEqual(line('kim').slice(0, 5), ['kim', '5', '15', '20', '0']);
    assert.deepEqual(line('alice').slice(0, 5), ['alice', '2', '6', '8', '0']);
    assert.deepEqual(line('total').slice(0, 5), ['total', '9', '24', '34', '1']);
    // the columns are aligned: every line is as long as the header
    assert.ok(lines.every((l) => l.length === lines[0].length), byUser.stdout);

    const byModel = await runLexora(['usage', '--config', file, '--by', 'model']);
    assert.equal(byModel.code, 0);
    assert.match(byModel.stdout, new RegExp(`^${MODEL}\\s+8\\s+24\\s+34\\s+0\\s`, 'm'));
    assert.match(byModel.stdout, /^nope\s+1\s+0\s+0\s+1\s/m);

    const today = new Date().toISOString().slice(0, 10);
    const byDay = await runLexora(['usage', '--config', file, '--by=day', '--since', today]);
    assert.equal(byDay.code, 0);
    assert.match(byDay.stdout, new RegExp(`^${today}\\s+9\\s`, 'm'));
    const future = await runLexora(['usage', '--config', file, '--since', '2999-01-01T00:00:00Z']);
    assert.match(future.stdout, /^total\s+0\s+0\s+0\s+0\s/m);

    assert.equal((await runLexora(['usage', '--config', file, '--by', 'week'])).code, 2);
    assert.equal((await runLexora(['usage', '--config', file, '--since', 'yesterday'])).code, 2);
    assert.equal((await runLexora(['usage', '--frobnicate'])).code, 2);
    const gone = path.join(dir, 'gone.yaml');
    writeFileSync(gone, `${toYaml({ ...config, server: { host: '127.0.0.1', port: 1 }, usage: { db_path: path.join(dir, 'missing.db') } })}\n`);
    const missing = await runLexora(['usage', '--config', gone]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /missing\.db/);
    assert.equal(existsSync(path.join(dir, 'missing.db')), false, 'lexora usage never creates a ledger');
    const help = await runLexora(['usage', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--by user\|model\|day/);
  });

  test('a read-only ledger does not stop serving: rows are counted as lost and logged', async () => {
    // The ledger exists (the tests above made it); make it and its directory read-only. Root ignores
    // permissions, so as root Lexora runs as nobody here (setpriv, util-linux).
    const asRoot = process.getuid() === 0;
    chmodSync(db, 0o444);
    chmodSync(dir, 0o555);
    const port = await freePort();
    const cfgDir = mkdtempSync(path.join(os.tmpdir(), 'lexora-ro-'));
    chmodSync(cfgDir, 0o755);
    const file = path.join(cfgDir, 'lexora_config.yaml');
    writeFileSync(file, `${toYaml({ ...config, server: { host: '127.0.0.1', port } })}\n`, { mode: 0o644 });
    const cmd = asRoot ? 'setpriv' : LEXORA_BIN;
    const args = asRoot
      ? ['--reuid=65534', '--regid=65534', '--clear-groups', LEXORA_BIN, '--config', file]
      : ['--config', file];
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    const exited = new Promise((r) => child.on('exit', (code, signal) => r({ code, signal })));
    const url = `http://127.0.0.1:${port}`;
    try {
      let up = false;
      for (let i = 0; i < 300 && !up && child.exitCode === null; i++) {
        try {
          up = (await fetch(`${url}/v1/models`)).status === 200;
        } catch { await sleep(50); }
      }
      assert.ok(up, `lexora did not start:\n${out}`);
      for (let i = 0; i < 3; i++) {
        const r = await post(`${url}/v1/chat/completions`, chat({ x_user_id: 'ro' }));
        assert.equal(r.status, 200, r.text);
      }
      let s;
      for (let i = 0; i < 60; i++) {
        s = await (await fetch(`${url}/stats`)).json();
        if (s.ledger.rows_lost.write_failed >= 3) break;
        await sleep(50);
      }
      assert.equal(s.ledger.writable, false);
      assert.equal(s.ledger.rows_lost.write_failed, 3);
      assert.equal(s.total_requests, 3);
      const m = parseMetrics(await (await fetch(`${url}/metrics`)).text());
      assert.equal(m.get('lexora_usage_rows_lost_total{reason="write_failed"}'), 3);
      assert.equal(m.get('lexora_usage_ledger_writable'), 0);
      assert.equal((out.match(/usage ledger .*: cannot/g) || []).length, 1, `logged once per failure streak:\n${out}`);
    } finally {
      child.kill('SIGTERM');
      const { code } = await exited;
      chmodSync(dir, 0o755);
      chmodSync(db, 0o644);
      rmSync(cfgDir, { recursive: true, force: true });
      assert.equal(code, 0, out);
      assert.doesNotMatch(out, /AddressSanitizer|runtime error:/);
    }
    assert.equal(rows(db, "SELECT COUNT(*) AS n FROM usage WHERE user = 'ro'")[0].n, 0);
  });
});
