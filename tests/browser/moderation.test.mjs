// Browser test of moderation and access in the UI: a moderator (a token minted with
// `confab token --role moderator`, pasted through the login form) deletes a guest's
// message (a tombstone for everyone, also after a reload), a guest deletes their own,
// the member menu mutes (the send refusal keeps the text), kicks and bans from the
// server (the login form says so, no reconnecting); a guest's private room is not
// listed to others until its owner invites them (a toast with a Join action), and the
// owner removes them again.
// Run: `node --test --test-concurrency=1 tests/browser/` (needs target/debug/confab
// and /usr/bin/chromium; never downloads a browser).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";
import { LAUNCH, waitText, waitInGeneral, openUser, mintToken, openTokenUser } from "../support/browser.mjs";
import { confabBin, startServer } from "../support/server.mjs";

const WAIT_MS = 10000;

const cleanup = [];
after(async () => {
  for (const fn of cleanup.reverse()) await fn().catch(() => {});
});

/** Waits for a confirmed message with exactly `text` in the current view; returns its id. */
async function waitMessage(page, text, timeout = WAIT_MS) {
  await waitText(page, "#message-list .message:not(.pending) .text", text, timeout);
  return page.$$eval(
    "#message-list .message:not(.pending)",
    (els, t) => els.find((x) => x.querySelector(".text")?.textContent === t)?.dataset.id,
    text,
  );
}

async function send(page, text) {
  await page.locator("#composer").fill(text);
  await page.locator("#composer").press("Enter");
}

/** The message element with id `id` in the current view. */
const messageEl = (page, id) => page.locator(`#message-list .message[data-id="${id}"]`);

/** Waits until message `id` is shown as a tombstone; returns {text, deleted}. */
async function waitTombstone(page, id, original, timeout = WAIT_MS) {
  await page
    .waitForFunction(
      (mid) => document.querySelector(`#message-list .message[data-id="${mid}"]`)?.dataset.deleted === "true",
      id,
      { timeout },
    )
    .catch(async (e) => {
      const html = await messageEl(page, id).evaluate((el) => el.outerHTML).catch(() => "(absent)");
      throw new Error(`message ${id} never became a tombstone; it is ${html}: ${e.message}`);
    });
  const el = messageEl(page, id);
  const text = await el.locator(".text").textContent();
  const all = await el.textContent();
  assert.ok(!all.includes(original), `the deleted text is gone (saw ${JSON.stringify(all)})`);
  assert.equal(await el.locator('[data-testid="delete-message"]').count(), 0, "a tombstone has no delete button");
  return text;
}

/** Clicks a message's delete button (shown on hover) and confirms. */
async function deleteVia(page, id) {
  const el = messageEl(page, id);
  await el.hover();
  const btn = el.locator('[data-testid="delete-message"]');
  assert.ok(await btn.isVisible(), "the delete button is shown on hover");
  await btn.click();
  await page.locator('[data-testid="confirm-dialog"]').waitFor({ state: "visible" });
  await page.locator('[data-testid="confirm-ok"]').click();
  await page.locator('[data-testid="confirm-dialog"]').waitFor({ state: "hidden" });
}

/** Opens the member menu of user `id` in the current room's member list and picks `item`, then confirms. */
async function moderate(page, id, item, expectQuestion) {
  const li = page.locator(`#users li[data-user="${id}"]`);
  await li.waitFor();
  await li.locator('[data-testid="mod-menu"]').click();
  await page.locator('[data-testid="mod-pop"]').waitFor({ state: "visible" });
  await page.locator(`[data-testid="${item}"]`).click();
  await page.locator('[data-testid="confirm-dialog"]').waitFor({ state: "visible" });
  if (expectQuestion) assert.match(await page.locator('[data-testid="confirm-text"]').textContent(), expectQuestion);
  await page.locator('[data-testid="confirm-ok"]').click();
  await page.locator('[data-testid="confirm-dialog"]').waitFor({ state: "hidden" });
}

/** Waits until the moderation notice contains `part`; returns its text. */
async function waitNotice(page, part) {
  await page
    .waitForFunction((p) => {
      const box = document.getElementById("mod-notice");
      return !box.classList.contains("hidden") && box.textContent.includes(p);
    }, part, { timeout: WAIT_MS })
    .catch(async (e) => {
      throw new Error(`the notice never said ${JSON.stringify(part)}; it says ${JSON.stringify(await page.locator("#mod-notice-text").textContent())}: ${e.message}`);
    });
  return page.locator("#mod-notice-text").textContent();
}

