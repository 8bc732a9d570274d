// Browser test of the web UI: two real Chromium pages (two contexts) against a real
// confab binary. Run: `node --test --test-concurrency=1 tests/browser/` (`make
// test-browser`; needs target/debug/confab and /usr/bin/chromium; never downloads a
// browser).
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { LAUNCH, waitText, watch, waitInGeneral, openUser } from "../support/browser.mjs";
import { confabBin, startServer, connect } from "../support/server.mjs";
import { eventually } from "../support/cluster.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const ARTIFACTS = path.join(root, "artifacts", "browser");
const WAIT_MS = 10000;
const XSS = "<img src=x onerror=alert(1)>";


/** A second tab of `user` (same context: the saved name logs it in by itself). */
async function openTab(user, url, label) {
  const page = await user.context.newPage();
  const tab = { name: label, context: user.context, page, problems: [], dialogs: [], cspHeader: null };
  watch(tab, page);
  const resp = await page.goto(`${url}/`, { waitUntil: "load", timeout: WAIT_MS });
  assert.equal(resp.status(), 200, "GET / status");
  tab.cspHeader = resp.headers()["content-security-policy"] ?? null;
  await waitInGeneral(page);
  assert.equal(await page.locator("#me").textContent(), user.name, `${label} is logged in as ${user.name}`);
  return tab;
}

/** Waits until document.title is exactly `title`. */
function waitTitle(page, title, timeout = WAIT_MS) {
  return page.waitForFunction((t) => document.title === t, title, { timeout }).catch(async (e) => {
    throw new Error(`waiting for title ${JSON.stringify(title)}; saw ${JSON.stringify(await page.title().catch(() => "?"))}: ${e.message}`);
  });
}

const badgeOf = (peer) => `#dms li[data-user="${peer}"] .badge`;


/** Waits for a `.message` whose `.text` is exactly `text` in the visible list; returns its data. */
async function waitMessage(page, text, timeout = WAIT_MS) {
  await waitText(page, "#message-list .message:not(.pending) .text", text, timeout);
  return page.$$eval(
    "#message-list .message",
    (els, t) => {
      const el = els.find((x) => x.querySelector(".text")?.textContent === t && !x.classList.contains("pending"));
      const time = el.querySelector("time");
      return {
        id: el.dataset.id,
        from: el.querySelector(".from")?.textContent,
        text: el.querySelector(".text")?.textContent,
        timeText: time?.textContent ?? null,
        dateTime: time?.dateTime ?? null,
      };
    },
    text,
  );
}

async function send(page, text, { viaButton = false } = {}) {
  const composer = page.locator("#composer");
  await composer.fill(text);
  if (viaButton) await page.locator("#send").click();
  else await composer.press("Enter");
}

/** `confab_connections` of the server (its /metrics). */
async function connections(url) {
  const text = await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(WAIT_MS) })).text();
  return Number(/^confab_connections(?:\{[^}]*\})? (\d+)/m.exec(text)?.[1]);
}

/**
 * The server's unread DM counts for `name` (the `unread` of a fresh session), read
 * through a short extra connection as that user; returns once the server has dropped
 * that connection again, so member counts in the pages are not disturbed.
 */
async function unreadOnServer(url, name) {
  const before = await connections(url);
  const probe = await connect(url, name, { transports: ["websocket"] });
  probe.close();
  await eventually(async () => (await connections(url)) === before, WAIT_MS, `connections back to ${before} after the probe`);
  return probe.session.unread;
}

async function listTexts(page) {
  return page.$$eval("#message-list .message .text", (els) => els.map((e) => e.textContent));
}

