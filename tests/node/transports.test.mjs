// Transports: websocket only, polling only, default (polling then upgrade).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Harness, call, waitFor, uname, uroom, assertOk, assertMessage, sleep, T } from "./lib.mjs";

const h = new Harness();
before(async () => {
  await h.start();
});
after(async () => {
  await h.stop();
});

async function waitUpgrade(s, timeoutMs = 5000) {
  const engine = s.io.engine;
  if (engine.transport.name === "websocket") return;
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no upgrade to websocket")), timeoutMs);
    engine.once("upgrade", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

const cases = [
  { label: "websocket only", opts: { transports: ["websocket"] }, expect: "websocket" },
  { label: "polling only", opts: { transports: ["polling"] }, expect: "polling" },
  { label: "default (polling then upgrade)", opts: {}, expect: "websocket", upgrade: true },
];

for (const c of cases) {
  test(`${c.label}: join, send and receive`, T, async () => {
    const room = uroom("tr");
    const an = uname("ta");
    const bn = uname("tb");
    const a = await h.connect(an, c.opts);
    const b = await h.connect(bn, c.opts);
    if (c.upgrade) {
      assert.equal(a.io.engine.transport.name === "polling" || a.io.engine.transport.name === "websocket", true);
      await waitUpgrade(a);
      await waitUpgrade(b);
    }
    assert.equal(a.io.engine.transport.name, c.expect);
    assert.equal(b.io.engine.transport.name, c.expect);
    assert.deepEqual(a.session, { user: { name: an }, rooms: ["general"], unread: {} });

    const ja = await call(a, "room:join", { room });
    assert.deepEqual(ja, { ok: true, room, messages: [], hasMore: false, members: [an], memberCount: 1 });
    const jb = assertOk(await call(b, "room:join", { room }));
    assert.deepEqual(jb.members, [an, bn].sort());
    assert.equal(jb.memberCount, 2);

    // a → b and b → a
    for (const [from, fromName, to] of [
      [a, an, b],
      [b, bn, a],
    ]) {
      const text = `hello over ${c.label} from ${fromName}`;
      const gotTo = waitFor(to, "message:new", (m) => m.text === text);
      const gotFrom = waitFor(from, "message:new", (m) => m.text === text);
      const ack = assertOk(await call(from, "message:send", { room, text }));
      assertMessage(ack.message, { room, from: fromName, text });
      assert.deepEqual(await gotTo, ack.message);
      assert.deepEqual(await gotFrom, ack.message);
    }

    // a big-ish message (several KB) survives the transport unchanged
    const big = "é漢😀 ".repeat(900).trim();
    const gotBig = waitFor(b, "message:new", (m) => m.room === room && m.text === big);
    const ackBig = assertOk(await call(a, "message:send", { room, text: big }));
    assert.deepEqual(await gotBig, ackBig.message);

    // history sees all three
    const hist = assertOk(await call(b, "message:history", { room }));
    assert.equal(hist.messages.length, 3);
    assert.equal(hist.hasMore, false);

    await h.close(a);
    await h.close(b);
  });
}

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
