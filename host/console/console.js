// Switchyard console: reads the host's JSON API (the same routes as any
// client) and updates the page in place every POLL_MS. No framework, no
// build step. Every value from the API reaches the page as text
// (textContent), never as HTML.
'use strict';

const POLL_MS = 1500;
/** Dead letters are read from the broker: less often than the counters. */
const DLQ_EVERY_MS = 5000;
/** Rate samples kept per plugin (about 90 s at POLL_MS). */
const RATE_SAMPLES = 60;
const DLQ_SHOWN = 20;
const TOKEN_KEY = 'switchyard-api-token';
const DOCUMENT_CHARS = 4000;

// ---------- small DOM helpers ----------

const $ = (id) => document.getElementById(id);

/** An element with attributes (`text` sets textContent) and children. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') el.textContent = v;
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) el.append(c);
  return el;
}

function setText(el, text) {
  const t = String(text);
  if (el.textContent !== t) el.textContent = t;
}

const plural = (n, one, many = one + 's') => `${n} ${n === 1 ? one : many}`;
const number = (n) => (typeof n === 'number' ? n.toLocaleString('en') : '–');

function when(ms) {
  if (!ms) return '–';
  const d = new Date(ms);
  const ago = Math.max(0, Math.round((Date.now() - ms) / 1000));
  const rel = ago < 90 ? `${ago} s ago` : ago < 5400 ? `${Math.round(ago / 60)} min ago` : `${Math.round(ago / 3600)} h ago`;
  return `${d.toLocaleString()} (${rel})`;
}

// ---------- the API, with the token ----------

class ApiFailure extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
    showTokenState();
  },
};

/**
 * Calls the API; answers its JSON. On 401, an action the user asked for
 * (`ask: true`) asks for the token and tries again; a background read
 * throws, and the page says reads need a token.
 */
async function api(path, { method = 'GET', ask = false } = {}) {
  for (;;) {
    const headers = { accept: 'application/json' };
    const t = token.get();
    if (t) headers.authorization = `Bearer ${t}`;
    const res = await fetch(path, { method, headers, cache: 'no-store' });
    let body = null;
    try {
      body = await res.json();
    } catch {
      body = null;
    }
    const error = (body && body.error) || `${res.status} ${res.statusText}`;
    if (res.status === 401 && ask) {
      const entered = await askForToken(error);
      if (entered === null) throw new ApiFailure(401, error);
      continue;
    }
    if (!res.ok) throw new ApiFailure(res.status, error);
    return body;
  }
}

let tokenPrompt = null;

/** Opens the token dialog; resolves to the token entered, or null. */
function askForToken(why) {
  if (tokenPrompt) return tokenPrompt;
  const dialog = $('token-dialog');
  setText($('token-why'), why);
  $('token-input').value = '';
  tokenPrompt = new Promise((resolve) => {
    const done = (value) => {
      $('token-form').removeEventListener('submit', onSubmit);
      $('token-cancel').removeEventListener('click', onCancel);
      dialog.removeEventListener('cancel', onCancel);
      if (dialog.open) dialog.close();
      tokenPrompt = null;
      resolve(value);
    };
    const onSubmit = (e) => {
      e.preventDefault();
      const value = $('token-input').value.trim();
      if (!value) return;
      token.set(value);
      done(value);
    };
    const onCancel = (e) => {
      e.preventDefault();
      done(null);
    };
    $('token-form').addEventListener('submit', onSubmit);
    $('token-cancel').addEventListener('click', onCancel);
    dialog.addEventListener('cancel', onCancel);
  });
  dialog.showModal();
  $('token-input').focus();
  return tokenPrompt;
}

function showTokenState() {
  const has = Boolean(token.get());
  setText($('token-state'), has ? 'API token entered (this tab)' : 'No API token entered');
  setText($('token-button'), has ? 'Forget API token' : 'Enter API token');
}

// ---------- health ----------

