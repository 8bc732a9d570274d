// The edge of a real cluster: nginx (the repository's nginx.conf: TLS, HSTS, limits,
// hidden internal endpoints) in front of three gateways with internal listeners,
// sharing a password-protected redis-server. Checks what a client sees over HTTPS
// (HTTP/1.1 and HTTP/2) and plain HTTP, that /metrics and /readyz are only on the
// internal listeners, that the per-address limits apply to a non-loopback address
// (127.0.0.2) while 127.0.0.1 (the local test suites) is exempt, and that a Redis
// password never shows in a gateway's output.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import { spawn } from "node:child_process";
import WebSocket from "ws";
import { connect, call, waitFor, sleep } from "../support/server.mjs";
import { startGateway, startNginx, stopAll, freePort, waitForPort } from "../support/cluster.mjs";

const PASSWORD = `pw-${crypto.randomBytes(12).toString("hex")}`;
const procs = [];
const sockets = [];
let redis, gw, nginx, ca;

/** redis-server with --requirepass, stopped by PID (same interface as cluster.mjs). */
async function startSecuredRedis() {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "confab-redis-auth-"));
  // The password goes in through stdin (a config file "-"), not the command line.
  const child = spawn("redis-server", ["-", "--port", String(port), "--bind", "127.0.0.1",
    "--save", "", "--appendonly", "no", "--dir", dir], { stdio: ["pipe", "ignore", "pipe"] });
  child.stdin.end(`requirepass ${PASSWORD}\n`);
  const exited = new Promise((res) => child.once("exit", res));
  await waitForPort(port);
  return {
    port,
    url: `redis://:${PASSWORD}@127.0.0.1:${port}/`,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

before(async () => {
  redis = await startSecuredRedis();
  procs.push(redis);
  gw = [];
  for (const id of ["e1", "e2", "e3"]) {
    const internal = await freePort();
    const g = await startGateway({ redisUrl: redis.url, id, args: ["--internal-bind", `127.0.0.1:${internal}`] });
    g.internalUrl = `http://127.0.0.1:${internal}`;
    procs.push(g);
    gw.push(g);
  }
  nginx = await startNginx({ gatewayPorts: gw.map((g) => g.port) });
  procs.push(nginx);
  ca = fs.readFileSync(nginx.certFile);
});

after(async () => {
  for (const s of sockets) s.close();
  await stopAll(procs);
  nginx?.cleanup();
});

/** One HTTP(S)/1.1 request; resolves to {status, headers, body}. */
function request(url, { method = "GET", headers = {}, localAddress, body, trust = ca } = {}) {
  const u = new URL(url);
  const mod = u.protocol === "https:" ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(u, { method, headers, localAddress, ca: trust, agent: false, timeout: 10000 }, (res) => {
      let data = "";
      res.setEncoding("utf8");
      res.on("data", (d) => (data += d));
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: data }));
    });
    req.on("timeout", () => req.destroy(new Error(`timeout: ${method} ${url}`)));
    req.on("error", reject);
    req.end(body);
  });
}

/** One HTTP/2 request over TLS; resolves to {status, headers, body, alpn}. */
function request2(url, headers = {}, trust = ca) {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const session = http2.connect(u.origin, { ca: trust });
    session.on("error", reject);
    const req = session.request({ ":path": u.pathname + u.search, ...headers });
    let data = "";
    let head;
    req.setEncoding("utf8");
    req.on("response", (h) => (head = h));
    req.on("data", (d) => (data += d));
    req.on("end", () => {
      const alpn = session.alpnProtocol;
      session.close();
      resolve({ status: head[":status"], headers: head, body: data, alpn });
    });
    req.on("error", reject);
    req.end();
  });
}

test("HTTPS: the page over HTTP/1.1 and HTTP/2 with HSTS and a Secure route cookie; plain HTTP has neither; no nginx version anywhere", async () => {
  for (const r of [await request(nginx.httpsUrl + "/"), await request2(nginx.httpsUrl + "/")]) {
    assert.equal(r.status, 200);
    assert.equal(r.headers["strict-transport-security"], "max-age=31536000; includeSubDomains");
    const cookie = [r.headers["set-cookie"]].flat().join("\n");
    assert.match(cookie, /^confab_route=[0-9a-f]{32}; Path=\/; HttpOnly; SameSite=Lax; Secure$/);
    assert.equal(r.headers.server, "nginx");
  }
  assert.equal((await request2(nginx.httpsUrl + "/")).alpn, "h2");
  // Every response over TLS carries HSTS, also where the page's cookie is not set.
  const hz = await request(nginx.httpsUrl + "/healthz");
  assert.equal(hz.status, 200);
  assert.equal(hz.headers["strict-transport-security"], "max-age=31536000; includeSubDomains");

  const plain = await request(nginx.url + "/");
  assert.equal(plain.status, 200);
  assert.equal(plain.headers["strict-transport-security"], undefined);
  assert.match(plain.headers["set-cookie"].join("\n"), /^confab_route=[0-9a-f]{32}; Path=\/; HttpOnly; SameSite=Lax$/);
  assert.equal(plain.headers.server, "nginx");
  const missing = await request(nginx.url + "/no-such-thing/../../etc");
  assert.doesNotMatch(missing.body, /nginx\/\d/);
});

