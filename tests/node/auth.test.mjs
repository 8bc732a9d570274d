// Identity: guest sign-up, JWT verification (every refusal case), reserved and
// confusable names, ids instead of names for DMs, expiry and refresh.
// Runs on the embedded backend and, through scripts/test-node-redis.sh, on Redis.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Harness, call, waitFor, sleep, uname, assertOk, assertError, T } from "./lib.mjs";
import { confabBin } from "../support/server.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const keys = path.join(here, "..", "..", "crates", "confab-auth", "tests", "keys");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "confab-auth-"));
const secret = crypto.randomBytes(32).toString("hex");
const secretFile = path.join(tmp, "secret");
fs.writeFileSync(secretFile, secret + "\n");
const ISS = "https://login.example.test";
const AUD = "confab-test";

const guest = new Harness(["--auth", "guest"]);
const guestKeyed = new Harness(["--auth", "guest", "--jwt-secret-file", secretFile]);
const jwt = new Harness([
  "--auth", "jwt",
  "--jwt-secret-file", secretFile,
  "--jwt-issuer", ISS,
  "--jwt-audience", AUD,
  "--auth-expiry-warning", "60s",
]);
const rsa = new Harness(["--auth", "jwt", "--jwt-public-key-file", path.join(keys, "rsa_public.pem")]);
const jwks = new Harness(["--auth", "jwt", "--jwt-jwks-file", path.join(keys, "jwks.json")]);
const all = [guest, guestKeyed, jwt, rsa, jwks];

before(async () => {
  await Promise.all(all.map((h) => h.start()));
});
after(async () => {
  await Promise.all(all.map((h) => h.stop()));
  fs.rmSync(tmp, { recursive: true, force: true });
});

// ---- token helpers (hand-built, so every field can be wrong on purpose) ----
const b64u = (x) => Buffer.from(typeof x === "string" ? x : JSON.stringify(x)).toString("base64url");
const now = () => Math.floor(Date.now() / 1000);

function claims(extra = {}) {
  const sub = `u-${crypto.randomBytes(4).toString("hex")}`;
  return { sub, name: uname("j"), iss: ISS, aud: AUD, iat: now(), exp: now() + 3600, ...extra };
}

function hs256(payload, key = secret, header = { alg: "HS256", typ: "JWT" }) {
  const signing = `${b64u(header)}.${b64u(payload)}`;
  return `${signing}.${crypto.createHmac("sha256", key).update(signing).digest("base64url")}`;
}

function signAsym(payload, pemFile, alg, kid) {
  const header = { alg, typ: "JWT", ...(kid ? { kid } : {}) };
  const signing = `${b64u(header)}.${b64u(payload)}`;
  const key = fs.readFileSync(path.join(keys, pemFile));
  const sig =
    alg === "ES256"
      ? crypto.sign("sha256", Buffer.from(signing), { key, dsaEncoding: "ieee-p1363" })
      : crypto.sign("sha256", Buffer.from(signing), key);
  return `${signing}.${sig.toString("base64url")}`;
}