async function joinByForm(page, room, { priv = false } = {}) {
  await page.locator("#room-input").fill(room);
  if (priv) await page.locator('[data-testid="room-private"]').check();
  await page.locator("#room-submit").click();
}

const whoAmI = (page) => page.locator("#me").getAttribute("title");

function assertClean(user, where) {
  assert.deepEqual(user.problems, [], `${user.name} (${where}): console/page errors`);
  assert.deepEqual(user.dialogs, [], `${user.name} (${where}): native dialogs`);
}

test("moderation in the UI: delete, mute, kick, server ban, private rooms and invitations", { timeout: 240000 }, async (t) => {
  assert.ok(existsSync(confabBin()), `${confabBin()} is missing: run \`cargo build -p confab\` first`);
  assert.ok(existsSync(LAUNCH.executablePath), `${LAUNCH.executablePath} is missing (apt-get install chromium)`);
  const dir = await mkdtemp(path.join(os.tmpdir(), "confab-mod-ui-"));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  const secretFile = path.join(dir, "jwt-secret");
  await writeFile(secretFile, randomBytes(32).toString("hex"), { mode: 0o600 }); // 64 hex characters
  const server = await startServer({ args: ["--auth", "guest", "--jwt-secret-file", secretFile] });
  cleanup.push(() => server.stop());
  const { url } = server;
  const browser = await chromium.launch(LAUNCH);
  cleanup.push(() => browser.close());

  const modToken = await mintToken(secretFile, ["--sub", "mod-1", "--name", "Mod", "--role", "moderator", "--ttl", "1h"]);
  const mod = await openTokenUser(browser, url, "Mod", modToken);
  const gina = await openUser(browser, url, "gina");
  const hank = await openUser(browser, url, "hank");
  const ginaId = await whoAmI(gina.page);
  const hankId = await whoAmI(hank.page);
  assert.equal(await whoAmI(mod.page), "mod-1");
  assert.equal(await mod.page.locator('[data-testid="me-role"]').textContent(), "moderator");

  await t.test("a guest has no delete button on others' messages and no member menu", async () => {
    await send(mod.page, "welcome, everyone");
    const id = await waitMessage(gina.page, "welcome, everyone");
    await messageEl(gina.page, id).hover();
    assert.equal(await messageEl(gina.page, id).locator('[data-testid="delete-message"]').count(), 0);
    await gina.page.locator(`#users li[data-user="mod-1"]`).waitFor();
    assert.equal(await gina.page.locator('#users [data-testid="mod-menu"]').count(), 0, "no member menu for a guest");
    // The moderator has a member menu on the others, not on themselves.
    await mod.page.locator(`#users li[data-user="${ginaId}"] [data-testid="mod-menu"]`).waitFor();
    assert.equal(await mod.page.locator('#users li[data-user="mod-1"] [data-testid="mod-menu"]').count(), 0);
  });

  await t.test("the moderator deletes a guest's message: a tombstone within 2 s, also after a reload", async () => {
    const text = "this will be moderated";
    await send(gina.page, text);
    const id = await waitMessage(gina.page, text);
    await waitMessage(mod.page, text);
    await deleteVia(mod.page, id);
    const started = Date.now();
    const shown = await waitTombstone(gina.page, id, text, 2000);
    assert.ok(Date.now() - started <= 2000);
    assert.equal(shown, "message deleted");
    assert.equal(await waitTombstone(mod.page, id, text), "message deleted");
    await gina.page.reload({ waitUntil: "load", timeout: WAIT_MS });
    await waitInGeneral(gina.page);
    await messageEl(gina.page, id).waitFor();
    assert.equal(await waitTombstone(gina.page, id, text), "message deleted", "still a tombstone from history");
    assert.equal(await gina.page.locator("#message-list .text", { hasText: text }).count(), 0);
  });

  await t.test("a guest deletes their own message", async () => {
    const text = "oops, wrong window";
    await send(gina.page, text);
    const id = await waitMessage(gina.page, text);
    await waitMessage(hank.page, text);
    await deleteVia(gina.page, id);
    assert.equal(await waitTombstone(gina.page, id, text), "message deleted");
    assert.equal(await waitTombstone(hank.page, id, text, 2000), "message deleted");
  });

  await t.test("mute from the member menu: the guest is told, and a refused send keeps the text", async () => {
    await joinByForm(gina.page, "lobby");
    await gina.page.locator('#rooms li.joined.active[data-room="lobby"]').waitFor();
    await joinByForm(mod.page, "lobby");
    await mod.page.locator('#rooms li.joined.active[data-room="lobby"]').waitFor();
    await moderate(mod.page, ginaId, "mod-mute", /^Mute gina in #lobby for 10 minutes\?$/);
    await mod.page.waitForFunction(() => /^gina is muted in #lobby until /.test(document.querySelector("#toast:not(.hidden)")?.textContent ?? ""), null, { timeout: WAIT_MS });
    const notice = await waitNotice(gina.page, "You were muted in #lobby until ");
    assert.match(notice, /^You were muted in #lobby until \d{1,2}:\d{2}/);
    await gina.page.locator('[data-testid="mod-notice-close"]').click();
    await send(gina.page, "can I still talk?");
    await gina.page.waitForFunction(() => /^Message not sent: you are muted in room `lobby` until \d{1,2}:\d{2}/.test(document.querySelector("#toast:not(.hidden)")?.textContent ?? ""), null, { timeout: WAIT_MS });
    assert.equal(await gina.page.locator("#composer").inputValue(), "can I still talk?", "the typed text is kept");
    assert.equal(await gina.page.locator("#message-list .message.pending").count(), 0, "no failed entry left");
    await gina.page.locator("#composer").fill("");
  });

  await t.test("kick from the member menu: the guest is told and the room is no longer joined; joining again works", async () => {
    await moderate(mod.page, ginaId, "mod-kick", /^Kick gina from #lobby\?/);
    const notice = await waitNotice(gina.page, "kicked from #lobby");
    assert.match(notice, /^You were kicked from #lobby/);
    await gina.page.locator('#rooms li.joined[data-room="lobby"]').waitFor({ state: "detached" });
    await waitText(gina.page, "#pane-title", "#general");
    await mod.page.locator(`#users li[data-user="${ginaId}"]`).waitFor({ state: "detached" });
    await joinByForm(gina.page, "lobby");
    await gina.page.locator('#rooms li.joined.active[data-room="lobby"]').waitFor();
  });

  await t.test("private room: not listed to others; the owner invites from the online list; the invitee joins from the toast", async () => {
    await joinByForm(gina.page, "secret-club", { priv: true });
    await gina.page.locator('#rooms li.joined.active[data-room="secret-club"]').waitFor();
    assert.ok(!(await gina.page.locator('[data-testid="room-private"]').isChecked()), "the box is cleared");
    await send(gina.page, "just us");
    await waitMessage(gina.page, "just us");
    // hank's fresh room list (a reload lists the rooms again) shows lobby but not the private room.
    await hank.page.reload({ waitUntil: "load", timeout: WAIT_MS });
    await waitInGeneral(hank.page);
    await hank.page.locator('#rooms li[data-room="lobby"]').waitFor();
    assert.equal(await hank.page.locator('#rooms li[data-room="secret-club"]').count(), 0, "a private room is not listed");
    await joinByForm(hank.page, "secret-club");
    await waitText(hank.page, "#toast:not(.hidden)", "Could not join #secret-club: you cannot join room `secret-club` (forbidden)");
    await hank.page.locator("#toast").click();
    assert.equal(await hank.page.locator('#rooms li[data-room="secret-club"]').count(), 0);

    await gina.page.locator('[data-testid="invite-open"]').click();
    const item = gina.page.locator(`#invite-list li[data-user="${hankId}"]`);
    await item.waitFor();
    assert.equal(await item.getAttribute("data-name"), "hank");
    await item.locator('[data-testid="invite-user"]').click();
    await gina.page.waitForFunction((id) => document.querySelector(`#invite-list li[data-user="${id}"] button`)?.textContent === "Invited", hankId, { timeout: WAIT_MS });
    await gina.page.locator('[data-testid="invite-close"]').click();

    await waitText(hank.page, '[data-testid="invite-toast-text"]', "gina invited you to #secret-club");
    await hank.page.locator('[data-testid="invite-join"]').click();
    await hank.page.locator('#rooms li.joined.active[data-room="secret-club"]').waitFor();
    await waitText(hank.page, "#pane-title", "#secret-club");
    await waitMessage(hank.page, "just us");
    await send(hank.page, "thanks for the invite");
    await waitMessage(gina.page, "thanks for the invite");
  });

  await t.test("the owner removes the invitee from the private room", async () => {
    await moderate(gina.page, hankId, "mod-remove", /^Remove hank from the private room #secret-club\?/);
    await waitNotice(hank.page, "You were removed from #secret-club");
    await hank.page.locator('#rooms li.joined[data-room="secret-club"]').waitFor({ state: "detached" });
    await joinByForm(hank.page, "secret-club");
    await waitText(hank.page, "#toast:not(.hidden)", "Could not join #secret-club: you cannot join room `secret-club` (forbidden)");
  });

  let ginaToken;
  await t.test("the moderator bans the guest from the server: the login form says so, no reconnecting", async () => {
    await mod.page.locator('#rooms li[data-room="general"] button').click();
    await waitText(mod.page, "#pane-title", "#general");
    ginaToken = await gina.page.evaluate(() => localStorage.getItem("confab.token"));
    assert.ok(ginaToken, "gina's guest token is stored");
    await moderate(mod.page, ginaId, "mod-ban-server", /^Ban gina from this server/);
    const { page } = gina;
    await page.locator("#login-view").waitFor({ state: "visible" });
    await page.waitForFunction(() => document.getElementById("login-error").textContent.startsWith("You were banned from this server"), null, { timeout: WAIT_MS });
    assert.ok(await page.locator("#chat-view").isHidden(), "chat hidden");
    assert.equal(await page.locator("#conn-state").textContent(), "offline");
    await mod.page.locator(`#users li[data-user="${ginaId}"]`).waitFor({ state: "detached" });
    // Still on the login form a while later (nothing retried).
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(await page.locator("#conn-state").textContent(), "offline");
    assert.ok(await page.locator("#login-view").isVisible());
    assert.match(await page.locator("#login-error").textContent(), /^You were banned from this server/);
  });

  let admin;
  await t.test("an admin announces to everyone, reads the audit log and lifts the server ban", async () => {
    const adminToken = await mintToken(secretFile, ["--sub", "admin-1", "--name", "Ada", "--role", "admin", "--ttl", "1h"]);
    admin = await openTokenUser(browser, url, "Ada", adminToken);
    const { page } = admin;
    assert.equal(await page.locator('[data-testid="me-role"]').textContent(), "admin");
    assert.ok(await mod.page.locator('[data-testid="admin-open"]').isHidden(), "no admin panel for a moderator");
    await page.locator('[data-testid="admin-open"]').click();
    await page.locator('[data-testid="admin-dialog"]').waitFor({ state: "visible" });
    const rows = page.locator('[data-testid="audit-rows"] tr');
    await rows.first().waitFor();
    const log = await rows.evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll("td")].slice(1, 5).map((td) => td.textContent)));
    for (const want of [["Mod", "ban", "gina", "(server)"], ["Mod", "kick", "gina", "#lobby"], ["Mod", "mute", "gina", "#lobby"], ["gina", "invite", "hank", "#secret-club"], ["gina", "remove", "hank", "#secret-club"]]) {
      assert.ok(log.some((r) => JSON.stringify(r) === JSON.stringify(want)), `audit has ${JSON.stringify(want)}: ${JSON.stringify(log)}`);
    }
    await page.locator('[data-testid="announce-input"]').fill("maintenance at 22:00");
    await page.locator('[data-testid="announce-submit"]').click();
    for (const u of [hank, mod]) {
      await waitText(u.page, '#message-list [data-testid="announcement"]', "Announcement from Ada: maintenance at 22:00");
    }
    // Lift gina's server ban from its audit row; her token works again.
    const banRow = page.locator('[data-testid="audit-rows"] tr[data-action="ban"]').first();
    await banRow.locator('[data-testid="audit-unban"]').click();
    await page.locator('[data-testid="confirm-ok"]').click();
    await page.waitForFunction(() => document.querySelector('[data-testid="audit-rows"] tr[data-action="unban"]'), null, { timeout: WAIT_MS });
    await page.locator('[data-testid="admin-close"]').click();
    await page.locator('[data-testid="admin-dialog"]').waitFor({ state: "hidden" });
    await gina.context.addInitScript((tok) => {
      if (!sessionStorage.getItem("seeded")) {
        sessionStorage.setItem("seeded", "1");
        localStorage.setItem("confab.token", tok);
        localStorage.setItem("confab.tokenKind", "guest");
      }
    }, ginaToken);
    await gina.page.reload({ waitUntil: "load", timeout: WAIT_MS });
    await waitInGeneral(gina.page);
    assert.equal(await whoAmI(gina.page), ginaId, "gina is back as herself");
  });

  await t.test("no console errors, no native dialogs", async () => {
    for (const u of [mod, gina, hank, admin].filter(Boolean)) assertClean(u, "end");
  });
});
