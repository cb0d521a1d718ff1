// The technician's field app on a phone (360×740, touch, an emulated
// location) in headless Chromium. Every technician step goes through the
// pages; what the service recorded is checked through the API with the
// dispatcher's key. Run by tests/ui/field.rs, which seeds a fresh database
// and starts the real `dispatch-api serve`.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run these tests through \`cargo test --test ui field\``);
  return v;
}

const BASE = env('UI_BASE_URL');
const SHOTS = env('UI_SCREENSHOT_DIR');
const KEYS = { tech: env('UI_TECH_KEY'), dispatcher: env('UI_DISPATCHER_KEY'), agent: env('UI_AGENT_KEY') };
const SITE = { latitude: Number(env('UI_SITE_LAT')), longitude: Number(env('UI_SITE_LON')), accuracy: 15 };
const JOBS = {
  canonical: env('UI_CANONICAL_JOB'),
  outside: env('UI_OUTSIDE_JOB'),
  deadZone: env('UI_DEAD_ZONE_JOB'),
  cancelled: env('UI_CANCELLED_JOB'),
};
const PHOTO = path.resolve('door-before.png');
const PAGE_WEIGHT_LIMIT = 150 * 1024;
const AXE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

let profile;
let context;
let page;
let keySeq = 0;

async function api(method, url, key, body) {
  const headers = { authorization: `Bearer ${key}` };
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    headers['idempotency-key'] = `field-test-${process.pid}-${++keySeq}`;
  }
  const r = await fetch(`${BASE}${url}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : null };
}

async function events(job) {
  const r = await api('GET', `/v1/jobs/${job}/events`, KEYS.dispatcher);
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return Array.isArray(r.json) ? r.json : r.json.events;
}

// Everything the phone holds has been sent and acknowledged.
async function allSent() {
  await page.waitForSelector('#field-sync[data-pending="0"][data-state="ok"]', { timeout: 30_000 });
}

async function axeCheck(name) {
  await page.evaluate(AXE);
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 3) }));
  });
  const serious = result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(serious, [], `${name}: axe-core found serious violations: ${JSON.stringify(serious)}`);
}

before(async () => {
  profile = fs.mkdtempSync(path.join(os.tmpdir(), 'dispatch-field-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: env('CHROMIUM_PATH'),
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 360, height: 740 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
    geolocation: SITE,
    permissions: ['geolocation'],
    locale: 'en-US',
    timezoneId: 'UTC',
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(15_000);
  page.on('pageerror', (e) => console.error('page error:', e.message));
  page.on('console', (m) => { if (m.type() === 'error') console.error('console:', m.text()); });
});

after(async () => {
  await context?.close();
  if (profile) fs.rmSync(profile, { recursive: true, force: true });
});

test('a dispatcher\'s one-time link signs the phone in as the technician, onto My work; the pages are light and accessible', async () => {
  const link = await api('POST', '/v1/technicians/tech-a/signin-links', KEYS.dispatcher);
  assert.equal(link.status, 201, JSON.stringify(link.json));
  await page.goto(`${BASE}${link.json.url}`);
  await axeCheck('the sign-in link');
  await page.locator('#signin-button').click();
  await page.waitForURL(/\/ui\/field$/);
  // The link was spent.
  const again = await fetch(`${BASE}${link.json.url}`);
  assert.equal(again.status, 410);
  const offer = page.locator(`#offers article[data-job-id="${JOBS.canonical}"]`);
  await offer.waitFor();
  assert.match(await offer.innerText(), /Answer by/);
  assert.match(await offer.innerText(), /Safety/);
  // Page weight: the HTML, style sheets and scripts of the page, uncompressed.
  const sizes = [];
  const onResponse = async (r) => {
    const type = r.request().resourceType();
    if (['document', 'stylesheet', 'script'].includes(type)) sizes.push((await r.body()).length);
  };
  page.on('response', onResponse);
  await page.goto(`${BASE}/ui/field`, { waitUntil: 'networkidle' });
  page.off('response', onResponse);
  const weight = sizes.reduce((a, b) => a + b, 0);
  console.log(`page weight of My work: ${weight} bytes in ${sizes.length} files`);
  assert.ok(weight > 0 && weight < PAGE_WEIGHT_LIMIT, `My work weighs ${weight} bytes`);
  await axeCheck('My work');
  await page.screenshot({ path: path.join(SHOTS, 'field-work.png'), fullPage: true });
});

