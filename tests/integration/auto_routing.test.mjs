// Automatic routing end to end: model "auto" against four simulators, one per model. Which model got each
// request is read from the simulators' arrival logs (/sim/requests) and X-Lexora-Backend; the answers'
// X-Lexora-Route / -Model / -Route-Reason, the access log, /stats per_class and /metrics follow; x_route
// forces a class and is never forwarded; an explicit model is never overridden; below min_confidence the
// default serves; a reload with a new model file changes the decisions; `lexora route` on the command line.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import {
  ROOT, accessRecord, chat, post, runLexora, sleep, startSim, stats, withLexora,
} from '../lib/harness.mjs';

const FAST = ['--ttft-ms', '2', '--tokens-per-sec', '0'];
const QUIET_HC = { interval_seconds: 60, failure_threshold: 1, cooldown_seconds: 30, timeout_seconds: 1 };
const MODELS = { coder: 'qwen-coder', big: 'qwen3-32b', swallow: 'llama-3.1-swallow-8b', small: 'qwen2.5-7b' };

const PROMPTS = {
  code: 'Write a Python function that merges two sorted lists into one sorted list, with unit tests.',
  reasoning: 'We are deciding between a monolith and microservices for a team of six engineers. Walk me through the trade-offs and what you would pick.',
  japanese: '取引先に新製品の発売を知らせる丁寧なお知らせメールを書いてください。発売日は来月1日です。',
  simple: 'ありがとう',
};
const ask = (content, extra = {}) => ({ model: 'auto', messages: [{ role: 'user', content }], max_tokens: 2, ...extra });

function autoConfig(sims, auto = {}) {
  return {
    server: { host: '127.0.0.1', port: 0 },
    backends: {
      coder: { type: 'vllm', url: sims.coder.url, models: [MODELS.coder] },
      big: { type: 'vllm', url: sims.big.url, models: [MODELS.big] },
      swallow: { type: 'vllm', url: sims.swallow.url, models: [MODELS.swallow] },
      small: { type: 'vllm', url: sims.small.url, models: [MODELS.small] },
    },
    routing: {
      aliases: { code: MODELS.coder, japanese: MODELS.swallow, reasoning: MODELS.big },
      auto: {
        name: 'auto',
        routes: { code: 'code', japanese: 'japanese', reasoning: 'reasoning', simple: MODELS.small },
        default: MODELS.big,
        min_confidence: 0.6,
        rules: [{ class: 'legal', route: MODELS.big, keywords: ['NDA', '契約書'] }],
        ...auto,
      },
    },
    logging: { level: 'INFO', format: 'json' },
    metrics: { enabled: false, port: 9090 },
    health_check: QUIET_HC,
    usage: { enabled: false },
    rate_limits: { default: { requests_per_minute: 0, tokens_per_minute: 0 } },
  };
}

async function withSims(fn) {
  const sims = {};
  try {
    for (const [k, m] of Object.entries(MODELS)) sims[k] = await startSim([...FAST, '--model', m]);
    await fn(sims);
  } finally {
    for (const s of Object.values(sims)) await s.stop();
  }
}

const inference = async (sim) => (await sim.requests()).filter((r) => r.path === '/v1/chat/completions');

