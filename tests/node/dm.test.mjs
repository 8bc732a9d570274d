// dm:send, dm:new fan-out to both users' tabs, dm:history, DM privacy. DMs are addressed by
// user id (`to`, `with`); in open mode (these suites) the id is the name.
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
  assertOk,
  assertError,
  assertDm,
  DM_KEYS,
  assertIncreasing,
  T,
} from "./lib.mjs";

const h = new Harness(FAST);
// Users offline for a second are forgotten (the janitor looks every 200 ms).
const idle = new Harness([...FAST, "--idle-user-ttl", "1s", "--janitor-interval-ms", "200"]);
let an, bn, cn, a1, a2, b1, b2, c;
const inbox = new Map();

before(async () => {
  await Promise.all([h.start(), idle.start()]);
  an = uname("da");
  bn = uname("db");
  cn = uname("dc");
  a1 = await h.connect(an);
  a2 = await h.connect(an);
  b1 = await h.connect(bn);
  b2 = await h.connect(bn);
  c = await h.connect(cn);
  for (const s of [a1, a2, b1, b2, c]) inbox.set(s, collect(s, "dm:new"));
});
after(async () => {
  await Promise.all([h.stop(), idle.stop()]);
});

const sentAB = [];

test("dm:send: exact ack; both parties' sockets (all tabs) get dm:new once; a third user gets nothing", T, async () => {
  const text = "psst <i>secret</i>";
  const clientId = "dm-1";
  const waits = [a1, a2, b1, b2].map((s) => waitFor(s, "dm:new", (m) => m.text === text, 3000));
  const ack = await call(a1, "dm:send", { to: bn, text, clientId });
  assert.deepEqual(Object.keys(ack).sort(), ["message", "ok"]);
  assert.equal(ack.ok, true);
  const m = assertDm(ack.message, { from: an, to: bn, text, clientId });
  for (const w of waits) assert.deepEqual(await w, m);
  await sleep(300);
  for (const s of [a1, a2, b1, b2]) {
    assert.deepEqual(inbox.get(s).filter((x) => x.id === m.id && x.text === text), [m], "exactly once per socket");
  }
  assert.deepEqual(inbox.get(c), [], "third party gets no dm:new");
  sentAB.push(m);
});

test("dm:send reply from the other side, without clientId", T, async () => {
  const text = "got it";
  const waits = [a1, a2, b1, b2].map((s) => waitFor(s, "dm:new", (m) => m.text === text, 3000));
  const ack = assertOk(await call(b2, "dm:send", { to: an, text }));
  const m = assertDm(ack.message, { from: bn, to: an, text });
  assert.equal("clientId" in m, false);
  for (const w of waits) assert.deepEqual(await w, m);
  sentAB.push(m);
  await sleep(200);
  assert.deepEqual(inbox.get(c), []);
});

test("dm ids increase per conversation; dm:history pages backwards over the pair only", T, async () => {
  for (let i = 0; i < 5; i++) {
    const from = i % 2 ? b1 : a2;
    const ack = assertOk(await call(from, "dm:send", { to: i % 2 ? an : bn, text: `dm ${i}` }));
    sentAB.push(ack.message);
  }
  assertIncreasing(sentAB.map((m) => m.id), "dm ids");
  // a conversation between b and c must not show up in a–b history
  const other = assertOk(await call(c, "dm:send", { to: bn, text: "hi b, it's c" }));

  const full = await call(a1, "dm:history", { with: bn });
  assert.deepEqual(full, { ok: true, with: bn, messages: sentAB, hasMore: false });
  // stored DMs keep the wire key order (id, from, fromId, to, text, ts, clientId?)
  for (const m of full.messages) {
    const keys = "clientId" in m ? [...DM_KEYS, "clientId"] : DM_KEYS;
    assert.deepEqual(Object.keys(m), keys, `dm:history message keys: ${JSON.stringify(m)}`);
  }
  const fromB = await call(b1, "dm:history", { with: an });
  assert.deepEqual(fromB, { ok: true, with: an, messages: sentAB, hasMore: false });

  const p1 = await call(a1, "dm:history", { with: bn, limit: 3 });
  assert.deepEqual(p1, { ok: true, with: bn, messages: sentAB.slice(4), hasMore: true });
  const p2 = await call(a1, "dm:history", { with: bn, limit: 3, before: p1.messages[0].id });
  assert.deepEqual(p2, { ok: true, with: bn, messages: sentAB.slice(1, 4), hasMore: true });
  const p3 = await call(a1, "dm:history", { with: bn, limit: 3, before: p2.messages[0].id });
  assert.deepEqual(p3, { ok: true, with: bn, messages: sentAB.slice(0, 1), hasMore: false });

  const bc = await call(b2, "dm:history", { with: cn });
  assert.deepEqual(bc, { ok: true, with: cn, messages: [other.message], hasMore: false });
});

test("DM privacy: a third party's dm:history with either party shows only its own conversation", T, async () => {
  const withA = await call(c, "dm:history", { with: an });
  assert.deepEqual(withA, { ok: true, with: an, messages: [], hasMore: false });
  const withB = assertOk(await call(c, "dm:history", { with: bn }));
  assert.ok(withB.messages.every((m) => m.fromId === cn || m.to === cn), "only c's own messages");
  assert.ok(withB.messages.every((m) => !sentAB.some((x) => x.id === m.id && x.text === m.text)));
  // the inbox of c holds only c's own conversation
  assert.ok(inbox.get(c).every((m) => m.fromId === cn || m.to === cn), JSON.stringify(inbox.get(c)));
});

