// Access and moderation: private and announcement rooms (no snooping through any
// event), invitations, mute, kick, ban (room and server), delete with tombstones,
// the audit log, server-wide announcements. Guest mode with a secret file, so the
// tests can mint moderator and admin tokens like an operator would.
// Runs on the embedded backend and, through scripts/test-node-redis.sh, on Redis.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Harness, call, waitFor, collect, sleep, uname, uroom, assertOk, assertError, T } from "./lib.mjs";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "confab-mod-"));
const secret = crypto.randomBytes(32).toString("hex");
const secretFile = path.join(tmp, "secret");
fs.writeFileSync(secretFile, secret);
const h = new Harness(["--auth", "guest", "--jwt-secret-file", secretFile, "--rate-limit", "1000", "--rate-burst", "1000"]);
// Only moderators (and admins) start rooms here.
const staffRooms = new Harness(["--auth", "guest", "--jwt-secret-file", secretFile, "--rate-limit", "1000", "--rate-burst", "1000",
  "--room-create-role", "moderator"]);

before(async () => {
  await Promise.all([h.start(), staffRooms.start()]);
});
after(async () => {
  await Promise.all([h.stop(), staffRooms.stop()]);
  fs.rmSync(tmp, { recursive: true, force: true });
});

const b64u = (x) => Buffer.from(JSON.stringify(x)).toString("base64url");
function token({ sub, name, roles = [], rooms = [] }) {
  const now = Math.floor(Date.now() / 1000);
  const signing = `${b64u({ alg: "HS256", typ: "JWT" })}.${b64u({ sub, name, roles, rooms, iat: now, exp: now + 3600 })}`;
  return `${signing}.${crypto.createHmac("sha256", secret).update(signing).digest("base64url")}`;
}

/** A connected user: {s, id, name}. */
async function user(roles = [], rooms = [], server = h) {
  const name = uname("m");
  const id = `id-${crypto.randomBytes(5).toString("hex")}`;
  const s = await server.connect(name, { auth: { token: token({ sub: id, name, roles, rooms }) } });
  return { s, id, name };
}

const forbidden = (ack) => assertError(ack, "forbidden");

/** Repeat `call` until its ack is a failure (enforcement is asynchronous: it
 * reaches every gateway through the backend), at most ~1 s; returns the last ack. */
async function untilRefused(fn) {
  let ack;
  for (let i = 0; i < 50; i++) {
    ack = await fn();
    if (!ack.ok) return ack;
    await sleep(20);
  }
  return ack;
}

test("private room: non-members cannot join, read, list, see members, type or learn it exists", T, async () => {
  const [owner, snoop] = await Promise.all([user(), user()]);
  const room = uroom("priv");
  const created = assertOk(await call(owner.s, "room:create", { room, private: true }));
  assert.deepEqual(created, { ok: true, room, private: true, announce: false, owner: owner.id });
  assertOk(await call(owner.s, "room:join", { room }));
  const secretMsg = assertOk(await call(owner.s, "message:send", { room, text: "the plan" })).message;

  const join = await call(snoop.s, "room:join", { room });
  forbidden(join);
  assert.equal(join.error.message, `you cannot join room \`${room}\``);
  forbidden(await call(snoop.s, "room:join", { room, since: "0-0" }));
  assertError(await call(snoop.s, "message:history", { room }), "not_member");
  assertError(await call(snoop.s, "message:send", { room, text: "hi" }), "not_member");
  assertError(await call(snoop.s, "typing", { room, typing: true }), "not_member");
  forbidden(await call(snoop.s, "users:list", { room }));
  const list = assertOk(await call(snoop.s, "room:list", {}));
  assert.ok(!list.rooms.some((r) => r.room === room), "a private room is not listed to others");
  // Deleting (or probing ids) reads like a message that does not exist.
  assertError(await call(snoop.s, "message:delete", { room, id: secretMsg.id }), "bad_request");
  // The owner sees it.
  const mine = assertOk(await call(owner.s, "room:list", {}));
  assert.ok(mine.rooms.some((r) => r.room === room));
  // Joining a room one is banned from reads the same (no difference to learn).
  const pub = uroom("pub");
  assertOk(await call(owner.s, "room:join", { room: pub }));
  const mod = await user(["moderator"]);
  assertOk(await call(mod.s, "mod:ban", { user: snoop.id, room: pub }));
  const banned = await call(snoop.s, "room:join", { room: pub });
  forbidden(banned);
  assert.equal(banned.error.message, `you cannot join room \`${pub}\``);
});

