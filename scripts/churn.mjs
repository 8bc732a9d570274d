#!/usr/bin/env node
// Connection churn against one confab gateway (issue 13): CLIENTS concurrent client
// loops, each cycle = a NEW connection (`auth: {name}`, one stable name per client
// loop), `room:join` of a fresh room, one `message:send` of TEXT_BYTES bytes,
// `room:leave`, disconnect; over and over for SECONDS. Meant for the server's
// default limits (quotas on): a `rate_limited` ack is retried after its
// `retryAfterMs` (capped, at most MAX_RETRIES times); a refused handshake
// (`connect_error`, no retryAfterMs) backs off 250 ms doubling to 2 s.
// First a warm-up: ONE client cycles for --warmup-seconds (5), so that what the
// gateway sets up once, on first use (its Redis connection pool, script loads,
// buffers), is in place: the RSS after it is the "start" the end is compared with
// (the cold RSS, before any client, is reported too). Then the churn.
// Samples Redis `used_memory` (redis-cli INFO memory) at start, every 30 s and at
// the end, and the gateway's VmRSS (/proc/PID/status) every second (start, peak,
// end of churn, 15 s after every client left). Prints a JSON summary, then a human one.
//   node scripts/churn.mjs --url http://127.0.0.1:PORT --server-pid PID --redis-port P \
//     [--seconds 180] [--clients 50] [--text-bytes 200] [--settle-seconds 15] \
//     [--warmup-seconds 5] [--names per-client|per-cycle]
// Loopback only. Every loop is bounded in count and time.
import { io } from "socket.io-client";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

function parseArgs(argv) {
  const o = {
    url: "", serverPid: 0, redisPort: 0, seconds: 180, clients: 50, textBytes: 200,
    settleSeconds: 15, sampleSeconds: 30, warmupSeconds: 5, names: "per-client", maxCycles: 1_000_000,
    maxRetries: 5, maxRetryWaitMs: 5000, ackTimeoutMs: 5000, connectTimeoutMs: 5000,
  };
  const num = (k, v) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${k} needs a number >= 0, got ${v}`);
    return n;
  };
  for (let i = 2; i < argv.length; i++) {
    const k = argv[i].replace(/^--/, "");
    const v = argv[++i];
    if (v === undefined) throw new Error(`--${k} needs a value`);
    switch (k) {
      case "url": o.url = v; break;
      case "server-pid": o.serverPid = num(k, v); break;
      case "redis-port": o.redisPort = num(k, v); break;
      case "seconds": o.seconds = num(k, v); break;
      case "clients": o.clients = num(k, v); break;
      case "text-bytes": o.textBytes = num(k, v); break;
      case "settle-seconds": o.settleSeconds = num(k, v); break;
      case "warmup-seconds": o.warmupSeconds = num(k, v); break;
      case "sample-seconds": o.sampleSeconds = num(k, v); break;
      case "max-cycles": o.maxCycles = num(k, v); break;
      case "max-retries": o.maxRetries = num(k, v); break;
      case "names":
        if (v !== "per-client" && v !== "per-cycle") throw new Error("--names: per-client or per-cycle");
        o.names = v; break;
      default: throw new Error(`unknown option --${k}`);
    }
  }
  if (!o.url) throw new Error("--url is required");
  const host = new URL(o.url).hostname.replace(/^\[|\]$/g, "");
  if (!["127.0.0.1", "localhost", "::1"].includes(host)) {
    throw new Error(`refusing non-loopback host ${host}: this load generator is for local runs only`);
  }
  if (!o.serverPid) throw new Error("--server-pid is required");
  if (!o.redisPort) throw new Error("--redis-port is required");
  if (o.clients < 1 || o.clients > 1000) throw new Error("--clients: 1..1000");
  if (o.seconds < 1 || o.seconds > 3600) throw new Error("--seconds: 1..3600");
  if (o.textBytes < 1 || o.textBytes > 4000) throw new Error("--text-bytes: 1..4000");
  return o;
}

const opt = parseArgs(process.argv);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let t0 = Date.now(); // reset once the warm-up is over
const elapsed = () => (Date.now() - t0) / 1000;

function rssKiB() {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${opt.serverPid}/status`, "utf8"));
    return m ? Number(m[1]) : null;
  } catch { return null; }
}
function redisInfo() {
  try {
    const out = execFileSync("redis-cli", ["-h", "127.0.0.1", "-p", String(opt.redisPort), "info", "memory"],
      { encoding: "utf8", timeout: 5000 });
    const get = (k) => { const m = new RegExp(`^${k}:(\\d+)`, "m").exec(out); return m ? Number(m[1]) : null; };
    const keys = Number(execFileSync("redis-cli", ["-h", "127.0.0.1", "-p", String(opt.redisPort), "dbsize"],
      { encoding: "utf8", timeout: 5000 }).trim());
    return { t: Math.round(elapsed()), used_memory: get("used_memory"), used_memory_rss: get("used_memory_rss"), keys };
  } catch (e) { return { t: Math.round(elapsed()), error: String(e.message).slice(0, 200) }; }
}

