// The command line: --version, --help, --check-config with good and bad files, exit codes, $LEXORA_CONFIG.
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';
import { ROOT, freePort, runLexora, writeConfig } from '../lib/harness.mjs';

describe('command line', () => {
  test('--version and --help exit 0', async () => {
    const v = await runLexora(['--version']);
    assert.equal(v.code, 0);
    assert.match(v.stdout, /^lexora \d+\.\d+\.\d+/);
    const h = await runLexora(['--help']);
    assert.equal(h.code, 0);
    assert.match(h.stdout, /--check-config/);
  });

  test('an unknown argument exits 2 with a message', async () => {
    const r = await runLexora(['--frobnicate']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown argument/);
  });

  test('the shipped configs pass --check-config', async () => {
    for (const f of ['config/lexora_config.yaml', 'config/lexora_config.example.yaml']) {
      const r = await runLexora(['--check-config', '--config', path.join(ROOT, f)]);
      assert.equal(r.code, 0, r.stderr);
    }
  });

  test('a bad config: every problem with file, line and key; exit 2', async () => {
    const file = writeConfig('server:\n  port: "eighty"\n  prot: 1\nqueue:\n  max_size: -5\ndefault_model: "m"\nvllm:\n  url: "http://127.0.0.1:8000"\n');
    const r = await runLexora(['--check-config', '--config', file]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, new RegExp(`${file}:2: server\\.port`));
    assert.match(r.stderr, new RegExp(`${file}:3: server\\.prot: unknown key`));
    assert.match(r.stderr, new RegExp(`${file}:5: queue\\.max_size`));
  });

  test('a missing file: exit 2 naming it', async () => {
    const r = await runLexora(['--check-config', '--config', '/nonexistent/lexora.yaml']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /\/nonexistent\/lexora\.yaml/);
  });

  test('$LEXORA_CONFIG is used when --config is absent', async () => {
    const file = writeConfig('server:\n  prot: 1\n');
    const r = await runLexora(['--check-config'], { LEXORA_CONFIG: file });
    assert.equal(r.code, 2);
    assert.match(r.stderr, new RegExp(file));
  });

  test('a port already in use: exit 1 with a message', async () => {
    const net = await import('node:net');
    const port = await freePort();
    const srv = net.createServer().listen(port, '127.0.0.1');
    await new Promise((r) => srv.on('listening', r));
    const file = writeConfig(`server:\n  host: "127.0.0.1"\n  port: ${port}\ndefault_model: "m"\nvllm:\n  url: "http://127.0.0.1:1"\n`);
    const r = await runLexora(['--config', file]);
    srv.close();
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot listen on 127\.0\.0\.1:\d+/);
  });
});
