#!/usr/bin/env node
// Bounded fan-out load generator for confab's HTTP long-polling transport, with the
// stock socket.io-client (the repository root's node_modules/).
//
//   node loadtest/polling.mjs --url http://127.0.0.1:PORT --clients 1000 --senders 10 \
//        --rate 100 --duration 10 --grace 5 [--server-pid PID] [--procs N] [--json]
//
// CLIENTS receivers connect with `transports: ["polling"]` (no upgrade) and unique
// names, all join one fresh room (bounded concurrency, overall connect timeout),
// then SENDERS more clients send RATE msg/s in total for DURATION s on an open-loop
// schedule (one timer loop, exactly round(RATE x DURATION) messages). Each text
// carries the sender index, its sequence number and the scheduled send time, so
// every receiver can count lost, duplicate and out-of-order deliveries and the
// latency from the scheduled send to receipt. After GRACE s the sockets are closed
// and the result printed (one JSON object with --json). Exit 0 when nothing was lost
// or duplicated and every client connected and every message was acked; else 1
// (2: bad arguments or a crash). Loopback URLs only; see loadtest/README.md.
import { fork, execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import { performance, monitorEventLoopDelay } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";

const HERE = fileURLToPath(import.meta.url);
const ROOT = path.resolve(path.dirname(HERE), "..");
const TAG = "plt"; // first word of every text this tool sends

function die(msg, code = 2) {
  process.stderr.write(`polling.mjs: ${msg}\n`);
  process.exit(code);
}

// The stock client from the repository root (loadtest/node_modules may hold another copy).
let io;
try {
  ({ io } = createRequire(path.join(ROOT, "package.json"))("socket.io-client"));
} catch (e) {
  die(`socket.io-client not found in ${ROOT}/node_modules (run \`npm ci\` there): ${e.message}`);
}

const nowMs = () => performance.timeOrigin + performance.now(); // wall clock, sub-ms, monotonic within a run
const sleep = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms)));
const round = (x, d = 2) => (x == null || !Number.isFinite(x) ? x : Math.round(x * 10 ** d) / 10 ** d);

// ---------------------------------------------------------------- arguments

const USAGE = `usage: node loadtest/polling.mjs --url http://127.0.0.1:PORT [options]
  --clients N            receiving polling clients (default 1000)
  --senders N            sending clients (default 10), not counted as receivers
  --rate R               messages per second, all senders together (default 100)
  --duration S           send phase, seconds (default 10); round(R*S) messages in all
  --grace S              wait after the last scheduled send (default 5)
  --drain S              then keep waiting up to S more seconds while deliveries are still
                         arriving and some are missing (default 0: report right after grace)
  --sender-transport T   polling (default) or websocket
  --procs N              receivers spread over N child processes (default 1: one process)
  --agent A              keepalive (default: one shared http.Agent, keep-alive, no socket
                         limit) or per-request (a new TCP connection per HTTP request,
                         what xmlhttprequest-ssl does without an agent)
  --connect-concurrency N  connects + joins in flight at once, all processes (default 50)
  --connect-timeout S    whole connect + join phase (default 60)
  --ack-timeout S        per emit (default 10)
  --room NAME            room (default poll-<random>)
  --server-pid PID       report the server's CPU and RSS from /proc/PID
  --json                 print one JSON object instead of the text summary`;

