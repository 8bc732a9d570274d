// Rolling restart under load (issue 14), the way an operator does it locally:
// deploy/local-cluster.sh (redis-server, three supervised gateways, nginx) on free
// loopback ports, socket.io-client users chatting through nginx (the clients of
// tests/chaos/chaos.mjs: they resume every room with `room:join {since}` after a
// reconnect and resend every unacked send with the same clientId), and
// scripts/rolling-restart.sh while they chat: each gateway in turn is drained with
// SIGTERM, restarted by the cluster's supervisor and waited for on /readyz.
// Asserts 0 lost, 0 duplicates, every send acked exactly once, every client resumed;
// reports the longest resume (first disconnect to the last join ack of the resume).
// A second, short test checks the supervisor's bound: a gateway killed again after
// RESTART_MAX restarts within RESTART_WINDOW_S is given up while the rest runs on.
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

/** Whether the gateway's internal listener answers /readyz with 200. */
async function ready(port) {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(2000) });
    return res.status === 200;
  } catch {
    return false;
  }
}

const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/**
 * Start deploy/local-cluster.sh with `gateways` gateways, every port free, and wait
 * for "local-cluster: up". `seen` collects every PID the state directory ever named;
 * stop() sends SIGTERM (Ctrl-C's equivalent), waits, and returns the PIDs still alive
 * (killed then); the state directory is removed when `keep` is false.
 */
async function startCluster({ gateways = 3, env = {} } = {}) {
  const ports = { redis: await freePort(), http: await freePort(), https: await freePort(), gw: [], internal: [] };
  for (let n = 0; n < gateways; n++) {
    ports.gw.push(await freePort());
    ports.internal.push(await freePort());
  }
  const state = mkdtempSync(path.join(tmpdir(), "confab-rolling-"));
  const cluster = run("bash", [path.join(root, "deploy", "local-cluster.sh")], {
    cwd: root,
    env: testEnv({
      CONFAB_BIN: confabBin(),
      CLUSTER_STATE: state,
      REDIS_PORT: String(ports.redis),
      HTTP_PORT: String(ports.http),
      HTTPS_PORT: String(ports.https),
      GATEWAY_PORTS: ports.gw.join(" "),
      INTERNAL_PORTS: ports.internal.join(" "),
      CONFAB_THREADS: "1",
      ...env,
    }),
  });
  const seen = new Set();
  const record = () => Object.values(statePids(state)).forEach((p) => seen.add(p));
  const stop = async ({ keep = false } = {}) => {
    record();
    if (cluster.running()) cluster.child.kill("SIGTERM");
    const timer = setTimeout(() => cluster.running() && cluster.child.kill("SIGKILL"), 40000);
    await cluster.exited;
    clearTimeout(timer);
    const survivors = [...seen].filter(alive);
    for (const pid of survivors) process.kill(pid, "SIGKILL");
    if (keep) console.log(`rolling: logs kept in ${state}`);
    else rmSync(state, { recursive: true, force: true });
    return survivors;
  };
  const until = Date.now() + 60000;
  while (!/local-cluster: up/.test(cluster.out)) {
    if (!cluster.running() || Date.now() > until) {
      await stop({ keep: true });
      throw new Error(`local-cluster.sh ${cluster.running() ? "not up within 60 s" : "exited early"}:\n${cluster.out}`);
    }
    await sleep(100);
  }
  record();
  return { cluster, state, ports, record, stop };
}

test("rolling restart of the local cluster under load: nothing lost, nothing twice, everyone resumed", { timeout: 180000 }, async (t) => {
  // As in the chaos test: a short drain deadline and heartbeat TTL, and a per-socket
  // event rate that resumes and resends stay under.
  const { cluster, state, ports, record, stop } = await startCluster({
    env: { CONFAB_SHUTDOWN_DEADLINE_MS: "5000", CONFAB_GATEWAY_TTL_MS: "3000", CONFAB_RATE_LIMIT: "100", CONFAB_RATE_BURST: "100" },
  });
  const users = [];
  let ok = false;
  try {
    const before = statePids(state);
    assert.equal(Object.keys(before).length, 5, `the state directory lists every PID: ${JSON.stringify(before)}`);

    const r0 = newRun({ rooms: ROOMS });
    r0.url = `http://127.0.0.1:${ports.http}`;
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
    record();
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
    // Ctrl-C's equivalent: the script stops exactly what it started.
    const survivors = await stop({ keep: !ok });
    assert.deepEqual(survivors, [], "local-cluster.sh stopped every process it started");
  }
});

test("the supervisor restarts a killed gateway on its port, gives up after RESTART_MAX restarts in the window, and keeps the rest running", { timeout: 90000 }, async () => {
  const { cluster, state, ports, stop } = await startCluster({ gateways: 2, env: { RESTART_MAX: "1", RESTART_WINDOW_S: "60" } });
  let ok = false;
  try {
    const first = statePids(state).gw1;
    process.kill(first, "SIGKILL");
    const until = Date.now() + 20000;
    let second;
    while (!(second = statePids(state).gw1) || second === first || !(await ready(ports.internal[0]))) {
      assert.ok(Date.now() < until, `gw1 not restarted and ready within 20 s:\n${cluster.out}`);
      await sleep(100);
    }
    assert.match(cluster.out, /gateway gw1 exited \(status 137, KILL\), restarting in 1 s/);
    process.kill(second, "SIGKILL");
    while (!/gateway gw1 exited \(status 137, KILL\) after 1 restarts within 60 s; giving up on it/.test(cluster.out)) {
      assert.ok(Date.now() < until, `no give-up within 20 s:\n${cluster.out}`);
      await sleep(100);
    }
    const left = statePids(state);
    assert.equal(left.gw1, undefined, "gw1.pid removed once given up");
    assert.ok(alive(left.gw2) && alive(left.redis) && alive(left.nginx), "gw2, Redis and nginx keep running");
    assert.ok(cluster.running(), "the cluster keeps running");
    assert.ok(await ready(ports.internal[1]), "gw2 is ready");
    const page = await fetch(`http://127.0.0.1:${ports.http}/healthz`);
    assert.equal(page.status, 200, "nginx still serves through gw2");
    ok = true;
  } finally {
    const survivors = await stop({ keep: !ok });
    assert.deepEqual(survivors, [], "local-cluster.sh stopped every process it started");
  }
});
