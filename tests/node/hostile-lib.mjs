// Helpers for tests/node/hostile.test.mjs: talk to the server the way an attacker
// does (raw TCP, raw HTTP, raw websocket frames, raw Engine.IO / Socket.IO packets).
// Not a test file itself (the runner only picks up *.test.mjs). Loopback only.
import net from "node:net";
import crypto from "node:crypto";
import { readFileSync } from "node:fs";
import WebSocket from "ws";

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The resident set size of process `pid`, MiB (VmRSS of /proc/<pid>/status). */
export function rssMiB(pid) {
  const s = readFileSync(`/proc/${pid}/status`, "utf8");
  const m = s.match(/VmRSS:\s+(\d+)\s+kB/);
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) / 1024;
}

/** The Engine.IO path with a query (`EIO=4&transport=polling` by default). */
export function eioPath(query = "EIO=4&transport=polling") {
  return `/socket.io/?${query}`;
}

/** Parse what an HTTP/1.1 server wrote; `complete` once the whole response is there. */
export function parseHttp(raw) {
  const end = raw.indexOf("\r\n\r\n");
  if (end < 0) return { complete: false, raw };
  const head = raw.subarray(0, end).toString("latin1");
  const [statusLine, ...lines] = head.split("\r\n");
  const status = Number(statusLine.split(" ")[1]);
  const headers = {};
  for (const l of lines) {
    const i = l.indexOf(":");
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  let body = raw.subarray(end + 4);
  let complete = status === 101;
  if (!complete && headers["content-length"] !== undefined) {
    const n = Number(headers["content-length"]);
    complete = body.length >= n;
    body = body.subarray(0, n);
  } else if (!complete && /chunked/i.test(headers["transfer-encoding"] ?? "")) {
    complete = body.subarray(-5).toString() === "0\r\n\r\n";
    if (complete) body = dechunk(body);
  }
  return { complete, status, headers, body, raw };
}

function dechunk(buf) {
  const out = [];
  let i = 0;
  while (i < buf.length) {
    const nl = buf.indexOf("\r\n", i);
    const n = parseInt(buf.subarray(i, nl).toString(), 16);
    if (!n) break;
    out.push(buf.subarray(nl + 2, nl + 2 + n));
    i = nl + 2 + n + 2;
  }
  return Buffer.concat(out);
}

/**
 * Send raw bytes on a fresh TCP connection and read the answer. Resolves (never
 * rejects) to {status?, headers?, body?, json?, how: "complete"|"closed"|"error"|
 * "timeout", error?, ms}. A request the server answers early (413) and closes may
 * end in "error" (EPIPE / reset) before the status could be read.
 */
export function rawHttp(port, data, { timeoutMs = 3000, keepOpen = false } = {}) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const sock = net.connect(port, "127.0.0.1");
    const chunks = [];
    let done = false;
    const finish = (how, error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const raw = Buffer.concat(chunks);
      const r = parseHttp(raw);
      let json;
      try {
        json = r.body?.length ? JSON.parse(r.body.toString("utf8")) : undefined;
      } catch {
        json = undefined;
      }
      if (!keepOpen) sock.destroy();
      resolve({ ...r, json, how, error: error?.code ?? error?.message, ms: Date.now() - t0, sock });
    };
    const timer = setTimeout(() => finish("timeout"), timeoutMs);
    sock.on("data", (d) => {
      chunks.push(d);
      if (parseHttp(Buffer.concat(chunks)).complete) finish("complete");
    });
    sock.on("end", () => finish("closed"));
    sock.on("close", () => finish("closed"));
    sock.on("error", (e) => finish("error", e));
    sock.on("connect", () => {
      for (const part of Array.isArray(data) ? data : [data]) sock.write(part);
    });
  });
}

/** A GET/POST request head (HTTP/1.1, Connection: close unless given). */
export function httpRequest(method, path, { headers = {}, body } = {}) {
  const h = { Host: "127.0.0.1", Connection: "close", ...headers };
  if (body !== undefined) h["Content-Length"] = Buffer.byteLength(body);
  const head = `${method} ${path} HTTP/1.1\r\n${Object.entries(h)
    .map(([k, v]) => `${k}: ${v}`)
    .join("\r\n")}\r\n\r\n`;
  return body === undefined ? head : [head, body];
}

/** A valid websocket upgrade request head (override or drop headers with `headers`, null drops). */
export function wsUpgradeRequest(path, headers = {}) {
  const base = {
    Host: "127.0.0.1",
    Upgrade: "websocket",
    Connection: "Upgrade",
    "Sec-WebSocket-Key": crypto.randomBytes(16).toString("base64"),
    "Sec-WebSocket-Version": "13",
  };
  const all = { ...base, ...headers };
  return `GET ${path} HTTP/1.1\r\n${Object.entries(all)
    .filter(([, v]) => v !== null)
    .map(([k, v]) => `${k}: ${v}`)
    .join("\r\n")}\r\n\r\n`;
}

