// Shared helpers for the node integration suites (tests/node/*.test.mjs).
// Not a test file itself (the runner only picks up *.test.mjs).
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import { startServer, connect, call, waitFor, collect, sleep } from "../support/server.mjs";

export { startServer, connect, call, waitFor, collect, sleep, io };

// A per-run token so names and rooms never collide with data from an earlier run
// (in case the server is pointed at a persistent backend).
export const RUN = Math.random().toString(36).slice(2, 7);
let counter = 0;

/** A fresh valid user name: `${prefix}${n}${RUN}` (≤ 32 chars). */
export function uname(prefix = "u") {
  counter += 1;
  const n = `${prefix}${counter}x${RUN}`;
  assert.ok(n.length <= 32, `test bug: name too long ${n}`);
  return n;
}

/** A fresh valid room name: `${prefix}-${n}-${RUN}`. */
export function uroom(prefix = "r") {
  counter += 1;
  return `${prefix}-${counter}-${RUN}`;
}

/**
 * The exact `session` push of a fresh `open`-mode connection (the id is the name; no
 * roles; no `expiresAt`, open identities do not expire).
 */
export function openSession(name, { rooms = ["general"], unread = {}, id = name } = {}) {
  return { user: { id, name, roles: [] }, rooms, unread };
}

/** Assert an `open`-mode `session` push exactly (see openSession). */
export function assertSession(session, name, opts = {}) {
  assert.deepEqual(session, openSession(name, opts), "session shape");
  return session;
}

/** Generous rate limits for suites that send many events from one socket. */
export const FAST = ["--rate-limit", "100000", "--rate-burst", "100000"];

/** Extra server args from the environment (e.g. a backend choice), split on spaces. */
function envArgs() {
  const s = process.env.CONFAB_TEST_ARGS;
  return s ? s.split(/\s+/).filter(Boolean) : [];
}

/**
 * One server plus every socket opened against it, so `stop()` can close them all.
 */
export class Harness {
  constructor(args = []) {
    this.args = args;
    this.sockets = new Set();
    this.server = null;
  }

  async start() {
    this.server = await startServer({ args: [...envArgs(), ...this.args] });
    this.url = this.server.url;
    return this;
  }

  /** Connect with a name (resolves after `session`), tracked for cleanup. */
  async connect(name, opts = {}) {
    const s = await connect(this.url, name, opts);
    this.sockets.add(s);
    return s;
  }

  /**
   * Open a raw socket (not waiting for anything), tracked for cleanup.
   * Extra options are passed to io() as-is (auth included).
   */
  raw(opts = {}) {
    const s = io(this.url, { reconnection: false, forceNew: true, ...opts });
    this.sockets.add(s);
    return s;
  }

  /** Close one socket and wait (bounded) until it is disconnected. */
  async close(s) {
    this.sockets.delete(s);
    if (s.connected) {
      const gone = new Promise((res) => s.once("disconnect", res));
      s.close();
      await Promise.race([gone, sleep(2000)]);
    } else {
      s.close();
    }
  }

  /**
   * Try a handshake that should be refused: resolves to the connect_error Error,
   * rejects if the connection is accepted or nothing happens in time.
   */
  expectRefused(opts, timeoutMs = 5000) {
    const s = this.raw(opts);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        s.close();
        reject(new Error("no connect_error within timeout"));
      }, timeoutMs);
      s.once("connect_error", (e) => {
        clearTimeout(timer);
        s.close();
        resolve(e);
      });
      s.once("connect", () => {
        clearTimeout(timer);
        s.close();
        reject(new Error(`connection was accepted (expected refusal), auth=${JSON.stringify(opts.auth)}`));
      });
    });
  }

  alive() {
    const p = this.server?.proc;
    return !!p && p.exitCode === null && p.signalCode === null;
  }

  async stop() {
    for (const s of this.sockets) s.close();
    this.sockets.clear();
    if (this.server) await this.server.stop();
  }
}

/** Emit with no payload argument at all (only the ack). */
export function callNoPayload(socket, event, timeoutMs = 5000) {
  return socket.timeout(timeoutMs).emitWithAck(event);
}

/** Parse `"<ms>-<seq>"` into [ms, seq] BigInts; throws on a bad format. */
export function parseId(id) {
  assert.equal(typeof id, "string", `id must be a string, got ${JSON.stringify(id)}`);
  assert.match(id, /^\d+-\d+$/, `id format: ${id}`);
  const [ms, seq] = id.split("-");
  return [BigInt(ms), BigInt(seq)];
}

/** Compare two ids as (ms, seq) integer pairs. */
export function cmpId(a, b) {
  const [am, as] = parseId(a);
  const [bm, bs] = parseId(b);
  if (am !== bm) return am < bm ? -1 : 1;
  if (as !== bs) return as < bs ? -1 : 1;
  return 0;
}

export function assertIncreasing(ids, what = "ids") {
  for (let i = 1; i < ids.length; i++) {
    assert.ok(cmpId(ids[i - 1], ids[i]) < 0, `${what} not strictly increasing at ${i}: ${ids[i - 1]} !< ${ids[i]}`);
  }
}

