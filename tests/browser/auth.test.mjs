// Browser test of signing in (identities): guest sign-up by name (POST /api/guest) and
// staying signed in across reloads with the stored token, names held against
// look-alikes (name_taken), signing out, DMs between guests keyed by user id, a token
// pasted through the login form (minted with `confab token`), its expiry warning and
// refresh, a refused stored token, and the token-only form of `--auth jwt`.
// Run: `node --test --test-concurrency=1 tests/browser/` (needs target/debug/confab
// and /usr/bin/chromium; never downloads a browser).
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { LAUNCH, waitText, waitInGeneral, openPage, openUser, watch, mintToken } from "../support/browser.mjs";
import { confabBin, startServer } from "../support/server.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const ARTIFACTS = path.join(root, "artifacts", "browser");
const WAIT_MS = 10000;


const storage = (page, key) => page.evaluate((k) => localStorage.getItem(k), key);

/** Who the header says is signed in: {name, id} (id from the title). */
async function me(page) {
  const el = page.locator("#me");
  return { name: await el.textContent(), id: await el.getAttribute("title"), visible: await el.isVisible() };
}

/** The login form is shown (and the chat is not), and the page is offline. */
async function assertOnLogin(page, what) {
  await page.locator("#login-view").waitFor({ state: "visible" });
  assert.ok(await page.locator("#chat-view").isHidden(), `${what}: chat view hidden`);
  assert.ok(await page.locator("#me").isHidden(), `${what}: #me hidden`);
  assert.equal(await page.locator("#conn-state").textContent(), "offline", `${what}: offline`);
}

/** Waits for a confirmed message with exactly `text`; returns {from, mine, fromTitle}. */
async function waitMessage(page, text) {
  await waitText(page, "#message-list .message:not(.pending) .text", text);
  return page.$$eval(
    "#message-list .message:not(.pending)",
    (els, t) => {
      const el = els.find((x) => x.querySelector(".text")?.textContent === t);
      return { from: el.querySelector(".from")?.textContent, fromTitle: el.querySelector(".from")?.title, mine: el.classList.contains("mine") };
    },
    text,
  );
}

async function send(page, text) {
  await page.locator("#composer").fill(text);
  await page.locator("#composer").press("Enter");
}

/** Waits until the login error contains `part`; returns its text. */
async function waitLoginError(page, part) {
  await page
    .waitForFunction((p) => document.getElementById("login-error").textContent.includes(p), part, { timeout: WAIT_MS })
    .catch(async (e) => {
      throw new Error(`login-error never contained ${JSON.stringify(part)}; it says ${JSON.stringify(await page.locator("#login-error").textContent())}: ${e.message}`);
    });
  return page.locator("#login-error").textContent();
}

/**
 * Console errors a page may log for what these tests do on purpose: Chromium reports
 * each refused POST /api/guest (409, 400) as a failed resource load, and a socket
 * refused at its handshake may have a long-poll in flight that the server answers 400
 * (as tolerated in xss.test.mjs).
 */
function expectedErrors(url) {
  const u = url.replace(/[.]/g, "\\.");
  return [
    new RegExp(`^console error: Failed to load resource: the server responded with a status of (409 \\(Conflict\\)|400 \\(Bad Request\\)) @ ${u}/api/guest$`),
    new RegExp(`^console error: Failed to load resource: the server responded with a status of 400 \\(Bad Request\\) @ ${u}/socket\\.io/\\?EIO=4&transport=polling&t=[^&]+&sid=`),
  ];
}

function assertClean(user, url, where) {
  const ok = expectedErrors(url);
  const bad = user.problems.filter((p) => !ok.some((re) => re.test(p)));
  assert.deepEqual(bad, [], `${user.name} (${where}): console/page errors`);
  assert.deepEqual(user.dialogs, [], `${user.name} (${where}): dialogs`);
}