async function refreshHealth() {
  const el = $('health');
  try {
    const res = await fetch('/health', { cache: 'no-store', headers: { accept: 'application/json' } });
    const body = await res.json();
    if (res.ok) {
      const broker = body.broker === 'embedded' ? 'embedded bus' : `broker connected (${plural(body.connections ?? 0, 'connection')})`;
      setText(el, `Healthy · ${broker} · ${plural(body.plugins ?? 0, 'plugin')}`);
      el.className = 'health ok';
    } else {
      setText(el, `Unavailable: ${body.error || res.statusText}`);
      el.className = 'health bad';
    }
  } catch (e) {
    setText(el, `Cannot reach the host: ${e.message}`);
    el.className = 'health bad';
  }
}

// ---------- plugins ----------

/** Per plugin: its card's elements and its rate history. */
const cards = new Map();

function field(dl, key, label) {
  const dd = h('dd', { 'data-field': key, text: '–' });
  dl.append(h('div', {}, h('dt', { text: label }), dd));
  return dd;
}

function fact(dl, key, label) {
  const dd = h('dd', { 'data-field': key, text: '–' });
  dl.append(h('dt', { text: label }), dd);
  return dd;
}

function makeCard(p) {
  const id = `plugin-${cards.size}`;
  const card = h('article', { class: 'card', 'data-plugin': p.name, 'aria-labelledby': `${id}-name` });
  const head = h('div', { class: 'card-head' },
    h('h3', { id: `${id}-name`, text: p.name }));
  const world = h('span', { class: 'badge', 'data-field': 'world' });
  const version = h('span', { class: 'badge', 'data-field': 'version' });
  head.append(world, version);
  const facts = h('dl', { class: 'facts' });
  const refs = {
    card, world, version,
    sha256: fact(facts, 'sha256', 'sha256'),
    subscriptions: fact(facts, 'subscriptions', 'Subscribes to'),
    views: fact(facts, 'views', 'Views'),
    loaded: fact(facts, 'loaded', 'Loaded'),
    queue: fact(facts, 'queue', 'Queue'),
  };
  const canvas = h('canvas', { width: 220, height: 48, role: 'img', 'aria-label': 'events per second' });
  const rateText = h('p', { 'data-field': 'rate' });
  const rate = h('div', { class: 'rate' }, canvas, rateText);
  const counters = h('dl', { class: 'counters', 'aria-label': `counters of ${p.name} since the host started` });
  Object.assign(refs, {
    canvas, rateText, counters,
    events_applied: field(counters, 'events_applied', 'Applied'),
    dead_lettered: field(counters, 'dead_lettered', 'Dead-lettered'),
    duplicates: field(counters, 'duplicates', 'Duplicates'),
    commits: field(counters, 'commits', 'Commits'),
    conflicts: field(counters, 'conflicts', 'Conflicts'),
    reloads: field(counters, 'reloads', 'Reloads'),
  });
  const producer = h('div', { class: 'producer', hidden: true });
  const producerFacts = h('dl', { class: 'facts' });
  producer.append(h('h4', { text: 'Polling' }), producerFacts);
  Object.assign(refs, {
    producer,
    polls: fact(producerFacts, 'polls', 'Polls'),
    lastPoll: fact(producerFacts, 'last_poll', 'Last poll'),
    published: fact(producerFacts, 'events_published', 'Published'),
    polledBy: fact(producerFacts, 'polled_by', 'Polled by'),
  });
  const pollError = h('p', { class: 'problem', 'data-field': 'last_poll_error', hidden: true });
  const blocked = h('p', { class: 'problem', 'data-field': 'publishing_blocked', hidden: true });
  producer.append(pollError, blocked);
  const loadError = h('p', { class: 'problem', 'data-field': 'last_error', hidden: true });
  const warning = h('p', { class: 'warning', 'data-field': 'last_warning', hidden: true });
  Object.assign(refs, { pollError, blocked, loadError, warning, samples: [], last: null });
  card.append(head, facts, rate, counters, producer, loadError, warning);
  return refs;
}

function show(el, text) {
  el.hidden = !text;
  if (text) setText(el, text);
}

