// https:// backends: lexora-sim --api anthropic behind nginx terminating TLS on loopback, with a CA and a
// server certificate this test makes with openssl. Three backends of the same server: one verified with
// backends.NAME.ca_file (answers, and its health check passes with the key), one without (refused: the
// certificate error in the client's answer, /health and the log), one with tls_verify: false (accepted).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  configFor, freePort, health, needs, post, sleep, startLexora, startSim, waitFor, waitForPort,
} from '../lib/harness.mjs';
import { hasCommand } from '../lib/metrics.mjs';

const KEY = `sk-ant-tls-test-${process.pid}`;
const haveTools = hasCommand('openssl', ['version']) && hasCommand('nginx', ['-v']);
const msgs = [{ role: 'user', content: 'Hello there' }];

function run(cmd, args, cwd) {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8' });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
}

/** A CA, and a certificate for 127.0.0.1 it signed (EC keys: quick to make). */
function makeCerts(dir) {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  run('openssl', ['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=Lexora test CA'], dir);
  run('openssl', ['req', ...ec, '-keyout', 'srv.key', '-out', 'srv.csr', '-subj', '/CN=127.0.0.1'], dir);
  writeFileSync(path.join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\n');
  run('openssl', ['x509', '-req', '-in', 'srv.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'srv.pem',
    '-days', '2', '-extfile', 'ext.cnf'], dir);
}

async function startNginx(dir, port, upstreamPort) {
  const conf = path.join(dir, 'nginx.conf');
  writeFileSync(conf, `daemon off;
master_process off;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream sim { server 127.0.0.1:${upstreamPort}; keepalive 16; }
  server {
    listen 127.0.0.1:${port} ssl;
    ssl_certificate ${dir}/srv.pem;
    ssl_certificate_key ${dir}/srv.key;
    location / {
      proxy_pass http://sim;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
    }
  }
}
`);
  const child = spawn('nginx', ['-c', conf, '-p', dir, '-e', `${dir}/nginx-error.log`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { out += d; });
  const proc = { get exitCode() { return child.exitCode; }, output: () => out };
  await waitForPort(port, proc, 'nginx');
  return {
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await Promise.race([new Promise((r) => child.once('exit', r)), sleep(3000)]);
    },
  };
}

describe('https:// backends', { skip: needs(haveTools, 'openssl and nginx') }, () => {
  let dir;
  let sim;
  let nginx;
  let lx;
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'lexora-tls-'));
    makeCerts(dir);
    sim = await startSim(['--api', 'anthropic', '--model', 'c-verified', '--model', 'c-unverified', '--model', 'c-insecure',
      '--api-key', KEY, '--ttft-ms', '2', '--tokens-per-sec', '0']);
    const port = await freePort();
    nginx = await startNginx(dir, port, sim.port);
    const url = `https://127.0.0.1:${port}`;
    const claude = (model, extra) => ({ type: 'anthropic', url, models: [model], api_key: KEY, ...extra });
    lx = await startLexora(configFor(url, {
      models: ['c-verified'],
      extra: {
        backends: {
          verified: claude('c-verified', { ca_file: `${dir}/ca.pem` }),
          unverified: claude('c-unverified', {}),
          insecure: claude('c-insecure', { tls_verify: false }),
        },
        health_check: { interval_seconds: 0.3, failure_threshold: 100, timeout_seconds: 2 },
        retry: { max_attempts: 1 },
        rate_limits: { default: { requests_per_minute: 0, tokens_per_minute: 0 } },
      },
    }));
  });
  after(async () => {
    await lx?.stop();
    await nginx?.stop();
    await sim?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const backend = async (name) => (await health(lx)).json.backends.find((b) => b.name === name);

  test('verified with ca_file: the answer passes, and the health check (with its key) too', async () => {
    const r = await post(`${lx.url}/v1/chat/completions`, { model: 'c-verified', messages: msgs, max_tokens: 3 });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.usage.completion_tokens, 3);
    const s = await post(`${lx.url}/v1/chat/completions`, { model: 'c-verified', messages: msgs, max_tokens: 3, stream: true });
    assert.equal(s.status, 200);
    assert.match(s.text, /data: \[DONE\]/);
    await waitFor(async () => (await backend('verified'))?.status === 'up', 'the verified backend up', { ms: 5000 });
  });

  test('without the CA: refused, with the certificate error in the answer, /health and the log', async () => {
    const r = await post(`${lx.url}/v1/chat/completions`, { model: 'c-unverified', messages: msgs, max_tokens: 3 });
    assert.equal(r.status, 502, r.text);
    assert.equal(r.json.error.code, 'upstream_unavailable');
    assert.match(r.json.error.message, /backend unverified failed: connect \(.*certificate/i);
    const b = await waitFor(async () => {
      const h = await backend('unverified');
      return /certificate/i.test(h?.last_error || '') ? h : null;
    }, 'the failed check in /health', { ms: 5000 });
    assert.notEqual(b.status, 'up');
    assert.match(lx.logs(), /backend unverified failed: connect \([^)]*certificate/i);
  });

  test('tls_verify: false: accepted without the CA', async () => {
    const r = await post(`${lx.url}/v1/chat/completions`, { model: 'c-insecure', messages: msgs, max_tokens: 2 });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.usage.completion_tokens, 2);
    await waitFor(async () => (await backend('insecure'))?.status === 'up', 'the insecure backend up', { ms: 5000 });
  });
});