function parseArgs(argv) {
  const o = {
    url: null, clients: 1000, senders: 10, rate: 100, duration: 10, grace: 5, drain: 0,
    senderTransport: "polling", procs: 1, agent: "keepalive", connectConcurrency: 50,
    connectTimeout: 60, ackTimeout: 10, room: null, serverPid: null, json: false, child: false,
  };
  const num = (name, v, min, max, int = true) => {
    const n = Number(v);
    if (v === undefined || !Number.isFinite(n) || n < min || n > max || (int && !Number.isInteger(n)))
      die(`--${name} must be ${int ? "an integer" : "a number"} in ${min}..${max}\n${USAGE}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    const take = () => { i++; return v; };
    switch (a) {
      case "--url": o.url = take(); break;
      case "--clients": o.clients = num("clients", take(), 1, 20000); break;
      case "--senders": o.senders = num("senders", take(), 1, 1000); break;
      case "--rate": o.rate = num("rate", take(), 0.1, 20000, false); break;
      case "--duration": o.duration = num("duration", take(), 0.1, 600, false); break;
      case "--grace": o.grace = num("grace", take(), 0, 120, false); break;
      case "--drain": o.drain = num("drain", take(), 0, 300, false); break;
      case "--sender-transport": o.senderTransport = take(); break;
      case "--procs": o.procs = num("procs", take(), 1, 16); break;
      case "--agent": o.agent = take(); break;
      case "--connect-concurrency": o.connectConcurrency = num("connect-concurrency", take(), 1, 1000); break;
      case "--connect-timeout": o.connectTimeout = num("connect-timeout", take(), 1, 600, false); break;
      case "--ack-timeout": o.ackTimeout = num("ack-timeout", take(), 0.1, 120, false); break;
      case "--room": o.room = take(); break;
      case "--server-pid": o.serverPid = num("server-pid", take(), 1, 2 ** 22); break;
      case "--json": o.json = true; break;
      case "--child": o.child = true; break;
      case "-h": case "--help": process.stdout.write(USAGE + "\n"); process.exit(0);
      default: die(`unknown argument ${a}\n${USAGE}`);
    }
  }
  if (o.child) return o;
  if (!o.url) die(`--url is required\n${USAGE}`);
  let u;
  try { u = new URL(o.url); } catch { die(`--url ${o.url} is not a URL`); }
  const h = u.hostname;
  if (u.protocol !== "http:" || !(h === "localhost" || h === "[::1]" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h)))
    die(`refusing ${o.url}: only http:// loopback targets (127.0.0.0/8, localhost, [::1])`);
  o.url = u.origin;
  if (!["polling", "websocket"].includes(o.senderTransport)) die("--sender-transport must be polling or websocket");
  if (!["keepalive", "per-request"].includes(o.agent)) die("--agent must be keepalive or per-request");
  if (o.procs > o.clients) die("--procs must not exceed --clients");
  o.total = Math.round(o.rate * o.duration);
  if (o.total < 1 || o.total > 200000) die(`rate x duration = ${o.total} messages; must be 1..200000`);
  o.runId = crypto.randomBytes(4).toString("hex");
  o.room ??= `poll-${o.runId}`;
  if (!/^[a-z0-9][a-z0-9_-]{0,63}$/.test(o.room)) die("--room must match ^[a-z0-9][a-z0-9_-]{0,63}$");
  return o;
}

// ---------------------------------------------------------------- histogram (ms)
// 0.01 ms buckets below 100 ms, 0.1 ms below 10 s, 1 ms up to ~120 s (then clamped).

const H_FINE = 10000, H_MID = 99000, H_COARSE = 110000, H_SIZE = H_FINE + H_MID + H_COARSE;
const bucketOf = (ms) =>
  ms < 100 ? Math.floor(ms * 100)
    : ms < 10000 ? H_FINE + Math.floor((ms - 100) * 10)
      : Math.min(H_FINE + H_MID + Math.floor(ms - 10000), H_SIZE - 1);
const bucketMid = (i) =>
  i < H_FINE ? (i + 0.5) / 100 : i < H_FINE + H_MID ? 100 + (i - H_FINE + 0.5) / 10 : 10000 + (i - H_FINE - H_MID + 0.5);

class Hist {
  constructor() { this.b = new Uint32Array(H_SIZE); this.n = 0; this.max = 0; this.sum = 0; this.negative = 0; }
  add(ms) {
    if (ms < 0) { this.negative++; ms = 0; }
    this.b[bucketOf(ms)]++; this.n++; this.sum += ms;
    if (ms > this.max) this.max = ms;
  }
  toJSON() {
    const sparse = [];
    for (let i = 0; i < H_SIZE; i++) if (this.b[i]) sparse.push([i, this.b[i]]);
    return { n: this.n, max: this.max, sum: this.sum, negative: this.negative, sparse };
  }
  merge(j) {
    for (const [i, c] of j.sparse) this.b[i] += c;
    this.n += j.n; this.sum += j.sum; this.negative += j.negative;
    if (j.max > this.max) this.max = j.max;
  }
  pct(p) {
    if (!this.n) return null;
    const rank = Math.max(1, Math.ceil((p / 100) * this.n));
    let acc = 0;
    for (let i = 0; i < H_SIZE; i++) { acc += this.b[i]; if (acc >= rank) return Math.min(bucketMid(i), this.max); }
    return this.max;
  }
  summary() {
    return { samples: this.n, p50: round(this.pct(50)), p90: round(this.pct(90)), p99: round(this.pct(99)),
      max: round(this.max), mean: this.n ? round(this.sum / this.n) : null, negative: this.negative };
  }
}

// ---------------------------------------------------------------- processes and HTTP agent

function procSnapshot(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // f[0] is field 3 (state)
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (k) => Number((status.match(new RegExp(`^${k}:\\s+(\\d+) kB`, "m")) || [])[1] ?? NaN);
    return { t: nowMs(), cpuS: (Number(f[11]) + Number(f[12])) / CLK_TCK, rssMb: kb("VmRSS") / 1024, hwmMb: kb("VmHWM") / 1024 };
  } catch {
    return null;
  }
}
let CLK_TCK = 100;
try { CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"], { timeout: 2000 }).toString().trim()) || 100; } catch { /* 100 */ }

// Busy and total jiffies of the whole machine (all cores), from /proc/stat.
function machineJiffies() {
  try {
    const f = fs.readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
    return { busy: total - f[3] - f[4], total };
  } catch {
    return null;
  }
}

function selfCpuS() { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; }

// socket.io-client's polling transport in Node uses xmlhttprequest-ssl, which passes
// `agent: opts.agent || false` to http.request: without an `agent` option every poll
// and every POST opens (and closes) its own TCP connection, unlimited. We pass our own
// agent either way, so connections are counted; keepalive reuses them (no per-host limit).
function makeAgent(kind) {
  const agent = kind === "keepalive"
    ? new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 100000, maxTotalSockets: Infinity })
    : new http.Agent({ keepAlive: false, maxSockets: Infinity });
  const stats = { opened: 0, peakOpen: 0 };
  const create = agent.createConnection.bind(agent);
  agent.createConnection = (...args) => { stats.opened++; return create(...args); };
  const count = (m) => Object.values(m).reduce((a, l) => a + l.length, 0);
  const sample = () => { const n = count(agent.sockets) + count(agent.freeSockets); if (n > stats.peakOpen) stats.peakOpen = n; };
  const timer = setInterval(sample, 200);
  timer.unref();
  const destroy = () => { clearInterval(timer); agent.destroy(); };
  return { agent, stats, destroy };
}