function updateCard(c, p, now) {
  setText(c.world, p.world);
  setText(c.version, `v${p.version}`);
  setText(c.sha256, p.sha256);
  c.sha256.classList.add('mono');
  c.sha256.title = p.sha256;
  setText(c.subscriptions, p.subscriptions.length ? p.subscriptions.join(', ') : 'nothing');
  setText(c.views, p.views.length ? p.views.join(', ') : 'none');
  const cache = p.from_cache ? ', from the compile cache' : '';
  setText(c.loaded, `${when(p.loaded_at_ms)}, in ${p.load_ms.toFixed(1)} ms${cache}`);
  setText(c.queue, p.queue || '–');
  for (const k of ['events_applied', 'dead_lettered', 'duplicates', 'commits', 'conflicts', 'reloads']) {
    setText(c[k], number(p[k]));
  }
  // A producer handles no events: its counters are its polls.
  c.counters.hidden = Boolean(p.producer);
  show(c.loadError, p.last_error && `Last failed load (${when(p.last_error.at_ms)}): ${p.last_error.error}`);
  show(c.warning, p.last_warning && `Last warning (${plural(p.last_warning.count, 'warning')} so far, ${when(p.last_warning.at_ms)}): ${p.last_warning.message}`);
  const prod = p.producer;
  c.producer.hidden = !prod;
  if (prod) {
    setText(c.polls, `${number(prod.polls)} every ${prod.poll_interval_ms / 1000} s, ${number(prod.failed_polls)} failed`);
    const last = prod.last_poll;
    setText(c.lastPoll, last ? `${when(last.at_ms)}, took ${last.took_ms} ms, published ${number(last.published)}` : 'not yet');
    setText(c.published, `${number(prod.events_published)} events`);
    setText(c.polledBy, prod.polled_by || '–');
    show(c.pollError, prod.last_poll_error && `Last poll failed (${when(prod.last_poll_error.at_ms)}): ${prod.last_poll_error.error}`);
    show(c.blocked, prod.publishing_blocked && `The broker blocks publishing since ${when(prod.publishing_blocked.since_ms)}: ${prod.publishing_blocked.reason}`);
  }
  sampleRate(c, p, now);
}

/**
 * Events handled per second (published, for a producer), from successive
 * counter readings.
 */
function sampleRate(c, p, now) {
  const total = p.producer
    ? p.producer.events_published
    : p.events_applied + p.dead_lettered + p.duplicates;
  const unit = p.producer ? 'events published/s' : 'events/s';
  if (c.last && total >= c.last.total && now > c.last.at) {
    const rate = ((total - c.last.total) * 1000) / (now - c.last.at);
    c.samples.push(rate);
    if (c.samples.length > RATE_SAMPLES) c.samples.shift();
  } else if (c.last) {
    c.samples = []; // the counters went back: the host restarted
  }
  c.last = { total, at: now };
  const current = c.samples.length ? c.samples[c.samples.length - 1] : 0;
  const peak = c.samples.reduce((a, b) => Math.max(a, b), 0);
  const text = `${current.toFixed(1)} ${unit} now · peak ${peak.toFixed(1)} in the last ${Math.round((RATE_SAMPLES * POLL_MS) / 1000)} s`;
  setText(c.rateText, text);
  c.rateText.dataset.rate = current.toFixed(3);
  c.rateText.dataset.peak = peak.toFixed(3);
  c.canvas.setAttribute('aria-label', `Chart of ${unit} for ${p.name}: ${text}`);
  drawRate(c.canvas, c.samples, peak);
}

function drawRate(canvas, samples, peak) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 220;
  const hgt = canvas.clientHeight || 48;
  if (canvas.width !== Math.round(w * ratio)) canvas.width = Math.round(w * ratio);
  if (canvas.height !== Math.round(hgt * ratio)) canvas.height = Math.round(hgt * ratio);
  const g = canvas.getContext('2d');
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, w, hgt);
  const accent = getComputedStyle(document.documentElement).getPropertyValue('--accent').trim() || '#1f5f8b';
  const step = w / (RATE_SAMPLES - 1);
  const x0 = w - (samples.length - 1) * step;
  const y = (v) => hgt - 3 - (peak > 0 ? (v / peak) * (hgt - 8) : 0);
  g.fillStyle = getComputedStyle(document.documentElement).getPropertyValue('--line').trim() || '#d6dde6';
  g.fillRect(0, hgt - 3, w, 1);
  g.beginPath();
  samples.forEach((v, i) => (i ? g.lineTo(x0 + i * step, y(v)) : g.moveTo(x0, y(v))));
  g.strokeStyle = accent;
  g.lineWidth = 2;
  g.stroke();
  if (samples.length > 1) {
    g.lineTo(w, hgt);
    g.lineTo(x0, hgt);
    g.closePath();
    g.globalAlpha = 0.18;
    g.fillStyle = accent;
    g.fill();
    g.globalAlpha = 1;
  }
}

