// The public listener: the header-read deadline (slow-loris), the connection cap
// (--max-connections), HTTP/2 without TLS (prior knowledge), and TLS (wss and
// polling over https, h2 by ALPN, certificate reload on SIGHUP, plain HTTP refused).
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import http2 from "node:http2";
import { execFileSync } from "node:child_process";
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Harness, connect, waitFor, join, send, uname, uroom, sleep, T } from "./lib.mjs";
import { confabBin, startServer } from "../support/server.mjs";


/** Open a raw TCP connection (resolves once connected; bounded). */
function rawConnect(port, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1");
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error("raw connect timeout"));
    }, timeoutMs);
    s.on("error", () => {}); // a refused or reset socket must not crash the test
    s.once("connect", () => {
      clearTimeout(timer);
      resolve(s);
    });
  });
}

/**
 * Resolves when the socket is closed by the peer (end or close): {closed: true, ms,
 * data}; {closed: false} if that did not happen within timeoutMs.
 */
function closedWithin(s, timeoutMs) {
  const t0 = Date.now();
  const chunks = [];
  s.on("data", (c) => chunks.push(c));
  return new Promise((resolve) => {
    let done = false;
    const finish = (closed) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ closed, ms: Date.now() - t0, data: Buffer.concat(chunks) });
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    s.once("end", () => finish(true));
    s.once("close", () => finish(true));
    if (s.destroyed) finish(true);
  });
}

/** One GET over HTTP/2 (`url` http:// for prior knowledge, https:// for ALPN). */
function h2get(url, pathname, opts = {}) {
  return new Promise((resolve, reject) => {
    const client = http2.connect(url, opts);
    const timer = setTimeout(() => {
      client.destroy();
      reject(new Error("h2 request timeout"));
    }, 5000);
    client.on("error", (e) => {
      clearTimeout(timer);
      client.destroy();
      reject(e);
    });
    const req = client.request({ ":path": pathname });
    let status = 0;
    let body = "";
    req.on("response", (h) => (status = h[":status"]));
    req.setEncoding("utf8");
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      clearTimeout(timer);
      const alpn = client.alpnProtocol;
      client.close();
      resolve({ status, body, alpn });
    });
    req.on("error", (e) => {
      clearTimeout(timer);
      client.destroy();
      reject(e);
    });
    req.end();
  });
}

/** Two sockets in one room: a sends, both receive it (the sender included). */
async function exchange(a, an, b, room, text) {
  const gotB = waitFor(b, "message:new", (m) => m.room === room && m.text === text);
  const gotA = waitFor(a, "message:new", (m) => m.room === room && m.text === text);
  const m = await send(a, room, text);
  assert.equal(m.from, an);
  assert.deepEqual(await gotB, m);
  assert.deepEqual(await gotA, m);
}

test("slow-loris: a client dripping its request head is closed; others are served meanwhile", T, async () => {
  const h = new Harness(["--header-read-timeout-ms", "1000"]);
  await h.start();
  let loris;
  let drip;
  try {
    loris = await rawConnect(h.server.port);
    const closed = closedWithin(loris, 4000);
    loris.write("GET / HTTP/1.1\r\nHost: x\r\n");
    drip = setInterval(() => {
      if (!loris.destroyed && loris.writable) loris.write("X");
    }, 300);
    // Meanwhile: a websocket client and a polling client (whose idle keep-alive
    // connections the deadline also closes) talk to each other.
    const room = uroom("loris");
    const an = uname("la");
    const bn = uname("lb");
    const a = await h.connect(an, { transports: ["websocket"] });
    const b = await h.connect(bn, { transports: ["polling"] });
    await join(a, room);
    await join(b, room);
    await exchange(a, an, b, room, "while the loris drips");
    await exchange(b, bn, a, room, "and back");
    const r = await closed;
    assert.ok(r.closed, "the dripping connection is still open after 4 s");
    assert.ok(r.ms >= 700, `closed too early (${r.ms} ms)`);
    assert.ok(!r.data.toString().startsWith("HTTP/1.1 200"), "no response to a half-sent head");
    // Still served after the loris is gone, over both transports.
    await sleep(1500); // longer than the deadline: idle keep-alive connections were closed
    await exchange(b, bn, a, room, "after the loris");
    await exchange(a, an, b, room, "and back again");
  } finally {
    clearInterval(drip);
    loris?.destroy();
    await h.stop();
  }
});

