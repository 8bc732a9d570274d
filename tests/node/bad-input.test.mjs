// Bad input: every case checks the exact error code and that the socket/server keep working.
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
  assertErrorPush,
  assertMessage,
  join,
  send,
  T,
} from "./lib.mjs";

const h = new Harness(FAST);
const rl = new Harness(["--rate-limit", "5", "--rate-burst", "5"]);
const mr = new Harness([...FAST, "--max-rooms", "3"]);
const NONE = Symbol("no payload");
let u, uName, R, otherName;

before(async () => {
  await h.start();
  uName = uname("bad");
  u = await h.connect(uName);
  R = uroom("bad");
  await join(u, R);
  otherName = uname("oth");
  await h.connect(otherName);
});
after(async () => {
  await Promise.all([h.stop(), rl.stop(), mr.stop()]);
});

function ask(event, payload, timeoutMs = 5000) {
  return payload === NONE ? callNoPayload(u, event, timeoutMs) : call(u, event, payload, timeoutMs);
}

// The refusal of a malformed user id (dm:send `to`, dm:history / dm:read `with`).
const BAD_ID = "user id must be 1-128 visible characters";

// [label, event, payload | NONE | () => payload, expected code, expected message?]
const cases = [
  ["message:send payload is a string", "message:send", "hello", "bad_request"],
  ["message:send payload is a number", "message:send", 42, "bad_request"],
  ["message:send payload is an array", "message:send", () => [{ room: R, text: "hi" }], "bad_request"],
  ["message:send payload is null", "message:send", null, "bad_request"],
  ["message:send payload is missing", "message:send", NONE, "bad_request"],
  ["message:send payload is a boolean", "message:send", true, "bad_request"],
  ["message:send room missing", "message:send", { text: "hi" }, "bad_request"],
  ["message:send text missing", "message:send", () => ({ room: R }), "bad_request"],
  ["message:send room wrong type (number)", "message:send", { room: 42, text: "hi" }, "bad_request"],
  ["message:send room 'Bad Room'", "message:send", { room: "Bad Room", text: "hi" }, "invalid_room"],
  ["message:send room ''", "message:send", { room: "", text: "hi" }, "invalid_room"],
  ["message:send room of 65 chars", "message:send", { room: "a".repeat(65), text: "hi" }, "invalid_room"],
  ["message:send room '-x'", "message:send", { room: "-x", text: "hi" }, "invalid_room"],
  ["message:send room '_x'", "message:send", { room: "_x", text: "hi" }, "invalid_room"],
  ["message:send room 'UPPER'", "message:send", { room: "UPPER", text: "hi" }, "invalid_room"],
  ["message:send room 'café' (non-ASCII)", "message:send", { room: "café", text: "hi" }, "invalid_room"],
  ["message:send text wrong type (number)", "message:send", () => ({ room: R, text: 42 }), "bad_request"],
  ["message:send text wrong type (array)", "message:send", () => ({ room: R, text: ["hi"] }), "bad_request"],
  ["message:send text empty", "message:send", () => ({ room: R, text: "" }), "invalid_text"],
  ["message:send text whitespace-only", "message:send", () => ({ room: R, text: " \n\t  \n" }), "invalid_text"],
  ["message:send text of 4001 chars", "message:send", () => ({ room: R, text: "a".repeat(4001) }), "invalid_text"],
  ["message:send text with \\u0000", "message:send", () => ({ room: R, text: "a\u0000b" }), "invalid_text"],
  ["message:send text with \\u0007", "message:send", () => ({ room: R, text: "bell\u0007" }), "invalid_text"],
  ["message:send text with \\r", "message:send", () => ({ room: R, text: "a\rb" }), "invalid_text"],
  ["message:send text with \\u007f (DEL)", "message:send", () => ({ room: R, text: "a\u007fb" }), "invalid_text"],
  ["message:send text with \\u009b (C1 control)", "message:send", () => ({ room: R, text: "a\u009bb" }), "invalid_text"],
  ["message:send clientId of 65 chars", "message:send", () => ({ room: R, text: "hi", clientId: "c".repeat(65) }), "bad_request"],
  ["message:send clientId empty", "message:send", () => ({ room: R, text: "hi", clientId: "" }), "bad_request"],
  ["message:send clientId with a space", "message:send", () => ({ room: R, text: "hi", clientId: "a b" }), "bad_request"],
  ["message:send clientId a number", "message:send", () => ({ room: R, text: "hi", clientId: 7 }), "bad_request"],
  ["message:send to a room not joined", "message:send", () => ({ room: uroom("nj"), text: "hi" }), "not_member"],
  ["room:join limit 0", "room:join", () => ({ room: R, limit: 0 }), "bad_request"],
  ["room:join limit 201", "room:join", () => ({ room: R, limit: 201 }), "bad_request"],
  ["room:join limit '10' (string)", "room:join", () => ({ room: R, limit: "10" }), "bad_request"],
  ["room:join limit 1.5", "room:join", () => ({ room: R, limit: 1.5 }), "bad_request"],
  ["room:join limit -1", "room:join", () => ({ room: R, limit: -1 }), "bad_request"],
  ["room:join since 'abc'", "room:join", () => ({ room: R, since: "abc" }), "bad_request"],
  ["room:join since '1-2-3'", "room:join", () => ({ room: R, since: "1-2-3" }), "bad_request"],
  ["room:join since a number", "room:join", () => ({ room: R, since: 5 }), "bad_request"],
  ["room:join room 'UPPER'", "room:join", { room: "UPPER" }, "invalid_room"],
  ["room:join room of 65 chars", "room:join", { room: "b".repeat(65) }, "invalid_room"],
  ["room:join room wrong type (array)", "room:join", { room: ["x"] }, "bad_request"],
  ["room:join payload a string", "room:join", "general", "bad_request"],
  ["room:join payload missing", "room:join", NONE, "bad_request"],
  ["room:leave of a room not joined", "room:leave", () => ({ room: uroom("nl") }), "not_member"],
  ["room:leave room invalid", "room:leave", { room: "Not Valid" }, "invalid_room"],
  ["room:leave payload a number", "room:leave", 1, "bad_request"],
  ["message:history of a room not joined", "message:history", () => ({ room: uroom("nh") }), "not_member"],
  ["message:history before '1-2-3'", "message:history", () => ({ room: R, before: "1-2-3" }), "bad_request"],
  ["message:history before 'abc'", "message:history", () => ({ room: R, before: "abc" }), "bad_request"],
  ["message:history limit 0", "message:history", () => ({ room: R, limit: 0 }), "bad_request"],
  ["message:history limit 201", "message:history", () => ({ room: R, limit: 201 }), "bad_request"],
  ["message:history limit '10'", "message:history", () => ({ room: R, limit: "10" }), "bad_request"],
  ["message:history room invalid", "message:history", { room: "Nope Nope" }, "invalid_room"],
  ["dm:send to a user id that never connected", "dm:send", () => ({ to: uname("gone"), text: "hi" }), "user_not_found"],
  // ids are looser than names: any 1-128 visible characters
  ["dm:send to 'a<b' (a valid id, never connected)", "dm:send", { to: "a<b", text: "hi" }, "user_not_found"],
  ["dm:send to a 33-char id (valid, never connected)", "dm:send", { to: "x".repeat(33), text: "hi" }, "user_not_found"],
  ["dm:send to a 128-char id (valid, never connected)", "dm:send", { to: "y".repeat(128), text: "hi" }, "user_not_found"],
  ["dm:send to an id with a space", "dm:send", { to: "ali ce", text: "hi" }, "invalid_name", BAD_ID],
  ["dm:send to an id of 129 chars", "dm:send", { to: "x".repeat(129), text: "hi" }, "invalid_name", BAD_ID],
  ["dm:send to an empty id", "dm:send", { to: "", text: "hi" }, "invalid_name", BAD_ID],
  ["dm:send to an id with a zero-width space", "dm:send", { to: "al\u200Bice", text: "hi" }, "invalid_name", BAD_ID],
  ["dm:send to an id with a control character", "dm:send", { to: "a\u0007b", text: "hi" }, "invalid_name", BAD_ID],
  ["dm:send to wrong type", "dm:send", { to: 5, text: "hi" }, "bad_request"],
  ["dm:send text empty", "dm:send", () => ({ to: otherName, text: "" }), "invalid_text"],
  ["dm:send text with \\u0000", "dm:send", () => ({ to: otherName, text: "\u0000" }), "invalid_text"],
  ["dm:send clientId of 65 chars", "dm:send", () => ({ to: otherName, text: "hi", clientId: "d".repeat(65) }), "bad_request"],
  ["dm:send payload a string", "dm:send", "hi", "bad_request"],
  ["dm:history with an id with a space", "dm:history", { with: "bad id" }, "invalid_name", BAD_ID],
  ["dm:history with an id of 129 chars", "dm:history", { with: "h".repeat(129) }, "invalid_name", BAD_ID],
  ["dm:history with an id with a bidi override", "dm:history", { with: "a\u202Eb" }, "invalid_name", BAD_ID],
  ["dm:read with an id with a space", "dm:read", { with: "bad id", upTo: "1-1" }, "invalid_name", BAD_ID],
  ["dm:read with an id of 129 chars", "dm:read", { with: "r".repeat(129), upTo: "1-1" }, "invalid_name", BAD_ID],
  ["dm:history before '1-2-3'", "dm:history", () => ({ with: otherName, before: "1-2-3" }), "bad_request"],
  ["dm:history limit 201", "dm:history", () => ({ with: otherName, limit: 201 }), "bad_request"],
  ["typing with typing:'yes'", "typing", () => ({ room: R, typing: "yes" }), "bad_request"],
  ["typing room not joined", "typing", () => ({ room: uroom("nt"), typing: true }), "not_member"],
  ["users:list room wrong type", "users:list", { room: 5 }, "bad_request"],
  ["users:list room invalid", "users:list", { room: "Bad Room" }, "invalid_room"],
  ["room:list payload a string", "room:list", "x", "bad_request"],
  ["unknown event name (with ack)", "no:such-event", { room: "general" }, "bad_request"],
  ["payload > 64 KiB: text of 70000 chars", "message:send", () => ({ room: R, text: "a".repeat(70000) }), "payload_too_large"],
  ["payload > 64 KiB: extra field of 70 KB", "message:send", () => ({ room: R, text: "ok", pad: "x".repeat(70000) }), "payload_too_large"],
  ["payload > 64 KiB on room:join", "room:join", () => ({ room: R, pad: "y".repeat(70000) }), "payload_too_large"],
  ["binary attachment as the payload", "message:send", () => Buffer.from("hello"), "bad_request"],
  ["binary attachment inside the payload", "message:send", () => ({ room: R, text: "hi", file: Buffer.from([1, 2, 3]) }), "bad_request"],
];