let plugins = [];

async function refreshPlugins() {
  const list = $('plugin-list');
  let body;
  try {
    body = await api('/plugins');
  } catch (e) {
    const hint = e.status === 401 ? ' Reads need the API token here: use "Enter API token" above.' : '';
    setText($('updated'), `Could not read /plugins: ${e.message}.${hint}`);
    return;
  }
  const now = Date.now();
  plugins = body.plugins;
  if (!plugins.length) list.replaceChildren(h('p', { class: 'muted', text: 'No plugins loaded.' }));
  const seen = new Set();
  for (const p of plugins) {
    seen.add(p.name);
    let c = cards.get(p.name);
    if (!c) {
      c = makeCard(p);
      cards.set(p.name, c);
    }
    updateCard(c, p, now);
  }
  for (const [name, c] of cards) {
    if (!seen.has(name)) {
      c.card.remove();
      cards.delete(name);
    }
  }
  // Cards in the API's (name) order; nodes already in place are not moved.
  const wanted = plugins.map((p) => cards.get(p.name).card);
  if (wanted.length && wanted.some((card, i) => list.children[i] !== card)) list.replaceChildren(...wanted);
  const failures = $('load-failures');
  failures.hidden = !body.failed.length;
  failures.replaceChildren(...body.failed.map((f) => h('p', { class: 'problem', text: `${f.file} failed to load (${when(f.at_ms)}): ${f.error}` })));
  setText($('updated'), `Updated ${new Date(now).toLocaleTimeString()}`);
  syncDeadLetterPanels();
  syncDataSources();
}

// ---------- dead letters ----------

/** Per transformer plugin: its panel's elements. */
const panels = new Map();
let dlqReadAt = 0;

function makePanel(name) {
  const id = `dlq-${panels.size}`;
  const section = h('section', { class: 'dlq', 'data-plugin': name, 'aria-labelledby': `${id}-title` });
  const title = h('h3', { id: `${id}-title`, text: name });
  const count = h('span', { class: 'muted', 'data-field': 'total', text: 'reading…' });
  const button = h('button', { type: 'button', class: 'replay', 'aria-disabled': 'true', text: `Replay the dead letters of ${name}` });
  const rows = h('tbody');
  const table = h('table', {},
    h('caption', { class: 'visually-hidden', text: `Dead letters of ${name}, oldest first` }),
    h('thead', {}, h('tr', {}, ...['Event id', 'Routing key', 'Reason', 'Attempts', 'Failed at'].map((t) => h('th', { scope: 'col', text: t })))),
    rows);
  const wrap = h('div', { class: 'table-wrap', hidden: true }, table);
  const note = h('p', { class: 'note', role: 'status', 'aria-live': 'polite' });
  section.append(h('div', { class: 'dlq-head' }, title, count, button), wrap, note);
  const panel = { name, section, count, button, rows, wrap, note, total: 0, busy: false, lastCounter: null };
  button.addEventListener('click', () => replay(panel));
  return panel;
}

function syncDeadLetterPanels() {
  const names = plugins.filter((p) => p.world === 'transformer').map((p) => p.name);
  const list = $('dlq-list');
  if (!names.length) {
    list.replaceChildren(h('p', { class: 'muted', text: 'No transformer plugins loaded.' }));
    panels.clear();
    return;
  }
  let changed = false;
  for (const name of names) {
    if (!panels.has(name)) {
      panels.set(name, makePanel(name));
      changed = true;
    }
  }
  for (const name of [...panels.keys()]) {
    if (!names.includes(name)) {
      panels.get(name).section.remove();
      panels.delete(name);
    }
  }
  const wanted = names.map((n) => panels.get(n).section);
  if (changed || wanted.some((s, i) => list.children[i] !== s)) list.replaceChildren(...wanted);
  // A plugin whose dead-letter counter moved is read again at once.
  for (const p of plugins) {
    const panel = panels.get(p.name);
    if (panel && panel.lastCounter !== p.dead_lettered) {
      panel.lastCounter = p.dead_lettered;
      dlqReadAt = 0;
    }
  }
}

