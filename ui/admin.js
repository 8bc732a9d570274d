// confab admin status page (/admin): signs in with the identity the chat page
// stored in this browser, asks `admin:status` once, then `admin:watch {on: true}`
// and renders every `admin:status` push. Admins only: anyone else sees why not.
// Plain ES module; every server-provided string is rendered with textContent.
import { io } from "/vendor/socket.io/socket.io.esm.min.js";

// The chat page's storage keys (ui/app.js).
const NAME_KEY = "confab.name";
const TOKEN_KEY = "confab.token";
const ACK_TIMEOUT_MS = 10000;

const $ = (id) => document.getElementById(id);
const ui = {
  conn: $("conn-state"),
  me: $("me"),
  notice: $("notice"),
  status: $("status"),
  updated: $("updated"),
  answeredBy: $("answered-by"),
  interval: $("interval"),
  gatewayCount: $("gateway-count"),
  gateways: $("gateways"),
  backend: $("backend"),
  topRooms: $("top-rooms"),
  moderation: $("moderation"),
};

function h(tag, text, className) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (className) e.className = className;
  return e;
}

function setConn(state) {
  ui.conn.dataset.state = state;
  ui.conn.textContent = state;
}

function notice(text) {
  ui.notice.textContent = text;
  ui.notice.classList.toggle("hidden", !text);
}

function duration(s) {
  if (typeof s !== "number") return "–";
  const d = Math.floor(s / 86400);
  const hh = Math.floor((s % 86400) / 3600);
  const mm = Math.floor((s % 3600) / 60);
  if (d) return `${d}d ${hh}h`;
  if (hh) return `${hh}h ${mm}m`;
  if (mm) return `${mm}m ${s % 60}s`;
  return `${s}s`;
}

function bytes(n) {
  if (typeof n !== "number") return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

const time = (ms) => (typeof ms === "number" ? new Date(ms).toLocaleTimeString() : "–");

function row(cells, className) {
  const tr = h("tr", null, className);
  for (const c of cells) tr.append(h("td", c));
  return tr;
}

function emptyRow(cols, text) {
  const td = h("td", text, "empty");
  td.colSpan = cols;
  const tr = h("tr");
  tr.append(td);
  return tr;
}

function render(s) {
  if (!s || typeof s !== "object" || !Array.isArray(s.gateways)) return;
  notice("");
  ui.status.classList.remove("hidden");
  ui.updated.textContent = time(s.at);
  ui.answeredBy.textContent = s.gateway ?? "";
  ui.interval.textContent = String((s.intervalMs ?? 2000) / 1000);
  const total = s.gatewaysTotal ?? s.gateways.length;
  ui.gatewayCount.textContent = total > s.gateways.length ? `${s.gateways.length} of ${total}` : String(total);

  const staleAfter = 2 * (s.intervalMs ?? 2000);
  ui.gateways.replaceChildren(
    ...s.gateways.map((g) => {
      const tr = row(
        [g.id, g.version, duration(g.uptimeS), g.connections, g.rooms,
          typeof g.msgsPerSec === "number" ? g.msgsPerSec.toFixed(1) : "–",
          typeof g.lagMs === "number" ? `${g.lagMs} ms` : "–", time(g.updatedAt)],
        s.at - g.updatedAt > staleAfter ? "stale" : "",
      );
      tr.dataset.gateway = g.id;
      tr.dataset.testid = "admin-gateway";
      return tr;
    }),
  );

  const b = s.backend ?? {};
  const items = [
    ["kind", b.kind],
    ["health", b.healthy ? "healthy" : `unavailable${b.error ? `: ${b.error}` : ""}`],
  ];
  if (b.kind === "redis") {
    items.push(
      ["version", b.version ?? "–"],
      ["uptime", duration(b.uptimeS)],
      ["memory used", bytes(b.usedMemory)],
      ["memory limit", b.maxmemory ? bytes(b.maxmemory) : b.maxmemory === 0 ? "none" : "–"],
      ["eviction policy", b.maxmemoryPolicy ?? "–"],
      ["round trip", typeof b.roundTripMs === "number" ? `${b.roundTripMs.toFixed(1)} ms` : "–"],
    );
  }
  ui.backend.replaceChildren(
    ...items.flatMap(([k, v]) => {
      const dd = h("dd", v);
      if (k === "health") dd.className = b.healthy ? "health-ok" : "health-bad";
      dd.dataset.field = k;
      return [h("dt", k), dd];
    }),
  );

  const top = s.topRooms ?? [];
  ui.topRooms.replaceChildren(
    ...(top.length ? top.map((r) => row([`#${r.room}`, r.messages])) : [emptyRow(2, "no messages in the last minute")]),
  );

  const mod = s.moderation ?? [];
  ui.moderation.replaceChildren(
    ...(mod.length
      ? mod.map((e) => row([new Date(e.ts).toLocaleString(), e.actor, e.action, e.target ?? "", e.room ? `#${e.room}` : "",
          e.until ? new Date(e.until).toLocaleString() : ""]))
      : [emptyRow(6, "none")]),
  );
}

let denied = false;

function deny(text, socket) {
  denied = true;
  ui.status.classList.add("hidden");
  notice(text);
  socket.disconnect();
  setConn("offline");
}

function start() {
  const token = localStorage.getItem(TOKEN_KEY);
  const name = localStorage.getItem(NAME_KEY);
  const auth = token ? { token } : name ? { name } : null;
  if (!auth) {
    notice("Sign in on the chat page first (as an admin), then come back to /admin.");
    return;
  }
  setConn("connecting");
  const socket = io({ auth });

  socket.on("session", (s) => {
    const u = s?.user;
    if (!u) return;
    ui.me.textContent = u.name ?? u.id;
    ui.me.classList.remove("hidden");
    if (!(u.roles ?? []).includes("admin")) {
      deny(`Admins only: you are signed in as ${u.name ?? u.id}, who is not an admin.`, socket);
    }
  });

  socket.on("connect", async () => {
    setConn("online");
    try {
      const ack = await socket.timeout(ACK_TIMEOUT_MS).emitWithAck("admin:status", {});
      if (denied) return;
      if (ack?.ok !== true) {
        if (ack?.error?.code === "forbidden") {
          deny(`Admins only: ${ack.error.message}.`, socket);
        } else {
          notice(`Status unavailable: ${ack?.error?.message ?? "no answer"}`);
        }
        return;
      }
      render(ack);
      if (denied) return;
      const w = await socket.timeout(ACK_TIMEOUT_MS).emitWithAck("admin:watch", { on: true });
      if (w?.ok !== true) notice(`Live updates unavailable: ${w?.error?.message ?? "no answer"}`);
    } catch (e) {
      if (!denied) notice(`No answer from the server: ${e?.message ?? e}`);
    }
  });

  socket.on("admin:status", (s) => {
    if (!denied) render(s);
  });

  socket.on("disconnect", () => {
    if (ui.conn.dataset.state !== "offline") setConn("reconnecting");
  });

  socket.on("connect_error", (err) => {
    const msg = String(err?.message ?? err);
    if (socket.active) {
      setConn("reconnecting");
      return;
    }
    setConn("offline");
    notice(`Cannot sign in: ${msg}. Sign in again on the chat page.`);
  });
}

start();