test("private room: invite lets in (room:invited pushed), remove takes out; a token's rooms claim grants", T, async () => {
  const [owner, guest, other] = await Promise.all([user(), user(), user()]);
  const room = uroom("inv");
  assertOk(await call(owner.s, "room:create", { room, private: true }));
  assertOk(await call(owner.s, "room:join", { room }));
  forbidden(await call(other.s, "room:invite", { room, user: guest.id }));
  const invited = waitFor(guest.s, "room:invited");
  assertOk(await call(owner.s, "room:invite", { room, user: guest.id }));
  assert.deepEqual(await invited, { room, by: owner.name, byId: owner.id });
  const ack = assertOk(await call(guest.s, "room:join", { room }));
  assert.ok(ack.memberIds.includes(owner.id));
  assert.ok(assertOk(await call(guest.s, "room:list", {})).rooms.some((r) => r.room === room));
  const told = waitFor(guest.s, "mod:action");
  assertOk(await call(owner.s, "room:remove", { room, user: guest.id }));
  assert.deepEqual(await told, { action: "remove", room });
  // Out of the room at once, and cannot come back.
  assertError(await untilRefused(() => call(guest.s, "message:send", { room, text: "still here?" })), "not_member");
  forbidden(await call(guest.s, "room:join", { room }));
  forbidden(await call(owner.s, "room:remove", { room, user: owner.id }));
  // A token that names the room in `rooms` grants it.
  const granted = await user([], [room]);
  assertOk(await call(granted.s, "room:join", { room }));
});

test("room:create: an existing or in-use room cannot be taken over", T, async () => {
  const [a, b] = await Promise.all([user(), user()]);
  const busy = uroom("busy");
  assertOk(await call(a.s, "room:join", { room: busy }));
  forbidden(await call(b.s, "room:create", { room: busy, private: true }));
  const fresh = uroom("fresh");
  assertOk(await call(a.s, "room:create", { room: fresh }));
  forbidden(await call(b.s, "room:create", { room: fresh, private: true }));
  assertError(await call(a.s, "room:create", { room: "Bad Room" }), "invalid_room");
  assertError(await call(a.s, "room:create", { room: fresh, private: "yes" }), "bad_request");
});

test("--room-create-role moderator: others cannot start a room (first message or room:create) but post in existing ones", T, async () => {
  const [member, mod, admin] = [await user([], [], staffRooms), await user(["moderator"], [], staffRooms), await user(["admin"], [], staffRooms)];
  const fresh = uroom("staff");
  assertOk(await call(member.s, "room:join", { room: fresh }));
  const refused = await call(member.s, "message:send", { room: fresh, text: "first!" });
  forbidden(refused);
  assert.match(refused.error.message, /only moderators start rooms/);
  forbidden(await call(member.s, "room:create", { room: uroom("staff") }));
  // Nothing was stored: the moderator who joins sees no history.
  const seen = assertOk(await call(mod.s, "room:join", { room: fresh }));
  assert.deepEqual(seen.messages, []);
  // A moderator starts it; from then on members post.
  assertOk(await call(mod.s, "message:send", { room: fresh, text: "welcome" }));
  assertOk(await call(member.s, "message:send", { room: fresh, text: "thanks" }));
  // Admins count as moderators; room:create works for them.
  assertOk(await call(admin.s, "room:create", { room: uroom("staff") }));
});

test("announcement room: only its owner and moderators post", T, async () => {
  const [owner, reader, mod] = await Promise.all([user(), user(), user(["moderator"])]);
  const room = uroom("news");
  assertOk(await call(owner.s, "room:create", { room, announce: true }));
  for (const u of [owner, reader, mod]) assertOk(await call(u.s, "room:join", { room }));
  assertOk(await call(owner.s, "message:send", { room, text: "release 1.0" }));
  assertOk(await call(mod.s, "message:send", { room, text: "pinned" }));
  const refused = await call(reader.s, "message:send", { room, text: "me too" });
  forbidden(refused);
  assert.match(refused.error.message, /read-only/);
});

