// Real-process cluster for the JavaScript tests: a redis-server, several confab
// gateways and nginx (running the repository's nginx.conf with ports rewritten), each
// started on free loopback ports and stopped by PID, also when a test fails.
import { execFile, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { confabBin, testEnv } from "./server.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Order of two message ids "<ms>-<seq>" (docs/protocol.md: compare as integer pairs). */
export function cmpId(a, b) {
  const [am, as] = a.split("-").map(Number);
  const [bm, bs] = b.split("-").map(Number);
  return am - bm || as - bs;
}

/** A free TCP port on 127.0.0.1 (bind port 0, read it, close). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Resolve once something accepts TCP connections on port (bounded). */
export async function waitForPort(port, timeoutMs = 10000) {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const ok = await new Promise((res) => {
      const s = net.connect(port, "127.0.0.1");
      s.once("connect", () => { s.destroy(); res(true); });
      s.once("error", () => res(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on ${port} after ${timeoutMs} ms`);
}

/** A child process we own: stop() sends a signal and waits for its exit. */
export class Proc {
  constructor(name, cmd, args, opts = {}) {
    this.name = name;
    this.log = "";
    this.child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], ...opts });
    this.pid = this.child.pid;
    this.exited = new Promise((res) => this.child.once("exit", (code, sig) => res({ code, sig })));
    const keep = (d) => {
      this.log += d;
      if (this.log.length > 200000) this.log = this.log.slice(-100000);
    };
    this.child.stdout.on("data", keep);
    this.child.stderr.on("data", keep);
  }
  get running() {
    return this.child.exitCode === null && this.child.signalCode === null;
  }
  async stop(signal = "SIGTERM", graceMs = 12000) {
    if (!this.running) return this.exited;
    this.child.kill(signal);
    const t = setTimeout(() => this.running && this.child.kill("SIGKILL"), graceMs);
    const r = await this.exited;
    clearTimeout(t);
    return r;
  }
  kill9() {
    return this.stop("SIGKILL", 0);
  }
}

export async function startRedis({ port, appendonly = false, dir } = {}) {
  port = port ?? (await freePort());
  dir = dir ?? mkdtempSync(path.join(tmpdir(), "confab-redis-"));
  const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--dir", dir,
    "--appendonly", appendonly ? "yes" : "no", "--daemonize", "no"];
  const proc = new Proc("redis", "redis-server", args);
  await waitForPort(port);
  return Object.assign(proc, { port, dir, url: `redis://127.0.0.1:${port}/` });
}

/** Start one gateway on a free port; resolves once it prints its listening line. */
export async function startGateway({ redisUrl, id, port, args = [], env = {} }) {
  port = port ?? (await freePort());
  const cliArgs = ["serve", "--bind", `127.0.0.1:${port}`, ...args];
  if (redisUrl) cliArgs.push("--redis", redisUrl);
  if (id) cliArgs.push("--gateway-id", id);
  const proc = new Proc(`gateway ${id ?? port}`, confabBin(), cliArgs, {
    cwd: root,
    env: testEnv(env),
  });
  const until = Date.now() + 20000;
  while (!/listening on http/.test(proc.log)) {
    if (!proc.running) throw new Error(`gateway exited early:\n${proc.log}`);
    if (Date.now() > until) {
      await proc.kill9();
      throw new Error(`gateway did not start:\n${proc.log}`);
    }
    await sleep(25);
  }
  return Object.assign(proc, { port, id, url: `http://127.0.0.1:${port}` });
}

/**
 * Run the repository's nginx.conf in front of gatewayPorts: only the listen ports, the
 * upstream server lines, the certificate paths (a throw-away self-signed certificate
 * from deploy/dev-cert.sh, for 127.0.0.1) and the include path (made absolute) are
 * rewritten. `url` is the plain HTTP listener, `httpsUrl` the TLS one (`certFile`
 * is its certificate, to trust as a CA).
 */
export async function startNginx({ gatewayPorts, port, tlsPort } = {}) {
  port = port ?? (await freePort());
  tlsPort = tlsPort ?? (await freePort());
  const prefix = mkdtempSync(path.join(tmpdir(), "confab-nginx-"));
  mkdirSync(path.join(prefix, "logs"));
  mkdirSync(path.join(prefix, "tmp"));
  const tls = path.join(prefix, "tls");
  execFileSync("bash", [path.join(root, "deploy", "dev-cert.sh"), tls], { stdio: "pipe", timeout: 20000 });
  let conf = readFileSync(path.join(root, "nginx.conf"), "utf8");
  const rewrite = (from, to) => {
    if (!from.test(conf)) throw new Error(`nginx.conf no longer matches ${from}`);
    conf = conf.replace(from, to);
  };
  rewrite(/^(\s*)listen 127\.0\.0\.1:8080;/m, `$1listen 127.0.0.1:${port};`);
  rewrite(/^(\s*)listen 127\.0\.0\.1:8443 ssl/m, `$1listen 127.0.0.1:${tlsPort} ssl`);
  rewrite(/^(\s*)ssl_certificate \/etc\/nginx\/tls\/fullchain\.pem;/m, `$1ssl_certificate ${tls}/fullchain.pem;`);
  rewrite(/^(\s*)ssl_certificate_key \/etc\/nginx\/tls\/privkey\.pem;/m, `$1ssl_certificate_key ${tls}/privkey.pem;`);
  rewrite(/^(\s*)include deploy\/nginx\//gm, `$1include ${root}/deploy/nginx/`);
  // Keep the parameters nginx.conf gives its upstream servers.
  const params = conf.match(/        server 127\.0\.0\.1:300\d([^;\n]*);/)?.[1] ?? "";
  const servers = gatewayPorts
    .map((p) => `        server 127.0.0.1:${p}${params};`)
    .join("\n");
  conf = conf.replace(/(        server 127\.0\.0\.1:300\d[^\n]*\n)+/, servers + "\n");
  if (!conf.includes(`listen 127.0.0.1:${port};`) || gatewayPorts.some((p) => !conf.includes(`:${p} `))) {
    throw new Error("nginx.conf no longer has the expected listen/upstream lines");
  }
  const file = path.join(prefix, "nginx.conf");
  writeFileSync(file, conf);
  const bin = process.env.NGINX_BIN || "/usr/sbin/nginx";
  const proc = new Proc("nginx", bin, ["-p", prefix, "-c", file, "-g", "daemon off;"]);
  try {
    await waitForPort(port);
    await waitForPort(tlsPort);
  } catch (e) {
    await proc.kill9();
    let errorLog = "";
    try {
      errorLog = readFileSync(path.join(prefix, "logs", "error.log"), "utf8");
    } catch {}
    rmSync(prefix, { recursive: true, force: true });
    throw new Error(`nginx did not start: ${e.message}\n${proc.log}${errorLog}`);
  }
  return Object.assign(proc, {
    port,
    tlsPort,
    prefix,
    url: `http://127.0.0.1:${port}`,
    httpsUrl: `https://127.0.0.1:${tlsPort}`,
    certFile: path.join(tls, "fullchain.pem"),
    cleanup: () => rmSync(prefix, { recursive: true, force: true }),
  });
}

/** Run one Redis command with redis-cli; resolves to its raw output lines. */
export function redisCli(port, ...args) {
  return new Promise((resolve, reject) => {
    execFile("redis-cli", ["-p", String(port), "--raw", ...args.map(String)], { timeout: 5000 },
      (err, stdout) => (err ? reject(err) : resolve(stdout.trimEnd().split("\n"))));
  });
}

/** Poll fn until it returns truthy (bounded). */
export async function eventually(fn, timeoutMs, what) {
  const until = Date.now() + timeoutMs;
  let last;
  while (Date.now() < until) {
    last = await fn();
    if (last) return last;
    await sleep(100);
  }
  throw new Error(`timed out after ${timeoutMs} ms: ${what} (last: ${JSON.stringify(last)})`);
}

/** Stop every process in the list that is still running (reverse order). */
export async function stopAll(procs) {
  for (const p of [...procs].reverse()) {
    if (p) await p.stop().catch(() => {});
  }
}
