// Chaos run of a real confab cluster: redis-server (AOF), three gateways and nginx,
// many socket.io-client users chatting through nginx at a steady rate while a
// gateway is killed with SIGKILL and restarted, another is drained with SIGTERM and
// restarted, Redis is shut down and started again, and finally all three gateways
// are restarted one after another (a rolling restart).
//
// Every client keeps the id of every message it receives, resumes each room with
// `room:join {since}` after a reconnect, and retries unacked sends with the same
// clientId. At the end: every acked message must be, exactly once and in room order,
// in the log of every member of its room and in the room's history.
//
//   node tests/chaos/chaos.mjs                    # long form: 300 clients, 5 minutes
//   node tests/chaos/chaos.mjs --clients 100 --seconds 40
// The short form runs in `make test` (tests/chaos/chaos.test.mjs).
import { io } from "socket.io-client";
import { startRedis, startGateway, startNginx, redisCli, stopAll } from "../support/cluster.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const cmpId = (a, b) => {
  const [am, as] = a.split("-").map(Number);
  const [bm, bs] = b.split("-").map(Number);
  return am - bm || as - bs;
};

/** One simulated user: a socket.io-client through nginx, resuming and retrying. */
class User {
  constructor(run, i) {
    this.run = run;
    this.name = `chaos${i}`;
    this.rooms = run.rooms.filter((_, k) => k === i % run.rooms.length || k === (i * 7 + 3) % run.rooms.length);
    this.received = new Map(this.rooms.map((r) => [r, []])); // room -> ids in arrival order
    this.lastSeen = new Map(); // room -> greatest id seen
    this.pending = new Map(); // clientId -> {room, text, firstTry}
    this.seq = 0;
    this.outOfOrder = 0;
    this.disconnectedAt = null;
    this.resumeTimes = [];
    this.joinedRooms = new Set();
    const opts = {
      auth: { name: this.name },
      reconnectionDelay: 200,
      reconnectionDelayMax: 1000,
      randomizationFactor: 0.3,
      timeout: 5000,
      extraHeaders: { cookie: `confab_route=chaos-${i}` },
    };
    // Most users on websocket only, every fourth on the default (polling, then upgrade).
    if (i % 4 !== 0) opts.transports = ["websocket"];
    this.socket = io(run.url, opts);
    this.socket.on("message:new", (m) => this.onMessage(m, true));
    this.socket.on("session", () => this.resume());
    this.socket.on("disconnect", () => {
      this.joinedRooms.clear();
      this.disconnectedAt ??= Date.now();
      this.liveMax = new Map();
    });
    this.socket.io.on("reconnect_attempt", () => run.stats.reconnectAttempts++);
    // A refused handshake (e.g. `unavailable` while Redis restarts) is not retried by
    // socket.io-client on its own: retry it.
    this.socket.on("connect_error", () => {
      if (!this.socket.active) setTimeout(() => run.running && this.socket.connect(), 500);
    });
    this.liveMax = new Map();
  }

  onMessage(m, live) {
    const list = this.received.get(m.room);
    if (!list) return;
    list.push(m.id);
    (this.trace ??= []).push(`${m.room} ${m.id} ${live ? "live" : "ack"} conn${this.conn ?? 0} ${this.socket.id ?? "-"}`);
    if (live) {
      // Within one connection, live messages of a room arrive in id order.
      const prev = this.liveMax.get(m.room);
      if (prev && cmpId(m.id, prev) <= 0) this.outOfOrder++;
      this.liveMax.set(m.room, m.id);
    }
    const last = this.lastSeen.get(m.room);
    if (!last || cmpId(m.id, last) > 0) this.lastSeen.set(m.room, m.id);
  }

  /** Rejoin every room once per connection (a `session` event), from the greatest id
   * seen. A resume whose connection went away stops; the next `session` starts over. */
  async resume() {
    const conn = (this.conn = (this.conn ?? 0) + 1);
    const started = this.disconnectedAt;
    for (const room of this.rooms) {
      if (conn !== this.conn) return;
      const since = this.lastSeen.get(room);
      let ack;
      // Retry while this connection lasts (e.g. `unavailable` while Redis restarts),
      // bounded in time.
      const giveUp = Date.now() + 30000;
      while (this.socket.connected && conn === this.conn && Date.now() < giveUp) {
        ack = await this.socket.timeout(5000).emitWithAck("room:join", since ? { room, since } : { room, limit: 1 }).catch(() => null);
        if (ack?.ok) break;
        await sleep(300);
      }
      if (!ack?.ok || conn !== this.conn) return; // disconnected again: the next session resumes
      if (ack.truncated) this.run.stats.truncated++;
      // The ack holds everything up to the join point; drop the initial page of a
      // first join (history before the run is not part of the check).
      if (since) for (const m of ack.messages) this.onMessage(m, false);
      else if (ack.messages.length) this.lastSeen.set(room, ack.messages.at(-1).id);
      this.joinedRooms.add(room);
    }
    if (started) {
      this.resumeTimes.push(Date.now() - started);
      this.disconnectedAt = null;
    }
  }

