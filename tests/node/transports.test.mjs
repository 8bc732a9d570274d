// Transports: websocket only, polling only, default (polling then upgrade).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Harness, call, waitFor, uname, uroom, assertOk, assertMessage, assertSession, sleep, T } from "./lib.mjs";
import { gatedUpgrade, upgraded, watchTransport } from "./upgrade-gate.mjs";

const h = new Harness();
before(async () => {
  await h.start();
});
after(async () => {
  await h.stop();
});

/**
 * a → b and b → a; each receiver (the sender included) gets `message:new` equal to the
 * ack. Resolves to the messages, and checks every arrival was on transport `on` when
 * given.
 */
async function exchange(a, an, b, bn, room, label, on) {
  const out = [];
  for (const [from, fromName, to] of [
    [a, an, b],
    [b, bn, a],
  ]) {
    const text = `hello over ${label} from ${fromName}`;
    const arrived = (s) =>
      waitFor(s, "message:new", (m) => m.room === room && m.text === text).then((m) => ({ m, transport: s.io.engine.transport.name }));
    const gotTo = arrived(to);
    const gotFrom = arrived(from);
    const ack = assertOk(await call(from, "message:send", { room, text }));
    assertMessage(ack.message, { room, from: fromName, text });
    for (const got of [await gotTo, await gotFrom]) {
      assert.deepEqual(got.m, ack.message);
      if (on) assert.equal(got.transport, on, `${text} arrived over ${got.transport}`);
    }
    out.push(ack.message);
  }
  return out;
}

const cases = [
  { label: "websocket only", opts: { transports: ["websocket"] }, expect: "websocket" },
  { label: "polling only", opts: { transports: ["polling"] }, expect: "polling" },
];

for (const c of cases) {
  test(`${c.label}: join, send and receive`, T, async () => {
    const room = uroom("tr");
    const an = uname("ta");
    const bn = uname("tb");
    const a = await h.connect(an, c.opts);
    const b = await h.connect(bn, c.opts);
    const wa = watchTransport(a);
    assert.equal(a.io.engine.transport.name, c.expect);
    assert.equal(b.io.engine.transport.name, c.expect);
    assertSession(a.session, an);

    const ja = await call(a, "room:join", { room });
    assert.deepEqual(ja, { ok: true, room, messages: [], hasMore: false, members: [an], memberIds: [an], memberCount: 1 });
    const jb = assertOk(await call(b, "room:join", { room }));
    assert.deepEqual(jb.members, [an, bn].sort());
    assert.deepEqual(jb.memberIds, [an, bn].sort());
    assert.equal(jb.memberCount, 2);

    await exchange(a, an, b, bn, room, c.label, c.expect);

    // a big-ish message (several KB) survives the transport unchanged
    const big = "é漢😀 ".repeat(900).trim();
    const gotBig = waitFor(b, "message:new", (m) => m.room === room && m.text === big);
    const ackBig = assertOk(await call(a, "message:send", { room, text: big }));
    assert.deepEqual(await gotBig, ackBig.message);

    // history sees all three
    const hist = assertOk(await call(b, "message:history", { room }));
    assert.equal(hist.messages.length, 3);
    assert.equal(hist.hasMore, false);
    assert.deepEqual(wa.upgrades, [], "no transport change");
    assert.equal(a.io.engine.transport.name, c.expect);

    await h.close(a);
    await h.close(b);
  });
}

