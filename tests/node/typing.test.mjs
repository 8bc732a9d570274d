// typing: relayed to other users only; server expiry (--typing-timeout-ms 1000); leave/disconnect end typing.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Harness, FAST, call, collect, waitFor, sleep, uname, uroom, assertError, join, T } from "./lib.mjs";

const h = new Harness([...FAST, "--typing-timeout-ms", "1000"]);
before(async () => {
  await h.start();
});
after(async () => {
  await h.stop();
});

async function setup() {
  const room = uroom("ty");
  const an = uname("ya");
  const bn = uname("yb");
  const a1 = await h.connect(an);
  const a2 = await h.connect(an);
  const b = await h.connect(bn);
  const out = await h.connect(uname("yo")); // not in the room
  for (const s of [a1, a2, b]) await join(s, room);
  return { room, an, bn, a1, a2, b, out };
}

test("typing: ack {ok:true}; others get {room,user,userId,typing}; typist's own sockets and non-members get nothing", T, async () => {
  const { room, an, a1, a2, b, out } = await setup();
  const own1 = collect(a1, "typing");
  const own2 = collect(a2, "typing");
  const outs = collect(out, "typing");
  const gotTrue = waitFor(b, "typing", (t) => t.typing === true, 2000);
  assert.deepEqual(await call(a1, "typing", { room, typing: true }), { ok: true });
  assert.deepEqual(await gotTrue, { room, user: an, userId: an, typing: true });
  const gotFalse = waitFor(b, "typing", (t) => t.typing === false, 2000);
  assert.deepEqual(await call(a1, "typing", { room, typing: false }), { ok: true });
  assert.deepEqual(await gotFalse, { room, user: an, userId: an, typing: false });
  await sleep(300);
  assert.deepEqual(own1, [], "typist's own socket gets no typing");
  assert.deepEqual(own2, [], "typist's other tab gets no typing");
  assert.deepEqual(outs, [], "non-member gets no typing");
});

test("typing: server expiry sends typing:false ~timeout after the last typing:true", T, async () => {
  const { room, an, a1, b } = await setup();
  const gotTrue = waitFor(b, "typing", (t) => t.typing === true, 2000);
  const t0 = Date.now();
  assert.deepEqual(await call(a1, "typing", { room, typing: true }), { ok: true });
  await gotTrue;
  const expired = await waitFor(b, "typing", (t) => t.typing === false, 4000);
  const dt = Date.now() - t0;
  assert.deepEqual(expired, { room, user: an, userId: an, typing: false });
  assert.ok(dt >= 800 && dt <= 3000, `expiry after ${dt} ms, expected ~1000 (800..3000)`);
});

test("typing: refreshing typing:true postpones the expiry", T, async () => {
  const { room, an, a1, b } = await setup();
  const events = collect(b, "typing");
  assert.deepEqual(await call(a1, "typing", { room, typing: true }), { ok: true });
  await sleep(600);
  const tLast = Date.now();
  assert.deepEqual(await call(a1, "typing", { room, typing: true }), { ok: true });
  const expired = await waitFor(b, "typing", (t) => t.typing === false, 4000);
  const dt = Date.now() - tLast;
  assert.deepEqual(expired, { room, user: an, userId: an, typing: false });
  assert.ok(dt >= 800 && dt <= 3000, `expiry ${dt} ms after the refresh, expected ~1000 (800..3000)`);
  assert.equal(events.filter((e) => e.typing === false).length, 1, "exactly one typing:false");
  for (const e of events) assert.deepEqual(e, { room, user: an, userId: an, typing: e.typing });
});

test("typing: leaving the room ends typing (before the expiry)", T, async () => {
  const room = uroom("tyl");
  const cn = uname("yc");
  const c = await h.connect(cn);
  const b = await h.connect(uname("yd"));
  await join(c, room);
  await join(b, room);
  const gotTrue = waitFor(b, "typing", (t) => t.typing === true, 2000);
  await call(c, "typing", { room, typing: true });
  await gotTrue;
  const gotFalse = waitFor(b, "typing", (t) => t.typing === false, 2000);
  const t0 = Date.now();
  assert.deepEqual(await call(c, "room:leave", { room }), { ok: true, room });
  assert.deepEqual(await gotFalse, { room, user: cn, userId: cn, typing: false });
  assert.ok(Date.now() - t0 < 700, `typing:false after leave took ${Date.now() - t0} ms (expiry is 1000)`);
  // and no second typing:false from the expiry
  const later = collect(b, "typing");
  await sleep(1200);
  assert.deepEqual(later, []);
});

test("typing: disconnecting ends typing (before the expiry)", T, async () => {
  const room = uroom("tyd");
  const cn = uname("ye");
  const c = await h.connect(cn);
  const b = await h.connect(uname("yf"));
  await join(c, room);
  await join(b, room);
  const gotTrue = waitFor(b, "typing", (t) => t.typing === true, 2000);
  await call(c, "typing", { room, typing: true });
  await gotTrue;
  const gotFalse = waitFor(b, "typing", (t) => t.typing === false, 2000);
  const t0 = Date.now();
  await h.close(c);
  assert.deepEqual(await gotFalse, { room, user: cn, userId: cn, typing: false });
  assert.ok(Date.now() - t0 < 700, `typing:false after disconnect took ${Date.now() - t0} ms (expiry is 1000)`);
});

test("typing in a room not joined → not_member; bad room → invalid_room; typing missing → bad_request", T, async () => {
  const s = await h.connect(uname("yg"));
  assertError(await call(s, "typing", { room: uroom("nope"), typing: true }), "not_member");
  assertError(await call(s, "typing", { room: "No Way", typing: true }), "invalid_room");
  assertError(await call(s, "typing", { room: "general" }), "bad_request");
  assertError(await call(s, "typing", { room: "general", typing: 1 }), "bad_request");
  assert.deepEqual(await call(s, "typing", { room: "general", typing: false }), { ok: true });
});
