// Browser test: hostile text from other users is shown literally and never runs, on
// every path by which text reaches the page: room history (sent before the page
// joined), live room messages, DMs from the inbox (sent while the victim was offline)
// and live ones, the page's own sends (sending…, confirmed, failed), join notices,
// the user list, the typing indicator, DM list entries, error toasts and the login
// error. Payloads: HTML/script injection, `javascript:` links, template syntax, and
// bidi overrides / zero-width characters.
//
// The victim's context bypasses the Content-Security-Policy on purpose: the CSP
// (checked by chat.test.mjs) would block inline handlers anyway, and this test is
// about the rendering itself: were any text parsed as HTML, `onerror=window.__xss=1`
// would run here. Independently of handlers firing, an init script records every
// element the page inserts that carries an `on*` handler or a `javascript:` URL, is
// of an active kind (script, iframe, svg, style, …), or sits inside an element that
// holds text (message text, notice, name, toast, …): that check runs with the
// insertion itself, so no grace period for a handler to fire is needed.
//
// User and room names cannot carry markup: the server refuses a name that is not
// 1–32 Unicode letters/digits/`_`/`.`/`-` (no `<`, `"`, `:`, spaces, bidi or
// zero-width format characters) and a room that does not match
// `^[a-z0-9][a-z0-9_-]{0,63}$` (docs/protocol.md); the test asserts those refusals,
// then uses the strange names the rule does let through (right-to-left script, a
// Cyrillic look-alike, `__proto__`, `constructor`, a combining accent).
// Run: `make test-browser` (node --test --test-concurrency=1 tests/browser/).
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { LAUNCH, waitText, openUser, watch } from "../support/browser.mjs";
import { confabBin, startServer, connect, call, waitFor } from "../support/server.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const ARTIFACTS = path.join(root, "artifacts", "browser");
const WAIT_MS = 10000;

const PAYLOADS = [
  "<img src=x onerror=window.__xss=1>",
  "<script>window.__xss=1</script>",
  '"><svg onload=window.__xss=1>',
  "'><iframe srcdoc=\"<script>parent.__xss=1</script>\"></iframe>",
  '<a href="javascript:window.__xss=1">click me</a>',
  "javascript:window.__xss=1",
  "[click](javascript:window.__xss=1) <javascript:window.__xss=1>",
  "<style>body{display:none}</style><b>bold?</b> &lt;img src=x onerror=window.__xss=1&gt; &amp;amp;",
  "{{constructor.constructor('window.__xss=1')()}} ${window.__xss=1} <%= 1 %>",
  "\u202Egnp.exe <img src=x onerror=window.__xss=1>\u202C right-to-left override",
  "zero\u200Bwidth\u200Cnon\u200Djoiner\u2060word\uFEFFbom<img src=x onerror=window.__xss=1>",
  "\u2067isolate <svg/onload=window.__xss=1>\u2069 end \u200F\u200E",
  "multi\nline <img src=x onerror=window.__xss=1>\n\tindented",
];
// Names the server refuses (so no markup, bidi or zero-width character can be in one).
const BAD_NAMES = ["<img src=x onerror=window.__xss=1>", '"><svg onload=x>', "a\u202Eb", "zero\u200Bwidth", "java:script", "a b"];
const BAD_ROOMS = ["<img src=x onerror=window.__xss=1>", "javascript:x", "Lounge", "a\u202Eb", "-x", "a b"];
// Names the rule lets through that a careless page could still get wrong.
const ODD = ["עברית", "\u0430lice", "__proto__", "constructor", "e\u0301te"];
const nfc = (s) => s.normalize("NFC");