test("signing in: guests, names held, sign-out, DMs by id, pasted tokens", { timeout: 240000 }, async (t) => {
  assert.ok(existsSync(confabBin()), `${confabBin()} is missing: run \`cargo build -p confab\` first`);
  assert.ok(existsSync(LAUNCH.executablePath), `${LAUNCH.executablePath} is missing (apt-get install chromium)`);
  const dir = await mkdtemp(path.join(os.tmpdir(), "confab-auth-"));
  const secretFile = path.join(dir, "jwt-secret");
  await writeFile(secretFile, randomBytes(30).toString("base64url"), { mode: 0o600 }); // 40 characters
  const servers = [];
  const users = [];
  let browser;
  const track = (u) => {
    users.push(u);
    return u;
  };
  try {
    const guestServer = await startServer({ args: ["--auth", "guest"] });
    servers.push(guestServer);
    const url = guestServer.url;
    browser = await chromium.launch(LAUNCH);

    await t.test("GET /api/auth says guest", async () => {
      const res = await fetch(`${url}/api/auth`, { signal: AbortSignal.timeout(WAIT_MS) });
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { mode: "guest", guest: true });
    });

    let alice;
    let aliceId;
    await t.test("alice signs in as a guest by typing a name", async () => {
      alice = track(await openPage(browser, url, "alice"));
      const { page } = alice;
      assert.ok(await page.locator("#token-toggle").isVisible(), "the token toggle is offered in guest mode");
      assert.ok(await page.locator("#token-input").isHidden(), "the token field is hidden until toggled");
      await page.locator("#name-input").fill("alice");
      await page.locator("#name-submit").click();
      await waitInGeneral(page);
      const who = await me(page);
      assert.equal(who.name, "alice");
      assert.ok(who.visible, "#me shown");
      assert.match(who.id, /^g_/, "the title is the guest's user id");
      aliceId = who.id;
      assert.ok(await storage(page, "confab.token"), "a token is stored");
      assert.equal(await page.locator("#logout").textContent(), "Sign out");
      assert.equal(await page.locator("#key-input").count(), 0, "no access key field any more");
    });

    await t.test("a reload signs alice in again as the same user, without the login form", async () => {
      const { page } = alice;
      await page.reload({ waitUntil: "load", timeout: WAIT_MS });
      await waitInGeneral(page);
      const who = await me(page);
      assert.deepEqual([who.name, who.id], ["alice", aliceId]);
      assert.ok(await page.locator("#login-view").isHidden(), "login form hidden");
    });

    await t.test("alice's message is shown as her own after a reload", async () => {
      const { page } = alice;
      await send(page, "hello as a guest");
      let m = await waitMessage(page, "hello as a guest");
      assert.deepEqual([m.from, m.mine, m.fromTitle], ["alice", true, aliceId]);
      await page.reload({ waitUntil: "load", timeout: WAIT_MS });
      await waitInGeneral(page);
      m = await waitMessage(page, "hello as a guest");
      assert.deepEqual([m.from, m.mine], ["alice", true], "from history, still mine");
    });

    let bob;
    let bobId;
    await t.test("another browser cannot take alice's name or a look-alike (name_taken), then picks its own", async () => {
      bob = track(await openPage(browser, url, "bob"));
      const { page } = bob;
      for (const name of ["alice", "ALICE", "\u0430lice"]) {
        await page.locator("#name-input").fill(name);
        await page.locator("#name-submit").click();
        const text = await waitLoginError(page, `\`${name}\``);
        assert.match(text, /^name_taken: /, `${JSON.stringify(name)}: ${text}`);
        await assertOnLogin(page, JSON.stringify(name));
        assert.equal(await storage(page, "confab.token"), null, "no token stored");
        assert.ok(await page.locator("#name-submit").isEnabled(), "the form can be used again");
      }
      await page.locator("#name-input").fill("bob");
      await page.locator("#name-submit").click();
      await waitInGeneral(page);
      const who = await me(page);
      assert.equal(who.name, "bob");
      assert.match(who.id, /^g_/);
      assert.notEqual(who.id, aliceId);
      bobId = who.id;
      assert.equal(await page.locator("#login-error").textContent(), "", "the error is cleared");
    });

    await t.test("alice DMs bob by clicking him in the user list; bob answers", async () => {
      await alice.page.locator('#users li[data-name="bob"]').waitFor();
      assert.equal(await alice.page.locator('#users li[data-name="bob"]').getAttribute("data-user"), bobId, "the list is keyed by id");
      await alice.page.locator('#users li[data-name="bob"] button').click();
      await waitText(alice.page, "#pane-title", "@bob");
      await send(alice.page, "psst, bob");
      assert.equal((await waitMessage(alice.page, "psst, bob")).from, "alice");

      // bob is in #general: the conversation appears with an unread badge, titled by name
      const entry = bob.page.locator('#dms li[data-name="alice"]');
      await waitText(bob.page, '#dms li[data-name="alice"] .badge', "1");
      assert.equal(await entry.getAttribute("data-user"), aliceId, "keyed by alice's id");
      assert.equal(await entry.locator(".side-name").textContent(), "@alice");
      await entry.locator("button").click();
      await waitText(bob.page, "#pane-title", "@alice");
      const got = await waitMessage(bob.page, "psst, bob");
      assert.deepEqual([got.from, got.mine], ["alice", false]);
      await send(bob.page, "hi alice, got it");
      const back = await waitMessage(alice.page, "hi alice, got it");
      assert.deepEqual([back.from, back.mine], ["bob", false]);
      await waitMessage(bob.page, "hi alice, got it");
    });

    await t.test("'new message to…' finds an online user by name (any case), and says so when there is none", async () => {
      const { page } = bob;
      await page.locator('#rooms li[data-room="general"] button').click();
      await waitText(page, "#pane-title", "#general");
      await page.locator("#dm-to-input").fill("ALICE");
      await page.locator("#dm-to-submit").click();
      await waitText(page, "#pane-title", "@alice");
      await page.locator('#dms li.active[data-name="alice"]').waitFor();
      assert.equal(await page.locator("#dm-to-input").inputValue(), "", "the field is emptied");
      await waitMessage(page, "psst, bob");
      await page.locator("#dm-to-input").fill("nobody");
      await page.locator("#dm-to-input").press("Enter");
      await waitText(page, "#toast:not(.hidden)", "no online user named nobody");
      assert.equal(await page.locator("#pane-title").textContent(), "@alice", "the view did not change");
      await page.locator("#toast").click();
    });

    await t.test("a second tab of alice's browser is alice too", async () => {
      const page = await alice.context.newPage();
      const tab = { name: "alice-tab2", context: alice.context, page, problems: [], dialogs: [] };
      watch(tab, page);
      try {
        await page.goto(`${url}/`, { waitUntil: "load", timeout: WAIT_MS });
        await waitInGeneral(page);
        const who = await me(page);
        assert.deepEqual([who.name, who.id], ["alice", aliceId]);
        await page.locator('#users li[data-name="alice"] .count').waitFor(); // "2 tabs"
        assertClean(tab, url, "second tab");
      } finally {
        await page.close();
      }
    });

    await t.test("bob closes his page; alice writes to him in their conversation (kept in his inbox)", async () => {
      await bob.page.close();
      users.splice(users.indexOf(bob), 1);
      assertClean(bob, url, "bob's first page");
      await alice.page.locator('#dms li[data-name="bob"] button').click();
      await waitText(alice.page, "#pane-title", "@bob");
      await waitText(alice.page, "#pane-subtitle", "private conversation · offline (messages wait in their inbox)");
      await send(alice.page, "while you were out");
      assert.equal((await waitMessage(alice.page, "while you were out")).from, "alice");
      await alice.page.locator("#message-list .message.pending").waitFor({ state: "detached" });
      assert.equal(await alice.page.locator("#message-list .message.failed").count(), 0, "not failed");
    });

    await t.test("sign out: the login form, the stored token is gone, a reload stays signed out", async () => {
      const { page } = alice;
      await page.locator("#logout").click();
      await assertOnLogin(page, "after sign-out");
      assert.equal(await storage(page, "confab.token"), null, "token forgotten");
      assert.equal(await page.locator("#name-input").inputValue(), "", "the held name is not offered again");
      // Signing out gave the name back (POST /api/signout): it can be picked again.
      let status = 0;
      for (let i = 0; i < 50 && status !== 200; i++) {
        const r = await fetch(`${url}/api/guest`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ name: "ALICE" }),
          signal: AbortSignal.timeout(5000),
        });
        status = r.status;
        if (status !== 200) await new Promise((res) => setTimeout(res, 100));
      }
      assert.equal(status, 200, "the signed-out name is free again");
      await page.reload({ waitUntil: "load", timeout: WAIT_MS });
      await assertOnLogin(page, "after reload");
      assert.ok(await page.locator("#name-input").isVisible(), "the name field is shown");
    });

    await t.test("bob comes back (same browser): alice's DM waits, titled by her name though she is gone", async () => {
      const page = await bob.context.newPage();
      const back = track({ name: "bob-back", context: bob.context, page, problems: [], dialogs: [] });
      watch(back, page);
      await page.goto(`${url}/`, { waitUntil: "load", timeout: WAIT_MS });
      await waitInGeneral(page);
      assert.deepEqual([(await me(page)).name, (await me(page)).id], ["bob", bobId]);
      // alice signed out: her name comes from the messages only (the session counts by id)
      const entry = page.locator(`#dms li[data-user="${aliceId}"]`);
      await waitText(page, `#dms li[data-user="${aliceId}"] .side-name`, "@alice");
      await waitText(page, `#dms li[data-user="${aliceId}"] .badge`, "1");
      await entry.locator("button").click();
      await waitText(page, "#pane-title", "@alice");
      const m = await waitMessage(page, "while you were out");
      assert.deepEqual([m.from, m.mine], ["alice", false]);
      await entry.locator(".badge").waitFor({ state: "detached" });
    });

    await t.test("a stored token the server refuses: dropped, login form with the reason", async () => {
      const u = track(await openPage(browser, url, "stale", { initScript: () => {
        if (!sessionStorage.getItem("seeded")) {
          sessionStorage.setItem("seeded", "1");
          localStorage.setItem("confab.token", "not-a-token");
          localStorage.setItem("confab.tokenKind", "guest");
        }
      } }));
      const text = await waitLoginError(u.page, "unauthorized: ");
      assert.match(text, /^unauthorized: .*token/);
      await assertOnLogin(u.page, "refused token");
      assert.equal(await storage(u.page, "confab.token"), null, "the refused token is dropped");
    });

    // A second server: guest mode with an operator key (tokens from `confab token`),
    // warning of expiry 10 minutes ahead so that a 5-minute token is warned at once.
    const keyed = await startServer({ args: ["--auth", "guest", "--jwt-secret-file", secretFile, "--auth-expiry-warning", "10m"] });
    servers.push(keyed);

    await t.test("a pasted token (confab token) signs in as its user, also after a reload", async () => {
      const token = await mintToken(secretFile, ["--sub", "ops-1", "--name", "Ops", "--role", "admin", "--ttl", "1h"]);
      const ops = track(await openPage(browser, keyed.url, "ops"));
      const { page } = ops;
      await page.locator("#token-toggle").click();
      assert.ok(await page.locator("#token-input").isVisible(), "token field shown");
      assert.ok(await page.locator("#name-input").isHidden(), "name field hidden");
      await page.locator("#token-input").fill(token);
      await page.locator("#name-submit").click();
      await waitInGeneral(page);
      let who = await me(page);
      assert.deepEqual([who.name, who.id], ["Ops", "ops-1"]);
      assert.equal(await storage(page, "confab.token"), token);
      assert.ok(await page.locator("#expiry").isHidden(), "no expiry warning for a 1 h token");
      await page.reload({ waitUntil: "load", timeout: WAIT_MS });
      await waitInGeneral(page);
      who = await me(page);
      assert.deepEqual([who.name, who.id], ["Ops", "ops-1"]);
      assertClean(ops, keyed.url, "pasted token");
    });

    await t.test("a pasted token about to expire: warning, a token for someone else is refused, a new one is taken", async () => {
      const short = await mintToken(secretFile, ["--sub", "ops-2", "--name", "Shorty", "--ttl", "5m"]);
      const u = track(await openPage(browser, keyed.url, "shorty"));
      const { page } = u;
      await page.locator("#token-toggle").click();
      await page.locator("#token-input").fill(short);
      await page.locator("#name-submit").click();
      await waitInGeneral(page);
      await page.locator("#expiry").waitFor({ state: "visible" });
      assert.match(await page.locator("#expiry-text").textContent(), /^your session expires in [45] minutes — paste a new token$/);
      await page.locator("#expiry-token-input").fill(await mintToken(secretFile, ["--sub", "someone-else", "--name", "Else", "--ttl", "1h"]));
      await page.locator("#expiry-submit").click();
      await waitText(page, "#expiry-error", "unauthorized: the token is for another user");
      const renewed = await mintToken(secretFile, ["--sub", "ops-2", "--name", "Shorty", "--ttl", "1h"]);
      await page.locator("#expiry-token-input").fill(renewed);
      await page.locator("#expiry-submit").click();
      await page.locator("#expiry").waitFor({ state: "hidden" });
      assert.equal(await storage(page, "confab.token"), renewed, "the new token is stored");
      assert.equal(await page.locator("#conn-state").textContent(), "online");
      assertClean(u, keyed.url, "expiry");
    });

    await t.test("a pasted token that runs out: the server disconnects, the page asks for a new token", async () => {
      const brief = await mintToken(secretFile, ["--sub", "ops-3", "--name", "Brief", "--ttl", "12s"]);
      const u = track(await openPage(browser, keyed.url, "brief"));
      const { page } = u;
      await page.locator("#token-toggle").click();
      await page.locator("#token-input").fill(brief);
      await page.locator("#name-submit").click();
      await waitInGeneral(page);
      await waitText(page, "#expiry-text", "your session expires in 1 minute — paste a new token");
      // The server disconnects at expiry (within 12 s); the page does not reconnect with it.
      await waitText(page, "#login-error", "Your session has expired: paste a new token.", 20000);
      await assertOnLogin(page, "expired");
      assert.ok(await page.locator("#token-input").isVisible(), "asked for a token");
      assert.equal(await storage(page, "confab.token"), null, "the expired token is dropped");
      assertClean(u, keyed.url, "expired");
    });

    await t.test("a pasted token whose name a guest holds: name_taken, back to the login form", async () => {
      const zed = track(await openUser(browser, keyed.url, "zed"));
      const token = await mintToken(secretFile, ["--sub", "x-2", "--name", "Zed", "--ttl", "1h"]);
      const u = track(await openPage(browser, keyed.url, "fake-zed"));
      await u.page.locator("#token-toggle").click();
      await u.page.locator("#token-input").fill(token);
      await u.page.locator("#name-submit").click();
      const text = await waitLoginError(u.page, "name_taken: ");
      assert.match(text, /`Zed`/);
      await assertOnLogin(u.page, "name_taken handshake");
      assert.equal(await storage(u.page, "confab.token"), null);
      assert.ok(await u.page.locator("#name-input").isVisible(), "asked for another name");
      assert.equal((await me(zed.page)).name, "zed", "the holder is undisturbed");
    });

    // A third server: --auth jwt asks only for a token.
    const jwtServer = await startServer({ args: ["--auth", "jwt", "--jwt-secret-file", secretFile] });
    servers.push(jwtServer);

    await t.test("--auth jwt: the login form asks only for a token", async () => {
      const u = track(await openPage(browser, jwtServer.url, "jwt-user"));
      const { page } = u;
      await page.locator("#token-input").waitFor({ state: "visible" });
      assert.ok(await page.locator("#name-input").isHidden(), "no name field");
      assert.ok(await page.locator("#token-toggle").isHidden(), "no toggle");
      await page.locator("#token-input").fill(await mintToken(secretFile, ["--sub", "u-7", "--name", "Seven", "--ttl", "1h"]));
      await page.locator("#name-submit").click();
      await waitInGeneral(page);
      const who = await me(page);
      assert.deepEqual([who.name, who.id], ["Seven", "u-7"]);
    });

    await t.test("no unexpected console errors, page errors or dialogs", () => {
      for (const u of users) assertClean(u, servers.find((s) => u.page.url().startsWith(s.url))?.url ?? "", "end");
    });
  } finally {
    if (users.length) {
      await mkdir(ARTIFACTS, { recursive: true });
      for (const u of users) {
        await u.page
          .screenshot({ path: path.join(ARTIFACTS, `auth-${u.name}.png`), timeout: WAIT_MS })
          .catch((e) => t.diagnostic(`screenshot ${u.name} failed: ${e.message}`));
      }
    }
    if (browser) await browser.close().catch(() => {});
    for (const s of servers) await s.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
