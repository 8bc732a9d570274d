// Abuse resistance at the socket: every inbound event counts against the rate
// (refused ones too), rate_limited carries retryAfterMs, repeated protocol errors
// disconnect, per-user and per-IP quotas hold whatever the number of connections,
// connection caps per IP and per user, the Origin check, text made of invisible
// characters. Runs on the embedded backend and (test-node-redis) on Redis.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Harness, call, waitFor, sleep, uname, uroom, assertOk, assertError, T } from "./lib.mjs";

const OFF = ["--quota-messages-per-user", "off", "--quota-messages-per-ip", "off",
  "--quota-joins-per-user", "off", "--quota-connects-per-user", "off", "--quota-connects-per-ip", "off"];
const h = new Harness([...OFF, "--rate-limit", "5", "--rate-burst", "5", "--protocol-errors-burst", "20"]);
const q = new Harness(["--rate-limit", "1000", "--rate-burst", "1000",
  "--quota-messages-per-user", "2/4", "--quota-messages-per-ip", "3/8",
  "--quota-joins-per-user", "1/3", "--quota-connects-per-user", "off", "--quota-connects-per-ip", "off"]);
const caps = new Harness([...OFF, "--max-connections-per-ip", "4", "--max-connections-per-user", "2"]);
const conn = new Harness(["--quota-connects-per-user", "1/2", "--quota-connects-per-ip", "off",
  "--quota-messages-per-user", "off", "--quota-messages-per-ip", "off"]);
// Rooms: 3 per user and 5 per address at once, then one every 50 s.
const rooms = new Harness([...OFF, "--rate-limit", "1000", "--rate-burst", "1000",
  "--quota-rooms-per-user", "0.02/3", "--quota-rooms-per-ip", "0.02/5"]);
// DMs: 2 at once per user, then 1/s; messages unlimited.
const dms = new Harness([...OFF, "--rate-limit", "1000", "--rate-burst", "1000", "--quota-dms-per-user", "1/2", "--quota-dms-per-ip", "off"]);
const all = [h, q, caps, conn, rooms, dms];

before(async () => {
  await Promise.all(all.map((x) => x.start()));
});
after(async () => {
  await Promise.all(all.map((x) => x.stop()));
});

function assertLimited(ack, ctx = "") {
  assert.equal(ack.ok, false, `${ctx} ${JSON.stringify(ack)}`);
  assert.equal(ack.error.code, "rate_limited", `${ctx} ${JSON.stringify(ack)}`);
  assert.equal(typeof ack.error.retryAfterMs, "number", JSON.stringify(ack));
  assert.ok(ack.error.retryAfterMs > 0 && ack.error.retryAfterMs <= 60000, JSON.stringify(ack));
}

test("every inbound event counts, unknown and invalid ones included; rate_limited says when to retry", T, async () => {
  const s = await h.connect(uname("r"));
  // Five tokens: spent on events the server refuses anyway.
  for (let i = 0; i < 5; i++) {
    const ack = await call(s, `no:such:event${i}`, {});
    assertError(ack, "bad_request");
  }
  assertLimited(await call(s, "room:list", {}), "after 5 unknown events");
  await sleep(450);
  assertOk(await call(s, "room:list", {}));
});

test("repeated protocol errors disconnect the socket (after an error push)", T, async () => {
  const loose = new Harness([...OFF, "--rate-limit", "1000", "--rate-burst", "1000", "--protocol-errors-burst", "20"]);
  await loose.start();
  try {
    const s = await loose.connect(uname("p"));
    const pushed = waitFor(s, "error", (e) => /too many invalid events/.test(e?.error?.message ?? ""), 5000);
    const gone = new Promise((res) => s.once("disconnect", res));
    for (let i = 0; i < 40 && s.connected; i++) s.emit("message:send", "not an object");
    await pushed;
    assert.equal(await Promise.race([gone, sleep(5000).then(() => "still connected")]), "io server disconnect");
    // Valid events never count as errors: a busy honest socket stays.
    const ok = await loose.connect(uname("ok"));
    for (let i = 0; i < 40; i++) assertOk(await call(ok, "room:list", {}));
    assert.ok(ok.connected);
  } finally {
    await loose.stop();
  }
});

test("messages per user: one quota for all the user's sockets, retryAfterMs, then the rate again", T, async () => {
  const name = uname("mq");
  const [a, b] = [await q.connect(name), await q.connect(name)];
  const room = "general";
  const acks = [];
  for (let i = 0; i < 6; i++) acks.push(await call(i % 2 ? b : a, "message:send", { room, text: `m${i}` }));
  assert.deepEqual(acks.map((x) => x.ok), [true, true, true, true, false, false]);
  const limited = acks[4];
  assertLimited(limited);
  assert.ok(limited.error.retryAfterMs <= 500, JSON.stringify(limited));
  await sleep(limited.error.retryAfterMs + 50);
  assertOk(await call(a, "message:send", { room, text: "after the wait" }));
  // DMs draw on the same quota.
  assertLimited(await call(b, "dm:send", { to: name, text: "note" }));
});

test("messages per IP: several users from one address share its quota", T, async () => {
  await sleep(3000); // the address's bucket refills after the test above (3/s, burst 8)
  const users = [];
  for (let i = 0; i < 3; i++) users.push(await q.connect(uname("ip")));
  let ok = 0;
  let last;
  // 3 users x 4 (each user's burst) = 12 > the address's burst of 8.
  for (let round = 0; round < 4; round++) {
    for (const s of users) {
      last = await call(s, "message:send", { room: "general", text: "x" });
      if (last.ok) ok++;
    }
  }
  assert.ok(ok >= 8 && ok <= 9, `accepted ${ok}`);
  assertLimited(last);
});

