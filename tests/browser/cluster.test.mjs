// Browser test of the web UI in cluster mode: a real redis-server (AOF), three confab
// gateways and nginx (the repository's nginx.conf), two Chromium contexts (alice, bob)
// pinned to DIFFERENT gateways with the `confab_route` cookie. Checks what users see:
// presence and messages across gateways, history after a reload, and a gateway killed
// with SIGKILL under bob (he reconnects through nginx to a survivor and his timeline has
// every message exactly once, in order; what he typed while reconnecting reaches alice
// exactly once). Run: `node --test tests/browser/cluster.test.mjs` (needs
// target/debug/confab, /usr/bin/chromium, redis-server and nginx; never downloads a browser).
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { LAUNCH, waitText } from "../support/browser.mjs";
import { confabBin, connect, call } from "../support/server.mjs";
import { startRedis, startGateway, startNginx, redisCli, stopAll, eventually } from "../support/cluster.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const ARTIFACTS = path.join(root, "artifacts", "browser");
const WAIT_MS = 10000;
const RECONNECT_MS = 15000;
const TTL_MS = 3000;
const GW_ARGS = ["--gateway-ttl-ms", String(TTL_MS), "--presence-interval-ms", "200"];
const GW_IDS = ["gw1", "gw2", "gw3"];



/** `confab_connections` of each gateway (0 for a dead one), as in tests/cluster/. */
async function connectionsPerGateway(gw) {
  const out = [];
  for (const g of gw) {
    if (!g.running) {
      out.push(0);
      continue;
    }
    const text = await (await fetch(g.url + "/metrics", { signal: AbortSignal.timeout(5000) })).text();
    const m = text.match(/^confab_connections(?:\{[^}]*\})? (\d+)/m);
    out.push(m ? Number(m[1]) : 0);
  }
  return out;
}

const delta = (after, before) => after.map((n, i) => n - before[i]);

/** Index of the single gateway whose count grew by one (and none other changed), else -1. */
function gainedOne(d) {
  const i = d.findIndex((x) => x === 1);
  return i >= 0 && d.every((x, j) => j === i || x === 0) ? i : -1;
}

/**
 * Which gateway nginx sends a route cookie value to: connect a socket.io-client through
 * nginx carrying the cookie, see whose `confab_connections` grows, disconnect and wait
 * for the counts to settle back.
 */
async function gatewayOfRoute(gw, nginxUrl, value, probeName) {
  const before = await connectionsPerGateway(gw);
  const s = await connect(nginxUrl, probeName, { extraHeaders: { cookie: `confab_route=${value}` } });
  try {
    const d = delta(await connectionsPerGateway(gw), before);
    const i = gainedOne(d);
    assert.ok(i >= 0, `probe ${value}: connections per gateway changed by ${JSON.stringify(d)}`);
    return i;
  } finally {
    s.close();
    await eventually(
      async () => JSON.stringify(await connectionsPerGateway(gw)) === JSON.stringify(before),
      5000,
      `connections back to ${JSON.stringify(before)} after probe ${value}`,
    );
  }
}


/** Waits for a confirmed (not pending) `.message` whose `.text` is exactly `text`. */
function waitMessage(page, text, timeout = WAIT_MS) {
  return waitText(page, "#message-list .message:not(.pending) .text", text, timeout);
}

async function send(page, text) {
  const composer = page.locator("#composer");
  await composer.fill(text);
  await composer.press("Enter");
}

/** Every `.message .text` of the current view (pending ones included), in DOM order. */
function listTexts(page) {
  return page.$$eval("#message-list .message .text", (els) => els.map((e) => e.textContent));
}

/** #general must be the view for listTexts to be #general's timeline. */
async function assertGeneralView(page) {
  assert.equal(await page.locator("#pane-title").textContent(), "#general");
}

/**
 * A fresh context whose `confab_route` cookie is `route` (so nginx pins it to one
 * gateway), with a log of #conn-state changes and of console errors / page errors.
 */