// Runs fn(i) for i in 0..n-1, at most `concurrency` at once, starting none after deadline.
async function pool(n, concurrency, deadline, fn) {
  let next = 0;
  const worker = async () => { while (next < n && nowMs() < deadline) await fn(next++); };
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
}

function errCode(e) {
  if (!e) return "unknown";
  if (e.message === "operation has timed out") return "timeout";
  return String(e.message || e).split(":")[0].slice(0, 60) || "error";
}

// Connects one client and joins the room; resolves to the socket or throws (socket closed).
async function connectAndJoin({ url, name, room, transport, agent, timeoutMs, ackTimeoutMs, onSocket }) {
  const socket = io(url, {
    transports: [transport], upgrade: false, reconnection: false, forceNew: true,
    auth: { name }, agent, timeout: timeoutMs,
  });
  onSocket?.(socket);
  try {
    await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("connect timeout")), timeoutMs);
      socket.once("connect", () => { clearTimeout(t); resolve(); });
      socket.once("connect_error", (e) => { clearTimeout(t); reject(e); });
    });
    const ack = await socket.timeout(ackTimeoutMs).emitWithAck("room:join", { room });
    if (!ack?.ok) throw new Error(`join: ${ack?.error?.code ?? "malformed ack"}`);
    return socket;
  } catch (e) {
    socket.close();
    throw e;
  }
}

// ---------------------------------------------------------------- receivers (any process)

class Receivers {
  constructor(cfg) {
    Object.assign(this, cfg); // url, room, names, agentKind, concurrency, connectTimeoutMs, ackTimeoutMs, total, senders
    this.http = makeAgent(this.agentKind);
    this.list = []; // {socket, seen, lastSeq, lastIdMs, lastIdSeq}
    this.counts = new Uint32Array(this.total); // distinct receivers per message index
    this.hist = new Hist();
    this.received = 0; this.duplicates = 0; this.outOfOrder = 0; this.idOutOfOrder = 0; this.foreign = 0;
    this.disconnects = {}; this.connectErrors = {}; this.closing = false;
  }

  onMessage(r, m) {
    if (!m || m.room !== this.room || typeof m.text !== "string") { this.foreign++; return; }
    const p = m.text.split(" ");
    const sender = Number(p[1]), seq = Number(p[2]), sched = Number(p[3]);
    const k = seq * this.senders + sender;
    if (p[0] !== TAG || !Number.isInteger(k) || sender >= this.senders || k < 0 || k >= this.total) { this.foreign++; return; }
    const now = nowMs();
    const byte = k >> 3, bit = 1 << (k & 7);
    if (r.seen[byte] & bit) { this.duplicates++; return; }
    r.seen[byte] |= bit;
    this.counts[k]++; this.received++;
    if (seq < r.lastSeq[sender]) this.outOfOrder++; else r.lastSeq[sender] = seq;
    const dash = typeof m.id === "string" ? m.id.indexOf("-") : -1;
    const idMs = Number(m.id?.slice(0, dash)), idSeq = Number(m.id?.slice(dash + 1));
    if (idMs < r.lastIdMs || (idMs === r.lastIdMs && idSeq <= r.lastIdSeq)) this.idOutOfOrder++;
    else { r.lastIdMs = idMs; r.lastIdSeq = idSeq; }
    this.hist.add(now - sched);
  }

