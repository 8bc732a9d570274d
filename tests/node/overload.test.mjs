// Overload admission: a burst far beyond what the server can deliver in time makes its
// dispatcher fall behind; past --overload-lag-ms the server answers new messages
// `overloaded` without storing them. What it accepted reaches every member exactly
// once, nothing it refused shows up anywhere, and it takes messages again once it has
// caught up. The heaviest sender is refused first: a light sender's messages go
// through while one user floods.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Harness, call, uname, uroom, join, assertOk, assertError, sleep } from "./lib.mjs";

// The dispatcher only queues each push on the sockets (the writes happen in each
// connection's task), so its queue builds up only briefly; with Redis the stream of
// events is also paced by Redis. 2 ms trips in every run here (20 ms no longer did
// with Redis since the vectored websocket writes: 0 of 3 runs).
const LAG_MS = 2;
const h = new Harness([
  "--overload-lag-ms", String(LAG_MS),
  "--rate-limit", "100000", "--rate-burst", "100000",
  // Big per-socket buffers: this test is about the gateway falling behind, not about
  // slow consumers.
  "--socket-buffer-bytes", "67108864",
]);
before(async () => {
  await h.start();
});
after(async () => {
  await h.stop();
});

test("past --overload-lag-ms new messages are refused with `overloaded`, unstored; accepted ones all arrive; sends work again after", { timeout: 120000 }, async () => {
  const room = uroom("ovl");
  const MEMBERS = 100;
  const SENDERS = 20;
  const EACH = 60; // below the per-socket request queue (--max-queued 64)
  const PAD = "x".repeat(3000);
  const received = [];
  for (let i = 0; i < MEMBERS; i++) {
    const s = await h.connect(uname("m"), { transports: ["websocket"] });
    await join(s, room);
    const got = [];
    s.on("message:new", (m) => m.room === room && got.push(m.id));
    received.push(got);
  }
  const senders = [];
  for (let i = 0; i < SENDERS; i++) {
    const s = await h.connect(uname("s"), { transports: ["websocket"] });
    await join(s, room);
    senders.push(s);
  }

  // Every sender fires its whole burst at once (like many users at the same moment).
  const acks = await Promise.all(
    senders.flatMap((s, j) =>
      // Long texts: each delivery is a real write, so the gateway's writers compete
      // with its dispatcher for the CPU and the dispatcher falls behind.
      Array.from({ length: EACH }, (_, k) => call(s, "message:send", { room, text: `burst ${j}:${k} ${PAD}` }, 60000)),
    ),
  );
  const accepted = acks.filter((a) => a.ok).map((a) => a.message.id);
  const refused = acks.filter((a) => !a.ok);
  for (const a of refused) {
    assertError(a, "overloaded", "burst");
    assert.match(a.error.message, /not stored/);
  }
  assert.ok(refused.length > 0, `a burst of ${acks.length} messages to ${MEMBERS + SENDERS} members never tripped --overload-lag-ms ${LAG_MS}`);
  assert.ok(accepted.length > 0, "nothing was accepted");

  // Everything accepted reaches every member exactly once; nothing else arrives.
  const want = new Set(accepted);
  const deadline = Date.now() + 60000;
  while (Date.now() < deadline && received.some((got) => got.length < want.size)) await sleep(100);
  for (const got of received) {
    assert.equal(got.length, want.size, `a member got ${got.length} messages, ${want.size} were accepted`);
    assert.equal(new Set(got).size, got.length, "duplicates");
    for (const id of got) assert.ok(want.has(id), `a message that was refused (or never sent) arrived: ${id}`);
  }

  // Caught up: a new message is taken again (bounded retry while the last of the
  // backlog drains).
  let again;
  for (let i = 0; i < 100; i++) {
    again = await call(senders[0], "message:send", { room, text: "after the burst" });
    if (again.ok || again.error?.code !== "overloaded") break;
    await sleep(100);
  }
  assertOk(again, "after the burst");

  // Operators see it: refusals counted by code, and the lag gauge.
  const metrics = await (await fetch(`${h.url}/metrics`)).text();
  const line = metrics.split("\n").find((l) => l.startsWith("confab_event_errors_total") && l.includes('code="overloaded"') && l.includes('event="message:send"'));
  assert.ok(line, "no confab_event_errors_total{code=\"overloaded\"} in /metrics");
  assert.equal(Number(line.split(" ").at(-1)), refused.length);
  assert.match(metrics, /^confab_dispatch_lag_seconds[{ ]/m);
  console.log(`# overload: ${acks.length} sent in a burst, ${accepted.length} accepted, ${refused.length} refused (overloaded), each of ${MEMBERS} members got all accepted`);
});

test("under overload the heaviest sender is shed first: a light sender's messages still go through", { timeout: 120000 }, async () => {
  const room = uroom("shed");
  const MEMBERS = 100;
  const SOCKETS = 20; // one flooding user on many sockets: its heat is per user
  const WINDOW = 10; // sends in flight per flooding socket
  const MAX_EACH = 400; // bound per flooding socket
  const LIGHT = 15;
  const PAD = "x".repeat(3000);
  for (let i = 0; i < MEMBERS; i++) {
    const s = await h.connect(uname("m"), { transports: ["websocket"] });
    await join(s, room);
  }
  const flooderName = uname("flood");
  const flooder = [];
  for (let i = 0; i < SOCKETS; i++) {
    const s = await h.connect(flooderName, { transports: ["websocket"] });
    await join(s, room);
    flooder.push(s);
  }
  const light = await h.connect(uname("light"), { transports: ["websocket"] });
  await join(light, room);

  // The flooder keeps WINDOW sends in flight on every socket until the light
  // sender is done.
  let flooding = true;
  const floodAcks = [];
  const pump = async (s, j) => {
    for (let k = 0; k < MAX_EACH && flooding; k++) {
      floodAcks.push(await call(s, "message:send", { room, text: `flood ${j}:${k} ${PAD}` }, 60000));
    }
  };
  const flood = Promise.all(flooder.flatMap((s, j) => Array.from({ length: WINDOW }, () => pump(s, j))));
  await sleep(300); // the flood is under way
  const lightAcks = [];
  for (let i = 0; i < LIGHT; i++) {
    lightAcks.push(await call(light, "message:send", { room, text: `light ${i}` }, 60000));
    await sleep(100);
  }
  flooding = false;
  await flood;
  const floodRefused = floodAcks.filter((a) => !a.ok);
  const lightRefused = lightAcks.filter((a) => !a.ok);
  for (const a of [...floodRefused, ...lightRefused]) assertError(a, "overloaded");
  console.log(`# shedding: flooder ${floodAcks.length - floodRefused.length}/${floodAcks.length} accepted; light sender ${lightAcks.length - lightRefused.length}/${lightAcks.length} accepted`);
  assert.ok(floodRefused.length > 0, `the flood never tripped --overload-lag-ms ${LAG_MS}: ${floodAcks.length} accepted`);
  assert.equal(lightRefused.length, 0, `the light sender was refused: ${JSON.stringify(lightRefused[0])}`);
});