for (const [label, event, payload, code, message] of cases) {
  test(`${label} → ${code}`, T, async () => {
    const p = typeof payload === "function" ? payload() : payload;
    const ack = await ask(event, p);
    assertError(ack, code, label);
    if (message !== undefined) assert.equal(ack.error.message, message, label);
    assert.equal(u.connected, true, "socket still connected after the bad request");
  });
}

test("boundaries that are valid: text of exactly 4000 chars; text with \\n and \\t", T, async () => {
  const m1 = await send(u, R, "b".repeat(4000));
  assertMessage(m1, { room: R, from: uName, text: "b".repeat(4000) });
  const t = "line one\nline two\n\tindented\ttab";
  const m2 = await send(u, R, t);
  assertMessage(m2, { room: R, from: uName, text: t });
  const m3 = await send(u, R, "c", { clientId: "k".repeat(64) });
  assertMessage(m3, { room: R, from: uName, text: "c", clientId: "k".repeat(64) });
  const m4 = await send(u, R, "d", { clientId: "Az09_.:-" });
  assert.equal(m4.clientId, "Az09_.:-");
  // a large but allowed payload (60 KB unknown field)
  const m5 = assertOk(await call(u, "message:send", { room: R, text: "big pad ok", pad: "z".repeat(60000) })).message;
  assertMessage(m5, { room: R, from: uName, text: "big pad ok" });
  // limit boundaries
  assertOk(await call(u, "room:join", { room: R, limit: 1 }));
  assertOk(await call(u, "room:join", { room: R, limit: 200 }));
  assertOk(await call(u, "message:history", { room: R, limit: 200 }));
  // none of the rejected messages reached history
  const hist = assertOk(await call(u, "message:history", { room: R, limit: 200 }));
  assert.deepEqual(hist.messages, [m1, m2, m3, m4, m5]);
});