test("--max-connections 5: the 6th connection is closed at once; a freed slot is reused", T, async () => {
  const h = new Harness(["--max-connections", "5", "--header-read-timeout-ms", "30000"]);
  await h.start();
  const held = [];
  try {
    for (let i = 0; i < 5; i++) held.push(await rawConnect(h.server.port));
    const watched = held.map((s) => closedWithin(s, 1000));
    await sleep(200); // the server has accepted all five
    const sixth = await rawConnect(h.server.port);
    const r = await closedWithin(sixth, 2000);
    sixth.destroy();
    assert.ok(r.closed, "the 6th connection was not closed");
    assert.equal(r.data.length, 0, "nothing is sent to a refused connection");
    for (const w of await Promise.all(watched)) assert.equal(w.closed, false, "a held connection was closed");
    // Free one slot; once the server has seen it close, a new connection works.
    held.shift().destroy();
    await sleep(300);
    const res = await fetch(`${h.url}/metrics`, { signal: AbortSignal.timeout(5000) });
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.match(text, /^confab_connections_refused_total\{gateway="[^"]+",reason="max_connections"\} 1$/m);
    // The fetch's keep-alive connection holds the freed slot: full again.
    const seventh = await rawConnect(h.server.port);
    const r7 = await closedWithin(seventh, 2000);
    seventh.destroy();
    assert.ok(r7.closed, "over the cap again, but not closed");
  } finally {
    for (const s of held) s.destroy();
    await h.stop();
  }
});

test("--max-connections counts websockets for their whole life", T, async () => {
  const h = new Harness(["--max-connections", "2"]);
  await h.start();
  try {
    const ws = { transports: ["websocket"] };
    const a = await h.connect(uname("ca"), ws);
    await h.connect(uname("cb"), ws);
    await sleep(200); // well past the upgrade: the HTTP side of both is done
    const third = await rawConnect(h.server.port);
    const r = await closedWithin(third, 2000);
    third.destroy();
    assert.ok(r.closed, "a third connection was accepted while two websockets are open");
    await h.close(a);
    await sleep(300);
    const c = await h.connect(uname("cc"), ws);
    assert.ok(c.connected);
  } finally {
    await h.stop();
  }
});

test("HTTP/2 with prior knowledge (h2c) on the plain listener", T, async () => {
  const h = new Harness([]);
  await h.start();
  try {
    const r = await h2get(h.url, "/healthz");
    assert.equal(r.status, 200);
  } finally {
    await h.stop();
  }
});

// ---- TLS ------------------------------------------------------------------

/** A self-signed certificate for 127.0.0.1 with CN `cn`, written to certPath/keyPath. */
function makeCert(dir, cn, certPath, keyPath) {
  execFileSync(
    "openssl",
    ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", `/CN=${cn}`, "-addext", "subjectAltName=IP:127.0.0.1", "-days", "1", "-keyout", keyPath, "-out", certPath],
    { cwd: dir, stdio: "ignore", timeout: 30000 },
  );
}

/** The serial number of the certificate a new TLS connection is shown. */
function peerSerial(port) {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: "127.0.0.1", port, rejectUnauthorized: false, ALPNProtocols: ["http/1.1"] });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error("TLS connect timeout"));
    }, 5000);
    s.once("secureConnect", () => {
      clearTimeout(timer);
      const serial = s.getPeerCertificate().serialNumber;
      s.end();
      s.destroy();
      resolve(serial);
    });
    s.once("error", (e) => {
      clearTimeout(timer);
      s.destroy();
      reject(e);
    });
  });
}

test("TLS: wss and polling over https, h2 by ALPN, certificate reloaded on SIGHUP, plain HTTP refused", { timeout: 60000 }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "confab-tls-"));
  const cert = path.join(dir, "c");
  const key = path.join(dir, "k");
  makeCert(dir, "127.0.0.1", cert, key);
  let server;
  const sockets = [];
  try {
    server = await startServer({ args: ["--tls-cert", cert, "--tls-key", key] });
    assert.match(server.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    const opts = { rejectUnauthorized: false };
    const room = uroom("tls");
    const an = uname("wa");
    const bn = uname("pb");
    const a = await connect(server.url, an, { ...opts, transports: ["websocket"] });
    sockets.push(a);
    const b = await connect(server.url, bn, { ...opts, transports: ["polling"] });
    sockets.push(b);
    assert.equal(a.io.engine.transport.name, "websocket");
    assert.equal(b.io.engine.transport.name, "polling");
    await join(a, room);
    await join(b, room);
    await exchange(a, an, b, room, "over wss");
    await exchange(b, bn, a, room, "over https polling");

    // HTTP/2 by ALPN.
    const r2 = await h2get(server.url, "/healthz", { rejectUnauthorized: false });
    assert.equal(r2.status, 200);
    assert.equal(r2.alpn, "h2");

    // Plain HTTP to the TLS port: no HTTP answer, the connection is closed.
    const plain = await rawConnect(server.port);
    const pr = closedWithin(plain, 5000);
    plain.write("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    const p = await pr;
    plain.destroy();
    assert.ok(p.closed, "plain HTTP connection not closed");
    assert.ok(!p.data.toString("latin1").startsWith("HTTP/"), `plain HTTP answered: ${p.data.toString("latin1")}`);

    // New certificate (new serial): swapped in on SIGHUP, for new connections.
    const before = await peerSerial(server.port);
    makeCert(dir, "confab-reloaded", `${cert}.new`, `${key}.new`);
    renameSync(`${key}.new`, key);
    renameSync(`${cert}.new`, cert);
    process.kill(server.proc.pid, "SIGHUP");
    let after = before;
    for (let i = 0; i < 50 && after === before; i++) {
      await sleep(100);
      after = await peerSerial(server.port);
    }
    assert.notEqual(after, before, "the certificate was not reloaded on SIGHUP");
    // Open sessions carry on; new ones use the new certificate.
    await exchange(a, an, b, room, "after the reload");
    const c = await connect(server.url, uname("wc"), { ...opts, transports: ["websocket"] });
    sockets.push(c);

    // A bad certificate file on SIGHUP: the old certificate stays, the server lives.
    writeFileSync(cert, "not a certificate\n");
    process.kill(server.proc.pid, "SIGHUP");
    const deadline = Date.now() + 5000;
    while (!/TLS certificate not reloaded/.test(server.stderr()) && Date.now() < deadline) await sleep(50);
    assert.match(server.stderr(), /TLS certificate not reloaded/);
    assert.equal(await peerSerial(server.port), after);
    assert.equal(server.proc.exitCode, null);
    await exchange(b, bn, a, room, "after a bad reload");
  } finally {
    for (const s of sockets) s.close();
    if (server) await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("TLS flags: a certificate without a key is refused at start", T, async () => {
  await assert.rejects(startServer({ args: ["--tls-cert", "/nonexistent/c.pem"] }), /exited early/);
});
