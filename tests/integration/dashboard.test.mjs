// GET /dashboard in a real browser: Debian's chromium, headless, driven by puppeteer-core, against real
// lexora and lexora-sim on loopback. The page loads with no console error; its figures move while we
// send requests; a request we sent shows in the recent table (by its id); the queue panel shows
// requests waiting behind a slow backend with one slot; a backend we stop turns down; reload from the
// page is refused without the admin token and works with it; drain answers gracefully whether or not
// this Lexora has the endpoint; Japanese labels follow the browser's language; a phone-sized screen
// does not scroll sideways. Screenshots are saved as artifacts (the directory is printed); with
// LEXORA_DASHBOARD_DOCS=1 the laptop-size ones are also written to docs/dashboard-{en,ja}.png.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LEXORA_BIN, MODEL, ROOT, chatBody, configFor, needs, post, sleep, startLexora, startSim, waitFor } from '../lib/harness.mjs';

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
const TOKEN = 'dash-admin-token';
const SMALL = 'small-model';
const HC = { interval_seconds: 0.2, failure_threshold: 2, timeout_seconds: 1 };
const LAPTOP = { width: 1440, height: 900 };
const DOCS = /^(1|true|yes)$/i.test(process.env.LEXORA_DASHBOARD_DOCS || '');
const ARTIFACTS = process.env.LEXORA_ARTIFACTS_DIR || mkdtempSync(path.join(os.tmpdir(), 'lexora-dashboard-'));

let puppeteer;
try {
  puppeteer = (await import('puppeteer-core')).default;
} catch { /* reported by the skip below */ }

const send = (lx, id, body = {}, headers = {}) =>
  post(`${lx.url}/v1/chat/completions`, chatBody({ max_tokens: 2, ...body }), { 'x-request-id': id, ...headers });

