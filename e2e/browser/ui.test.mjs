// Browser tests of the pages under /ui, in headless Chromium (the system's
// executable; playwright-core never downloads one). Run by
// tests/ui/browser.rs, which seeds a fresh database, starts the real
// `dispatch-api serve` and passes everything through UI_* variables.
//
// The tests run in order and share one browser profile (fresh per run).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run these tests through \`cargo test --test ui browser\``);
  return v;
}

const BASE = env('UI_BASE_URL');
const SHOTS = env('UI_SCREENSHOT_DIR');
const KEYS = { dispatcher: env('UI_DISPATCHER_KEY'), agent: env('UI_AGENT_KEY'), tech: env('UI_TECH_KEY') };
const APPROVAL_JOB = env('UI_APPROVAL_JOB');
const APPROVAL_ID = env('UI_APPROVAL_ID');
const TECH_JOB = env('UI_TECH_JOB');
const TECH_APPROVAL_ID = env('UI_TECH_APPROVAL_ID');
const TAMPERED_JOB = env('UI_TAMPERED_JOB');
const TAMPERED_SEQ = Number(env('UI_TAMPERED_SEQ'));
const DOOR_JOB = env('UI_DOOR_JOB');

let profile;
let context;
let page;

before(async () => {
  // The board must show everything seeded before the browser looks at it
  // (each query waits up to 5 s; a busy shared PostgreSQL can take longer).
  let status = 0;
  for (let i = 0; i < 6 && status !== 200; i++) {
    const r = await fetch(`${BASE}/v1/board?min_position=${env('UI_MIN_POSITION')}`, {
      headers: { authorization: `Bearer ${KEYS.dispatcher}` },
    });
    status = r.status;
  }
  assert.equal(status, 200, 'the board read model caught up');
  status = 0;
  for (let i = 0; i < 6 && status !== 200; i++) {
    const r = await fetch(`${BASE}/v1/doors/door-ad-1/history?min_position=${env('UI_MIN_POSITION')}`, {
      headers: { authorization: `Bearer ${KEYS.dispatcher}` },
    });
    status = r.status;
  }
  assert.equal(status, 200, 'the door history read model caught up');
  profile = fs.mkdtempSync(path.join(os.tmpdir(), 'dispatch-ui-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: env('CHROMIUM_PATH'),
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1280, height: 900 },
    locale: 'en-US',
    timezoneId: 'UTC',
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(10_000);
  page.on('pageerror', (e) => console.error('page error:', e.message));
  page.on('dialog', (d) => {
    throw new Error(`a dialog opened (stored text was interpreted?): ${d.message()}`);
  });
});

after(async () => {
  await context?.close();
  if (profile) fs.rmSync(profile, { recursive: true, force: true });
});

/** Landmarks, one h1, labels for every control, alt on every image, a language. */
async function assertAccessible(where) {
  const problems = await page.evaluate(() => {
    const out = [];
    if (!document.documentElement.lang) out.push('no lang on <html>');
    if (document.querySelectorAll('main').length !== 1) out.push('not exactly one <main>');
    if (document.querySelectorAll('h1').length !== 1) out.push('not exactly one <h1>');
    for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
      const labelled = el.labels?.length > 0 || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby');
      if (!labelled) out.push(`unlabelled control ${el.name || el.id}`);
    }
    for (const img of document.querySelectorAll('img')) {
      if (!img.hasAttribute('alt')) out.push(`image without alt ${img.src}`);
    }
    for (const b of document.querySelectorAll('button, a[href]')) {
      if (!b.textContent.trim() && !b.getAttribute('aria-label') && !b.querySelector('img[alt]')) out.push(`control without a name: ${b.outerHTML.slice(0, 80)}`);
    }
    return out;
  });
  assert.deepEqual(problems, [], `${where}: accessibility problems`);
}

async function login(key) {
  await page.goto(`${BASE}/ui/login`);
  await page.getByLabel('API key').fill(key);
  await Promise.all([page.waitForURL((u) => !u.pathname.startsWith('/ui/login')), page.getByRole('button', { name: 'Log in' }).click()]);
}