async function openUser(browser, nginxUrl, name, route, t0) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 720 } });
  context.setDefaultTimeout(WAIT_MS);
  await context.addCookies([{ name: "confab_route", value: route, url: `${nginxUrl}/` }]);
  // Observation only: records every #conn-state text with the time it was shown.
  await context.addInitScript(() => {
    window.__connLog = [];
    document.addEventListener("DOMContentLoaded", () => {
      const el = document.getElementById("conn-state");
      if (!el) return;
      const rec = () => window.__connLog.push({ state: el.textContent, at: Date.now() });
      rec();
      new MutationObserver(rec).observe(el, { childList: true, characterData: true, subtree: true });
    });
  });
  const page = await context.newPage();
  const user = { name, route, context, page, problems: [], dialogs: [] };
  page.on("console", (m) => {
    if (m.type() === "error") {
      user.problems.push({ at: Date.now() - t0, text: `console error: ${m.text()}`, url: m.location()?.url ?? "" });
    }
  });
  page.on("pageerror", (e) => user.problems.push({ at: Date.now() - t0, text: `pageerror: ${e.message}`, url: "" }));
  page.on("dialog", (d) => {
    user.dialogs.push(`${d.type()}: ${d.message()}`);
    d.dismiss().catch(() => {});
  });
  const resp = await page.goto(`${nginxUrl}/`, { waitUntil: "load", timeout: WAIT_MS });
  assert.equal(resp.status(), 200, "GET / status");
  await page.locator("#name-input").fill(name);
  await page.locator("#name-submit").click();
  await waitOnlineInGeneral(page);
  return user;
}

async function waitOnlineInGeneral(page, timeout = WAIT_MS) {
  await waitText(page, "#conn-state", "online", timeout);
  await page.locator('#rooms li.joined.active[data-room="general"]').waitFor({ timeout });
  await waitText(page, "#pane-title", "#general", timeout);
}