/** Engine.IO polling handshake over fetch; resolves to the open packet's object. */
export async function eioHandshake(url) {
  const r = await fetch(`${url}${eioPath()}`, { signal: AbortSignal.timeout(5000) });
  const text = await r.text();
  if (r.status !== 200 || text[0] !== "0") throw new Error(`handshake: ${r.status} ${text}`);
  return JSON.parse(text.slice(1));
}

/** fetch that never throws: {status, json, text, error}. */
export async function tryFetch(url, init = {}) {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(5000), ...init });
    const text = await r.text();
    let json;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: r.status, text, json, headers: r.headers };
  } catch (e) {
    return { error: String(e?.cause?.code ?? e?.cause?.message ?? e?.message ?? e) };
  }
}

// ---- websocket frames by hand ---------------------------------------------------

/** A client frame: FIN + opcode, masked unless `mask: false`; `rsv` sets RSV bits. */
export function wsFrame(opcode, payload, { mask = true, fin = true, rsv = 0, claimLen } = {}) {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload ?? "");
  const len = claimLen ?? data.length;
  const head = [(fin ? 0x80 : 0) | (rsv << 4) | opcode];
  const m = mask ? 0x80 : 0;
  if (len < 126) head.push(m | len);
  else if (len <= 0xffff) head.push(m | 126, len >> 8, len & 0xff);
  else {
    head.push(m | 127);
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(len));
    head.push(...b);
  }
  if (!mask) return Buffer.concat([Buffer.from(head), data]);
  const key = crypto.randomBytes(4);
  const out = Buffer.from(data);
  for (let i = 0; i < out.length; i++) out[i] ^= key[i % 4];
  return Buffer.concat([Buffer.from(head), key, out]);
}

/**
 * A websocket opened by hand over TCP (for frames the `ws` package refuses to
 * write). `frames` collects the server's frames ({opcode, text}); `closed` resolves
 * with how the TCP connection ended.
 */
export class HandWs {
  static open(port, path = eioPath("EIO=4&transport=websocket"), timeoutMs = 3000) {
    return new Promise((resolve, reject) => {
      const sock = net.connect(port, "127.0.0.1");
      let buf = Buffer.alloc(0);
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new Error("websocket handshake timeout"));
      }, timeoutMs);
      const onData = (d) => {
        buf = Buffer.concat([buf, d]);
        const r = parseHttp(buf);
        if (!r.complete && buf.indexOf("\r\n\r\n") < 0) return;
        clearTimeout(timer);
        sock.off("data", onData);
        if (r.status !== 101) {
          sock.destroy();
          return reject(new Error(`upgrade answered ${r.status}`));
        }
        const rest = buf.subarray(buf.indexOf("\r\n\r\n") + 4);
        resolve(new HandWs(sock, rest));
      };
      sock.on("data", onData);
      sock.on("error", (e) => {
        clearTimeout(timer);
        reject(e);
      });
      sock.on("connect", () => sock.write(wsUpgradeRequest(path)));
    });
  }

  constructor(sock, rest) {
    this.sock = sock;
    this.buf = Buffer.alloc(0);
    this.frames = [];
    this.waiters = [];
    this.closed = new Promise((res) => {
      const t0 = Date.now();
      sock.on("close", () => res({ ms: Date.now() - t0 }));
    });
    sock.on("error", () => {});
    sock.on("data", (d) => this.#feed(d));
    if (rest.length) this.#feed(rest);
  }

  #feed(d) {
    this.buf = Buffer.concat([this.buf, d]);
    for (;;) {
      const b = this.buf;
      if (b.length < 2) return;
      let len = b[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (b.length < 4) return;
        len = b.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (b.length < 10) return;
        len = Number(b.readBigUInt64BE(2));
        off = 10;
      }
      if (b.length < off + len) return;
      const f = { opcode: b[0] & 0x0f, text: b.subarray(off, off + len).toString("utf8") };
      this.buf = b.subarray(off + len);
      this.frames.push(f);
      this.waiters = this.waiters.filter((w) => !w(f));
    }
  }

  write(buf) {
    if (!this.sock.destroyed) this.sock.write(buf);
  }

  /** The next frame matching pred (one already received counts). */
  waitFrame(pred, timeoutMs = 3000) {
    const have = this.frames.find(pred);
    if (have) return Promise.resolve(have);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("timeout waiting for a frame")), timeoutMs);
      this.waiters.push((f) => {
        if (!pred(f)) return false;
        clearTimeout(timer);
        resolve(f);
        return true;
      });
    });
  }

  /** Resolves to "closed" when the server ends the connection within timeoutMs, else "open". */
  async endedWithin(timeoutMs = 3000) {
    return Promise.race([this.closed.then(() => "closed"), sleep(timeoutMs).then(() => "open")]);
  }

  destroy() {
    this.sock.destroy();
  }
}

