// The usage ledger in PostgreSQL: a real postgres started here on loopback (initdb into a temporary
// folder, a free port, its socket in the same folder; as root, both run as the user nobody through
// setpriv, since initdb refuses root). Two gateways write to one database at once; postgres is killed
// (SIGKILL of the postmaster) and started again in the middle of the traffic: every request answered is
// in the ledger exactly once, under the gateway that served it, no request waited for the database, and
// each gateway logged the outage once and the recovery once. `lexora usage` reads both gateways' rows,
// and --gateway one of them.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  IN_CI, LEXORA_BIN, MODEL, chatBody, configFor, freePort, launch, needs, post, runLexora, sleep, startLexora, startSim, toYaml,
  waitFor, waitForPort,
} from '../lib/harness.mjs';

/** The newest /usr/lib/postgresql/N/bin holding initdb and postgres, or null. */
function findPgBin() {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return null;
  const versions = readdirSync(base).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  for (const v of versions) {
    const bin = path.join(base, v, 'bin');
    if (existsSync(path.join(bin, 'initdb')) && existsSync(path.join(bin, 'postgres'))) return bin;
  }
  return null;
}

const PG_BIN = findPgBin();
const AS_ROOT = process.getuid() === 0;
const NOBODY = { uid: 65534, gid: 65534 };
const PASSWORD = 'ledger-secret';
// the unit tests' binary, built beside lexora: its PostgreSQL test runs against the server started here
const UNIT_BIN = path.join(path.dirname(LEXORA_BIN), 'test_usage_backends');

/** [command, args] that runs bin as nobody when we are root (initdb and postgres refuse root). */
function asPgUser(bin, args) {
  if (!AS_ROOT) return [bin, args];
  return ['setpriv', [`--reuid=${NOBODY.uid}`, `--regid=${NOBODY.gid}`, '--clear-groups', bin, ...args]];
}

