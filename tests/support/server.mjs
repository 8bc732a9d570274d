// Starts a real confab binary on a free loopback port for the JavaScript test suites,
// and stops exactly that process (by PID) when the test is done, also on failure.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { io } from "socket.io-client";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

export function confabBin() {
  if (process.env.CONFAB_BIN) return process.env.CONFAB_BIN;
  const dir = process.env.CARGO_TARGET_DIR || path.join(root, "target");
  return path.join(dir, "debug", "confab");
}

/**
 * The environment of a confab started by the suites: `open` auth mode (id = name;
 * the auth suites pass `--auth`, which overrides it) and no cluster-wide quotas, IP
 * caps or protocol-error cut (the contract suites send fast from one address;
 * tests/node/quota.test.mjs and hostile.test.mjs set them by flags). `env` last.
 */
export function testEnv(env = {}) {
  const dflt = (k, v) => process.env[k] || v;
  return {
    ...process.env,
    CONFAB_AUTH: dflt("CONFAB_AUTH", "open"),
    CONFAB_QUOTA_MESSAGES_PER_USER: dflt("CONFAB_QUOTA_MESSAGES_PER_USER", "off"),
    CONFAB_QUOTA_MESSAGES_PER_IP: dflt("CONFAB_QUOTA_MESSAGES_PER_IP", "off"),
    CONFAB_QUOTA_DMS_PER_USER: dflt("CONFAB_QUOTA_DMS_PER_USER", "off"),
    CONFAB_QUOTA_DMS_PER_IP: dflt("CONFAB_QUOTA_DMS_PER_IP", "off"),
    CONFAB_QUOTA_JOINS_PER_USER: dflt("CONFAB_QUOTA_JOINS_PER_USER", "off"),
    CONFAB_QUOTA_ROOMS_PER_USER: dflt("CONFAB_QUOTA_ROOMS_PER_USER", "off"),
    CONFAB_QUOTA_ROOMS_PER_IP: dflt("CONFAB_QUOTA_ROOMS_PER_IP", "off"),
    CONFAB_QUOTA_CONNECTS_PER_USER: dflt("CONFAB_QUOTA_CONNECTS_PER_USER", "off"),
    CONFAB_QUOTA_CONNECTS_PER_IP: dflt("CONFAB_QUOTA_CONNECTS_PER_IP", "off"),
    CONFAB_MAX_CONNECTIONS_PER_IP: dflt("CONFAB_MAX_CONNECTIONS_PER_IP", "0"),
    // The delivery probe (on by default in cluster mode) would add its own DMs to
    // what the suites count; the tests of the probe turn it on.
    CONFAB_PROBE_INTERVAL_MS: dflt("CONFAB_PROBE_INTERVAL_MS", "0"),
    CONFAB_PROTOCOL_ERRORS_BURST: dflt("CONFAB_PROTOCOL_ERRORS_BURST", "100000"),
    RUST_LOG: dflt("RUST_LOG", "warn"),
    ...env,
  };
}

/**
 * Start `confab serve --bind 127.0.0.1:0` with extra args/env.
 * Resolves to {url, port, proc, stop()} once the server prints its listening line.
 */
export function startServer({ args = [], env = {}, timeoutMs = 15000 } = {}) {
  return new Promise((resolve, reject) => {
    const proc = spawn(confabBin(), ["serve", "--bind", "127.0.0.1:0", ...args], {
      cwd: root,
      env: testEnv(env),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`confab did not start in ${timeoutMs} ms\nstdout: ${out}\nstderr: ${err}`));
    }, timeoutMs);
    proc.stderr.on("data", (d) => {
      err += d;
      if (err.length > 100000) err = err.slice(-50000);
    });
    proc.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/listening on (https?:\/\/[0-9.]+:(\d+))/);
      if (m) {
        clearTimeout(timer);
        const stop = () =>
          new Promise((res) => {
            if (proc.exitCode !== null || proc.signalCode !== null) return res();
            proc.once("exit", () => res());
            proc.kill("SIGTERM");
            setTimeout(() => proc.kill("SIGKILL"), 5000).unref();
          });
        resolve({ url: m[1], port: Number(m[2]), proc, stop, stderr: () => err });
      }
    });
    proc.on("exit", (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`confab exited early (${code ?? sig})\nstdout: ${out}\nstderr: ${err}`));
    });
  });
}

/** Connect a socket.io-client with a name; resolves after `connect` and the `session` event. */
export function connect(url, name, opts = {}) {
  return new Promise((resolve, reject) => {
    const socket = io(url, { auth: { name }, reconnection: false, forceNew: true, ...opts });
    const timer = setTimeout(() => {
      socket.close();
      reject(new Error(`connect timeout for ${name}`));
    }, 10000);
    socket.once("session", (session) => {
      clearTimeout(timer);
      socket.session = session;
      resolve(socket);
    });
    socket.once("connect_error", (e) => {
      clearTimeout(timer);
      socket.close();
      reject(e);
    });
  });
}

/** Emit with an ack and a timeout; resolves to the ack object. */
export function call(socket, event, payload, timeoutMs = 5000) {
  return socket.timeout(timeoutMs).emitWithAck(event, payload);
}

/** Wait for the next `event` on socket that satisfies pred (bounded by timeoutMs). */
export function waitFor(socket, event, pred = () => true, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    const onEvent = (data) => {
      if (!pred(data)) return;
      clearTimeout(timer);
      socket.off(event, onEvent);
      resolve(data);
    };
    const timer = setTimeout(() => {
      socket.off(event, onEvent);
      reject(new Error(`timeout waiting for ${event}`));
    }, timeoutMs);
    socket.on(event, onEvent);
  });
}

/** Collect every `event` on socket into an array (for asserting absence / counts). */
export function collect(socket, event) {
  const items = [];
  socket.on(event, (d) => items.push(d));
  return items;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
