// Soak run of a real confab cluster (issue 13): redis-server, three gateways and
// nginx, and N socket.io-client users that for the whole run join rooms from a fixed
// pool, chat at a moderate rate, leave a room and join another, send DMs, mark them
// read, and disconnect and reconnect (half of the time with a send in flight), then
// resume per docs/delivery.md. No faults are injected: this is about steady state.
//
//   node tests/soak/soak.mjs --minutes 30 [--users 60 --rate 15 --rooms 12]   # `make soak`
//   node tests/soak/soak.mjs --minutes 2                                       # the form in `make test`
//
// Bounded state, so that "flat" means something: the gateways run with
// `--history-retention 200` and, what actually bounds the streams, with
// `--history-max-age` and `--idempotency-window-s` both set to WINDOW = 15% of the
// run (at least 15 s, at most 120 s). Every room stream, DM conversation and
// idempotency record then stops growing WINDOW seconds into the traffic, before the
// end of the warm-up (the first 20% of the run), and Redis memory after the warm-up
// stays level unless something grows per message or per connection.
//
// What is checked (exit code 1 if any fails):
// - lost: a member of a room misses an acked message. A user's membership of a room is
//   an interval from its fresh `room:join` (base B = the newest id in the join ack,
//   or, with an empty room, `<ms of the join request - 1>-0`) to its `room:leave` (or
//   the end of the run), across reconnects (every reconnect resumes the room with
//   `room:join {since: last seen id}`). An acked message m of the room is expected by
//   that membership iff id(m) > B and (id(m) <= the last id the user had seen in the
//   room when it sent the leave, or m was acked more than GRACE_MS before the leave).
//   Expected messages must have been received (live or in a resume ack) exactly once.
//   At the end one last message per room is sent and awaited by every member, so
//   everything acked before it is expected of the memberships still open.
// - duplicates: an id received twice by one membership; duplicate stores: one
//   clientId stored under two ids (in what members received or in the stream).
// - order: live messages of a room arrive in id order on each connection; resume acks
//   are in id order and newer than `since`.
// - missing in history: every acked room message is in its room's stream
//   (`confab:room:{<room>}:log`, read with XRANGE every sample interval: the streams
//   keep WINDOW seconds, the snapshots are taken every 5 or 10 s).
// - DMs: every acked DM reaches its recipient: live (`dm:new`) or, when the recipient
//   was reconnecting, by its catch-up after `session` (docs/delivery.md: re-read the
//   latest page of the conversations with unread DMs (`session.unread`) and of the
//   recently active ones, merge by id). A DM caught up although the recipient was
//   connected and resumed for the whole send is reported as suspicious.
// - every send (room message or DM) was acked in the end: each one has a clientId and
//   is resent with the same clientId until acked; every reconnect resumed.
// - resources: every SAMPLE_S (10 s; 5 s for runs up to 5 minutes) the VmRSS of each
//   gateway (/proc/<pid>/status) and Redis `used_memory` (INFO memory); reported with
//   start, end, max and the least-squares slope after the warm-up (bounds: `boundsFor`).
// Loopback only; every loop is bounded in count and time; the processes started here
// are stopped by PID at the end, on failure and on SIGINT.
import { readFileSync, rmSync } from "node:fs";
import { execFileSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { io } from "socket.io-client";
import { startRedis, startGateway, startNginx, redisCli, stopAll, cmpId } from "../support/cluster.mjs";
import { sleep } from "../support/server.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** A message acked this long before a leave must have reached the leaving member. */
const GRACE_MS = 2000;
/** One ack's timeout; a send whose ack does not come is resent with its clientId. */
const ACK_TIMEOUT_MS = 5000;

/**
 * "Flat", as checked by `verdict`: on the samples after the warm-up, a series' growth
 * is its least-squares slope projected over 10 minutes, relative to its level (mean
 * after the warm-up). A run fails if Redis `used_memory` or a gateway's VmRSS grows
 * faster than its bound. Healthy: once streams, idempotency records and presence are
 * saturated (end of the warm-up) the levels only wobble (active expiry, stream nodes,
 * allocator pages). A leak of a fixed size per message grows linearly with the
 * traffic (~14 acked messages/s, ~125 deliveries/s over the 3 gateways):
 * - long form (≥ 10 minutes; `make soak`): Redis < 5% per 10 minutes (of a ~3 MiB
 *   level: ~16 KiB/min, i.e. a leak of ≥ ~20 B per message fails; an idempotency key
 *   that never expired would be ~250 B per message); gateway RSS < 10% per 10 minutes
 *   (of ~25 MiB: ~250 KiB/min, a leak of ≥ ~100 B per delivery on that gateway fails).
 * - short form (2 minutes, `make test`): the slope comes from ~1.6 minutes of samples,
 *   so noise is projected ×6: Redis < 20% (measured within ±3%; a leak of ≥ ~80 B per
 *   message fails: a 100-byte key per message measured 45%); RSS < 60% (allocator
 *   steps of ±0.5-1 MiB within the 1.6 minutes measured up to ±30%; a leak of
 *   ≥ ~600 B per delivery, e.g. keeping every message, fails). It catches gross leaks
 *   only; the long form is the measurement.
 */
export function boundsFor(minutes) {
  return minutes >= 10 ? { redisPctPer10Min: 5, rssPctPer10Min: 10 } : { redisPctPer10Min: 20, rssPctPer10Min: 60 };
}

const rand = (a, b) => a + Math.random() * (b - a);
const expRand = (mean) => -mean * Math.log(1 - Math.random());
const pick = (list) => list[Math.floor(Math.random() * list.length)];
const dmKey = (a, b, id) => `${a < b ? `${a}|${b}` : `${b}|${a}`}|${id}`;

/** Least squares of y over x (minutes): slope per minute. */
export function slope(points) {
  const n = points.length;
  if (n < 2) return 0;
  const mx = points.reduce((s, p) => s + p.x, 0) / n;
  const my = points.reduce((s, p) => s + p.y, 0) / n;
  let sxy = 0, sxx = 0;
  for (const p of points) {
    sxy += (p.x - mx) * (p.y - my);
    sxx += (p.x - mx) ** 2;
  }
  return sxx ? sxy / sxx : 0;
}

/** Summary of one resource series (KiB) sampled at t (ms since t0). */
function summarise(samples, key, warmupMs) {
  const pts = samples.filter((s) => s[key] != null).map((s) => ({ t: s.t, y: s[key] }));
  if (!pts.length) return null;
  const after = pts.filter((p) => p.t >= warmupMs);
  const perMin = slope(after.map((p) => ({ x: p.t / 60000, y: p.y })));
  const level = after.length ? after.reduce((s, p) => s + p.y, 0) / after.length : pts.at(-1).y;
  const spanMin = after.length > 1 ? (after.at(-1).t - after[0].t) / 60000 : 0;
  return {
    startKiB: pts[0].y,
    afterWarmupKiB: after[0]?.y ?? null,
    endKiB: pts.at(-1).y,
    maxKiB: Math.max(...pts.map((p) => p.y)),
    levelKiB: Math.round(level),
    slopeKiBPerMin: Math.round(perMin * 10) / 10,
    // slope × the post-warm-up span, relative to the level: the "flatness" figure
    growthOverRunPct: level ? Math.round(((perMin * spanMin) / level) * 1000) / 10 : 0,
    growthPer10MinPct: level ? Math.round(((perMin * 10) / level) * 1000) / 10 : 0,
    samplesAfterWarmup: after.length,
  };
}

function rssKiB(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

// Every entry of the given streams as "<key index> <id> <clientId or ->"; the clientId
// is found in the stored body (our clientIds are `sk:<user>:<seq>` and the text
// carries it too), so this does not depend on the body's encoding.
const SNAPSHOT_LUA = `
local out = {}
for i, k in ipairs(KEYS) do
  for _, e in ipairs(redis.call('XRANGE', k, '-', '+')) do
    local body = ''
    for j = 1, #e[2], 2 do if e[2][j] == 'b' then body = e[2][j + 1] end end
    out[#out + 1] = i .. ' ' .. e[1] .. ' ' .. (string.match(body, 'sk:%d+:%d+') or '-')
  end
end
return out`;

/** One simulated user: a socket.io-client through nginx following docs/delivery.md. */
class SoakUser {
  constructor(run, i) {
    this.run = run;
    this.i = i;
    this.name = `soak${i}`;
    this.seq = 0;
    this.member = new Map(); // room -> open membership interval
    this.leaving = new Map(); // room -> interval whose room:leave is in flight
    this.pendingJoin = new Map(); // room -> live messages that arrived before the fresh join's ack
    this.intervals = [];
    this.conn = 0;
    this.ready = false; // connected, and resumed after the last `session`
    this.readySince = 0;
    this.readySpans = []; // [from, to] while ready
    this.disconnectedAt = null;
    this.resumes = []; // ms from the disconnect (a planned one: from connect()) to resumed
    this.liveMax = new Map(); // room -> greatest live id on this connection
    this.dmsReceived = new Map(); // dm key -> "live" | "catchup"
    this.dmLiveThisConn = new Set();
    this.dmLastSeen = new Map(); // peer -> greatest DM id of the conversation seen
    this.dmUnreadUpTo = new Map(); // peer -> newest unread id received from peer
    this.dmPeerActive = new Map(); // peer -> last DM activity (ms)
    this.stats = { sends: 0, dms: 0, reconnects: 0, inFlightReconnects: 0, switches: 0, strays: 0, dmDuplicates: 0, dmReads: 0, outOfOrder: 0, catchupReads: 0, sendErrors: {} };
    this.route = 0;
    const opts = {
      auth: { name: this.name },
      autoConnect: false,
      reconnectionDelay: 200,
      reconnectionDelayMax: 1000,
      randomizationFactor: 0.3,
      timeout: 5000,
      extraHeaders: { cookie: `confab_route=soak-${i}-0` },
    };
    // Most users on websocket only, every fifth on the default (polling, then upgrade).
    if (i % 5 !== 0) opts.transports = ["websocket"];
    this.socket = io(run.url, opts);
    this.socket.on("session", (s) => this.onSession(s).catch((e) => run.errors.push(`${this.name} resume: ${e.message}`)));
    this.socket.on("message:new", (m) => this.onMessage(m));
    this.socket.on("dm:new", (d) => this.onDm(d, "live"));
    this.socket.on("disconnect", (reason) => {
      this.ready = false;
      if (this.readySince) this.readySpans.push([this.readySince, Date.now()]);
      this.readySince = 0;
      this.disconnectedAt ??= Date.now();
      // A disconnect by the server is not retried by socket.io-client: reconnect.
      if (reason === "io server disconnect" && !this.planned) this.socket.connect();
    });
    this.socket.on("connect_error", () => {
      if (!this.socket.active && this.run.running) setTimeout(() => this.run.running && !this.planned && this.socket.connect(), 500);
    });
  }

  /** Resolves once connected and resumed (bounded); false on timeout or abort. */
  async waitReady(timeoutMs = 30000) {
    const until = Date.now() + timeoutMs;
    while (!this.ready) {
      if (Date.now() > until || this.run.aborted) return false;
      await sleep(20);
    }
    return true;
  }

  /** emitWithAck with a timeout; never throws: a failure is {ok: false, error: {code}}. */
  async emit(event, payload, timeoutMs = ACK_TIMEOUT_MS) {
    try {
      const ack = await this.socket.timeout(timeoutMs).emitWithAck(event, payload);
      return ack ?? { ok: false, error: { code: "malformed_ack" } };
    } catch (e) {
      return { ok: false, error: { code: /timed out/.test(e?.message) ? "ack_timeout" : "disconnected" } };
    }
  }

  /** Send until acked, always with the same clientId (docs/delivery.md rule 1). */
  async sendReliably(event, payload, rec) {
    for (let attempt = 0; attempt < 100 && Date.now() < this.run.hardStop; attempt++) {
      if (!(await this.waitReady())) continue;
      rec.attempts++;
      rec.lastTryAt = Date.now();
      const ack = await this.emit(event, payload);
      if (ack.ok) return ack;
      const code = ack.error?.code ?? "malformed_ack";
      this.stats.sendErrors[code] = (this.stats.sendErrors[code] ?? 0) + 1;
      if (code === "not_member") return null; // cannot happen while ready: reported as unacked
      await sleep(200 + Math.random() * 300);
    }
    return null;
  }

  onMessage(m) {
    const iv = this.member.get(m.room) ?? this.leaving.get(m.room);
    if (iv) {
      const prev = this.liveMax.get(m.room);
      if (prev && cmpId(m.id, prev) <= 0) this.stats.outOfOrder++;
      this.liveMax.set(m.room, m.id);
      this.receive(iv, m, "live");
    } else if (this.pendingJoin.has(m.room)) {
      this.pendingJoin.get(m.room).push(m);
    } else if (m.room !== "general") {
      this.stats.strays++; // a message of a room this user is not in (after the leave ack)
    }
  }

  receive(iv, m, via) {
    if (iv.set.has(m.id)) {
      iv.dups++;
      if (this.run.dupExamples.length < 5) this.run.dupExamples.push(`${this.name} ${m.room} ${m.id} again (${via})`);
    } else {
      iv.set.add(m.id);
    }
    if (cmpId(m.id, iv.last) > 0) iv.last = m.id;
    this.run.received[via]++;
    if (via === "live" && this.run.latencies.length < 500000) this.run.latencies.push(Date.now() - m.ts);
    if (m.clientId) {
      const ids = this.run.idsOfClientId.get(m.clientId);
      if (!ids) this.run.idsOfClientId.set(m.clientId, new Set([m.id]));
      else ids.add(m.id);
    }
  }

  onDm(d, via) {
    const peer = d.fromId === this.name ? d.to : d.fromId;
    this.dmPeerActive.set(peer, Date.now());
    const last = this.dmLastSeen.get(peer);
    if (!last || cmpId(d.id, last) > 0) this.dmLastSeen.set(peer, d.id);
    if (d.to !== this.name || d.fromId === this.name) return; // our own DM's echo
    const key = dmKey(d.fromId, d.to, d.id);
    if (via === "live") {
      if (this.dmLiveThisConn.has(key)) this.stats.dmDuplicates++;
      this.dmLiveThisConn.add(key);
    }
    if (!this.dmsReceived.has(key)) this.dmsReceived.set(key, via);
    const up = this.dmUnreadUpTo.get(peer);
    if (!up || cmpId(d.id, up) > 0) this.dmUnreadUpTo.set(peer, d.id);
  }

  /** After every (re)connect: resume each room from the last id seen, then catch up DMs. */
  async onSession(session) {
    const conn = ++this.conn;
    this.ready = false;
    this.liveMax = new Map();
    this.dmLiveThisConn = new Set();
    for (const [room, iv] of [...this.member]) {
      let ack, since;
      const giveUp = Date.now() + 30000;
      while (this.socket.connected && conn === this.conn && Date.now() < giveUp && this.member.get(room) === iv) {
        since = iv.last; // live messages may move it while a try is in flight
        ack = await this.emit("room:join", { room, since });
        if (ack.ok) break;
        await sleep(300);
      }
      if (conn !== this.conn || !this.socket.connected) return; // the next session resumes
      if (this.member.get(room) !== iv) continue;
      if (!ack?.ok) {
        this.run.errors.push(`${this.name}: resume of ${room} failed: ${JSON.stringify(ack?.error)}`);
        continue;
      }
      if (ack.truncated) iv.truncated.push({ since, first: ack.messages[0]?.id ?? null });
      let prev = since; // the ack: ascending, all newer than since
      for (const m of ack.messages) {
        if (cmpId(m.id, prev) <= 0) this.stats.outOfOrder++;
        prev = m.id;
        this.receive(iv, m, "resume");
      }
    }
    // DMs: conversations with unread DMs, and those active in the last minute.
    const now = Date.now();
    const peers = new Set(Object.entries(session.unread ?? {}).filter(([, n]) => n > 0).map(([p]) => p));
    for (const [p, at] of this.dmPeerActive) if (now - at < 60000) peers.add(p);
    if (this.conn > 1) {
      for (const peer of peers) {
        if (conn !== this.conn) return;
        await this.catchUpDms(peer);
      }
    }
    if (conn !== this.conn || !this.socket.connected) return;
    this.ready = true;
    this.readySince = Date.now();
    if (this.disconnectedAt) {
      this.resumes.push(Date.now() - this.disconnectedAt);
      this.disconnectedAt = null;
    }
  }

  /** Page one conversation back to the newest DM seen (bounded), merge by id. */
  async catchUpDms(peer) {
    const known = this.dmLastSeen.get(peer);
    let before;
    for (let page = 0; page < 10; page++) {
      const ack = await this.emit("dm:history", { with: peer, limit: 50, ...(before ? { before } : {}) });
      if (!ack.ok) return;
      this.stats.catchupReads++;
      for (const d of ack.messages) this.onDm(d, "catchup");
      if (!ack.hasMore || !ack.messages.length) return;
      if (known && cmpId(ack.messages[0].id, known) <= 0) return;
      before = ack.messages[0].id;
    }
  }

  /** A fresh join (not a resume): the membership starts at the join point. */
  async joinFresh(room) {
    for (let attempt = 0; attempt < 20 && Date.now() < this.run.hardStop; attempt++) {
      if (!(await this.waitReady())) continue;
      this.pendingJoin.set(room, []);
      const sentAt = Date.now();
      const conn = this.conn;
      const ack = await this.emit("room:join", { room, limit: 1 });
      const buffered = this.pendingJoin.get(room);
      this.pendingJoin.delete(room);
      if (!ack.ok || conn !== this.conn) {
        await sleep(300);
        continue; // on another connection the join is gone: join again
      }
      const base = ack.messages.at(-1)?.id ?? `${sentAt - 1}-0`;
      const iv = { user: this.name, room, base, last: base, startAt: sentAt, endAt: null, endLast: null, set: new Set(), dups: 0, truncated: [] };
      this.member.set(room, iv);
      this.intervals.push(iv);
      for (const m of buffered) if (cmpId(m.id, base) > 0) this.onMessage(m);
      return true;
    }
    this.run.errors.push(`${this.name}: could not join ${room}`);
    return false;
  }

  async leave(room) {
    const iv = this.member.get(room);
    if (!iv || !(await this.waitReady())) return;
    iv.endAt = Date.now();
    iv.endLast = iv.last;
    this.member.delete(room); // a reconnect from now on does not resume it
    this.leaving.set(room, iv);
    await this.emit("room:leave", { room });
    this.leaving.delete(room);
  }

  async sendRoom(room = pick([...this.member.keys()])) {
    if (!room) return;
    const clientId = `sk:${this.i}:${this.seq++}`;
    const rec = { kind: "room", room, clientId, from: this.name, sentAt: Date.now(), attempts: 0, ack: null };
    this.run.sends.push(rec);
    this.stats.sends++;
    const ack = await this.sendReliably("message:send", { room, text: `${clientId} from ${this.name} at ${Date.now()}`, clientId }, rec);
    if (ack) {
      rec.ack = { id: ack.message.id, at: Date.now(), ts: ack.message.ts };
      if (ack.message.clientId !== clientId || ack.message.room !== room) this.run.errors.push(`ack of ${clientId} carries ${JSON.stringify(ack.message)}`);
    }
    return rec;
  }

  async sendDm() {
    const others = this.run.users.filter((u) => u !== this);
    const to = pick(others).name;
    const clientId = `dk:${this.i}:${this.seq++}`;
    const rec = { kind: "dm", to, clientId, from: this.name, sentAt: Date.now(), attempts: 0, ack: null };
    this.run.sends.push(rec);
    this.stats.dms++;
    this.dmPeerActive.set(to, Date.now());
    const ack = await this.sendReliably("dm:send", { to, text: `${clientId} from ${this.name}`, clientId }, rec);
    if (ack) rec.ack = { id: ack.message.id, at: Date.now(), ts: ack.message.ts, key: dmKey(this.name, to, ack.message.id) };
  }

  /** Mark what was received read, a few conversations at a time (like a UI). */
  async readDms() {
    for (const [peer, upTo] of [...this.dmUnreadUpTo].slice(0, 3)) {
      const ack = await this.emit("dm:read", { with: peer, upTo });
      if (ack.ok && this.dmUnreadUpTo.get(peer) === upTo) this.dmUnreadUpTo.delete(peer);
      this.stats.dmReads++;
    }
  }

  /** Disconnect, pause, reconnect through another route cookie, resume. */
  async reconnect({ inFlight, pauseMs }) {
    this.stats.reconnects++;
    let pending;
    this.planned = true;
    if (inFlight && this.member.size) {
      // A send whose ack the disconnect loses (or not): resent with its clientId.
      this.stats.inFlightReconnects++;
      pending = this.sendRoom();
      await sleep(Math.random() * 3);
    }
    this.socket.disconnect();
    await sleep(pauseMs);
    this.socket.io.opts.extraHeaders.cookie = `confab_route=soak-${this.i}-${++this.route}`;
    this.planned = false;
    this.disconnectedAt = Date.now(); // the resume time leaves the planned pause out
    this.socket.connect();
    const ok = await this.waitReady();
    if (!ok && !this.run.aborted) {
      this.run.errors.push(`${this.name}: not resumed 30 s after a reconnect`);
      if (!this.socket.active) this.socket.connect();
    }
    await pending;
  }

  /** The user's life until the end of the run (bounded in steps and time). */
  async live() {
    const { run } = this;
    const stepMs = (run.users.length / run.rate) * 1000;
    const now = Date.now();
    // Every user reconnects at least once (first time within 10-60% of the run).
    let nextReconnect = run.t0 + rand(0.1, 0.6) * Math.min(run.reconnectMeanMs, run.runMs);
    let nextSwitch = now + expRand(run.switchMeanMs);
    for (let step = 0; step < 1_000_000 && Date.now() < run.end && !run.aborted; step++) {
      await sleep(Math.min(expRand(stepMs), 4 * stepMs, Math.max(0, run.end - Date.now())));
      if (Date.now() >= run.end || run.aborted) break;
      if (Date.now() >= nextReconnect) {
        const long = Math.random() < 0.1;
        const pauseMs = long ? rand(3000, Math.min(10000, (run.windowS * 1000) / 2)) : rand(100, 2000);
        await this.reconnect({ inFlight: Math.random() < 0.5, pauseMs });
        nextReconnect = Date.now() + expRand(run.reconnectMeanMs);
        continue;
      }
      if (Date.now() >= nextSwitch) {
        this.stats.switches++;
        const rooms = [...this.member.keys()];
        if (rooms.length > 1) await this.leave(pick(rooms));
        const free = run.rooms.filter((r) => !this.member.has(r));
        if (this.member.size < 3 && free.length) await this.joinFresh(pick(free));
        nextSwitch = Date.now() + expRand(run.switchMeanMs);
        continue;
      }
      if (Math.random() < run.dmShare) await this.sendDm();
      else await this.sendRoom();
      if (this.dmUnreadUpTo.size && Math.random() < 0.5) await this.readDms();
    }
  }
}

export async function runSoak({ minutes = 30, users = 60, rate = 15, rooms = 12, warmup = 0.2, log = console.log } = {}) {
  if (!(minutes > 0 && minutes <= 240)) throw new Error("--minutes: (0, 240]");
  if (!(users >= 2 && users <= 1000)) throw new Error("--users: 2..1000");
  if (!(rate > 0 && rate <= 500)) throw new Error("--rate: (0, 500]");
  if (!(rooms >= 2 && rooms <= 200)) throw new Error("--rooms: 2..200");
  const runMs = Math.round(minutes * 60000);
  const sampleMs = minutes <= 5 ? 5000 : 10000;
  const windowS = Math.min(120, Math.max(15, Math.round((runMs / 1000) * 0.15)));
  const warmupMs = Math.round(runMs * warmup);
  const gwArgs = ["--history-retention", "200", "--history-max-age", `${windowS}s`, "--idempotency-window-s", String(windowS)];
  const procs = [];
  let nginx, redisDir;
  const run = {
    url: null, rate, runMs, windowS,
    rooms: Array.from({ length: rooms }, (_, i) => `soak-${i}`),
    users: [], sends: [], errors: [], dupExamples: [], latencies: [],
    received: { live: 0, resume: 0 },
    idsOfClientId: new Map(),
    running: true, aborted: false,
    reconnectMeanMs: 120000, switchMeanMs: 90000, dmShare: 0.1,
  };
  // Last resort if this process exits without the finally below (e.g. a test timeout).
  const killAll = () => { for (const p of procs) if (p.running) p.child.kill("SIGKILL"); };
  process.on("exit", killAll);
  const onSigint = () => {
    log("soak: SIGINT: stopping");
    run.aborted = true;
  };
  process.on("SIGINT", onSigint);
  try {
    const redis = await startRedis();
    procs.push(redis);
    redisDir = redis.dir;
    const gw = [];
    for (const id of ["gw1", "gw2", "gw3"]) {
      const g = await startGateway({ redisUrl: redis.url, id, args: gwArgs });
      gw.push(g);
      procs.push(g);
    }
    nginx = await startNginx({ gatewayPorts: gw.map((g) => g.port) });
    procs.push(nginx);
    run.url = nginx.url;
    log(`soak: redis ${redis.port}, gateways ${gw.map((g) => `${g.id}:${g.port} pid ${g.pid}`).join(", ")}, nginx ${nginx.port}; ` +
      `gateways run with ${gwArgs.join(" ")} (bounded history and idempotency records: Redis saturates after ${windowS} s)`);

    // ---- sampling: RSS, Redis memory, stream snapshots ----
    const samples = [];
    const inStream = new Map(run.rooms.map((r) => [r, new Set()])); // ids seen in any snapshot
    const streamIdsOfClientId = new Map();
    const streamKeys = run.rooms.map((r) => `confab:room:{${r}}:log`);
    let streamMax = 0, snapshotErrors = 0;
    const sample = async () => {
      const s = { t: Date.now() - (run.t0 ?? Date.now()), gw: gw.map((g) => rssKiB(g.pid)) };
      try {
        const info = await redisCli(redis.port, "INFO", "memory");
        const used = info.find((l) => l.startsWith("used_memory:"));
        s.redis = used ? Math.round(Number(used.split(":")[1]) / 1024) : null;
        s.keys = Number((await redisCli(redis.port, "DBSIZE"))[0]);
        const lines = await redisCli(redis.port, "EVAL", SNAPSHOT_LUA, streamKeys.length, ...streamKeys);
        const perRoom = new Map();
        for (const line of lines) {
          const [k, id, cid] = line.split(" ");
          if (!id) continue;
          const room = run.rooms[Number(k) - 1];
          inStream.get(room).add(id);
          perRoom.set(room, (perRoom.get(room) ?? 0) + 1);
          if (cid && cid !== "-") {
            const ids = streamIdsOfClientId.get(cid) ?? new Set();
            ids.add(id);
            streamIdsOfClientId.set(cid, ids);
          }
        }
        s.streamEntries = lines.filter((l) => l.includes(" ")).length;
        streamMax = Math.max(streamMax, ...perRoom.values(), 0);
      } catch (e) {
        snapshotErrors++;
        run.errors.push(`sample: ${e.message}`);
      }
      samples.push(s);
      return s;
    };
    const idle = await sample();
    log(`soak: idle before users: gateways ${idle.gw.join(", ")} KiB, redis ${idle.redis} KiB`);

    // ---- users connect and join two rooms each ----
    for (let i = 0; i < users; i++) run.users.push(new SoakUser(run, i));
    const tStart = Date.now();
    run.hardStop = tStart + 120000;
    for (let k = 0; k < users; k += 10) {
      for (const u of run.users.slice(k, k + 10)) u.socket.connect();
      await sleep(100);
    }
    await Promise.all(run.users.map(async (u) => {
      for (const room of [run.rooms[u.i % rooms], run.rooms[(u.i * 5 + 3) % rooms]]) {
        if (!u.member.has(room)) await u.joinFresh(room);
      }
    }));
    if (run.users.some((u) => !u.ready || u.member.size === 0)) throw new Error("users did not all connect and join within 2 minutes");
    log(`soak: ${users} users connected and joined in ${Date.now() - tStart} ms`);

    // ---- the run ----
    run.t0 = Date.now();
    run.end = run.t0 + runMs;
    run.hardStop = run.end + 90000;
    samples.length = 0;
    let sampling = false;
    const sampler = setInterval(() => {
      if (sampling) return;
      sampling = true;
      sample().then((s) => {
        if (s.t % 60000 < sampleMs) {
          const acked = run.sends.filter((r) => r.ack).length;
          log(`soak: +${Math.round(s.t / 1000)} s acked ${acked}, gateways ${s.gw.join("/")} KiB, redis ${s.redis} KiB, ${s.keys} keys, ${s.streamEntries} room entries`);
        }
      }).finally(() => { sampling = false; });
    }, sampleMs);
    await sample();
    log(`soak: running ${minutes} min: ${users} users, ~${rate} msg/s, ${rooms} rooms; samples every ${sampleMs / 1000} s, warm-up ${warmupMs / 1000} s (${warmup * 100}%)`);
    await Promise.all(run.users.map((u) => u.live().catch((e) => run.errors.push(`${u.name}: ${e.stack}`))));
    clearInterval(sampler);
    while (sampling) await sleep(50);
    if (run.aborted) throw new Error("aborted (SIGINT)");
    const finalSample = await sample(); // the last resource sample: end of the traffic
    const trafficEndedAt = Date.now();

    // ---- settle: everyone resumed, every send acked ----
    const settleUntil = Date.now() + 30000;
    while (Date.now() < settleUntil && run.users.some((u) => !u.ready)) await sleep(100);
    // A last message per room, awaited by every member: whoever has it has received
    // everything before it that it is going to receive.
    const barrier = [];
    for (const room of run.rooms) {
      const u = run.users.find((x) => x.ready && x.member.has(room));
      if (!u) continue;
      const rec = await u.sendRoom(room);
      if (rec?.ack) barrier.push({ room, id: rec.ack.id });
    }
    const waitUntil = Date.now() + 20000;
    const missingBarrier = () => barrier.filter((b) => run.users.some((u) => u.member.get(b.room) && !u.member.get(b.room).set.has(b.id)));
    while (Date.now() < waitUntil && missingBarrier().length) await sleep(100);
    const dmAcked = run.sends.filter((r) => r.kind === "dm" && r.ack);
    const byName = new Map(run.users.map((u) => [u.name, u]));
    const dmMissing = () => dmAcked.filter((r) => !byName.get(r.to).dmsReceived.has(r.ack.key));
    while (Date.now() < waitUntil + 10000 && dmMissing().length) await sleep(100);
    await sample(); // a last stream snapshot (the barrier messages)
    samples.pop(); // ... not part of the resource series
    const checkedAt = Date.now();
    run.running = false;

    // ---- verification ----
    for (const u of run.users) {
      for (const iv of u.member.values()) {
        iv.endAt = checkedAt;
        iv.endLast = iv.last;
      }
    }
    const roomAcked = run.sends.filter((r) => r.kind === "room" && r.ack);
    const ackedByRoom = new Map(run.rooms.map((r) => [r, []]));
    for (const r of roomAcked) ackedByRoom.get(r.room).push(r);
    let expected = 0, lost = 0, duplicates = 0, excusedByTruncation = 0;
    const lostExamples = [];
    let memberships = 0, truncatedResumes = 0;
    for (const u of run.users) {
      for (const iv of u.intervals) {
        memberships++;
        duplicates += iv.dups;
        truncatedResumes += iv.truncated.length;
        for (const r of ackedByRoom.get(iv.room)) {
          if (cmpId(r.ack.id, iv.base) <= 0) continue;
          if (!(cmpId(r.ack.id, iv.endLast) <= 0 || r.ack.at < iv.endAt - GRACE_MS)) continue;
          expected++;
          if (iv.set.has(r.ack.id)) continue;
          if (iv.truncated.some((t) => cmpId(r.ack.id, t.since) > 0 && (!t.first || cmpId(r.ack.id, t.first) < 0))) {
            excusedByTruncation++;
            continue;
          }
          lost++;
          if (lostExamples.length < 5) {
            lostExamples.push(`${u.name} missing ${iv.room} ${r.ack.id} (${r.clientId} from ${r.from}, acked at +${((r.ack.at - run.t0) / 1000).toFixed(1)} s; ` +
              `membership ${iv.base}..${iv.endLast} from +${((iv.startAt - run.t0) / 1000).toFixed(1)} s to +${((iv.endAt - run.t0) / 1000).toFixed(1)} s)`);
          }
        }
      }
    }
    let missingInHistory = 0;
    const historyExamples = [];
    for (const r of roomAcked) {
      if (inStream.get(r.room).has(r.ack.id)) continue;
      missingInHistory++;
      if (historyExamples.length < 5) historyExamples.push(`${r.room} ${r.ack.id} (${r.clientId})`);
    }
    let duplicateStores = 0;
    const dupStoreExamples = [];
    for (const [what, map] of [["received", run.idsOfClientId], ["stream", streamIdsOfClientId]]) {
      for (const [cid, ids] of map) {
        if (ids.size > 1) {
          duplicateStores++;
          if (dupStoreExamples.length < 5) dupStoreExamples.push(`${cid} stored as ${[...ids].join(", ")} (${what})`);
        }
      }
    }
    // DMs
    let dmLost = 0, dmViaCatchup = 0, dmCatchupWhileConnected = 0;
    const dmExamples = [];
    const readyThroughout = (u, from, to) =>
      u.readySpans.some(([a, b]) => a <= from && b >= to) || (u.readySince && u.readySince <= from);
    for (const r of dmAcked) {
      const u = byName.get(r.to);
      const via = u.dmsReceived.get(r.ack.key);
      if (!via) {
        dmLost++;
        if (dmExamples.length < 5) dmExamples.push(`${r.to} never got ${r.ack.key} (${r.clientId}, acked at +${((r.ack.at - run.t0) / 1000).toFixed(1)} s)`);
      } else if (via === "catchup") {
        dmViaCatchup++;
        if (readyThroughout(u, r.sentAt - 100, r.ack.at + GRACE_MS)) dmCatchupWhileConnected++;
      }
    }
    const unacked = run.sends.filter((r) => !r.ack);
    const resumes = run.users.flatMap((u) => u.resumes).sort((a, b) => a - b);
    const sum = (f) => run.users.reduce((n, u) => n + f(u), 0);
    const lat = run.latencies.sort((a, b) => a - b);
    const q = (list, p) => (list.length ? list[Math.min(list.length - 1, Math.floor(p * list.length))] : null);
    const trafficMin = (trafficEndedAt - run.t0) / 60000;
    const result = {
      minutes, users, rate, rooms,
      settings: { gatewayArgs: gwArgs.join(" "), windowS, sampleS: sampleMs / 1000, warmupS: warmupMs / 1000, graceMs: GRACE_MS },
      sent: run.sends.length,
      roomMessagesAcked: roomAcked.length,
      dmsAcked: dmAcked.length,
      ackedPerSecond: Math.round(((roomAcked.length + dmAcked.length) / (trafficMin * 60)) * 10) / 10,
      unacked: unacked.length,
      resent: run.sends.filter((r) => r.attempts > 1).length,
      // resent sends whose stored message is older than the last try: an earlier try was
      // stored and its ack lost; the resend returned the original (idempotency)
      resentStoredByEarlierTry: run.sends.filter((r) => r.attempts > 1 && r.ack && r.ack.ts < r.lastTryAt).length,
      sendErrors: run.users.reduce((t, u) => { for (const [k, v] of Object.entries(u.stats.sendErrors)) t[k] = (t[k] ?? 0) + v; return t; }, {}),
      memberships,
      expectedDeliveries: expected,
      deliveredLive: run.received.live,
      deliveredByResume: run.received.resume,
      lost, duplicates,
      orderErrors: sum((u) => u.stats.outOfOrder),
      truncatedResumes, excusedByTruncation,
      missingInHistory, duplicateStores,
      maxStreamEntriesPerRoom: streamMax,
      dmLost, dmViaCatchup, dmCatchupWhileConnected,
      dmDuplicates: sum((u) => u.stats.dmDuplicates),
      dmReads: sum((u) => u.stats.dmReads),
      reconnects: sum((u) => u.stats.reconnects),
      reconnectsWithSendInFlight: sum((u) => u.stats.inFlightReconnects),
      usersReconnected: run.users.filter((u) => u.stats.reconnects > 0).length,
      resumed: resumes.length,
      unresumed: run.users.filter((u) => !u.ready).length,
      resumeMs: { p50: q(resumes, 0.5), p99: q(resumes, 0.99), max: resumes.at(-1) ?? null },
      roomSwitches: sum((u) => u.stats.switches),
      strayDeliveries: sum((u) => u.stats.strays),
      liveLatencyMs: { p50: q(lat, 0.5), p99: q(lat, 0.99), max: lat.at(-1) ?? null },
      resources: {
        idle: { gatewaysKiB: idle.gw, redisKiB: idle.redis },
        gateways: gw.map((g, k) => ({ id: g.id, ...summarise(samples.map((s) => ({ t: s.t, v: s.gw[k] })), "v", warmupMs) })),
        redis: summarise(samples.map((s) => ({ t: s.t, v: s.redis })), "v", warmupMs),
        redisKeys: { start: samples[0]?.keys, end: finalSample.keys, max: Math.max(...samples.map((s) => s.keys ?? 0)) },
        samples: samples.length,
        bounds: boundsFor(minutes),
        // every sample: [s since t0, RSS of gw1, gw2, gw3 (KiB), Redis used_memory (KiB), Redis keys]
        series: samples.map((s) => [Math.round(s.t / 1000), ...s.gw, s.redis, s.keys]),
      },
      errors: run.errors.slice(0, 20),
      errorCount: run.errors.length,
      lostExamples, dupExamples: run.dupExamples, historyExamples, dupStoreExamples, dmExamples,
      unackedExamples: unacked.slice(0, 5).map((r) => `${r.from} ${r.kind} ${r.clientId} (${r.attempts} tries)`),
    };
    return result;
  } finally {
    run.running = false;
    run.aborted = true;
    for (const u of run.users) u.socket.close();
    await stopAll(procs);
    process.off("exit", killAll);
    process.off("SIGINT", onSigint);
    nginx?.cleanup();
    if (redisDir) rmSync(redisDir, { recursive: true, force: true });
  }
}

/** The broken promises (empty: the run passed). */
export function verdict(r) {
  const bad = [];
  if (r.lost) bad.push(`${r.lost} acked messages missing from a member: ${r.lostExamples.join("; ")}`);
  if (r.duplicates) bad.push(`${r.duplicates} messages received twice: ${r.dupExamples.join("; ")}`);
  if (r.orderErrors) bad.push(`${r.orderErrors} order errors`);
  if (r.missingInHistory) bad.push(`${r.missingInHistory} acked messages not in their room's stream: ${r.historyExamples.join("; ")}`);
  if (r.duplicateStores) bad.push(`${r.duplicateStores} clientIds stored twice: ${r.dupStoreExamples.join("; ")}`);
  if (r.truncatedResumes) bad.push(`${r.truncatedResumes} resumes answered truncated (a gap within the retention window)`);
  if (r.dmLost) bad.push(`${r.dmLost} acked DMs never reached their recipient: ${r.dmExamples.join("; ")}`);
  if (r.dmDuplicates) bad.push(`${r.dmDuplicates} DMs pushed twice on one connection`);
  if (r.unacked) bad.push(`${r.unacked} sends never acked: ${r.unackedExamples.join("; ")}`);
  if (r.unresumed) bad.push(`${r.unresumed} users not resumed at the end`);
  if (r.errorCount) bad.push(`${r.errorCount} client errors: ${r.errors.slice(0, 5).join("; ")}`);
  const bounds = boundsFor(r.minutes);
  const redis = r.resources.redis;
  if (!redis || redis.samplesAfterWarmup < 5) bad.push("too few Redis memory samples after the warm-up");
  else if (redis.growthPer10MinPct >= bounds.redisPctPer10Min) {
    bad.push(`Redis used_memory grows ${redis.slopeKiBPerMin} KiB/min after the warm-up: ${redis.growthPer10MinPct}% of its level per 10 min (bound ${bounds.redisPctPer10Min}%)`);
  }
  for (const g of r.resources.gateways) {
    if (g.samplesAfterWarmup < 5) bad.push(`too few RSS samples of ${g.id} after the warm-up`);
    else if (g.growthPer10MinPct >= bounds.rssPctPer10Min) {
      bad.push(`gateway ${g.id} RSS grows ${g.slopeKiBPerMin} KiB/min after the warm-up: ${g.growthPer10MinPct}% of its level per 10 min (bound ${bounds.rssPctPer10Min}%)`);
    }
  }
  return bad;
}

export function printResult(r, log = console.log) {
  const s = r.settings;
  log(`soak: ${r.minutes} min, ${r.users} users, ~${r.rate} msg/s, ${r.rooms} rooms; gateways: ${s.gatewayArgs} ` +
    `(streams and idempotency records saturate after ${s.windowS} s); warm-up ${s.warmupS} s; samples every ${s.sampleS} s`);
  log(`soak: sent ${r.sent}: room messages acked ${r.roomMessagesAcked}, DMs acked ${r.dmsAcked} (${r.ackedPerSecond}/s), unacked ${r.unacked}, ` +
    `resent with the same clientId ${r.resent} (failed tries ${JSON.stringify(r.sendErrors)}; ${r.resentStoredByEarlierTry} of them stored by a try whose ack was lost)`);
  log(`soak: rooms: ${r.memberships} memberships, expected deliveries ${r.expectedDeliveries}, received live ${r.deliveredLive} + by resume ${r.deliveredByResume}; ` +
    `lost ${r.lost}, duplicates ${r.duplicates}, order errors ${r.orderErrors}, truncated resumes ${r.truncatedResumes}, ` +
    `missing in the stream ${r.missingInHistory}, clientIds stored twice ${r.duplicateStores}; live latency p50 ${r.liveLatencyMs.p50} ms, p99 ${r.liveLatencyMs.p99} ms, max ${r.liveLatencyMs.max} ms`);
  log(`soak: DMs: lost ${r.dmLost}, via catch-up ${r.dmViaCatchup} (of them while the recipient was connected: ${r.dmCatchupWhileConnected}), ` +
    `pushed twice ${r.dmDuplicates}, dm:read ${r.dmReads}`);
  log(`soak: reconnects ${r.reconnects} (${r.reconnectsWithSendInFlight} with a send in flight) by ${r.usersReconnected}/${r.users} users, resumed ${r.resumed}, ` +
    `not resumed ${r.unresumed}, resume p50 ${r.resumeMs.p50} ms p99 ${r.resumeMs.p99} ms max ${r.resumeMs.max} ms; room switches ${r.roomSwitches}; stray deliveries ${r.strayDeliveries}`);
  const fmt = (x) => `start ${x.startKiB}, after warm-up ${x.afterWarmupKiB}, end ${x.endKiB}, max ${x.maxKiB} KiB; slope ${x.slopeKiBPerMin} KiB/min ` +
    `(${x.growthPer10MinPct}% of level ${x.levelKiB} KiB per 10 min, ${x.growthOverRunPct}% over the post-warm-up span)`;
  for (const g of r.resources.gateways) log(`soak: ${g.id} RSS: ${fmt(g)}`);
  log(`soak: Redis used_memory: ${fmt(r.resources.redis)}; keys ${r.resources.redisKeys.start} -> ${r.resources.redisKeys.end} (max ${r.resources.redisKeys.max})`);
  if (r.errorCount) log(`soak: ${r.errorCount} client errors, e.g. ${r.errors.slice(0, 3).join(" | ")}`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (name, def) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? Number(process.argv[i + 1]) : def;
  };
  let commit = "";
  try {
    commit = execFileSync("git", ["-C", root, "rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim();
  } catch {}
  const startedAt = new Date().toISOString();
  const r = await runSoak({ minutes: arg("minutes", 30), users: arg("users", 60), rate: arg("rate", 15), rooms: arg("rooms", 12), warmup: arg("warmup", 0.2) });
  printResult(r);
  console.log(JSON.stringify({ startedAt, endedAt: new Date().toISOString(), scriptCheckout: commit, bin: process.env.CONFAB_BIN ?? null, ...r }));
  const bad = verdict(r);
  for (const b of bad) console.log(`soak: FAILED: ${b}`);
  if (!bad.length) console.log("soak: passed");
  process.exit(bad.length ? 1 : 0);
}
