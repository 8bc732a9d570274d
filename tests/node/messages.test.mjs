// message:send, message:new fan-out, ids, message:history paging, the "no ack" path.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import {
  Harness,
  FAST,
  call,
  collect,
  waitFor,
  sleep,
  uname,
  uroom,
  assertOk,
  assertError,
  assertErrorPush,
  assertMessage,
  MESSAGE_KEYS,
  assertIncreasing,
  cmpId,
  join,
  send,
  T,
} from "./lib.mjs";

const h = new Harness(FAST);
before(async () => {
  await h.start();
});
after(async () => {
  await h.stop();
});

test("message:send: ack message equals the message:new every member socket gets, exactly once", T, async () => {
  const room = uroom("fan");
  const an = uname("fa");
  const bn = uname("fb");
  const cn = uname("fc");
  const a = await h.connect(an);
  const b1 = await h.connect(bn);
  const b2 = await h.connect(bn);
  const outsider = await h.connect(cn); // only in general
  for (const s of [a, b1, b2]) await join(s, room);
  const inbox = new Map([a, b1, b2, outsider].map((s) => [s, collect(s, "message:new")]));

  const text = "hello <b>world</b> & \"friends\" 'quoted' \u{1F44D}\u{1F3FD}";
  const clientId = "c-1:x.y_Z";
  const before = Date.now();
  const ack = await call(a, "message:send", { room, text, clientId });
  const after_ = Date.now();
  assert.deepEqual(Object.keys(ack).sort(), ["message", "ok"]);
  assert.equal(ack.ok, true);
  const m = assertMessage(ack.message, { room, from: an, text, clientId });
  assert.ok(m.ts >= before - 1000 && m.ts <= after_ + 1000, `ts ${m.ts} outside [${before}, ${after_}] ± 1 s`);

  await Promise.all([a, b1, b2].map((s) => waitFor(s, "message:new", (x) => x.id === m.id, 3000).catch(() => null)));
  await sleep(300);
  for (const s of [a, b1, b2]) {
    assert.deepEqual(
      inbox.get(s).filter((x) => x.room === room),
      [m],
      "each member socket (sender included) gets the message exactly once",
    );
  }
  assert.deepEqual(inbox.get(outsider).filter((x) => x.room === room), [], "non-member gets nothing");
});

test("message:send without clientId: no clientId key in the message", T, async () => {
  const room = uroom("nocid");
  const name = uname("nc");
  const s = await h.connect(name);
  await join(s, room);
  const got = waitFor(s, "message:new", (x) => x.room === room);
  const ack = assertOk(await call(s, "message:send", { room, text: "plain" }));
  assertMessage(ack.message, { room, from: name, text: "plain" });
  assert.equal("clientId" in ack.message, false);
  assert.deepEqual(await got, ack.message);
});

test("unknown fields are ignored and not echoed", T, async () => {
  const room = uroom("extra");
  const name = uname("ex");
  const s = await h.connect(name);
  await join(s, room);
  const ack = assertOk(await call(s, "message:send", { room, text: "x", foo: 1, bar: { baz: [1, 2] } }));
  assertMessage(ack.message, { room, from: name, text: "x" });
  const j = assertOk(await call(s, "room:join", { room, whatever: true }));
  assert.deepEqual(j.messages, [ack.message]);
});

test("text is stored and relayed verbatim (no escaping, no trimming, \\n and \\t kept)", T, async () => {
  const room = uroom("verb");
  const name = uname("vb");
  const s = await h.connect(name);
  const o = await h.connect(uname("vo"));
  await join(s, room);
  await join(o, room);
  const texts = [
    "<script>alert(1)</script>",
    "  leading and trailing spaces  ",
    "line1\nline2\n\ttabbed",
    "&amp; &lt; \\ / \" '",
    "\u{1F600}\u200d\u{1F600} e\u0301 李雷 Zoë",
  ];
  for (const text of texts) {
    const got = waitFor(o, "message:new", (x) => x.room === room && x.text === text);
    const m = await send(s, room, text);
    assert.equal(m.text, text);
    assert.deepEqual(await got, m);
  }
  const hist = assertOk(await call(o, "message:history", { room }));
  assert.deepEqual(hist.messages.map((x) => x.text), texts);
});

test("text length counts Unicode scalar values: 4000 emoji ok, 4001 → invalid_text", T, async () => {
  const room = uroom("len");
  const name = uname("ln");
  const s = await h.connect(name);
  await join(s, room);
  const ok = "\u{1F600}".repeat(4000); // 8000 UTF-16 units, 16000 UTF-8 bytes
  const m = await send(s, room, ok);
  assert.equal(m.text, ok);
  assertError(await call(s, "message:send", { room, text: "\u{1F600}".repeat(4001) }), "invalid_text");
  assertError(await call(s, "message:send", { room, text: "a".repeat(4001) }), "invalid_text");
  const m2 = await send(s, room, "a".repeat(4000));
  assert.equal(m2.text.length, 4000);
});