async function postGuest(h, body, raw = false) {
  const res = await fetch(`${h.url}/api/guest`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: raw ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
  return { status: res.status, body: await res.json() };
}

async function newGuest(h, name = uname("g")) {
  const r = await postGuest(h, { name });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body;
}

function assertRefused(err, code) {
  assert.ok(err instanceof Error, "connect_error must carry an Error");
  assert.ok(err.message.startsWith(`${code}: `), `expected "${code}: …", got ${JSON.stringify(err.message)}`);
}

/** The first DM arriving on `s` (bounded). */
const nextDm = (s) => waitFor(s, "dm:new", () => true, 5000);

// ---- guest mode ----

test("guest: POST /api/guest gives a token; the socket is that user (id + name)", T, async () => {
  const name = uname("g");
  const g = await newGuest(guest, name);
  assert.deepEqual(Object.keys(g).sort(), ["token", "user"]);
  assert.match(g.user.id, /^g_[a-z2-7]{20}$/);
  assert.equal(g.user.name, name);
  assert.deepEqual(g.user.roles, []);
  assert.ok(g.user.expiresAt > Date.now() + 29 * 86400_000, "guest identity lasts ~30 days");
  const s = await guest.connect(name, { auth: { token: g.token } });
  assert.deepEqual(s.session.user, g.user);
  assert.deepEqual(s.session.rooms, ["general"]);
  // The same token again (a reload, a second tab) is the same user.
  const again = await guest.connect(name, { auth: { token: g.token } });
  assert.equal(again.session.user.id, g.user.id);
  const users = assertOk(await call(s, "users:list", {})).users;
  const me = users.find((u) => u.id === g.user.id);
  assert.deepEqual(me, { id: g.user.id, name, connections: 2 });
});

test("guest: a bare name, a garbage token or a token of another server is unauthorized", T, async () => {
  assertRefused(await guest.expectRefused({ auth: { name: uname("n") } }), "unauthorized");
  assertRefused(await guest.expectRefused({ auth: {} }), "unauthorized");
  assertRefused(await guest.expectRefused({ auth: { token: "not.a.jwt" } }), "unauthorized");
  assertRefused(await guest.expectRefused({ auth: { token: 42 } }), "unauthorized");
  assertRefused(await guest.expectRefused({ auth: { token: "x".repeat(9000) } }), "unauthorized");
  // A guest token from another server (another guest key) is forged here.
  const other = await newGuest(guestKeyed);
  assertRefused(await guest.expectRefused({ auth: { token: other.token } }), "unauthorized");
});

test("guest: a name is reserved, compared by case, width and confusable look", T, async () => {
  const base = `a${uname("b")}`.slice(0, 30).toLowerCase();
  await newGuest(guest, base);
  const cyrillic = "\u0430" + base.slice(1); // Cyrillic а
  const fullwidth = [...base].map((c) => (/[a-z0-9]/.test(c) ? String.fromCodePoint(c.codePointAt(0) + 0xfee0) : c)).join("");
  for (const taken of [base, base.toUpperCase(), cyrillic, fullwidth]) {
    const r = await postGuest(guest, { name: taken });
    assert.equal(r.status, 409, `${JSON.stringify(taken)}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.error.code, "name_taken");
  }
});

test("guest: bad sign-up bodies get a clear error and status", T, async () => {
  const cases = [
    [{ name: "" }, 400, "invalid_name"],
    [{ name: "a".repeat(33) }, 400, "invalid_name"],
    [{ name: "al\u200Bice" }, 400, "invalid_name"],
    [{ name: "a\u202Eb" }, 400, "invalid_name"],
    [{ name: "\u3164" }, 400, "invalid_name"],
    [{ name: 7 }, 400, "bad_request"],
    [{}, 400, "bad_request"],
  ];
  for (const [body, status, code] of cases) {
    const r = await postGuest(guest, body);
    assert.equal(r.status, status, `${JSON.stringify(body)} → ${JSON.stringify(r.body)}`);
    assert.equal(r.body.error.code, code, JSON.stringify(r.body));
    assert.equal(typeof r.body.error.message, "string");
  }
  const r = await postGuest(guest, "{not json", true);
  assert.equal(r.status, 400);
  assert.equal(r.body.error.code, "bad_request");
});

test("guest: DMs go to user ids; nobody else can read them or send as their author", T, async () => {
  const [a, b, c] = await Promise.all([newGuest(guest), newGuest(guest), newGuest(guest)]);
  const [sa, sb, sc] = await Promise.all(
    [a, b, c].map((g) => guest.connect(g.user.name, { auth: { token: g.token } })),
  );
  const got = nextDm(sb);
  const ack = assertOk(await call(sa, "dm:send", { to: b.user.id, text: "for b only" }));
  const dm = await got;
  assert.deepEqual(dm, ack.message);
  assert.equal(dm.fromId, a.user.id);
  assert.equal(dm.from, a.user.name);
  assert.equal(dm.to, b.user.id);
  // By name, the recipient is unknown: names are display, ids are identity.
  assertError(await call(sa, "dm:send", { to: b.user.name, text: "by name" }), "user_not_found");
  // c asking for "the conversation with a" gets c↔a (empty), never a↔b.
  const h = assertOk(await call(sc, "dm:history", { with: a.user.id }));
  assert.deepEqual(h.messages, []);
  const hb = assertOk(await call(sc, "dm:history", { with: b.user.id }));
  assert.deepEqual(hb.messages, []);
  // c cannot connect as a by name, nor take a's name.
  assertRefused(await guest.expectRefused({ auth: { name: a.user.name } }), "unauthorized");
  const r = await postGuest(guest, { name: a.user.name });
  assert.equal(r.body.error.code, "name_taken");
  // Room messages carry the author's id.
  const m = assertOk(await call(sa, "message:send", { room: "general", text: "hi all" })).message;
  assert.equal(m.fromId, a.user.id);
  assert.equal(m.from, a.user.name);
  // b's unread count is keyed by a's id.
  const again = await guest.connect(b.user.name, { auth: { token: b.token } });
  assert.equal(again.session.unread[a.user.id], 1);
});

test("guest mode with a secret file also accepts operator tokens (confab token), roles included", T, async () => {
  const name = uname("op");
  const token = execFileSync(
    confabBin(),
    ["token", "--sub", "ops-1", "--name", name, "--role", "admin", "--ttl", "1h"],
    { env: { ...process.env, CONFAB_JWT_SECRET_FILE: secretFile }, encoding: "utf8", timeout: 10000 },
  ).trim();
  const s = await guestKeyed.connect(name, { auth: { token } });
  assert.deepEqual(s.session.user.roles, ["admin"]);
  assert.equal(s.session.user.id, "ops-1");
});

// ---- jwt mode ----

test("jwt: a valid HS256 token connects; sub is the id, name the display name", T, async () => {
  const c = claims({ roles: ["moderator"] });
  const s = await jwt.connect(c.name, { auth: { token: hs256(c) } });
  assert.deepEqual(s.session.user, { id: c.sub, name: c.name, roles: ["moderator"], expiresAt: c.exp * 1000 });
});

test("jwt: every bad token is refused with unauthorized", T, async () => {
  const pub = fs.readFileSync(path.join(keys, "rsa_public.pem"));
  const good = hs256(claims());
  const [h, p, sig] = good.split(".");
  const flipped = sig[0] === "A" ? "B" + sig.slice(1) : "A" + sig.slice(1);
  const cases = {
    "forged signature": `${h}.${p}.${flipped}`,
    "payload swapped": `${h}.${b64u(claims({ sub: "admin" }))}.${sig}`,
    "wrong secret": hs256(claims(), "another secret that is long enough!!"),
    expired: hs256(claims({ exp: now() - 120 })),
    "not yet valid": hs256(claims({ nbf: now() + 600 })),
    "wrong issuer": hs256(claims({ iss: "https://evil.example" })),
    "no issuer": hs256(claims({ iss: undefined })),
    "wrong audience": hs256(claims({ aud: "someone-else" })),
    "no exp": hs256(claims({ exp: undefined })),
    "no sub": hs256(claims({ sub: undefined })),
    "alg none": `${b64u({ alg: "none", typ: "JWT" })}.${b64u(claims())}.`,
    "HS256 signed with the RSA public key": hs256(claims(), pub),
    "RS256 token to an HS-only server": signAsym(claims(), "rsa_private.pem", "RS256"),
    "invisible characters in the name": hs256(claims({ name: "ad\u200Bmin" })),
  };
  for (const [what, token] of Object.entries(cases)) {
    const err = await jwt.expectRefused({ auth: { token } });
    assertRefused(err, "unauthorized");
    assert.ok(!err.message.includes(token), `${what}: the message must not echo the token`);
  }
  assert.ok(jwt.alive(), "the server keeps serving");
  const c = claims();
  await jwt.connect(c.name, { auth: { token: hs256(c) } });
});

test("jwt: RS256 public key and JWKS (by kid); HS/RS confusion refused", T, async () => {
  const c = { sub: "r-1", name: uname("rs"), exp: now() + 600 };
  const s = await rsa.connect(c.name, { auth: { token: signAsym(c, "rsa_private.pem", "RS256") } });
  assert.equal(s.session.user.id, "r-1");
  const pub = fs.readFileSync(path.join(keys, "rsa_public.pem"));
  assertRefused(await rsa.expectRefused({ auth: { token: hs256({ ...c, name: uname("x") }, pub) } }), "unauthorized");
  assertRefused(
    await rsa.expectRefused({ auth: { token: signAsym({ ...c, name: uname("y") }, "rsa2_private.pem", "RS256") } }),
    "unauthorized",
  );
  const e = { sub: "e-1", name: uname("es"), exp: now() + 600 };
  const se = await jwks.connect(e.name, { auth: { token: signAsym(e, "ec_private.pem", "ES256", "ec-1") } });
  assert.equal(se.session.user.id, "e-1");
  const r = { sub: "r-2", name: uname("rk"), exp: now() + 600 };
  const sr = await jwks.connect(r.name, { auth: { token: signAsym(r, "rsa_private.pem", "RS256", "rsa-1") } });
  assert.equal(sr.session.user.id, "r-2");
});

test("jwt: a display name held by one sub is refused to another sub (name_taken)", T, async () => {
  const name = uname("dup");
  await jwt.connect(name, { auth: { token: hs256(claims({ name })) } });
  assertRefused(await jwt.expectRefused({ auth: { token: hs256(claims({ name: name.toUpperCase() })) } }), "name_taken");
});

test("jwt: guest sign-up is disabled (403 forbidden)", T, async () => {
  const r = await postGuest(jwt, { name: uname("g") });
  assert.equal(r.status, 403);
  assert.equal(r.body.error.code, "forbidden");
});

test("jwt: expiry mid-connection: auth:expiring, then disconnected at exp", T, async () => {
  const c = claims({ exp: now() + 3 });
  const s = jwt.raw({ auth: { token: hs256(c) } });
  const expiring = waitFor(s, "auth:expiring", () => true, 5000);
  const gone = new Promise((res) => s.once("disconnect", res));
  const warn = await expiring;
  assert.equal(warn.expiresAt, c.exp * 1000);
  assert.ok(warn.inMs > 0 && warn.inMs <= 3000, JSON.stringify(warn));
  // Disconnected at exp + the 5 s leeway of token checks.
  const reason = await Promise.race([gone, sleep(12000).then(() => "still connected")]);
  assert.equal(reason, "io server disconnect");
});

test("jwt: auth:refresh with a new token for the same user keeps the socket; another user's is refused", T, async () => {
  const c = claims({ exp: now() + 3 });
  const s = jwt.raw({ auth: { token: hs256(c) } });
  await waitFor(s, "auth:expiring", () => true, 5000);
  const other = await call(s, "auth:refresh", { token: hs256(claims()) });
  assertError(other, "unauthorized");
  assertError(await call(s, "auth:refresh", { token: "junk" }), "unauthorized");
  assertError(await call(s, "auth:refresh", {}), "unauthorized");
  const later = now() + 3600;
  const ok = assertOk(await call(s, "auth:refresh", { token: hs256({ ...c, exp: later }) }));
  assert.equal(ok.expiresAt, later * 1000);
  const disconnected = await Promise.race([
    new Promise((res) => s.once("disconnect", () => res(true))),
    sleep(4500).then(() => false),
  ]);
  assert.equal(disconnected, false, "a refreshed socket outlives the old expiry");
  assertOk(await call(s, "message:send", { room: "general", text: "still here" }));
});

test("guest: sign-out releases the name at once (only with the holder's token)", T, async () => {
  const name = uname("so");
  const g = await newGuest(guest, name);
  const signout = (tok) =>
    fetch(`${guest.url}/api/signout`, {
      method: "POST",
      headers: tok === undefined ? {} : { authorization: `Bearer ${tok}` },
      signal: AbortSignal.timeout(5000),
    }).then(async (r) => ({ status: r.status, body: await r.json() }));
  const other = await newGuest(guest);
  // Someone else's token releases nothing of this name; no token is unauthorized.
  assert.deepEqual(await signout(other.token), { status: 200, body: { released: true } });
  assert.equal((await postGuest(guest, { name })).status, 409);
  const none = await signout(undefined);
  assert.equal(none.status, 401);
  assert.equal(none.body.error.code, "unauthorized");
  assert.equal((await signout("forged.token.x")).status, 401);
  assert.deepEqual(await signout(g.token), { status: 200, body: { released: true } });
  const again = await newGuest(guest, name);
  assert.notEqual(again.user.id, g.user.id, "a new identity");
});

test("jwt: SIGHUP reloads the public key file (rotation without a restart)", T, async () => {
  const keyFile = path.join(tmp, "rotating.pem");
  fs.copyFileSync(path.join(keys, "rsa_public.pem"), keyFile);
  const rot = new Harness(["--auth", "jwt", "--jwt-public-key-file", keyFile]);
  await rot.start();
  try {
    const c = (n) => ({ sub: `rot-${n}`, name: uname("rot"), exp: now() + 600 });
    await rot.connect("x", { auth: { token: signAsym(c(1), "rsa_private.pem", "RS256") } });
    const newKey = crypto
      .createPublicKey(fs.readFileSync(path.join(keys, "rsa2_private.pem")))
      .export({ type: "spki", format: "pem" });
    assertRefused(await rot.expectRefused({ auth: { token: signAsym(c(2), "rsa2_private.pem", "RS256") } }), "unauthorized");
    fs.writeFileSync(keyFile, newKey);
    process.kill(rot.server.proc.pid, "SIGHUP");
    let s = null;
    for (let i = 0; i < 50 && !s; i++) {
      await sleep(100);
      s = await rot.connect("x", { auth: { token: signAsym(c(3), "rsa2_private.pem", "RS256") } }).catch(() => null);
    }
    assert.ok(s, "the rotated key is accepted after SIGHUP");
    assertRefused(await rot.expectRefused({ auth: { token: signAsym(c(4), "rsa_private.pem", "RS256") } }), "unauthorized");
    // A broken file on the next SIGHUP keeps the current key.
    fs.writeFileSync(keyFile, "not a key");
    process.kill(rot.server.proc.pid, "SIGHUP");
    await sleep(300);
    await rot.connect("x", { auth: { token: signAsym(c(5), "rsa2_private.pem", "RS256") } });
    assert.ok(rot.alive());
  } finally {
    await rot.stop();
  }
});

test("guest: a name's hold ends with its guest token (an expired guest cannot come back)", T, async () => {
  const short = new Harness(["--auth", "guest", "--guest-ttl", "2s", "--name-hold", "30d"]);
  await short.start();
  try {
    const name = uname("ttl");
    const g = await newGuest(short, name);
    const s = await short.connect(name, { auth: { token: g.token } });
    await short.close(s); // disconnect renews the hold: still capped by the token
    assert.equal((await postGuest(short, { name })).status, 409);
    await sleep(2500);
    const again = await postGuest(short, { name });
    assert.equal(again.status, 200, JSON.stringify(again.body));
  } finally {
    await short.stop();
  }
});

test("jwt: auth:refresh to an earlier expiry is enforced at once", T, async () => {
  const c = claims();
  const s = jwt.raw({ auth: { token: hs256(c) } });
  await waitFor(s, "session", () => true, 5000);
  const gone = new Promise((res) => s.once("disconnect", res));
  const soon = now() + 1;
  assertOk(await call(s, "auth:refresh", { token: hs256({ ...c, exp: soon }) }));
  // exp + the 5 s leeway of token checks, well before the first token's hour.
  const reason = await Promise.race([gone, sleep(10000).then(() => "still connected")]);
  assert.equal(reason, "io server disconnect");
});
