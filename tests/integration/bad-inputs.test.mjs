// The bad-input table (tests/data/bad-inputs.json) against the real lexora, in front of a real lexora-sim:
// every row once, each as its own test; then the whole table again for ROUNDS rounds, after which the
// gateway must still answer a normal request, its resident memory must be where it was after the
// warm-up, and the backend must have seen none of the bad requests. docs/ROBUSTNESS.md explains the
// table and how to add a row.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ROOT, configFor, sleep, startLexora, startSim, waitFor } from '../lib/harness.mjs';

const TABLE = JSON.parse(readFileSync(path.join(ROOT, 'tests/data/bad-inputs.json'), 'utf8'));
const ROUNDS = Number(process.env.BAD_INPUT_ROUNDS || 20);
const LIMITS = {
  max_body_bytes: 16384,
  max_header_bytes: 2048,
  header_timeout: 0.6, // the trickle and short-body rows wait this long for their 408
  idle_timeout: 30,
  max_connections: 16,
};
const ANSWER_MS = 10000; // a bound on waiting for an answer or a close, never a timing assertion

// A row's bytes: a string, or a list of strings and {repeat, times}. Every character is one byte
// (U+0000..U+00FF, written as latin1), so "\u00ff" in the JSON is the byte 0xFF.
function bytes(spec) {
  const parts = [].concat(spec).map((p) => (typeof p === 'string' ? p : p.repeat.repeat(p.times)));
  const s = parts.join('');
  if (/[^\u0000-\u00ff]/.test(s)) throw new Error('table strings hold bytes: characters up to \\u00ff only');
  return Buffer.from(s, 'latin1');
}

function requestBytes(r) {
  const method = r.method || 'POST';
  const body = r.body === undefined ? null : bytes(r.body);
  let head = `${method} ${r.path || '/v1/chat/completions'} HTTP/1.1\r\nHost: lexora\r\n`;
  if (body) head += 'Content-Type: application/json\r\n';
  for (const [k, v] of Object.entries(r.headers || {})) head += `${k}: ${v}\r\n`;
  if (body) head += `Content-Length: ${body.length}\r\n`;
  return Buffer.concat([Buffer.from(head + '\r\n', 'latin1'), body || Buffer.alloc(0)]);
}

/** Parses one HTTP/1.1 response at buf[0..]: { status, headers, body, size }, or null if incomplete. */
function parseResponse(buf) {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3}) /.exec(lines[0]);
  if (!m) throw new Error(`not an HTTP response: ${JSON.stringify(lines[0])}`);
  const headers = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  let at = end + 4;
  const status = Number(m[1]);
  if (status === 100) return { status, headers, body: Buffer.alloc(0), size: at };
  if (/chunked/i.test(headers['transfer-encoding'] || '')) {
    const chunks = [];
    for (;;) {
      const eol = buf.indexOf('\r\n', at);
      if (eol < 0) return null;
      const n = parseInt(buf.subarray(at, eol).toString('latin1'), 16);
      if (buf.length < eol + 2 + n + 2) return null;
      chunks.push(buf.subarray(eol + 2, eol + 2 + n));
      at = eol + 2 + n + 2;
      if (n === 0) return { status, headers, body: Buffer.concat(chunks), size: at };
    }
  }
  const len = Number(headers['content-length'] || 0);
  if (buf.length < at + len) return null;
  return { status, headers, body: buf.subarray(at, at + len), size: at + len };
}

/** A client connection that collects responses and notices the server's close. */
class Conn {
  static open(port) {
    return new Promise((resolve, reject) => {
      const c = new Conn(net.connect(port, '127.0.0.1'));
      c.sock.once('connect', () => resolve(c));
      c.sock.once('error', reject);
    });
  }

  constructor(sock) {
    this.sock = sock;
    this.buf = Buffer.alloc(0);
    this.closed = false;
    this.continues = 0; // 100 Continue answers seen (no row expects one)
    this.waiters = [];
    sock.on('data', (d) => { this.buf = Buffer.concat([this.buf, d]); this.wake(); });
    sock.on('end', () => { this.closed = true; this.wake(); });
    sock.on('close', () => { this.closed = true; this.wake(); });
    sock.on('error', () => { this.closed = true; this.wake(); });
  }

  wake() { for (const w of this.waiters.splice(0)) w(); }

