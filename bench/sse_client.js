#!/usr/bin/env node
// SSE load client for bench/run.sh: opens N streaming chat requests at once, keeps them all open,
// samples a process's memory (/proc/PID/status VmRSS and VmHWM) while every stream is receiving,
// then lets the streams finish (or closes them at the deadline) and reports.
//
//   node bench/sse_client.js --port 18103 --streams 2000 --max-tokens 40 --pid 1234 --out result.json
//
// Options (all have defaults except --port):
//   --host H            target address, 127.0.0.1 (the only one this benchmark ever uses)
//   --port P            target port
//   --path PATH         /v1/chat/completions
//   --model NAME        qwen3-32b
//   --streams N         streams to open at once, 2000
//   --max-tokens T      max_tokens of each request (sets how long a stream lasts), 40
//   --pid PID           process whose memory to sample (Lexora); none: no samples
//   --samples K         memory samples once all streams receive, 5
//   --interval-ms MS    between two samples, 1000
//   --open-timeout-s S  longest wait for every stream to receive its first event, 20
//   --total-timeout-s S longest run in all; streams still open then are closed, 90
//   --out FILE          also write the result as JSON to FILE
//
// A stream "receives" once it got status 200 and at least one `data:` event; it "completes" when
// it got `data: [DONE]` and the response ended. Bytes are body bytes. Exit code 0 when every
// stream completed, 1 otherwise, 2 on a usage error. Every wait is bounded.
'use strict';
const http = require('http');
const fs = require('fs');

function parseArgs(argv) {
  const o = {
    host: '127.0.0.1', port: 0, path: '/v1/chat/completions', model: 'qwen3-32b', streams: 2000,
    maxTokens: 40, pid: 0, samples: 5, intervalMs: 1000, openTimeoutS: 20, totalTimeoutS: 90, out: '',
  };
  const names = {
    '--host': ['host', String], '--port': ['port', Number], '--path': ['path', String],
    '--model': ['model', String], '--streams': ['streams', Number], '--max-tokens': ['maxTokens', Number],
    '--pid': ['pid', Number], '--samples': ['samples', Number], '--interval-ms': ['intervalMs', Number],
    '--open-timeout-s': ['openTimeoutS', Number], '--total-timeout-s': ['totalTimeoutS', Number],
    '--out': ['out', String],
  };
  for (let i = 2; i < argv.length; i++) {
    const spec = names[argv[i]];
    if (!spec || i + 1 >= argv.length) usage(`bad argument ${argv[i]}`);
    const v = spec[1](argv[++i]);
    if (spec[1] === Number && !Number.isFinite(v)) usage(`${argv[i - 1]} needs a number`);
    o[spec[0]] = v;
  }
  if (!(o.port > 0 && o.port < 65536)) usage('--port is required');
  if (o.host !== '127.0.0.1' && o.host !== 'localhost') usage('only 127.0.0.1 is allowed');
  if (!(o.streams >= 1 && o.streams <= 20000)) usage('--streams must be 1..20000');
  return o;
}

function usage(msg) {
  process.stderr.write(`sse_client: ${msg}\n(see the comment at the top of bench/sse_client.js)\n`);
  process.exit(2);
}