describe('automatic routing', () => {
  test('each class goes to its route; the answer and the access log say which class, model and why', async () => {
    await withSims(async (sims) => {
      await withLexora(autoConfig(sims), async (lx) => {
        const want = { code: 'coder', reasoning: 'big', japanese: 'swallow', simple: 'small' };
        for (const [cls, backend] of Object.entries(want)) {
          const id = `auto-${cls}`;
          const r = await chat(lx, ask(PROMPTS[cls]), { 'x-request-id': id });
          assert.equal(r.status, 200, r.text);
          assert.equal(r.headers.get('x-lexora-route'), cls, r.headers.get('x-lexora-route-reason'));
          assert.equal(r.headers.get('x-lexora-backend'), backend);
          assert.equal(r.headers.get('x-lexora-model'), MODELS[backend]);
          const reason = r.headers.get('x-lexora-route-reason');
          assert.match(reason, /^confidence [01]\.\d\d \(runner-up \w+ 0\.\d\d\)/);
          assert.match(reason, /n-grams "/);
          assert.ok(/^[\x20-\x7e]*$/.test(reason), `the header is ASCII: ${reason}`);
          const seen = (await inference(sims[backend])).filter((q) => q.request_id === id);
          assert.equal(seen.length, 1, `${backend} got ${id}`);
          assert.equal(JSON.parse(seen[0].body).model, MODELS[backend]);
          const rec = await accessRecord(lx, id);
          assert.equal(rec.model, 'auto');
          assert.equal(rec.model_used, MODELS[backend]);
          assert.equal(rec.route, cls);
          assert.match(rec.route_reason, /confidence/);
        }
        // the Japanese reason reads as Japanese in the log, and as \u escapes in the header
        const r = await chat(lx, ask(PROMPTS.japanese), { 'x-request-id': 'auto-ja-2' });
        const rec = await accessRecord(lx, 'auto-ja-2');
        assert.match(rec.route_reason, /[\u3040-\u30ff\u4e00-\u9fff]/);
        assert.match(r.headers.get('x-lexora-route-reason'), /\\u[0-9a-f]{4}/);
      });
    });
  });

  test('rules first, x_route forces a class and is not forwarded, an explicit model is never overridden', async () => {
    await withSims(async (sims) => {
      await withLexora(autoConfig(sims), async (lx) => {
        let r = await chat(lx, ask('Please check this NDA draft for anything unusual, then write a python script.'));
        assert.equal(r.status, 200, r.text);
        assert.equal(r.headers.get('x-lexora-route'), 'legal');
        assert.equal(r.headers.get('x-lexora-backend'), 'big');
        assert.equal(r.headers.get('x-lexora-route-reason'), 'rule legal: keyword "nda"');

        r = await chat(lx, ask(PROMPTS.code, { x_route: 'simple' }), { 'x-request-id': 'forced' });
        assert.equal(r.status, 200, r.text);
        assert.equal(r.headers.get('x-lexora-route'), 'simple');
        assert.equal(r.headers.get('x-lexora-route-reason'), 'x_route');
        assert.equal(r.headers.get('x-lexora-backend'), 'small');
        const [seen] = (await inference(sims.small)).filter((q) => q.request_id === 'forced');
        assert.equal(JSON.parse(seen.body).x_route, undefined);

        r = await chat(lx, ask(PROMPTS.code, { x_route: 'poetry' }));
        assert.equal(r.status, 400);
        assert.equal(r.json.error.param, 'x_route');
        assert.match(r.json.error.message, /code, reasoning, japanese, simple, legal, default/);
        r = await chat(lx, ask(PROMPTS.code, { x_route: 7 }));
        assert.equal(r.status, 400);

        // an explicit model: no analysis, no route headers; x_route is only stripped
        r = await chat(lx, { ...ask(PROMPTS.code, { x_route: 'code' }), model: MODELS.small });
        assert.equal(r.status, 200, r.text);
        assert.equal(r.headers.get('x-lexora-backend'), 'small');
        assert.equal(r.headers.get('x-lexora-route'), null);
        assert.equal(r.headers.get('x-lexora-route-reason'), null);
        // an alias too
        r = await chat(lx, { ...ask(PROMPTS.simple), model: 'code' });
        assert.equal(r.headers.get('x-lexora-backend'), 'coder');
        assert.equal(r.headers.get('x-lexora-route'), null);
      });
    });
  });

  test('below min_confidence the default serves; streams carry the headers; /stats and /metrics count per class',
    async () => {
      await withSims(async (sims) => {
        await withLexora(autoConfig(sims, { min_confidence: 1 }), async (lx) => {
          const r = await chat(lx, ask(PROMPTS.code, { stream: true }));
          assert.equal(r.status, 200, r.text);
          assert.equal(r.headers.get('x-lexora-route'), 'default');
          assert.equal(r.headers.get('x-lexora-backend'), 'big');
          assert.match(r.headers.get('x-lexora-route-reason'), /^best guess code below min_confidence 1\.00; /);
          await chat(lx, ask('Please review the NDA.'));
          await chat(lx, ask('Please review the NDA again.'));
          const s = await stats(lx);
          assert.equal(s.per_class.default.requests, 1);
          assert.equal(s.per_class.legal.requests, 2);
          assert.ok(s.per_class.legal.avg_latency_ms >= 0);
          assert.deepEqual(s.per_alias, {});
          const m = await (await fetch(`${lx.url}/metrics`)).text();
          assert.match(m, /^lexora_route_class_requests_total\{class="legal"\} 2$/m);
          assert.match(m, /^lexora_route_class_requests_total\{class="default"\} 1$/m);
          assert.match(m, /^lexora_route_class_duration_seconds_count\{class="legal"\} 2$/m);
        });
      });
    });

  test('a reload with a new model file changes the decisions', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'lexora-auto-'));
    // the shipped labels with code and simple swapped: a model that sends code to the small model
    const swapped = readFileSync(path.join(ROOT, 'data/routing/train.jsonl'), 'utf8').split('\n').filter(Boolean)
      .map((l) => { const o = JSON.parse(l); o.label = { code: 'simple', simple: 'code' }[o.label] || o.label; return JSON.stringify(o); });
    writeFileSync(path.join(dir, 'swapped.jsonl'), swapped.join('\n') + '\n');
    const trained = await runLexora(['route', '--train', path.join(dir, 'swapped.jsonl'), '--out', path.join(dir, 'swapped.lxrm')]);
    assert.equal(trained.code, 0, trained.stderr);
    await withSims(async (sims) => {
      const config = autoConfig(sims);
      await withLexora(config, async (lx) => {
        let r = await chat(lx, ask(PROMPTS.code));
        assert.equal(r.headers.get('x-lexora-route'), 'code');
        const { toYaml } = await import('../lib/harness.mjs');
        const next = { ...config, server: { host: '127.0.0.1', port: lx.port } };
        next.routing = { ...config.routing, auto: { ...config.routing.auto, model_file: path.join(dir, 'swapped.lxrm') } };
        writeFileSync(lx.file, toYaml(next) + '\n');
        const rl = await post(`${lx.url}/admin/reload`, '');
        assert.equal(rl.status, 200, rl.text);
        assert.ok(rl.json.changed.includes('routing.auto.model_file'), rl.text);
        assert.ok(rl.json.changed.includes('routing.auto.model'), rl.text);
        r = await chat(lx, ask(PROMPTS.code));
        assert.equal(r.headers.get('x-lexora-route'), 'simple');
        assert.equal(r.headers.get('x-lexora-backend'), 'small');
        // the same file name with a new content is noticed too
        writeFileSync(path.join(dir, 'swapped.lxrm'), readFileSync(path.join(ROOT, 'data/routing/model.lxrm')));
        const again = await post(`${lx.url}/admin/reload`, '');
        assert.deepEqual(again.json.changed, ['routing.auto.model']);
        r = await chat(lx, ask(PROMPTS.code));
        assert.equal(r.headers.get('x-lexora-route'), 'code');
        // a damaged file is refused and the running model stays
        writeFileSync(path.join(dir, 'swapped.lxrm'), 'not a model');
        const bad = await post(`${lx.url}/admin/reload`, '');
        assert.notEqual(bad.status, 200);
        assert.match(bad.text, /routing\.auto\.model_file/);
        r = await chat(lx, ask(PROMPTS.code));
        assert.equal(r.headers.get('x-lexora-route'), 'code');
      });
    });
  });
});

