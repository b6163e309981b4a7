// queue-load: 10,000 requests waiting in a real Lexora, end to end, on loopback.
//
// lexora-sim holds the one slot (backends.vllm.max_concurrency: 1) with a long first request while N
// more requests (each on its own connection, 1 in 5 high, 1 in 5 low) arrive and wait in Lexora's
// queue (queue.max_size N). Measured: Lexora's resident memory per waiting request (RSS with N waiting
// minus RSS before, over N: the queue entry, the request state, the connection and its buffers, the
// body), then — the simulator made instant — how fast the queue drains through the single slot
// (dispatch + forward + answer, one at a time), and that the high requests all went before the low.
//
// Usage: node bench/queue_load.mjs [--lexora build/lexora] [--sim build/lexora-sim] [--n 10000]
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { freePort, sleep, waitPort } from './lib.mjs';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const LEXORA = arg('lexora', 'build/lexora');
const SIM = arg('sim', 'build/lexora-sim');
const N = Number(arg('n', 10000));

const rssKiB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
const fds = (pid) => readdirSync(`/proc/${pid}/fd`).length;

const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
let finished = 0;
/** Sends one request; { done: promise of { id, status, rank } (rank: the order it completed in), req }. */
function request(port, id, priority) {
  const body = JSON.stringify({ model: 'qwen3-32b', messages: [{ role: 'user', content: 'hi' }], max_tokens: 1, x_priority: priority });
  let req;
  const done = new Promise((resolve) => {
    req = http.request({ port, host: '127.0.0.1', method: 'POST', path: '/v1/chat/completions', agent,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-request-id': id } },
    (res) => {
      res.resume();
      res.on('end', () => resolve({ id, status: res.statusCode, rank: finished++ }));
    });
    req.on('error', (e) => resolve({ id, status: e.code, rank: -1 }));
    req.end(body);
  });
  return { done, req };
}

const simPort = await freePort();
const lxPort = await freePort();
const sim = spawn(SIM, ['--port', String(simPort), '--quiet', '--max-batch', '100000', '--ttft-ms', '600000',
  '--tokens-per-sec', '0'], { stdio: 'inherit' });
const dir = mkdtempSync(path.join(os.tmpdir(), 'lexora-qload-'));
const cfg = `server: {host: "127.0.0.1", port: ${lxPort}, max_connections: ${N + 2000}}
vllm: {url: "http://127.0.0.1:${simPort}", timeout: 900}
default_model: "qwen3-32b"
backends:
  vllm: {url: "http://127.0.0.1:${simPort}", models: ["qwen3-32b"], max_concurrency: 1}
queue: {max_size: ${N}, default_timeout: 900, aging_seconds: 900}
rate_limits: {default: {requests_per_minute: 0, tokens_per_minute: 0}}
logging: {level: "WARNING", format: "json"}
metrics: {enabled: false, port: 9090}
usage: {enabled: false}
`;
writeFileSync(path.join(dir, 'lexora_config.yaml'), cfg);
const lx = spawn(LEXORA, ['--config', path.join(dir, 'lexora_config.yaml')], { stdio: 'inherit' });
const exited = (p) => new Promise((r) => (p.exitCode !== null ? r(p.exitCode) : p.on('exit', (code) => r(code))));
const stopAll = () => { lx.kill('SIGTERM'); sim.kill('SIGTERM'); };
process.on('exit', stopAll);
try {
  await waitPort(simPort);
  await waitPort(lxPort);
  await sleep(300);
  const idle = rssKiB(lx.pid);
  const busy = request(lxPort, 'busy', 'normal');
  for (let i = 0; i < 200; i++) {
    const s = await (await fetch(`http://127.0.0.1:${simPort}/sim/stats`)).json();
    if (s.running === 1) break;
    await sleep(25);
  }
  const t0 = Date.now();
  const pending = [];
  for (let i = 0; i < N; i++) {
    const prio = i % 5 === 0 ? 'high' : i % 5 === 4 ? 'low' : 'normal';
    pending.push(request(lxPort, `q${i}-${prio}`, prio));
    if (i % 250 === 249) await sleep(5);
  }
  while (fds(lx.pid) < N) await sleep(50);
  let rss = rssKiB(lx.pid);
  for (let k = 0; k < 20; k++) { // settle: every request read and queued
    await sleep(250);
    const r = rssKiB(lx.pid);
    if (r === rss) break;
    rss = r;
  }
  const queuedIn = Date.now() - t0;
  const perReq = ((rss - idle) * 1024) / N;
  console.log(`queue-load: ${N} requests waiting (opened and queued in ${queuedIn} ms)`);
  console.log(`  lexora RSS idle ${(idle / 1024).toFixed(1)} MiB, with ${N} waiting ${(rss / 1024).toFixed(1)} MiB`);
  console.log(`  = ${perReq.toFixed(0)} B per waiting request (connection, request state, body, queue entry)`);

  // Make the backend instant, then release the slot (the busy client leaves: Lexora cancels its
  // upstream request) and time the drain through the one slot.
  await fetch(`http://127.0.0.1:${simPort}/sim/control`, { method: 'POST', body: JSON.stringify({ ttft_ms: 0 }) });
  const t1 = Date.now();
  busy.req.destroy();
  const results = await Promise.all(pending.map((p) => p.done));
  const drain = Date.now() - t1;
  const ok = results.filter((r) => r.status === 200).length;
  const lastHigh = Math.max(...results.filter((r) => r.id.endsWith('-high')).map((r) => r.rank));
  const firstLow = Math.min(...results.filter((r) => r.id.endsWith('-low')).map((r) => r.rank));
  console.log(`  drained ${ok}/${N} through one slot in ${drain} ms: ${(drain * 1000 / N).toFixed(0)} µs per request `
    + '(dispatch, forward, backend answer, relay; one at a time)');
  console.log(`  every high before every low: ${lastHigh < firstLow ? 'yes' : 'NO'} (last high #${lastHigh}, first low #${firstLow})`);
  if (ok !== N || !(lastHigh < firstLow)) process.exitCode = 1;
} catch (e) {
  console.error(e);
  process.exitCode = 1;
}
agent.destroy();
stopAll();
const [lxCode, simCode] = await Promise.all([exited(lx), exited(sim)]);
if (lxCode !== 0 || simCode !== 0) {
  console.error(`queue-load: lexora exited with ${lxCode}, lexora-sim with ${simCode}`);
  process.exitCode = 1;
}
process.exit();