/** Runs in every document of the victim's context before the page's own scripts. */
function detector() {
  window.__injected = [];
  // Where the UI puts text from users and the server: never any element inside.
  const SINKS = ".text, .notice, .from, .side-name, #toast, #login-error, .typing-indicator, #pane-title, #pane-subtitle, #users-title";
  // Elements a chat page has no reason to insert at run time, wherever they appear.
  const ACTIVE = new Set(["SCRIPT", "IFRAME", "FRAME", "OBJECT", "EMBED", "STYLE", "LINK", "META", "BASE", "FORM", "svg", "SVG", "MATH", "math"]);
  const URL_ATTRS = /^(href|src|action|formaction|xlink:href|srcdoc|data|poster)$/i;
  const record = (el, why) => window.__injected.push(`${why}: ${el.outerHTML.slice(0, 120)}`);
  const checkAttr = (el, a) => {
    if (/^on/i.test(a.name)) record(el, `${a.name}=`);
    else if (URL_ATTRS.test(a.name) && /^\s*javascript:/i.test(a.value)) record(el, `${a.name}=javascript:`);
  };
  const checkInserted = (el) => {
    if (ACTIVE.has(el.tagName)) record(el, el.tagName);
    else if (el.parentElement?.closest(SINKS)) record(el, `${el.tagName} inside a text element`);
    for (const a of el.attributes) checkAttr(el, a);
  };
  const observer = new MutationObserver((records) => {
    for (const r of records) {
      if (r.type === "attributes") {
        const a = r.target.attributes.getNamedItem(r.attributeName);
        if (a) checkAttr(r.target, a);
        continue;
      }
      for (const n of r.addedNodes) {
        if (n.nodeType !== 1) continue;
        checkInserted(n);
        for (const d of n.querySelectorAll("*")) checkInserted(d);
      }
    }
  });
  // From the end of parsing (the static HTML is not "inserted"), before the UI's
  // deferred module script runs.
  const start = () => observer.observe(document, { subtree: true, childList: true, attributes: true });
  if (document.readyState !== "loading") start();
  else document.addEventListener("readystatechange", start, { once: true });
}

/** The detector's findings and window.__xss, then page problems, all asserted empty. */
async function assertNothingRan(user, where) {
  const seen = await user.page.evaluate(() => ({ xss: window.__xss, injected: window.__injected }));
  assert.equal(seen.xss, undefined, `${user.name} (${where}): window.__xss was set`);
  assert.deepEqual(seen.injected, [], `${user.name} (${where}): elements inserted from text`);
  assert.deepEqual(user.problems, [], `${user.name} (${where}): console/page errors`);
  assert.deepEqual(user.dialogs, [], `${user.name} (${where}): dialogs`);
}

/** Waits until an element matching `selector` has exactly `text` as its only content (one text node). */
function waitLiteral(page, selector, text, timeout = WAIT_MS) {
  return page
    .waitForFunction(
      ([sel, t]) => [...document.querySelectorAll(sel)].some((e) => e.textContent === t && e.childElementCount === 0),
      [selector, text],
      { timeout },
    )
    .catch(async (e) => {
      const seen = await page.$$eval(selector, (els) => els.map((x) => x.innerHTML)).catch(() => "?");
      throw new Error(`waiting for ${selector} with literal text ${JSON.stringify(text)}; saw ${JSON.stringify(seen)}: ${e.message}`);
    });
}

/** Every payload is shown once, literally, as a confirmed message of the current view. */
async function assertAllShown(page, texts, from) {
  for (const t of texts) await waitLiteral(page, "#message-list .message:not(.pending) .text", t);
  const shown = await page.$$eval("#message-list .message:not(.pending)", (els) =>
    els.map((e) => ({ from: e.querySelector(".from")?.textContent, text: e.querySelector(".text")?.textContent })),
  );
  for (const t of texts) {
    const hits = shown.filter((m) => m.text === t);
    assert.equal(hits.length, 1, `shown once: ${JSON.stringify(t)}`);
    if (from) assert.equal(hits[0].from, from, `from of ${JSON.stringify(t)}`);
  }
}

/** Waits for a user in the page's user list whose name label is exactly `name`. */
function waitUserListed(page, name) {
  return page.waitForFunction(
    (n) => [...document.querySelectorAll("#users li")].some((li) => li.dataset.user === n && li.querySelector(".side-name")?.textContent === n),
    name,
    { timeout: WAIT_MS },
  );
}

async function send(page, text) {
  await page.locator("#composer").fill(text);
  await page.locator("#composer").press("Enter");
}

