#!/usr/bin/env node
// One flooder on a cluster (issue 13): its own redis-server, GATEWAYS confab gateways
// and nginx (tests/support/cluster.mjs, the repository's nginx.conf), with the DEFAULT
// quotas and caps (passed as flags: the test environment of cluster.mjs turns them
// off), `--auth open`. USERS honest users (websocket, through nginx, spread evenly
// over the gateways by their `confab_route` cookie) share ROOMS rooms and each send
// RATE msg/s; one flooder user (one user id, FLOODER_SOCKETS sockets spread evenly
// over the gateways, all in the honest users' room 0) sends `message:send` as fast as
// its acks come back (FLOODER_INFLIGHT requests in flight per socket), ignoring
// `retryAfterMs`, as an abusive client would.
//
// Every user connects from its own loopback address (127.0.1.N for honest users,
// 127.0.9.1 for the flooder; Linux routes all of 127/8 to lo), so nginx's
// $remote_addr, hence the X-Forwarded-For the gateways trust from their loopback
// proxy, differs per user: per-IP quotas apply per user, as with real clients.
//
// Phases, back to back on the same cluster with the same connections: warm-up (not
// measured), then the PHASES list (default quiet,flood,quiet: the flooder sends only
// in `flood`). Latency = an honest message's send time to its `message:new` at every
// other honest member of its room (one clock: every honest client is in this
// process; the flooder runs in a child process so its loop does not delay them).
// Reports per phase: honest latency p50/p95/p99/max, honest acks refused (by code),
// deliveries missing; the flooder's accepted msg/s against its quota (at most
// burst + rate x T over T seconds) and its refusals (quota, per-socket event limit,
// with retryAfterMs); the gateways' counters (/metrics) and the CPU of every process.
//
//   node scripts/bench-flooder.mjs [--users 40] [--rooms 1] [--rate 1] [--seconds 30]
//     [--warmup 5] [--phases quiet,flood,quiet] [--gateways 3] [--flooder-sockets 6]
//     [--flooder-inflight 1] [--json FILE]
//   (scripts/bench-flooder.sh sets CONFAB_BIN to the release build and runs this)
// Loopback only; every loop is bounded in count and time; the processes it starts
// are stopped by PID at the end, on failure and on SIGINT/SIGTERM.
// `runBench(options)` is exported for tests/cluster/flooder.test.mjs.
import { io } from "socket.io-client";
import { fork, execFileSync } from "node:child_process";
import { readFileSync, writeFileSync, rmSync, readdirSync } from "node:fs";
import { performance, monitorEventLoopDelay } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import path from "node:path";
import os from "node:os";

const here = fileURLToPath(import.meta.url);
const root = path.resolve(path.dirname(here), "..");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The server's defaults (README's configuration table), given as flags because the
// test environment (testEnv in tests/support/server.mjs) turns them off by env.
// `checkDefaults` compares them with `confab serve --help`.
export const DEFAULT_LIMITS = {
  "--quota-messages-per-user": "10/30",
  "--quota-messages-per-ip": "50/100",
  "--quota-joins-per-user": "5/20",
  "--quota-connects-per-user": "5/20",
  "--quota-connects-per-ip": "20/100",
  "--max-connections-per-ip": "256",
  "--protocol-errors-burst": "20",
};

const DEFAULTS = {
  users: 40, rooms: 1, rate: 1, seconds: 30, warmup: 5, phases: ["quiet", "flood", "quiet"],
  gateways: 3, flooderSockets: 6, flooderInflight: 1, flooderMaxEvents: 2_000_000,
  drainSeconds: 3, json: "", quiet: false,
};

function parseArgs(argv) {
  const o = { ...DEFAULTS };
  const num = (k, v, lo, hi) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < lo || n > hi) throw new Error(`--${k}: a number in ${lo}..${hi}, got ${v}`);
    return n;
  };
  for (let i = 2; i < argv.length; i++) {
    const k = argv[i].replace(/^--/, "");
    const v = argv[++i];
    if (v === undefined) throw new Error(`--${k} needs a value`);
    switch (k) {
      case "users": o.users = num(k, v, 2, 2000); break;
      case "rooms": o.rooms = num(k, v, 1, 100); break;
      case "rate": o.rate = num(k, v, 0.1, 5); break;
      case "seconds": o.seconds = num(k, v, 1, 600); break;
      case "warmup": o.warmup = num(k, v, 0, 120); break;
      case "phases": o.phases = v.split(","); break;
      case "gateways": o.gateways = num(k, v, 1, 8); break;
      case "flooder-sockets": o.flooderSockets = num(k, v, 1, 32); break;
      case "flooder-inflight": o.flooderInflight = num(k, v, 1, 64); break;
      case "flooder-max-events": o.flooderMaxEvents = num(k, v, 1, 10_000_000); break;
      case "drain-seconds": o.drainSeconds = num(k, v, 0, 30); break;
      case "json": o.json = v; break;
      default: throw new Error(`unknown option --${k}`);
    }
  }
  return o;
}

