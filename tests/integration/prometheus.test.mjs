// A real Prometheus server, started on loopback with the shipped scrape config (deploy/prometheus/
// prometheus.yml, its targets pointed at this test's Lexora metrics port and lexora-sim, scraping every
// second), scrapes Lexora; its HTTP API must return lexora_requests_total with the expected value, and
// every query of the Grafana dashboard must be valid PromQL there. Lexora reads the fake NVML the build
// makes (tests/fake_nvml: four GPUs, GPU 2 failing): its lexora_gpu_* series pass `promtool check metrics`
// and reach Prometheus with their values.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  LEXORA_BIN, ROOT, configFor, freePort, needs, post, sleep, startLexora, startSim,
} from '../lib/harness.mjs';
import { hasCommand, promtoolCheck } from '../lib/metrics.mjs';

const MODEL = 'qwen3-32b';
const available = hasCommand('prometheus');
const FAKE_NVML = path.join(path.dirname(LEXORA_BIN), 'libfake_nvml.so');
const GIB = 1024 ** 3;
const METRICS_TOKEN = 'prom-scrape-token-0123';

async function query(base, expr) {
  const res = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(expr)}`);
  return res.json();
}

/** The value of a one-sample instant query, or undefined. */
async function scalar(base, expr) {
  const j = await query(base, expr);
  const r = j.data?.result;
  return r && r.length === 1 ? Number(r[0].value[1]) : undefined;
}

describe('a real Prometheus scrapes Lexora', { skip: needs(available, 'prometheus', 'Debian package prometheus; make deps installs it') }, () => {
  let sim;
  let lx;
  let prom;
  let promOut = '';
  let promBase;
  let dir;
  before(async () => {
    sim = await startSim(['--model', MODEL, '--ttft-ms', '0', '--tokens-per-sec', '0']);
    const metricsPort = await freePort();
    // /metrics needs a bearer token (metrics.token_file); Prometheus sends it from the same file, as the
    // shipped config's commented authorization block says
    dir = mkdtempSync(path.join(os.tmpdir(), 'lexora-prom-'));
    const tokenFile = path.join(dir, 'lexora_metrics_token');
    writeFileSync(tokenFile, `${METRICS_TOKEN}\n`);
    lx = await startLexora(configFor(sim.url, {
      extra: {
        metrics: { enabled: true, port: metricsPort, token_file: tokenFile },
        rate_limits: { default: { requests_per_minute: 0, tokens_per_minute: 0 } },
      },
    }), { env: { LEXORA_NVML_LIBRARY: FAKE_NVML } });
    const shipped = readFileSync(path.join(ROOT, 'deploy/prometheus/prometheus.yml'), 'utf8');
    assert.match(shipped, /"localhost:9090"/);
    assert.match(shipped, /"localhost:8000"/);
    const authBlock = '    # authorization:\n    #   type: Bearer\n    #   credentials_file: /etc/prometheus/lexora_metrics_token\n';
    assert.ok(shipped.includes(authBlock), 'the shipped config shows the bearer token block');
    const conf = shipped
      .replace(authBlock, `    authorization:\n      type: Bearer\n      credentials_file: ${tokenFile}\n`)
      .replace(/scrape_interval: \S+/, 'scrape_interval: 1s')
      .replace(/evaluation_interval: \S+/, 'evaluation_interval: 1s')
      .replace('"localhost:9090"', `"127.0.0.1:${metricsPort}"`)
      .replace('"localhost:8000"', `"127.0.0.1:${sim.port}"`);
    writeFileSync(path.join(dir, 'prometheus.yml'), conf);
    const promPort = await freePort();
    promBase = `http://127.0.0.1:${promPort}`;
    prom = spawn('prometheus', [
      `--config.file=${path.join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${path.join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${promPort}`,
      '--log.level=warn',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    prom.stdout.on('data', (d) => { promOut += d; });
    prom.stderr.on('data', (d) => { promOut += d; });
    const deadline = Date.now() + 15000;
    for (;;) {
      if (prom.exitCode !== null) throw new Error(`prometheus exited with ${prom.exitCode}:\n${promOut}`);
      try {
        if ((await fetch(`${promBase}/-/ready`)).status === 200) break;
      } catch { /* not yet */ }
      if (Date.now() > deadline) throw new Error(`prometheus not ready within 15 s:\n${promOut}`);
      await sleep(100);
    }
  });
  after(async () => {
    if (prom && prom.exitCode === null) {
      const exited = new Promise((r) => prom.on('exit', r));
      prom.kill('SIGTERM');
      const t = setTimeout(() => prom.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    }
    await lx?.stop();
    await sim?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('lexora_requests_total reaches Prometheus with the expected value', async () => {
    for (let i = 0; i < 3; i++) {
      const r = await post(`${lx.url}/v1/chat/completions`, {
        model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, x_user_id: 'erin',
      });
      assert.equal(r.status, 200, r.text);
    }
    const r = await post(`${lx.url}/v1/chat/completions`, { model: 'nope', messages: [] });
    assert.equal(r.status, 404);
    const expr = `lexora_requests_total{job="lexora",model="${MODEL}",backend="vllm",status="200"}`;
    let v;
    let notFound;
    const deadline = Date.now() + 15000;
    while (Date.now() < deadline) {
      v = await scalar(promBase, expr);
      notFound = await scalar(promBase, 'sum(lexora_requests_total{job="lexora",status="404"})');
      if (v === 3 && notFound === 1 && (await scalar(promBase, 'up{job="vllm"}')) !== undefined) break;
      await sleep(250);
    }
    assert.equal(v, 3, `Prometheus has ${v} for ${expr}\n${promOut}`);
    assert.equal(notFound, 1);
    assert.equal(await scalar(promBase, 'up{job="lexora"}'), 1);
    assert.equal(await scalar(promBase, 'up{job="vllm"}'), 1, 'the vllm job of the shipped config scrapes the backend');
    assert.equal(await scalar(promBase, 'sum(lexora_completion_tokens_total{job="lexora"})'), 6);
  });

  test('the GPU series pass promtool check metrics and reach Prometheus', {
    skip: needs(hasCommand('promtool'), 'promtool', 'Debian package prometheus; make deps installs it'),
  }, async () => {
    assert.ok(existsSync(FAKE_NVML), `${FAKE_NVML} is built with the binaries`);
    assert.equal((await fetch(`${lx.url}/metrics`)).status, 401, 'no token, no metrics');
    const text = await (await fetch(`${lx.url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).text();
    assert.match(text, /^lexora_backend_drained\{backend="vllm"\} 0$/m);
    for (const f of ['info', 'up', 'memory_used_bytes', 'memory_total_bytes', 'utilization_ratio', 'temperature_celsius']) {
      assert.match(text, new RegExp(`^# TYPE lexora_gpu_${f} gauge$`, 'm'), f);
    }
    const r = promtoolCheck(text);
    assert.ok(r.ok, `promtool:\n${r.out}`);
    const want = [
      ['lexora_gpu_memory_used_bytes{job="lexora",gpu="0"}', 24 * GIB],
      ['lexora_gpu_memory_total_bytes{job="lexora",gpu="1"}', 80 * GIB],
      ['lexora_gpu_utilization_ratio{job="lexora",gpu="1"}', 0.81],
      ['lexora_gpu_temperature_celsius{job="lexora",gpu="0"}', 61],
      ['lexora_gpu_up{job="lexora",gpu="2"}', 0],
      ['count(lexora_gpu_memory_used_bytes{job="lexora"})', 3], // GPU 2's memory cannot be read
      ['sum(lexora_gpu_memory_used_bytes{job="lexora"})', 95 * GIB],
    ];
    const got = new Map();
    const deadline = Date.now() + 15000;
    while (Date.now() < deadline) {
      for (const [expr] of want) got.set(expr, await scalar(promBase, expr));
      if (want.every(([expr, v]) => got.get(expr) === v)) break;
      await sleep(250);
    }
    for (const [expr, v] of want) assert.equal(got.get(expr), v, `${expr}\n${promOut}`);
  });

  test('every query of the Grafana dashboard is valid PromQL', async () => {
    const dash = JSON.parse(readFileSync(path.join(ROOT, 'deploy/grafana/lexora.json'), 'utf8'));
    const exprs = [];
    const walk = (p) => {
      for (const t of p.targets || []) exprs.push(t.expr);
      for (const c of p.panels || []) walk(c);
    };
    dash.panels.forEach(walk);
    assert.ok(exprs.length > 20);
    for (const e of exprs) {
      const q = e.replaceAll('$__rate_interval', '1m').replaceAll('$job', '.*');
      const j = await query(promBase, q);
      assert.equal(j.status, 'success', `${e}: ${JSON.stringify(j)}`);
    }
  });
});
