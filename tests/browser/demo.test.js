// The demo page in a real browser: Playwright (playwright-core, no browser of its own) driving
// Debian's Chromium against a running `chat` with its generated development secret.
// `run` beside this file builds and starts the server and sets the environment (its header says
// how); what the page does is in docs/demo.md.
//
//   BASE_URL       the server, e.g. http://127.0.0.1:8123 (required)
//   CHROMIUM       the browser (default /usr/bin/chromium)
//   ARTIFACTS_DIR  where screenshots go (default: the system temp dir)
//   SCREENSHOT     also write the final screenshot of alice's page here (e.g. docs/demo.png)

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const BASE = process.env.BASE_URL;
if (!BASE) throw new Error('BASE_URL is not set (tests/browser/run sets it)');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = process.env.ARTIFACTS_DIR || os.tmpdir();
/** Every wait of a page: long enough for a loaded 2-core CI machine, short enough to fail. */
const WAIT_MS = 15_000;

let browser;
const pages = {};

before(async () => {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    // Root in CI: Chromium's sandbox needs user namespaces that a container may not give.
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
});

after(async () => {
  if (browser) await browser.close();
});

/** On failure: what each page showed (their console errors were printed as they came). */
async function screenshotsOfFailure() {
  for (const [name, page] of Object.entries(pages)) {
    if (page.isClosed()) continue;
    const file = path.join(ARTIFACTS, `failure-${name}.png`);
    await page.screenshot({ path: file }).catch(() => {});
    console.error(`# screenshot of ${name}'s page at the failure: ${file}`);
  }
}

/** A test whose failure leaves screenshots of every page behind. */
function browserTest(name, body) {
  test(name, async () => {
    try {
      await body();
    } catch (error) {
      await screenshotsOfFailure();
      throw error;
    }
  });
}

/** A page of its own browser context (its own session storage), 1200x750, whose console
 *  errors and failed requests are reported. */
async function openPage(name) {
  const context = await browser.newContext({ viewport: { width: 1200, height: 750 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') console.error(`# [${name} console ${msg.type()}] ${msg.text()}`);
  });
  page.on('pageerror', (error) => console.error(`# [${name} page error] ${error.message}`));
  pages[name] = page;
  return page;
}

/** Waits until `selector` (in `page`) has an element whose text contains `text`. */
async function seeText(page, selector, text, what) {
  try {
    await page.locator(selector, { hasText: text }).first().waitFor({ state: 'visible', timeout: WAIT_MS });
  } catch {
    const actual = await page.locator(selector).allTextContents().catch(() => []);
    assert.fail(`${what}: no ${selector} containing ${JSON.stringify(text)} within ${WAIT_MS} ms; found ${JSON.stringify(actual)}`);
  }
}

/** Waits until `fn` (run in `page`) is truthy. */
async function until(page, fn, arg, what) {
  try {
    await page.waitForFunction(fn, arg, { timeout: WAIT_MS });
  } catch {
    assert.fail(`${what}: not within ${WAIT_MS} ms`);
  }
}

async function api(method, path, token, body) {
  const res = await fetch(`${BASE}/api/v1/chat${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await res.json();
  assert.ok(res.ok, `${method} ${path}: ${res.status} ${JSON.stringify(data)}`);
  return data;
}

async function mint(userId) {
  const res = await fetch(`${BASE}/demo/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ userId }),
  });
  assert.equal(res.status, 200, `POST /demo/token: the server must run with its generated secret`);
  return (await res.json()).token;
}

const item = (userId) => `#conversations li[data-with="${userId}"]`;

