// Moderation across a real cluster: redis-server, three gateways in guest mode
// sharing a secret file, nginx in front. A ban made on one gateway takes effect on
// the sockets of the target on every gateway within 1 s; a guest identity made on
// one gateway is accepted by the others and its name is reserved cluster-wide.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { io } from "socket.io-client";
import { call, waitFor, sleep, confabBin } from "../support/server.mjs";
import { startRedis, startGateway, startNginx, stopAll } from "../support/cluster.mjs";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "confab-cmod-"));
const secret = crypto.randomBytes(32).toString("hex");
const secretFile = path.join(tmp, "secret");
fs.writeFileSync(secretFile, secret);
const procs = [];
const sockets = [];
let gw, nginx, redis;

before(async () => {
  redis = await startRedis();
  procs.push(redis);
  gw = [];
  for (const id of ["m1", "m2", "m3"]) {
    const g = await startGateway({
      redisUrl: redis.url,
      id,
      args: ["--auth", "guest", "--jwt-secret-file", secretFile, "--gateway-ttl-ms", "3000"],
    });
    procs.push(g);
    gw.push(g);
  }
  nginx = await startNginx({ gatewayPorts: gw.map((g) => g.port) });
  procs.push(nginx);
});

after(async () => {
  for (const s of sockets) s.close();
  await stopAll(procs);
  nginx?.cleanup();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const b64u = (x) => Buffer.from(JSON.stringify(x)).toString("base64url");
function token(sub, name, roles = []) {
  const now = Math.floor(Date.now() / 1000);
  const signing = `${b64u({ alg: "HS256", typ: "JWT" })}.${b64u({ sub, name, roles, exp: now + 3600 })}`;
  return `${signing}.${crypto.createHmac("sha256", secret).update(signing).digest("base64url")}`;
}

function open(url, auth) {
  return new Promise((resolve, reject) => {
    const s = io(url, { auth, reconnection: false, forceNew: true, transports: ["websocket"] });
    sockets.push(s);
    const timer = setTimeout(() => reject(new Error("connect timeout")), 10000);
    s.once("session", (session) => {
      clearTimeout(timer);
      s.session = session;
      resolve(s);
    });
    s.once("connect_error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

async function guest(url, name) {
  const res = await fetch(`${url}/api/guest`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name }),
    signal: AbortSignal.timeout(5000),
  });
  return { status: res.status, body: await res.json() };
}

test("a guest made on gateway 1 is the same user on 2 and 3; its name is taken on every gateway", { timeout: 30000 }, async () => {
  const name = `pat${crypto.randomBytes(3).toString("hex")}`;
  const g = await guest(gw[0].url, name);
  assert.equal(g.status, 200, JSON.stringify(g.body));
  for (const x of gw.slice(1)) {
    const s = await open(x.url, { token: g.body.token });
    assert.deepEqual(s.session.user, g.body.user);
    const again = await guest(x.url, name.toUpperCase());
    assert.equal(again.status, 409);
    assert.equal(again.body.error.code, "name_taken");
  }
});

test("a server ban made through nginx disconnects the target's sockets on all three gateways within 1 s", { timeout: 30000 }, async (t) => {
  const target = `t-${crypto.randomBytes(4).toString("hex")}`;
  const tok = token(target, `tgt${crypto.randomBytes(3).toString("hex")}`);
  const tabs = await Promise.all(gw.map((g) => open(g.url, { token: tok })));
  const mod = await open(nginx.url, { token: token("mod-c", `mod${crypto.randomBytes(3).toString("hex")}`, ["moderator"]) });
  const gone = tabs.map(
    (s) =>
      new Promise((resolve) => {
        let told = false;
        s.once("mod:action", (a) => (told = a.action === "ban"));
        s.once("disconnect", (reason) => resolve({ at: Date.now(), reason, told }));
      }),
  );
  const t0 = Date.now();
  const ack = await call(mod, "mod:ban", { user: target, durationS: 600 });
  assert.equal(ack.ok, true, JSON.stringify(ack));
  const results = await Promise.race([Promise.all(gone), sleep(5000).then(() => null)]);
  assert.ok(results, "every socket of the target was disconnected");
  t.diagnostic(`ban → disconnect per gateway: ${results.map((r) => r.at - t0).join(", ")} ms`);
  for (const [i, r] of results.entries()) {
    assert.equal(r.reason, "io server disconnect", `gateway ${i + 1}`);
    assert.ok(r.told, `gateway ${i + 1}: mod:action came first`);
    assert.ok(r.at - t0 <= 1000, `gateway ${i + 1}: ${r.at - t0} ms after the ban`);
  }
  // And no gateway lets the target back in.
  for (const g of gw) {
    await assert.rejects(open(g.url, { token: tok }), (e) => e.message.startsWith("forbidden: you are banned"));
  }
});

test("a message deleted on gateway 3 is pushed to members on 1 and gone from history everywhere", { timeout: 30000 }, async () => {
  const room = `cdel${crypto.randomBytes(3).toString("hex")}`;
  const author = await open(gw[0].url, { token: token(`a-${room}`, `au${room}`.slice(0, 30)) });
  const reader = await open(gw[1].url, { token: token(`r-${room}`, `rd${room}`.slice(0, 30)) });
  const mod = await open(gw[2].url, { token: token(`m-${room}`, `md${room}`.slice(0, 30), ["moderator"]) });
  for (const s of [author, reader, mod]) assert.equal((await call(s, "room:join", { room })).ok, true);
  const m = (await call(author, "message:send", { room, text: "to be deleted" })).message;
  const pushed = waitFor(reader, "message:deleted", (d) => d.id === m.id, 5000);
  assert.equal((await call(mod, "message:delete", { room, id: m.id })).ok, true);
  assert.deepEqual(await pushed, { room, id: m.id });
  const h = await call(reader, "message:history", { room });
  assert.deepEqual(h.messages.map((x) => [x.id, x.text, x.deleted]), [[m.id, "", true]]);
});

test("confab role grants a role stored in Redis: the user's next connection moderates", { timeout: 30000 }, async () => {
  const id = `ops-${crypto.randomBytes(4).toString("hex")}`;
  const name = `ops${crypto.randomBytes(3).toString("hex")}`;
  const before = await open(gw[0].url, { token: token(id, name) });
  assert.deepEqual(before.session.user.roles, []);
  const out = execFileSync(confabBin(), ["role", "--redis", redis.url, "--user", id, "--grant", "moderator"], {
    encoding: "utf8",
    timeout: 15000,
  });
  assert.equal(out.trim(), `${id}: roles [moderator]`);
  const after = await open(gw[1].url, { token: token(id, name) });
  assert.deepEqual(after.session.user.roles, ["moderator"]);
  const target = await open(gw[2].url, { token: token(`x-${id}`, `x${name}`) });
  // Listening before the kick: the push may arrive before the moderator's ack.
  const told = waitFor(target, "mod:action", () => true, 5000);
  const ack = await call(after, "mod:kick", { room: "general", user: `x-${id}` });
  assert.equal(ack.ok, true, JSON.stringify(ack));
  assert.deepEqual(await told, { action: "kick", room: "general" });
  execFileSync(confabBin(), ["role", "--redis", redis.url, "--user", id, "--revoke", "moderator"], { timeout: 15000 });
  const revoked = await open(gw[1].url, { token: token(id, name) });
  assert.deepEqual(revoked.session.user.roles, []);
});