test('the canonical visit only through the phone: accept, travel, check in on site, checklist, photos, signature, check-out', async () => {
  await page.goto(`${BASE}/ui/field`);
  await page.locator(`#offers article[data-job-id="${JOBS.canonical}"] button[value="60"]`).click();
  await page.waitForURL(/min_position=/);
  const card = page.locator(`#today article[data-job-id="${JOBS.canonical}"]`);
  await card.waitFor();
  await card.getByRole('link', { name: 'Open visit' }).click();
  await page.waitForSelector('#visit-head[data-state="confirmed"]');

  const sizes = [];
  const onResponse = async (r) => {
    if (['document', 'stylesheet', 'script'].includes(r.request().resourceType())) sizes.push((await r.body()).length);
  };
  page.on('response', onResponse);
  await page.getByRole('button', { name: 'Start travel' }).click();
  await page.waitForSelector('#visit-head[data-state="en_route"]');
  await page.waitForLoadState('networkidle');
  page.off('response', onResponse);
  const weight = sizes.reduce((a, b) => a + b, 0);
  console.log(`page weight of the visit: ${weight} bytes in ${sizes.length} files`);
  assert.ok(weight < PAGE_WEIGHT_LIMIT, `the visit page weighs ${weight} bytes`);
  await axeCheck('the visit, en route');

  await page.locator('#checkin-form button[type=submit]').click();
  await page.waitForSelector('#onsite:not([hidden])');
  await allSent();

  const items = page.locator('li.item');
  const n = await items.count();
  assert.ok(n > 5, `the SOP's checklist has ${n} items`);
  for (let i = 0; i < n; i++) {
    await items.nth(i).locator('button.pass').click();
  }
  await page.setInputFiles('#file-photo_before', PHOTO);
  await page.setInputFiles('#file-photo_after', PHOTO);
  // The customer signs with a finger: real touch input, as a phone sends it.
  await page.locator('#sig-pad').scrollIntoViewIfNeeded();
  const pad = await page.locator('#sig-pad').boundingBox();
  const cdp = await context.newCDPSession(page);
  const at = (x) => ({ x: pad.x + x, y: pad.y + pad.height * (0.5 + 0.25 * Math.sin(x / 25)) });
  await cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: [at(20)] });
  for (let x = 32; x < pad.width - 20; x += 12) {
    await cdp.send('Input.dispatchTouchEvent', { type: 'touchMove', touchPoints: [at(x)] });
  }
  await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
  await cdp.detach();
  await page.getByRole('button', { name: 'Save signature' }).click();
  await allSent();
  if (await page.locator('#make-safe').count()) await page.check('#make-safe');
  await page.fill('#resolution', 'Realigned the track, replaced the sensor lens, tested 20 cycles.');
  await page.getByRole('button', { name: 'Add a part' }).click();
  const part = page.locator('#part-rows .part-row').first();
  await part.locator('[name="part_number"]').fill('SL-204');
  await part.locator('[name="description"]').fill('Presence sensor lens');
  await part.locator('[name="quantity"]').fill('2');
  await part.locator('[name="unit_price"]').fill('18.50');
  const stillMissing = await page.locator('#missing li:not([hidden])').allInnerTexts();
  assert.deepEqual(stillMissing, [], 'nothing is missing before check-out');
  assert.equal(await page.locator('#missing-none').isVisible(), true);
  await axeCheck('the visit, on site');
  await page.locator('#evidence').scrollIntoViewIfNeeded();
  await page.screenshot({ path: path.join(SHOTS, 'field-visit.png'), fullPage: false });
  await page.getByRole('button', { name: 'Check out' }).click();
  await page.waitForSelector('#visit-head[data-state="work_completed"]', { timeout: 30_000 });

  const job = await api('GET', `/v1/jobs/${JOBS.canonical}`, KEYS.dispatcher);
  assert.equal(job.json.state, 'work_completed');
  const kinds = job.json.evidence.map((e) => e.kind).sort();
  assert.deepEqual(kinds, ['checklist_form', 'photo_after', 'photo_before', 'signature']);
  const visit = job.json.visits[job.json.visits.length - 1];
  assert.deepEqual(visit.parts, [{ part_number: 'SL-204', description: 'Presence sensor lens', quantity: 2, unit_price_cents: 1850 }]);
  assert.equal(visit.check_in_geofence.verdict, 'inside');
  const types = (await events(JOBS.canonical)).map((e) => e.event_type);
  assert.equal(types.filter((t) => t === 'ChecklistItemCompleted').length, n, 'each item once');
  assert.equal(types.filter((t) => t === 'CheckedOut').length, 1);
});