test("HTTPS: Socket.IO clients (websocket-only and polling→upgrade) chat through TLS; a browser handshake over HTTP/2 passes the Origin check", async () => {
  const room = `tls-${crypto.randomBytes(3).toString("hex")}`;
  const ws = await connect(nginx.httpsUrl, "tls-ws", { ca, transports: ["websocket"] });
  const poll = await connect(nginx.httpsUrl, "tls-poll", { ca });
  sockets.push(ws, poll);
  for (const s of [ws, poll]) assert.equal((await call(s, "room:join", { room })).ok, true);
  const got = waitFor(poll, "message:new", (m) => m.text === "over tls");
  assert.equal((await call(ws, "message:send", { room, text: "over tls" })).ok, true);
  await got;

  // A browser on https://127.0.0.1:<port> sends Origin with the port and (HTTP/2)
  // no Host header, only :authority: nginx forwards it as Host with the port.
  const origin = nginx.httpsUrl;
  const ok = await request2(`${nginx.httpsUrl}/socket.io/?EIO=4&transport=polling`, { origin });
  assert.equal(ok.status, 200, ok.body);
  assert.match(ok.body, /^0\{.*"sid":/);
  const evil = await request2(`${nginx.httpsUrl}/socket.io/?EIO=4&transport=polling`, { origin: "https://evil.example" });
  assert.notEqual(evil.status, 200);
});

test("every proxied location forwards Host with the port, the client address and the scheme (echoed by a stand-in upstream)", async () => {
  const port = await freePort();
  const echo = http.createServer((req, res) => res.end(JSON.stringify(req.headers))).listen(port, "127.0.0.1");
  const n = await startNginx({ gatewayPorts: [port] });
  try {
    for (const p of ["/socket.io/?EIO=4&transport=polling", "/", "/api/auth", "/healthz"]) {
      const plain = JSON.parse((await request(n.url + p, { localAddress: "127.0.0.2" })).body);
      assert.equal(plain.host, `127.0.0.1:${n.port}`, p);
      assert.equal(plain["x-forwarded-for"], "127.0.0.2", p);
      assert.equal(plain["x-real-ip"], "127.0.0.2", p);
      assert.equal(plain["x-forwarded-proto"], "http", p);
      const tls = JSON.parse((await request2(n.httpsUrl + p, {}, fs.readFileSync(n.certFile))).body);
      assert.equal(tls.host, `127.0.0.1:${n.tlsPort}`, p);
      assert.equal(tls["x-forwarded-for"], "127.0.0.1", p);
      assert.equal(tls["x-forwarded-proto"], "https", p);
    }
  } finally {
    await n.stop();
    n.cleanup();
    echo.close();
  }
});

test("/metrics and /readyz: 404 through nginx on both listeners, served on the gateways' internal listeners", async () => {
  for (const base of [nginx.url, nginx.httpsUrl]) {
    for (const p of ["/metrics", "/readyz"]) {
      assert.equal((await request(base + p)).status, 404, base + p);
    }
    assert.equal((await request(base + "/healthz")).status, 200);
  }
  for (const g of gw) {
    const m = await request(g.internalUrl + "/metrics");
    assert.equal(m.status, 200);
    assert.match(m.body, /confab_/);
    assert.equal((await request(g.internalUrl + "/readyz")).status, 200);
  }
});

/** `n` polling handshakes at once from `localAddress`; resolves to the statuses. */
async function handshakes(n, localAddress) {
  return Promise.all(Array.from({ length: n }, () =>
    request(`${nginx.url}/socket.io/?EIO=4&transport=polling`, { localAddress }).then((r) => r.status)));
}
const count = (xs, v) => xs.filter((x) => x === v).length;

test("limits: handshakes from one address beyond the burst get 429, requests of a session are never counted, 127.0.0.1 (local tests) is exempt", async () => {
  const local = await handshakes(120, "127.0.0.1");
  assert.equal(count(local, 200), 120, `127.0.0.1: ${local}`);

  const other = await handshakes(120, "127.0.0.2");
  assert.ok(count(other, 429) >= 20, `127.0.0.2 throttled: ${other}`);
  assert.ok(count(other, 200) >= 30, `127.0.0.2 burst passes: ${other}`);
  assert.equal(count(other, 200) + count(other, 429), 120, `${other}`);

  // Right after that, requests carrying a session id (long-polling GET/POST of an
  // established session) still reach the gateway: 400 for an unknown sid, not 429.
  const withSid = await Promise.all(Array.from({ length: 60 }, (_, i) =>
    request(`${nginx.url}/socket.io/?EIO=4&transport=polling&sid=unknown${i}`, { localAddress: "127.0.0.2" })
      .then((r) => r.status)));
  assert.equal(count(withSid, 429), 0, `${withSid}`);

  // The page and /api/ share a per-address request limit (20/s, burst 40).
  await sleep(2500); // the bucket drains
  const pages = await Promise.all(Array.from({ length: 120 }, (_, i) =>
    request(`${nginx.url}${i % 2 ? "/api/auth" : "/"}`, { localAddress: "127.0.0.2" }).then((r) => r.status)));
  assert.ok(count(pages, 429) >= 20 && count(pages, 200) >= 30, `${pages}`);
  const pagesLocal = await Promise.all(Array.from({ length: 80 }, () =>
    request(`${nginx.url}/api/auth`).then((r) => r.status)));
  assert.equal(count(pagesLocal, 200), 80, `${pagesLocal}`);
});

test("limits: one address holds at most 100 connections (websockets here); the 101st gets 429 until one closes", { timeout: 60000 }, async () => {
  await sleep(2500); // the handshake bucket of 127.0.0.2 drains after the previous test
  const open = [];
  const openOne = () => new Promise((resolve) => {
    const w = new WebSocket(`ws://127.0.0.1:${nginx.port}/socket.io/?EIO=4&transport=websocket`,
      { localAddress: "127.0.0.2" });
    w.once("message", () => resolve({ w, status: 101 }));
    w.once("unexpected-response", (_req, res) => { resolve({ w, status: res.statusCode }); w.terminate(); });
    w.once("error", (e) => resolve({ w, status: String(e.message) }));
  });
  try {
    // 1 handshake per 60 ms stays under 20/s, so only the connection limit applies.
    for (let i = 0; i < 100; i++) {
      const r = await openOne();
      assert.equal(r.status, 101, `websocket ${i + 1} from 127.0.0.2`);
      open.push(r.w);
      await sleep(60);
    }
    const over = await openOne();
    assert.equal(over.status, 429, "the 101st connection of 127.0.0.2");
    // 127.0.0.1 is not limited by the connections of 127.0.0.2 (nor at all).
    await sleep(60);
    const mine = await new Promise((resolve) => {
      const w = new WebSocket(`ws://127.0.0.1:${nginx.port}/socket.io/?EIO=4&transport=websocket`);
      w.once("message", () => { w.terminate(); resolve(101); });
      w.once("unexpected-response", (_req, res) => resolve(res.statusCode));
      w.once("error", (e) => resolve(e.message));
    });
    assert.equal(mine, 101);
    open.pop().terminate();
    await sleep(300);
    const again = await openOne();
    assert.equal(again.status, 101, "a slot freed");
    open.push(again.w);
  } finally {
    for (const w of open) w.terminate();
  }
});

test("Redis password: the gateways run on a password-protected Redis; a wrong password or a malformed URL stops a gateway with an error that does not show the password", async () => {
  // The cluster above authenticated (every earlier test went through Redis).
  for (const g of gw) assert.ok(!g.log.includes(PASSWORD), `gateway ${g.id} printed the password`);

  const wrong = `wrong-${crypto.randomBytes(8).toString("hex")}`;
  const cases = [
    [`redis://:${wrong}@127.0.0.1:${redis.port}/`, /authentication failed/i],
    [`redis://127.0.0.1:${redis.port}/`, /NOAUTH|authentication required/i],
    [`redis://:${PASSWORD}@127.0.0.1:notaport/`, /redis:\/\/:\*\*\*@127\.0\.0\.1:notaport\//],
    [`redis://:${PASSWORD}@127.0.0.1:${redis.port}/?protocol=bogus`, /:\*\*\*@/],
  ];
  for (const [url, expect] of cases) {
    let log = "";
    try {
      const g = await startGateway({ redisUrl: url, id: "bad", args: ["--internal-bind", `127.0.0.1:${await freePort()}`] });
      procs.push(g);
      assert.fail(`a gateway started with ${url.replace(/:[^:@/]*@/, ":***@")}`);
    } catch (e) {
      log = e.message;
    }
    assert.match(log, /gateway exited early/);
    assert.match(log, expect);
    assert.ok(!log.includes(PASSWORD), `log shows the password: ${log}`);
    assert.ok(!log.includes(wrong), `log shows the wrong password: ${log}`);
  }
});
