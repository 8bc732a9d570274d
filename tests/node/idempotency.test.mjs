// Idempotent sends: resending with the same clientId (a retry after a lost ack or a
// reconnect, from any tab of the user) returns the original message and nothing is
// stored or delivered twice. Room messages are keyed by (room, user, clientId): the
// same clientId in another room is a new message there.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Harness, FAST, call, collect, sleep, uname, uroom, assertOk, join, cmpId, T } from "./lib.mjs";

const h = new Harness(FAST);
// A server whose idempotency window is 1 s (the smallest: the flag is whole seconds).
const WINDOW_MS = 1000;
const hw = new Harness([...FAST, "--idempotency-window-s", String(WINDOW_MS / 1000)]);
before(async () => {
  await h.start();
  await hw.start();
});
after(async () => {
  await h.stop();
  await hw.stop();
});

test("message:send with a repeated clientId returns the original, stored and delivered once", T, async () => {
  const room = uroom("idem");
  const name = uname("ida");
  const tab1 = await h.connect(name);
  const tab2 = await h.connect(name);
  const other = await h.connect(uname("idb"));
  for (const s of [tab1, tab2, other]) await join(s, room);
  const seen = collect(other, "message:new");
  const first = assertOk(await call(tab1, "message:send", { room, text: "once", clientId: "c-42" }));
  const retry = assertOk(await call(tab2, "message:send", { room, text: "once", clientId: "c-42" }));
  assert.deepEqual(retry.message, first.message);
  // Another user may use the same clientId: a different message.
  const theirs = assertOk(await call(other, "message:send", { room, text: "mine", clientId: "c-42" }));
  assert.notEqual(theirs.message.id, first.message.id);
  await sleep(300);
  assert.deepEqual(seen.filter((m) => m.room === room).map((m) => m.id), [first.message.id, theirs.message.id]);
  const hist = assertOk(await call(other, "message:history", { room }));
  assert.deepEqual(hist.messages.map((m) => m.id), [first.message.id, theirs.message.id]);
});

test("message:send: the same clientId in another room is a new message there; retries in each room return that room's original", T, async () => {
  const [r1, r2] = [uroom("idx"), uroom("idy")];
  const name = uname("idc");
  const tab1 = await h.connect(name);
  const tab2 = await h.connect(name);
  const other = await h.connect(uname("idd"));
  for (const s of [tab1, tab2, other]) {
    await join(s, r1);
    await join(s, r2);
  }
  const seen = collect(other, "message:new");
  const inR1 = assertOk(await call(tab1, "message:send", { room: r1, text: "same key", clientId: "x-7" })).message;
  const inR2 = assertOk(await call(tab1, "message:send", { room: r2, text: "same key", clientId: "x-7" })).message;
  // (Ids are per room: the two may even share an id; the room tells them apart.)
  assert.equal(inR1.room, r1);
  assert.equal(inR2.room, r2, "a new message in the second room, not the first room's original");
  assert.deepEqual(inR2, { ...inR1, id: inR2.id, room: r2, ts: inR2.ts }, "same sender, text and clientId");
  // Retries (from either tab) return each room's own original.
  assert.deepEqual(assertOk(await call(tab2, "message:send", { room: r1, text: "same key", clientId: "x-7" })).message, inR1);
  assert.deepEqual(assertOk(await call(tab2, "message:send", { room: r2, text: "same key", clientId: "x-7" })).message, inR2);
  // Each room stores and delivers its message once.
  assert.deepEqual(assertOk(await call(other, "message:history", { room: r1 })).messages, [inR1]);
  assert.deepEqual(assertOk(await call(other, "message:history", { room: r2 })).messages, [inR2]);
  await sleep(300);
  assert.deepEqual(seen.filter((m) => m.room === r1 || m.room === r2), [inR1, inR2], "each delivered once");
});