test("dm:history with an offline-but-valid id is empty, not an error", T, async () => {
  const r = await call(a1, "dm:history", { with: uname("ghost") });
  assert.deepEqual(r.ok, true);
  assert.deepEqual(r.messages, []);
  assert.equal(r.hasMore, false);
});

test("dm:send to yourself: a note to self, each of your sockets gets it once", T, async () => {
  const text = "note to self";
  const waits = [a1, a2].map((s) => waitFor(s, "dm:new", (m) => m.text === text, 3000));
  const ack = assertOk(await call(a1, "dm:send", { to: an, text }));
  const m = assertDm(ack.message, { from: an, to: an, text });
  for (const w of waits) assert.deepEqual(await w, m);
  await sleep(300);
  for (const s of [a1, a2]) assert.equal(inbox.get(s).filter((x) => x.text === text).length, 1, "exactly once");
  for (const s of [b1, b2, c]) assert.equal(inbox.get(s).filter((x) => x.text === text).length, 0);
  const hist = await call(a2, "dm:history", { with: an });
  assert.deepEqual(hist, { ok: true, with: an, messages: [m], hasMore: false });
});

test("dm:send to a user id that never connected → user_not_found", T, async () => {
  assertError(await call(a1, "dm:send", { to: uname("never"), text: "anyone?" }), "user_not_found");
});

test("offline inbox: DMs to a known offline user are kept, counted as unread in the next session, and dm:read clears them on every tab", T, async () => {
  const en = uname("inbox");
  const e = await h.connect(en);
  await h.close(e);
  // unread counts are keyed by the sender's user id (the name, in open mode)
  const sender = a1.session.user.id;
  assert.equal(sender, an);
  const first = assertOk(await call(a1, "dm:send", { to: en, text: "while you were out 1" }));
  const second = assertOk(await call(a1, "dm:send", { to: en, text: "while you were out 2" }));
  // Back online with two tabs: the session says what is unread.
  const tab1 = await h.connect(en);
  const tab2 = await h.connect(en);
  assert.deepEqual(tab1.session.unread, { [sender]: 2 });
  const hist = assertOk(await call(tab1, "dm:history", { with: sender }));
  assert.deepEqual(hist.messages.map((m) => m.id), [first.message.id, second.message.id]);
  // Reading up to the first leaves one unread, on every tab of the reader.
  const pushed = waitFor(tab2, "dm:read", (p) => p.with === sender);
  assert.deepEqual(await call(tab1, "dm:read", { with: sender, upTo: first.message.id }), { ok: true, with: sender, unread: 1 });
  assert.deepEqual(await pushed, { with: sender, upTo: first.message.id, unread: 1 });
  assert.deepEqual(await call(tab2, "dm:read", { with: sender, upTo: second.message.id }), { ok: true, with: sender, unread: 0 });
  const again = await h.connect(en);
  assert.deepEqual(again.session.unread, {});
  // The sender's own unread counts are untouched by what it sent.
  assertError(await call(a1, "dm:read", { with: en }), "bad_request");
});

test("dm:send with an NFC-equivalent recipient id reaches the user", T, async () => {
  const base = uname("nf");
  const decomposed = `Jose\u0301${base}`;
  const nfc = decomposed.normalize("NFC");
  const j = await h.connect(nfc);
  const got = waitFor(j, "dm:new", (m) => m.text === "hola", 3000);
  const ack = assertOk(await call(a1, "dm:send", { to: decomposed, text: "hola" }));
  assert.equal(ack.message.to, nfc);
  assert.deepEqual(await got, ack.message);
});

test("--idle-user-ttl: a user offline that long is forgotten with their unread DMs; online users stay; history stays; coming back makes them known", T, async () => {
  const [goneName, stayName, senderName] = [uname("gone"), uname("stay"), uname("send")];
  const gone = await idle.connect(goneName);
  const stay = await idle.connect(stayName);
  const sender = await idle.connect(senderName);
  await idle.close(gone);
  const kept = assertOk(await call(sender, "dm:send", { to: goneName, text: "while you were out" }));
  // Bounded wait for the janitor: DMs to the forgotten user are refused.
  let ack;
  for (let i = 0; i < 40; i++) {
    await sleep(250);
    ack = await call(sender, "dm:send", { to: goneName, text: "still there?" });
    if (!ack.ok) break;
  }
  assertError(ack, "user_not_found");
  // Online users are never forgotten, however long ago they connected.
  assert.ok(stay.connected);
  assertOk(await call(sender, "dm:send", { to: stayName, text: "hi" }));
  // Back: known again, nothing counted unread, the conversation still in history.
  const back = await idle.connect(goneName);
  assert.deepEqual(back.session.unread, {});
  const hist = assertOk(await call(back, "dm:history", { with: senderName }));
  assert.ok(hist.messages.some((m) => m.id === kept.message.id), JSON.stringify(hist.messages));
  assertOk(await call(sender, "dm:send", { to: goneName, text: "welcome back" }));
});