test("mute: the target cannot post in the room until it ends; others are unaffected", T, async () => {
  const [mod, target, bystander] = await Promise.all([user(["moderator"]), user(), user()]);
  const room = uroom("mute");
  for (const u of [mod, target, bystander]) assertOk(await call(u.s, "room:join", { room }));
  const told = waitFor(target.s, "mod:action");
  const ack = assertOk(await call(mod.s, "mod:mute", { room, user: target.id, durationS: 2 }));
  assert.ok(ack.until > Date.now() && ack.until <= Date.now() + 2500, JSON.stringify(ack));
  assert.deepEqual(await told, { action: "mute", room, until: ack.until });
  const refused = await untilRefused(() => call(target.s, "message:send", { room, text: "let me speak" }));
  forbidden(refused);
  assert.match(refused.error.message, /muted/);
  assertOk(await call(bystander.s, "message:send", { room, text: "fine here" }));
  // Other rooms are not affected.
  assertOk(await call(target.s, "message:send", { room: "general", text: "elsewhere" }));
  // A fresh socket of the target (another tab) is muted too.
  await sleep(Math.max(0, ack.until - Date.now() + 300));
  assertOk(await call(target.s, "message:send", { room, text: "back" }));
  assertError(await call(mod.s, "mod:mute", { room, user: target.id }), "bad_request");
  assertError(await call(mod.s, "mod:mute", { room, user: target.id, durationS: 0 }), "bad_request");
});

test("kick: out of the room on every socket, may rejoin; non-moderators cannot", T, async () => {
  const [mod, target, peer] = await Promise.all([user(["moderator"]), user(), user()]);
  const room = uroom("kick");
  const tab2 = await h.connect(target.name, { auth: { token: token({ sub: target.id, name: target.name }) } });
  for (const s of [mod.s, target.s, tab2, peer.s]) assertOk(await call(s, "room:join", { room }));
  forbidden(await call(peer.s, "mod:kick", { room, user: target.id }));
  const actions = [waitFor(target.s, "mod:action"), waitFor(tab2, "mod:action")];
  assertOk(await call(mod.s, "mod:kick", { room, user: target.id }));
  for (const a of await Promise.all(actions)) assert.deepEqual(a, { action: "kick", room });
  for (const s of [target.s, tab2]) {
    assertError(await untilRefused(() => call(s, "message:send", { room, text: "x" })), "not_member");
  }
  // Gone from the room's members too (presence of both sockets undone).
  const members = assertOk(await call(mod.s, "users:list", { room })).users.map((u) => u.id);
  assert.ok(!members.includes(target.id), JSON.stringify(members));
  assertOk(await call(target.s, "room:join", { room }));
});

test("room ban: out now, cannot rejoin until unbanned; owner of a room may ban in it but not server-wide", T, async () => {
  const [owner, target] = await Promise.all([user(), user()]);
  const room = uroom("rban");
  assertOk(await call(owner.s, "room:create", { room }));
  for (const u of [owner, target]) assertOk(await call(u.s, "room:join", { room }));
  const told = waitFor(target.s, "mod:action");
  const ack = assertOk(await call(owner.s, "mod:ban", { user: target.id, room }));
  assert.deepEqual(ack, { ok: true, user: target.id, room });
  assert.deepEqual(await told, { action: "ban", room });
  forbidden(await untilRefused(() => call(target.s, "room:join", { room })));
  forbidden(await call(owner.s, "mod:ban", { user: target.id }));
  assert.deepEqual(assertOk(await call(owner.s, "mod:unban", { user: target.id, room })), { ok: true, user: target.id, lifted: true });
  assertOk(await call(target.s, "room:join", { room }));
  assert.equal(assertOk(await call(owner.s, "mod:unban", { user: target.id, room })).lifted, false);
});