function checkOptions(o) {
  if (!o.phases.length || o.phases.some((p) => p !== "quiet" && p !== "flood")) {
    throw new Error(`--phases: a comma-separated list of quiet and flood, got ${o.phases}`);
  }
  // 5 msg/s at most per honest user: under its quota (10/s), so any refusal of an
  // honest message is the flooder's doing.
  if (o.rate > 5) throw new Error("--rate: at most 5 msg/s per honest user");
}

/** Loopback source address of honest user i (127.0.1.1, ...; 250 per /24). */
const honestAddress = (i) => `127.0.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`;
const FLOODER_ADDRESS = "127.0.9.1";
const FLOODER_NAME = "flooder";

function pct(sorted, p) {
  if (!sorted.length) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}
function summarize(values) {
  const s = Float64Array.from(values).sort();
  const r = (x) => (x == null ? null : Math.round(x * 10) / 10);
  return { n: s.length, p50: r(pct(s, 50)), p95: r(pct(s, 95)), p99: r(pct(s, 99)), max: r(s.length ? s[s.length - 1] : null) };
}
const bump = (obj, k, n = 1) => { obj[k] = (obj[k] || 0) + n; };

/** user+system CPU seconds of a process (/proc/PID/stat), or null. */
function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
  } catch { return null; }
}
/** Busy and total CPU seconds of the whole machine (/proc/stat), all cores. */
function machineCpu() {
  try {
    const f = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1, 9).map(Number);
    const total = f.reduce((a, b) => a + b, 0);
    // user nice system idle iowait irq softirq steal; softirq (loopback TCP) and
    // steal (the VM's host) belong to no process
    return { busy: (total - f[3] - f[4]) / 100, total: total / 100, softirq: f[6] / 100, steal: f[7] / 100 };
  } catch { return null; }
}
/** Direct children of pid (nginx's worker). */
function childrenOf(pid) {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((t) =>
      readFileSync(`/proc/${pid}/task/${t}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number));
  } catch { return []; }
}

/** Counters of one gateway's /metrics that the report needs (sums over labels). */
async function scrape(url) {
  const out = { msg_ok: 0, msg_rate_limited: 0, quota_refused_msg: 0, events_ok: 0, event_errors: {}, send_failed: 0, slow_consumers: 0, dispatch_lag_s: 0 };
  let text;
  try {
    const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(3000) });
    text = await res.text();
  } catch (e) { return { error: String(e.message) }; }
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^(\w+)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const [, name, labels = "", v] = m;
    const val = Number(v);
    if (name === "confab_events_total") {
      out.events_ok += val;
      if (labels.includes('event="message:send"')) out.msg_ok += val;
    } else if (name === "confab_event_errors_total") {
      const ev = /event="([^"]*)"/.exec(labels)?.[1], code = /code="([^"]*)"/.exec(labels)?.[1];
      bump(out.event_errors, `${ev}:${code}`, val);
      if (ev === "message:send" && code === "rate_limited") out.msg_rate_limited += val;
    } else if (name === "confab_rate_limited_total" && labels.includes('class="msg"')) {
      out.quota_refused_msg += val;
    } else if (name === "confab_send_failed_total") {
      out.send_failed += val;
    } else if (name === "confab_slow_consumers_total") {
      out.slow_consumers += val;
    } else if (name === "confab_dispatch_lag_seconds") {
      out.dispatch_lag_s = Math.max(out.dispatch_lag_s, val);
    }
  }
  return out;
}
function diffCounters(a, b) {
  if (!a || !b || a.error || b.error) return { error: a?.error ?? b?.error ?? "missing" };
  const d = {};
  for (const k of ["msg_ok", "msg_rate_limited", "quota_refused_msg", "events_ok", "send_failed", "slow_consumers"]) d[k] = b[k] - a[k];
  d.event_errors = {};
  for (const [k, v] of Object.entries(b.event_errors)) if (v - (a.event_errors[k] || 0)) d.event_errors[k] = v - (a.event_errors[k] || 0);
  d.dispatch_lag_s_at_end = b.dispatch_lag_s;
  return d;
}

/** Connect one socket through nginx; resolves after `session` (bounded). */
function connectSocket(url, name, { cookie, localAddress, timeoutMs = 10000 }) {
  return new Promise((resolve, reject) => {
    const s = io(url, {
      transports: ["websocket"], reconnection: false, forceNew: true, timeout: timeoutMs,
      auth: { name }, extraHeaders: cookie ? { cookie } : {}, localAddress,
    });
    const timer = setTimeout(() => { s.close(); reject(new Error(`connect timeout: ${name} from ${localAddress}`)); }, timeoutMs + 1000);
    s.once("session", (session) => { clearTimeout(timer); s.session = session; resolve(s); });
    s.once("connect_error", (e) => { clearTimeout(timer); s.close(); reject(new Error(`connect_error for ${name} from ${localAddress}: ${e?.message}`)); });
  });
}

// ---------------------------------------------------------------------------------
// The flooder: a child process (fork of this file with --role flooder), driven over IPC.
// ---------------------------------------------------------------------------------
async function flooderMain() {
  const sockets = [];
  const fresh = () => ({
    sent: 0, accepted: 0, refused_quota: 0, refused_socket_limit: 0, refused_inflight: 0,
    refused_other: {}, ack_timeouts: 0, disconnects: {}, retry_after_ms: [], first_send_ms: null, last_ack_ms: null,
    accepted_per_socket: [],
  });
  let stats = fresh();
  const send = (m) => process.send && process.send(m);
  process.on("disconnect", () => process.exit(0)); // the parent went away
  process.on("message", async (msg) => {
    try {
      if (msg.cmd === "connect") {
        for (let k = 0; k < msg.cookies.length; k++) {
          const s = await connectSocket(msg.url, FLOODER_NAME, { cookie: msg.cookies[k], localAddress: FLOODER_ADDRESS });
          s.on("disconnect", (reason) => bump(stats.disconnects, reason));
          sockets.push(s);
          const ack = await s.timeout(5000).emitWithAck("room:join", { room: msg.room, limit: 1 });
          if (!ack?.ok) throw new Error(`flooder join refused: ${JSON.stringify(ack)}`);
        }
        send({ ev: "connected", n: sockets.length });
      } else if (msg.cmd === "flood") {
        stats = fresh();
        const t0 = performance.now();
        const deadline = t0 + msg.seconds * 1000;
        const cpu0 = process.cpuUsage();
        let seq = 0;
        const loop = async (s, k) => {
          while (performance.now() < deadline && stats.sent < msg.maxEvents && s.connected) {
            const n = seq++;
            stats.sent++;
            if (stats.first_send_ms == null) stats.first_send_ms = performance.now();
            let ack;
            try {
              ack = await s.timeout(5000).emitWithAck("message:send", { room: msg.room, text: `flood ${n}`, clientId: `fl-${msg.phase}-${n}` });
            } catch { stats.ack_timeouts++; continue; }
            stats.last_ack_ms = performance.now();
            if (ack?.ok) { stats.accepted++; stats.accepted_per_socket[k] = (stats.accepted_per_socket[k] || 0) + 1; continue; }
            const e = ack?.error ?? {};
            if (e.code === "rate_limited") {
              if (/too many messages/.test(e.message)) {
                stats.refused_quota++;
                if (stats.retry_after_ms.length < 100_000) stats.retry_after_ms.push(Number(e.retryAfterMs));
              } else if (/too many events/.test(e.message)) stats.refused_socket_limit++;
              else if (/in flight/.test(e.message)) stats.refused_inflight++;
              else bump(stats.refused_other, `rate_limited: ${String(e.message).slice(0, 80)}`);
            } else bump(stats.refused_other, String(e.code ?? "no-ack"));
          }
        };
        const loops = [];
        sockets.forEach((s, k) => { for (let j = 0; j < msg.inflight; j++) loops.push(loop(s, k)); });
        await Promise.all(loops);
        const cpu = process.cpuUsage(cpu0);
        const ra = stats.retry_after_ms.slice().sort((a, b) => a - b);
        send({
          ev: "result",
          stats: {
            ...stats, retry_after_ms: undefined,
            retry_after_ms_summary: { n: ra.length, min: ra[0] ?? null, p50: pct(ra, 50), max: ra.at(-1) ?? null },
            flood_seconds: (stats.last_ack_ms - stats.first_send_ms) / 1000,
            cpu_seconds: (cpu.user + cpu.system) / 1e6,
            connected_at_end: sockets.filter((s) => s.connected).length,
          },
        });
      } else if (msg.cmd === "close") {
        for (const s of sockets) s.close();
        await sleep(100);
        process.exit(0);
      }
    } catch (e) {
      send({ ev: "error", error: String(e?.stack ?? e) });
    }
  });
  send({ ev: "ready" });
}

function startFlooder() {
  const child = fork(here, ["--role", "flooder"], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const waiters = [];
  child.on("message", (m) => {
    const i = waiters.findIndex((w) => w.ev === m.ev || m.ev === "error");
    if (i >= 0) { const [w] = waiters.splice(i, 1); m.ev === "error" ? w.reject(new Error(`flooder: ${m.error}`)) : w.resolve(m); }
  });
  const exited = new Promise((r) => child.once("exit", r));
  child.once("exit", () => { for (const w of waiters.splice(0)) w.reject(new Error("flooder process exited")); });
  const expect = (ev, timeoutMs) => new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`flooder: no ${ev} within ${timeoutMs} ms`)), timeoutMs);
    waiters.push({ ev, resolve: (m) => { clearTimeout(t); resolve(m); }, reject: (e) => { clearTimeout(t); reject(e); } });
  });
  return {
    pid: child.pid, expect, exited,
    send: (m) => child.connected && child.send(m),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      if (child.connected) child.send({ cmd: "close" });
      const t = setTimeout(() => child.kill("SIGKILL"), 3000);
      await exited;
      clearTimeout(t);
    },
  };
}

// ---------------------------------------------------------------------------------
// The bench.
// ---------------------------------------------------------------------------------

/** `confab serve --help` defaults of the limits in DEFAULT_LIMITS; mismatches listed. */
function checkDefaults(bin) {
  try {
    const help = execFileSync(bin, ["serve", "--help"], { encoding: "utf8", timeout: 10000 });
    const bad = [];
    for (const [flag, v] of Object.entries(DEFAULT_LIMITS)) {
      const at = help.indexOf(`${flag} `);
      const m = at >= 0 ? /\[default: ([^\]]+)\]/.exec(help.slice(at, at + 2000)) : null;
      if (!m || m[1] !== v) bad.push(`${flag}: bench ${v}, binary ${m ? m[1] : "?"}`);
    }
    return bad;
  } catch (e) { return [`could not read ${bin} serve --help: ${e.message}`]; }
}

export async function runBench(options = {}) {
  const o = { ...DEFAULTS, ...options };
  checkOptions(o);
  const log = o.quiet ? () => {} : (s) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${s}\n`);
  const { startRedis, startGateway, startNginx, redisCli, stopAll } = await import("../tests/support/cluster.mjs");
  const { confabBin } = await import("../tests/support/server.mjs");
  const loadavgStart = os.loadavg();
  const procs = [];
  const sockets = [];
  let nginx, redis, flooder, stopping = false;
  const cleanup = async () => {
    if (stopping) return;
    stopping = true;
    for (const s of sockets) s.close();
    await flooder?.stop().catch(() => {});
    await stopAll(procs);
    nginx?.cleanup();
    if (redis?.dir) rmSync(redis.dir, { recursive: true, force: true });
  };
  const onSignal = (sig) => { log(`${sig}: stopping`); cleanup().finally(() => process.exit(130)); };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    const bin = confabBin();
    const defaultsMismatch = checkDefaults(bin);
    for (const d of defaultsMismatch) log(`WARNING: default differs: ${d}`);
    const gwArgs = ["--auth", "open", ...Object.entries(DEFAULT_LIMITS).flat()];
    redis = await startRedis();
    procs.push(redis);
    const gws = [];
    for (let g = 0; g < o.gateways; g++) {
      const gw = await startGateway({ redisUrl: redis.url, id: `gw${g + 1}`, args: gwArgs });
      procs.push(gw);
      gws.push(gw);
    }
    nginx = await startNginx({ gatewayPorts: gws.map((g) => g.port) });
    procs.push(nginx);
    log(`binary ${bin}; redis pid ${redis.pid}, gateways ${gws.map((g) => `${g.id} pid ${g.pid}`).join(", ")}, nginx pid ${nginx.pid} at ${nginx.url}`);

    // Which gateway holds user `name`'s connections (each gateway keeps them in
    // confab:gw:<id>:conns, field u:<user id>; open mode: id = name).
    const placement = async (name) => {
      const on = {};
      for (const g of gws) {
        const [n] = await redisCli(redis.port, "HGET", `confab:gw:${g.id}:conns`, `u:${name}`);
        if (Number(n) > 0) on[g.id] = Number(n);
      }
      return on;
    };
    // A route cookie per gateway: probe clients (from 127.0.0.1) with candidate cookies.
    const cookieOf = new Map();
    for (let k = 0; k < 60 && cookieOf.size < gws.length; k++) {
      const name = `probe-${k}`, cookie = `confab_route=bench-${k}`;
      const s = await connectSocket(nginx.url, name, { cookie, localAddress: "127.0.0.1" });
      let on = {};
      for (let t = 0; t < 30 && !Object.keys(on).length; t++) { on = await placement(name); if (!Object.keys(on).length) await sleep(100); }
      s.close();
      const id = Object.keys(on)[0];
      if (id && !cookieOf.has(id)) cookieOf.set(id, cookie);
    }
    if (cookieOf.size < gws.length) throw new Error(`found route cookies for ${[...cookieOf.keys()]} only`);
    const cookies = gws.map((g) => cookieOf.get(g.id));

    // Honest users: user i on gateway i % G, room i % ROOMS, address 127.0.1.(i+1)...
    const rooms = Array.from({ length: o.rooms }, (_, r) => `bench-room-${r}`);
    const users = [];
    for (let i = 0; i < o.users; i++) {
      const name = `honest-${i}`;
      const s = await connectSocket(nginx.url, name, { cookie: cookies[i % gws.length], localAddress: honestAddress(i) });
      sockets.push(s);
      const u = { i, name, s, room: rooms[i % o.rooms], disconnects: [] };
      s.on("disconnect", (reason) => u.disconnects.push(reason));
      const ack = await s.timeout(5000).emitWithAck("room:join", { room: u.room, limit: 1 });
      if (!ack?.ok) throw new Error(`${name} join refused: ${JSON.stringify(ack)}`);
      users.push(u);
    }
    const members = new Map(rooms.map((r) => [r, users.filter((u) => u.room === r).length]));
    // The flooder (child process), one socket per gateway in turn, in room 0.
    const floods = o.phases.includes("flood");
    if (floods) {
      flooder = startFlooder();
      await flooder.expect("ready", 10000);
      flooder.send({ cmd: "connect", url: nginx.url, room: rooms[0], cookies: Array.from({ length: o.flooderSockets }, (_, k) => cookies[k % gws.length]) });
      await flooder.expect("connected", 30000);
    }
    await sleep(1000); // presence settles
    const where = {};
    for (const g of gws) {
      const h = await redisCli(redis.port, "HGETALL", `confab:gw:${g.id}:conns`);
      const f = {};
      for (let k = 0; k + 1 < h.length; k += 2) f[h[k]] = Number(h[k + 1]);
      where[g.id] = {
        honest: Object.entries(f).filter(([k, v]) => k.startsWith("u:honest-") && v > 0).length,
        flooder_sockets: f[`u:${FLOODER_NAME}`] || 0,
      };
    }
    log(`placement: ${JSON.stringify(where)}`);

    // ---- measurement ----
    const phaseNames = o.phases.map((p, k) => (o.phases.indexOf(p) === k && !o.phases.slice(k + 1).includes(p) ? p : `${p}-${o.phases.slice(0, k + 1).filter((x) => x === p).length}`));
    const ph = phaseNames.map((name, k) => ({
      name, kind: o.phases[k], latencies: [], ackLatencies: [], sent: 0, acked: 0, refused: {}, ackTimeouts: 0,
      expected: 0, delivered: 0, flooderDeliveredAtObserver: 0,
    }));
    let phaseIdx = -1; // -1: warm-up
    const sentAt = new Map(); // clientId -> {t, phase, room}
    for (const u of users) {
      u.s.on("message:new", (m) => {
        const now = performance.now();
        if (m.fromId === FLOODER_NAME) {
          // honest-0 counts the flooder's messages it receives, by the phase in their clientId
          const fp = u.i === 0 ? ph[Number(/^fl-(\d+)-/.exec(m.clientId ?? "")?.[1])] : null;
          if (fp) fp.flooderDeliveredAtObserver++;
          return;
        }
        if (m.fromId === u.name) return;
        const rec = m.clientId && sentAt.get(m.clientId);
        if (!rec || rec.phase < 0 || rec.phase >= ph.length) return;
        ph[rec.phase].latencies.push(now - rec.t);
        ph[rec.phase].delivered++;
      });
    }
    const eld = monitorEventLoopDelay({ resolution: 10 });
    const totalMs = (o.warmup + o.seconds * o.phases.length) * 1000;
    const tStart = performance.now() + 200;
    const tEnd = tStart + totalMs;
    const periodMs = 1000 / o.rate;
    const senders = users.map((u) => (async () => {
      // a random phase within the period, so the users do not send in step
      let next = tStart + Math.random() * periodMs;
      for (let k = 0; k < 100_000 && next < tEnd; k++) {
        const wait = next - performance.now();
        if (wait > 0) await sleep(wait);
        next += periodMs;
        if (!u.s.connected) continue;
        const clientId = `${u.name}-${k}`;
        const phase = phaseIdx;
        const t = performance.now();
        sentAt.set(clientId, { t, phase });
        const P = phase >= 0 ? ph[phase] : null;
        if (P) P.sent++;
        u.s.timeout(10000).emitWithAck("message:send", { room: u.room, text: `honest ${k}`, clientId }).then((ack) => {
          if (!P) return;
          if (ack?.ok) { P.acked++; P.ackLatencies.push(performance.now() - t); P.expected += members.get(u.room) - 1; }
          else bump(P.refused, ack?.error?.code === "rate_limited" ? `rate_limited: ${ack.error.message}` : String(ack?.error?.code ?? "no-ack"));
        }, () => { if (P) P.ackTimeouts++; });
      }
    })());

    const snap = async () => ({
      at: performance.now(),
      metrics: await Promise.all(gws.map((g) => scrape(g.url))),
      cpu: {
        gateways: gws.map((g) => cpuSeconds(g.pid)), redis: cpuSeconds(redis.pid),
        nginx: [nginx.pid, ...childrenOf(nginx.pid)].map(cpuSeconds).reduce((a, b) => a + (b || 0), 0),
        bench: process.cpuUsage(),
        flooder: flooder ? cpuSeconds(flooder.pid) : 0,
        machine: machineCpu(),
      },
    });

    log(`warm-up ${o.warmup} s: ${o.users} honest users x ${o.rate} msg/s in ${o.rooms} room(s)`);
    await sleep(Math.max(0, tStart - performance.now() + o.warmup * 1000));
    const snaps = [];
    for (let k = 0; k < ph.length; k++) {
      const s0 = await snap();
      eld.enable(); eld.reset();
      phaseIdx = k;
      const phaseEnd = tStart + (o.warmup + o.seconds * (k + 1)) * 1000;
      log(`phase ${ph[k].name}: ${o.seconds} s${ph[k].kind === "flood" ? `, flooder: ${o.flooderSockets} sockets x ${o.flooderInflight} in flight` : ""}`);
      if (ph[k].kind === "flood") {
        flooder.send({ cmd: "flood", room: rooms[0], seconds: (phaseEnd - performance.now()) / 1000, inflight: o.flooderInflight, maxEvents: o.flooderMaxEvents, phase: k });
        // its result comes once its last acks are in (each bounded by 5 s): read after
        // the phases, so the next phase starts on time
        ph[k].floodResult = flooder.expect("result", (o.seconds * (ph.length - k) + 60) * 1000);
        ph[k].floodResult.catch(() => {});
      }
      await sleep(Math.max(0, phaseEnd - performance.now()));
      eld.disable();
      const s1 = await snap();
      snaps.push([s0, s1]);
      // the histogram holds whole timer intervals: what exceeds the 10 ms resolution is delay
      const excess = (ns) => Math.max(0, Math.round((ns - 10e6) / 1e4) / 100);
      ph[k].eventLoopDelayMs = { p50: excess(eld.percentile(50)), p99: excess(eld.percentile(99)), max: excess(eld.max) };
    }
    phaseIdx = ph.length; // messages sent after the last phase are not counted
    for (const P of ph) if (P.floodResult) P.flooder = (await P.floodResult).stats;
    await Promise.all(senders);
    log(`drain ${o.drainSeconds} s`);
    await sleep(o.drainSeconds * 1000);

    // ---- report ----
    const [quotaRate, quotaBurst] = DEFAULT_LIMITS["--quota-messages-per-user"].split("/").map(Number);
    const report = {
      options: { ...o, json: undefined, quiet: undefined },
      binary: bin, defaults_mismatch: defaultsMismatch, gateway_args: gwArgs,
      machine: { nproc: os.cpus().length, kernel: os.release(), loadavg_start: loadavgStart },
      date_utc: new Date().toISOString(), placement: where,
      phases: ph.map((P, k) => {
        const [s0, s1] = snaps[k];
        const secs = (s1.at - s0.at) / 1000;
        const gwCounters = s0.metrics.map((m, g) => diffCounters(m, s1.metrics[g]));
        const sum = (key) => gwCounters.reduce((a, c) => a + (c[key] ?? 0), 0);
        const cpu = {
          gateways: s0.cpu.gateways.map((c, g) => (c == null || s1.cpu.gateways[g] == null ? null : +(s1.cpu.gateways[g] - c).toFixed(2))),
          redis: +(s1.cpu.redis - s0.cpu.redis).toFixed(2),
          nginx: +(s1.cpu.nginx - s0.cpu.nginx).toFixed(2),
          bench: +(((s1.cpu.bench.user - s0.cpu.bench.user) + (s1.cpu.bench.system - s0.cpu.bench.system)) / 1e6).toFixed(2),
          flooder: s0.cpu.flooder == null || s1.cpu.flooder == null ? null : +(s1.cpu.flooder - s0.cpu.flooder).toFixed(2),
        };
        const mine = cpu.gateways.reduce((a, b) => a + (b || 0), 0) + cpu.redis + cpu.nginx + cpu.bench + (cpu.flooder || 0);
        const mc0 = s0.cpu.machine, mc1 = s1.cpu.machine;
        // CPU of everything else on the machine in this phase (other work on a shared box)
        const machine = mc0 && mc1 ? {
          busy_cores: +((mc1.busy - mc0.busy) / secs).toFixed(2),
          this_bench_cores: +(mine / secs).toFixed(2),
          others_cores: +(((mc1.busy - mc0.busy) - mine) / secs).toFixed(2),
          softirq_cores: +((mc1.softirq - mc0.softirq) / secs).toFixed(2),
          steal_cores: +((mc1.steal - mc0.steal) / secs).toFixed(2),
        } : null;
        const out = {
          name: P.name, kind: P.kind, seconds: +secs.toFixed(1),
          honest: {
            sent: P.sent, acked: P.acked, refused: P.refused, refused_total: Object.values(P.refused).reduce((a, b) => a + b, 0), ack_timeouts: P.ackTimeouts,
            deliveries: P.delivered, deliveries_expected: P.expected, deliveries_missing: P.expected - P.delivered,
            latency_ms: summarize(P.latencies), ack_ms: summarize(P.ackLatencies),
          },
          bench_event_loop_delay_ms: P.eventLoopDelayMs,
          gateways: gwCounters,
          cluster: { message_send_ok: sum("msg_ok"), message_send_rate_limited: sum("msg_rate_limited"), quota_refusals_msg: sum("quota_refused_msg"), send_failed: sum("send_failed"), slow_consumers: sum("slow_consumers") },
          cpu_seconds: cpu, machine_cpu: machine,
        };
        if (P.flooder) {
          const F = P.flooder;
          const T = F.flood_seconds;
          const bound = quotaBurst + quotaRate * T;
          out.flooder = {
            ...F,
            quota: `${quotaRate}/s burst ${quotaBurst}`,
            accepted_bound: Math.floor(bound),
            held_to_quota: F.accepted <= bound,
            accepted_per_s: +(F.accepted / T).toFixed(2),
            accepted_per_s_after_burst: +((F.accepted - quotaBurst) / T).toFixed(2),
            attempts_per_s: +(F.sent / T).toFixed(0),
            delivered_at_observer: P.flooderDeliveredAtObserver,
          };
        }
        return out;
      }),
    };
    // each flood phase against the quiet phase before it and the one after it
    report.phases.forEach((p, k) => {
      if (p.kind !== "flood") return;
      const ratio = (q) => {
        if (!q) return null;
        const r = (x) => (q.honest.latency_ms[x] ? +(p.honest.latency_ms[x] / q.honest.latency_ms[x]).toFixed(2) : null);
        return { against: q.name, p50: r("p50"), p95: r("p95"), p99: r("p99") };
      };
      p.ratio_to_quiet_before = ratio(report.phases.slice(0, k).reverse().find((q) => q.kind === "quiet"));
      p.ratio_to_quiet_after = ratio(report.phases.slice(k + 1).find((q) => q.kind === "quiet"));
      const r = p.ratio_to_quiet_before ?? p.ratio_to_quiet_after;
      p.within_2x = r ? r.p50 <= 2 && r.p99 <= 2 : null;
    });
    report.machine.loadavg_end = os.loadavg();
    report.honest_disconnects = users.filter((u) => u.disconnects.length).map((u) => ({ name: u.name, reasons: u.disconnects }));
    return report;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await cleanup();
  }
}