// Redis keys grouped by shape (room names and numbers folded), at most 200,000 keys read
function redisKeyShapes() {
  try {
    const out = execFileSync("redis-cli", ["-h", "127.0.0.1", "-p", String(opt.redisPort), "--scan"],
      { encoding: "utf8", timeout: 20000, maxBuffer: 64 << 20 });
    const shapes = {};
    for (const k of out.split("\n").slice(0, 200_000)) {
      if (!k) continue;
      bump(shapes, k.replace(new RegExp(`ch${runId}-\\d+(-\\d+)?`, "g"), "<churn>").replace(/[0-9a-f]{8,}/g, "<hex>").replace(/\d+/g, "N"));
    }
    return Object.fromEntries(Object.entries(shapes).sort((a, b) => b[1] - a[1]).slice(0, 30));
  } catch (e) { return { error: String(e.message).slice(0, 200) }; }
}

const freshCounters = () => ({
  cycles: 0, cycles_complete: 0,
  connects_ok: 0, connects_refused: 0, connect_refusals: {}, connect_timeouts: 0, connect_gave_up: 0,
  joins_ok: 0, rooms_created: 0, joins_refused_rate_limited: 0, joins_failed: 0,
  messages_ok: 0, messages_refused_rate_limited: 0, messages_failed: 0,
  leaves_ok: 0, leaves_failed: 0, ack_timeouts: 0, retries_honoured: 0, retry_wait_ms_total: 0,
  other_errors: {}, server_pushed_errors: 0, disconnects_by_server: 0,
});
let c = freshCounters();
const bump = (obj, k) => { obj[k] = (obj[k] || 0) + 1; };

const runId = Date.now().toString(36);
const text = ("churn " + "x".repeat(opt.textBytes)).slice(0, opt.textBytes); // ASCII: bytes == chars
const openSockets = new Set();

function connect(name) {
  return new Promise((resolve) => {
    const s = io(opt.url, {
      transports: ["websocket"], reconnection: false, forceNew: true, timeout: opt.connectTimeoutMs,
      auth: { name },
    });
    openSockets.add(s);
    const timer = setTimeout(() => { done({ err: "timeout" }); }, opt.connectTimeoutMs + 1000);
    function done(r) {
      clearTimeout(timer);
      s.off("connect", onOk); s.off("connect_error", onErr);
      if (r.err) { s.close(); openSockets.delete(s); }
      resolve(r);
    }
    const onOk = () => done({ s });
    const onErr = (e) => done({ err: String(e && e.message) });
    s.on("connect", onOk);
    s.on("connect_error", onErr);
    s.on("error", () => { c.server_pushed_errors++; });
    s.on("disconnect", (reason) => { if (reason === "io server disconnect") c.disconnects_by_server++; });
  });
}

// emit with ack; retries rate_limited after retryAfterMs (capped), at most maxRetries.
// Returns {ok, ack, refused} where refused counts the rate_limited answers seen.
async function call(s, ev, data) {
  let refused = 0;
  for (let attempt = 0; attempt <= opt.maxRetries; attempt++) {
    let ack;
    try {
      ack = await s.timeout(opt.ackTimeoutMs).emitWithAck(ev, data);
    } catch {
      c.ack_timeouts++;
      return { ok: false, refused, ack: null };
    }
    if (ack && ack.ok) return { ok: true, refused, ack };
    const code = ack && ack.error && ack.error.code;
    if (code === "rate_limited" && attempt < opt.maxRetries) {
      refused++;
      const wait = Math.min(Math.max(Number(ack.error.retryAfterMs) || 100, 1), opt.maxRetryWaitMs);
      c.retries_honoured++; c.retry_wait_ms_total += wait;
      await sleep(wait);
      continue;
    }
    if (code === "rate_limited") refused++;
    bump(c.other_errors, `${ev}:${code || "no-ack"}`);
    return { ok: false, refused, ack };
  }
  return { ok: false, refused, ack: null };
}