browserTest('two users chat live on the demo page', async () => {
  // Carol, through the API alone, asks alice about a flat: alice's list has an unread
  // conversation before she even signs in.
  const carol = await mint('carol');
  await api('POST', '/conversations', carol, {
    participantIds: ['alice'],
    type: 'property_inquiry',
    propertyId: 'prop_42',
    title: '2BR on Elm St',
    initialMessage: 'Hello! Is the 2BR on Elm St still available in June?',
  });

  // Alice signs in through the page's development-token form.
  const alice = await openPage('alice');
  await alice.goto(`${BASE}/`);
  await alice.locator('#mint-user').fill('alice');
  await alice.locator('#mint-form button[type=submit]').click();
  await seeText(alice, '#me', 'alice', 'alice signed in');
  await seeText(alice, '#connection-status', 'connected', "alice's socket");
  await seeText(alice, `${item('carol')} .badge`, '1', "carol's unread message on alice's list");
  await seeText(alice, `${item('carol')} .preview`, 'still available in June', "carol's preview");

  // Bob signs in with ?token=, which leaves the address bar at once.
  const bob = await openPage('bob');
  await bob.goto(`${BASE}/?token=${encodeURIComponent(await mint('bob'))}`);
  await seeText(bob, '#me', 'bob', 'bob signed in');
  await seeText(bob, '#connection-status', 'connected', "bob's socket");
  assert.ok(!bob.url().includes('token='), `the token stays out of the URL: ${bob.url()}`);

  // Alice starts a conversation with bob, who is online.
  await alice.locator('#new-with').fill('bob');
  await alice.locator('#new-conversation button[type=submit]').click();
  await seeText(alice, '#open-title', 'bob', 'the new conversation open on alice');
  await seeText(alice, '#presence', 'online', "bob's presence on alice's page");
  await seeText(bob, `${item('alice')} .preview`, 'No messages yet', 'the new conversation on bob, live');

  // Alice sends; bob's list shows it live, unread.
  await alice.locator('#message-input').fill('Hi Bob! Is the flat on Elm St still available?');
  await alice.locator('#message-input').press('Enter');
  await seeText(alice, '#messages li.mine', 'still available?', "alice's message on her page");
  await seeText(bob, `${item('alice')} .preview`, 'Is the flat on Elm St still available?', "alice's message on bob's list");
  await seeText(bob, `${item('alice')} .badge`, '1', "bob's unread count");

  // Alice types: bob sees it while she does; her message ends it.
  await alice.locator('#message-input').pressSequentially('Could I see it on Saturday?', { delay: 40 });
  await seeText(bob, `${item('alice')} .typing-preview`, 'alice is typing', "alice's typing on bob's list");
  await alice.locator('#message-input').press('Enter');
  await seeText(bob, `${item('alice')} .preview`, 'Could I see it on Saturday?', "alice's second message on bob's list");
  assert.equal(await bob.locator(`${item('alice')} .typing-preview`).count(), 0, 'typing ends with the message');
  await seeText(bob, `${item('alice')} .badge`, '2', "bob's unread count before he opens the conversation");
  assert.equal(await alice.locator('#messages .receipt[data-status="read"]').count(), 0, 'nothing read yet');

  // Bob opens it: both messages, alice online, and alice sees her messages read.
  await bob.locator(`${item('alice')} button`).click();
  await seeText(bob, '#messages li.theirs', 'Could I see it on Saturday?', 'the conversation open on bob');
  await seeText(bob, '#presence', 'online', "alice's presence on bob's page");
  await until(bob, (sel) => document.querySelectorAll(sel).length === 0, `${item('alice')} .badge`, "bob's unread count cleared");
  await until(
    alice,
    () => [...document.querySelectorAll('#messages li.mine .receipt')].every((r) => r.dataset.status === 'read')
      && document.querySelectorAll('#messages li.mine .receipt').length === 2,
    undefined,
    "read receipts of both of alice's messages on her page",
  );

  // Bob answers; alice, who has the conversation open, sees him type, then the message, and
  // reads it at once: bob sees his receipt.
  await bob.locator('#message-input').pressSequentially('Yes, Saturday 10am works.', { delay: 40 });
  await seeText(alice, '#typing', 'bob is typing', "bob's typing in alice's open conversation");
  await bob.locator('#message-input').press('Enter');
  await seeText(alice, '#messages li.theirs', 'Saturday 10am works', "bob's answer on alice's page, live");
  await until(alice, () => document.getElementById('typing').textContent === '', undefined, 'typing ends on alice');
  await seeText(bob, '#messages li.mine .receipt[data-status="read"]', 'Read', "bob's receipt: alice read it");

  // The picture for the docs: alice's page while bob types his next line.
  await bob.locator('#message-input').pressSequentially('I will bring the lease', { delay: 30 });
  await seeText(alice, '#typing', 'bob is typing', "bob's typing again");
  await alice.locator('#message-input').fill('');
  const shot = path.join(ARTIFACTS, 'demo.png');
  await alice.screenshot({ path: shot });
  if (process.env.SCREENSHOT) fs.copyFileSync(shot, process.env.SCREENSHOT);
  console.log(`# screenshot: ${process.env.SCREENSHOT || shot}`);

  // Bob leaves: alice sees him go offline, and his typing end with his socket.
  await bob.context().close();
  await seeText(alice, '#presence', 'offline', "bob's presence after he left");
  await until(alice, () => document.getElementById('typing').textContent === '', undefined, "bob's typing ends when he leaves");
});
