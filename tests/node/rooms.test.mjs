// room:join / room:leave / room:list / users:list, and room isolation.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import {
  Harness,
  FAST,
  call,
  callNoPayload,
  collect,
  waitFor,
  sleep,
  uname,
  uroom,
  assertOk,
  assertError,
  assertIncreasing,
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

test("room:join of a new room: exact ack", T, async () => {
  const name = uname("j");
  const s = await h.connect(name);
  const room = uroom("new");
  const ack = await call(s, "room:join", { room });
  assert.deepEqual(ack, { ok: true, room, messages: [], hasMore: false, members: [name], memberIds: [name], memberCount: 1 });
});

test("room:join of 'general' lists the caller among members", T, async () => {
  const name = uname("g");
  const s = await h.connect(name);
  const ack = assertOk(await call(s, "room:join", { room: "general" }));
  assert.equal(ack.room, "general");
  assert.ok(ack.members.includes(name));
  assert.deepEqual(ack.members, [...ack.members].sort(), "members sorted");
  assert.deepEqual(ack.memberIds, ack.members, "memberIds: the members' ids, in the same order (id = name in open mode)");
  assert.equal(ack.memberCount, ack.members.length);
  assert.ok(Array.isArray(ack.messages));
  assert.equal(typeof ack.hasMore, "boolean");
});

test("room name boundaries: 1 char and 64 chars are valid", T, async () => {
  const s = await h.connect(uname("b"));
  const long = ("z" + RUNSAFE()).padEnd(64, "9");
  assert.equal(long.length, 64);
  for (const room of ["7", long, `a_b-c_${RUNSAFE()}`]) {
    const ack = assertOk(await call(s, "room:join", { room }));
    assert.equal(ack.room, room);
  }
});
function RUNSAFE() {
  return uroom("x").replace(/^x-/, "");
}

test("room:join history: oldest first, limit, hasMore, members, memberCount", T, async () => {
  const room = uroom("hist");
  const an = uname("ha");
  const bn = uname("hb");
  const a = await h.connect(an);
  await join(a, room);
  const sent = [];
  for (let i = 1; i <= 5; i++) sent.push(await send(a, room, `m${i}`));
  assertIncreasing(sent.map((m) => m.id));

  const b1 = await h.connect(bn);
  const b2 = await h.connect(bn); // second tab: same user, counted once
  const j3 = await call(b1, "room:join", { room, limit: 3 });
  assert.deepEqual(j3, {
    ok: true,
    room,
    messages: sent.slice(2),
    hasMore: true,
    members: [an, bn].sort(),
    memberIds: [an, bn].sort(),
    memberCount: 2,
  });
  const j5 = await call(b2, "room:join", { room, limit: 5 });
  assert.deepEqual(j5, { ok: true, room, messages: sent, hasMore: false, members: [an, bn].sort(), memberIds: [an, bn].sort(), memberCount: 2 });
  const jdef = await call(b2, "room:join", { room });
  assert.deepEqual(jdef, { ok: true, room, messages: sent, hasMore: false, members: [an, bn].sort(), memberIds: [an, bn].sort(), memberCount: 2 });
  const j1 = await call(a, "room:join", { room, limit: 1 });
  assert.deepEqual(j1, { ok: true, room, messages: sent.slice(4), hasMore: true, members: [an, bn].sort(), memberIds: [an, bn].sort(), memberCount: 2 });
  const j200 = await call(a, "room:join", { room, limit: 200 });
  assert.equal(j200.ok, true);
  assert.deepEqual(j200.messages, sent);
});

test("room:join with since: messages after the id, oldest first", T, async () => {
  const room = uroom("since");
  const an = uname("sa");
  const a = await h.connect(an);
  await join(a, room);
  const sent = [];
  for (let i = 1; i <= 6; i++) sent.push(await send(a, room, `s${i}`));
  const b = await h.connect(uname("sb"));

  const after2 = assertOk(await call(b, "room:join", { room, since: sent[1].id }));
  assert.deepEqual(after2.messages, sent.slice(2));
  assert.ok(!after2.truncated, `truncated must be absent/false, got ${after2.truncated}`);
  assert.equal(typeof after2.hasMore, "boolean");

  const all = assertOk(await call(b, "room:join", { room, since: "0-0" }));
  assert.deepEqual(all.messages, sent);
  assert.equal(all.hasMore, false);
  assert.ok(!all.truncated);

  const none = assertOk(await call(b, "room:join", { room, since: sent[5].id }));
  assert.deepEqual(none.messages, []);
  assert.ok(!none.truncated);

  const future = assertOk(await call(b, "room:join", { room, since: `${Date.now() + 3600_000}-0` }));
  assert.deepEqual(future.messages, []);

  // the keys of a since-ack are the documented ones (truncated only when true)
  const keys = Object.keys(after2).filter((k) => k !== "truncated").sort();
  assert.deepEqual(keys, ["hasMore", "memberCount", "memberIds", "members", "messages", "ok", "room"]);
});