test("ids: format <ms>-<seq>, strictly increasing as (ms, seq) pairs, ts close to now", T, async () => {
  const room = uroom("ids");
  const an = uname("ia");
  const a = await h.connect(an);
  const b = await h.connect(uname("ib"));
  await join(a, room);
  await join(b, room);
  const ids = [];
  // sequential sends, many within the same millisecond → exercises seq
  for (let i = 0; i < 30; i++) {
    const m = await send(i % 2 ? b : a, room, `n${i}`);
    assert.match(m.id, /^\d+-\d+$/);
    assert.ok(Math.abs(m.ts - Date.now()) < 2000, `ts ${m.ts} vs now ${Date.now()}`);
    ids.push(m.id);
  }
  assertIncreasing(ids, "sequential ids");
  // concurrent sends from two sockets: all distinct, and history is in id order
  const acks = await Promise.all(
    Array.from({ length: 20 }, (_, i) => call(i % 2 ? b : a, "message:send", { room, text: `p${i}` })),
  );
  for (const ack of acks) assertOk(ack);
  const pids = acks.map((x) => x.message.id);
  assert.equal(new Set(pids).size, 20, "ids unique");
  for (const id of pids) assert.ok(cmpId(ids[ids.length - 1], id) < 0, `${id} must be after ${ids[ids.length - 1]}`);
  const hist = assertOk(await call(a, "message:history", { room, limit: 200 }));
  assert.equal(hist.messages.length, 50);
  assertIncreasing(hist.messages.map((x) => x.id), "history ids");
  assert.deepEqual(hist.messages.slice(0, 30).map((x) => x.id), ids);
  assert.deepEqual(new Set(hist.messages.slice(30).map((x) => x.id)), new Set(pids));
});

test("message:history pages backwards: 120 messages, limit 50 → 50/50/20", T, async () => {
  const room = uroom("page");
  const an = uname("pa");
  const a = await h.connect(an);
  await join(a, room);
  const sent = [];
  for (let i = 1; i <= 120; i++) sent.push(await send(a, room, `msg ${i}`));
  assertIncreasing(sent.map((m) => m.id));

  const reader = await h.connect(uname("pr"));
  await join(reader, room, { limit: 1 });

  const p1 = await call(reader, "message:history", { room, limit: 50 });
  assert.deepEqual(Object.keys(p1).sort(), ["hasMore", "messages", "ok", "room"]);
  assert.deepEqual(p1, { ok: true, room, messages: sent.slice(70, 120), hasMore: true });
  const p2 = await call(reader, "message:history", { room, limit: 50, before: p1.messages[0].id });
  assert.deepEqual(p2, { ok: true, room, messages: sent.slice(20, 70), hasMore: true });
  const p3 = await call(reader, "message:history", { room, limit: 50, before: p2.messages[0].id });
  assert.deepEqual(p3, { ok: true, room, messages: sent.slice(0, 20), hasMore: false });

  const all = [...p3.messages, ...p2.messages, ...p1.messages];
  assert.equal(new Set(all.map((m) => m.id)).size, 120, "no overlaps");
  assert.deepEqual(all, sent, "full order");
  // stored messages keep the wire key order (id, room, from, fromId, text, ts)
  for (const m of all) assert.deepEqual(Object.keys(m), MESSAGE_KEYS, `history message keys: ${JSON.stringify(m)}`);

  // before the very first id: nothing
  const p4 = await call(reader, "message:history", { room, limit: 50, before: sent[0].id });
  assert.deepEqual(p4, { ok: true, room, messages: [], hasMore: false });
  // default limit is 50
  const d = await call(reader, "message:history", { room });
  assert.deepEqual(d, { ok: true, room, messages: sent.slice(70), hasMore: true });
  // limit 200 (the max) returns everything
  const big = await call(reader, "message:history", { room, limit: 200 });
  assert.deepEqual(big, { ok: true, room, messages: sent, hasMore: false });
  // before an id in the middle
  const mid = await call(reader, "message:history", { room, limit: 3, before: sent[10].id });
  assert.deepEqual(mid, { ok: true, room, messages: sent.slice(7, 10), hasMore: true });
  // join with limit: latest `limit`, hasMore
  const j = assertOk(await call(reader, "room:join", { room, limit: 10 }));
  assert.deepEqual(j.messages, sent.slice(110));
  assert.equal(j.hasMore, true);
});

test("no ack: invalid message:send → error push with event name and code", T, async () => {
  const room = uroom("noack");
  const s = await h.connect(uname("na"));
  await join(s, room);
  const errs = collect(s, "error");
  const got = waitFor(s, "error", (e) => e?.event === "message:send", 3000);
  s.emit("message:send", { room, text: "   " });
  const push = await got;
  assertErrorPush(push, "message:send", "invalid_text");

  const got2 = waitFor(s, "error", (e) => e?.event === "room:join", 3000);
  s.emit("room:join", { room: "Bad Room" });
  assertErrorPush(await got2, "room:join", "invalid_room");

  const got3 = waitFor(s, "error", (e) => e?.event === "message:history", 3000);
  s.emit("message:history", { room: uroom("notjoined") });
  assertErrorPush(await got3, "message:history", "not_member");
  await sleep(200);
  assert.equal(errs.length, 3, `exactly three error pushes: ${JSON.stringify(errs)}`);
  assert.equal(s.connected, true);
});

test("no ack: a valid message:send is still delivered, and no error push", T, async () => {
  const room = uroom("noack2");
  const an = uname("nb");
  const a = await h.connect(an);
  const b = await h.connect(uname("nc"));
  await join(a, room);
  await join(b, room);
  const errs = collect(a, "error");
  const text = "fire and forget";
  const gotA = waitFor(a, "message:new", (m) => m.room === room && m.text === text);
  const gotB = waitFor(b, "message:new", (m) => m.room === room && m.text === text);
  a.emit("message:send", { room, text, clientId: "ff-1" });
  const mb = await gotB;
  assertMessage(mb, { room, from: an, text, clientId: "ff-1" });
  assert.deepEqual(await gotA, mb);
  await sleep(200);
  assert.deepEqual(errs, []);
  const hist = assertOk(await call(b, "message:history", { room }));
  assert.deepEqual(hist.messages, [mb]);
});

test("a failed request with an ack does not also emit an error push", T, async () => {
  const s = await h.connect(uname("nd"));
  const errs = collect(s, "error");
  assertError(await call(s, "message:send", { room: "general", text: "" }), "invalid_text");
  await sleep(200);
  assert.deepEqual(errs, []);
});
