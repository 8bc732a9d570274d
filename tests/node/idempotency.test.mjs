// Idempotent sends: resending with the same clientId (a retry after a lost ack or a
// reconnect, from any tab of the user) returns the original message and nothing is
// stored or delivered twice.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Harness, FAST, call, collect, sleep, uname, uroom, assertOk, join, T } from "./lib.mjs";

const h = new Harness(FAST);
before(async () => {
  await h.start();
});
after(async () => {
  await h.stop();
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
  const hist = assertOk(await call(b, "dm:history", { with: a.session.user.name }));
  assert.equal(hist.messages.length, 1);
});