test("joining a room twice returns the same ack", T, async () => {
  const room = uroom("twice");
  const name = uname("tw");
  const s = await h.connect(name);
  const first = await call(s, "room:join", { room });
  await send(s, room, "x");
  const second = await call(s, "room:join", { room });
  const third = await call(s, "room:join", { room });
  assert.deepEqual(first, { ok: true, room, messages: [], hasMore: false, members: [name], memberIds: [name], memberCount: 1 });
  assert.equal(second.ok, true);
  assert.deepEqual(second.members, [name]);
  assert.deepEqual(second.memberIds, [name]);
  assert.equal(second.memberCount, 1);
  assert.equal(second.messages.length, 1);
  assert.deepEqual(third, second);
});

test("room:leave: exact ack; afterwards no messages and not_member", T, async () => {
  const room = uroom("leave");
  const an = uname("la");
  const bn = uname("lb");
  const a = await h.connect(an);
  const b = await h.connect(bn);
  await join(a, room);
  await join(b, room);
  const ack = await call(b, "room:leave", { room });
  assert.deepEqual(ack, { ok: true, room });
  const bMsgs = collect(b, "message:new");
  const got = waitFor(a, "message:new", (m) => m.room === room && m.text === "after leave");
  await send(a, room, "after leave");
  await got;
  await sleep(300);
  assert.deepEqual(bMsgs.filter((m) => m.room === room), [], "left socket must not receive the room's messages");
  assertError(await call(b, "message:send", { room, text: "hi" }), "not_member");
  assertError(await call(b, "room:leave", { room }), "not_member");
  // members shrink
  const j = assertOk(await call(a, "room:join", { room }));
  assert.deepEqual(j.members, [an]);
  assert.deepEqual(j.memberIds, [an]);
  assert.equal(j.memberCount, 1);
  // rejoin works
  const back = assertOk(await call(b, "room:join", { room }));
  assert.deepEqual(back.members, [an, bn].sort());
  assert.deepEqual(back.memberIds, [an, bn].sort());
});

test("room:leave of 'general' works and stops general messages", T, async () => {
  const s = await h.connect(uname("lg"));
  assert.deepEqual(await call(s, "room:leave", { room: "general" }), { ok: true, room: "general" });
  assertError(await call(s, "message:send", { room: "general", text: "hi" }), "not_member");
  assertError(await call(s, "message:history", { room: "general" }), "not_member");
});

test("room:list: shape, ordering (most members, then name), counts distinct users, own rooms", T, async () => {
  const big = uroom("rlbig");
  const small = uroom("rlsmall");
  const temp = uroom("rltemp");
  const names = [uname("l1"), uname("l2"), uname("l3")];
  const socks = [];
  for (const n of names) socks.push(await h.connect(n));
  socks.push(await h.connect(names[0])); // second tab of l1: must not count twice
  for (const s of socks) await join(s, big);
  await join(socks[0], small);
  await join(socks[1], temp);
  await call(socks[1], "room:leave", { room: temp });

  const ack = await call(socks[2], "room:list", {});
  assert.deepEqual(Object.keys(ack).sort(), ["ok", "rooms"]);
  assert.equal(ack.ok, true);
  for (const r of ack.rooms) {
    assert.deepEqual(Object.keys(r).sort(), ["members", "room"]);
    assert.equal(typeof r.room, "string");
    assert.ok(Number.isInteger(r.members));
  }
  const byName = Object.fromEntries(ack.rooms.map((r) => [r.room, r.members]));
  assert.equal(byName[big], 3);
  assert.equal(byName[small], 1);
  assert.equal(temp in byName, false, "an empty room is not listed");
  assert.ok(byName.general >= 3);
  const names2 = ack.rooms.map((r) => r.room);
  assert.equal(new Set(names2).size, names2.length, "no duplicates");
  const sorted = [...ack.rooms].sort((x, y) => y.members - x.members || (x.room < y.room ? -1 : x.room > y.room ? 1 : 0));
  assert.deepEqual(ack.rooms, sorted, "most members first, then by name");

  // missing payload is accepted
  const ack2 = assertOk(await callNoPayload(socks[2], "room:list"));
  assert.ok(ack2.rooms.some((r) => r.room === big));
});