function readMem(pid) {
  if (!pid) return null;
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k) => { const m = s.match(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm')); return m ? +m[1] : 0; };
    const fds = fs.readdirSync(`/proc/${pid}/fd`).length;
    return { rss_kib: kb('VmRSS'), hwm_kib: kb('VmHWM'), fds };
  } catch (e) {
    return { error: String(e.code || e) };
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function pct(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function main() {
  const o = parseArgs(process.argv);
  // Hard stop, whatever happens below.
  const hard = setTimeout(() => { process.stderr.write('sse_client: hard timeout\n'); process.exit(3); },
    (o.totalTimeoutS + 15) * 1000);
  hard.unref();

  const body = JSON.stringify({
    model: o.model, stream: true, max_tokens: o.maxTokens,
    messages: [{ role: 'user', content: 'Tell me a long story about a lighthouse keeper.' }],
  });
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  const streams = [];
  const statusCounts = {};
  const errorCounts = {};
  const note = (tbl, k) => { tbl[k] = (tbl[k] || 0) + 1; };

  const baseline = readMem(o.pid);
  const t0 = Date.now();
  for (let i = 0; i < o.streams; i++) {
    const st = { status: 0, firstEventMs: -1, bytes: 0, events: 0, done: false, ended: false,
      failed: false, midstreamError: false, tail: '', req: null };
    streams.push(st);
    const req = http.request({
      host: o.host, port: o.port, method: 'POST', path: o.path, agent,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body),
        Accept: 'text/event-stream' },
    }, (res) => {
      st.status = res.statusCode;
      note(statusCounts, res.statusCode);
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        st.bytes += Buffer.byteLength(chunk);
        const lines = (st.tail + chunk).split('\n');
        st.tail = lines.pop();
        for (const line of lines) {
          if (!line.startsWith('data:')) continue;
          st.events++;
          if (st.firstEventMs < 0) st.firstEventMs = Date.now() - t0;
          const payload = line.slice(5).trim();
          if (payload === '[DONE]') st.done = true;
          else if (payload.startsWith('{"error"')) st.midstreamError = true;
        }
      });
      res.on('end', () => { st.ended = true; });
      res.on('error', (e) => { st.ended = true; st.failed = true; note(errorCounts, e.code || 'response'); });
      res.on('aborted', () => { st.ended = true; st.failed = true; note(errorCounts, 'aborted'); });
    });
    req.on('error', (e) => {
      if (!st.ended) { st.ended = true; st.failed = true; note(errorCounts, e.code || String(e)); }
    });
    req.end(body);
    st.req = req;
  }

  const receiving = () => streams.filter((s) => s.status === 200 && s.events > 0 && !s.ended).length;
  const settled = () => streams.filter((s) => (s.status === 200 && s.events > 0) || s.ended).length;

  // Phase 1: wait until every stream receives (or has ended), bounded.
  const openDeadline = t0 + o.openTimeoutS * 1000;
  while (settled() < o.streams && Date.now() < openDeadline) await sleep(50);
  const allOpenMs = Date.now() - t0;
  const openNow = receiving();
  process.stderr.write(`sse_client: ${openNow}/${o.streams} streams receiving after ${allOpenMs} ms\n`);

  // Phase 2: sample memory while the streams are open.
  const samples = [];
  for (let k = 0; k < o.samples && o.pid; k++) {
    const m = readMem(o.pid);
    m.t_ms = Date.now() - t0;
    m.open = receiving();
    samples.push(m);
    process.stderr.write(`sse_client: sample ${k + 1}: open=${m.open} rss=${(m.rss_kib / 1024).toFixed(1)} MiB ` +
      `hwm=${(m.hwm_kib / 1024).toFixed(1)} MiB fds=${m.fds}\n`);
    if (k + 1 < o.samples) await sleep(o.intervalMs);
  }

  // Phase 3: let them finish, bounded; close whatever is still open at the deadline.
  const totalDeadline = t0 + o.totalTimeoutS * 1000;
  while (streams.some((s) => !s.ended) && Date.now() < totalDeadline) await sleep(100);
  let closedAtDeadline = 0;
  for (const s of streams) {
    if (!s.ended) { closedAtDeadline++; s.req.destroy(); s.ended = true; }
  }
  const finishedMs = Date.now() - t0;
  await sleep(500);
  const after = readMem(o.pid);

  const completed = streams.filter((s) => s.done && !s.failed).length;
  const ttfe = streams.filter((s) => s.firstEventMs >= 0).map((s) => s.firstEventMs).sort((a, b) => a - b);
  const rss = samples.filter((s) => s.rss_kib).map((s) => s.rss_kib);
  const result = {
    streams: o.streams,
    max_tokens: o.maxTokens,
    receiving_at_once: openNow,
    min_open_during_samples: samples.length ? Math.min(...samples.map((s) => s.open)) : null,
    max_open_during_samples: samples.length ? Math.max(...samples.map((s) => s.open)) : null,
    all_open_ms: allOpenMs,
    completed,
    closed_at_deadline: closedAtDeadline,
    midstream_errors: streams.filter((s) => s.midstreamError).length,
    statuses: statusCounts,
    errors: errorCounts,
    bytes: streams.reduce((a, s) => a + s.bytes, 0),
    events: streams.reduce((a, s) => a + s.events, 0),
    first_event_ms: { p50: pct(ttfe, 50), p99: pct(ttfe, 99), max: ttfe.length ? ttfe[ttfe.length - 1] : null },
    finished_ms: finishedMs,
    mem_baseline: baseline,
    mem_samples: samples,
    mem_after: after,
    peak_rss_mib: rss.length ? +(Math.max(...rss) / 1024).toFixed(1) : null,
    hwm_mib: samples.length && samples[samples.length - 1].hwm_kib
      ? +(Math.max(...samples.map((s) => s.hwm_kib || 0), (after && after.hwm_kib) || 0) / 1024).toFixed(1) : null,
  };
  const json = JSON.stringify(result, null, 1);
  if (o.out) fs.writeFileSync(o.out, json + '\n');
  process.stdout.write(json + '\n');
  process.exit(completed === o.streams ? 0 : 1);
}

main().catch((e) => { process.stderr.write(`sse_client: ${e.stack || e}\n`); process.exit(3); });