  async connect() {
    const start = nowMs();
    const deadline = start + this.connectTimeoutMs;
    await pool(this.names.length, this.concurrency, deadline, async (i) => {
      const r = { seen: new Uint8Array((this.total + 7) >> 3), lastSeq: new Int32Array(this.senders).fill(-1), lastIdMs: -1, lastIdSeq: -1 };
      try {
        r.socket = await connectAndJoin({
          url: this.url, name: this.names[i], room: this.room, transport: "polling", agent: this.http.agent,
          timeoutMs: Math.max(1, Math.min(20000, deadline - nowMs())), ackTimeoutMs: this.ackTimeoutMs,
          onSocket: (s) => s.on("message:new", (m) => this.onMessage(r, m)),
        });
        r.socket.on("disconnect", (reason) => { if (!this.closing) this.disconnects[reason] = (this.disconnects[reason] ?? 0) + 1; });
        this.list.push(r);
      } catch (e) {
        const c = errCode(e);
        this.connectErrors[c] = (this.connectErrors[c] ?? 0) + 1;
      }
    });
    this.connectMs = nowMs() - start;
    return { requested: this.names.length, connected: this.list.length, errors: this.connectErrors, ms: this.connectMs };
  }

  result() {
    return {
      receivers: this.list.length, received: this.received, duplicates: this.duplicates, outOfOrder: this.outOfOrder,
      idOutOfOrder: this.idOutOfOrder, foreign: this.foreign, disconnects: this.disconnects,
      counts: Array.from(this.counts), hist: this.hist.toJSON(),
      http: { opened: this.http.stats.opened, peakOpen: this.http.stats.peakOpen },
    };
  }

  async close() {
    this.closing = true;
    for (const r of this.list) r.socket.disconnect();
    await sleep(300); // let the close packets go out, then drop the pooled connections
    this.http.destroy();
  }
}

// CPU and event-loop delay of this process during the send phase [t0, t0 + duration].
class PhaseMeter {
  constructor(t0, durationMs) {
    this.h = monitorEventLoopDelay({ resolution: 1 });
    this.done = new Promise((resolve) => {
      setTimeout(() => {
        this.cpu0 = selfCpuS(); this.w0 = nowMs(); this.m0 = machineJiffies(); this.h.enable();
        setTimeout(() => {
          this.h.disable();
          this.cpuPct = (100 * (selfCpuS() - this.cpu0)) / ((nowMs() - this.w0) / 1000);
          const m1 = machineJiffies();
          if (this.m0 && m1) this.machineBusyPct = (100 * (m1.busy - this.m0.busy)) / Math.max(1, m1.total - this.m0.total);
          resolve();
        }, durationMs);
      }, t0 - nowMs());
    });
  }
  result(role, extra) {
    return {
      role, pid: process.pid, ...extra,
      cpuSendPhasePct: round(this.cpuPct, 1), cpuTotalS: round(selfCpuS(), 2),
      eventLoopDelayP99Ms: round(this.h.percentile(99) / 1e6, 1), eventLoopDelayMaxMs: round(this.h.max / 1e6, 1),
      eventLoopDelayMeanMs: round(this.h.mean / 1e6, 1), eventLoopDelaySamples: this.h.count,
      rssMb: round(process.memoryUsage().rss / 1048576, 1),
    };
  }
}

// ---------------------------------------------------------------- child process

function childMain() {
  let recv = null, meter = null;
  const life = setTimeout(() => { process.stderr.write("polling.mjs child: lifetime exceeded\n"); process.exit(4); }, 30 * 60 * 1000);
  life.unref();
  process.on("disconnect", () => process.exit(3)); // parent gone
  process.on("message", async (msg) => {
    try {
      if (msg.type === "config") {
        clearTimeout(life);
        setTimeout(() => { process.stderr.write("polling.mjs child: lifetime exceeded\n"); process.exit(4); }, msg.maxLifeMs).unref();
        recv = new Receivers(msg.cfg);
        const c = await recv.connect();
        process.send({ type: "ready", connect: c });
      } else if (msg.type === "progress") {
        process.send({ type: "progress", received: recv.received });
      } else if (msg.type === "clock") {
        process.send({ type: "clock", t: msg.t, child: nowMs() });
      } else if (msg.type === "start") {
        meter = new PhaseMeter(msg.t0, msg.durationMs);
      } else if (msg.type === "finish") {
        if (meter) await meter.done;
        const res = recv.result();
        res.proc = (meter ?? new PhaseMeter(nowMs(), 0)).result("receivers", { clients: recv.list.length, http: res.http });
        process.send({ type: "result", result: res }, async () => {
          await recv.close();
          process.exit(0);
        });
      }
    } catch (e) {
      process.stderr.write(`polling.mjs child: ${e.stack || e}\n`);
      process.exit(2);
    }
  });
}