test('a dispatcher logs in with a key and lands on the board', async () => {
  await page.goto(`${BASE}/ui/board`);
  assert.match(page.url(), /\/ui\/login\?next=%2Fui%2Fboard$/);
  await assertAccessible('login');
  await page.getByLabel('API key').fill('dak_wrong');
  await page.getByRole('button', { name: 'Log in' }).click();
  assert.match(await page.locator('[role=alert]').innerText(), /unknown or revoked/);
  await login(KEYS.dispatcher);
  assert.equal(new URL(page.url()).pathname, '/ui/board');
  assert.equal(await page.locator('h1').innerText(), 'Dispatch board');
  // The cookie is HTTP-only (no script can read it) and holds no key.
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'dispatch_session');
  assert.ok(session, `a session cookie: ${JSON.stringify(cookies)}`);
  assert.deepEqual([session.path, session.httpOnly, session.secure, session.sameSite], ['/ui', true, true, 'Strict']);
  assert.ok(!session.value.includes(KEYS.dispatcher));
  assert.equal(await page.evaluate(() => document.cookie), '');
  await assertAccessible('board');
  // Keyboard users see where they are: the skip link comes first, with a focus ring.
  await page.keyboard.press('Tab');
  const focus = await page.evaluate(() => {
    const el = document.activeElement;
    return { text: el.textContent, outline: getComputedStyle(el).outlineStyle };
  });
  assert.equal(focus.text, 'Skip to content');
  assert.notEqual(focus.outline, 'none');
});

