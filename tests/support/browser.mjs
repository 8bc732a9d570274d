// Launch options of Debian's Chromium for the browser tests (playwright-core, never a
// downloaded browser), with the flags this machine's closed network needs.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { confabBin } from "./server.mjs";

const WAIT_MS = 10000;

export const LAUNCH = {
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

/** Waits until some element matching `selector` has exactly `text` as textContent. */
export function waitText(page, selector, text, timeout = 10000) {
  return page
    .waitForFunction(
      ([sel, t]) => [...document.querySelectorAll(sel)].some((e) => e.textContent === t),
      [selector, text],
      { timeout },
    )
    .catch(async (e) => {
      const seen = await page.$$eval(selector, (els) => els.map((x) => x.textContent)).catch(() => "?");
      throw new Error(`waiting for ${selector} with text ${JSON.stringify(text)}; saw ${JSON.stringify(seen)}: ${e.message}`);
    });
}

/** Collects console errors, page errors and dialogs of `page` into `user`. */
export function watch(user, page) {
  page.on("console", (m) => {
    if (m.type() === "error") user.problems.push(`console error: ${m.text()} @ ${m.location()?.url ?? ""}`);
  });
  page.on("pageerror", (e) => user.problems.push(`pageerror: ${e.message}`));
  page.on("dialog", (d) => {
    user.dialogs.push(`${d.type()}: ${d.message()}`);
    d.dismiss().catch(() => {});
  });
}

/** Waits until the page is online with #general joined and shown. */
export async function waitInGeneral(page) {
  await waitText(page, "#conn-state", "online");
  await page.locator('#rooms li.joined.active[data-room="general"]').waitFor();
  await waitText(page, "#pane-title", "#general");
}

/**
 * Opens a fresh context + page on `url` without signing in (the login form, or the
 * page signing in by itself with what the context stores).
 * `beforeLogin(page)` runs before the page is loaded (e.g. to watch its websocket);
 * `contextOptions` are added to the new context's options (e.g. `{bypassCSP: true}`);
 * `initScript` (a function) runs in every document of the context before its scripts.
 */
export async function openPage(browser, url, label, { beforeLogin, contextOptions = {}, initScript } = {}) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 720 }, ...contextOptions });
  context.setDefaultTimeout(WAIT_MS);
  if (initScript) await context.addInitScript(initScript);
  const page = await context.newPage();
  if (beforeLogin) beforeLogin(page);
  const user = { name: label, context, page, problems: [], dialogs: [], cspHeader: null };
  watch(user, page);
  const resp = await page.goto(`${url}/`, { waitUntil: "load", timeout: WAIT_MS });
  assert.equal(resp.status(), 200, "GET / status");
  user.cspHeader = resp.headers()["content-security-policy"] ?? null;
  return user;
}

/**
 * Opens a fresh context + page, logs in as `name` (open mode: the name is the identity;
 * guest mode: a guest identity with that name), waits until online in #general.
 * Options as for openPage.
 */
export async function openUser(browser, url, name, opts = {}) {
  const user = await openPage(browser, url, name, opts);
  const { page } = user;
  await page.locator("#name-input").fill(name);
  await page.locator("#name-submit").click();
  await waitInGeneral(page);
  return user;
}

/**
 * `confab token ARGS...` signed with the secret in `secretFile` (as an operator mints
 * one): resolves to the token it prints.
 */
export function mintToken(secretFile, args) {
  return new Promise((resolve, reject) => {
    execFile(
      confabBin(),
      ["token", ...args],
      { env: { ...process.env, CONFAB_JWT_SECRET_FILE: secretFile }, timeout: WAIT_MS },
      (err, stdout, stderr) => {
        if (err) return reject(new Error(`confab token ${args.join(" ")}: ${err.message}\n${stderr}`));
        const token = stdout.trim();
        if (token.split(".").length !== 3) return reject(new Error(`confab token printed ${JSON.stringify(stdout)}`));
        resolve(token);
      },
    );
  });
}

/**
 * Opens a fresh context + page and signs in by pasting `token` through the login
 * form's token toggle (guest mode), waits until online in #general.
 */
export async function openTokenUser(browser, url, label, token, opts = {}) {
  const user = await openPage(browser, url, label, opts);
  const { page } = user;
  await page.locator("#token-toggle").click();
  await page.locator("#token-input").fill(token);
  await page.locator("#name-submit").click();
  await waitInGeneral(page);
  return user;
}