export function formatReport(r) {
  const L = [];
  const o = r.options;
  L.push(`flooder bench: ${o.gateways} gateways behind nginx, ${o.users} honest users x ${o.rate} msg/s in ${o.rooms} room(s), flooder ${o.flooderSockets} sockets x ${o.flooderInflight} in flight; ${o.seconds} s per phase; default limits (${r.gateway_args.join(" ")})`);
  if (r.defaults_mismatch.length) L.push(`  WARNING: ${r.defaults_mismatch.join("; ")}`);
  L.push(`  placement: ${Object.entries(r.placement).map(([g, p]) => `${g}: ${p.honest} honest, ${p.flooder_sockets} flooder`).join("; ")}`);
  L.push("");
  L.push("| phase | honest sent | refused | missing | p50 ms | p95 ms | p99 ms | max ms | ack p50/p99 ms | flooder accepted (bound) | acc/s | refused quota / socket limit | retryAfterMs min–max | CPU s gw / redis / nginx / bench / flooder | machine busy (others) cores |");
  L.push("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
  for (const p of r.phases) {
    const h = p.honest, l = h.latency_ms, F = p.flooder, c = p.cpu_seconds;
    L.push(`| ${p.name} | ${h.sent} | ${h.refused_total}${h.ack_timeouts ? ` (+${h.ack_timeouts} timeouts)` : ""} | ${h.deliveries_missing} | ${l.p50} | ${l.p95} | ${l.p99} | ${l.max} | ${h.ack_ms.p50}/${h.ack_ms.p99} | ` +
      (F ? `${F.accepted} (≤ ${F.accepted_bound}) | ${F.accepted_per_s} | ${F.refused_quota} / ${F.refused_socket_limit} | ${F.retry_after_ms_summary.min}–${F.retry_after_ms_summary.max} | ` : "– | – | – | – | ") +
      `${c.gateways.join("+")} / ${c.redis} / ${c.nginx} / ${c.bench} / ${c.flooder} | ${p.machine_cpu ? `${p.machine_cpu.busy_cores} (${p.machine_cpu.others_cores})` : "?"} |`);
  }
  L.push("");
  for (const p of r.phases.filter((x) => x.flooder)) {
    const F = p.flooder;
    L.push(`${p.name}: flooder sent ${F.sent} in ${F.flood_seconds.toFixed(1)} s (${F.attempts_per_s}/s); accepted ${F.accepted} = ${F.accepted_per_s}/s (${F.accepted_per_s_after_burst}/s after the burst of 30; quota ${F.quota}: at most ${F.accepted_bound}) -> ${F.held_to_quota ? "held" : "NOT HELD"}; delivered to an honest member ${F.delivered_at_observer}; per socket ${JSON.stringify(F.accepted_per_socket)}`);
    L.push(`  refused: quota ${F.refused_quota}, per-socket event limit ${F.refused_socket_limit}, in flight ${F.refused_inflight}, other ${JSON.stringify(F.refused_other)}; ack timeouts ${F.ack_timeouts}; sockets connected at the end ${F.connected_at_end}/${o.flooderSockets}, disconnects ${JSON.stringify(F.disconnects)}`);
    L.push(`  gateways: message:send ok ${p.cluster.message_send_ok}, rate_limited ${p.cluster.message_send_rate_limited} (of which quota ${p.cluster.quota_refusals_msg}); send_failed ${p.cluster.send_failed}, slow consumers ${p.cluster.slow_consumers}`);
    for (const q of [p.ratio_to_quiet_before, p.ratio_to_quiet_after].filter(Boolean)) {
      L.push(`  honest latency vs ${q.against}: p50 x${q.p50}, p95 x${q.p95}, p99 x${q.p99}`);
    }
    if (p.within_2x != null) L.push(`  target (p50 and p99 within 2x of the quiet run before): ${p.within_2x ? "met" : "MISSED"}`);
  }
  for (const p of r.phases) {
    const m = p.machine_cpu;
    L.push(`${p.name}: honest refusals ${JSON.stringify(p.honest.refused)}; bench event-loop delay p50/p99/max ${p.bench_event_loop_delay_ms.p50}/${p.bench_event_loop_delay_ms.p99}/${p.bench_event_loop_delay_ms.max} ms` +
      (m ? `; machine busy ${m.busy_cores} cores (this bench's processes ${m.this_bench_cores}, others ${m.others_cores}, of which softirq ${m.softirq_cores}, steal ${m.steal_cores})` : ""));
  }
  L.push(`load average at start ${r.machine.loadavg_start.map((x) => x.toFixed(2)).join(" ")}, at end ${r.machine.loadavg_end.map((x) => x.toFixed(2)).join(" ")}`);
  if (r.honest_disconnects.length) L.push(`honest disconnects: ${JSON.stringify(r.honest_disconnects)}`);
  return L.join("\n");
}

async function main() {
  const o = parseArgs(process.argv);
  checkOptions(o);
  // a hard cap on the whole run
  const capMs = (o.warmup + o.seconds * o.phases.length + o.drainSeconds + 180) * 1000;
  const cap = setTimeout(() => { console.error(`bench-flooder: hard time cap (${capMs / 1000} s) reached`); process.kill(process.pid, "SIGTERM"); }, capMs);
  cap.unref();
  const report = await runBench(o);
  if (o.json) writeFileSync(o.json, JSON.stringify(report, null, 2));
  console.log(formatReport(report));
}

if (process.argv[1] && path.resolve(process.argv[1]) === here) {
  if (process.argv[2] === "--role" && process.argv[3] === "flooder") flooderMain();
  else main().then(() => process.exit(0), (e) => { console.error(String(e?.stack ?? e)); process.exit(1); });
}