test("dm:send with a repeated clientId returns the original DM, delivered once", T, async () => {
  const a = await h.connect(uname("dma"));
  const bName = uname("dmb");
  const b = await h.connect(bName);
  const got = collect(b, "dm:new");
  const first = assertOk(await call(a, "dm:send", { to: bName, text: "hi", clientId: "d-1" }));
  const retry = assertOk(await call(a, "dm:send", { to: bName, text: "hi", clientId: "d-1" }));
  assert.deepEqual(retry.message, first.message);
  await sleep(300);
  assert.equal(got.length, 1);
  const hist = assertOk(await call(b, "dm:history", { with: a.session.user.id }));
  assert.equal(hist.messages.length, 1);
});

/**
 * Send once, then resend the same payload every 100 ms (bounded: 40 resends) until the
 * server answers with another message. Returns the first message, the times (ms after
 * the first send started) of the resends that returned it, and the new message with
 * the time its ack came.
 */
async function resendUntilNew(socket, event, payload) {
  const t0 = Date.now();
  const first = assertOk(await call(socket, event, payload), `${event} first`).message;
  const same = [];
  for (let i = 0; i < 40; i++) {
    const m = assertOk(await call(socket, event, payload), `${event} resend ${i}`).message;
    const at = Date.now() - t0;
    if (m.id !== first.id) return { first, same, fresh: m, freshAt: at };
    assert.deepEqual(m, first, "a resend within the window returns the original message");
    same.push(at);
    await sleep(100);
  }
  assert.fail(`still the original after 40 resends over ${Date.now() - t0} ms (window ${WINDOW_MS} ms)`);
}

function assertWindow(t, { same, freshAt }) {
  t.diagnostic(`original for resends at ${same.join(", ")} ms; new message at ${freshAt} ms`);
  assert.ok(same.length >= 1 && same[0] < WINDOW_MS / 2, `an early resend returned the original: ${same}`);
  // The record lives for the window after the first attempt: not a new message sooner,
  // and one soon after (a resend every 100 ms; generous slack for a loaded machine).
  assert.ok(freshAt >= WINDOW_MS - 20, `new message only after the window: ${freshAt} ms`);
  assert.ok(freshAt <= WINDOW_MS + 1500, `new message soon after the window: ${freshAt} ms`);
}

test("idempotency window: message:send resent with the same clientId returns the original within --idempotency-window-s, and is a new message after it", T, async (t) => {
  const room = uroom("win");
  const name = uname("wa");
  const s = await hw.connect(name);
  const other = await hw.connect(uname("wb"));
  for (const x of [s, other]) await join(x, room);
  const seen = collect(other, "message:new");
  const payload = { room, text: "said twice", clientId: "w-1" };
  const r = await resendUntilNew(s, "message:send", payload);
  assertWindow(t, r);
  assert.deepEqual(r.fresh, { ...r.first, id: r.fresh.id, ts: r.fresh.ts }, "the same text and clientId, a new id");
  assert.ok(cmpId(r.first.id, r.fresh.id) < 0);
  // The new message opens its own window.
  assert.deepEqual(assertOk(await call(s, "message:send", payload)).message, r.fresh);
  // Both are stored and delivered, each once.
  const hist = assertOk(await call(other, "message:history", { room }));
  assert.deepEqual(hist.messages, [r.first, r.fresh]);
  await sleep(200);
  assert.deepEqual(seen.filter((m) => m.room === room), [r.first, r.fresh], "each delivered once");
});

test("idempotency window: dm:send resent with the same clientId returns the original DM within the window, and is a new DM after it", T, async (t) => {
  const a = await hw.connect(uname("wda"));
  const bName = uname("wdb");
  const b = await hw.connect(bName);
  const got = collect(b, "dm:new");
  const payload = { to: bName, text: "psst twice", clientId: "wd-1" };
  const r = await resendUntilNew(a, "dm:send", payload);
  assertWindow(t, r);
  assert.deepEqual(r.fresh, { ...r.first, id: r.fresh.id, ts: r.fresh.ts }, "the same text and clientId, a new id");
  assert.ok(cmpId(r.first.id, r.fresh.id) < 0);
  assert.deepEqual(assertOk(await call(a, "dm:send", payload)).message, r.fresh);
  const hist = assertOk(await call(b, "dm:history", { with: a.session.user.id }));
  assert.deepEqual(hist.messages, [r.first, r.fresh]);
  await sleep(200);
  assert.deepEqual(got, [r.first, r.fresh], "each delivered once");
});