test('a second visit checked in outside the site with a reason, which the board flags', async () => {
  await context.setGeolocation({ latitude: SITE.latitude + 0.05, longitude: SITE.longitude, accuracy: 20 });
  await page.goto(`${BASE}/ui/field/jobs/${JOBS.outside}`);
  await page.locator('#checkin-form button[type=submit]').click();
  await page.waitForSelector('#reason-box:not([hidden])');
  assert.match(await page.locator('#geo-status').innerText(), /m from the site/);
  await page.fill('#checkin-reason', 'Site entrance is on the service road; the GPS puts me across the river.');
  await page.locator('#checkin-form button[type=submit]').click();
  await page.waitForSelector('#onsite:not([hidden])');
  await allSent();
  const job = await api('GET', `/v1/jobs/${JOBS.outside}`, KEYS.dispatcher);
  assert.equal(job.json.state, 'on_site');
  assert.equal(job.json.flags.checked_in_off_site, true, JSON.stringify(job.json.flags));
  const position = Math.max(...(await events(JOBS.outside)).map((e) => e.global_position));
  const board = await api('GET', `/v1/board?min_position=${position}`, KEYS.dispatcher);
  assert.equal(board.status, 200);
  const row = board.json.rows.find((j) => j.job_id === JOBS.outside);
  assert.equal(row.checked_in_off_site, true, JSON.stringify(row));
  await context.setGeolocation(SITE);
});

