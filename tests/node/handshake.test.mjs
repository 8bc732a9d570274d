// Handshake: name rule, NFC normalisation, session event, tabs, access key.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Harness, call, callNoPayload, uname, assertOk, T } from "./lib.mjs";

const h = new Harness();
const keyed = new Harness(["--access-key", "sekret"]);

before(async () => {
  await Promise.all([h.start(), keyed.start()]);
});
after(async () => {
  await Promise.all([h.stop(), keyed.stop()]);
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

test("valid name gets session {user:{name}, rooms:['general']}", T, async () => {
  const name = uname("hs");
  const s = await h.connect(name);
  assert.deepEqual(s.session, { user: { name }, rooms: ["general"], unread: {} });
  assert.equal(s.connected, true);
});

test("name of exactly 32 characters is accepted", T, async () => {
  const name = ("n" + uname("l")).padEnd(32, "z");
  assert.equal(name.length, 32);
  const s = await h.connect(name);
  assert.deepEqual(s.session, { user: { name }, rooms: ["general"], unread: {} });
});

test("names with '_', '.', '-' and digits are accepted", T, async () => {
  const name = `a_b.c-9_${uname("p")}`.slice(0, 32);
  const s = await h.connect(name);
  assert.deepEqual(s.session, { user: { name }, rooms: ["general"], unread: {} });
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
  assert.deepEqual(s.session, { user: { name: nfc }, rooms: ["general"], unread: {} });
  const entry = await userEntry(s, nfc);
  assert.deepEqual(entry, { name: nfc, connections: 1 });
  assert.equal(await userEntry(s, decomposed), undefined, "the decomposed form must not be listed");
});

test("NFC normalisation happens before the length check (32 decomposed é = 64 code points)", T, async () => {
  const decomposed = "e\u0301".repeat(32);
  const nfc = decomposed.normalize("NFC");
  assert.equal([...nfc].length, 32);
  const s = await h.connect(decomposed);
  assert.deepEqual(s.session, { user: { name: nfc }, rooms: ["general"], unread: {} });
});

for (const name of ["Zoë", "李雷", "Ωmega_1.x-y", "user\u0663"]) {
  test(`unicode name ${JSON.stringify(name)} is accepted`, T, async () => {
    const s = await h.connect(name);
    assert.deepEqual(s.session, { user: { name }, rooms: ["general"], unread: {} });
    await h.close(s);
  });
}

test("two connections with the same name both work; users:list shows connections: 2", T, async () => {
  const name = uname("tab");
  const a = await h.connect(name);
  const b = await h.connect(name);
  assert.deepEqual(a.session, { user: { name }, rooms: ["general"], unread: {} });
  assert.deepEqual(b.session, { user: { name }, rooms: ["general"], unread: {} });
  assert.deepEqual(await userEntry(a, name), { name, connections: 2 });
  assert.deepEqual(await userEntry(b, name, { room: "general" }), { name, connections: 2 });
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
  assert.deepEqual(entry, { name, connections: 1 });
});

test("names are case-sensitive: 'Case…' and 'case…' are two users", T, async () => {
  const base = uname("ase");
  const upper = `C${base}`;
  const lower = `c${base}`;
  const a = await h.connect(upper);
  const b = await h.connect(lower);
  assert.equal(a.session.user.name, upper);
  assert.equal(b.session.user.name, lower);
  assert.deepEqual(await userEntry(a, upper), { name: upper, connections: 1 });
  assert.deepEqual(await userEntry(a, lower), { name: lower, connections: 1 });
});

test("--access-key: no key → unauthorized", T, async () => {
  const err = await keyed.expectRefused({ auth: { name: uname("k") } });
  assertCode(err, "unauthorized");
});

test("--access-key: wrong key → unauthorized", T, async () => {
  const err = await keyed.expectRefused({ auth: { name: uname("k"), key: "wrong" } });
  assertCode(err, "unauthorized");
});

test("--access-key: non-string key → unauthorized", T, async () => {
  const err = await keyed.expectRefused({ auth: { name: uname("k"), key: 12345 } });
  assertCode(err, "unauthorized");
});

test("--access-key: right key → session", T, async () => {
  const name = uname("k");
  const s = await keyed.connect(name, { auth: { name, key: "sekret" } });
  assert.deepEqual(s.session, { user: { name }, rooms: ["general"], unread: {} });
  assertOk(await call(s, "room:join", { room: "general" }));
});

test("server without --access-key ignores a key field", T, async () => {
  const name = uname("k");
  const s = await h.connect(name, { auth: { name, key: "whatever" } });
  assert.deepEqual(s.session, { user: { name }, rooms: ["general"], unread: {} });
});

test("server is still running after all refused handshakes", T, async () => {
  assert.ok(h.alive());
  assert.ok(keyed.alive());
  const s = await h.connect(uname("end"));
  assertOk(await call(s, "room:join", { room: "general" }));
});