describe('dashboard in a real browser', { skip: needs(CHROMIUM && puppeteer, 'chromium and puppeteer-core', 'make deps; cd tests && npm ci') }, () => {
  let slow, small, laptop, lx, browser;
  let traffic = true;
  let trafficDone;

  before(async () => {
    // vllm: slow, one slot (requests queue behind it); small: fast, and stopped later by a test
    slow = await startSim(['--model', MODEL, '--ttft-ms', '20', '--tokens-per-sec', '20']);
    small = await startSim(['--model', SMALL, '--ttft-ms', '5', '--tokens-per-sec', '500']);
    // an Ollama whose model Lexora loads and unloads (the page's load / unload buttons)
    laptop = await startSim(['--api', 'ollama', '--model', 'tiny', '--start-unloaded', '--load-ms', '100']);
    lx = await startLexora(configFor(slow.url, {
      extra: {
        backends: {
          vllm: { url: slow.url, models: [MODEL], max_concurrency: 1, gpus: [0, 1] },
          small: { type: 'vllm', url: small.url, models: [SMALL], max_concurrency: 4, gpus: [3] },
          laptop: { type: 'ollama', url: laptop.url, models: ['tiny'], load: { min_resident_seconds: 0 } },
        },
        routing: { aliases: { fast: [SMALL] } },
        // requests for `fast` take part (all to SMALL): the experiments panel has figures to show
        experiments: { 'fast-ab': { model: 'fast', variants: { [SMALL]: 100, [MODEL]: 0 } } },
        health_check: HC,
        admin: { token: TOKEN },
        queue: { max_size: 50, default_timeout: 30 },
        rate_limits: { default: { requests_per_minute: 600, tokens_per_minute: 200000 }, users: { alice: { requests_per_minute: 120, tokens_per_minute: 5000 } } },
      },
    }), { env: { LEXORA_NVML_LIBRARY: path.join(path.dirname(LEXORA_BIN), 'libfake_nvml.so') } }); // four GPUs, GPU 2 failing
    const args = ['--headless=new', '--disable-gpu', '--no-first-run', '--no-default-browser-check', '--disable-extensions'];
    if (process.getuid?.() === 0) args.push('--no-sandbox'); // chromium refuses to run its sandbox as root
    browser = await puppeteer.launch({ executablePath: CHROMIUM, args, headless: true });
    console.log(`# dashboard screenshots: ${ARTIFACTS}`);
    // steady background traffic to the fast backend, as two users, so the charts have something to draw
    trafficDone = (async () => {
      for (let i = 0; traffic; i++) {
        const user = i % 3 ? 'alice' : 'bob';
        await send(lx, `bg-${i}`, { model: i % 2 ? 'fast' : SMALL, x_user_id: user, stream: i % 4 === 0 }).catch(() => {});
        await sleep(250);
      }
    })();
  });

  after(async () => {
    traffic = false;
    await trafficDone;
    await browser?.close();
    await lx?.stop();
    await small?.stop();
    await slow?.stop();
    await laptop?.stop();
  });

  /** A new page at `size`, in `language`, with its console errors and page errors collected. */
  async function openPage({ size = LAPTOP, language = 'en-US', token } = {}) {
    const page = await browser.newPage();
    const errors = [];
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.setViewport(size);
    await page.evaluateOnNewDocument((lang, tok) => {
      Object.defineProperty(navigator, 'language', { get: () => lang });
      Object.defineProperty(navigator, 'languages', { get: () => [lang] });
      if (tok) sessionStorage.setItem('lexora.adminToken', tok);
    }, language, token || '');
    await page.goto(`${lx.url}/dashboard`, { waitUntil: 'load' });
    await page.waitForFunction(() => Number(document.body.dataset.events || 0) >= 1, { timeout: 10000 });
    return { page, errors };
  }

  const text = (page, sel) => page.$eval(sel, (e) => e.textContent.trim());
  const shot = async (page, name, docs) => {
    await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
    if (docs && DOCS) await page.screenshot({ path: path.join(ROOT, 'docs', docs) });
  };

  test('the page and its files are served from the binary, with a strict policy', async () => {
    const r = await fetch(`${lx.url}/dashboard`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /^text\/html/);
    assert.match(r.headers.get('content-security-policy'), /default-src 'self'/);
    assert.equal(r.headers.get('x-frame-options'), 'DENY');
    const html = await r.text();
    assert.ok(!/https?:\/\//.test(html.replace(/<!--[\s\S]*?-->/g, '')), 'no external URL in the page');
    for (const f of ['dashboard.js', 'dashboard.css', 'uPlot.iife.min.js', 'uPlot.min.css'])
      assert.equal((await fetch(`${lx.url}/dashboard/${f}`)).status, 200, f);
    assert.equal((await fetch(`${lx.url}/dashboard/nope.js`)).status, 404);
  });

  test('loads with no console error, goes live, and its figures move with traffic', async () => {
    const { page, errors } = await openPage();
    try {
      await page.waitForFunction(() => document.getElementById('conn').dataset.state === 'live');
      assert.deepEqual(errors, []);
      assert.equal(await page.$$eval('.uplot', (n) => n.length), 6);
      const before = Number((await text(page, '#card-total')).replace(/\D/g, ''));
      for (let i = 0; i < 5; i++) assert.equal((await send(lx, `fig-${i}`, { model: SMALL })).status, 200);
      await page.waitForFunction((b) => Number(document.getElementById('card-total').textContent.replace(/\D/g, '')) >= b + 5,
        { timeout: 10000 }, before);
      // requests per second come from the 1 s history: non-zero once a complete second holds traffic
      await page.waitForFunction(() => parseFloat(document.getElementById('card-rps').textContent) > 0, { timeout: 10000 });
      // the users panel shows alice against her own limits
      // the GPUs NVML read, with their memory (GPU 2's read fails: no figure)
      await page.waitForFunction(() => document.querySelectorAll('#gpus tr').length === 4, { timeout: 10000 });
      const gpus = await page.$$eval('#gpus tr', (rows) => rows.map((r) => [...r.children].slice(0, 3).map((c) => c.textContent)));
      assert.deepEqual(gpus[0], ['GPU 0', 'NVIDIA H100 80GB HBM3', '24 GiB / 80 GiB']);
      assert.deepEqual(gpus[2].slice(2), ['– / –']);
      assert.equal(await text(page, '#backends-table tr[data-backend="vllm"] td:nth-of-type(6)'), '0, 1');
      await page.waitForSelector('#users-table tr[data-user="alice"]');
      assert.match(await text(page, '#users-table tr[data-user="alice"] td'), /\/ 120$/);
      await page.waitForFunction(() => /fast-ab \(fast, static, feedback\)/.test(document.getElementById('experiments-table').textContent));
      const variants = await page.$$eval('#experiments-table tbody tr', (rows) => rows.map((r) => r.children[0].textContent));
      assert.ok(variants.includes(SMALL) && variants.includes(MODEL), variants.join(', '));
      assert.deepEqual(errors, []);
    } finally {
      await page.close();
    }
  });

  test('the recent-requests table shows a request we sent, and filters', async () => {
    const { page, errors } = await openPage();
    try {
      assert.equal((await send(lx, 'dash-find-me', { model: SMALL, x_user_id: 'carol' })).status, 200);
      await page.waitForSelector('#recent-table tr[data-id="dash-find-me"]', { timeout: 10000 });
      const cells = await page.$$eval('#recent-table tr[data-id="dash-find-me"] td', (tds) => tds.map((td) => td.textContent));
      assert.equal(cells[2], 'carol');
      assert.equal(cells[3], SMALL);
      assert.equal(cells[6], 'small');
      assert.equal(cells[7], '200');
      await page.type('#f-user', 'carol');
      await page.waitForFunction(() => [...document.querySelectorAll('#recent-table tbody tr')].every((tr) => tr.children[2].textContent === 'carol'));
      assert.equal(await page.$$eval('#recent-table tbody tr', (r) => r.length), 1);
      await page.select('#f-status', '5xx');
      await page.waitForFunction(() => document.querySelectorAll('#recent-table tbody tr').length === 0);
      assert.deepEqual(errors, []);
    } finally {
      await page.close();
    }
  });

  test('the queue panel shows requests waiting behind a busy backend', async () => {
    if (DOCS) await sleep(60000); // a minute of background traffic, so the screenshots' charts show some
    const { page, errors } = await openPage();
    try {
      const pending = [send(lx, 'q-busy', { max_tokens: 80 })]; // about 4 s on the only slot
      await sleep(200);
      for (let i = 0; i < 3; i++) pending.push(send(lx, `q-wait-${i}`, { max_tokens: 1 }));
      await page.waitForFunction(() => Number(document.getElementById('queue-depth-normal').textContent) >= 2, { timeout: 10000 });
      assert.ok(Number(await text(page, '#queue-depth-total')) >= 2);
      assert.match(await text(page, '#backends-table tr[data-backend="vllm"] td:nth-of-type(4)'), /^1 \/ 1$/);
      await shot(page, 'dashboard-en', 'dashboard-en.png');
      for (const r of await Promise.all(pending)) assert.equal(r.status, 200, r.text);
      await page.waitForFunction(() => document.getElementById('queue-depth-normal').textContent === '0', { timeout: 10000 });
      assert.deepEqual(errors, []);
    } finally {
      await page.close();
    }
  });

  test('Japanese labels follow the browser language', async () => {
    const { page, errors } = await openPage({ language: 'ja-JP' });
    try {
      assert.equal(await page.$eval('html', (h) => h.lang), 'ja');
      assert.equal(await text(page, '[data-i18n="queue"]'), 'キュー');
      assert.equal(await text(page, '[data-i18n="backends"]'), 'バックエンド');
      await page.waitForSelector('#backends-table tr[data-backend="vllm"]');
      await shot(page, 'dashboard-ja', 'dashboard-ja.png');
      assert.deepEqual(errors, []);
    } finally {
      await page.close();
    }
  });

  test('readable on a phone: nothing scrolls sideways but the tables themselves', async () => {
    const { page, errors } = await openPage({ size: { width: 390, height: 844, isMobile: true, hasTouch: true, deviceScaleFactor: 2 } });
    try {
      await sleep(300);
      const { scroll, inner } = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, inner: window.innerWidth }));
      assert.ok(scroll <= inner, `page is ${scroll} px wide on a ${inner} px screen`);
      await shot(page, 'dashboard-phone');
      assert.deepEqual(errors, []);
    } finally {
      await page.close();
    }
  });

  test('reload from the page: refused without the admin token, done with it', async () => {
    const { page } = await openPage();
    try {
      const reloads = () => (lx.logs().match(/config reloaded \(POST \/admin\/reload\)/g) || []).length;
      await page.click('#reload');
      await page.waitForFunction(() => document.getElementById('action-result').dataset.kind === 'error');
      assert.match(await text(page, '#action-result'), /401/);
      assert.equal(reloads(), 0);
      await page.type('#token', TOKEN);
      await page.click('#token-form button[type="submit"]');
      assert.equal(await page.evaluate(() => sessionStorage.getItem('lexora.adminToken')), TOKEN);
      await page.click('#reload');
      await page.waitForFunction(() => document.getElementById('action-result').dataset.kind === 'ok');
      await waitFor(() => reloads() === 1, 'the reload in the log');
      // the token never went into a URL
      assert.ok(!page.url().includes(TOKEN));
      assert.ok(!lx.logs().includes(TOKEN));
      // drain from the page: the backend shows drained (then draining or drained in /health), undrain brings it back
      await page.click('#backends-table tr[data-backend="small"] td.actions button');
      await page.waitForFunction(() => document.getElementById('action-result').dataset.kind === 'ok' &&
        /Drain small/.test(document.getElementById('action-result').textContent));
      assert.equal((await (await fetch(`${lx.url}/health`)).json()).backends.find((b) => b.name === 'small').drained, true);
      await page.waitForSelector('#backends-table tr[data-backend="small"] [data-status^="drain"]', { timeout: 10000 });
      await page.click('#backends-table tr[data-backend="small"] td.actions button:nth-of-type(2)');
      await page.waitForSelector('#backends-table tr[data-backend="small"] [data-status="up"]', { timeout: 10000 });
      assert.equal((await (await fetch(`${lx.url}/health`)).json()).backends.find((b) => b.name === 'small').drained, false);
    } finally {
      await page.close();
    }
  });

  test('load and unload a model from the page (the admin token)', async () => {
    const { page, errors } = await openPage({ token: TOKEN });
    try {
      const state = () => page.$eval('#admin-models-table tr[data-model="tiny"] [data-state]', (e) => e.dataset.state);
      await page.waitForSelector('#admin-models-table tr[data-model="tiny"]', { visible: true, timeout: 10000 });
      assert.equal(await state(), 'unloaded');
      await page.click('#admin-models-table tr[data-model="tiny"] button');
      await waitFor(async () => (await laptop.stats()).models.tiny.state === 'loaded', 'loaded by the page');
      await page.waitForFunction(() => /Load tiny/.test(document.getElementById('action-result').textContent));
      await page.click('#admin-models-table tr[data-model="tiny"] button:nth-of-type(2)');
      await waitFor(async () => (await laptop.stats()).models.tiny.state === 'unloaded', 'unloaded by the page');
      await page.waitForFunction(() => document.querySelector('#admin-models-table tr[data-model="tiny"] [data-state]')
        ?.dataset.state === 'unloaded', { timeout: 10000 });
      assert.deepEqual(errors, []);
    } finally {
      await page.close();
    }
  });

  test('a backend we stop turns down on the page', async () => {
    const { page, errors } = await openPage({ token: TOKEN });
    try {
      await page.waitForSelector('#backends-table tr[data-backend="small"] [data-status="up"]', { timeout: 10000 });
      traffic = false;
      await trafficDone;
      await small.stop();
      await page.waitForSelector('#backends-table tr[data-backend="small"] [data-status="down"]', { timeout: 10000 });
      assert.equal(await page.$eval('#backends-table tr[data-backend="vllm"] [data-status]', (e) => e.dataset.status), 'up');
      await shot(page, 'dashboard-backend-down');
      assert.deepEqual(errors.filter((e) => !/admin\/models/.test(e) && !/404/.test(e)), []);
    } finally {
      await page.close();
    }
  });
});
