// The HTTP side of a gateway as a browser and an operator see it: the UI with its
// security, cache and compression headers, socket.io-client for the UI, health,
// readiness and Prometheus metrics.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { gunzipSync, brotliDecompressSync } from "node:zlib";
import { readFileSync } from "node:fs";
import { Harness, T, call, assertOk } from "./lib.mjs";

const h = new Harness([]);
before(async () => {
  await h.start();
});
after(async () => {
  await h.stop();
});

async function get(path, headers = {}) {
  const res = await fetch(h.url + path, { headers });
  return { res, body: Buffer.from(await res.arrayBuffer()) };
}

test("the page: strict CSP, no-cache, security headers, gzip and br", T, async () => {
  const plain = await get("/");
  assert.equal(plain.res.status, 200);
  const csp = plain.res.headers.get("content-security-policy");
  assert.match(csp, /default-src 'self'/);
  assert.match(csp, /script-src 'self'(;|$)/);
  assert.doesNotMatch(csp, /unsafe/);
  assert.equal(plain.res.headers.get("cache-control"), "no-cache");
  assert.equal(plain.res.headers.get("x-content-type-options"), "nosniff");
  assert.equal(plain.res.headers.get("x-frame-options"), "DENY");
  const html = readFileSync(new URL("../../ui/index.html", import.meta.url));
  // fetch() decompresses transparently; ask for raw bytes with node's http instead.
  const { request } = await import("node:http");
  const raw = (path, enc) =>
    new Promise((resolve, reject) => {
      const req = request(h.url + path, { headers: { "accept-encoding": enc } }, (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => resolve({ headers: res.headers, body: Buffer.concat(chunks) }));
      });
      req.on("error", reject);
      req.end();
    });
  const gz = await raw("/app.js", "gzip");
  assert.equal(gz.headers["content-encoding"], "gzip");
  const js = readFileSync(new URL("../../ui/app.js", import.meta.url));
  assert.ok(gunzipSync(gz.body).equals(js), "gzip body is app.js");
  assert.ok(gz.body.length < js.length / 2, `compressed ${gz.body.length} of ${js.length}`);
  const br = await raw("/", "br");
  assert.equal(br.headers["content-encoding"], "br");
  assert.ok(brotliDecompressSync(br.body).equals(html));
});

test("socket.io-client for the UI is served from node_modules with a day of caching", T, async () => {
  const { res, body } = await get("/vendor/socket.io/socket.io.esm.min.js");
  assert.equal(res.status, 200);
  assert.match(res.headers.get("cache-control"), /max-age=86400/);
  assert.match(res.headers.get("content-type"), /javascript/);
  assert.ok(body.toString().includes("io"), "looks like socket.io-client");
  assert.equal((await get("/vendor/socket.io/nope.js")).res.status, 404);
});