function runPg(tool, args) {
  const [cmd, argv] = asPgUser(path.join(PG_BIN, tool), args);
  const r = spawnSync(cmd, argv, { encoding: 'utf8', env: { ...process.env, PGPASSWORD: PASSWORD } });
  assert.equal(r.status, 0, `${tool} ${args.join(' ')}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

describe('usage ledger in PostgreSQL', { skip: needs(PG_BIN, 'PostgreSQL (initdb, postgres)', 'make deps installs postgresql') }, () => {
  let dir;
  let port;
  let pg;
  let sim;
  const url = () => `postgresql://lexora@127.0.0.1:${port}/lexora`;
  const psql = (sql) => runPg('psql', ['-X', '-A', '-t', '-q', '-h', '127.0.0.1', '-p', String(port), '-U', 'lexora',
    '-d', 'lexora', '-c', sql]).trim();

  /** Starts postgres; again and again for up to 15 s while the killed one's backends still hold its memory. */
  async function startPg() {
    const deadline = Date.now() + 15000;
    for (;;) {
      const [cmd, argv] = asPgUser(path.join(PG_BIN, 'postgres'), ['-D', path.join(dir, 'data'), '-p', String(port),
        '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off', '-c', 'max_connections=20']);
      pg = launch(cmd, argv, 'postgres');
      try {
        await waitForPort(port, pg, 'postgres');
        break;
      } catch (e) {
        if (pg.exitCode === null || Date.now() > deadline) throw e;
        await sleep(100);
      }
    }
    await waitFor(() => spawnSync(path.join(PG_BIN, 'pg_isready'), ['-q', '-h', '127.0.0.1', '-p', String(port)]).status === 0,
      'postgres accepting connections', { ms: 15000, stepMs: 50 });
  }

  /** SIGKILL of the postmaster: no shutdown at all; crash recovery at the next start. */
  async function killPg() {
    pg.child.kill('SIGKILL');
    await pg.exited;
  }

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'lexora-pg-'));
    if (AS_ROOT) chownSync(dir, NOBODY.uid, NOBODY.gid);
    const pwfile = path.join(dir, 'initdb-password');
    writeFileSync(pwfile, `${PASSWORD}\n`, { mode: 0o644 });
    runPg('initdb', ['-D', path.join(dir, 'data'), '-U', 'lexora', `--pwfile=${pwfile}`, '--auth-local=trust',
      '--auth-host=scram-sha-256', '-E', 'UTF8', '--no-sync']);
    port = await freePort();
    await startPg();
    runPg('createdb', ['-h', '127.0.0.1', '-p', String(port), '-U', 'lexora', 'lexora']);
    sim = await startSim(['--model', MODEL, '--ttft-ms', '5', '--tokens-per-sec', '0']);
  });

  after(async () => {
    await sim?.stop();
    if (pg && pg.exitCode === null && pg.child.signalCode === null) {
      pg.child.kill('SIGINT'); // fast shutdown
      await pg.exited;
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const unlimited = { default: { requests_per_minute: 0, tokens_per_minute: 0 } };
  const ledgerConfig = (usage) => configFor(sim.url, {
    extra: { usage: { store: 'postgres', postgres_url: url(), ...usage }, rate_limits: unlimited },
  });

  test('two gateways, postgres killed and restarted mid-traffic: every request exactly once', async () => {
    // gateway a reads its password from usage.password_file, gateway b from PGPASSWORD (libpq's own)
    const pwFile = path.join(dir, 'ledger-password');
    writeFileSync(pwFile, `${PASSWORD}\n`, { mode: 0o600 });
    const a = await startLexora(ledgerConfig({ gateway_id: 'gw-a', password_file: pwFile }));
    const b = await startLexora(ledgerConfig({ gateway_id: 'gw-b' }), { env: { PGPASSWORD: PASSWORD } });
    const answered = { 'gw-a': new Set(), 'gw-b': new Set() };
    let outage = false;
    let slowestInOutage = 0;
    let sent = 0;
    let stop = false;
    const client = async (lx, gw, k) => {
      for (let i = 0; !stop; i++) {
        const id = `pg-${gw}-${k}-${i}`;
        const t0 = Date.now();
        const r = await post(`${lx.url}/v1/chat/completions`,
          chatBody({ x_user_id: `user-${k % 3}` }, { messages: [{ role: 'user', content: 'Hello' }], max_tokens: 3 }),
          { 'x-request-id': id });
        sent++;
        if (outage) slowestInOutage = Math.max(slowestInOutage, Date.now() - t0);
        if (r.status === 200) answered[gw].add(id);
      }
    };
    try {
      const clients = [0, 1, 2, 3].flatMap((k) => [client(a, 'gw-a', k), client(b, 'gw-b', k)]);
      await waitFor(() => sent >= 150, '150 requests before the kill', { ms: 20000 });
      outage = true;
      await killPg();
      const before = sent;
      await waitFor(() => sent >= before + 150, '150 requests while postgres is down', { ms: 20000 });
      await startPg();
      outage = false;
      const back = sent;
      await waitFor(() => sent >= back + 150, '150 requests after the restart', { ms: 20000 });
      stop = true;
      await Promise.all(clients);

      const total = answered['gw-a'].size + answered['gw-b'].size;
      assert.ok(answered['gw-a'].size > 100 && answered['gw-b'].size > 100, `answered: ${total}`);
      assert.ok(slowestInOutage < 2000, `no request waits for the ledger: slowest during the outage ${slowestInOutage} ms`);
      // the rows waiting in memory are written once postgres is back
      await waitFor(() => Number(psql('SELECT count(*) FROM usage')) >= total, `${total} rows in the ledger`,
        { ms: 20000, stepMs: 200 });
      await sleep(500); // nothing more arrives (a batch written twice would show here)
      for (const gw of ['gw-a', 'gw-b']) {
        const ids = psql(`SELECT request_id FROM usage WHERE gateway_id = '${gw}' ORDER BY request_id`).split('\n')
          .filter(Boolean);
        assert.equal(ids.length, answered[gw].size, `${gw}: one row per request answered`);
        assert.deepEqual(new Set(ids), answered[gw], `${gw}: the ledger holds exactly the requests it answered`);
        const [requests, pt, ct] = psql(`SELECT requests, prompt_tokens, completion_tokens FROM ledger_totals
          WHERE gateway_id = '${gw}'`).split('|').map(Number);
        const [sumPt, sumCt] = psql(`SELECT sum(prompt_tokens), sum(completion_tokens) FROM usage
          WHERE gateway_id = '${gw}'`).split('|').map(Number);
        assert.equal(requests, answered[gw].size, `${gw}: the totals count each row once`);
        assert.deepEqual([pt, ct], [sumPt, sumCt], `${gw}: token totals`);
      }
      assert.equal(psql('SELECT count(*) FROM (SELECT request_id FROM usage GROUP BY request_id HAVING count(*) > 1) d'),
        '0', 'no request twice');
      assert.equal(psql('SELECT max(version) FROM lexora_migrations'), '2');
      for (const lx of [a, b]) {
        const metrics = await (await fetch(`${lx.url}/metrics`)).text();
        assert.match(metrics, /lexora_usage_rows_lost_total\{reason="write_failed"\} 0/);
        assert.match(metrics, /lexora_usage_rows_lost_total\{reason="queue_full"\} 0/);
        assert.match(metrics, /lexora_usage_rows_pending 0/);
        assert.match(metrics, /lexora_usage_ledger_writable 1/);
      }
    } finally {
      stop = true;
      await a.stop();
      await b.stop();
    }
    for (const lx of [a, b]) {
      const logs = lx.logs();
      assert.equal((logs.match(/usage ledger postgresql:[^"]*: cannot/g) || []).length, 1,
        `the outage is logged once:\n${logs.split('\n').filter((l) => !l.includes('access')).join('\n')}`);
      assert.equal((logs.match(/usage ledger postgresql:[^"]*: writing again; 0 rows were lost/g) || []).length, 1,
        'and the recovery once');
      assert.doesNotMatch(logs, new RegExp(PASSWORD), 'the password is never logged');
    }

    // lexora usage: every gateway's rows, or one gateway's
    const file = path.join(dir, 'usage-cli.yaml');
    writeFileSync(file, `${toYaml({ ...ledgerConfig({ password_file: pwFile }), server: { host: '127.0.0.1', port: 1 } })}\n`);
    const byGateway = await runLexora(['usage', '--config', file, '--by', 'gateway']);
    assert.equal(byGateway.code, 0, byGateway.stderr);
    const line = (out, key) => out.split('\n').find((l) => l.startsWith(`${key} `))?.trim().split(/\s+/);
    assert.equal(Number(line(byGateway.stdout, 'gw-a')[1]), answered['gw-a'].size, byGateway.stdout);
    assert.equal(Number(line(byGateway.stdout, 'gw-b')[1]), answered['gw-b'].size, byGateway.stdout);
    const total = answered['gw-a'].size + answered['gw-b'].size;
    assert.equal(Number(line(byGateway.stdout, 'total')[1]), total);
    const byUser = await runLexora(['usage', '--config', file, '--gateway', 'gw-b']);
    assert.equal(byUser.code, 0, byUser.stderr);
    assert.match(byUser.stdout, /^user\s+requests\s+prompt_tokens/);
    assert.equal(Number(line(byUser.stdout, 'total')[1]), answered['gw-b'].size, byUser.stdout);
    const none = await runLexora(['usage', '--config', file, '--gateway', 'gw-c']);
    assert.equal(none.code, 0);
    assert.equal(Number(line(none.stdout, 'total')[1]), 0);
    assert.equal((await runLexora(['usage', '--config', file, '--gateway', 'gw c'])).code, 2);
  });

  test('a gateway starts and serves while postgres is unreachable; lexora usage says why it cannot read', async () => {
    const deadPort = await freePort();
    const cfg = configFor(sim.url, {
      extra: {
        usage: { store: 'postgres', postgres_url: `postgresql://lexora@127.0.0.1:${deadPort}/lexora`, gateway_id: 'gw-d' },
        rate_limits: unlimited,
      },
    });
    const lx = await startLexora(cfg);
    try {
      const r = await post(`${lx.url}/v1/chat/completions`,
        chatBody({}, { messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 }));
      assert.equal(r.status, 200);
      await waitFor(() => /usage ledger postgresql:\/\/lexora@127\.0\.0\.1:\d+\/lexora: cannot connect/.test(lx.logs()),
        'the connect failure logged');
      const metrics = await (await fetch(`${lx.url}/metrics`)).text();
      assert.match(metrics, /lexora_usage_ledger_writable 0/);
    } finally {
      await lx.stop();
    }
    const file = path.join(dir, 'usage-dead.yaml');
    writeFileSync(file, `${toYaml({ ...cfg, server: { host: '127.0.0.1', port: 1 } })}\n`);
    const out = await runLexora(['usage', '--config', file]);
    assert.equal(out.code, 1);
    assert.match(out.stderr, /lexora usage: cannot read the usage ledger postgresql:\/\/lexora@127\.0\.0\.1:\d+\/lexora: cannot connect/);
  });

  test('the store itself: a batch written twice counts once (test_usage_backends against this server)', {
    skip: !IN_CI && !existsSync(UNIT_BIN) && `${UNIT_BIN} is not built (a build with LEXORA_TESTS=ON builds it)`,
  }, () => {
    const r = spawnSync(UNIT_BIN, [], {
      encoding: 'utf8',
      env: { ...process.env, LEXORA_TEST_PG_URL: url(), PGPASSWORD: PASSWORD },
    });
    const out = r.stdout + r.stderr;
    assert.equal(r.status, 0, out);
    assert.match(out, /\[ {7}OK \] test_pg_written_once/, `the PostgreSQL test ran, not skipped:\n${out}`);
  });

  test('the config checker: postgres needs postgres_url', async () => {
    const file = path.join(dir, 'bad.yaml');
    writeFileSync(file, `${toYaml(configFor(sim.url, { extra: { usage: { store: 'postgres' } } }))}\n`);
    const r = await runLexora(['--check-config', '--config', file]);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stderr + r.stdout, /usage\.postgres_url: needed when usage\.store is postgres/);
  });
});