test("server ban: every socket told then disconnected; handshakes refused until unbanned", T, async () => {
  const [mod, target] = await Promise.all([user(["moderator"]), user()]);
  const tok = token({ sub: target.id, name: target.name });
  const tab2 = await h.connect(target.name, { auth: { token: tok } });
  const events = [target.s, tab2].map((s) => {
    const seen = [];
    s.on("mod:action", (a) => seen.push(["mod:action", a]));
    s.on("disconnect", (r) => seen.push(["disconnect", r]));
    return seen;
  });
  const ack = assertOk(await call(mod.s, "mod:ban", { user: target.id, durationS: 3600 }));
  assert.ok(ack.until > Date.now());
  for (let i = 0; i < 100 && events.some((e) => e.length < 2); i++) await sleep(20);
  for (const e of events) {
    assert.deepEqual(e, [["mod:action", { action: "ban", until: ack.until }], ["disconnect", "io server disconnect"]]);
  }
  const err = await h.expectRefused({ auth: { token: tok } });
  assert.ok(err.message.startsWith("forbidden: you are banned"), err.message);
  forbidden(await call(mod.s, "mod:ban", { user: mod.id }));
  assertOk(await call(mod.s, "mod:unban", { user: target.id }));
  await h.connect(target.name, { auth: { token: tok } });
});

test("delete: author or moderator; members get message:deleted; history keeps a tombstone", T, async () => {
  const [author, other, mod] = await Promise.all([user(), user(), user(["moderator"])]);
  const room = uroom("del");
  for (const u of [author, other, mod]) assertOk(await call(u.s, "room:join", { room }));
  const m1 = assertOk(await call(author.s, "message:send", { room, text: "typo" })).message;
  const m2 = assertOk(await call(author.s, "message:send", { room, text: "rude" })).message;
  forbidden(await call(other.s, "message:delete", { room, id: m1.id }));
  const seen = waitFor(other.s, "message:deleted", (d) => d.id === m1.id);
  assert.deepEqual(assertOk(await call(author.s, "message:delete", { room, id: m1.id })), { ok: true, room, id: m1.id });
  assert.deepEqual(await seen, { room, id: m1.id });
  assertOk(await call(mod.s, "message:delete", { room, id: m2.id }));
  const late = await user();
  const hist = assertOk(await call(late.s, "room:join", { room }));
  const got = hist.messages.filter((m) => m.id === m1.id || m.id === m2.id);
  assert.deepEqual(got, [
    { id: m1.id, room, from: author.name, fromId: author.id, text: "", ts: m1.ts, deleted: true },
    { id: m2.id, room, from: author.name, fromId: author.id, text: "", ts: m2.ts, deleted: true },
  ]);
  assertError(await call(author.s, "message:delete", { room, id: "1-0" }), "bad_request");
  assertError(await call(author.s, "message:delete", { room }), "bad_request");
  assertError(await call(author.s, "message:delete", { room, id: "nope" }), "bad_request");
});

test("audit log: admins read who did what; others cannot", T, async () => {
  const [admin, mod, target] = await Promise.all([user(["admin"]), user(["moderator"]), user()]);
  const room = uroom("aud");
  assertOk(await call(target.s, "room:join", { room }));
  assertOk(await call(mod.s, "mod:mute", { room, user: target.id, durationS: 60 }));
  assertOk(await call(mod.s, "mod:kick", { room, user: target.id }));
  forbidden(await call(mod.s, "audit:list", {}));
  const page = assertOk(await call(admin.s, "audit:list", { limit: 200 }));
  const mine = page.entries.filter((e) => e.room === room);
  assert.deepEqual(
    mine.map((e) => [e.action, e.actor, e.target]),
    [["kick", mod.id, target.id], ["mute", mod.id, target.id]],
  );
  assert.ok(mine[1].until > Date.now());
  const older = assertOk(await call(admin.s, "audit:list", { before: mine[0].id, limit: 200 }));
  assert.ok(older.entries.some((e) => e.id === mine[1].id));
  assert.ok(!older.entries.some((e) => e.id === mine[0].id));
});

test("announce: admins reach every socket; others cannot", T, async () => {
  const [admin, a, b] = await Promise.all([user(["admin"]), user(), user()]);
  const got = [a, b].map((u) => waitFor(u.s, "announcement", (x) => x.text === "maintenance at 22:00"));
  forbidden(await call(a.s, "announce", { text: "me too" }));
  assertOk(await call(admin.s, "announce", { text: "maintenance at 22:00" }));
  for (const x of await Promise.all(got)) {
    assert.equal(x.from, admin.name);
    assert.equal(x.fromId, admin.id);
    assert.equal(typeof x.ts, "number");
  }
  assertError(await call(admin.s, "announce", { text: "" }), "invalid_text");
});