test("dm:history with '<script>' (a valid id nobody holds) is an empty history, not an error", T, async () => {
  assert.deepEqual(await ask("dm:history", { with: "<script>" }), { ok: true, with: "<script>", messages: [], hasMore: false });
});

test("unknown event without an ack → error push", T, async () => {
  const got = waitFor(u, "error", (e) => e?.event === "no:such-event", 3000);
  u.emit("no:such-event", {});
  assertErrorPush(await got, "no:such-event", "bad_request");
});

test("no ack: bad payloads produce error pushes with the right event and code", T, async () => {
  const errs = collect(u, "error");
  u.emit("message:send", "just a string");
  u.emit("dm:send", { to: "bad name", text: "x" });
  u.emit("typing", { room: R, typing: "yes" });
  const ok = await until(() => errs.length >= 3, 3000);
  assert.ok(ok, `expected 3 error pushes, got ${JSON.stringify(errs)}`);
  const byEvent = Object.fromEntries(errs.map((e) => [e.event, e]));
  assertErrorPush(byEvent["message:send"], "message:send", "bad_request");
  assertErrorPush(byEvent["dm:send"], "dm:send", "invalid_name");
  assert.equal(byEvent["dm:send"].error.message, BAD_ID);
  assertErrorPush(byEvent["typing"], "typing", "bad_request");
});