// One child: a promise per message type, all bounded by timeouts.
function spawnChild() {
  const cp = fork(HERE, ["--child"], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const waiters = {};
  const exited = new Promise((r) => cp.once("exit", (code, sig) => r(code ?? sig)));
  cp.on("message", (m) => { waiters[m.type]?.(m); delete waiters[m.type]; });
  cp.on("error", () => {});
  const expect = (type, timeoutMs) => new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`child ${cp.pid}: no ${type} within ${timeoutMs} ms`)), timeoutMs);
    waiters[type] = (m) => { clearTimeout(t); resolve(m); };
    exited.then((c) => { clearTimeout(t); reject(new Error(`child ${cp.pid} exited (${c}) before ${type}`)); });
  });
  return { cp, exited, expect, send: (m) => { try { cp.send(m); } catch { /* exited */ } } };
}

// ---------------------------------------------------------------- main (parent)

async function main() {
  const o = parseArgs(process.argv.slice(2));
  if (o.child) return childMain();

  process.on("unhandledRejection", (e) => die(`unhandled: ${e?.stack || e}`));
  const durationMs = o.duration * 1000, graceMs = o.grace * 1000, ackTimeoutMs = o.ackTimeout * 1000;
  const connectTimeoutMs = o.connectTimeout * 1000;
  const names = Array.from({ length: o.clients }, (_, i) => `pl${o.runId}-r${i}`);
  const recvCfg = (share, conc) => ({
    url: o.url, room: o.room, names: share, agentKind: o.agent, concurrency: conc,
    connectTimeoutMs, ackTimeoutMs, total: o.total, senders: o.senders,
  });
  const log = (s) => { if (!o.json) process.stderr.write(`${s}\n`); };
  log(`polling loadtest ${o.runId}: ${o.clients} polling clients (${o.procs} proc${o.procs > 1 ? "s" : ""}, ${o.agent} agent), ` +
    `${o.senders} ${o.senderTransport} senders, ${o.rate} msg/s for ${o.duration} s (${o.total} messages), room ${o.room}, ${o.url}`);

  const srv0 = o.serverPid ? procSnapshot(o.serverPid) : null;
  if (o.serverPid && !srv0) die(`cannot read /proc/${o.serverPid}/stat`);

  // Receivers: here (--procs 1) or in child processes, each with a share of the names.
  let local = null;
  const children = [];
  const tConnect = nowMs();
  let recvConnect;
  if (o.procs === 1) {
    local = new Receivers(recvCfg(names, o.connectConcurrency));
    const c = await local.connect();
    recvConnect = { ...c, requested: o.clients };
  } else {
    const conc = Math.max(1, Math.ceil(o.connectConcurrency / o.procs));
    const maxLifeMs = connectTimeoutMs + 2 * durationMs + graceMs + o.drain * 1000 + ackTimeoutMs + 120000;
    for (let p = 0; p < o.procs; p++) {
      const share = names.filter((_, i) => i % o.procs === p);
      const ch = spawnChild();
      children.push(ch);
      ch.ready = ch.expect("ready", connectTimeoutMs + 15000);
      ch.send({ type: "config", cfg: recvCfg(share, conc), maxLifeMs });
    }
    const readies = await Promise.allSettled(children.map((c) => c.ready));
    recvConnect = { requested: o.clients, connected: 0, errors: {}, ms: nowMs() - tConnect };
    for (const r of readies) {
      if (r.status === "rejected") { recvConnect.errors[r.reason.message] = 1; continue; }
      recvConnect.connected += r.value.connect.connected;
      for (const [k, v] of Object.entries(r.value.connect.errors)) recvConnect.errors[k] = (recvConnect.errors[k] ?? 0) + v;
    }
  }
  const connectJoinMs = nowMs() - tConnect;
  log(`connect+join: ${recvConnect.connected}/${o.clients} receivers in ${(connectJoinMs / 1000).toFixed(2)} s` +
    (Object.keys(recvConnect.errors).length ? `, errors ${JSON.stringify(recvConnect.errors)}` : ""));

  // Clock offsets of the children (latency = receiver clock - sender clock).
  let clockSkewMaxMs = 0;
  for (const ch of children) {
    const m = ch.expect("clock", 5000).catch(() => null);
    ch.send({ type: "clock", t: nowMs() });
    const r = await m;
    if (r) {
      const now = nowMs();
      clockSkewMaxMs = Math.max(clockSkewMaxMs, Math.abs(r.child - (r.t + now) / 2) + (now - r.t) / 2);
    }
  }

  // Senders (this process).
  const sendHttp = makeAgent(o.agent);
  const senders = [];
  const sendConnect = { connected: 0, errors: {} };
  const tSend = nowMs();
  let sendersClosing = false;
  const senderDisconnects = {};
  await pool(o.senders, o.connectConcurrency, tSend + connectTimeoutMs, async (i) => {
    try {
      const s = await connectAndJoin({
        url: o.url, name: `pl${o.runId}-s${i}`, room: o.room, transport: o.senderTransport, agent: sendHttp.agent,
        timeoutMs: 20000, ackTimeoutMs,
      });
      s.on("disconnect", (reason) => { if (!sendersClosing) senderDisconnects[reason] = (senderDisconnects[reason] ?? 0) + 1; });
      senders[i] = s; sendConnect.connected++;
    } catch (e) {
      const c = errCode(e); sendConnect.errors[c] = (sendConnect.errors[c] ?? 0) + 1;
    }
  });
  sendConnect.ms = nowMs() - tSend;
  const srv1 = o.serverPid ? procSnapshot(o.serverPid) : null;

  // Send phase: one timer loop; message k is due at t0 + k/rate, from sender k % S with seq floor(k / S).
  const acked = new Uint8Array(o.total);
  const send = { scheduled: o.total, sent: 0, acked: 0, ackErrors: {}, ackTimeouts: 0, pending: 0, lagSum: 0, lagMax: 0 };
  const ackHist = new Hist();
  const canRun = sendConnect.connected === o.senders && recvConnect.connected > 0;
  const t0 = nowMs() + 300 + 50 * children.length;
  const meter = new PhaseMeter(t0, durationMs);
  for (const ch of children) ch.send({ type: "start", t0, durationMs });
  let lastSendAt = t0;
  let drainedS = 0;
  if (canRun) {
    const interval = 1000 / o.rate;
    const hardStop = t0 + durationMs + Math.max(5000, durationMs); // give up sending (not waiting) after this
    await new Promise((resolve) => {
      let k = 0;
      const tick = () => {
        const now = nowMs();
        while (k < o.total && t0 + k * interval <= nowMs()) {
          const sched = t0 + k * interval;
          const sender = k % o.senders, seq = Math.floor(k / o.senders), idx = k;
          const at = nowMs();
          send.lagSum += at - sched; if (at - sched > send.lagMax) send.lagMax = at - sched;
          send.sent++; send.pending++;
          senders[sender].timeout(ackTimeoutMs).emit("message:send",
            { room: o.room, text: `${TAG} ${sender} ${seq} ${sched.toFixed(3)}`, clientId: `${o.runId}.${idx}` },
            (err, ack) => {
              send.pending--;
              if (err) send.ackTimeouts++;
              else if (ack?.ok) { acked[idx] = 1; send.acked++; ackHist.add(nowMs() - at); }
              else { const c = ack?.error?.code ?? "malformed"; send.ackErrors[c] = (send.ackErrors[c] ?? 0) + 1; }
            });
          k++;
        }
        lastSendAt = nowMs();
        if (k >= o.total || now > hardStop) return resolve();
        setTimeout(tick, Math.max(0, t0 + k * interval - nowMs()));
      };
      setTimeout(tick, Math.max(0, t0 - nowMs()));
    });
    log(`sent ${send.sent}/${o.total}; waiting ${o.grace} s grace`);
    // Grace after the last scheduled send (or the last actual one, if the pacer fell behind),
    // then until every ack has come or timed out (each emit has its own ack timer).
    await sleep(Math.max(t0 + durationMs, lastSendAt) + graceMs - nowMs());
    const ackDeadline = nowMs() + ackTimeoutMs + 1000;
    while (send.pending > 0 && nowMs() < ackDeadline) await sleep(50);
    // --drain: while receivers still get messages and miss some, wait on (bounded).
    if (o.drain > 0) {
      const drainStart = nowMs();
      const want = send.sent * recvConnect.connected;
      const progress = async () => {
        if (local) return local.received;
        const got = await Promise.all(children.map((ch) => {
          const p = ch.expect("progress", 5000).then((m) => m.received, () => 0);
          ch.send({ type: "progress" });
          return p;
        }));
        return got.reduce((a, b) => a + b, 0);
      };
      let last = await progress();
      while (last < want && nowMs() - drainStart < o.drain * 1000) {
        await sleep(1000);
        const now = await progress();
        if (now === last) break;
        last = now;
      }
      drainedS = (nowMs() - drainStart) / 1000;
      log(`drain: waited ${drainedS.toFixed(1)} s more (${last}/${want} received)`);
    }
  } else {
    log("not starting the send phase: senders or receivers missing");
  }
  await meter.done.catch(() => {});
  const srv2 = o.serverPid ? procSnapshot(o.serverPid) : null;

  // Results of every receiver group.
  const results = [];
  const procs = [];
  if (local) {
    const r = local.result();
    results.push(r);
    procs.push(meter.result("senders+receivers", { clients: local.list.length + sendConnect.connected, http: mergeHttp(r.http, sendHttp.stats) }));
  } else {
    procs.push(meter.result("senders", { clients: sendConnect.connected, http: { opened: sendHttp.stats.opened, peakOpen: sendHttp.stats.peakOpen } }));
    const got = await Promise.allSettled(children.map((ch) => { const p = ch.expect("result", 30000); ch.send({ type: "finish" }); return p; }));
    for (const g of got) {
      if (g.status === "fulfilled") { results.push(g.value.result); procs.push(g.value.result.proc); }
      else recvConnect.errors[g.reason.message] = 1;
    }
  }

  // Close everything.
  sendersClosing = true;
  for (const s of senders) s?.disconnect();
  if (local) await local.close(); else await sleep(300);
  sendHttp.destroy();
  await Promise.race([Promise.all(children.map((c) => c.exited)), sleep(10000)]);
  for (const ch of children) if (ch.cp.exitCode === null && ch.cp.signalCode === null) ch.cp.kill("SIGKILL");

  // Aggregate.
  const hist = new Hist();
  const counts = new Float64Array(o.total);
  const agg = { receivers: 0, received: 0, duplicates: 0, outOfOrder: 0, idOutOfOrder: 0, foreign: 0, disconnects: {} };
  for (const r of results) {
    hist.merge(r.hist);
    for (let k = 0; k < o.total; k++) counts[k] += r.counts[k];
    for (const f of ["receivers", "received", "duplicates", "outOfOrder", "idOutOfOrder", "foreign"]) agg[f] += r[f];
    for (const [k, v] of Object.entries(r.disconnects)) agg.disconnects[k] = (agg.disconnects[k] ?? 0) + v;
  }
  let receivedAcked = 0, receivedUnacked = 0;
  for (let k = 0; k < o.total; k++) (acked[k] ? (receivedAcked += counts[k]) : (receivedUnacked += counts[k]));
  const expected = send.acked * agg.receivers;
  const lost = expected - receivedAcked;
  const disconnectsTotal = Object.values(agg.disconnects).reduce((a, b) => a + b, 0);
  const saturated = procs.some((p) => p.cpuSendPhasePct >= 90 || p.eventLoopDelayP99Ms >= 100);

  const server = srv0 && srv1 && srv2 ? {
    pid: o.serverPid,
    cpuConnectS: round(srv1.cpuS - srv0.cpuS), cpuSendGraceS: round(srv2.cpuS - srv1.cpuS), cpuTotalS: round(srv2.cpuS - srv0.cpuS),
    cpuSendGracePct: round((100 * (srv2.cpuS - srv1.cpuS)) / ((srv2.t - srv1.t) / 1000), 1),
    rssMb: { start: round(srv0.rssMb, 1), afterJoin: round(srv1.rssMb, 1), end: round(srv2.rssMb, 1) }, peakRssMb: round(srv2.hwmMb, 1),
  } : o.serverPid ? { pid: o.serverPid, error: "process gone" } : null;

  const ok = lost === 0 && agg.duplicates === 0 && recvConnect.connected === o.clients && send.acked === o.total;
  const out = {
    tool: "confab loadtest/polling.mjs", runId: o.runId, ok,
    config: { url: o.url, room: o.room, clients: o.clients, senders: o.senders, senderTransport: o.senderTransport,
      rate: o.rate, duration: o.duration, grace: o.grace, drain: o.drain, procs: o.procs, agent: o.agent,
      connectConcurrency: o.connectConcurrency, connectTimeout: o.connectTimeout, ackTimeout: o.ackTimeout },
    connect: { clientsRequested: o.clients, clientsConnected: recvConnect.connected, connectJoinS: round(connectJoinMs / 1000, 3),
      errors: recvConnect.errors, senders: { connected: sendConnect.connected, ms: round(sendConnect.ms, 1), errors: sendConnect.errors } },
    messages: { scheduled: o.total, sent: send.sent, acked: send.acked, ackErrors: send.ackErrors, ackTimeouts: send.ackTimeouts,
      pacerLagMeanMs: send.sent ? round(send.lagSum / send.sent) : null, pacerLagMaxMs: round(send.lagMax), ackMs: ackHist.summary() },
    deliveries: { receivers: agg.receivers, expected, received: receivedAcked, lost, duplicates: agg.duplicates,
      outOfOrder: agg.outOfOrder, idOutOfOrder: agg.idOutOfOrder, receivedOfUnacked: receivedUnacked, foreign: agg.foreign,
      perSecond: round(receivedAcked / o.duration, 0), drainedS: round(drainedS, 1) },
    latencyMs: { from: "scheduled send", ...hist.summary(), clockSkewMaxMs: round(clockSkewMaxMs, 3) },
    disconnects: { total: disconnectsTotal, reasons: agg.disconnects, senders: senderDisconnects },
    loadgen: { procs, saturated },
    machine: { cores: os.availableParallelism(), busyPctSendPhase: round(meter.machineBusyPct, 1), loadavg: os.loadavg().map((x) => round(x)) },
    server,
  };

  const text = o.json ? JSON.stringify(out, null, 2) : humanSummary(out);
  process.stdout.write(text + "\n", () => process.exit(ok ? 0 : 1));
}

