// Browser test of overload: while the server is too far behind on deliveries it answers
// message:send `overloaded` and stores nothing; the page must keep the message as
// "sending…", resend it (same clientId) and show it once when the server has caught up,
// never as failed. A flood in another room keeps the server behind; it comes from
// alice's own other sockets (node clients with her name), because the server refuses
// its heaviest senders first: a page of a light sender would go through.
// Run: `make test-browser`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { LAUNCH, waitText, openUser } from "../support/browser.mjs";
import { startServer, connect, call, sleep } from "../support/server.mjs";

const MEMBERS = 60;
const SENDERS = 20;
const EACH = 50; // below the per-socket request queue (--max-queued 64)

test("a message refused as `overloaded` is resent by the page and shown once", { timeout: 180000 }, async () => {
  const server = await startServer({
    args: ["--overload-lag-ms", "5", "--rate-limit", "100000", "--rate-burst", "100000", "--socket-buffer-bytes", "67108864"],
  });
  let browser;
  const flood = [];
  try {
    browser = await chromium.launch(LAUNCH);
    // Every frame the page receives, over websocket or polling.
    const acks = [];
    const alice = await openUser(browser, server.url, "alice", {
      beforeLogin: (page) => {
        page.on("websocket", (ws) => ws.on("framereceived", (f) => acks.push(String(f.payload))));
        page.on("response", async (r) => {
          if (r.url().includes("/socket.io/") && r.request().method() === "GET") acks.push(await r.text().catch(() => ""));
        });
      },
    });
    const refusedInPage = () => acks.filter((a) => a.includes('"code":"overloaded"')).length;

    const room = "flood";
    for (let i = 0; i < MEMBERS + SENDERS; i++) {
      const s = await connect(server.url, i < MEMBERS ? `fl${i}` : "alice", { transports: ["websocket"] });
      flood.push(s);
      const ack = await call(s, "room:join", { room });
      assert.equal(ack.ok, true, JSON.stringify(ack));
    }
    const senders = flood.slice(MEMBERS);
    let stop = false;
    let floodRefused = 0;
    const flooding = (async () => {
      const end = Date.now() + 90000;
      for (let k = 0; !stop && Date.now() < end; k++) {
        await Promise.all(
          senders.flatMap((s, j) =>
            Array.from({ length: EACH }, (_, n) =>
              call(s, "message:send", { room, text: `f ${k}:${j}:${n}` }, 60000)
                .then((a) => a?.error?.code === "overloaded" && floodRefused++)
                .catch(() => null),
            ),
          ),
        );
      }
    })();
    const until = async (cond, ms) => {
      const end = Date.now() + ms;
      while (!cond() && Date.now() < end) await sleep(10);
      return cond();
    };
    const shownSent = (t) =>
      alice.page.$$eval("#message-list .message:not(.pending) .text", (els, t) => els.some((e) => e.textContent === t), t);
    // Alice sends from the page right after the server refused the flood. The server
    // may have caught up again by the time her message arrives (then it is simply
    // taken): send another one, a bounded number of times, until one is refused.
    const texts = [];
    for (let i = 0; i < 10 && refusedInPage() === 0; i++) {
      const before = floodRefused;
      assert.ok(await until(() => floodRefused > before, 30000), "the flood never made the server refuse a message");
      const text = `hello while the server is behind ${i}`;
      texts.push(text);
      await alice.page.locator("#composer").fill(text);
      await alice.page.locator("#composer").press("Enter");
      let sent = false;
      const end = Date.now() + 20000;
      while (refusedInPage() === 0 && !sent && Date.now() < end) {
        sent = await shownSent(text);
        await sleep(20);
      }
    }
    const refused = refusedInPage();
    stop = true;
    await flooding;
    console.log(`# overload: the flood was refused ${floodRefused} times; the page sent ${texts.length} message(s), refused ${refused} time(s)`);
    assert.ok(refused > 0, "no message of the page was ever refused: the retry path was not exercised");
    // Refused messages stay "sending…" (never failed) and are resent; once the server
    // has caught up each is shown once and stored once.
    assert.equal(await alice.page.locator("#message-list .message.failed").count(), 0, "shown as failed");
    for (const text of texts) {
      await waitText(alice.page, "#message-list .message:not(.pending) .text", text, 90000);
      const shown = await alice.page.$$eval("#message-list .message .text", (els, t) => els.filter((e) => e.textContent === t).length, text);
      assert.equal(shown, 1, `"${text}" must be shown exactly once`);
    }
    assert.equal(await alice.page.locator("#message-list .message.failed").count(), 0, "shown as failed");
    const stored = (await call(flood[0], "message:history", { room: "general", limit: 50 })).messages;
    for (const text of texts) assert.equal(stored.filter((m) => m.text === text).length, 1, `"${text}" stored once`);
    assert.deepEqual(alice.problems, [], "no console or page errors");
  } finally {
    for (const s of flood) s.disconnect();
    if (browser) await browser.close().catch(() => {});
    await server.stop();
  }
});