  until(cond, what) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${what} within ${ANSWER_MS} ms; got ${JSON.stringify(this.buf.toString('latin1').slice(0, 300))}`)), ANSWER_MS);
      const check = () => {
        if (cond()) { clearTimeout(timer); resolve(); return; }
        this.waiters.push(check);
      };
      check();
    });
  }

  /** Waits for n complete responses (100 Continue not counted) and takes them off the buffer. */
  async responses(n) {
    const out = [];
    while (out.length < n) {
      let r;
      await this.until(() => (r = parseResponse(this.buf)) || this.closed, `response ${out.length + 1} of ${n}`);
      if (!r) r = parseResponse(this.buf);
      if (!r) throw new Error(`connection closed after ${out.length} of ${n} responses; left: ${JSON.stringify(this.buf.toString('latin1').slice(0, 300))}`);
      this.buf = this.buf.subarray(r.size);
      if (r.status === 100) this.continues++;
      else out.push(r);
    }
    return out;
  }

  write(b) { if (!this.sock.destroyed) this.sock.write(b); }
  closedByServer() { return this.until(() => this.closed, 'close by the server'); }
  destroy() { this.sock.destroy(); }
}

function checkResponse(res, exp, where) {
  assert.equal(res.status, exp.status, `${where}: status; body ${res.body.toString('latin1').slice(0, 300)}`);
  if (exp.code !== undefined || res.status >= 400) {
    let json;
    assert.doesNotThrow(() => { json = JSON.parse(res.body.toString('utf8')); }, `${where}: an error body in JSON`);
    assert.equal(json.error?.code, exp.code, `${where}: error code in ${res.body}`);
    if (exp.param !== undefined) assert.equal(json.error.param, exp.param, `${where}: error param`);
    assert.equal(typeof json.error.message, 'string', `${where}: error message`);
    if (exp.message !== undefined) assert.match(json.error.message, new RegExp(exp.message), `${where}: error message`);
  }
  for (const [k, v] of Object.entries(exp.headers || {})) assert.equal(res.headers[k.toLowerCase()], v, `${where}: header ${k}`);
}

const HEALTH = Buffer.from('GET /health/live HTTP/1.1\r\nHost: lexora\r\n\r\n');

/** Connections over server.max_connections: the first over is refused with the row's answer; the
 * connections held are unharmed (each still answers, and one serves a real request). */
async function runMaxConnections(lx, row, where) {
  // Start from a known count: only the probe itself open (earlier rows' connections are gone).
  await waitFor(async () => (await stats(lx.port)).connections === 1, 'connections from earlier rows to close');
  const held = [];
  try {
    for (let i = 0; i <= LIMITS.max_connections + 1; i++) {
      const c = await Conn.open(lx.port);
      c.write(HEALTH);
      const [r] = await c.responses(1);
      if (r.status === 200) { held.push(c); continue; }
      checkResponse(r, row.expect[0], where);
      await c.closedByServer();
      c.destroy();
      break;
    }
    assert.equal(held.length, LIMITS.max_connections, `${where}: connections held before the refusal`);
    const ok = requestBytes({ headers: { 'X-Request-Id': `ok-maxconn-${Math.random().toString(16).slice(2)}` }, body: TABLE.ok_body });
    held[0].write(ok);
    const [served] = await held[0].responses(1);
    assert.equal(served.status, 200, `${where}: a held connection serves a request`);
    for (const c of held) c.write(HEALTH);
    for (const c of held) assert.equal((await c.responses(1))[0].status, 200, `${where}: held connections still answer`);
  } finally {
    held.forEach((c) => c.destroy());
  }
  await waitFor(async () => (await stats(lx.port)).connections === 1, 'the held connections to close');
}

/** GET /stats on a fresh connection that is closed after (fetch would keep one in its pool). */
async function stats(port) {
  const c = await Conn.open(port);
  try {
    c.write('GET /stats HTTP/1.1\r\nHost: lexora\r\nConnection: close\r\n\r\n');
    const [r] = await c.responses(1);
    return JSON.parse(r.body.toString('utf8'));
  } finally {
    c.destroy();
  }
}

async function runRow(lx, row) {
  const where = row.name;
  if (row.special === 'max_connections') return runMaxConnections(lx, row, where);
  const c = await Conn.open(lx.port);
  try {
    if (row.trickle) {
      // One byte at a time until the server answers or closes (it must not wait for the whole head).
      for (const b of bytes(row.trickle.raw)) {
        if (c.closed || c.buf.length) break;
        c.write(Buffer.from([b]));
        await sleep(row.trickle.gap_ms);
      }
    } else {
      c.write(row.raw !== undefined ? bytes(row.raw) : requestBytes(row.request));
    }
    const got = await c.responses(row.expect.length);
    got.forEach((r, i) => checkResponse(r, row.expect[i], `${where} (response ${i + 1})`));
    assert.equal(c.continues, 0, `${where}: no 100 Continue`);
    if (row.close) {
      await c.closedByServer();
      assert.equal(c.buf.length, 0, `${where}: nothing after the last answer; got ${c.buf.toString('latin1').slice(0, 200)}`);
    } else {
      assert.equal(c.closed, false, `${where}: the connection stays open`);
      c.write(HEALTH); // the connection is still usable, and nothing else was answered on it
      const [h] = await c.responses(1);
      assert.equal(h.status, 200, `${where}: a request after it on the same connection`);
      assert.equal(c.buf.length, 0, `${where}: nothing else answered; got ${c.buf.toString('latin1').slice(0, 200)}`);
    }
  } finally {
    c.destroy();
  }
}

function vmRssKiB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]);
}

let normalSeq = 0;
async function normalRequest(lx) {
  const c = await Conn.open(lx.port);
  try {
    c.write(requestBytes({ headers: { 'X-Request-Id': `ok-normal-${++normalSeq}` }, body: TABLE.ok_body }));
    const [r] = await c.responses(1);
    return { status: r.status, json: JSON.parse(r.body.toString('utf8')) };
  } finally {
    c.destroy();
  }
}

describe('bad inputs', () => {
  let sim;
  let lx;
  let rounds = 0; // whole passes over the table so far
  before(async () => {
    sim = await startSim(['--ttft-ms', '1', '--tokens-per-sec', '0']);
    lx = await startLexora(configFor(sim.url, {
      extra: {
        server: LIMITS,
        // Unlimited requests (the table is replayed many times); a token limit, so that an absurd
        // max_tokens is refused by its reservation alone.
        rate_limits: { default: { requests_per_minute: 0, tokens_per_minute: 1000000 } },
        usage: { enabled: false },
      },
    }), { env: { ASAN_OPTIONS: `${process.env.ASAN_OPTIONS || 'detect_leaks=1'}:quarantine_size_mb=1` } }); // see the RSS bound
  });
  after(async () => {
    await lx?.stop();
    await sim?.stop();
  });

  test('the table is well formed', () => {
    const names = new Set();
    for (const row of TABLE.rows) {
      assert.ok(row.name && !names.has(row.name), `unique name: ${row.name}`);
      names.add(row.name);
      assert.equal([row.request, row.raw, row.trickle, row.special].filter((x) => x !== undefined).length, 1, row.name);
      assert.ok(Array.isArray(row.expect) && row.expect.length > 0, row.name);
      assert.equal(typeof row.close, 'boolean', row.name);
    }
  });

  for (const row of TABLE.rows) test(row.name, () => runRow(lx, row));

  test(`the whole table ${ROUNDS} more times: still serving, memory flat, no bad request reached the backend`, async () => {
    rounds = 1;
    // One more warm-up round: pools, caches and the allocator settle during the first ones.
    for (const row of TABLE.rows) await runRow(lx, row);
    rounds++;
    const rssWarm = vmRssKiB(lx.proc.child.pid);
    for (let i = 0; i < ROUNDS; i++) {
      for (const row of TABLE.rows) await runRow(lx, row);
      rounds++;
    }
    const rssEnd = vmRssKiB(lx.proc.child.pid);

    const r = await normalRequest(lx);
    assert.equal(r.status, 200);
    assert.equal(r.json.object, 'chat.completion');

    // The bound. This is an ASan build: freed blocks wait in ASan's quarantine before reuse, which
    // by default (256 MiB) grew RSS by ~30 MiB over 20 rounds with no leak at all; so lexora runs here
    // with a 1 MiB quarantine (see before()), and then RSS moves by well under 1 MiB over 20 rounds.
    // 8 MiB leaves room for the allocator's own noise, and is still far below what memory held per
    // bad request would add: 20 rounds are ~1,400 requests, so 16 KiB (one body) each would be 22 MiB.
    // A leak proper (memory nothing points to) is LeakSanitizer's: reported at exit by the harness.
    const grewKiB = rssEnd - rssWarm;
    console.log(`# VmRSS after warm-up ${rssWarm} KiB, after ${ROUNDS} more rounds ${rssEnd} KiB (${grewKiB >= 0 ? '+' : ''}${grewKiB} KiB)`);
    assert.ok(grewKiB < 8 * 1024, `RSS grew by ${grewKiB} KiB over ${ROUNDS} rounds`);

    // Only the good requests the table carries (ids ok-*) and the normal one reached the backend.
    const seen = await sim.requests();
    const bad = seen.filter((q) => !String(q.request_id).startsWith('ok-'));
    assert.deepEqual(bad.map((q) => q.body.slice(0, 100)), [], 'bad requests reached the backend');
    const perRound = TABLE.rows.reduce((n, row) => n + (row.backend || 0), 0);
    assert.equal(seen.length, perRound * rounds + 1, 'requests the backend saw');
  });
});