function mergeHttp(a, b) { return { opened: a.opened + b.opened, peakOpen: a.peakOpen + b.peakOpen }; }

function humanSummary(r) {
  const L = r.latencyMs, m = r.messages, d = r.deliveries, c = r.connect;
  const lines = [
    `connect+join: ${c.clientsConnected}/${c.clientsRequested} clients in ${c.connectJoinS} s` +
      (Object.keys(c.errors).length ? ` (errors ${JSON.stringify(c.errors)})` : ""),
    `messages: ${m.scheduled} scheduled, ${m.sent} sent, ${m.acked} acked` +
      (m.ackTimeouts ? `, ${m.ackTimeouts} ack timeouts` : "") +
      (Object.keys(m.ackErrors).length ? `, ack errors ${JSON.stringify(m.ackErrors)}` : "") +
      `; ack p50 ${m.ackMs.p50} ms, p99 ${m.ackMs.p99} ms; pacer lag mean ${m.pacerLagMeanMs} ms, max ${m.pacerLagMaxMs} ms`,
    `deliveries: ${d.expected} expected, ${d.received} received (${d.perSecond}/s), ${d.lost} lost, ${d.duplicates} duplicates, ` +
      `${d.outOfOrder} out of order (${d.idOutOfOrder} by id)` + (d.drainedS ? `; drained ${d.drainedS} s after grace` : ""),
    `latency from scheduled send (ms): p50 ${L.p50}, p90 ${L.p90}, p99 ${L.p99}, max ${L.max}` +
      (L.negative ? ` (${L.negative} negative: clock skew)` : ""),
    `disconnects during run: ${r.disconnects.total}${r.disconnects.total ? " " + JSON.stringify(r.disconnects.reasons) : ""}`,
    ...r.loadgen.procs.map((p) => `loadgen pid ${p.pid} (${p.role}, ${p.clients} clients): CPU ${p.cpuSendPhasePct}% of a core during sends, ` +
      `${p.cpuTotalS} s total; event-loop delay p99 ${p.eventLoopDelayP99Ms} ms, max ${p.eventLoopDelayMaxMs} ms; RSS ${p.rssMb} MB; ` +
      `HTTP connections opened ${p.http.opened}, peak open ${p.http.peakOpen}`),
    `machine: ${r.machine.cores} cores, ${r.machine.busyPctSendPhase}% busy (all processes) during sends; load average ${r.machine.loadavg.join(" ")}`,
    ...(r.loadgen.saturated ? ["loadgen SATURATED (a process >= 90% of a core, or its event loop delayed >= 100 ms at p99 = short of CPU): " +
      "latency and lag measure the clients, not only the server; more --procs helps only with idle cores"] : []),
    r.server ? (r.server.error ? `server pid ${r.server.pid}: ${r.server.error}` :
      `server pid ${r.server.pid}: CPU ${r.server.cpuConnectS} s connect, ${r.server.cpuSendGraceS} s send+grace (${r.server.cpuSendGracePct}%), ` +
      `${r.server.cpuTotalS} s total; RSS ${r.server.rssMb.start} -> ${r.server.rssMb.afterJoin} -> ${r.server.rssMb.end} MB (peak ${r.server.peakRssMb})`) : null,
    `result: ${r.ok ? "OK" : "FAIL"}`,
  ];
  return lines.filter((l) => l !== null).join("\n");
}

main().catch((e) => die(e?.stack || String(e)));