test('a job a command just created appears on the board without a reload', async () => {
  await page.goto(`${BASE}/ui/board`);
  await page.locator('#live-status[data-state=live]').waitFor();
  await page.evaluate(() => {
    window.__sameDocument = 'still here';
  });
  const r = await fetch(`${BASE}/v1/jobs`, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEYS.agent}`, 'content-type': 'application/json', 'idempotency-key': 'browser-live-job' },
    body: JSON.stringify({
      incident_type: 'door_stuck_open',
      channel: 'phone',
      client_id: 'harbor-co',
      site: { id: 'pier-39', name: 'Pier 39 Visitor Center', address: '39 Embarcadero' },
      contact: { name: 'Alex', phone: '+1-555-0139' },
      door: { id: 'east-slider', location: 'East entrance' },
      description: 'Sliding door will not close; wind blowing in',
    }),
  });
  assert.equal(r.status, 201);
  const { job_id: job } = await r.json();
  const row = page.locator(`tr[data-job-id="${job}"]`);
  // Projectors read below the cluster's transaction horizon: on a busy shared
  // PostgreSQL that can take a few seconds.
  await row.waitFor({ timeout: 30_000 });
  assert.match(await row.innerText(), /Pier 39 Visitor Center/);
  assert.equal(await page.evaluate(() => window.__sameDocument), 'still here', 'the page was not reloaded');
  assert.match(await page.locator('#live-status').innerText(), /updated at position/);
  // Flags and colours of the seeded jobs are on the board.
  const board = await page.locator('#board-live').innerText();
  for (const text of ['make-safe', 'possible duplicate', 'P1', 'Offered', 'Intake', 'North Depot <Loading Dock 3>', 'at risk', 'overdue']) {
    assert.ok(board.includes(text), `the board shows ${text}`);
  }
  // The service's timer flags the overdue job; the flag arrives live too.
  await page.locator('#board-live .flag-breached').first().waitFor({ timeout: 30_000 });
  for (const c of await page.locator('#board-live .countdown').allInnerTexts()) {
    assert.match(c, /^(overdue )?(\d+d \d+h|\d+h \d\dm|\d+m \d\ds)$/);
  }
  assert.match(await page.locator(`tr[data-job-id="${APPROVAL_JOB}"]`).innerText(), /on site/);
  await page.screenshot({ path: path.join(SHOTS, 'board.png'), fullPage: true });
  // Filters narrow the live board.
  await page.getByLabel('State').selectOption('offered');
  await Promise.all([page.waitForURL(/state=offered/), page.getByRole('button', { name: 'Apply filters' }).click()]);
  assert.equal(await page.locator('tr[data-job-id]').count(), 1);
});

test('approving an NTE increase changes the job and its timeline', async () => {
  await page.goto(`${BASE}/ui/jobs/${APPROVAL_JOB}`);
  await assertAccessible('job');
  assert.equal(await page.locator('#nte').innerText(), '$500.00');
  const pending = page.locator(`li[data-approval-id="${APPROVAL_ID}"]`);
  assert.equal(await pending.getAttribute('data-status'), 'pending');
  const eventsBefore = await page.locator('table.timeline tbody tr').count();
  // The evidence thumbnail loads through the session.
  const img = page.locator('ul.evidence img');
  await img.waitFor();
  assert.ok(await img.evaluate((el) => el.complete && el.naturalWidth > 0), 'the photo is shown');

  await page.goto(`${BASE}/ui/approvals`);
  await assertAccessible('approvals');
  const row = page.locator(`tr[data-approval-id="${APPROVAL_ID}"]`);
  assert.match(await row.innerText(), /Raise the NTE to \$750\.00/);
  await Promise.all([page.waitForURL(/done=approved/), row.getByRole('button', { name: /^Approve/ }).click()]);
  assert.match(await page.locator('[role=status].notice.ok').innerText(), /Approved/);

  await page.goto(`${BASE}/ui/jobs/${APPROVAL_JOB}`);
  assert.equal(await page.locator('#nte').innerText(), '$750.00');
  assert.equal(await page.locator(`li[data-approval-id="${APPROVAL_ID}"]`).getAttribute('data-status'), 'granted');
  const events = page.locator('table.timeline tbody tr');
  assert.equal(await events.count(), eventsBefore + 2);
  const last = [await events.nth(eventsBefore).innerText(), await events.nth(eventsBefore + 1).innerText()];
  assert.match(last[0], /ApprovalGranted/);
  assert.match(last[1], /NteIncreased/);
  for (const text of last) {
    assert.match(text, /dispatcher-1 \(dispatcher, person\)/);
    assert.match(text, /decide_approval/);
    assert.match(text, /verified/);
  }
  assert.equal(await page.locator('#chain-status').getAttribute('data-verified'), 'true');
  await page.screenshot({ path: path.join(SHOTS, 'job.png'), fullPage: true });
});

test('a tampered event is marked on the timeline', async () => {
  await page.goto(`${BASE}/ui/jobs/${TAMPERED_JOB}`);
  const status = page.locator('#chain-status');
  assert.equal(await status.getAttribute('data-verified'), 'false');
  assert.match(await status.innerText(), new RegExp(`broken at sequence ${TAMPERED_SEQ}`));
  const items = page.locator('table.timeline tbody tr');
  const n = await items.count();
  assert.ok(n > TAMPERED_SEQ);
  for (let i = 0; i < n; i++) {
    const seq = Number(await items.nth(i).getAttribute('data-sequence'));
    const expected = seq < TAMPERED_SEQ ? 'verified' : seq === TAMPERED_SEQ ? 'broken' : 'after-break';
    assert.equal(await items.nth(i).getAttribute('data-chain'), expected, `sequence ${seq}`);
  }
  const broken = page.locator(`#event-${TAMPERED_SEQ}`);
  assert.match(await broken.innerText(), /chain breaks here/);
  await broken.scrollIntoViewIfNeeded();
  await page.locator('#timeline').screenshot({ path: path.join(SHOTS, 'timeline-tampered.png') });
});