  /** One tick of the steady send rate: retry the oldest pending send, or send a new one.
   * At most one send of a user is in flight (like a UI that waits for its ack). */
  async tick() {
    if (this.busy) return;
    this.busy = true;
    try {
      await this.tickOnce();
    } finally {
      this.busy = false;
    }
  }

  async tickOnce() {
    if (!this.socket.connected || this.joinedRooms.size < this.rooms.length) return;
    let clientId, item;
    if (this.pending.size) {
      [clientId, item] = this.pending.entries().next().value;
    } else {
      clientId = `${this.name}-${this.seq++}`;
      item = { room: this.rooms[this.seq % this.rooms.length], text: `${clientId} t=${Date.now()}` };
      this.pending.set(clientId, item);
      this.run.stats.sent++;
    }
    const ack = await this.socket.timeout(5000).emitWithAck("message:send", { room: item.room, text: item.text, clientId }).catch(() => null);
    if (ack?.ok) {
      this.pending.delete(clientId);
      this.run.acked.push({ room: item.room, id: ack.message.id, clientId });
    } else {
      this.run.stats.failedAttempts++;
      if (ack?.error?.code) this.run.stats.errorCodes[ack.error.code] = (this.run.stats.errorCodes[ack.error.code] ?? 0) + 1;
    }
  }
}

