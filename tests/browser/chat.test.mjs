// Browser test of the web UI: two real Chromium pages (two contexts) against a real
// confab binary. Run: `node --test tests/browser/` (needs target/debug/confab and
// /usr/bin/chromium; never downloads a browser).
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { confabBin, startServer } from "../support/server.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const ARTIFACTS = path.join(root, "artifacts", "browser");
const WAIT_MS = 10000;
const XSS = "<img src=x onerror=alert(1)>";

const LAUNCH = {
  executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  timeout: 30000,
};

/** Opens a fresh context + page, logs in as `name`, waits until online in #general. */
async function openUser(browser, url, name) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 720 } });
  context.setDefaultTimeout(WAIT_MS);
  const page = await context.newPage();
  const user = { name, context, page, problems: [], dialogs: [], cspHeader: null };
  page.on("console", (m) => {
    if (m.type() === "error") user.problems.push(`console error: ${m.text()} @ ${m.location()?.url ?? ""}`);
  });
  page.on("pageerror", (e) => user.problems.push(`pageerror: ${e.message}`));
  page.on("dialog", (d) => {
    user.dialogs.push(`${d.type()}: ${d.message()}`);
    d.dismiss().catch(() => {});
  });
  const resp = await page.goto(`${url}/`, { waitUntil: "load", timeout: WAIT_MS });
  assert.equal(resp.status(), 200, "GET / status");
  user.cspHeader = resp.headers()["content-security-policy"] ?? null;
  await page.locator("#name-input").fill(name);
  await page.locator("#name-submit").click();
  await waitText(page, "#conn-state", "online");
  await page.locator('#rooms li.joined.active[data-room="general"]').waitFor();
  await waitText(page, "#pane-title", "#general");
  return user;
}

/** Waits until some element matching `selector` has exactly `text` as textContent. */
function waitText(page, selector, text, timeout = WAIT_MS) {
  return page
    .waitForFunction(
      ([sel, t]) => [...document.querySelectorAll(sel)].some((e) => e.textContent === t),
      [selector, text],
      { timeout },
    )
    .catch(async (e) => {
      const seen = await page
        .$$eval(selector, (els) => els.map((x) => x.textContent))
        .catch(() => "?");
      throw new Error(`waiting for ${selector} with text ${JSON.stringify(text)}; saw ${JSON.stringify(seen)}: ${e.message}`);
    });
}

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
      await send(alice.page, XSS);
      const m = await waitMessage(bob.page, XSS);
      assert.equal(m.text, XSS);
      assert.equal(m.from, "alice");
      await bob.page.waitForTimeout(500); // give a would-be onerror handler time to fire
      for (const u of [alice, bob]) {
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