test("a door's page shows what it is, its status and its history, from the job page", async () => {
  await page.goto(`${BASE}/ui/jobs/${DOOR_JOB}`);
  const card = page.locator('#door');
  assert.match(await card.innerText(), /impaired/);
  await Promise.all([page.waitForURL(/\/ui\/doors\/door-ad-1$/), page.locator('#door-link').click()]);
  await assertAccessible('door');
  assert.equal(await page.locator('h1').innerText(), 'Door: Main entrance');
  const facts = await page.locator('dl.door-facts').innerText();
  for (const text of ['automatic sliding', 'Stanley', 'Dura-Glide', 'S-77', '2019-05-01', 'Mercy Hospital East', 'Mercy Health', 'Badge at the security desk']) {
    assert.ok(facts.includes(text), `the door's facts show ${text}: ${facts}`);
  }
  // The status is said in words, not colour alone.
  assert.equal(await page.locator('dl.door-facts .door-impaired').innerText(), 'impaired');
  const rows = page.locator('table.history tbody tr');
  const events = await rows.evaluateAll((rs) => rs.map((r) => r.dataset.event));
  assert.deepEqual(events, ['JobOpened', 'DoorStatusChanged', 'DoorRegistered', 'JobOpened']);
  const positions = await rows.evaluateAll((rs) => rs.map((r) => Number(r.dataset.position)));
  assert.ok(positions.every((p, i) => i === 0 || positions[i - 1] > p), `newest first: ${positions}`);
  assert.match(await rows.last().innerText(), /by site and door text/);
  await page.screenshot({ path: path.join(SHOTS, 'door.png'), fullPage: true });
  // Each job links to its page.
  await Promise.all([page.waitForURL(new RegExp(`/ui/jobs/${DOOR_JOB}$`)), rows.first().getByRole('link').click()]);
  assert.match(await page.locator('#summary-door-link').innerText(), /door-ad-1/);
});

test("a technician's key cannot see the approval buttons", async () => {
  // A dispatcher sees the buttons on this job ...
  await page.goto(`${BASE}/ui/jobs/${TECH_JOB}`);
  assert.equal(await page.locator(`li[data-approval-id="${TECH_APPROVAL_ID}"] button.approve`).count(), 1);
  await Promise.all([page.waitForURL(/\/ui\/login$/), page.getByRole('button', { name: 'Log out' }).click()]);

  // ... the technician it is assigned to does not.
  await login(KEYS.tech);
  assert.equal(new URL(page.url()).pathname, '/ui/field', 'a technician lands on My work');
  await page.goto(`${BASE}/ui/technicians/tech-d/schedule`);
  assert.equal(await page.locator('h1').innerText(), 'My visits');
  const nav = await page.getByRole('navigation', { name: 'Main' }).innerText();
  assert.ok(!/Approvals|Board|Billing/.test(nav), `navigation for a technician: ${nav}`);
  await page.goto(`${BASE}/ui/jobs/${TECH_JOB}`);
  const approval = page.locator(`li[data-approval-id="${TECH_APPROVAL_ID}"]`);
  assert.equal(await approval.getAttribute('data-status'), 'pending');
  assert.equal(await page.locator('button.approve, button.reject, form[action*="/decide"]').count(), 0);
  assert.match(await page.locator('#timeline').innerText(), /may not read this job's events/);
  const res = await page.goto(`${BASE}/ui/approvals`);
  assert.equal(res.status(), 403);
  assert.match(await page.locator('h1').innerText(), /Not allowed for your role/);
  await Promise.all([page.waitForURL(/\/ui\/login$/), page.getByRole('button', { name: 'Log out' }).click()]);
});

test('the board is usable on a tablet', async () => {
  await login(KEYS.dispatcher);
  await page.setViewportSize({ width: 820, height: 1180 });
  await page.goto(`${BASE}/ui/board`);
  await page.locator('#live-status[data-state=live]').waitFor();
  const fits = await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
  assert.ok(fits, 'no sideways scrolling of the page');
  const target = await page.getByRole('button', { name: 'Apply filters' }).boundingBox();
  assert.ok(target.height >= 44, 'touch targets are at least 44 px high');
  await page.screenshot({ path: path.join(SHOTS, 'board-tablet.png'), fullPage: false });
});