// ---- Engine.IO / Socket.IO over a websocket (the `ws` package) ------------------

/**
 * One raw Engine.IO websocket. Collects text messages; answers Engine.IO pings
 * unless `pong: false`; `closed` resolves to {code, ms} when the connection ends.
 */
export class RawWs {
  static open(url, { headers = {}, pong = true, query = "EIO=4&transport=websocket", timeoutMs = 3000 } = {}) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`${url.replace(/^http/, "ws")}${eioPath(query)}`, {
        headers,
        perMessageDeflate: false,
        maxPayload: 64 << 20,
      });
      const timer = setTimeout(() => {
        ws.terminate();
        reject(new Error("websocket open timeout"));
      }, timeoutMs);
      ws.once("unexpected-response", (_req, res) => {
        clearTimeout(timer);
        let body = "";
        res.on("data", (d) => (body += d));
        res.on("end", () => {
          ws.terminate();
          const e = new Error(`unexpected response ${res.statusCode}`);
          e.status = res.statusCode;
          e.body = body;
          reject(e);
        });
      });
      ws.once("error", (e) => {
        clearTimeout(timer);
        reject(e);
      });
      ws.once("open", () => {
        clearTimeout(timer);
        resolve(new RawWs(ws, pong));
      });
    });
  }

  constructor(ws, pong) {
    this.ws = ws;
    this.msgs = [];
    this.waiters = [];
    const t0 = Date.now();
    this.closed = new Promise((res) => ws.once("close", (code) => res({ code, ms: Date.now() - t0 })));
    ws.on("error", () => {});
    ws.on("message", (data, isBinary) => {
      const m = isBinary ? { binary: true, data } : data.toString("utf8");
      if (pong && m === "2") ws.send("3");
      this.msgs.push(m);
      this.waiters = this.waiters.filter((w) => !w(m));
    });
  }

  send(data, opts) {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(data, opts);
  }

  get open() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /** The next message matching pred (already received ones count; consumed). */
  next(pred = () => true, timeoutMs = 3000) {
    const i = this.msgs.findIndex((m) => typeof m === "string" && pred(m));
    if (i >= 0) return Promise.resolve(this.msgs.splice(i, 1)[0]);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timeout waiting for a message; got ${JSON.stringify(this.msgs.slice(-5)).slice(0, 400)}`)), timeoutMs);
      this.waiters.push((m) => {
        if (typeof m !== "string" || !pred(m)) return false;
        clearTimeout(timer);
        const j = this.msgs.indexOf(m);
        if (j >= 0) this.msgs.splice(j, 1);
        resolve(m);
        return true;
      });
    });
  }

  /** "closed" if the server ends the connection within timeoutMs, else "open". */
  async endedWithin(timeoutMs = 3000) {
    return Promise.race([this.closed.then(() => "closed"), sleep(timeoutMs).then(() => "open")]);
  }

  close() {
    try {
      this.ws.terminate();
    } catch {
      /* already gone */
    }
  }
}

/** A raw websocket that completed the Engine.IO open (the `0{...}` packet is consumed). */
export async function eioWs(url, opts) {
  const w = await RawWs.open(url, opts);
  const open = await w.next((m) => m.startsWith("0"));
  w.handshake = JSON.parse(open.slice(1));
  return w;
}

/** A raw Socket.IO client on `/`: Engine.IO open, CONNECT with {name}, `session` consumed. */
export async function sioWs(url, name, opts) {
  const w = await eioWs(url, opts);
  w.send(`40${JSON.stringify({ name })}`);
  const ok = await w.next((m) => m.startsWith("40") || m.startsWith("44"));
  if (!ok.startsWith("40")) throw new Error(`connect refused: ${ok}`);
  await w.next((m) => m.startsWith('42["session"'));
  return w;
}

/** Parse a Socket.IO ACK text (`43<id>[...]`) into {id, args}. */
export function parseAck(m) {
  const x = m.match(/^43(\d+)(\[.*)$/s);
  if (!x) return null;
  return { id: x[1], args: JSON.parse(x[2]) };
}

/** Emit with an ack over a raw Socket.IO websocket; resolves to the ack's first argument. */
export async function rawCall(w, id, event, payload, timeoutMs = 3000) {
  w.send(`42${id}${JSON.stringify(payload === undefined ? [event] : [event, payload])}`);
  const m = await w.next((x) => x.startsWith(`43${id}[`), timeoutMs);
  return parseAck(m).args[0];
}
