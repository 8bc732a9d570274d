// Rolling restart under load (issue 14), the way an operator does it locally:
// deploy/local-cluster.sh (redis-server, three supervised gateways, nginx) on free
// loopback ports, socket.io-client users chatting through nginx (the clients of
// tests/chaos/chaos.mjs: they resume every room with `room:join {since}` after a
// reconnect and resend every unacked send with the same clientId), and
// scripts/rolling-restart.sh while they chat: each gateway in turn is drained with
// SIGTERM, restarted by the cluster's supervisor and waited for on /readyz.
// Asserts 0 lost, 0 duplicates, every send acked exactly once, every client resumed;
// reports the longest resume (first disconnect to the last join ack of the resume).
//   node --test tests/cluster/rolling.test.mjs        (make test-rolling)
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "../support/cluster.mjs";
import { confabBin, testEnv } from "../support/server.mjs";
import { newRun, startUsers, startSender, finishAndVerify, printResult } from "../chaos/chaos.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const CLIENTS = 100;
const ROOMS = 5;
const RATE = 40; // messages per second over all users
const MAX_RESUME_MS = 5000;

/** A process we started, its output kept; exit() resolves to {code, signal}. */
function run(cmd, args, opts) {
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], ...opts });
  const p = { child, out: "" };
  const keep = (d) => {
    p.out += d;
    if (p.out.length > 200000) p.out = p.out.slice(-100000);
  };
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  p.exited = new Promise((res) => child.once("exit", (code, signal) => res({ code, signal })));
  p.running = () => child.exitCode === null && child.signalCode === null;
  return p;
}

/** The PIDs in the cluster's state directory (gwN.pid, redis.pid, nginx.pid). */
function statePids(state) {
  const pids = {};
  for (const name of ["gw1", "gw2", "gw3", "redis", "nginx"]) {
    try {
      pids[name] = Number(readFileSync(path.join(state, `${name}.pid`), "utf8").trim());
    } catch {}
  }
  return pids;
}

const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