test("default transports, stock client: the session opens on polling and an upgrade to websocket follows", T, async () => {
  const room = uroom("tu");
  const names = [uname("sa"), uname("sb")];
  const socks = names.map((name) => {
    const s = h.raw({ auth: { name } });
    // The manager's `open` fires when the Engine.IO handshake is done, before the
    // upgrade probe starts: the transport the session opened on.
    s.log = { opened: null, upgrades: [], disconnects: [] };
    s.io.once("open", () => {
      s.log.opened = s.io.engine.transport.name;
      s.io.engine.on("upgrade", (t) => s.log.upgrades.push(t.name));
    });
    s.on("disconnect", (r) => s.log.disconnects.push(r));
    s.sessionP = waitFor(s, "session", () => true, 10000);
    return s;
  });
  for (const s of socks) s.session = await s.sessionP;
  for (const s of socks) {
    assert.equal(s.log.opened, "polling", "default transports open on HTTP long-polling");
    assert.equal(await upgraded(s), "websocket");
    assert.deepEqual(s.log.upgrades, ["websocket"], "exactly one upgrade, to websocket");
  }
  for (const s of socks) assertOk(await call(s, "room:join", { room }));
  await exchange(socks[0], names[0], socks[1], names[1], room, "stock default", "websocket");
  for (const s of socks) assert.deepEqual(s.log.disconnects, []);
  for (const s of socks) await h.close(s);
});

test("default transports: messages flow over polling, then the same session upgrades to websocket and they keep flowing", T, async () => {
  const room = uroom("tg");
  const an = uname("ga");
  const bn = uname("gb");
  const gate = gatedUpgrade();
  const a = await h.connect(an, { transports: gate.transports });
  const b = await h.connect(bn, { transports: gate.transports });
  const disconnects = [];
  for (const s of [a, b]) s.on("disconnect", (r) => disconnects.push(r));
  const wa = watchTransport(a);
  const wb = watchTransport(b);
  // Right after connect: long-polling (the probe is held back).
  assert.equal(a.io.engine.transport.name, "polling");
  assert.equal(b.io.engine.transport.name, "polling");
  const ids = [a.io.engine.id, a.id, b.io.engine.id, b.id];

  assertOk(await call(a, "room:join", { room }));
  assertOk(await call(b, "room:join", { room }));
  const sent = await exchange(a, an, b, bn, room, "polling", "polling");
  // A few KB through a polling POST and a polling GET.
  const big = "é漢😀 ".repeat(900).trim();
  const gotBig = waitFor(b, "message:new", (m) => m.room === room && m.text === big).then((m) => [m, b.io.engine.transport.name]);
  const ackBig = assertOk(await call(a, "message:send", { room, text: big }));
  assert.deepEqual(await gotBig, [ackBig.message, "polling"]);
  sent.push(ackBig.message);
  assert.deepEqual([wa.upgrades, wb.upgrades], [[], []], "still on polling before the release");

  gate.release();
  assert.equal(await upgraded(a), "websocket");
  assert.equal(await upgraded(b), "websocket");
  assert.deepEqual([wa.upgrades, wb.upgrades], [["websocket"], ["websocket"]]);
  // The same Engine.IO session and Socket.IO socket, no reconnect in between.
  assert.deepEqual([a.io.engine.id, a.id, b.io.engine.id, b.id], ids);
  assert.deepEqual(disconnects, []);

  sent.push(...(await exchange(a, an, b, bn, room, "websocket", "websocket")));
  const hist = assertOk(await call(b, "message:history", { room }));
  assert.deepEqual(hist.messages.map((m) => m.id), sent.map((m) => m.id), "history: every message once, in order");
  await h.close(a);
  await h.close(b);
});

test("mixed transports talk to each other", T, async () => {
  const room = uroom("mix");
  const names = [uname("mw"), uname("mp"), uname("md")];
  const socks = [
    await h.connect(names[0], { transports: ["websocket"] }),
    await h.connect(names[1], { transports: ["polling"] }),
    await h.connect(names[2]),
  ];
  for (const s of socks) assertOk(await call(s, "room:join", { room }));
  const text = "to everyone";
  const got = socks.map((s) => waitFor(s, "message:new", (m) => m.room === room && m.text === text));
  const ack = assertOk(await call(socks[1], "message:send", { room, text }));
  for (const g of got) assert.deepEqual(await g, ack.message);
  await sleep(50);
  for (const s of socks) await h.close(s);
});
