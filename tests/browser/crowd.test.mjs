// Browser test of a crowd joining a room the UI shows: the server lists at most
// --presence-names-max names per room:presence push and counts the rest
// (joinedMore/leftMore); the page must still show the right member count and say
// how many more joined and left. Run: `make test-browser`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { LAUNCH, waitText, openUser } from "../support/browser.mjs";
import { startServer, connect, call } from "../support/server.mjs";

const CROWD = 6;

/** Runs in the page: the crowd's join notices, named ones and counted ones. */
function joinTally() {
  const notices = [...document.querySelectorAll("#message-list .notice")].map((e) => e.textContent);
  const listed = notices.filter((t) => /^crowd\d joined #general$/.test(t)).length;
  const counted = notices
    .map((t) => /^(\d+) more joined #general$/.exec(t))
    .filter(Boolean)
    .reduce((n, m) => n + Number(m[1]), 0);
  return { notices, listed, counted };
}

test("a crowd joining and leaving #general: counts and notices in the page", { timeout: 120000 }, async () => {
  const server = await startServer({
    args: ["--presence-names-max", "1", "--join-members-max", "1", "--presence-interval-ms", "300"],
  });
  let browser;
  const crowd = [];
  try {
    browser = await chromium.launch(LAUNCH);
    const alice = await openUser(browser, server.url, "alice");
    await waitText(alice.page, "#users-title", "In #general (1)");

    // Six users connect (every connection is in #general) within one interval.
    const names = Array.from({ length: CROWD }, (_, i) => `crowd${i}`);
    crowd.push(...(await Promise.all(names.map((n) => connect(server.url, n)))));
    const total = `${CROWD + 1}`;
    await waitText(alice.page, "#users-title", `In #general (${total})`);
    await waitText(alice.page, "#pane-subtitle", `${total} members online`);
    // At most one name per push: the rest were announced as a count. The total above
    // can come from a users:list refresh before the last presence push has arrived:
    // wait (bounded) until the notices add up, then look at them.
    const tally = `(${joinTally})()`;
    await alice.page.waitForFunction(`((t) => t.listed + t.counted >= ${CROWD})(${tally})`, null, { timeout: 10000 }).catch(() => {});
    const { notices, listed, counted } = await alice.page.evaluate(tally);
    assert.equal(listed + counted, CROWD, `notices: ${JSON.stringify(notices)}`);
    assert.ok(counted > 0, `some joins must be counted, not named: ${JSON.stringify(notices)}`);

    // The server agrees with the page.
    const users = await call(crowd[0], "users:list", { room: "general" });
    assert.equal(users.total, CROWD + 1);

    for (const s of crowd) s.disconnect();
    await waitText(alice.page, "#users-title", "In #general (1)");
    await waitText(alice.page, "#pane-subtitle", "1 member online");
    assert.deepEqual(alice.problems, [], "no console or page errors");
  } finally {
    for (const s of crowd) s.disconnect();
    if (browser) await browser.close().catch(() => {});
    await server.stop();
  }
});