async function refreshDeadLetters(force = false) {
  if (!force && Date.now() - dlqReadAt < DLQ_EVERY_MS) return;
  dlqReadAt = Date.now();
  await Promise.all([...panels.values()].map(readPanel));
}

async function readPanel(panel) {
  let body;
  try {
    body = await api(`/plugins/${encodeURIComponent(panel.name)}/dlq?limit=${DLQ_SHOWN}`);
  } catch (e) {
    setText(panel.count, `could not read them: ${e.message}`);
    return;
  }
  panel.total = body.total;
  setText(panel.count, body.total > body.items.length
    ? `${plural(body.total, 'dead letter')}, the oldest ${body.items.length} shown`
    : plural(body.total, 'dead letter'));
  panel.section.dataset.total = String(body.total);
  panel.wrap.hidden = body.items.length === 0;
  panel.rows.replaceChildren(...body.items.map((l) => h('tr', {},
    h('td', { class: 'mono', text: l.event_id ?? '(none)' }),
    h('td', { class: 'mono', text: l.routing_key }),
    h('td', { class: 'reason', text: l.reason ?? '(no reason recorded)' }),
    h('td', { text: l.attempts ?? '–' }),
    h('td', { text: when(l.failed_at_ms) }))));
  if (!panel.busy) {
    const n = body.total;
    setText(panel.button, n ? `Replay ${plural(n, 'dead letter')} of ${panel.name}` : `Nothing to replay for ${panel.name}`);
    panel.button.setAttribute('aria-disabled', n ? 'false' : 'true');
  }
}

async function replay(panel) {
  if (panel.busy || panel.button.getAttribute('aria-disabled') === 'true') return;
  panel.busy = true;
  panel.button.setAttribute('aria-disabled', 'true');
  setText(panel.button, `Replaying the dead letters of ${panel.name}…`);
  panel.note.className = 'note';
  setText(panel.note, '');
  try {
    const body = await api(`/plugins/${encodeURIComponent(panel.name)}/dlq/replay`, { method: 'POST', ask: true });
    const version = plugins.find((p) => p.name === panel.name)?.version;
    setText(panel.note, `Replayed ${plural(body.replayed, 'dead letter')} of ${panel.name} through version ${version ?? '?'}.`);
  } catch (e) {
    panel.note.className = 'note bad';
    setText(panel.note, `Replay failed: ${e.message}`);
  } finally {
    panel.busy = false;
    await refreshPlugins();
    await readPanel(panel);
  }
}

// ---------- data browser ----------

const data = { source: null, cursors: [null], loading: false };

function syncDataSources() {
  const select = $('data-source');
  const options = [{ value: 'data', label: 'the data view (/analytics/data)' }];
  for (const name of collectionNames) options.push({ value: `collection:${name}`, label: `collection ${name}` });
  for (const p of plugins) {
    for (const v of p.views) options.push({ value: `view:${p.name}/${v}`, label: `view ${v} of ${p.name}` });
  }
  const key = options.map((o) => o.value).join('\n');
  if (select.dataset.key === key) return;
  select.dataset.key = key;
  const current = select.value || data.source || 'data';
  select.replaceChildren(...options.map((o) => h('option', { value: o.value, text: o.label })));
  if (options.some((o) => o.value === current)) select.value = current;
  if (data.source === null) {
    data.source = select.value;
    readData(false);
  }
}

let collectionNames = [];
let collectionsReadAt = 0;