test("hostile text and names are shown literally and never run", { timeout: 180000 }, async (t) => {
  assert.ok(existsSync(confabBin()), `${confabBin()} is missing: run \`cargo build -p confab\` first`);
  assert.ok(existsSync(LAUNCH.executablePath), `${LAUNCH.executablePath} is missing (apt-get install chromium)`);
  const server = await startServer({ args: ["--rate-limit", "200", "--rate-burst", "400"] });
  const sockets = [];
  const users = [];
  let browser;
  const open = async (name) => {
    const u = await openUser(browser, server.url, name, { contextOptions: { bypassCSP: true }, initScript: detector });
    users.push(u);
    return u;
  };
  const sock = async (name) => {
    const s = await connect(server.url, name, { transports: ["websocket"] });
    sockets.push(s);
    return s;
  };
  try {
    browser = await chromium.launch(LAUNCH);

    await t.test("the detectors see an injection when there is one (canary)", async () => {
      const context = await browser.newContext({ bypassCSP: true });
      try {
        await context.addInitScript(detector);
        const page = await context.newPage();
        await page.goto(`${server.url}/`, { waitUntil: "load", timeout: WAIT_MS });
        await page.evaluate((p) => document.getElementById("login-error").insertAdjacentHTML("beforeend", p), PAYLOADS[0]);
        await page.waitForFunction(() => window.__xss === 1, null, { timeout: WAIT_MS });
        const injected = await page.evaluate(() => window.__injected);
        assert.ok(injected.some((x) => x.startsWith("IMG inside a text element: ")), JSON.stringify(injected));
        assert.ok(injected.some((x) => x.startsWith("onerror=: ")), JSON.stringify(injected));
      } finally {
        await context.close();
      }
    });

    await t.test("the server refuses names and rooms that could carry markup, bidi or zero-width characters", async () => {
      for (const name of BAD_NAMES) {
        await assert.rejects(connect(server.url, name, { transports: ["websocket"] }), { message: /^invalid_name: / }, JSON.stringify(name));
      }
      const s = await sock("roomprobe");
      for (const room of BAD_ROOMS) {
        const ack = await call(s, "room:join", { room });
        assert.equal(ack.error?.code, "invalid_room", `${JSON.stringify(room)}: ${JSON.stringify(ack)}`);
      }
    });

    // Before the victim's page exists: history in #general and DMs in the inbox.
    const mallory = await sock("mallory");
    const victimOnce = await sock("victim"); // known user: DMs to them are stored
    victimOnce.close();
    await t.test("mallory fills #general's history and victim's inbox with payloads", async () => {
      assert.equal((await call(mallory, "room:join", { room: "general" })).ok, true);
      for (const text of PAYLOADS) {
        const a = await call(mallory, "message:send", { room: "general", text, clientId: `h${PAYLOADS.indexOf(text)}` });
        assert.equal(a.ok, true, JSON.stringify(a));
        assert.equal(a.message.text, text, "stored verbatim");
        const d = await call(mallory, "dm:send", { to: "victim", text, clientId: `d${PAYLOADS.indexOf(text)}` });
        assert.equal(d.ok, true, JSON.stringify(d));
      }
    });

    const victim = await open("victim");
    await t.test("history: every payload sent before the page joined is shown literally", async () => {
      await assertAllShown(victim.page, PAYLOADS, "mallory");
      await assertNothingRan(victim, "room history");
    });

    await t.test("DM inbox: unread badge, then the conversation shows every payload literally", async () => {
      await waitText(victim.page, '#dms li[data-user="mallory"] .badge', String(PAYLOADS.length));
      await victim.page.locator('#dms li[data-user="mallory"] button').click();
      await waitText(victim.page, "#pane-title", "@mallory");
      await assertAllShown(victim.page, PAYLOADS, "mallory");
      await assertNothingRan(victim, "DM history");
    });

    await t.test("live: payloads in #general and as DMs arrive literally", async () => {
      await victim.page.locator('#rooms li[data-room="general"] button').click();
      await waitText(victim.page, "#pane-title", "#general");
      const live = PAYLOADS.map((p) => `live ${p}`);
      const dms = PAYLOADS.map((p) => `dm ${p}`);
      for (const text of live) assert.equal((await call(mallory, "message:send", { room: "general", text })).ok, true);
      for (const text of dms) assert.equal((await call(mallory, "dm:send", { to: "victim", text })).ok, true);
      await assertAllShown(victim.page, live, "mallory");
      await mkdir(ARTIFACTS, { recursive: true });
      await victim.page.screenshot({ path: path.join(ARTIFACTS, "xss-victim-general.png"), timeout: WAIT_MS });
      // The DMs arrive while #general is shown: counted as unread, shown on opening.
      await waitText(victim.page, '#dms li[data-user="mallory"] .badge', String(dms.length));
      await victim.page.locator('#dms li[data-user="mallory"] button').click();
      await waitText(victim.page, "#pane-title", "@mallory");
      await assertAllShown(victim.page, dms, "mallory");
      await assertNothingRan(victim, "live messages and DMs");
    });

    await t.test("the page's own sends: shown literally and sent verbatim (room and DM)", async () => {
      const own = PAYLOADS.map((p) => `own ${p}`);
      const gotDm = Promise.all(own.map((text) => waitFor(mallory, "dm:new", (m) => m.text === text && m.from === "victim", WAIT_MS)));
      gotDm.catch(() => {}); // awaited below
      for (const text of own) await send(victim.page, text); // still in @mallory
      await assertAllShown(victim.page, own, "victim");
      await gotDm; // mallory received each text exactly as typed
      await victim.page.locator('#rooms li[data-room="general"] button').click();
      await waitText(victim.page, "#pane-title", "#general");
      const gotRoom = Promise.all(own.map((text) => waitFor(mallory, "message:new", (m) => m.text === text && m.from === "victim", WAIT_MS)));
      gotRoom.catch(() => {}); // awaited below
      for (const text of own) await send(victim.page, text);
      await assertAllShown(victim.page, own, "victim");
      await gotRoom;
      await assertNothingRan(victim, "own sends");
    });

    await t.test("strange but valid names: join notices, user list, messages, typing, DM list", async () => {
      const odd = [];
      for (const name of ODD) odd.push(await sock(name));
      for (const name of ODD.map(nfc)) {
        await waitLiteral(victim.page, "#message-list .notice", `${name} joined #general`);
        await waitUserListed(victim.page, name);
      }
      for (const [k, s] of odd.entries()) {
        assert.equal((await call(s, "message:send", { room: "general", text: `hello from ${k}` })).ok, true);
      }
      for (const [k, name] of ODD.map(nfc).entries()) {
        await victim.page.waitForFunction(
          ([n, t]) => [...document.querySelectorAll("#message-list .message")].some((e) => e.querySelector(".from")?.textContent === n && e.querySelector(".text")?.textContent === t),
          [name, `hello from ${k}`],
          { timeout: WAIT_MS },
        );
      }
      // Typing indicator with a right-to-left and a look-alike name.
      assert.equal((await call(odd[0], "typing", { room: "general", typing: true })).ok, true);
      assert.equal((await call(odd[1], "typing", { room: "general", typing: true })).ok, true);
      const [a, b] = [nfc(ODD[0]), nfc(ODD[1])].sort((x, y) => x.localeCompare(y));
      await waitLiteral(victim.page, ".typing-indicator", `${a} and ${b} are typing…`);
      assert.equal((await call(odd[0], "typing", { room: "general", typing: false })).ok, true);
      assert.equal((await call(odd[1], "typing", { room: "general", typing: false })).ok, true);
      await waitText(victim.page, ".typing-indicator", "");
      // DMs from `__proto__` and `constructor`: listed, counted and opened like any other.
      for (const k of [2, 3]) assert.equal((await call(odd[k], "dm:send", { to: "victim", text: `dm from ${ODD[k]}` })).ok, true);
      for (const k of [2, 3]) {
        await victim.page.waitForFunction(
          (n) => [...document.querySelectorAll("#dms li")].some((li) => li.dataset.user === n && li.querySelector(".side-name")?.textContent === `@${n}` && li.querySelector(".badge")?.textContent === "1"),
          ODD[k],
          { timeout: WAIT_MS },
        );
      }
      await victim.page.locator("#dms li", { hasText: "@__proto__" }).locator("button").click();
      await waitText(victim.page, "#pane-title", "@__proto__");
      await waitLiteral(victim.page, "#message-list .message:not(.pending) .text", "dm from __proto__");
      // Leaving: notices with the names, literally.
      for (const s of odd) s.disconnect();
      await victim.page.locator('#rooms li[data-room="general"] button').click();
      await waitText(victim.page, "#pane-title", "#general");
      for (const name of ODD.map(nfc)) await waitLiteral(victim.page, "#message-list .notice", `${name} left #general`);
      await assertNothingRan(victim, "strange names");
    });

    await t.test("error toasts and failed sends show hostile text literally", async () => {
      const toast = (text) => waitLiteral(victim.page, "#toast:not(.hidden)", text);
      // A room name the page itself refuses.
      await victim.page.locator("#room-input").fill(PAYLOADS[0]);
      await victim.page.locator("#room-input").press("Enter");
      await toast("Room names are 1–64 characters: a–z, 0–9, '-' or '_', starting with a letter or digit");
      // A DM recipient the page itself refuses.
      await victim.page.locator("#dm-to-input").fill(PAYLOADS[2]);
      await victim.page.locator("#dm-to-input").press("Enter");
      await toast("User names are 1–32 letters, digits, '_', '.' or '-'");
      // A text the server refuses (control character): failed, with the server's reason.
      const bad = `\u0007${PAYLOADS[0]}`;
      await send(victim.page, bad);
      const failed = victim.page.locator("#message-list .message.failed");
      await failed.waitFor();
      await waitLiteral(victim.page, "#message-list .message.failed .text", bad);
      await toast("Message not sent: text must not contain control characters (found U+0007) (invalid_text)");
      await failed.locator("button", { hasText: "Discard" }).click();
      await failed.waitFor({ state: "detached" });
      // A DM to a name that never connected: failed, user_not_found.
      await victim.page.locator("#dm-to-input").fill("nobody");
      await victim.page.locator("#dm-to-input").press("Enter");
      await waitText(victim.page, "#pane-title", "@nobody");
      await send(victim.page, PAYLOADS[1]);
      await failed.waitFor();
      await waitLiteral(victim.page, "#message-list .message.failed .text", PAYLOADS[1]);
      await toast("Message not sent: no user with id `nobody` has ever connected (user_not_found)");
      await failed.locator("button", { hasText: "Discard" }).click();
      await failed.waitFor({ state: "detached" });
      await assertNothingRan(victim, "toasts and failed sends");
    });

    await t.test("login: a hostile name is refused and the error is shown literally", async () => {
      const context = await browser.newContext({ bypassCSP: true });
      context.setDefaultTimeout(WAIT_MS);
      try {
        await context.addInitScript(detector);
        const page = await context.newPage();
        const login = { name: "login-page", page, problems: [], dialogs: [] };
        watch(login, page);
        await page.goto(`${server.url}/`, { waitUntil: "load", timeout: WAIT_MS });
        await page.locator("#name-input").fill(PAYLOADS[2]);
        await page.locator("#name-submit").click();
        await waitLiteral(page, "#login-error", "invalid_name: name must be 1-32 letters, digits, '_', '.' or '-'");
        assert.equal(await page.locator("#conn-state").textContent(), "offline");
        // Tolerated (seen on some runs, not about this test): the page drops the refused
        // socket while a long-poll of its session is on the way, which the server
        // answers 400, and Chromium logs that response as a console error.
        const refusedPoll = new RegExp(
          `^console error: Failed to load resource: the server responded with a status of 400 \\(Bad Request\\) @ ${server.url.replace(/[.]/g, "\\.")}/socket\\.io/\\?EIO=4&transport=polling&t=[^&]+&sid=`,
        );
        login.problems = login.problems.filter((p) => !refusedPoll.test(p));
        await assertNothingRan(login, "login error");
      } finally {
        await context.close();
      }
    });

    await t.test("nothing ran anywhere, no console errors", async () => {
      for (const u of users) await assertNothingRan(u, "end");
    });
  } finally {
    for (const s of sockets) s.close();
    if (users.length) {
      await mkdir(ARTIFACTS, { recursive: true });
      for (const u of users) {
        await u.page
          .screenshot({ path: path.join(ARTIFACTS, `xss-${u.name}.png`), timeout: WAIT_MS })
          .catch((e) => t.diagnostic(`screenshot ${u.name} failed: ${e.message}`));
      }
    }
    if (browser) await browser.close().catch(() => {});
    await server.stop();
  }
});