let deadline = t0 + opt.warmupSeconds * 1000;
async function clientLoop(i) {
  let backoff = 250;
  for (let cycle = 0; cycle < opt.maxCycles && Date.now() < deadline; cycle++) {
    c.cycles++;
    const name = opt.names === "per-client" ? `ch${runId}-${i}` : `ch${runId}-${i}-${cycle}`;
    // handshake: refused ones carry no retryAfterMs: bounded exponential backoff
    let r;
    for (let tries = 0; tries < 20 && Date.now() < deadline; tries++) {
      r = await connect(name);
      if (r.s) break;
      if (r.err === "timeout") c.connect_timeouts++;
      else { c.connects_refused++; bump(c.connect_refusals, r.err.replace(/\d+/g, "N").slice(0, 100)); }
      await sleep(backoff); backoff = Math.min(backoff * 2, 2000);
    }
    if (!r || !r.s) { if (Date.now() < deadline) c.connect_gave_up++; continue; }
    backoff = 250;
    c.connects_ok++;
    const s = r.s;
    try {
      const room = `ch${runId}-${i}-${cycle}`;
      const j = await call(s, "room:join", { room });
      c.joins_refused_rate_limited += j.refused;
      if (!j.ok) { c.joins_failed++; continue; }
      c.joins_ok++;
      if (j.ack.messages && j.ack.messages.length === 0 && j.ack.memberCount === 1) c.rooms_created++;
      const m = await call(s, "message:send", { room, text, clientId: `${room}-m` });
      c.messages_refused_rate_limited += m.refused;
      if (m.ok) c.messages_ok++; else c.messages_failed++;
      const l = await call(s, "room:leave", { room });
      if (l.ok) c.leaves_ok++; else c.leaves_failed++;
      c.cycles_complete++;
    } finally {
      s.close();
      openSockets.delete(s);
    }
  }
}

function fmtMiB(b) { return b == null ? "?" : (b / 1048576).toFixed(2) + " MiB"; }
function fmtKiB(k) { return k == null ? "?" : (k / 1024).toFixed(1) + " MiB"; }