export async function runChaos({ clients = 300, seconds = 300, rooms = 8, rate = 50, log = console.log } = {}) {
  const procs = [];
  const stats = { sent: 0, failedAttempts: 0, reconnectAttempts: 0, truncated: 0, errorCodes: {} };
  const run = { rooms: Array.from({ length: rooms }, (_, i) => `chaos-${i}`), acked: [], stats, running: true };
  const users = [];
  const gwArgs = ["--gateway-ttl-ms", "3000", "--rate-limit", "100", "--rate-burst", "100", "--shutdown-deadline-ms", "5000"];
  try {
    const redis = await startRedis({ appendonly: true });
    procs.push(redis);
    const gw = [];
    for (const id of ["gw1", "gw2", "gw3"]) {
      const g = await startGateway({ redisUrl: redis.url, id, args: gwArgs });
      gw.push(g);
      procs.push(g);
    }
    const nginx = await startNginx({ gatewayPorts: gw.map((g) => g.port) });
    procs.push(nginx);
    run.url = nginx.url;

    for (let i = 0; i < clients; i++) users.push(new User(run, i));
    const t0 = Date.now();
    const until = t0 + 30000;
    while (users.some((u) => u.joinedRooms.size < u.rooms.length)) {
      if (Date.now() > until) throw new Error("clients did not all join within 30 s");
      await sleep(100);
    }
    log(`chaos: ${clients} clients joined ${rooms} rooms in ${Date.now() - t0} ms`);

    // Steady open-loop sending: `rate` messages per second spread over all users.
    const tickMs = Math.max(10, Math.round(1000 / rate));
    let next = 0;
    const sender = setInterval(() => {
      const u = users[next++ % users.length];
      u.tick().catch(() => {});
    }, tickMs);

    const at = (frac) => t0 + 3000 + frac * (seconds * 1000 - 3000);
    const waitUntil = async (t) => { while (Date.now() < t) await sleep(50); };
    const faults = [];
    const fault = async (name, fn) => {
      const started = Date.now();
      await fn();
      faults.push(`${name} (+${Math.round((started - t0) / 1000)} s)`);
      log(`chaos: ${name} at +${Math.round((started - t0) / 1000)} s`);
    };
    await waitUntil(at(0.15));
    await fault("kill -9 gateway 3", () => gw[2].kill9());
    await sleep(3000);
    await fault("restart gateway 3", async () => {
      gw[2] = await startGateway({ redisUrl: redis.url, id: "gw3b", port: gw[2].port, args: gwArgs });
      procs.push(gw[2]);
    });
    await waitUntil(at(0.4));
    await fault("SIGTERM (drain) gateway 2", () => gw[1].stop("SIGTERM"));
    await sleep(2000);
    await fault("restart gateway 2", async () => {
      gw[1] = await startGateway({ redisUrl: redis.url, id: "gw2b", port: gw[1].port, args: gwArgs });
      procs.push(gw[1]);
    });
    await waitUntil(at(0.55));
    await fault("Redis SHUTDOWN", async () => {
      await redisCli(redis.port, "SHUTDOWN").catch(() => {});
      await redis.exited;
    });
    await sleep(2000);
    await fault("restart Redis", async () => {
      const again = await startRedis({ port: redis.port, appendonly: true, dir: redis.dir });
      procs.push(again);
    });
    // Rolling restart: drain and restart every gateway, one after another.
    await waitUntil(at(0.7));
    for (let k = 0; k < gw.length; k++) {
      await fault(`rolling restart: drain gateway ${k + 1}`, () => gw[k].stop("SIGTERM"));
      gw[k] = await startGateway({ redisUrl: redis.url, id: `gw${k + 1}r`, port: gw[k].port, args: gwArgs });
      procs.push(gw[k]);
      await sleep(1500);
    }
    await waitUntil(t0 + seconds * 1000);
    clearInterval(sender);

    // Let pending sends finish (retries with their clientId) and everyone reconnect.
    const settle = Date.now() + 30000;
    while (Date.now() < settle) {
      const busy = users.filter((u) => u.pending.size || !u.socket.connected || u.joinedRooms.size < u.rooms.length);
      if (!busy.length) break;
      for (const u of busy) await u.tick().catch(() => {});
      await sleep(200);
    }
    await sleep(2000);
    run.running = false;

    // ---- verification ----
    const members = new Map(run.rooms.map((r) => [r, users.filter((u) => u.rooms.includes(r))]));
    let lost = 0, duplicates = 0, delivered = 0, orderErrors = 0;
    const lostExamples = [];
    const dupExamples = [];
    const ackedByRoom = new Map(run.rooms.map((r) => [r, []]));
    for (const a of run.acked) ackedByRoom.get(a.room).push(a.id);
    for (const u of users) {
      orderErrors += u.outOfOrder;
      for (const [room, ids] of u.received) {
        delivered += ids.length;
        const unique = new Set(ids);
        duplicates += ids.length - unique.size;
        if (ids.length !== unique.size) {
          const seenIds = new Set();
          for (const id of ids) {
            if (seenIds.has(id) && dupExamples.length < 5) {
              dupExamples.push(`${u.name}: ${u.trace.filter((t) => t.includes(` ${id} `)).join(" | ")}`);
            }
            seenIds.add(id);
          }
        }
        for (const id of ackedByRoom.get(room)) {
          if (!unique.has(id)) {
            lost++;
            if (lostExamples.length < 5) lostExamples.push(`${u.name} missing ${room} ${id}`);
          }
        }
      }
    }
    // History: every acked message, once, in id order. Read it through one client.
    const reader = users.find((u) => u.socket.connected);
    let missingInHistory = 0;
    for (const room of run.rooms) {
      if (!reader.rooms.includes(room)) await reader.socket.timeout(5000).emitWithAck("room:join", { room, limit: 1 });
      const hist = [];
      let before;
      for (let page = 0; page < 1000; page++) {
        const ack = await reader.socket.timeout(10000).emitWithAck("message:history", { room, limit: 200, ...(before ? { before } : {}) });
        hist.unshift(...ack.messages.map((m) => m.id));
        if (!ack.hasMore || !ack.messages.length) break;
        before = ack.messages[0].id;
      }
      for (let k = 1; k < hist.length; k++) if (cmpId(hist[k - 1], hist[k]) >= 0) orderErrors++;
      const inHist = new Set(hist);
      for (const id of ackedByRoom.get(room)) if (!inHist.has(id)) missingInHistory++;
      if (new Set(ackedByRoom.get(room)).size !== ackedByRoom.get(room).length) duplicates++;
    }
    const resumeTimes = users.flatMap((u) => u.resumeTimes);
    const result = {
      clients, rooms, seconds, rate,
      sent: stats.sent,
      acked: run.acked.length,
      unacked: users.reduce((n, u) => n + u.pending.size, 0),
      expectedDeliveries: run.acked.reduce((n, a) => n + members.get(a.room).length, 0),
      delivered,
      lost,
      duplicates,
      orderErrors,
      missingInHistory,
      truncatedResumes: stats.truncated,
      failedSendAttempts: stats.failedAttempts,
      errorCodes: stats.errorCodes,
      reconnects: resumeTimes.length,
      maxResumeMs: resumeTimes.length ? Math.max(...resumeTimes) : 0,
      faults,
      lostExamples,
      dupExamples,
    };
    return result;
  } finally {
    run.running = false;
    for (const u of users) u.socket.close();
    await stopAll(procs);
  }
}

function printResult(r) {
  console.log(`chaos: sent ${r.sent}, acked ${r.acked}, unacked ${r.unacked}, delivered ${r.delivered} ` +
    `(expected ≥ ${r.expectedDeliveries}), lost ${r.lost}, duplicates ${r.duplicates}, order errors ${r.orderErrors}, ` +
    `missing in history ${r.missingInHistory}, reconnects ${r.reconnects}, max time to resume ${r.maxResumeMs} ms`);
  console.log(`chaos: failed send attempts (retried) ${r.failedSendAttempts} ${JSON.stringify(r.errorCodes)}; faults: ${r.faults.join(", ")}`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (name, def) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? Number(process.argv[i + 1]) : def;
  };
  const r = await runChaos({ clients: arg("clients", 300), seconds: arg("seconds", 300), rooms: arg("rooms", 8), rate: arg("rate", 50) });
  printResult(r);
  console.log(JSON.stringify(r));
  process.exit(r.lost === 0 && r.missingInHistory === 0 && r.orderErrors === 0 ? 0 : 1);
}

export { printResult };
