// Drives the Switchyard console in Debian's chromium (playwright-core), for
// host/tests/console.rs, which starts the host, publishes the events and
// reads this script's output. Every step prints a line; any failed step
// exits non-zero with what it saw.
//
// Protocol with the Rust side: this script prints `READY-FOR-EVENTS` once
// the page shows the counts before the flow; the test then publishes
// CONSOLE_FLOW merge events.
//
// Environment: CONSOLE_URL, CONSOLE_TOKEN, CONSOLE_SCREENSHOTS (a folder),
// CONSOLE_CHROMIUM (the browser), CONSOLE_MODULES (the node_modules holding
// playwright-core); CONSOLE_MODE `main` (the default: also CONSOLE_FLOW,
// CONSOLE_MERGE_BEFORE, CONSOLE_COUNTER_BEFORE, CONSOLE_DIRTY_KEY,
// CONSOLE_DIRTY_NAME) or `protected-reads` (a host whose reads need the
// token).

import path from 'node:path';
import { pathToFileURL } from 'node:url';

const env = (name) => {
  const value = process.env[name];
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
};
const url = env('CONSOLE_URL');
const apiToken = env('CONSOLE_TOKEN');
const shots = env('CONSOLE_SCREENSHOTS');
const mode = process.env.CONSOLE_MODE ?? 'main';
const { chromium } = await import(
  pathToFileURL(path.join(env('CONSOLE_MODULES'), 'playwright-core', 'index.mjs')).href
);

const WAIT_MS = 60_000;
const step = (text) => console.log(`step: ${text}`);
const fail = (text) => {
  throw new Error(text);
};

