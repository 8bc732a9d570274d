// Handshake: name rule, NFC normalisation, session event, tabs; `--auth guest` refuses
// name-only and malformed-token handshakes (the full auth suite is auth.test.mjs).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Harness, call, callNoPayload, uname, assertOk, assertSession, T } from "./lib.mjs";

const h = new Harness();
const guest = new Harness(["--auth", "guest"]);

before(async () => {
  await Promise.all([h.start(), guest.start()]);
});
after(async () => {
  await Promise.all([h.stop(), guest.stop()]);
});

function assertCode(err, code) {
  assert.ok(err instanceof Error, "connect_error must carry an Error");
  assert.ok(
    err.message.startsWith(`${code}: `),
    `connect_error message should start with "${code}: ", got ${JSON.stringify(err.message)}`,
  );
  assert.ok(err.message.length > code.length + 2, "explanation after the code");
}

async function userEntry(socket, name, payload) {
  const ack = assertOk(payload === undefined ? await callNoPayload(socket, "users:list") : await call(socket, "users:list", payload));
  return ack.users.find((u) => u.name === name);
}

/** users:list entry by id (open mode: the id is the name). */
async function userEntryById(socket, id, payload) {
  const ack = assertOk(payload === undefined ? await callNoPayload(socket, "users:list") : await call(socket, "users:list", payload));
  return ack.users.find((u) => u.id === id);
}

test("valid name gets session {user:{id, name, roles:[]}, rooms:['general'], unread:{}}", T, async () => {
  const name = uname("hs");
  const s = await h.connect(name);
  assertSession(s.session, name);
  assert.equal(s.connected, true);
});

test("name of exactly 32 characters is accepted", T, async () => {
  const name = ("n" + uname("l")).padEnd(32, "z");
  assert.equal(name.length, 32);
  const s = await h.connect(name);
  assertSession(s.session, name);
});

test("names with '_', '.', '-' and digits are accepted", T, async () => {
  const name = `a_b.c-9_${uname("p")}`.slice(0, 32);
  const s = await h.connect(name);
  assertSession(s.session, name);
});

test("missing auth is refused with invalid_name", T, async () => {
  const err = await h.expectRefused({});
  assertCode(err, "invalid_name");
});

const badNames = [
  ["empty name", ""],
  ["33-char name", "a".repeat(33)],
  ["name with a space", "ali ce"],
  ["name with '<'", "a<b"],
  ["name with '!'", "bang!"],
  ["name with an emoji", "a\u{1F600}"],
  ["name with a combining mark that has no precomposed form (q + U+0301)", "q\u0301"],
  ["name with a control character", "a\u0007b"],
  ["non-string name (number)", 42],
  ["non-string name (boolean)", true],
  ["non-string name (array)", ["alice"]],
  ["non-string name (null)", null],
  ["name with a zero-width space (U+200B)", "al\u200Bice"],
  ["name that is a Hangul filler (U+3164)", "\u3164"],
  ["name with a bidi override (U+202E)", "a\u202Eb"],
];
for (const [label, name] of badNames) {
  test(`refused: ${label} → invalid_name`, T, async () => {
    const err = await h.expectRefused({ auth: { name } });
    assertCode(err, "invalid_name");
  });
}

test("NFC normalisation: decomposed 'Jose\\u0301' becomes 'José'", T, async () => {
  const base = uname("nf");
  const decomposed = `Jose\u0301${base}`;
  const nfc = decomposed.normalize("NFC");
  assert.notEqual(decomposed, nfc);
  const s = await h.connect(decomposed);
  assertSession(s.session, nfc);
  const entry = await userEntry(s, nfc);
  assert.deepEqual(entry, { id: nfc, name: nfc, connections: 1 });
  assert.equal(await userEntry(s, decomposed), undefined, "the decomposed form must not be listed");
  assert.equal(await userEntryById(s, decomposed), undefined, "the decomposed form must not be listed as an id");
});

test("NFC normalisation happens before the length check (32 decomposed é = 64 code points)", T, async () => {
  const decomposed = "e\u0301".repeat(32);
  const nfc = decomposed.normalize("NFC");
  assert.equal([...nfc].length, 32);
  const s = await h.connect(decomposed);
  assertSession(s.session, nfc);
});

for (const name of ["Zoë", "李雷", "Ωmega_1.x-y", "user\u0663"]) {
  test(`unicode name ${JSON.stringify(name)} is accepted`, T, async () => {
    const s = await h.connect(name);
    assertSession(s.session, name);
    await h.close(s);
  });
}

test("two connections with the same name both work; users:list shows connections: 2", T, async () => {
  const name = uname("tab");
  const a = await h.connect(name);
  const b = await h.connect(name);
  assertSession(a.session, name);
  assertSession(b.session, name);
  assert.deepEqual(await userEntry(a, name), { id: name, name, connections: 2 });
  assert.deepEqual(await userEntry(b, name, { room: "general" }), { id: name, name, connections: 2 });
  // both tabs are functional
  assertOk(await call(a, "room:list", {}));
  assertOk(await call(b, "room:list", {}));
  await h.close(b);
  // bounded poll: the count drops to 1 after the tab closes
  let entry;
  for (let i = 0; i < 20; i++) {
    entry = await userEntry(a, name);
    if (entry?.connections === 1) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(entry, { id: name, name, connections: 1 });
});

test("names are case-sensitive: 'Case…' and 'case…' are two users", T, async () => {
  const base = uname("ase");
  const upper = `C${base}`;
  const lower = `c${base}`;
  const a = await h.connect(upper);
  const b = await h.connect(lower);
  assertSession(a.session, upper);
  assertSession(b.session, lower);
  assert.deepEqual(await userEntry(a, upper), { id: upper, name: upper, connections: 1 });
  assert.deepEqual(await userEntry(a, lower), { id: lower, name: lower, connections: 1 });
});

test("--auth guest: a bare {name} handshake (no token) → unauthorized", T, async () => {
  const err = await guest.expectRefused({ auth: { name: uname("g") } });
  assertCode(err, "unauthorized");
});

test("--auth guest: a non-string token → unauthorized", T, async () => {
  const err = await guest.expectRefused({ auth: { token: 123 } });
  assertCode(err, "unauthorized");
});

test("--auth guest: a token over 8192 bytes → unauthorized", T, async () => {
  const err = await guest.expectRefused({ auth: { token: "x".repeat(9000) } });
  assertCode(err, "unauthorized");
});

test("open-mode server ignores an unknown auth field (e.g. an old `key`)", T, async () => {
  const name = uname("k");
  const s = await h.connect(name, { auth: { name, key: "whatever" } });
  assertSession(s.session, name);
});

test("server is still running after all refused handshakes", T, async () => {
  assert.ok(h.alive());
  assert.ok(guest.alive());
  const s = await h.connect(uname("end"));
  assertOk(await call(s, "room:join", { room: "general" }));
});