test("rolling restart of the local cluster under load: nothing lost, nothing twice, everyone resumed", { timeout: 180000 }, async (t) => {
  const ports = {};
  for (const k of ["REDIS_PORT", "HTTP_PORT", "HTTPS_PORT", "g1", "g2", "g3", "i1", "i2", "i3"]) ports[k] = await freePort();
  const state = mkdtempSync(path.join(tmpdir(), "confab-rolling-"));
  const env = testEnv({
    CONFAB_BIN: confabBin(),
    CLUSTER_STATE: state,
    REDIS_PORT: String(ports.REDIS_PORT),
    HTTP_PORT: String(ports.HTTP_PORT),
    HTTPS_PORT: String(ports.HTTPS_PORT),
    GATEWAY_PORTS: `${ports.g1} ${ports.g2} ${ports.g3}`,
    INTERNAL_PORTS: `${ports.i1} ${ports.i2} ${ports.i3}`,
    // As in the chaos test: a short drain deadline and heartbeat TTL, and a per-socket
    // event rate that resumes and resends stay under.
    CONFAB_SHUTDOWN_DEADLINE_MS: "5000",
    CONFAB_GATEWAY_TTL_MS: "3000",
    CONFAB_RATE_LIMIT: "100",
    CONFAB_RATE_BURST: "100",
    CONFAB_THREADS: "1",
  });
  const cluster = run("bash", [path.join(root, "deploy", "local-cluster.sh")], { cwd: root, env });
  const seen = new Set(); // every PID the cluster ever had, to check none survives
  const users = [];
  let ok = false;
  try {
    const until = Date.now() + 60000;
    while (!/local-cluster: up/.test(cluster.out)) {
      if (!cluster.running()) throw new Error(`local-cluster.sh exited early:\n${cluster.out}`);
      if (Date.now() > until) throw new Error(`local-cluster.sh not up within 60 s:\n${cluster.out}`);
      await sleep(100);
    }
    const before = statePids(state);
    Object.values(before).forEach((p) => seen.add(p));
    assert.equal(Object.keys(before).length, 5, `the state directory lists every PID: ${JSON.stringify(before)}`);

    const r0 = newRun({ rooms: ROOMS });
    r0.url = `http://127.0.0.1:${ports.HTTP_PORT}`;
    users.push(...(await startUsers(r0, CLIENTS)));
    const sender = startSender(users, RATE);
    await sleep(5000);

    const startedAt = new Date();
    const rolling = run("bash", [path.join(root, "scripts", "rolling-restart.sh"), "--state", state, "--timeout", "40", "--pause", "2"], { cwd: root });
    const timer = setTimeout(() => rolling.running() && rolling.child.kill("SIGKILL"), 120000);
    const rr = await rolling.exited;
    clearTimeout(timer);
    console.log(rolling.out.trimEnd());
    const rollingMs = Date.now() - startedAt.getTime();
    await sleep(5000); // load keeps running after the last gateway is back
    clearInterval(sender);

    const after = statePids(state);
    Object.values(after).forEach((p) => seen.add(p));
    const r = await finishAndVerify(r0, users, { maxResumeMs: MAX_RESUME_MS, nginxErrorLog: path.join(state, "nginx", "logs", "error.log") });
    printResult({ ...r, faults: [`rolling restart of 3 gateways (+${((startedAt - r0.t0) / 1000).toFixed(1)} s, ${(rollingMs / 1000).toFixed(1)} s)`] });
    const supervisorLines = cluster.out.split("\n").filter((l) => /gateway gw\d (exited|restarted)/.test(l));
    console.log(supervisorLines.join("\n"));
    console.log(`rolling: ${startedAt.toISOString()} ${CLIENTS} clients, ${ROOMS} rooms, ${RATE} msg/s; rolling restart ${(rollingMs / 1000).toFixed(1)} s; ` +
      `acked ${r.acked}, lost ${r.lost}, duplicates ${r.duplicates}, reconnects ${r.reconnects}, unresumed ${r.unresumed}, longest resume ${r.maxResumeMs} ms`);

    await t.test("scripts/rolling-restart.sh restarted every gateway one at a time and each came back ready", () => {
      assert.deepEqual(rr, { code: 0, signal: null }, rolling.out);
      assert.match(rolling.out, /done: 3 gateways restarted one at a time/);
      for (const gw of ["gw1", "gw2", "gw3"]) {
        assert.match(cluster.out, new RegExp(`gateway ${gw} exited \\(status \\d+[^)]*\\), restarting in 1 s`), cluster.out);
        assert.notEqual(after[gw], before[gw], `${gw} has a new PID`);
        assert.ok(alive(after[gw]), `${gw}'s new process runs`);
      }
      assert.equal(after.redis, before.redis, "Redis was not restarted");
      assert.equal(after.nginx, before.nginx, "nginx was not restarted");
      assert.ok(cluster.running(), "the cluster kept running");
    });

    await t.test("every acked message reached every member exactly once, in order, and is in history", () => {
      assert.ok(r.acked > 200, `enough traffic: ${r.acked} acked`);
      assert.equal(r.lost, 0, `lost: ${r.lostExamples.join("; ")}`);
      assert.equal(r.duplicates, 0, `duplicates: ${r.dupExamples.join("; ")}`);
      assert.equal(r.missingInHistory, 0);
      assert.equal(r.orderErrors, 0);
      assert.equal(r.unacked, 0, "every send was acked in the end");
      assert.equal(r.clientIdMissing, 0, r.clientIdExamples.join("; "));
      assert.equal(r.clientIdDuplicated, 0, r.clientIdExamples.join("; "));
      assert.equal(r.clientIdNotOnceInHistory, 0, r.clientIdExamples.join("; "));
      assert.equal(r.resentLanded, r.resent, "every resent send landed exactly once");
    });

    await t.test("the restarts disconnected clients and every one of them resumed", () => {
      assert.ok(r.reconnects >= CLIENTS / 3, `the drains moved clients: ${r.reconnects} outages`);
      assert.equal(r.unresumed, 0, `never resumed: ${r.longestResumes.join(" | ")}`);
    });

    // Informative (a `todo` when over): resume times depend on the load of the machine
    // (2 cores shared with other test runs) and, in the past, on nginx's passive health
    // check (see tests/chaos/chaos.test.mjs; nginx.conf now has max_fails=0).
    const over = r.maxResumeMs > MAX_RESUME_MS;
    await t.test(`the longest resume is ≤ ${MAX_RESUME_MS / 1000} s (informative)`, { todo: over && `longest resume ${r.maxResumeMs} ms (nginx "no live upstreams": ${r.nginxNoLiveUpstreams})` }, () => {
      assert.ok(!over, `longest resume ${r.maxResumeMs} ms: ${r.longestResumes.join(" | ")}`);
    });
    ok = true;
  } finally {
    for (const u of users) u.socket.close();
    Object.values(statePids(state)).forEach((p) => seen.add(p));
    // Ctrl-C's equivalent: the script stops exactly what it started.
    if (cluster.running()) cluster.child.kill("SIGTERM");
    const stopTimer = setTimeout(() => cluster.running() && cluster.child.kill("SIGKILL"), 40000);
    await cluster.exited;
    clearTimeout(stopTimer);
    const survivors = [...seen].filter(alive);
    for (const pid of survivors) process.kill(pid, "SIGKILL");
    if (ok) rmSync(state, { recursive: true, force: true });
    else console.log(`rolling: logs kept in ${state}`);
    assert.deepEqual(survivors, [], "local-cluster.sh stopped every process it started");
  }
});