/** Polls `probe` (async, answers a value or undefined) until it answers. */
async function until(what, probe, limit = WAIT_MS) {
  const deadline = Date.now() + limit;
  let last;
  for (;;) {
    last = await probe();
    if (last !== undefined && last !== false) return last;
    if (Date.now() > deadline) fail(`timed out after ${limit} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const browser = await chromium.launch({
  executablePath: env('CONSOLE_CHROMIUM'),
  args: ['--no-sandbox'],
});
const problems = [];

async function open(options) {
  const context = await browser.newContext(options);
  const page = await context.newPage();
  page.on('console', (m) => {
    // The 401s of the token steps are expected; chromium logs each.
    const expected = /status of 401/.test(m.text());
    if (m.type() === 'error' && !expected) problems.push(`console error: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  const response = await page.goto(url);
  if (response.status() !== 200) fail(`GET / answered ${response.status()}`);
  const csp = response.headers()['content-security-policy'] ?? '';
  if (!csp.includes("default-src 'self'") || csp.includes('unsafe-inline')) {
    fail(`GET / has no strict Content-Security-Policy: ${csp}`);
  }
  return { context, page };
}

const card = (page, name) => page.locator(`article[data-plugin="${name}"]`);
const counter = async (page, plugin, field) => {
  const text = await card(page, plugin).locator(`[data-field="${field}"]`).textContent();
  return Number(text.replace(/[^0-9]/g, ''));
};
const shot = async (page, name, options = {}) => {
  await page.screenshot({ path: path.join(shots, name), ...options });
  step(`screenshot ${name}`);
};

/**
 * A host with SWITCHYARD_PROTECT_READS: the page loads (it is open), says
 * its reads need the token, and shows the plugins once it is entered.
 */
async function protectedReads() {
  const { page } = await open({ viewport: { width: 1280, height: 800 } });
  step('opened the console of a host whose reads need the token');
  await until('the page to say reads need the token', async () =>
    (await page.locator('#updated').textContent()).includes('Reads need the API token'));
  if ((await page.locator('article[data-plugin]').count()) !== 0) fail('plugins shown without the token');
  step(`it says: ${await page.locator('#updated').textContent()}`);
  await page.locator('#token-button').focus();
  await page.keyboard.press('Enter');
  await until('the token dialog', async () => page.locator('#token-dialog').evaluate((d) => d.open));
  await page.keyboard.type(apiToken);
  await page.keyboard.press('Enter');
  await card(page, 'merge').waitFor({ timeout: WAIT_MS });
  const state = await page.locator('#token-state').textContent();
  step(`with the token entered (${state}) it shows merge`);
  await shot(page, '09-protected-reads.png');
}

async function main() {
  const flow = Number(env('CONSOLE_FLOW'));
  const mergeBefore = Number(env('CONSOLE_MERGE_BEFORE'));
  const counterBefore = Number(env('CONSOLE_COUNTER_BEFORE'));
  const dirtyKey = env('CONSOLE_DIRTY_KEY');
  const dirtyName = env('CONSOLE_DIRTY_NAME');
  // ---- 1280x800: the plugins ----
  const { page } = await open({ viewport: { width: 1280, height: 800 } });
  step('opened the console at 1280x800');
  for (const name of ['merge', 'counter']) {
    await card(page, name).waitFor({ timeout: WAIT_MS });
    const sha = await card(page, name).locator('[data-field="sha256"]').textContent();
    if (!/^[0-9a-f]{64}$/.test(sha)) fail(`${name}: sha256 shown as ${JSON.stringify(sha)}`);
    const world = await card(page, name).locator('[data-field="world"]').textContent();
    if (world !== 'transformer') fail(`${name}: world shown as ${world}`);
    const loaded = await card(page, name).locator('[data-field="loaded"]').textContent();
    if (!/ in \d+\.\d ms/.test(loaded)) fail(`${name}: load shown as ${loaded}`);
  }
  const version = await card(page, 'counter').locator('[data-field="version"]').textContent();
  if (!version.endsWith('+fixed')) fail(`counter's version shown as ${version}`);
  const subs = await card(page, 'merge').locator('[data-field="subscriptions"]').textContent();
  if (!subs.includes('customer.')) fail(`merge's subscriptions shown as ${subs}`);
  step(`sees merge and counter (counter ${version}, merge subscribes to ${subs})`);
  const producer = card(page, 'crm-producer');
  await producer.waitFor({ timeout: WAIT_MS });
  if ((await producer.locator('[data-field="world"]').textContent()) !== 'producer') fail('crm-producer is not shown as a producer');
  const lastPoll = await until('a poll of crm-producer shown', async () => {
    const text = await producer.locator('[data-field="last_poll"]').textContent();
    return /took \d+ ms, published 0$/.test(text) ? text : undefined;
  });
  const polls = await producer.locator('[data-field="polls"]').textContent();
  step(`sees crm-producer's polls: ${polls}; last: ${lastPoll}`);
  await until('the health line', async () =>
    (await page.locator('#health').textContent()).match(/^Healthy .* 3 plugins$/));
  await until(`merge applied = ${mergeBefore}`, async () =>
    (await counter(page, 'merge', 'events_applied')) === mergeBefore);
  await shot(page, '01-plugins.png');

  // ---- a count rises while events flow ----
  console.log('READY-FOR-EVENTS');
  const target = mergeBefore + flow;
  const seen = [mergeBefore];
  let flowing = false;
  await until(`merge applied = ${target}`, async () => {
    const n = await counter(page, 'merge', 'events_applied');
    if (n !== seen[seen.length - 1]) {
      if (n < seen[seen.length - 1]) fail(`merge's applied count went back: ${seen} then ${n}`);
      seen.push(n);
      if (!flowing && n < target) {
        flowing = true;
        await shot(page, '02-events-flowing.png');
      }
    }
    return n === target;
  }, 120_000);
  step(`merge applied counts seen on the page: ${seen.join(' -> ')}`);
  const peak = Number(await card(page, 'merge').locator('[data-field="rate"]').getAttribute('data-peak'));
  if (!(peak > 0)) fail(`the events/s chart of merge peaked at ${peak}`);
  step(`merge's events/s chart peaked at ${peak.toFixed(1)}`);
  if (!flowing) await shot(page, '02-events-flowing.png');
  await until(`counter applied = ${counterBefore + flow}`, async () =>
    (await counter(page, 'counter', 'events_applied')) === counterBefore + flow);

  // ---- dead letters with their reasons ----
  const panel = page.locator('section.dlq[data-plugin="counter"]');
  await until('counter\'s dead letter', async () => (await panel.getAttribute('data-total')) === '1');
  const reason = await panel.locator('td.reason').first().textContent();
  if (!reason.includes('no such customer')) fail(`counter's dead letter shows the reason ${reason}`);
  const mergePanel = page.locator('section.dlq[data-plugin="merge"]');
  await until('merge\'s dead letter', async () => (await mergePanel.getAttribute('data-total')) === '1');
  const mergeReason = await mergePanel.locator('td.reason').first().textContent();
  if (!mergeReason.includes('must be a non-empty string')) fail(`merge's dead letter shows ${mergeReason}`);
  step(`sees the dead letters: counter "${reason}", merge "${mergeReason}"`);
  await page.locator('#dead-letters').scrollIntoViewIfNeeded();
  await shot(page, '03-dead-letters.png');
  // For the README: the top of the page, tall enough for the dead letters.
  await page.setViewportSize({ width: 1280, height: 1040 });
  await page.evaluate(() => window.scrollTo(0, 0));
  await shot(page, 'readme.png');
  await page.setViewportSize({ width: 1280, height: 800 });

  // ---- keyboard: Tab to the replay button, Enter, the token, applied ----
  await page.locator('body').click({ position: { x: 2, y: 2 } });
  await page.evaluate(() => document.activeElement?.blur());
  const replayName = 'Replay 1 dead letter of counter';
  let tabs = 0;
  await until('Tab to reach the replay button', async () => {
    await page.keyboard.press('Tab');
    tabs += 1;
    if (tabs > 80) fail('80 presses of Tab never reached the replay button');
    return page.evaluate((name) => {
      const el = document.activeElement;
      if (el?.textContent !== name) return undefined;
      return getComputedStyle(el).outlineStyle !== 'none';
    }, replayName);
  });
  step(`Tab x${tabs} reaches "${replayName}", with a visible focus outline`);
  await page.keyboard.press('Enter');
  const dialog = page.locator('#token-dialog');
  await until('the token dialog', async () => dialog.evaluate((d) => d.open));
  const focused = await page.evaluate(() => document.activeElement?.id);
  if (focused !== 'token-input') fail(`the token dialog opened with the focus on ${focused}`);
  step(`asked for the token: "${await page.locator('#token-why').textContent()}"`);
  await page.keyboard.type('not-the-token');
  await page.keyboard.press('Enter');
  await until('the dialog to say the token is wrong', async () =>
    (await page.locator('#token-why').textContent()).includes('wrong') && (await dialog.evaluate((d) => d.open)));
  await page.keyboard.type(apiToken);
  await shot(page, '04-token.png');
  await page.keyboard.press('Enter');
  const note = panel.locator('.note');
  await until('the replay to be reported', async () =>
    (await note.textContent()).includes('Replayed 1 dead letter of counter'));
  step(`the page says: ${await note.textContent()}`);
  const applied = counterBefore + flow + 1;
  await until(`counter applied = ${applied} and its dead letters gone`, async () =>
    (await counter(page, 'counter', 'events_applied')) === applied && (await panel.getAttribute('data-total')) === '0');
  step(`the replayed event is applied: counter applied ${applied}, no dead letter left`);
  const stored = await page.evaluate(() => sessionStorage.getItem('switchyard-api-token'));
  if (stored !== apiToken) fail('the token entered is not kept in sessionStorage');
  await panel.scrollIntoViewIfNeeded();
  await shot(page, '05-replayed.png');

  // ---- the data browser, with paging ----
  const source = page.locator('#data-source');
  await until('the counts collection in the list', async () =>
    (await source.locator('option').allTextContents()).includes('collection counts'));
  await source.selectOption('collection:counts');
  const rows = page.locator('#data-rows');
  await until(`counts/total = ${applied}`, async () => {
    const text = await rows.textContent();
    return text.includes('total') && new RegExp(`"count":\\s*${applied}\\b`).test(text);
  });
  step(`the data browser shows counts/total {"count": ${applied}}`);
  await source.selectOption('collection:customers');
  await page.locator('#data-limit').selectOption('10');
  await until('10 customers on page 1', async () => (await rows.locator('tr').count()) === 10);
  const firstPage = await rows.locator('tr td:first-child').allTextContents();
  await page.locator('#data-next').click();
  await until('page 2', async () => (await page.locator('#data-page').textContent()) === 'Page 2');
  const secondPage = await rows.locator('tr td:first-child').allTextContents();
  if (secondPage.length !== 10 || !(secondPage[0] > firstPage[9])) {
    fail(`page 2 does not follow page 1: ${firstPage} then ${secondPage}`);
  }
  await page.locator('#data-prev').click();
  await until('page 1 again', async () =>
    JSON.stringify(await rows.locator('tr td:first-child').allTextContents()) === JSON.stringify(firstPage));
  step(`pages through customers: ${firstPage[0]}..${firstPage[9]}, then ${secondPage[0]}..${secondPage[9]}, and back`);
  // The dirty customer (its key sorts first): key and name shown as text,
  // never as HTML.
  if (firstPage[0] !== dirtyKey) fail(`the first customer is ${JSON.stringify(firstPage[0])}, not ${JSON.stringify(dirtyKey)}`);
  const row = rows.locator('tr', { hasText: dirtyKey }).first();
  if (!(await row.textContent()).includes(dirtyName)) fail('the dirty name is not shown as text');
  if ((await page.locator('#data-rows img').count()) !== 0) fail('a document\'s text became HTML');
  step(`shows the key ${JSON.stringify(dirtyKey)} and the name ${JSON.stringify(dirtyName)} as text`);
  await row.scrollIntoViewIfNeeded();
  await shot(page, '06-data.png');
  await page.locator('#plugins').scrollIntoViewIfNeeded();
  await page.evaluate(() => window.scrollTo(0, 0));
  await shot(page, '00-overview.png');

  // ---- a phone ----
  const phone = await open({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  await card(phone.page, 'merge').waitFor({ timeout: WAIT_MS });
  await until('counter applied on the phone', async () =>
    (await counter(phone.page, 'counter', 'events_applied')) === applied);
  const widths = await phone.page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  if (widths[0] > widths[1]) fail(`the phone page scrolls sideways: ${widths[0]} px wide in ${widths[1]}`);
  step(`phone 390x844: ${widths[0]} px wide, no sideways scrolling`);
  await shot(phone.page, '07-phone.png');
  await shot(phone.page, '08-phone-full.png', { fullPage: true });

}

try {
  if (mode === 'protected-reads') await protectedReads();
  else await main();
  if (problems.length) fail(`the page reported errors:\n${problems.join('\n')}`);
  step('done');
} catch (e) {
  console.log(`FAILED: ${e.message}`);
  if (problems.length) console.log(problems.join('\n'));
  await browser.close();
  process.exit(1);
}
await browser.close();