test("two browsers on different gateways of a cluster: presence, messages, history, a gateway killed under one of them", { timeout: 120000 }, async (t) => {
  assert.ok(existsSync(confabBin()), `${confabBin()} is missing: run \`cargo build -p confab\` first`);
  assert.ok(existsSync(LAUNCH.executablePath), `${LAUNCH.executablePath} is missing (apt-get install chromium)`);
  const t0 = Date.now();
  const procs = [];
  const sockets = [];
  const users = [];
  let browser;
  let nginx;
  let failed = false;
  /** Sequential steps: once one fails, the later ones are skipped (they depend on it). */
  const step = (name, fn) =>
    t.test(name, { skip: failed && "an earlier step failed" }, async () => {
      try {
        await fn();
      } catch (e) {
        failed = true;
        throw e;
      }
    });

  try {
    const redis = await startRedis({ appendonly: true });
    procs.push(redis);
    const gw = [];
    for (const id of GW_IDS) {
      const g = await startGateway({ redisUrl: redis.url, id, args: GW_ARGS });
      procs.push(g);
      gw.push(g);
    }
    nginx = await startNginx({ gatewayPorts: gw.map((g) => g.port) });
    procs.push(nginx);
    const counts = () => connectionsPerGateway(gw);

    // Two route cookie values that nginx hashes to two different gateways.
    const routes = [];
    await step("probe confab_route values until two map to different gateways", async () => {
      for (let i = 0; routes.length < 2 && i < 16; i++) {
        const value = `browser-route-${i}`;
        const g = await gatewayOfRoute(gw, nginx.url, value, `probe-${i}`);
        if (!routes.some((r) => r.gw === g)) routes.push({ value, gw: g });
      }
      assert.equal(routes.length, 2, "found two route values on different gateways");
      t.diagnostic(`routes: ${routes.map((r) => `${r.value} -> ${GW_IDS[r.gw]}`).join(", ")}`);
    });

    browser = await chromium.launch(LAUNCH);
    let alice;
    let bob;
    let bobGw = -1;
    let aliceGw = -1;
    let afterLogin;
    await step("alice and bob log in through nginx and land on different gateways", async () => {
      const c0 = await counts();
      alice = await openUser(browser, nginx.url, "alice", routes[0].value, t0);
      users.push(alice);
      const c1 = await eventually(async () => {
        const c = await counts();
        return gainedOne(delta(c, c0)) >= 0 ? c : null;
      }, 5000, "one new connection on one gateway for alice");
      aliceGw = gainedOne(delta(c1, c0));
      bob = await openUser(browser, nginx.url, "bob", routes[1].value, t0);
      users.push(bob);
      const c2 = await eventually(async () => {
        const c = await counts();
        return gainedOne(delta(c, c1)) >= 0 ? c : null;
      }, 5000, "one new connection on one gateway for bob");
      bobGw = gainedOne(delta(c2, c1));
      afterLogin = c2;
      t.diagnostic(`alice on ${GW_IDS[aliceGw]}, bob on ${GW_IDS[bobGw]}, connections ${JSON.stringify(c2)}`);
      assert.equal(aliceGw, routes[0].gw, "alice is where her route cookie was probed to go");
      assert.equal(bobGw, routes[1].gw, "bob is where his route cookie was probed to go");
      assert.notEqual(aliceGw, bobGw, "alice and bob are on different gateways");
      // The page kept the cookie we set (nginx re-sends the existing value).
      const cookie = (await bob.context.cookies(nginx.url)).find((c) => c.name === "confab_route");
      assert.equal(cookie?.value, routes[1].value);
    });

    await step("presence across gateways: each sees the other in #general's user list", async () => {
      await alice.page.locator('#users li[data-user="bob"]').waitFor();
      await bob.page.locator('#users li[data-user="alice"]').waitFor();
      await alice.page.locator('#users li[data-user="alice"]').waitFor();
      await waitText(alice.page, "#message-list .notice", "bob joined #general");
    });

    const expected = [];
    let leftBefore = 0;
    let outage = null; // [kill, bob online again] in ms since t0
    await step("messages across gateways: alice -> bob and bob -> alice", async () => {
      await send(alice.page, "hello bob, from another gateway");
      expected.push("hello bob, from another gateway");
      await waitMessage(bob.page, expected[0]);
      await waitMessage(alice.page, expected[0]);
      await send(bob.page, "hi alice, got it");
      expected.push("hi alice, got it");
      await waitMessage(alice.page, expected[1]);
      await waitMessage(bob.page, expected[1]);
      for (const u of [alice, bob]) {
        await u.page.locator("#message-list .message.pending").waitFor({ state: "detached" });
        await assertGeneralView(u.page);
        assert.deepEqual(await listTexts(u.page), expected, `${u.name}'s #general`);
      }
    });

    await step("history across gateways: bob reloads the page and sees both messages", async () => {
      await bob.page.reload({ waitUntil: "load", timeout: WAIT_MS });
      // The name is remembered: the page logs in again by itself.
      await waitOnlineInGeneral(bob.page);
      await waitMessage(bob.page, expected[1]);
      await assertGeneralView(bob.page);
      assert.deepEqual(await listTexts(bob.page), expected, "bob's #general after reload");
      // Same route cookie, same gateway: the old connection closed, the new one is there.
      await eventually(
        async () => JSON.stringify(await counts()) === JSON.stringify(afterLogin),
        5000,
        `connections back to ${JSON.stringify(afterLogin)} after bob's reload`,
      );
      await bob.page.locator('#users li[data-user="alice"]').waitFor();
    });

    await step("kill -9 bob's gateway: bob reconnects to a survivor, misses nothing, sees nothing twice; what he sent meanwhile reaches alice once", async () => {
      leftBefore = await alice.page.locator('#message-list .notice:text-is("bob left #general")').count();
      const victim = gw[bobGw];

      // bob's gateway dies just as he presses Enter: the page emits on a connection that
      // is already dead (or notices first and keeps the message "sending…"). The message
      // must be resent with its clientId after the reconnect and stored exactly once.
      const inflightText = "sent as the gateway died";
      const offlineText = "typed while reconnecting";
      const away = ["while you were away 1", "while you were away 2", "while you were away 3"];
      await bob.page.locator("#composer").fill(inflightText);
      const killedAt = Date.now();
      const killed = victim.kill9(); // SIGKILL is sent synchronously here
      let sawReconnecting;
      let pendingNow;
      await Promise.all([
        (async () => {
          await bob.page.locator("#composer").press("Enter");
          await killed;
          await waitText(bob.page, "#conn-state", "reconnecting", 5000);
          sawReconnecting = Date.now();
          // While reconnecting, bob types one more message: it stays "sending…".
          await send(bob.page, offlineText);
          pendingNow = await bob.page.evaluate(() => ({
            state: document.getElementById("conn-state").textContent,
            pending: [...document.querySelectorAll("#message-list .message.pending .text")].map((e) => e.textContent),
          }));
        })(),
        (async () => {
          // Meanwhile alice (on another gateway) sends three.
          for (const text of away) await send(alice.page, text);
          for (const text of away) await waitMessage(alice.page, text);
        })(),
      ]);
      const aliceDoneAt = Date.now();
      // Server time (ms part of the id) at which alice's three were stored.
      const awayStoredAt = await alice.page.$$eval(
        "#message-list .message",
        (els, texts) => els.filter((e) => texts.includes(e.querySelector(".text")?.textContent)).map((e) => Number(e.dataset.id.split("-")[0])),
        away,
      );

      await waitText(bob.page, "#conn-state", "online", RECONNECT_MS);
      const log = await bob.page.evaluate(() => window.__connLog);
      const backAt = log.filter((e) => e.state === "online").at(-1).at;
      t.diagnostic(
        `bob: reconnecting ${sawReconnecting - killedAt} ms after the kill, online again ${backAt - killedAt} ms after it; ` +
          `alice's three messages stored ${JSON.stringify(awayStoredAt.map((x) => x - killedAt))} ms and confirmed ${aliceDoneAt - killedAt} ms after it; ` +
          `bob's conn-state log ${JSON.stringify(log.map((e) => `${e.state}@${e.at - killedAt}`))}; pending on bob's page while reconnecting: ${JSON.stringify(pendingNow)}`,
      );
      assert.equal(pendingNow.state, "reconnecting", "bob typed while reconnecting");
      assert.deepEqual(pendingNow.pending, [inflightText, offlineText], "bob's two messages are shown as sending… while reconnecting");
      outage = [killedAt - t0, backAt - t0];
      assert.ok(backAt - killedAt <= RECONNECT_MS, `bob online again after ${backAt - killedAt} ms`);
      assert.equal(awayStoredAt.length, 3);
      assert.ok(awayStoredAt.every((ms) => ms <= backAt), "alice's three messages were stored while bob was disconnected");

      // bob is now on a surviving gateway (possibly alice's: nginx takes the next one on the hash ring).
      const c = await counts();
      t.diagnostic(`connections after bob's reconnect ${JSON.stringify(c)}`);
      assert.equal(c[bobGw], 0);
      assert.ok(c[aliceGw] >= 1, "alice is still on her gateway");
      assert.equal(c.reduce((a, b) => a + b, 0), 2, `connections ${JSON.stringify(c)}`);

      // Every message exactly once, in order, confirmed, on both sides. bob's two were
      // resent after the reconnect, so they come after alice's three.
      for (const text of [inflightText, offlineText, ...away]) await waitMessage(bob.page, text);
      for (const text of [inflightText, offlineText]) await waitMessage(alice.page, text);
      await bob.page.locator("#message-list .message.pending").waitFor({ state: "detached" });
      // Then one more message from alice, shown on both pages: a connection gets the
      // room's messages in id order, so a late duplicate (a resend stored twice, a
      // resume overlapping live delivery) would have arrived before it.
      const last = "all caught up?";
      await send(alice.page, last);
      for (const u of [alice, bob]) await waitMessage(u.page, last);
      expected.push(...away, inflightText, offlineText, last);
      for (const u of [alice, bob]) {
        await assertGeneralView(u.page);
        assert.deepEqual(await listTexts(u.page), expected, `${u.name}'s #general`);
        assert.equal(await u.page.locator("#message-list .message.pending").count(), 0, `${u.name}: nothing left pending`);
        const ids = await u.page.$$eval("#message-list .message", (els) => els.map((e) => e.dataset.id));
        assert.equal(new Set(ids).size, ids.length, `${u.name}: message ids are unique`);
      }
    });

    await step("the server stored each message once; the dead gateway's presence is reaped and bob stays online", async () => {
      const len = Number((await redisCli(redis.port, "XLEN", "confab:room:{general}:log"))[0]);
      assert.equal(len, expected.length, "messages stored in #general's stream");
      // The reaper removes the dead gateway (TTL 3 s); bob's new connection keeps him present.
      await eventually(
        async () => (await redisCli(redis.port, "SISMEMBER", "confab:gateways", GW_IDS[bobGw]))[0] === "0",
        TTL_MS * 3 + 2000,
        "dead gateway reaped",
      );
      const auditor = await connect(nginx.url, "auditor", { extraHeaders: { cookie: `confab_route=${routes[0].value}` } });
      sockets.push(auditor);
      const joined = await call(auditor, "room:join", { room: "general", limit: 50 });
      assert.equal(joined.ok, true, JSON.stringify(joined));
      assert.deepEqual(joined.messages.map((m) => m.text), expected, "stored history");
      const bobs = joined.messages.filter((m) => m.from === "bob").map((m) => m.clientId);
      assert.equal(new Set(bobs).size, bobs.length, "bob's clientIds stored once each");
      const list = await call(auditor, "users:list", { room: "general" });
      assert.deepEqual(list.users, [
        // open mode: the id is the name
        { id: "alice", name: "alice", connections: 1 },
        { id: "auditor", name: "auditor", connections: 1 },
        { id: "bob", name: "bob", connections: 1 },
      ]);
      // The auditor's own join reaches alice's page as a notice. A wrong `left` for bob
      // would have been published when the dead gateway was reaped (awaited above,
      // before the auditor connected) on the same room channel, so it would be shown
      // no later than this notice.
      await waitText(alice.page, "#message-list .notice", "auditor joined #general");
      // Not asserted (see the report): how many connections each page shows for bob now.
      const tabs = async (u) => (await u.page.locator('#users li[data-user="bob"] .count').allTextContents()).join("") || "1";
      t.diagnostic(`bob's connections: server ${list.users.find((u) => u.name === "bob")?.connections}, bob's page "${await tabs(bob)}", alice's page "${await tabs(alice)}"`);
      await alice.page.locator('#users li[data-user="bob"]').waitFor();
      const leftNow = await alice.page.locator('#message-list .notice:text-is("bob left #general")').count();
      assert.equal(leftNow, leftBefore, "alice did not see bob leave because of the kill");
    });

    await step("no console errors or page errors, except failed websocket connections while bob's gateway was down", () => {
      // While bob's gateway is dead, Chromium logs an error for a websocket to nginx that
      // fails ("WebSocket connection to 'ws://127.0.0.1:<nginx>/socket.io/?EIO=4&transport=websocket…'
      // failed: …") if the page happens to open or upgrade one then. These are the only
      // tolerated entries: console errors of bob's page, that exact text for nginx's
      // /socket.io/, logged between the kill and 2 s after bob was back online.
      const wsFail = new RegExp(
        `^console error: WebSocket connection to 'ws://127\\.0\\.0\\.1:${nginx.port}/socket\\.io/\\?EIO=4&transport=websocket(&sid=[^']*)?' failed: `,
      );
      const tolerated = (u, p) =>
        u === bob && outage && p.at >= outage[0] && p.at <= outage[1] + 2000 && wsFail.test(p.text);
      for (const u of users) {
        const ok = u.problems.filter((p) => tolerated(u, p));
        if (ok.length) t.diagnostic(`${u.name}: tolerated during the outage: ${JSON.stringify(ok)}`);
        const bad = u.problems.filter((p) => !tolerated(u, p));
        assert.deepEqual(bad, [], `${u.name}: ${JSON.stringify(bad, null, 1)}`);
        assert.deepEqual(u.dialogs, [], `${u.name}: dialogs`);
      }
    });
  } finally {
    for (const s of sockets) s.close();
    if (failed) {
      for (const u of users) if (u.problems.length) t.diagnostic(`${u.name} console/page errors: ${JSON.stringify(u.problems)}`);
    }
    if (users.length) {
      await mkdir(ARTIFACTS, { recursive: true });
      for (const u of users) {
        await u.page
          .screenshot({ path: path.join(ARTIFACTS, `cluster-${u.name}.png`), timeout: WAIT_MS })
          .catch((e) => t.diagnostic(`screenshot ${u.name} failed: ${e.message}`));
      }
    }
    if (browser) await browser.close().catch(() => {});
    await stopAll(procs);
    nginx?.cleanup();
    t.diagnostic(`total ${Date.now() - t0} ms`);
  }
});