async function main() {
  const cold = rssKiB();
  if (cold == null) throw new Error(`no /proc/${opt.serverPid}/status: is the server running?`);
  // Warm-up: one client, then the counters and the clock start over.
  await clientLoop("warm");
  const warm = c;
  await sleep(1000);
  c = freshCounters();
  t0 = Date.now();
  deadline = t0 + opt.seconds * 1000;
  const rss = { cold, start: rssKiB(), peak: 0, peak_t: 0, end_of_churn: null, after_leave: null };
  process.stderr.write(`warm-up: ${warm.cycles_complete} cycles by one client in ${opt.warmupSeconds} s; gateway RSS ${fmtKiB(cold)} cold -> ${fmtKiB(rss.start)}\n`);
  const redis = [ { label: "start", ...redisInfo() } ];
  rss.peak = rss.start;
  const rssSeries = [];
  let nextSample = t0 + opt.sampleSeconds * 1000;
  const sampler = setInterval(() => {
    const k = rssKiB();
    if (k != null && k > rss.peak) { rss.peak = k; rss.peak_t = Math.round(elapsed()); }
    if (Date.now() >= nextSample && Date.now() <= deadline + 1000) {
      nextSample += opt.sampleSeconds * 1000;
      const ri = redisInfo();
      redis.push({ label: `${ri.t}s`, ...ri });
      rssSeries.push({ t: ri.t, rss_kib: k, rooms_created: c.rooms_created, messages_ok: c.messages_ok });
      process.stderr.write(`[${ri.t}s] redis used_memory ${fmtMiB(ri.used_memory)} keys ${ri.keys}; gateway RSS ${fmtKiB(k)}; rooms ${c.rooms_created} msgs ok ${c.messages_ok} refused ${c.messages_refused_rate_limited} connects refused ${c.connects_refused}\n`);
    }
  }, 1000);

  const loops = [];
  for (let i = 0; i < opt.clients; i++) loops.push(clientLoop(i));
  // hard cap: loops end by themselves after the deadline (each step has a timeout),
  // but never wait more than 60 s past it
  const hard = sleep(opt.seconds * 1000 + 60_000).then(() => "hard-cap");
  const how = await Promise.race([Promise.all(loops).then(() => "done"), hard]);
  const churnEnd = elapsed();
  for (const s of openSockets) s.close();
  openSockets.clear();
  await sleep(200);
  rss.end_of_churn = rssKiB();
  redis.push({ label: "end-of-churn", ...redisInfo() });
  await sleep(opt.settleSeconds * 1000);
  clearInterval(sampler);
  rss.after_leave = rssKiB();
  redis.push({ label: `after-leave+${opt.settleSeconds}s`, ...redisInfo() });

  const keyShapes = redisKeyShapes();
  const within = rss.after_leave != null && Math.abs(rss.after_leave - rss.start) <= 0.1 * rss.start;
  const rStart = redis[0].used_memory, rEnd = redis[redis.length - 1].used_memory;
  const summary = {
    options: opt, run_id: runId, ended: how, churn_seconds: Number(churnEnd.toFixed(1)),
    counters: c,
    rates: {
      cycles_per_s: Number((c.cycles_complete / churnEnd).toFixed(2)),
      messages_ok_per_s: Number((c.messages_ok / churnEnd).toFixed(2)),
    },
    redis_memory: redis,
    redis_key_shapes_after: keyShapes,
    redis_growth_bytes: rStart != null && rEnd != null ? rEnd - rStart : null,
    redis_bytes_per_room: rStart != null && rEnd != null && c.rooms_created ? Math.round((rEnd - rStart) / c.rooms_created) : null,
    gateway_rss_kib: rss, gateway_rss_series: rssSeries,
    rss_after_leave_within_10pct_of_start: within,
  };
  console.log(JSON.stringify(summary, null, 2));
  const lines = [
    "",
    `churn: ${opt.clients} clients x (connect, join fresh room, send ${opt.textBytes} B, leave, disconnect) for ${churnEnd.toFixed(1)} s (${how})`,
    `  cycles complete ${c.cycles_complete} (${summary.rates.cycles_per_s}/s); connects ok ${c.connects_ok}, refused ${c.connects_refused} ${JSON.stringify(c.connect_refusals)}, gave up ${c.connect_gave_up}, timeouts ${c.connect_timeouts}`,
    `  rooms created ${c.rooms_created} (joins ok ${c.joins_ok}, join rate_limited answers ${c.joins_refused_rate_limited}, joins failed ${c.joins_failed})`,
    `  messages accepted ${c.messages_ok}, rate_limited answers ${c.messages_refused_rate_limited} (retries honoured ${c.retries_honoured}, waited ${c.retry_wait_ms_total} ms in all), failed ${c.messages_failed}`,
    `  leaves ok ${c.leaves_ok}, failed ${c.leaves_failed}; ack timeouts ${c.ack_timeouts}; other errors ${JSON.stringify(c.other_errors)}`,
    `  redis used_memory: ${redis.map((r) => `${r.label} ${fmtMiB(r.used_memory)} (${r.keys} keys)`).join(" -> ")}`,
    `  redis keys after: ${Object.entries(keyShapes).map(([k, v]) => `${k} x${v}`).join(", ")}`,
    `  redis growth ${fmtMiB(summary.redis_growth_bytes)} = ${summary.redis_bytes_per_room} B per room created`,
    `  gateway RSS: cold ${fmtKiB(rss.cold)}, after the one-client warm-up (start) ${fmtKiB(rss.start)}, peak ${fmtKiB(rss.peak)} (at ${rss.peak_t} s), end of churn ${fmtKiB(rss.end_of_churn)}, ${opt.settleSeconds} s after every client left ${fmtKiB(rss.after_leave)}`,
    `  gateway RSS back within 10 % of start: ${within ? "yes" : "NO"} (${((rss.after_leave / rss.start - 1) * 100).toFixed(1)} %)`,
  ];
  console.log(lines.join("\n"));
}

main().then(() => process.exit(0), (e) => { console.error(String(e && e.stack || e)); process.exit(1); });