test("two people chat through the web UI", { timeout: 180000 }, async (t) => {
  assert.ok(existsSync(confabBin()), `${confabBin()} is missing: run \`cargo build -p confab\` first`);
  assert.ok(existsSync(LAUNCH.executablePath), `${LAUNCH.executablePath} is missing (apt-get install chromium)`);
  const server = await startServer();
  let browser;
  const users = [];
  try {
    await t.test("GET / carries the Content-Security-Policy", async () => {
      const res = await fetch(`${server.url}/`, { signal: AbortSignal.timeout(WAIT_MS) });
      assert.equal(res.status, 200);
      const csp = res.headers.get("content-security-policy");
      assert.ok(csp, "Content-Security-Policy header present");
      for (const d of ["default-src 'self'", "script-src 'self'", "object-src 'none'", "frame-ancestors 'none'"]) {
        assert.ok(csp.includes(d), `CSP contains ${d}: ${csp}`);
      }
      assert.ok(!/unsafe-inline|unsafe-eval/.test(csp), `CSP has no unsafe-*: ${csp}`);
      const body = await res.text();
      assert.match(body, /<script type="module" src="\/app.js"><\/script>/);
    });

    browser = await chromium.launch(LAUNCH);
    const alice = await openUser(browser, server.url, "alice");
    users.push(alice);
    const bob = await openUser(browser, server.url, "bob");
    users.push(bob);

    await t.test("the page response itself has the CSP header", () => {
      for (const u of users) assert.ok(u.cspHeader?.includes("script-src 'self'"), `${u.name}: ${u.cspHeader}`);
    });

    await t.test("presence: alice sees bob arrive in #general", async () => {
      await alice.page.locator('#users li[data-user="bob"]').waitFor();
      await waitText(alice.page, "#message-list .notice", "bob joined #general");
      await bob.page.locator('#users li[data-user="alice"]').waitFor();
    });

    await t.test("alice -> bob in #general, with name and timestamp", async () => {
      const before = Date.now();
      await send(alice.page, "hello bob");
      const m = await waitMessage(bob.page, "hello bob");
      assert.equal(m.from, "alice");
      assert.match(m.id, /^\d+-\d+$/);
      assert.ok(m.timeText && /\d/.test(m.timeText), `time text: ${m.timeText}`);
      const ts = Date.parse(m.dateTime);
      assert.ok(Math.abs(ts - before) < 60000, `timestamp ${m.dateTime} close to now`);
      // alice's own copy is confirmed (not left "sending…")
      await waitMessage(alice.page, "hello bob");
      await alice.page.locator("#message-list .message.pending").waitFor({ state: "detached" });
    });

    await t.test("bob -> alice (send button)", async () => {
      await send(bob.page, "hi alice\nsecond line", { viaButton: true });
      const m = await waitMessage(alice.page, "hi alice\nsecond line");
      assert.equal(m.from, "bob");
    });

    await t.test("HTML in a message is shown literally, never parsed", async () => {
      // (tests/browser/xss.test.mjs tries many payloads on every path, CSP bypassed.)
      await send(alice.page, XSS);
      const m = await waitMessage(bob.page, XSS);
      assert.equal(m.text, XSS);
      assert.equal(m.from, "alice");
      await waitMessage(alice.page, XSS);
      // The text is one text node, checked as rendered: no element was made of it, so
      // there is no handler that could still fire (no grace period to wait).
      for (const u of [alice, bob]) {
        const children = await u.page.$$eval("#message-list .message .text", (els, t) => els.filter((e) => e.textContent === t).map((e) => e.childElementCount), XSS);
        assert.deepEqual(children, [0], `${u.name}: the message is a text node`);
        assert.equal(await u.page.locator("#message-list img").count(), 0, `${u.name}: no <img> in the list`);
        assert.deepEqual(u.dialogs, [], `${u.name}: no dialog`);
      }
    });

    await t.test("bob sees 'alice is typing…' and it clears", async () => {
      await alice.page.locator("#composer").click();
      await alice.page.locator("#composer").pressSequentially("I am wri", { delay: 40 });
      await waitText(bob.page, ".typing-indicator", "alice is typing…");
      await alice.page.locator("#composer").fill(""); // emptied -> typing:false
      await waitText(bob.page, ".typing-indicator", "", 7000);
    });

    await t.test("a second room: lounge", async () => {
      await alice.page.locator("#room-input").fill("lounge");
      await alice.page.locator("#room-input").press("Enter");
      await waitText(alice.page, "#pane-title", "#lounge");
      await alice.page.locator('#rooms li.joined.active[data-room="lounge"]').waitFor();

      await bob.page.locator("#room-input").fill("lounge");
      await bob.page.locator("#room-submit").click();
      await waitText(bob.page, "#pane-title", "#lounge");
      await alice.page.locator('#users li[data-user="bob"]').waitFor();

      await send(alice.page, "welcome to the lounge");
      assert.equal((await waitMessage(bob.page, "welcome to the lounge")).from, "alice");
      await send(bob.page, "nice place");
      assert.equal((await waitMessage(alice.page, "nice place")).from, "bob");

      // The lounge view does not show #general's messages ...
      assert.ok(!(await listTexts(bob.page)).includes("hello bob"));
      // ... and #general does not show the lounge's.
      await bob.page.locator('#rooms li[data-room="general"] button').click();
      await waitText(bob.page, "#pane-title", "#general");
      await waitMessage(bob.page, "hello bob");
      const general = await listTexts(bob.page);
      assert.ok(!general.includes("welcome to the lounge"), `general shows: ${JSON.stringify(general)}`);
      assert.ok(!general.includes("nice place"));
    });

    await t.test("bob opens a DM with alice from the user list", async () => {
      await bob.page.locator('#users li[data-user="alice"] button').click();
      await waitText(bob.page, "#pane-title", "@alice");
      await send(bob.page, "psst, a private word");
      await waitMessage(bob.page, "psst, a private word");

      // alice is still in #lounge: she gets an unread badge for the conversation with bob
      await waitText(alice.page, '#dms li[data-user="bob"] .badge', "1");
      await alice.page.locator('#dms li[data-user="bob"] button').click();
      await waitText(alice.page, "#pane-title", "@bob");
      const m = await waitMessage(alice.page, "psst, a private word");
      assert.equal(m.from, "bob");
      assert.equal(await alice.page.locator('#dms li[data-user="bob"] .badge').count(), 0, "badge cleared");

      await send(alice.page, "got it");
      assert.equal((await waitMessage(bob.page, "got it")).from, "alice");
      // the DM never shows up in a room
      await bob.page.locator('#rooms li[data-room="general"] button').click();
      await waitText(bob.page, "#pane-title", "#general");
      assert.ok(!(await listTexts(bob.page)).includes("psst, a private word"));
    });

    await t.test("a DM to a known offline user: carol came once and left; alice writes to her (new message to…)", async () => {
      const first = await openUser(browser, server.url, "carol");
      try {
        // alice is in the DM view with bob: her user list shows who is online
        await alice.page.locator('#users li[data-user="carol"]').waitFor();
        assert.deepEqual(first.problems, [], `carol's first visit: ${first.problems.join("\n")}`);
        assert.deepEqual(first.dialogs, [], "carol's first visit: dialogs");
      } finally {
        await first.context.close();
      }
      await alice.page.locator('#users li[data-user="carol"]').waitFor({ state: "detached" });

      await alice.page.locator("#dm-to-input").fill("carol");
      await alice.page.locator("#dm-to-submit").click();
      await waitText(alice.page, "#pane-title", "@carol");
      await alice.page.locator('#dms li.active[data-user="carol"]').waitFor();
      await waitText(alice.page, "#pane-subtitle", "private conversation · offline (messages wait in their inbox)");
      assert.equal(await alice.page.locator("#dm-to-input").inputValue(), "", "the field is emptied");
      await send(alice.page, "while you were away");
      const m = await waitMessage(alice.page, "while you were away");
      assert.equal(m.from, "alice");
      await alice.page.locator("#message-list .message.pending").waitFor({ state: "detached" });
      assert.equal(await alice.page.locator("#message-list .message.failed").count(), 0, "not failed");
      assert.ok(await alice.page.locator("#toast").isHidden(), "no error toast");
      await mkdir(ARTIFACTS, { recursive: true });
      await alice.page.screenshot({ path: path.join(ARTIFACTS, "alice-dm-offline.png"), timeout: WAIT_MS });
    });

    await t.test("a DM to a name that never connected fails with user_not_found, as before", async () => {
      await alice.page.locator("#dm-to-input").fill("nobody");
      await alice.page.locator("#dm-to-input").press("Enter");
      await waitText(alice.page, "#pane-title", "@nobody");
      await send(alice.page, "anyone there?");
      const failed = alice.page.locator("#message-list .message.failed");
      await failed.waitFor();
      assert.match(await failed.locator(".status").textContent(), /^not sent: .*nobody.* Retry · Discard$/);
      await alice.page.waitForFunction(() => /\(user_not_found\)$/.test(document.querySelector("#toast:not(.hidden)")?.textContent ?? ""));
      await failed.locator("button", { hasText: "Discard" }).click();
      await failed.waitFor({ state: "detached" });
      await alice.page.locator("#toast").click();
      await alice.page.locator("#toast").waitFor({ state: "hidden" });
      // back to carol: the unused conversation with nobody leaves the DM list
      await alice.page.locator('#dms li[data-user="carol"] button').click();
      await waitText(alice.page, "#pane-title", "@carol");
      await waitMessage(alice.page, "while you were away");
      assert.equal(await alice.page.locator('#dms li[data-user="nobody"]').count(), 0, "no @nobody left in the DM list");
    });

    let carol;
    let carol2;
    await t.test("carol comes back: the DM waits with an unread badge, in every tab; reading it clears them all", async () => {
      carol = await openUser(browser, server.url, "carol");
      users.push(carol);
      await waitText(carol.page, badgeOf("alice"), "1");
      await waitTitle(carol.page, "(1) confab");
      assert.equal(await carol.page.locator("#pane-title").textContent(), "#general", "not opened by itself");
      carol2 = await openTab(carol, server.url, "carol-tab2");
      users.push(carol2);
      await waitText(carol2.page, badgeOf("alice"), "1");
      await waitTitle(carol2.page, "(1) confab");
      await mkdir(ARTIFACTS, { recursive: true });
      await carol.page.screenshot({ path: path.join(ARTIFACTS, "carol-unread.png"), timeout: WAIT_MS });

      await carol.page.locator('#dms li[data-user="alice"] button').click();
      await waitText(carol.page, "#pane-title", "@alice");
      const m = await waitMessage(carol.page, "while you were away");
      assert.equal(m.from, "alice");
      await carol.page.locator(badgeOf("alice")).waitFor({ state: "detached" });
      await waitTitle(carol.page, "confab");
      // the other tab hears of it (dm:read push) and clears its badge too
      await carol2.page.locator(badgeOf("alice")).waitFor({ state: "detached" });
      await waitTitle(carol2.page, "confab");
      assert.equal(await carol2.page.locator('#dms li[data-user="alice"]').count(), 1, "the conversation stays listed");
    });

    await t.test("a DM arriving while carol reads the conversation is read at once: no badge anywhere, none after a reload", async () => {
      await send(alice.page, "welcome back");
      assert.equal((await waitMessage(carol.page, "welcome back")).from, "alice");
      // carol's other tab may show the badge for a moment, until the dm:read push
      await carol2.page.locator(badgeOf("alice")).waitFor({ state: "detached" });
      await waitTitle(carol2.page, "confab");
      assert.equal(await carol.page.locator(badgeOf("alice")).count(), 0);
      assert.equal(await carol.page.title(), "confab");
      // the server agrees: a fresh session of that tab counts nothing unread
      await carol2.page.reload({ waitUntil: "load", timeout: WAIT_MS });
      await waitInGeneral(carol2.page);
      assert.equal(await carol2.page.locator("#dms .badge").count(), 0, "no unread badge after reload");
      assert.equal(await carol2.page.title(), "confab");
    });

    await t.test("a DM arriving while carol's tab is hidden stays unread until she looks again", async () => {
      const setHidden = (page, hidden) =>
        page.evaluate((h) => {
          if (h) Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "hidden" });
          else delete document.visibilityState;
          document.dispatchEvent(new Event("visibilitychange"));
        }, hidden);
      await setHidden(carol.page, true);
      await send(alice.page, "are you still there?");
      await waitMessage(carol.page, "are you still there?");
      await waitText(carol.page, badgeOf("alice"), "1");
      await waitTitle(carol.page, "(1) confab");
      await waitText(carol2.page, badgeOf("alice"), "1");
      // Nobody marks it read: the server still counts it unread for carol once her
      // hidden page has it (a page that marked it read would have sent dm:read as the
      // DM arrived, before showing it), so no dm:read push can clear carol2's badge.
      assert.deepEqual(await unreadOnServer(server.url, "carol"), { alice: 1 });
      assert.equal(await carol2.page.locator(badgeOf("alice")).textContent(), "1");
      assert.equal(await carol.page.locator(badgeOf("alice")).textContent(), "1");
      await setHidden(carol.page, false);
      await carol.page.locator(badgeOf("alice")).waitFor({ state: "detached" });
      await waitTitle(carol.page, "confab");
      await carol2.page.locator(badgeOf("alice")).waitFor({ state: "detached" });
      await waitTitle(carol2.page, "confab");
    });

    await t.test("member counts follow a tab closing without a view switch (periodic users:list refresh)", async () => {
      // carol has two tabs in #general; alice switches to #general and sees both
      await alice.page.locator('#rooms li[data-room="general"] button').click();
      await waitText(alice.page, "#pane-title", "#general");
      await waitText(alice.page, '#users li[data-user="carol"] .count', "2 tabs");
      await mkdir(ARTIFACTS, { recursive: true });
      await carol2.page.screenshot({ path: path.join(ARTIFACTS, "carol-tab2.png"), timeout: WAIT_MS });
      users.splice(users.indexOf(carol2), 1);
      assert.deepEqual(carol2.problems, [], `carol's second tab: ${carol2.problems.join("\n")}`);
      assert.deepEqual(carol2.dialogs, [], "carol's second tab: dialogs");
      await carol2.page.close();
      // no presence push (carol is still there): only a users:list refresh can notice
      await alice.page.locator('#users li[data-user="carol"] .count').waitFor({ state: "detached", timeout: 15000 });
      await alice.page.locator('#users li[data-user="carol"]').waitFor();
    });

    await t.test("no console errors, page errors or dialogs", () => {
      for (const u of users) {
        assert.deepEqual(u.problems, [], `${u.name}: ${u.problems.join("\n")}`);
        assert.deepEqual(u.dialogs, [], `${u.name}: dialogs`);
      }
    });
  } finally {
    if (users.length) {
      await mkdir(ARTIFACTS, { recursive: true });
      for (const u of users) {
        await u.page
          .screenshot({ path: path.join(ARTIFACTS, `${u.name}.png`), timeout: WAIT_MS })
          .catch((e) => t.diagnostic(`screenshot ${u.name} failed: ${e.message}`));
      }
    }
    if (browser) await browser.close().catch(() => {});
    await server.stop();
  }
});