test("health, readiness and metrics", T, async () => {
  const health = await get("/healthz");
  assert.equal(health.res.status, 200);
  assert.deepEqual(JSON.parse(health.body), { status: "ok" });
  const ready = await get("/readyz");
  assert.equal(ready.res.status, 200);
  assert.deepEqual(JSON.parse(ready.body), { status: "ready" });
  const s = await h.connect("metrics-user");
  const metrics = (await get("/metrics")).body.toString();
  assert.match(metrics, /# HELP confab_connections /);
  // Every series carries the gateway's id (`embedded` without --redis/--gateway-id).
  assert.match(metrics, /^confab_connections\{gateway="[^"]+"\} 1$/m);
  assert.match(metrics, /^confab_connects_total\{gateway="[^"]+"\} \d+$/m);
  assert.match(metrics, /^confab_build_info\{gateway="[^"]+",version="\d+\.\d+\.\d+"\} 1$/m);
  // A delivered message is timed from stored to queued on the sockets.
  assertOk(await call(s, "room:join", { room: "general" }));
  assertOk(await call(s, "message:send", { room: "general", text: "timed" }));
  const after = (await get("/metrics")).body.toString();
  const count = Number(after.match(/^confab_fanout_delay_seconds_count\{gateway="[^"]+",kind="message"\} (\d+)$/m)?.[1]);
  assert.ok(count >= 1, `confab_fanout_delay_seconds_count{kind="message"}: ${count}`);
  s.close();
});

test("--log-format json: one JSON object per log line, with level and message", T, async () => {
  const { startServer } = await import("../support/server.mjs");
  const srv = await startServer({ args: ["--log-format", "json"], env: { RUST_LOG: "info" } });
  try {
    const lines = srv.stderr().split("\n").filter(Boolean);
    assert.ok(lines.length >= 2, `some log lines: ${JSON.stringify(lines)}`);
    for (const l of lines) {
      const o = JSON.parse(l);
      assert.ok(o.timestamp && o.level && o.fields?.message, l);
    }
    assert.ok(lines.some((l) => JSON.parse(l).fields.message.includes("backend: embedded")), lines.join("\n"));
  } finally {
    await srv.stop();
  }
});

test("request logs carry the gateway, socket id, user, address and event, never the text", T, async () => {
  const { startServer, connect } = await import("../support/server.mjs");
  const srv = await startServer({
    args: ["--log-format", "json"],
    env: { RUST_LOG: "confab_gateway=debug" },
  });
  try {
    const s = await connect(srv.url, "logged-user");
    assertOk(await call(s, "room:join", { room: "general" }));
    const secret = "a private sentence 7f3a";
    assertOk(await call(s, "message:send", { room: "general", text: secret }));
    s.close();
    const lines = srv.stderr().split("\n").filter(Boolean).map((l) => JSON.parse(l));
    const sent = lines.find((o) => o.span?.name === "event" && o.span.event === "message:send");
    assert.ok(sent, `a log line inside the message:send span: ${srv.stderr().slice(-2000)}`);
    assert.equal(sent.span.gateway, "embedded");
    assert.equal(sent.span.user, "logged-user");
    assert.ok(sent.span.sid && sent.span.ip.includes("127.0.0.1"), JSON.stringify(sent.span));
    assert.ok(!srv.stderr().includes(secret), "message text in the log");
  } finally {
    await srv.stop();
  }
});

test("the delivery probe: times a DM to itself through the real path, and is invisible to users", T, async () => {
  const { startServer, connect, sleep } = await import("../support/server.mjs");
  const extra = (process.env.CONFAB_TEST_ARGS ?? "").split(" ").filter(Boolean);
  const srv = await startServer({ args: [...extra, "--probe-interval-ms", "200"] });
  try {
    const s = await connect(srv.url, "probe-watcher");
    const metric = async (re) => Number((await (await fetch(`${srv.url}/metrics`)).text()).match(re)?.[1] ?? 0);
    let probes = 0;
    for (let i = 0; i < 50 && probes < 3; i++) {
      await sleep(200);
      probes = await metric(/^confab_probe_delivery_seconds_count\{[^}]*\} (\d+)$/m);
    }
    assert.ok(probes >= 3, `probes timed: ${probes}`);
    assert.equal(await metric(/^confab_probe_failures_total\{[^}]*\} (\d+)$/m), 0, "no probe failed");
    // Not a user anyone sees, not a connection.
    const users = assertOk(await call(s, "users:list", {}));
    assert.ok(!JSON.stringify(users).includes("~probe"), JSON.stringify(users));
    assert.equal(await metric(/^confab_connections\{[^}]*\} (\d+)$/m), 1);
    const members = assertOk(await call(s, "room:join", { room: "general" }));
    assert.ok(!JSON.stringify(members).includes("~probe"), JSON.stringify(members));
    // Its credential is this process's own: a client cannot claim it.
    const forged = await connect(srv.url, "forger", { auth: { name: "forger", probe: "probe-guess" } });
    assert.equal(forged.session.user.id, "forger");
    forged.close();
  } finally {
    await srv.stop();
  }
});
