// Browser test of the admin status page (/admin, issue 14) in cluster mode: a real
// redis-server, three confab gateways (guest mode, one shared key file so an
// operator-minted admin token works on each) and nginx (the repository's
// nginx.conf). An admin signs in on the chat page, opens /admin through nginx and
// sees all three gateways, Redis healthy, the room they just wrote in among the top
// rooms, the page updating live and a stopped gateway leaving it; a guest who is not
// an admin is refused.
// Run: `node --test tests/browser/admin.test.mjs` (needs target/debug/confab,
// /usr/bin/chromium, redis-server and nginx; never downloads a browser).
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { LAUNCH, waitText, openUser, openTokenUser, mintToken } from "../support/browser.mjs";
import { confabBin } from "../support/server.mjs";
import { startRedis, startGateway, startNginx, stopAll } from "../support/cluster.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const ARTIFACTS = path.join(root, "artifacts", "browser");
const WAIT_MS = 10000;
const GW_IDS = ["gw1", "gw2", "gw3"];

test("/admin on a 3-gateway cluster: an admin sees every gateway, Redis and live updates; a non-admin is refused", { timeout: 120000 }, async (t) => {
  assert.ok(existsSync(confabBin()), `${confabBin()} is missing: run \`cargo build -p confab\` first`);
  assert.ok(existsSync(LAUNCH.executablePath), `${LAUNCH.executablePath} is missing (apt-get install chromium)`);
  const dir = await mkdtemp(path.join(tmpdir(), "confab-admin-browser-"));
  const secretFile = path.join(dir, "guest.key");
  await writeFile(secretFile, randomBytes(32).toString("hex"), { mode: 0o600 });
  await mkdir(ARTIFACTS, { recursive: true });
  const procs = [];
  let browser;
  let nginx;
  try {
    const redis = await startRedis();
    procs.push(redis);
    const gw = [];
    for (const id of GW_IDS) {
      const g = await startGateway({ redisUrl: redis.url, id, args: ["--auth", "guest", "--jwt-secret-file", secretFile] });
      procs.push(g);
      gw.push(g);
    }
    nginx = await startNginx({ gatewayPorts: gw.map((g) => g.port) });
    procs.push(nginx);
    browser = await chromium.launch(LAUNCH);

    await t.test("an admin opens /admin through nginx and sees all three gateways, live", async () => {
      const token = await mintToken(secretFile, ["--sub", "ops-admin", "--name", "Ops", "--role", "admin", "--ttl", "1h"]);
      const admin = await openTokenUser(browser, nginx.url, "Ops", token);
      const { page } = admin;
      // Some traffic for the top rooms.
      const composer = page.locator("#composer");
      await composer.fill("status check");
      await composer.press("Enter");
      await waitText(page, "#message-list .message:not(.pending) .text", "status check");

      const resp = await page.goto(`${nginx.url}/admin`, { waitUntil: "load", timeout: WAIT_MS });
      assert.equal(resp.status(), 200, "GET /admin status");
      assert.match(resp.headers()["content-security-policy"] ?? "", /script-src 'self'/);
      await waitText(page, "#conn-state", "online");
      for (const id of GW_IDS) {
        await page.locator(`#gateways tr[data-gateway="${id}"]`).waitFor({ timeout: WAIT_MS });
      }
      const ids = await page.$$eval("#gateways tr", (rows) => rows.map((r) => r.dataset.gateway));
      assert.deepEqual(ids, GW_IDS);
      await waitText(page, '#backend dd[data-field="kind"]', "redis");
      await waitText(page, '#backend dd[data-field="health"]', "healthy");
      const version = await page.locator('#backend dd[data-field="version"]').textContent();
      assert.match(version, /^\d+\.\d+/);
      await waitText(page, "#top-rooms td", "#general", WAIT_MS);
      assert.equal(await page.locator("#notice").isHidden(), true);
      // Live: the page is updated by pushes (every 2 s) without reloading.
      const first = await page.locator("#updated").textContent();
      await page.waitForFunction((t0) => document.getElementById("updated").textContent !== t0, first, { timeout: WAIT_MS });
      await page.screenshot({ path: path.join(ARTIFACTS, "admin-status.png"), fullPage: true });
      assert.deepEqual(admin.problems, [], "no console or page errors");
      assert.deepEqual(admin.dialogs, []);
      // A gateway stopped (SIGTERM: it drains and removes its report) leaves the
      // page, which stays live (reconnecting through nginx if it was on that one).
      await gw[2].stop();
      await page.waitForFunction(() => !document.querySelector('#gateways tr[data-gateway="gw3"]'), null, { timeout: 15000 });
      const left = await page.$$eval("#gateways tr", (rows) => rows.map((r) => r.dataset.gateway));
      assert.deepEqual(left, ["gw1", "gw2"]);
      await admin.context.close();
    });

    await t.test("a signed-in guest who is not an admin is refused", async () => {
      const guest = await openUser(browser, nginx.url, "plainguest");
      const { page } = guest;
      const resp = await page.goto(`${nginx.url}/admin`, { waitUntil: "load", timeout: WAIT_MS });
      assert.equal(resp.status(), 200);
      await page.locator("#notice").waitFor({ state: "visible", timeout: WAIT_MS });
      const text = await page.locator("#notice").textContent();
      assert.match(text, /^Admins only/);
      assert.equal(await page.locator("#status").isHidden(), true);
      assert.equal(await page.locator("#gateways tr").count(), 0);
      await page.screenshot({ path: path.join(ARTIFACTS, "admin-refused.png") });
      assert.deepEqual(guest.problems, [], "no console or page errors");
      await guest.context.close();
    });

    await t.test("without a stored identity the page says to sign in first", async () => {
      const context = await browser.newContext();
      const page = await context.newPage();
      await page.goto(`${nginx.url}/admin`, { waitUntil: "load", timeout: WAIT_MS });
      await waitText(page, "#notice", "Sign in on the chat page first (as an admin), then come back to /admin.");
      await context.close();
    });
  } finally {
    if (browser) await browser.close().catch(() => {});
    await stopAll(procs);
    nginx?.cleanup();
    await rm(dir, { recursive: true, force: true });
  }
});
