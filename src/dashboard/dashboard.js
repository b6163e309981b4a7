// Lexora's live dashboard. Reads GET /stats/stream (one JSON snapshot a second, over SSE) with fetch()
// and a ReadableStream, so the admin token can go in an Authorization header (EventSource cannot send
// one). The token lives in this tab's sessionStorage and never in a URL. Charts are uPlot's.
// No framework and no build step: this file is served as it is (embedded in the binary).
'use strict';

(() => {
  const HISTORY_SECONDS = 900;
  const TOKEN_KEY = 'lexora.adminToken';

  // ---------- labels, English and Japanese, following the browser's language ----------
  const LABELS = {
    en: {
      connecting: 'connecting', live: 'live', reconnecting: 'reconnecting', tokenNeeded: 'admin token needed',
      adminToken: 'Admin token', save: 'Save', clear: 'Clear', reloadConfig: 'Reload config',
      reqPerSec: 'Requests/s', errPerSec: 'Errors/s', tokPerSec: 'Tokens/s', latencyP95: 'Latency p95',
      inFlight: 'In flight', queued: 'Queued', totalRequests: 'Requests',
      traffic: 'Traffic, last 15 minutes', latency: 'Latency', latencyMs: 'Latency (ms), per 10 s',
      ttftMs: 'Time to first token (ms), per 10 s', overheadMs: 'Lexora overhead (ms), per 10 s',
      sinceStart: 'Since start', avg: 'avg', count: 'count', queue: 'Queue', priority: 'Priority', waiting: 'Waiting',
      timeouts: 'Timeouts', rejected: 'Rejected', queueWait: 'Wait (ms)', backends: 'Backends', name: 'Name',
      kind: 'Kind', status: 'Status', circuit: 'Circuit', slots: 'In flight / slots', models: 'Models',
      actions: 'Actions', modelsAliases: 'Models and aliases', servedBy: 'Served by', requests: 'Requests',
      loadUnload: 'Load / unload', autoRouting: 'Automatic routing', class: 'Class', errors: 'Errors',
      avgLatency: 'Avg latency (ms)', users: 'Users', user: 'User', rpm: 'Requests / min', tpm: 'Tokens / min',
      rateLimited: '429s', tokens: 'Tokens', recent: 'Recent requests', model: 'Model', all: 'all', ok: '2xx',
      anyError: 'errors', time: 'Time', route: 'Route', variant: 'Variant', backend: 'Backend',
      latencyCol: 'Latency (ms)', overheadCol: 'Lexora overhead (ms)', uptime: 'up', drain: 'Drain', undrain: 'Undrain', load: 'Load', unload: 'Unload',
      draining: 'draining', drained: 'drained', up: 'up', down: 'down', unknown: 'unknown', closed: 'closed', open: 'open',
      half_open: 'half open', alias: 'alias', model_: 'model', high: 'high', normal: 'normal', low: 'low',
      total: 'total', unlimited: 'unlimited', noClasses: 'No request was routed automatically yet.',
      noGpu: 'No GPU memory read.', gpu: 'GPU', memory: 'Memory', prompt: 'prompt', completion: 'completion',
      reloaded: 'Config reloaded.', changed: 'changed', restartRequired: 'restart required',
      refused: 'Refused', notSupported: 'This Lexora does not offer this action yet.', failed: 'Failed',
      done: 'Done', tokenSaved: 'Admin token saved for this tab.', tokenCleared: 'Admin token cleared.',
      experiments: 'Experiments', weight: 'Weight (%)', errorRate: 'Error rate', latencyP50: 'Latency p50 (ms)',
      feedback: 'Feedback', noExperiments: 'No experiment is running.',
    },
    ja: {
      connecting: '接続中', live: 'ライブ', reconnecting: '再接続中', tokenNeeded: '管理トークンが必要です',
      adminToken: '管理トークン', save: '保存', clear: '消去', reloadConfig: '設定を再読み込み',
      reqPerSec: 'リクエスト/秒', errPerSec: 'エラー/秒', tokPerSec: 'トークン/秒', latencyP95: 'レイテンシ p95',
      inFlight: '処理中', queued: '待機中', totalRequests: 'リクエスト数',
      traffic: 'トラフィック（直近15分）', latency: 'レイテンシ', latencyMs: 'レイテンシ（ms、10秒ごと）',
      ttftMs: '最初のトークンまで（ms、10秒ごと）', overheadMs: 'Lexora のオーバーヘッド（ms、10秒ごと）',
      sinceStart: '起動以来', avg: '平均', count: '件数', queue: 'キュー', priority: '優先度', waiting: '待機中',
      timeouts: 'タイムアウト', rejected: '拒否', queueWait: '待ち時間（ms）', backends: 'バックエンド', name: '名前',
      kind: '種類', status: '状態', circuit: 'サーキット', slots: '処理中 / 枠', models: 'モデル',
      actions: '操作', modelsAliases: 'モデルとエイリアス', servedBy: '提供元', requests: 'リクエスト',
      loadUnload: 'ロード / アンロード', autoRouting: '自動ルーティング', class: 'クラス', errors: 'エラー',
      avgLatency: '平均レイテンシ（ms）', users: 'ユーザー', user: 'ユーザー', rpm: 'リクエスト / 分',
      tpm: 'トークン / 分', rateLimited: '429', tokens: 'トークン', recent: '最近のリクエスト', model: 'モデル',
      all: 'すべて', ok: '2xx', anyError: 'エラー', time: '時刻', route: 'ルート', variant: 'バリアント',
      backend: 'バックエンド', latencyCol: 'レイテンシ（ms）', overheadCol: 'Lexora のオーバーヘッド（ms）', uptime: '稼働時間', drain: 'ドレイン', undrain: 'ドレイン解除',
      load: 'ロード', unload: 'アンロード', draining: 'ドレイン中', drained: 'ドレイン済み', up: '稼働', down: '停止', unknown: '不明',
      closed: '閉', open: '開', half_open: '半開', alias: 'エイリアス', model_: 'モデル', high: '高',
      normal: '通常', low: '低', total: '合計', unlimited: '無制限',
      noClasses: '自動ルーティングされたリクエストはまだありません。', noGpu: 'GPU メモリは読み取れていません。',
      gpu: 'GPU', memory: 'メモリ', prompt: 'プロンプト', completion: '生成', reloaded: '設定を再読み込みしました。',
      changed: '変更', restartRequired: '再起動が必要', refused: '拒否されました',
      notSupported: 'この Lexora ではまだこの操作はできません。', failed: '失敗しました', done: '完了',
      tokenSaved: '管理トークンをこのタブに保存しました。', tokenCleared: '管理トークンを消去しました。',
      experiments: '実験', weight: '比率（%）', errorRate: 'エラー率', latencyP50: 'レイテンシ p50（ms）',
      feedback: 'フィードバック', noExperiments: '実行中の実験はありません。',
    },
  };
  const lang = /^ja\b/i.test(navigator.language || '') ? 'ja' : 'en';
  const t = (key) => LABELS[lang][key] ?? LABELS.en[key] ?? key;

  function applyLabels() {
    document.documentElement.lang = lang;
    for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  }

  // ---------- small DOM helpers ----------
  const $ = (id) => document.getElementById(id);
  function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === 'class') e.className = v;
      else if (k.startsWith('data-')) e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const c of children) e.append(c instanceof Node ? c : String(c ?? ''));
    return e;
  }
  function fillBody(table, rows) {
    const body = table.tBodies[0];
    body.replaceChildren(...rows);
  }
  const fmt = (v, digits = 0) =>
    v === null || v === undefined || Number.isNaN(v) ? '–' : Number(v).toLocaleString(lang, { maximumFractionDigits: digits });
  const ms = (v) => fmt(v, v !== null && v < 10 ? 2 : 0);
  function bytes(n) {
    if (n === null || n === undefined) return '–';
    const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return `${fmt(n, 1)} ${u[i]}`;
  }

  // ---------- the admin token and actions ----------
  const token = () => sessionStorage.getItem(TOKEN_KEY) || '';
  const authHeaders = () => (token() ? { Authorization: `Bearer ${token()}` } : {});

  function say(text, kind = 'info') {
    const p = $('action-result');
    p.textContent = text;
    p.dataset.kind = kind;
    p.hidden = false;
  }

  async function adminPost(path, json) {
    let r;
    try {
      const headers = json ? { ...authHeaders(), 'Content-Type': 'application/json' } : authHeaders();
      r = await fetch(path, { method: 'POST', headers, cache: 'no-store', body: json ? JSON.stringify(json) : undefined });
    } catch (e) {
      say(`${t('failed')}: ${e.message}`, 'error');
      return null;
    }
    let body = null;
    try { body = await r.json(); } catch { /* not JSON */ }
    if (r.status === 404 || r.status === 405) say(t('notSupported'), 'error');
    else if (r.status === 401 || r.status === 403) say(`${t('refused')} (${r.status}): ${body?.error?.message ?? ''}`, 'error');
    else if (!r.ok) say(`${t('failed')} (${r.status}): ${body?.error?.message ?? ''}`, 'error');
    return r.ok ? (body ?? {}) : null;
  }

  async function reloadConfig() {
    const body = await adminPost('/admin/reload');
    if (!body) return;
    const changed = (body.changed || []).join(', ');
    const restart = (body.restart_required || []).join(', ');
    say(`${t('reloaded')}${changed ? ` ${t('changed')}: ${changed}.` : ''}${restart ? ` ${t('restartRequired')}: ${restart}.` : ''}`, 'ok');
  }

  async function backendAction(name, action) {
    const body = await adminPost(`/admin/backends/${encodeURIComponent(name)}/${action}`);
    if (body) say(`${t('done')}: ${t(action)} ${name}`, 'ok');
    pollHealth();
  }

  // Load / unload: only offered when this Lexora has GET /admin/models (asked once a token is set).
  async function probeAdminModels() {
    $('admin-models').hidden = true;
    if (!token()) return;
    let r;
    try { r = await fetch('/admin/models', { headers: authHeaders(), cache: 'no-store' }); } catch { return; }
    if (!r.ok) return;
    let body;
    try { body = await r.json(); } catch { return; }
    const list = Array.isArray(body.data) ? body.data : [];
    const act = async (verb, m) => {
      const done = await adminPost(`/admin/models/${verb}`, { model: m.model, backend: m.backend });
      if (done) say(`${t('done')}: ${t(verb)} ${m.model} (${done.state})`, 'ok');
      probeAdminModels();
    };
    const rows = list.map((m) => el('tr', { 'data-model': m.model },
      el('td', {}, `${m.model} @ ${m.backend}`),
      el('td', {}, el('span', { class: `badge load-${m.state}`, 'data-state': m.state }, m.state)),
      el('td', {},
        el('button', { type: 'button', onclick: () => act('load', m) }, t('load')),
        el('button', { type: 'button', onclick: () => act('unload', m) }, t('unload')))));
    fillBody($('admin-models-table'), rows);
    $('admin-models').hidden = false;
  }

  // /health says which backends are drained (drain_state: draining while requests still run on it, then
  // drained); the stream says the rest.
  const drainState = new Map();
  async function pollHealth() {
    try {
      const r = await fetch('/health', { headers: authHeaders(), cache: 'no-store' });
      const h = await r.json();
      drainState.clear();
      for (const b of h.backends || []) if (b.drained) drainState.set(b.name, b.drain_state || 'drained');
    } catch { /* the stream's status shows trouble */ }
  }

  // ---------- the data the stream keeps filling ----------
  const hist = { x: [], requests: [], errors: [], rate_limited: [], prompt: [], completion: [] };
  const pct = { x: [], lat: [[], [], []], ttft: [[], [], []], ovh: [[], [], []] };
  let recent = []; // newest first, at most 200
  let last = null; // the last event

  function addSeries(s, full) {
    if (full) for (const k of Object.keys(hist)) hist[k] = [];
    for (let i = 0; i < s.requests.length; i++) {
      hist.x.push(s.start + i * s.step);
      hist.requests.push(s.requests[i]);
      hist.errors.push(s.errors[i]);
      hist.rate_limited.push(s.rate_limited[i]);
      hist.prompt.push(s.prompt_tokens[i]);
      hist.completion.push(s.completion_tokens[i]);
    }
    const drop = hist.x.length - HISTORY_SECONDS;
    if (drop > 0) for (const k of Object.keys(hist)) hist[k].splice(0, drop);
  }

  function addPercentiles(p, full) {
    if (full) {
      pct.x = [];
      for (const k of ['lat', 'ttft', 'ovh']) pct[k] = [[], [], []];
    }
    const src = { lat: p.latency_ms, ttft: p.ttft_ms, ovh: p.overhead_ms };
    for (let i = 0; i < p.latency_ms.p50.length; i++) {
      pct.x.push(p.start + i * p.step);
      for (const k of ['lat', 'ttft', 'ovh']) ['p50', 'p95', 'p99'].forEach((q, j) => pct[k][j].push(src[k][q][i]));
    }
    const drop = pct.x.length - HISTORY_SECONDS / p.step;
    if (drop > 0) {
      pct.x.splice(0, drop);
      for (const k of ['lat', 'ttft', 'ovh']) for (const a of pct[k]) a.splice(0, drop);
    }
  }

  function addRecent(list, full) {
    if (full) recent = [];
    for (const r of list) recent.unshift(r);
    if (recent.length > 200) recent.length = 200;
  }

  // ---------- charts ----------
  const charts = {};
  const COLORS = ['#2f6fd6', '#d6452f', '#2f9e5b', '#9b59b6'];

  function makeChart(id, labels, stepped) {
    const box = $(id);
    const opts = {
      width: Math.max(box.clientWidth, 200),
      height: 150,
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
      series: [{}, ...labels.map((label, i) => ({
        label, stroke: COLORS[i], width: 1.5, spanGaps: false, points: { show: false },
        paths: stepped && typeof uPlot.paths?.stepped === 'function' ? uPlot.paths.stepped({ align: 1 }) : undefined,
      }))],
      axes: [{ space: 60 }, { size: 50 }],
    };
    charts[id] = new uPlot(opts, [[], ...labels.map(() => [])], box);
  }

  function makeCharts() {
    makeChart('chart-requests', [t('requests')]);
    makeChart('chart-errors', [t('errors'), '429']);
    makeChart('chart-tokens', [t('prompt'), t('completion')]);
    for (const id of ['chart-latency', 'chart-ttft', 'chart-overhead']) makeChart(id, ['p50', 'p95', 'p99'], true);
    let pending = false; // one resize per frame, after layout (a resize inside the observer could loop)
    new ResizeObserver(() => {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => {
        pending = false;
        for (const [id, c] of Object.entries(charts)) c.setSize({ width: Math.max($(id).clientWidth, 200), height: 150 });
      });
    }).observe(document.querySelector('main'));
  }

  // The charts start when Lexora did (within the 15 minutes): before that there is no data, not zero.
  function drawCharts(ev) {
    const started = ev.time / 1000 - (ev.stats.uptime_seconds ?? Infinity);
    const from = (xs, step) => Math.max(0, xs.findIndex((x) => x + step > started));
    const h = from(hist.x, 1), p = from(pct.x, 10);
    const cut = (arrs, i) => arrs.map((a) => a.slice(i));
    charts['chart-requests'].setData(cut([hist.x, hist.requests], h));
    charts['chart-errors'].setData(cut([hist.x, hist.errors, hist.rate_limited], h));
    charts['chart-tokens'].setData(cut([hist.x, hist.prompt, hist.completion], h));
    charts['chart-latency'].setData(cut([pct.x, ...pct.lat], p));
    charts['chart-ttft'].setData(cut([pct.x, ...pct.ttft], p));
    charts['chart-overhead'].setData(cut([pct.x, ...pct.ovh], p));
  }

  // ---------- panels ----------
  function sumLast(arr, n) {
    let s = 0;
    for (let i = Math.max(0, arr.length - n); i < arr.length; i++) s += arr[i];
    return s;
  }

  function drawCards(ev) {
    const n = Math.min(10, hist.x.length) || 1;
    $('card-rps').textContent = fmt(sumLast(hist.requests, 10) / n, 1);
    $('card-eps').textContent = fmt(sumLast(hist.errors, 10) / n, 1);
    $('card-tps').textContent = fmt((sumLast(hist.prompt, 10) + sumLast(hist.completion, 10)) / n, 0);
    $('card-p95').textContent = ev.stats.latency_ms?.p95 == null ? '–' : `${ms(ev.stats.latency_ms.p95)} ms`;
    $('card-inflight').textContent = fmt(ev.state.backends.reduce((a, b) => a + Math.max(0, b.in_flight), 0));
    const d = ev.stats.queue?.depth ?? {};
    $('card-queued').textContent = fmt((d.high ?? 0) + (d.normal ?? 0) + (d.low ?? 0));
    $('card-total').textContent = fmt(ev.stats.total_requests);
    $('uptime').textContent = ev.stats.uptime ? `${t('uptime')} ${ev.stats.uptime}` : '';
  }

  function drawLatencyTable(st) {
    const rows = [['latencyCol', st.latency_ms], ['TTFT (ms)', st.ttft_ms], ['overheadCol', st.overhead_ms],
      ['queueWait', st.queue?.wait_ms]].map(([label, q]) => el('tr', {},
      el('th', {}, LABELS.en[label] ? t(label) : label), el('td', {}, ms(q?.p50)), el('td', {}, ms(q?.p95)),
      el('td', {}, ms(q?.p99)), el('td', {}, ms(q?.avg)), el('td', {}, fmt(q?.count))));
    fillBody($('latency-table'), rows);
  }

  function drawQueue(st) {
    const q = st.queue ?? {};
    const rows = ['high', 'normal', 'low'].map((p) => el('tr', { 'data-priority': p },
      el('th', {}, t(p)),
      el('td', { id: `queue-depth-${p}`, className: q.depth?.[p] ? 'hot' : '' }, fmt(q.depth?.[p])),
      el('td', {}, fmt(q.timeouts?.[p])), el('td', {}, fmt(q.rejected?.[p]))));
    const sum = (o) => (o ? (o.high ?? 0) + (o.normal ?? 0) + (o.low ?? 0) : 0);
    rows.push(el('tr', { class: 'total' }, el('th', {}, t('total')), el('td', { id: 'queue-depth-total' }, fmt(sum(q.depth))),
      el('td', {}, fmt(sum(q.timeouts))), el('td', {}, fmt(sum(q.rejected)))));
    fillBody($('queue-table'), rows);
    const w = q.wait_ms ?? {};
    $('queue-wait').textContent = `p50 ${ms(w.p50)} · p95 ${ms(w.p95)} · p99 ${ms(w.p99)}`;
  }

  function drawBackends(state) {
    const rows = state.backends.map((b) => {
      const status = drainState.get(b.name) || b.status;
      return el('tr', { 'data-backend': b.name },
        el('th', {}, b.name),
        el('td', {}, b.kind),
        el('td', {}, el('span', { class: `badge status-${status}`, 'data-status': status }, t(status))),
        el('td', {}, el('span', { class: `badge circuit-${b.circuit}` }, t(b.circuit))),
        el('td', {}, `${fmt(Math.max(0, b.in_flight))} / ${fmt(b.max_concurrency)}`),
        el('td', {}, b.models.join(', ')),
        el('td', {}, b.gpus.join(', ')),
        el('td', { class: 'actions' },
          el('button', { type: 'button', onclick: () => backendAction(b.name, 'drain') }, t('drain')),
          el('button', { type: 'button', onclick: () => backendAction(b.name, 'undrain') }, t('undrain'))));
    });
    fillBody($('backends-table'), rows);
    const gpus = state.gpus || [];
    $('gpus').replaceChildren(gpus.length
      ? el('table', {}, el('tbody', {}, ...gpus.map((g) => el('tr', {}, el('th', {}, `${t('gpu')} ${g.index}`),
        el('td', {}, g.name), el('td', {}, `${bytes(g.used_bytes)} / ${bytes(g.total_bytes)}`),
        el('td', {}, el('meter', { min: 0, max: g.total_bytes || 1, value: g.used_bytes || 0 }))))))
      : el('p', { class: 'muted' }, t('noGpu')));
  }

  function drawModels(ev) {
    const servedBy = new Map();
    for (const b of ev.state.backends) for (const m of b.models) servedBy.set(m, [...(servedBy.get(m) || []), b.name]);
    const perModel = ev.stats.per_model || {}, perAlias = ev.stats.per_alias || {};
    const rows = [...servedBy.entries()].map(([m, bs]) => el('tr', {},
      el('th', {}, m), el('td', {}, bs.join(', ')), el('td', {}, fmt(perModel[m]?.requests ?? 0))));
    for (const a of ev.state.aliases) rows.push(el('tr', { class: 'alias' },
      el('th', {}, `${a.name} (${t('alias')})`), el('td', {}, `→ ${a.models.join(', ')}`), el('td', {}, fmt(perAlias[a.name]?.requests ?? 0))));
    fillBody($('models-table'), rows);
    $('models-list').replaceChildren(...[...servedBy.keys(), ...ev.state.aliases.map((a) => a.name)].map((v) => el('option', { value: v })));
  }

  function drawClasses(st) {
    const classes = Object.entries(st.per_class || {});
    fillBody($('classes-table'), classes.length
      ? classes.map(([name, c]) => el('tr', {}, el('th', {}, name), el('td', {}, fmt(c.requests)), el('td', {}, fmt(c.errors)),
        el('td', {}, ms(c.avg_latency_ms))))
      : [el('tr', {}, el('td', { colSpan: 4, className: 'muted' }, t('noClasses')))]);
  }

  // One header row per experiment, then a row per variant (/stats experiments.NAME.variants.V).
  function drawExperiments(st) {
    const rows = [];
    for (const [name, e] of Object.entries(st.experiments || {})) {
      rows.push(el('tr', { class: 'alias' }, el('th', { colSpan: 6 }, `${name} (${e.model}, ${e.mode}, ${e.metric})`)));
      for (const [v, x] of Object.entries(e.variants)) rows.push(el('tr', {},
        el('th', {}, v), el('td', {}, x.weight.toFixed(1)), el('td', {}, fmt(x.requests)),
        el('td', {}, `${(100 * x.error_rate).toFixed(1)} %`), el('td', {}, ms(x.latency_p50_ms)),
        el('td', {}, x.feedback_count ? `${x.feedback_mean.toFixed(2)} (${fmt(x.feedback_count)})` : '–')));
    }
    fillBody($('experiments-table'), rows.length ? rows
      : [el('tr', {}, el('td', { colSpan: 6, className: 'muted' }, t('noExperiments')))]);
  }

  function againstLimit(used, limit) {
    const cell = el('td', {}, `${fmt(used)} / ${limit > 0 ? fmt(limit) : t('unlimited')}`);
    if (limit > 0) {
      cell.append(' ', el('meter', { min: 0, max: limit, high: limit * 0.8, optimum: 0, value: Math.min(used, limit) }));
      if (used >= limit) cell.className = 'hot';
    }
    return cell;
  }

  function drawUsers(ev) {
    const limits = ev.state.limits;
    const users = Object.entries(ev.stats.per_user || {});
    fillBody($('users-table'), users.map(([name, u]) => {
      const l = limits.users[name] ?? limits.default;
      return el('tr', { 'data-user': name }, el('th', {}, name),
        againstLimit(u.requests_per_minute ?? 0, l.requests_per_minute),
        againstLimit(u.tokens_per_minute ?? 0, l.tokens_per_minute),
        el('td', { className: u.rate_limited ? 'hot' : '' }, fmt(u.rate_limited)), el('td', {}, fmt(u.requests)),
        el('td', {}, fmt(u.total_tokens)), el('td', {}, fmt(u.errors)));
    }));
    $('users-list').replaceChildren(...users.map(([name]) => el('option', { value: name })));
  }

  function statusMatches(s, f) {
    switch (f) {
      case 'ok': return s >= 200 && s < 300;
      case 'err': return s >= 400;
      case '4xx': return s >= 400 && s < 500;
      case '429': return s === 429;
      case '5xx': return s >= 500;
      default: return true;
    }
  }

  function drawRecent() {
    const fu = $('f-user').value.trim(), fm = $('f-model').value.trim(), fs = $('f-status').value;
    const rows = recent.filter((r) => (!fu || r.user === fu) && (!fm || r.model === fm || r.model_used === fm) &&
      statusMatches(r.status, fs)).map((r) => el('tr', { 'data-id': r.id, class: r.status >= 400 || r.error ? 'err' : '' },
      el('td', {}, new Date(r.time).toLocaleTimeString(lang)),
      el('td', { class: 'id' }, r.id),
      el('td', {}, r.user),
      el('td', {}, r.model_used && r.model_used !== r.model ? `${r.model} → ${r.model_used}` : r.model),
      el('td', {}, r.route),
      el('td', {}, r.variant),
      el('td', {}, r.backend),
      el('td', { title: r.error || '' }, r.status),
      el('td', { class: 'num' }, ms(r.latency_ms)),
      el('td', { class: 'num' }, ms(r.ttft_ms)),
      el('td', { class: 'num' }, r.prompt_tokens < 0 ? '–' : `${fmt(r.prompt_tokens)} / ${fmt(r.completion_tokens)}`)));
    fillBody($('recent-table'), rows);
  }

  function onEvent(ev) {
    addSeries(ev.series, ev.full);
    addPercentiles(ev.percentiles, ev.full);
    addRecent(ev.recent, ev.full);
    last = ev;
    drawCharts(ev);
    drawCards(ev);
    drawLatencyTable(ev.stats);
    drawQueue(ev.stats);
    drawBackends(ev.state);
    drawModels(ev);
    drawClasses(ev.stats);
    drawExperiments(ev.stats);
    drawUsers(ev);
    drawRecent();
    document.body.dataset.events = String(Number(document.body.dataset.events || 0) + 1);
  }

  // ---------- the stream ----------
  let abort = null;
  let retryMs = 1000;

  function setConn(state) {
    const c = $('conn');
    c.dataset.state = state;
    c.textContent = t(state);
  }

  async function readStream(signal) {
    const r = await fetch('/stats/stream', { headers: authHeaders(), signal, cache: 'no-store' });
    if (r.status === 401 || r.status === 403) {
      setConn('tokenNeeded');
      return false;
    }
    if (!r.ok || !r.body) throw new Error(`HTTP ${r.status}`);
    setConn('live');
    retryMs = 1000;
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return true;
      buf += value;
      let cut;
      while ((cut = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        const data = block.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
        if (data) onEvent(JSON.parse(data));
      }
    }
  }

  async function connect() {
    if (abort) abort.abort();
    const mine = new AbortController();
    abort = mine;
    for (;;) {
      let again = true;
      try {
        again = await readStream(mine.signal);
      } catch (e) {
        if (mine.signal.aborted) return;
      }
      if (mine.signal.aborted || !again) return;
      setConn('reconnecting');
      await new Promise((res) => setTimeout(res, retryMs));
      retryMs = Math.min(retryMs * 2, 15000);
      if (mine.signal.aborted) return;
    }
  }

  // ---------- start ----------
  function start() {
    applyLabels();
    makeCharts();
    $('token').value = token();
    $('token-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const v = $('token').value.trim();
      if (v) sessionStorage.setItem(TOKEN_KEY, v);
      else sessionStorage.removeItem(TOKEN_KEY);
      say(t(v ? 'tokenSaved' : 'tokenCleared'));
      connect();
      probeAdminModels();
    });
    $('token-clear').addEventListener('click', () => {
      sessionStorage.removeItem(TOKEN_KEY);
      $('token').value = '';
      say(t('tokenCleared'));
      connect();
      probeAdminModels();
    });
    $('reload').addEventListener('click', reloadConfig);
    for (const id of ['f-user', 'f-model', 'f-status']) $(id).addEventListener('input', drawRecent);
    $('filters').addEventListener('submit', (e) => e.preventDefault());
    pollHealth();
    setInterval(pollHealth, 5000);
    probeAdminModels();
    connect();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
