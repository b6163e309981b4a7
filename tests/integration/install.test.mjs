// Installing: scripts/install.sh --prefix into a temporary folder (twice: idempotent, the config kept),
// systemd-analyze verify on the units it wrote (vllm@.service through instances of it), the installed
// binary started the way the unit starts it, and scripts/setup_systemd.sh on an offline system image
// (--root), single-GPU and with --gpus (instances, their environment files, the backends: entries).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import {
  appendFileSync, chmodSync, existsSync, lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LEXORA_BIN, ROOT, freePort, launch, needs, runLexora, waitFor, waitForPort } from '../lib/harness.mjs';

function run(cmd, args, opts = {}) {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 60000, ...opts }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

const which = async (cmd) => (await run('sh', ['-c', `command -v ${cmd}`])).code === 0;
const hasAnalyze = await which('systemd-analyze');
const hasSystemctl = await which('systemctl');
const UNITS = ['spirrow-lexora.service', 'vllm.service'];

describe('install', () => {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'lexora-install-'));
  const prefix = path.join(tmp, 'lexora');
  const fakePython = path.join(tmp, 'python3'); // stands for vLLM's interpreter: verify checks it exists
  const install = () => run('bash', [path.join(ROOT, 'scripts/install.sh'), '--prefix', prefix,
    '--build-dir', path.dirname(LEXORA_BIN), '--no-build', '--vllm-python', fakePython]);

  before(() => {
    writeFileSync(fakePython, '#!/bin/sh\nexit 0\n');
    chmodSync(fakePython, 0o755);
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  test('install.sh --prefix: binaries, config and units; a second run keeps the config', async () => {
    const r = await install();
    assert.equal(r.code, 0, r.stderr + r.stdout);
    for (const f of ['bin/lexora', 'bin/lexora-sim']) assert.ok(lstatSync(path.join(prefix, f)).mode & 0o111, f);
    assert.equal(readFileSync(path.join(prefix, 'config.yaml'), 'utf8'),
      readFileSync(path.join(ROOT, 'config/lexora_config.yaml'), 'utf8'));
    assert.ok(existsSync(path.join(prefix, 'config.example.yaml')));

    const unit = readFileSync(path.join(prefix, 'share/systemd/spirrow-lexora.service'), 'utf8');
    for (const line of [`Environment="LEXORA_CONFIG=${prefix}/config.yaml"`, `ExecStart=${prefix}/bin/lexora`,
      `WorkingDirectory=${prefix}`, 'ExecReload=/bin/kill -HUP $MAINPID', 'User=spirrow', 'Restart=always',
      'RestartSec=5', 'Requires=vllm.service', 'After=network.target vllm.service']) {
      assert.ok(unit.split('\n').includes(line), `${line} in:\n${unit}`);
    }
    const vllm = readFileSync(path.join(prefix, 'share/systemd/vllm.service'), 'utf8');
    for (const line of ['User=spirrow', 'Restart=always', 'RestartSec=10', 'Environment="CUDA_VISIBLE_DEVICES=0"']) {
      assert.ok(vllm.split('\n').includes(line), `${line} in:\n${vllm}`);
    }
    assert.match(vllm, new RegExp(`^ExecStart=${fakePython} -m vllm\\.entrypoints\\.openai\\.api_server .*--host 127\\.0\\.0\\.1 --port 8000$`, 'm'));
    const tmpl = readFileSync(path.join(prefix, 'share/systemd/vllm@.service'), 'utf8');
    for (const line of ['User=spirrow', 'Restart=always', `EnvironmentFile=${prefix}/vllm/%i.env`,
      'Environment="CUDA_DEVICE_ORDER=PCI_BUS_ID"', 'Environment="SPIRROW_TENSOR_PARALLEL_SIZE=1"']) {
      assert.ok(tmpl.split('\n').includes(line), `${line} in:\n${tmpl}`);
    }
    assert.match(tmpl, new RegExp(`^ExecStart=${fakePython} -m vllm\\.entrypoints\\.openai\\.api_server .*`
      + '--tensor-parallel-size \\$\\{SPIRROW_TENSOR_PARALLEL_SIZE\\} --host 127\\.0\\.0\\.1 --port \\$\\{SPIRROW_PORT\\}$', 'm'));
    assert.ok(!(unit + vllm + tmpl).includes('/opt/spirrow/lexora'), 'the prefix replaces /opt/spirrow/lexora');

    appendFileSync(path.join(prefix, 'config.yaml'), '# edited here\n');
    const again = await install();
    assert.equal(again.code, 0, again.stderr + again.stdout);
    assert.match(again.stdout, /kept the existing/);
    assert.match(readFileSync(path.join(prefix, 'config.yaml'), 'utf8'), /# edited here\n$/);
  });

  test('systemd-analyze verify accepts both units, and instances of vllm@.service', { skip: needs(hasAnalyze, 'systemd-analyze', 'Debian package systemd; make deps installs it') }, async () => {
    const units = [...UNITS, 'vllm@0.service', 'vllm@0-1.service']; // instances load the template beside them
    const r = await run('systemd-analyze', ['verify', ...units.map((u) => path.join(prefix, 'share/systemd', u))]);
    assert.equal(r.code, 0, r.stderr);
    const about = r.stderr.split('\n').filter((l) => [...units, 'vllm@.service'].some((u) => l.includes(u)));
    assert.deepEqual(about, [], 'no warning about any unit');
  });

  test('the installed binary starts with the installed config, as the unit starts it', async () => {
    // the listening addresses moved to free loopback ports; everything else as installed
    const cfgFile = path.join(prefix, 'config.yaml');
    const port = await freePort();
    const metricsPort = await freePort();
    const text = readFileSync(cfgFile, 'utf8');
    writeFileSync(cfgFile, text.replace('host: "0.0.0.0"', 'host: "127.0.0.1"').replace('port: 8001', `port: ${port}`)
      .replace('port: 9090', `port: ${metricsPort}`));
    const proc = launch(path.join(prefix, 'bin/lexora'), [], 'installed lexora', { LEXORA_CONFIG: cfgFile }, { cwd: prefix });
    try {
      await waitForPort(port, proc, 'installed lexora');
      await waitFor(() => proc.output().includes(`(config ${cfgFile})`), 'the start line naming the installed config');
      const models = await (await fetch(`http://127.0.0.1:${port}/v1/models`)).json();
      assert.deepEqual(models.data.map((m) => m.id), ['qwen3-32b']);
      proc.child.kill('SIGHUP'); // systemctl reload
      await waitFor(() => proc.output().includes('config reloaded (SIGHUP)'), 'the reload');
    } finally {
      await proc.stop(); // systemctl stop: SIGTERM, exit 0
    }
  });

  test('setup_systemd.sh --root: installs and enables both units in a system image; again is harmless',
    { skip: needs(hasSystemctl, 'systemctl', 'Debian package systemd; make deps installs it') }, async () => {
      const root = path.join(tmp, 'image');
      for (let i = 0; i < 2; i++) {
        const r = await run('bash', [path.join(ROOT, 'scripts/setup_systemd.sh'), '--prefix', prefix, '--root', root]);
        assert.equal(r.code, 0, r.stderr + r.stdout);
      }
      for (const u of UNITS) {
        assert.equal(readFileSync(path.join(root, 'etc/systemd/system', u), 'utf8'),
          readFileSync(path.join(prefix, 'share/systemd', u), 'utf8'));
        assert.equal(readlinkSync(path.join(root, 'etc/systemd/system/multi-user.target.wants', u)),
          `/etc/systemd/system/${u}`);
      }
    });

  test('setup_systemd.sh --root --gpus: an instance per GPU set, their environment files, Lexora after them, the backends: entries',
    { skip: needs(hasSystemctl && hasAnalyze, 'systemctl and systemd-analyze', 'Debian package systemd; make deps installs it') }, async () => {
      const setup = (root, ...args) => run('bash', [path.join(ROOT, 'scripts/setup_systemd.sh'), '--prefix', prefix, '--root', root, ...args]);
      const etc = (root, f) => path.join(root, 'etc/systemd/system', f);
      const envFile = (root, name) => readFileSync(path.join(root, prefix, 'vllm', `${name}.env`), 'utf8');

      // two replicas of one model, one per GPU; then the same again (harmless)
      const two = path.join(tmp, 'image-two');
      for (let i = 0; i < 2; i++) {
        const r = await setup(two, '--gpus', '0,1', '--model-name', 'qwen3-8b', '--model', '/models/qwen3-8b');
        assert.equal(r.code, 0, r.stderr + r.stdout);
        assert.match(r.stdout, /installed and enabled vllm@0\.service vllm@1\.service spirrow-lexora\.service/);
      }
      assert.equal(readFileSync(etc(two, 'vllm@.service'), 'utf8'), readFileSync(path.join(prefix, 'share/systemd/vllm@.service'), 'utf8'));
      assert.ok(!existsSync(etc(two, 'vllm.service')), 'the single-GPU unit is not installed');
      for (const u of ['vllm@0.service', 'vllm@1.service', 'spirrow-lexora.service']) {
        const target = u.startsWith('vllm@') ? '/etc/systemd/system/vllm@.service' : `/etc/systemd/system/${u}`;
        assert.equal(readlinkSync(etc(two, `multi-user.target.wants/${u}`)), target);
      }
      const lexUnit = readFileSync(etc(two, 'spirrow-lexora.service'), 'utf8').split('\n');
      assert.ok(lexUnit.includes('After=network.target vllm@0.service vllm@1.service'), lexUnit.join('\n'));
      assert.ok(lexUnit.includes('Wants=vllm@0.service vllm@1.service'));
      assert.ok(!lexUnit.some((l) => l.startsWith('Requires=')), 'one replica down does not stop Lexora');
      const lines = (text) => text.split('\n').filter((l) => l && !l.startsWith('#'));
      assert.deepEqual(lines(envFile(two, '0')), ['CUDA_VISIBLE_DEVICES=0', 'SPIRROW_PORT=8000',
        'SPIRROW_TENSOR_PARALLEL_SIZE=1', 'SPIRROW_MODEL=/models/qwen3-8b', 'SPIRROW_MODEL_NAME=qwen3-8b']);
      assert.deepEqual(lines(envFile(two, '1')), ['CUDA_VISIBLE_DEVICES=1', 'SPIRROW_PORT=8002', // 8001 is Lexora's
        'SPIRROW_TENSOR_PARALLEL_SIZE=1', 'SPIRROW_MODEL=/models/qwen3-8b', 'SPIRROW_MODEL_NAME=qwen3-8b']);
      const backendsFile = path.join(two, prefix, 'vllm/backends.yaml');
      const check = await runLexora(['--check-config', '--config', backendsFile]);
      assert.equal(check.code, 0, check.stderr + check.stdout);
      const yaml = readFileSync(backendsFile, 'utf8');
      assert.match(yaml, /^ {2}vllm-0:\n {4}type: vllm\n {4}url: "http:\/\/127\.0\.0\.1:8000"\n {4}models: \["qwen3-8b"\]\n {4}gpus: \[0\]$/m);
      assert.match(yaml, /^ {2}vllm-1:\n {4}type: vllm\n {4}url: "http:\/\/127\.0\.0\.1:8002"\n {4}models: \["qwen3-8b"\]\n {4}gpus: \[1\]$/m);
      const verify = await run('systemd-analyze', ['verify', etc(two, 'spirrow-lexora.service'), etc(two, 'vllm@0.service'), etc(two, 'vllm@1.service')]);
      assert.equal(verify.code, 0, verify.stderr);

      // one tensor-parallel instance over GPUs 0 and 1, after a single-GPU setup in the same image
      const tp = path.join(tmp, 'image-tp');
      assert.equal((await setup(tp)).code, 0);
      const r = await setup(tp, '--gpus', '0+1');
      assert.equal(r.code, 0, r.stderr + r.stdout);
      assert.match(r.stdout, /disabled vllm\.service/);
      assert.ok(!existsSync(etc(tp, 'multi-user.target.wants/vllm.service')), 'vllm.service no longer enabled');
      assert.equal(readlinkSync(etc(tp, 'multi-user.target.wants/vllm@0-1.service')), '/etc/systemd/system/vllm@.service');
      assert.deepEqual(lines(envFile(tp, '0-1')).slice(0, 3), ['CUDA_VISIBLE_DEVICES=0,1', 'SPIRROW_PORT=8000',
        'SPIRROW_TENSOR_PARALLEL_SIZE=2']);
      assert.match(readFileSync(path.join(tp, prefix, 'vllm/backends.yaml'), 'utf8'), /^ {2}vllm-0-1:\n(.*\n){3} {4}gpus: \[0, 1\]$/m);

      // what --gpus refuses
      for (const [arg, why] of [['0,0', /GPU 0 is in two sets/], ['0+1,1', /GPU 1 is in two sets/],
        ['a', /not a list of GPU sets/], ['0,,1', /not a list of GPU sets/], ['', /not a list of GPU sets|needs GPU sets/]]) {
        const bad = await setup(path.join(tmp, 'image-bad'), '--gpus', arg);
        assert.equal(bad.code, 1, arg);
        assert.match(bad.stderr, why, arg);
      }
    });

  test('setup_systemd.sh where it cannot work says why', {
    skip: existsSync('/run/systemd/system') && 'systemd runs here: the script would change this machine',
  }, async () => {
    const r = await run('bash', [path.join(ROOT, 'scripts/setup_systemd.sh'), '--prefix', prefix]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, process.getuid() === 0 ? /systemd is not running here/ : /needs root/);
    const missing = await run('bash', [path.join(ROOT, 'scripts/setup_systemd.sh'), '--prefix', path.join(tmp, 'none')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /run scripts\/install\.sh --prefix .* first/);
  });
});
