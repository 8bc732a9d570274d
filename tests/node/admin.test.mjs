// The admin status API (issue 14): `admin:status` answers one snapshot of the
// cluster (gateways, backend health, top rooms, recent moderation actions) and
// `admin:watch {on}` pushes it every interval. Admins only. Guest mode with a
// secret file, so the test mints admin tokens like an operator would.
// Runs on the embedded backend and, through scripts/test-node-redis.sh, on Redis.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Harness, call, callNoPayload, collect, sleep, uname, uroom, assertOk, assertError, T } from "./lib.mjs";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "confab-admin-"));
const secret = crypto.randomBytes(32).toString("hex");
const secretFile = path.join(tmp, "secret");
fs.writeFileSync(secretFile, secret);
const h = new Harness(["--auth", "guest", "--jwt-secret-file", secretFile, "--rate-limit", "1000", "--rate-burst", "1000"]);

before(async () => {
  await h.start();
});
after(async () => {
  await h.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const b64u = (x) => Buffer.from(JSON.stringify(x)).toString("base64url");
function token({ sub, name, roles = [] }) {
  const now = Math.floor(Date.now() / 1000);
  const signing = `${b64u({ alg: "HS256", typ: "JWT" })}.${b64u({ sub, name, roles, iat: now, exp: now + 3600 })}`;
  return `${signing}.${crypto.createHmac("sha256", secret).update(signing).digest("base64url")}`;
}

async function user(roles = []) {
  const name = uname("a");
  const id = `id-${crypto.randomBytes(5).toString("hex")}`;
  const s = await h.connect(name, { auth: { token: token({ sub: id, name, roles }) } });
  return { s, id, name };
}

const GATEWAY_KEYS = ["connections", "id", "lagMs", "msgsPerSec", "rooms", "startedAt", "topRooms", "updatedAt", "uptimeS", "version"];

function assertSnapshot(snap) {
  assert.deepEqual(Object.keys(snap).filter((k) => k !== "ok").sort(),
    ["at", "backend", "gateway", "gateways", "gatewaysTotal", "intervalMs", "moderation", "topRooms"]);
  assert.equal(snap.intervalMs, 2000);
  assert.ok(Array.isArray(snap.gateways) && snap.gateways.length >= 1);
  assert.ok(snap.gatewaysTotal >= snap.gateways.length);
  for (const g of snap.gateways) {
    assert.deepEqual(Object.keys(g).sort(), GATEWAY_KEYS);
    assert.equal(typeof g.connections, "number");
    assert.ok(Array.isArray(g.topRooms) && g.topRooms.length <= 10);
  }
  const me = snap.gateways.find((g) => g.id === snap.gateway);
  assert.ok(me, `the answering gateway ${snap.gateway} is listed`);
  assert.ok(me.connections >= 1);
  assert.ok(Math.abs(me.updatedAt - Date.now()) < 60_000);
  assert.ok(me.startedAt <= me.updatedAt);
  assert.ok(["embedded", "redis"].includes(snap.backend.kind));
  assert.equal(snap.backend.healthy, true);
  if (snap.backend.kind === "redis") {
    assert.match(snap.backend.version, /^\d+\.\d+/);
    assert.equal(typeof snap.backend.usedMemory, "number");
    assert.equal(typeof snap.backend.maxmemoryPolicy, "string");
    assert.equal(typeof snap.backend.uptimeS, "number");
  } else {
    assert.equal(snap.gateway, "embedded");
  }
  assert.ok(Array.isArray(snap.moderation) && snap.moderation.length <= 20);
  assert.ok(Array.isArray(snap.topRooms) && snap.topRooms.length <= 10);
  return me;
}

test("a non-admin is refused: forbidden, and no pushes", T, async () => {
  const [plain, mod] = await Promise.all([user(), user(["moderator"])]);
  for (const u of [plain, mod]) {
    const pushes = collect(u.s, "admin:status");
    assertError(await call(u.s, "admin:status", {}), "forbidden");
    assertError(await callNoPayload(u.s, "admin:status"), "forbidden");
    const w = await call(u.s, "admin:watch", { on: true });
    assertError(w, "forbidden");
    assert.equal(w.error.message, "only admins see the server status");
    await sleep(300);
    assert.equal(pushes.length, 0);
  }
  // Bad payloads are refused as such (for admins too).
  const admin = await user(["admin"]);
  assertError(await call(admin.s, "admin:watch", {}), "bad_request");
  assertError(await call(admin.s, "admin:watch", { on: "yes" }), "bad_request");
  assertError(await call(admin.s, "admin:status", "now"), "bad_request");
});

test("admin:status: gateways, backend, top rooms and recent moderation actions", T, async () => {
  const [admin, talker, target] = await Promise.all([user(["admin"]), user(), user()]);
  const room = uroom("busy");
  assertOk(await call(talker.s, "room:join", { room }));
  for (let i = 0; i < 3; i++) assertOk(await call(talker.s, "message:send", { room, text: `m${i}` }));
  assertOk(await call(admin.s, "mod:kick", { room, user: target.id }));
  // Reports are made every 2 s; the answering gateway's own is as of now.
  const snap = assertOk(await call(admin.s, "admin:status", {}));
  const me = assertSnapshot(snap);
  assert.ok(me.connections >= 3, JSON.stringify(me));
  assert.ok(me.rooms >= 1);
  assert.ok(me.msgsPerSec > 0);
  assert.deepEqual(me.topRooms.find((r) => r.room === room), { room, messages: 3 });
  assert.ok(snap.topRooms.some((r) => r.room === room && r.messages >= 3), JSON.stringify(snap.topRooms));
  const kick = snap.moderation.find((e) => e.action === "kick" && e.target === target.id);
  assert.ok(kick, JSON.stringify(snap.moderation));
  assert.equal(kick.actor, admin.id);
  assert.equal(kick.room, room);
  // Without a payload too.
  assertSnapshot(assertOk(await callNoPayload(admin.s, "admin:status")));
});

test("admin:watch pushes the snapshot at once and every interval, until off", T, async () => {
  const admin = await user(["admin"]);
  const pushes = collect(admin.s, "admin:status");
  const on = assertOk(await call(admin.s, "admin:watch", { on: true }));
  assert.deepEqual(on, { ok: true, on: true, intervalMs: 2000 });
  // Asking again does not start a second stream.
  assertOk(await call(admin.s, "admin:watch", { on: true }));
  const t0 = Date.now();
  while (pushes.length < 2 && Date.now() - t0 < 6000) await sleep(50);
  assert.ok(pushes.length >= 2, `got ${pushes.length} pushes`);
  assertSnapshot(pushes[0]);
  assertSnapshot(pushes[1]);
  assert.ok(pushes[1].at > pushes[0].at);
  assert.equal(pushes.length <= 3, true, `one stream only: ${pushes.length} pushes in ${Date.now() - t0} ms`);
  const off = assertOk(await call(admin.s, "admin:watch", { on: false }));
  assert.deepEqual(off, { ok: true, on: false, intervalMs: 2000 });
  const n = pushes.length;
  await sleep(2600);
  assert.equal(pushes.length, n, "no pushes after off");
  // And on again.
  assertOk(await call(admin.s, "admin:watch", { on: true }));
  const t1 = Date.now();
  while (pushes.length === n && Date.now() - t1 < 3000) await sleep(50);
  assert.ok(pushes.length > n, "pushes again after on");
  assertOk(await call(admin.s, "admin:watch", { on: false }));
});