async function until(pred, timeoutMs) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (pred()) return true;
    await sleep(25);
  }
  return pred();
}

test("after the barrage: server still running, the same socket sends normally, others receive", T, async () => {
  assert.ok(h.alive(), "server process still running");
  assert.equal(u.connected, true);
  const vn = uname("vw");
  const v = await h.connect(vn);
  await join(v, R);
  const got = waitFor(v, "message:new", (m) => m.text === "still alive", 3000);
  const m = await send(u, R, "still alive");
  assert.deepEqual(await got, m);
  const dm = assertOk(await call(u, "dm:send", { to: vn, text: "dm ok" }));
  assert.equal(dm.message.to, vn);
});

for (const transports of [["websocket"], ["polling"]]) {
  test(`a packet over the transport limit (4 × max-payload) closes the connection (${transports[0]})`, T, async () => {
    const s = await h.connect(uname("huge"), { transports });
    await join(s, R);
    const gone = new Promise((resolve) => s.once("disconnect", (reason) => resolve(reason)));
    s.emit("message:send", { room: R, text: "h".repeat(300 * 1024) });
    const reason = await Promise.race([gone, sleep(5000).then(() => "still connected")]);
    assert.notEqual(reason, "still connected", "the connection must be closed");
    assert.ok(h.alive(), "server still running");
    const hist = assertOk(await call(u, "message:history", { room: R, limit: 5 }));
    assert.ok(hist.messages.every((m) => m.text.length < 300 * 1024), "the huge message was not stored");
  });
}

// --- rate limiting ---------------------------------------------------------

test("rate limit 5/s burst 5: 20 quick events → first 5 succeed, the rest rate_limited; budget refills", T, async () => {
  await rl.start();
  try {
    const name = uname("rl");
    const s = await rl.connect(name);
    const room = "general";
    const t0 = Date.now();
    const acks = await Promise.all(
      Array.from({ length: 20 }, (_, i) => call(s, "message:send", { room, text: `burst ${i}` })),
    );
    const elapsed = Date.now() - t0;
    for (let i = 0; i < 5; i++) assertMessage(assertOk(acks[i], `#${i}`).message, { room, from: name, text: `burst ${i}` });
    const limited = acks.slice(5).filter((a) => !a.ok);
    for (const a of limited) assertError(a, "rate_limited");
    // at 5/s at most ceil(elapsed/200) tokens can have come back while the burst was read
    const refills = Math.ceil(elapsed / 200);
    assert.ok(limited.length >= 15 - refills, `only ${limited.length} of 15 rate_limited (elapsed ${elapsed} ms)`);
    assert.ok(limited.length >= 1);
    assert.equal(s.connected, true, "a rate-limited socket is not disconnected");

    // the rejected ones were not stored
    await sleep(1300);
    const hist = assertOk(await call(s, "message:history", { room, limit: 50 }));
    const okCount = acks.filter((a) => a.ok).length;
    assert.equal(hist.messages.filter((m) => m.text.startsWith("burst ")).length, okCount);
    // the budget refills
    const again = assertOk(await call(s, "message:send", { room, text: "after the pause" }));
    assert.equal(again.message.text, "after the pause");
    // budgets are per socket: a fresh socket is not limited
    const s2 = await rl.connect(uname("rm"));
    assertOk(await call(s2, "message:send", { room, text: "fresh socket" }));
    assert.ok(rl.alive());
  } finally {
    await rl.stop();
  }
});

// --- room limit ------------------------------------------------------------

test("--max-rooms 3: a socket in general + 2 rooms cannot join a fourth → forbidden", T, async () => {
  await mr.start();
  try {
    const s = await mr.connect(uname("mr"));
    const [r1, r2, r3] = [uroom("m"), uroom("m"), uroom("m")];
    await join(s, r1);
    await join(s, r2); // general + r1 + r2 = 3
    assertError(await call(s, "room:join", { room: r3 }), "forbidden");
    // re-joining a room it is already in is still fine
    assertOk(await call(s, "room:join", { room: r1 }));
    assertOk(await call(s, "room:join", { room: "general" }));
    // the refused room was not joined
    assertError(await call(s, "message:send", { room: r3, text: "x" }), "not_member");
    // after leaving one, the fourth can be joined
    assert.deepEqual(await call(s, "room:leave", { room: r1 }), { ok: true, room: r1 });
    await join(s, r3);
    assertOk(await call(s, "message:send", { room: r3, text: "in r3" }));
    // the limit is per socket: another socket of the same user has its own
    const s2 = await mr.connect(s.session.user.name);
    await join(s2, r1);
    await join(s2, r2);
    assertError(await call(s2, "room:join", { room: uroom("m") }), "forbidden");
    assert.ok(mr.alive());
  } finally {
    await mr.stop();
  }
});
