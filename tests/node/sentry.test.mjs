// Error tracking: with CONFAB_SENTRY_DSN set, an error the gateway logs becomes a
// Sentry event posted to the DSN's project. The endpoint here is a stand-in for
// Sentry's ingestion API (there is no Sentry server on this machine): it records
// what the gateway posts, and the test checks the envelope carries the error and
// never the secrets involved.
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import crypto from "node:crypto";
import { startServer, sleep } from "../support/server.mjs";
import { T } from "./lib.mjs";

test("CONFAB_SENTRY_DSN: an error log (a bad key file at SIGHUP) is posted as a Sentry event, without secrets", T, async () => {
  const posts = [];
  const ingest = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      posts.push({ method: req.method, url: req.url, auth: req.headers["x-sentry-auth"] ?? "", body: Buffer.concat(chunks).toString() });
      res.writeHead(200, { "content-type": "application/json" });
      res.end("{}");
    });
  });
  await new Promise((r) => ingest.listen(0, "127.0.0.1", r));
  const port = ingest.address().port;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "confab-sentry-"));
  const keyFile = path.join(dir, "jwt.key");
  const secret = crypto.randomBytes(32).toString("hex");
  fs.writeFileSync(keyFile, secret);
  const dsnKey = "0123456789abcdef0123456789abcdef";
  let srv;
  try {
    srv = await startServer({
      args: ["--auth", "jwt", "--jwt-secret-file", keyFile],
      env: { CONFAB_SENTRY_DSN: `http://${dsnKey}@127.0.0.1:${port}/42`, RUST_LOG: "info" },
    });
    // The operator rotates the key but writes a bad file: the reload fails (logged
    // as an error) and the old key stays.
    fs.writeFileSync(keyFile, "too short");
    srv.proc.kill("SIGHUP");
    let event;
    for (let i = 0; i < 100 && !event; i++) {
      await sleep(100);
      event = posts.find((p) => p.body.includes("token keys not reloaded"));
    }
    assert.ok(event, `no event posted; posts: ${JSON.stringify(posts).slice(0, 500)}; log: ${srv.stderr().slice(-1500)}`);
    assert.equal(event.method, "POST");
    assert.equal(event.url, "/api/42/envelope/");
    assert.ok(event.auth.includes(`sentry_key=${dsnKey}`), event.auth);
    // An envelope: a header line, an item header, the event (level error is the
    // default, left out).
    const [, itemHeader, item] = event.body.split("\n").map((l) => (l ? JSON.parse(l) : null));
    assert.equal(itemHeader.type, "event");
    assert.ok(item.level === undefined || item.level === "error", JSON.stringify(item.level));
    assert.match(item.message, /^SIGHUP: token keys not reloaded/);
    assert.ok(item.sdk.integrations.includes("panic"), "panics are reported too");
    assert.ok(!event.body.includes(secret), "the key is not in the event");
    assert.ok(!srv.stderr().includes(dsnKey), "the DSN is not in the log");
  } finally {
    await srv?.stop();
    await new Promise((r) => ingest.close(r));
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