test("joins per user: new rooms are limited, rejoining a room one is in is not", T, async () => {
  const s = await q.connect(uname("j"));
  const acks = [];
  for (let i = 0; i < 5; i++) acks.push(await call(s, "room:join", { room: uroom("jq") }));
  assert.deepEqual(acks.map((x) => x.ok), [true, true, true, false, false]);
  assertLimited(acks[3]);
  for (let i = 0; i < 5; i++) assertOk(await call(s, "room:join", { room: "general" }));
});

test("connections: at most N per user, at most M per address", T, async () => {
  const name = uname("c");
  await caps.connect(name);
  await caps.connect(name);
  const err = await caps.expectRefused({ auth: { name } });
  assert.ok(err.message.startsWith("rate_limited: too many connections for this user"), err.message);
  // The address: 4 in all (2 are the user's above).
  await caps.connect(uname("c2"));
  await caps.connect(uname("c3"));
  const ipErr = await caps.expectRefused({ auth: { name: uname("c4") } });
  assert.ok(ipErr.message.startsWith("rate_limited: too many connections from your address"), ipErr.message);
});

test("handshakes per user are limited across the user's reconnects", T, async () => {
  const name = uname("hs");
  const a = await conn.connect(name);
  const b = await conn.connect(name);
  const err = await conn.expectRefused({ auth: { name } });
  assert.ok(err.message.startsWith("rate_limited: "), err.message);
  await conn.close(a);
  await conn.close(b);
});

test("Origin: a page of another site cannot open a session; the server's own origin can", T, async () => {
  const url = new URL(h.url);
  const poll = (origin) =>
    fetch(`${h.url}/socket.io/?EIO=4&transport=polling`, {
      headers: origin ? { origin } : {},
      signal: AbortSignal.timeout(5000),
    });
  const evil = await poll("https://evil.example");
  assert.equal(evil.status, 403);
  assert.deepEqual(await evil.json(), { code: 4, message: "Forbidden: origin not allowed" });
  assert.equal((await poll(`http://${url.host}`)).status, 200, "same origin");
  assert.equal((await poll(undefined)).status, 200, "no Origin: not a browser");
  assert.equal((await poll(`http://${url.hostname}:1`)).status, 403, "another port is another origin");
});

test("text made only of invisible characters is refused", T, async () => {
  const s = await h.connect(uname("inv"));
  await sleep(1100); // the tight per-socket rate of this server
  for (const text of ["\u200B\u200B", "\u2060 \uFEFF", "\u3164", "\u202E"]) {
    assertError(await call(s, "message:send", { room: "general", text }), "invalid_text");
    await sleep(220);
  }
  assertOk(await call(s, "message:send", { room: "general", text: "\u202Evisible" }));
});

test("new rooms per user and per address: starting a room (first message, room:create) is charged, posting in one is not", T, async () => {
  const [a, b] = [await rooms.connect(uname("ra")), await rooms.connect(uname("rb"))];
  const fresh = () => uroom("rq");
  const start = async (s, room) => {
    assertOk(await call(s, "room:join", { room }));
    return call(s, "message:send", { room, text: `first in ${room}`, clientId: `c-${room}` });
  };
  const mine = [fresh(), fresh(), fresh()];
  for (const r of mine) assertOk(await start(a, r), r);
  // The user's fourth room is refused, stored nowhere; a retry with the clientId too.
  const fourth = fresh();
  assertLimited(await start(a, fourth), "fourth room of a user");
  assertLimited(await call(a, "message:send", { room: fourth, text: "again", clientId: `c-${fourth}` }));
  assertLimited(await call(a, "room:create", { room: fresh() }), "room:create");
  const seen = assertOk(await call(b, "room:join", { room: fourth }));
  assert.deepEqual(seen.messages, [], "nothing stored in the refused room");
  // Posting in rooms that exist costs no room quota, by anyone.
  for (const r of mine) assertOk(await call(a, "message:send", { room: r, text: "more" }));
  assertOk(await call(b, "room:join", { room: mine[0] }));
  assertOk(await call(b, "message:send", { room: mine[0], text: "hi" }));
  // Same address: b has its own 3, but the address has only 5 - 3 = 2 left.
  assertOk(await start(b, fresh()));
  assertOk(await start(b, fresh()));
  assertLimited(await start(b, fresh()), "the address's sixth room");
});

test("DMs per user: their own quota on top of the message quota; room messages are not charged", T, async () => {
  const [name, peer] = [uname("dq"), uname("dp")];
  const [a, b] = [await dms.connect(name), await dms.connect(name)];
  await dms.connect(peer);
  assertOk(await call(a, "dm:send", { to: peer, text: "one" }));
  assertOk(await call(b, "dm:send", { to: peer, text: "two" }));
  const third = await call(a, "dm:send", { to: peer, text: "three" });
  assertLimited(third, "third DM at once");
  assert.match(third.error.message, /too many direct messages/);
  assertOk(await call(a, "room:join", { room: "general" }));
  for (let i = 0; i < 5; i++) assertOk(await call(a, "message:send", { room: "general", text: `room ${i}` }));
  await sleep(third.error.retryAfterMs + 50);
  assertOk(await call(a, "dm:send", { to: peer, text: "after the wait" }));
});