test('dead zone: work done offline is kept, then stored exactly once and in order', async () => {
  await page.goto(`${BASE}/ui/field/jobs/${JOBS.deadZone}`);
  await page.locator('#checkin-form button[type=submit]').click();
  await page.waitForSelector('#onsite:not([hidden])');
  await allSent();
  // The page kept for opening without signal is the visit on site.
  await page.waitForFunction(async () => {
    const hit = await (await caches.open('dispatch-field-pages-v1')).match(location.pathname);
    return !!hit && (await hit.text()).includes('data-state="on_site"');
  });
  const before = await events(JOBS.deadZone);

  await context.setOffline(true);
  const items = page.locator('li.item');
  const ids = [];
  for (let i = 0; i < 3; i++) ids.push(await items.nth(i).getAttribute('data-item'));
  await items.nth(0).locator('button.pass').click();
  await items.nth(1).locator('button.na').click();
  await items.nth(2).locator('input[name="note"]').fill('Sensor lens cracked');
  await items.nth(2).locator('button.fail').click();
  await page.setInputFiles('#file-photo_before', PHOTO);
  await page.waitForSelector('#field-sync[data-pending="4"][data-state="offline"]');
  assert.equal(await page.locator('#queue li.pending').count(), 4);
  // Without signal the page opens again (the service worker kept it), with
  // what is waiting re-applied from the phone's store.
  await page.reload();
  await page.waitForSelector('#field-sync[data-pending="4"][data-state="offline"]');
  assert.equal(await page.locator('#onsite').isVisible(), true);
  assert.equal(await page.locator(`li.item[data-item="${ids[1]}"]`).getAttribute('data-result'), 'na');
  await page.screenshot({ path: path.join(SHOTS, 'field-offline.png'), fullPage: false });
  assert.equal((await events(JOBS.deadZone)).length, before.length, 'nothing reached the service while offline');

  // The first answer back online reaches the service, but its reply is
  // lost on the way back: the phone sends it again with the same key.
  let lost = 0;
  await context.route('**/actions/complete_checklist_item', async (route) => {
    if (lost === 0) {
      lost++;
      await route.fetch();
      await route.abort('connectionreset');
    } else {
      await route.continue();
    }
  });
  await context.setOffline(false);
  await allSent();
  await context.unroute('**/actions/complete_checklist_item');
  assert.equal(lost, 1, 'one reply was lost on the way back');

  const after = (await events(JOBS.deadZone)).slice(before.length);
  assert.deepEqual(after.map((e) => e.event_type),
    ['ChecklistItemCompleted', 'ChecklistItemCompleted', 'ChecklistItemCompleted', 'EvidenceAttached']);
  assert.deepEqual(after.slice(0, 3).map((e) => e.payload.item_id), ids, 'in the order they were done');
  assert.deepEqual(after.slice(0, 3).map((e) => e.payload.result), ['pass', 'na', 'fail']);
  const keys = after.map((e) => e.idempotency_key);
  assert.equal(new Set(keys).size, 4, `one key per action: ${keys}`);
  assert.ok(keys.every((k) => k.startsWith('field-')), `the phone's keys: ${keys}`);
});

test('dead zone: a job cancelled meanwhile refuses the replay, and the phone says so', async () => {
  await page.goto(`${BASE}/ui/field/jobs/${JOBS.cancelled}`);
  await page.locator('#checkin-form button[type=submit]').click();
  await page.waitForSelector('#onsite:not([hidden])');
  await allSent();

  await context.setOffline(true);
  await page.locator('li.item').first().locator('button.pass').click();
  await page.waitForSelector('#field-sync[data-pending="1"][data-state="offline"]');

  const asked = await api('POST', `/v1/jobs/${JOBS.cancelled}/commands/cancel_job`, KEYS.agent, { reason: 'Customer fixed it themselves' });
  assert.equal(asked.status, 202, JSON.stringify(asked.json));
  const approvalId = asked.json.approval_id;
  const decided = await api('POST', `/v1/jobs/${JOBS.cancelled}/commands/decide_approval`, KEYS.dispatcher,
    { approval_id: approvalId, decision: 'approve' });
  assert.equal(decided.status, 200, JSON.stringify(decided.json));
  const before = await events(JOBS.cancelled);

  await context.setOffline(false);
  const refused = page.locator('#queue li.refused');
  await refused.waitFor({ timeout: 30_000 });
  assert.match(await refused.innerText(), /not recorded/);
  assert.match(await refused.innerText(), /cancel|changed/i);
  assert.match(await page.locator('li.item').first().locator('.item-state').innerText(), /Not recorded/);
  await page.waitForSelector('#field-sync[data-state="refused"]');
  await page.screenshot({ path: path.join(SHOTS, 'field-refused.png'), fullPage: false });
  assert.equal((await events(JOBS.cancelled)).length, before.length, 'the refused replay wrote nothing');
  await refused.getByRole('button', { name: 'Dismiss' }).click();
  await page.waitForSelector('#field-sync[data-pending="0"][data-state="ok"]');
});