describe('lexora route', () => {
  const run = (args, input) => new Promise((resolve) => {
    import('node:child_process').then(({ spawn }) => {
      const child = spawn(process.env.LEXORA_BIN || path.join(ROOT, 'build-asan/lexora'), args);
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => { stdout += d; });
      child.stderr.on('data', (d) => { stderr += d; });
      child.on('exit', (code) => resolve({ code, stdout, stderr }));
      child.stdin.end(input);
    });
  });

  test('one line out per JSONL line in: route, model, confidence, reason', async () => {
    const input = [
      JSON.stringify({ prompt: PROMPTS.japanese }),
      JSON.stringify({ model: 'auto', messages: [{ role: 'user', content: PROMPTS.code }] }),
      JSON.stringify({ prompt: 'hi', x_route: 'reasoning' }),
      'not json',
    ].join('\n') + '\n';
    const r = await run(['route', '--explain'], input);
    assert.equal(r.code, 1, 'a line that cannot be read makes the exit code 1');
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(lines.length, 4);
    assert.equal(lines[0].route, 'japanese');
    assert.equal(lines[0].model, null);
    assert.ok(lines[0].confidence > 0.5 && lines[0].confidence <= 1);
    assert.equal(lines[0].how, 'model');
    assert.equal(lines[1].route, 'code');
    assert.deepEqual(lines[2], { route: 'reasoning', model: null, confidence: 1, reason: 'x_route', how: 'x_route' });
    assert.ok(lines[3].error);
  });

  test('with a config: its routes and rules', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'lexora-route-'));
    const file = path.join(dir, 'c.yaml');
    writeFileSync(file, [
      'backends:', '  a:', '    type: vllm', '    url: "http://127.0.0.1:1"', '    models: ["big", "coder", "small"]',
      'routing:', '  auto:', '    routes: {code: coder, simple: small}', '    default: big',
      '    rules:', '      - {class: legal, keywords: ["契約書"]}', '',
    ].join('\n'));
    const input = [PROMPTS.code, 'この契約書を確認して', PROMPTS.reasoning].map((p) => JSON.stringify({ prompt: p })).join('\n');
    const r = await run(['route', '--config', file], input);
    assert.equal(r.code, 0, r.stderr);
    const [code, legal, reasoning] = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual([code.route, code.model], ['code', 'coder']);
    assert.deepEqual([legal.route, legal.model, legal.reason], ['legal', 'big', 'rule legal: keyword "契約書"']);
    assert.equal(reasoning.model, 'big', 'a class without a route goes to the default');
  });

  test('--eval prints accuracy, precision and recall, the confusion matrix, and fails under a bar', async () => {
    const held = path.join(ROOT, 'data/routing/heldout.jsonl');
    const ok = await run(['route', '--eval', held, '--min-accuracy', '0.9', '--min-recall', '0.8'], '');
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /^examples \d+, accuracy 0\.9\d+/);
    assert.match(ok.stdout, /precision +recall +support/);
    assert.match(ok.stdout, /confusion matrix \(rows: label, columns: predicted\)/);
    const bar = await run(['route', '--eval', held, '--min-accuracy', '1'], '');
    if (!/accuracy 1\.0000/.test(bar.stdout)) {
      assert.equal(bar.code, 1);
      assert.match(bar.stdout, /FAIL: accuracy/);
    }
    const bad = await run(['route', '--eval', held, '--min-recall', 'x'], '');
    assert.equal(bad.code, 2);
  });
});