async function refreshCollections(force = false) {
  if (!force && Date.now() - collectionsReadAt < DLQ_EVERY_MS) return;
  collectionsReadAt = Date.now();
  try {
    const body = await api('/analytics/collections');
    collectionNames = body.collections.map((c) => c.name);
    syncDataSources();
  } catch {
    // Shown by the data status when the user reads one.
  }
}

function sourcePath(source, limit, after) {
  const query = `?limit=${limit}${after !== null ? `&after=${encodeURIComponent(after)}` : ''}`;
  if (source === 'data') return `/analytics/data${query}`;
  if (source.startsWith('collection:')) return `/analytics/collections/${encodeURIComponent(source.slice(11))}${query}`;
  const [plugin, ...view] = source.slice(5).split('/');
  return `/analytics/views/${encodeURIComponent(plugin)}/${encodeURIComponent(view.join('/'))}${query}`;
}

/** A document as text: on one line when short, indented when not. */
function shownJson(value) {
  const compact = JSON.stringify(value) ?? 'null';
  const text = compact.length <= 100 ? compact : JSON.stringify(value, null, 2);
  return text.length > DOCUMENT_CHARS
    ? `${text.slice(0, DOCUMENT_CHARS)}\n… (${number(text.length - DOCUMENT_CHARS)} more characters)`
    : text;
}

async function readData(ask = true) {
  if (!data.source) return;
  const page = data.cursors.length;
  const after = data.cursors[page - 1];
  const limit = $('data-limit').value;
  const keyed = data.source.startsWith('collection:');
  const label = $('data-source').selectedOptions[0]?.textContent ?? data.source;
  data.loading = true;
  let body;
  try {
    body = await api(sourcePath(data.source, limit, after), { ask });
  } catch (e) {
    setText($('data-status'), `Could not read ${label}: ${e.message}`);
    $('data-rows').replaceChildren();
    $('data-next').disabled = true;
    return;
  } finally {
    data.loading = false;
  }
  setText($('data-key-head'), keyed ? 'Key' : '#');
  setText($('data-caption'), `${label}, page ${page}`);
  const first = (page - 1) * Number(limit);
  $('data-rows').replaceChildren(...body.items.map((item, i) => h('tr', {},
    h('td', { class: 'mono', text: keyed ? item.key : String(first + i + 1) }),
    h('td', {}, h('pre', { text: shownJson(keyed ? item.document : item) })))));
  setText($('data-status'), body.items.length
    ? `${label}: items ${first + 1} to ${first + body.items.length}${body.next ? ', more on the next page' : ''}.`
    : `${label}: nothing here${page > 1 ? ' on this page' : ' yet'}.`);
  setText($('data-page'), `Page ${page}`);
  data.next = body.next;
  $('data-next').disabled = !body.next;
  $('data-prev').disabled = page === 1;
}

function startData(source) {
  data.source = source;
  data.cursors = [null];
  readData();
}

// ---------- wiring ----------

function wire() {
  $('token-button').addEventListener('click', async () => {
    if (token.get()) token.set(null);
    else await askForToken('Enter the API token of this host (SWITCHYARD_API_TOKEN).');
    tick();
  });
  $('data-form').addEventListener('submit', (e) => {
    e.preventDefault();
    refreshCollections(true);
    startData($('data-source').value);
  });
  $('data-source').addEventListener('change', () => startData($('data-source').value));
  $('data-limit').addEventListener('change', () => startData($('data-source').value));
  $('data-next').addEventListener('click', () => {
    if (!data.next) return;
    data.cursors.push(data.next);
    readData();
  });
  $('data-prev').addEventListener('click', () => {
    if (data.cursors.length > 1) data.cursors.pop();
    readData();
  });
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) tick();
  });
}

let timer = null;
let ticks = 0;

async function tick() {
  clearTimeout(timer);
  try {
    await Promise.all([refreshHealth(), refreshPlugins()]);
    await Promise.all([refreshDeadLetters(), refreshCollections()]);
    // The page of data shown is read again now and then, unless the user
    // is moving through the pages.
    ticks += 1;
    if (ticks % 4 === 0 && !data.loading) await readData(false);
  } finally {
    if (!document.hidden) timer = setTimeout(tick, POLL_MS);
  }
}

wire();
showTokenState();
tick();