test("users:list with room: members with per-room connection counts; without room: connections anywhere", T, async () => {
  const room = uroom("ul");
  const an = uname("ua");
  const bn = uname("ub");
  const cn = uname("uc");
  const a1 = await h.connect(an);
  const a2 = await h.connect(an);
  const b = await h.connect(bn);
  const c = await h.connect(cn);
  await join(a1, room);
  await join(b, room);

  const inRoom = await call(c, "users:list", { room });
  assert.deepEqual(inRoom, {
    ok: true,
    users: [
      { id: an, name: an, connections: 1 },
      { id: bn, name: bn, connections: 1 },
    ].sort((x, y) => (x.id < y.id ? -1 : 1)),
    total: 2,
  });

  await join(a2, room);
  const inRoom2 = await call(c, "users:list", { room });
  assert.deepEqual(
    inRoom2.users.find((u) => u.id === an),
    { id: an, name: an, connections: 2 },
  );

  const everyone = await callNoPayload(c, "users:list");
  assert.deepEqual(Object.keys(everyone).sort(), ["ok", "total", "users"]);
  assert.equal(everyone.ok, true);
  const get = (n) => everyone.users.find((u) => u.id === n);
  assert.deepEqual(get(an), { id: an, name: an, connections: 2 });
  assert.deepEqual(get(bn), { id: bn, name: bn, connections: 1 });
  assert.deepEqual(get(cn), { id: cn, name: cn, connections: 1 });
  for (const u of everyone.users) assert.deepEqual(Object.keys(u).sort(), ["connections", "id", "name"], JSON.stringify(u));
  const ns = everyone.users.map((u) => u.id);
  assert.deepEqual(ns, [...ns].sort(), "sorted by id");
  assert.equal(everyone.total, everyone.users.length);

  const everyone2 = assertOk(await call(c, "users:list", {}));
  assert.deepEqual(everyone2.users.map((u) => u.id), ns);

  // an empty room lists nobody
  const empty = await call(c, "users:list", { room: uroom("nobody") });
  assert.deepEqual(empty, { ok: true, users: [], total: 0 });
});

test("room isolation: two users in two rooms see only their room's messages", T, async () => {
  const r1 = uroom("iso");
  const r2 = uroom("iso");
  const an = uname("ia");
  const bn = uname("ib");
  const a = await h.connect(an);
  const b = await h.connect(bn);
  await join(a, r1);
  await join(b, r2);
  const aMsgs = collect(a, "message:new");
  const bMsgs = collect(b, "message:new");
  const aGot = waitFor(a, "message:new", (m) => m.text === "in r1");
  const bGot = waitFor(b, "message:new", (m) => m.text === "in r2");
  const m1 = await send(a, r1, "in r1");
  const m2 = await send(b, r2, "in r2");
  await aGot;
  await bGot;
  await sleep(300);
  assert.deepEqual(aMsgs.filter((m) => m.room !== "general"), [m1]);
  assert.deepEqual(bMsgs.filter((m) => m.room !== "general"), [m2]);
  // history is per room, and a non-member cannot read it
  const h1 = assertOk(await call(a, "message:history", { room: r1 }));
  assert.deepEqual(h1.messages, [m1]);
  assertError(await call(a, "message:history", { room: r2 }), "not_member");
  assertError(await call(b, "message:history", { room: r1 }), "not_member");
  // joining shows the other room's history only
  const j = assertOk(await call(a, "room:join", { room: r2 }));
  assert.deepEqual(j.messages, [m2]);
});

test("the first event emitted right at connect is not lost (30 sockets)", T, async () => {
  const room = uroom("first");
  const names = Array.from({ length: 30 }, () => uname("fe"));
  // socket.io-client buffers the emit and sends it right after the CONNECT ack
  const socks = names.map((name) => h.raw({ auth: { name } }));
  const acks = await Promise.all(
    socks.map((s) => s.timeout(8000).emitWithAck("room:join", { room }).catch((e) => ({ lost: String(e) }))),
  );
  const lost = acks.filter((a) => a.ok !== true);
  assert.deepEqual(lost, [], `${lost.length} of 30 first events got no ok ack`);
  const last = assertOk(await call(socks[0], "users:list", { room }));
  assert.deepEqual(last.users.map((u) => u.id), [...names].sort());
  assert.deepEqual(last.users.map((u) => u.name), [...names].sort());
  assert.ok(last.users.every((u) => u.connections === 1));
  assert.equal(last.total, 30);
  for (const s of socks) s.close();
});