/** Assert a failure ack `{ok:false, error:{code, message}}` with exactly these keys. */
/** The keys of an error object: `rate_limited` also says when to retry. */
function errorKeys(code) {
  return code === "rate_limited" ? ["code", "message", "retryAfterMs"] : ["code", "message"];
}

export function assertError(ack, code, ctx = "") {
  assert.equal(typeof ack, "object", `${ctx} ack must be an object, got ${JSON.stringify(ack)}`);
  assert.notEqual(ack, null, `${ctx} ack is null`);
  assert.deepEqual(Object.keys(ack).sort(), ["error", "ok"], `${ctx} failure ack keys: ${JSON.stringify(ack)}`);
  assert.equal(ack.ok, false, `${ctx} ${JSON.stringify(ack)}`);
  assert.deepEqual(Object.keys(ack.error).sort(), errorKeys(code), `${ctx} error keys: ${JSON.stringify(ack)}`);
  assert.equal(ack.error.code, code, `${ctx} expected code ${code}, got ${JSON.stringify(ack)}`);
  if (code === "rate_limited") assert.ok(ack.error.retryAfterMs > 0, `${ctx} retryAfterMs: ${JSON.stringify(ack)}`);
  assert.equal(typeof ack.error.message, "string");
  assert.ok(ack.error.message.length > 0, "error.message must be non-empty");
}

/** Assert the `error` push for a request sent without an ack. */
export function assertErrorPush(push, event, code) {
  assert.deepEqual(Object.keys(push).sort(), ["error", "event", "ok"], `error push keys: ${JSON.stringify(push)}`);
  assert.equal(push.ok, false);
  assert.equal(push.event, event, JSON.stringify(push));
  assert.deepEqual(Object.keys(push.error).sort(), errorKeys(code), JSON.stringify(push));
  assert.equal(push.error.code, code, JSON.stringify(push));
  assert.equal(typeof push.error.message, "string");
  assert.ok(push.error.message.length > 0);
}

/** Assert a success ack: ok === true, and return it. */
export function assertOk(ack, ctx = "") {
  assert.equal(typeof ack, "object", `${ctx} ack: ${JSON.stringify(ack)}`);
  assert.notEqual(ack, null, `${ctx} ack is null`);
  assert.equal(ack.ok, true, `${ctx} expected ok, got ${JSON.stringify(ack)}`);
  return ack;
}

/** The keys of a Message, in wire order (`clientId` only when the sender gave one). */
export const MESSAGE_KEYS = ["id", "room", "from", "fromId", "text", "ts"];
/** The keys of a DirectMessage, in wire order (`clientId` only when the sender gave one). */
export const DM_KEYS = ["id", "from", "fromId", "to", "text", "ts"];

/**
 * Check a Message object's exact shape and key order, returning it. `fromId` is the
 * sender's user id: in `open` mode (every suite here) it is the name, the default.
 */
export function assertMessage(m, { room, from, fromId = from, text, clientId }) {
  const expected = { id: m.id, room, from, fromId, text, ts: m.ts };
  if (clientId !== undefined) expected.clientId = clientId;
  assert.deepEqual(m, expected, "Message shape");
  assert.deepEqual(Object.keys(m), Object.keys(expected), "Message key order");
  parseId(m.id);
  assert.ok(Number.isInteger(m.ts), `ts must be an integer: ${m.ts}`);
  assert.ok(Math.abs(m.ts - Date.now()) < 5000, `ts ${m.ts} not close to now ${Date.now()}`);
  return m;
}

/**
 * Check a DirectMessage object's exact shape and key order, returning it. `to` is the
 * recipient's user id, `fromId` the sender's (default: `from`, as in `open` mode).
 */
export function assertDm(m, { from, fromId = from, to, text, clientId }) {
  const expected = { id: m.id, from, fromId, to, text, ts: m.ts };
  if (clientId !== undefined) expected.clientId = clientId;
  assert.deepEqual(m, expected, "DirectMessage shape");
  assert.deepEqual(Object.keys(m), Object.keys(expected), "DirectMessage key order");
  parseId(m.id);
  assert.ok(Number.isInteger(m.ts), `ts must be an integer: ${m.ts}`);
  assert.ok(Math.abs(m.ts - Date.now()) < 5000, `ts ${m.ts} not close to now ${Date.now()}`);
  return m;
}

/**
 * Wait for exactly one `event` matching pred on each socket; resolves to the payloads.
 */
export function waitAll(sockets, event, pred, timeoutMs = 5000) {
  return Promise.all(sockets.map((s) => waitFor(s, event, pred, timeoutMs)));
}

/** Join a room and assert success; returns the ack. */
export async function join(socket, room, extra = {}) {
  return assertOk(await call(socket, "room:join", { room, ...extra }), `room:join ${room}`);
}

/** Send a message and assert success; returns the Message. */
export async function send(socket, room, text, extra = {}) {
  const ack = assertOk(await call(socket, "message:send", { room, text, ...extra }), `message:send ${room}`);
  return ack.message;
}

/** Test options used everywhere: every test bounded. */
export const T = { timeout: 20000 };
