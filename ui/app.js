// confab web client. Plain ES module, no framework.
// Every piece of user-provided text is rendered with textContent / createTextNode.
import { io } from "/vendor/socket.io/socket.io.esm.min.js";

const NAME_KEY = "confab.name"; // open mode: the name is the identity
const TOKEN_KEY = "confab.token"; // guest/jwt modes: the bearer token of this browser's user
const TOKEN_KIND_KEY = "confab.tokenKind"; // "guest" (minted by /api/guest) | "pasted"
const roomsKey = (userId) => `confab.rooms.${userId}`;
const ownedKey = (userId) => `confab.owned.${userId}`; // rooms this user created: {room: {private, announce}}

const ACK_TIMEOUT_MS = 10000;
const TYPING_REFRESH_MS = 3000; // re-send typing:true at most this often while typing
const TYPING_IDLE_MS = 4000; // typing:false after this long without input
const TYPING_DISPLAY_MS = 6000; // forget a remote typist after this long without update
const ROOM_LIST_INTERVAL_MS = 10000;
const HISTORY_PAGE = 50;
const MAX_TEXT = 4000;
const ROOM_RE = /^[a-z0-9][a-z0-9_-]{0,63}$/;
// The server's name rule (Rust char::is_alphanumeric, '_', '.', '-'), after NFC.
const NAME_RE = /^[\p{Alphabetic}\p{N}_.-]{1,32}$/u;
const READ_RETRY_MS = 2000;
const EXPECT_MS = 5000; // how long unread counted by a dm:read push may still arrive as dm:new
const NEAR_TOP_PX = 80;
const NEAR_BOTTOM_PX = 60;
const MUTE_S = 600; // "Mute 10 min"
const INVITE_TOAST_MS = 30000;
const AUDIT_PAGE = 50;

const $ = (id) => document.getElementById(id);
const ui = {
  connState: $("conn-state"),
  me: $("me"),
  logout: $("logout"),
  loginView: $("login-view"),
  nameForm: $("name-form"),
  nameRow: $("name-row"),
  nameInput: $("name-input"),
  tokenRow: $("token-row"),
  tokenInput: $("token-input"),
  tokenToggle: $("token-toggle"),
  loginError: $("login-error"),
  nameSubmit: $("name-submit"),
  expiry: $("expiry"),
  expiryText: $("expiry-text"),
  expiryInput: $("expiry-token-input"),
  expiryError: $("expiry-error"),
  chatView: $("chat-view"),
  roomForm: $("room-form"),
  roomInput: $("room-input"),
  rooms: $("rooms"),
  dms: $("dms"),
  dmsEmpty: $("dms-empty"),
  dmToForm: $("dm-to-form"),
  dmToInput: $("dm-to-input"),
  users: $("users"),
  usersTitle: $("users-title"),
  paneTitle: $("pane-title"),
  paneSubtitle: $("pane-subtitle"),
  leaveRoom: $("leave-room"),
  messages: $("messages"),
  historyStatus: $("history-status"),
  list: $("message-list"),
  emptyState: $("empty-state"),
  typing: $("typing-indicator"),
  composerForm: $("composer-form"),
  composer: $("composer"),
  send: $("send"),
  toast: $("toast"),
  meRole: $("me-role"),
  adminOpen: $("admin-open"),
  roomPrivate: $("room-private"),
  roomAnnounce: $("room-announce"),
  roomSubmit: $("room-submit"),
  paneBadges: $("pane-badges"),
  inviteOpen: $("invite-open"),
  modNotice: $("mod-notice"),
  modNoticeText: $("mod-notice-text"),
  modNoticeClose: $("mod-notice-close"),
  inviteToast: $("invite-toast"),
  inviteToastText: $("invite-toast-text"),
  inviteToastJoin: $("invite-toast-join"),
  inviteToastClose: $("invite-toast-close"),
  modPop: $("mod-pop"),
  modPopTitle: $("mod-pop-title"),
  modMute: $("mod-mute"),
  modKick: $("mod-kick"),
  modRemove: $("mod-remove"),
  modBanRoom: $("mod-ban-room"),
  modBanServer: $("mod-ban-server"),
  invitePanel: $("invite-panel"),
  inviteTitle: $("invite-title"),
  inviteList: $("invite-list"),
  inviteEmpty: $("invite-empty"),
  inviteClose: $("invite-close"),
  confirm: $("confirm"),
  confirmText: $("confirm-text"),
  confirmOk: $("confirm-ok"),
  confirmCancel: $("confirm-cancel"),
  adminDialog: $("admin-dialog"),
  adminClose: $("admin-close"),
  announceForm: $("announce-form"),
  announceInput: $("announce-input"),
  auditRows: $("audit-rows"),
  auditStatus: $("audit-status"),
  auditMore: $("audit-more"),
};

// ---------------------------------------------------------------------------
// Small helpers

function h(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

/** "<ms>-<seq>" -> [ms, seq] as numbers (both fit in a double exactly). */
function parseId(id) {
  const i = typeof id === "string" ? id.indexOf("-") : -1;
  if (i < 0) return [0, 0];
  return [Number(id.slice(0, i)) || 0, Number(id.slice(i + 1)) || 0];
}

function cmpKey(a, b) {
  for (let i = 0; i < 3; i++) {
    if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
  }
  return 0;
}

function compareIds(a, b) {
  return cmpKey([...parseId(a), 0], [...parseId(b), 0]);
}

function formatTime(ts) {
  const d = new Date(ts);
  const now = new Date();
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (d.toDateString() === now.toDateString()) return time;
  const opts = { month: "short", day: "numeric" };
  if (d.getFullYear() !== now.getFullYear()) opts.year = "numeric";
  return `${d.toLocaleDateString([], opts)} ${time}`;
}

/** "HH:MM" of a time in ms (with the date when it is not today). */
function formatUntil(ms) {
  return formatTime(ms);
}

/** The server writes times in refusals in UTC ("until 2026-11-29T19:14:28Z"): show a local clock time. */
function humanize(text) {
  return String(text).replace(/until (\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z)/g, (whole, iso) => {
    const ms = Date.parse(iso);
    return Number.isFinite(ms) ? `until ${formatUntil(ms)}` : whole;
  });
}

class AppError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

const describe = (err) => (err && err.code ? `${humanize(err.message)} (${err.code})` : String(err?.message ?? err));

let toastTimer = null;
function toast(text, kind = "error") {
  ui.toast.textContent = text;
  ui.toast.dataset.kind = kind;
  ui.toast.classList.remove("hidden");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => ui.toast.classList.add("hidden"), 6000);
}
ui.toast.addEventListener("click", () => ui.toast.classList.add("hidden"));

// ---------------------------------------------------------------------------
// State

/** A room or a DM conversation: a timeline of entries sorted by (ms, seq, sub). */
class Conversation {
  constructor(kind, name) {
    this.kind = kind; // "room" | "dm"
    this.name = name; // room name, or the peer's user id (shown by its name: displayName)
    this.entries = []; // {key:[ms,seq,sub], id?, el}
    this.ids = new Set(); // message ids present
    this.clientIds = new Set(); // clientIds of my own messages present
    this.pending = new Map(); // clientId -> pending send
    this.lastId = null; // highest message id seen
    this.noticeSeq = 0;
    this.hasMore = false;
    this.loaded = false;
    this.loadingOlder = false;
    this.unread = 0;
    this.savedScroll = null; // scrollTop when we left the view (null = bottom)
    // rooms only
    this.joined = false;
    this.members = new Map(); // user id -> connections
    this.memberTotal = 0;
    this.typers = new Map(); // user id -> {name, timer}
    // DMs only: read state shared with the server (dm:read)
    this.lastPeerId = null; // greatest id held of a message from the peer
    this.seenUpTo = null; // greatest id from the peer the user has had in front of them
    this.readUpTo = null; // greatest upTo the server confirmed (ack or dm:read push)
    this.readInFlight = false;
    this.needsRead = false; // the server may count unread DMs from the peer
    this.expect = 0; // unread the server counted that have not reached us yet
    this.expectUntil = 0;
  }
  oldestId() {
    for (const e of this.entries) if (e.id) return e.id;
    return null;
  }
}

const state = {
  socket: null,
  auth: null, // {mode: "open"|"guest"|"jwt", guest} from GET /api/auth
  me: null, // {id, name, roles, expiresAt?} (from `session`)
  names: new Map(), // user id -> display name, learned from messages, lists and pushes
  tokenFlow: false, // the login form asks for a pasted token (guest mode: toggled)
  expiryDeadline: null, // when the token expires by this browser's clock (from auth:expiring)
  connectedOnce: false,
  gen: 0, // connection generation, bumped on every connect
  rooms: new Map(), // room -> Conversation
  dms: new Map(), // peer user id -> Conversation
  directory: new Map(), // room -> members (from room:list)
  everyone: new Map(), // online users (users:list without room)
  everyoneTotal: 0,
  view: null, // current Conversation
  typingRoom: null,
  typingSentAt: 0,
  typingIdleTimer: null,
  roomListTimer: null,
  presenceRefreshTimer: null,
  sessionFallbackTimer: null,
  serverKickRetry: 0,
  owned: new Map(), // room -> {private, announce}: rooms this user created (the server tells only the creator)
  modTarget: null, // {room, id, name} of the open moderator menu
  auditOldest: null, // id of the oldest audit entry shown
  inviteTimer: null,
};

// ---------------------------------------------------------------------------
// Socket requests

async function request(event, payload) {
  const socket = state.socket;
  if (!socket || !socket.connected) throw new AppError("offline", "You are offline; try again once reconnected");
  let ack;
  try {
    ack = await socket.timeout(ACK_TIMEOUT_MS).emitWithAck(event, payload);
  } catch (e) {
    if (String(e?.message).includes("disconnected")) throw new AppError("disconnected", "Connection lost");
    throw new AppError("timeout", `No answer from the server (${event})`);
  }
  if (!ack || typeof ack !== "object") throw new AppError("internal", `Malformed answer to ${event}`);
  if (ack.ok !== true) {
    throw new AppError(ack.error?.code ?? "error", ack.error?.message ?? `${event} failed`);
  }
  return ack;
}

// ---------------------------------------------------------------------------
// Connection state

const CONN_LABELS = { connecting: "connecting", online: "online", reconnecting: "reconnecting", offline: "offline" };
function setConn(s, detail = "") {
  ui.connState.dataset.state = s;
  ui.connState.textContent = CONN_LABELS[s] ?? s;
  ui.connState.title = detail;
}

// ---------------------------------------------------------------------------
// Identity: who I am, and the names of the user ids I have seen

const isMe = (id) => !!state.me && id === state.me.id;

/** The sender's user id of a message (`fromId`; a server without ids: the name). */
const senderId = (msg) => (typeof msg?.fromId === "string" && msg.fromId ? msg.fromId : msg?.from);

/** Remembers the display name of a user id; true when it is new or changed. */
function learnName(id, name) {
  if (typeof id !== "string" || !id || typeof name !== "string" || !name) return false;
  if (state.names.get(id) === name) return false;
  state.names.set(id, name);
  return true;
}

/** The display name of a user id (the id itself until a name was seen). */
function displayName(id) {
  if (isMe(id)) return state.me.name;
  return state.names.get(id) ?? id;
}

/** A conversation's display name: the room, or the DM peer's name. */
const convTitle = (conv) => (conv.kind === "dm" ? displayName(conv.name) : conv.name);

// ---------------------------------------------------------------------------
// Credentials: the server's auth mode, guest sign-up, the stored token

/** GET /api/auth -> {mode, guest}; null when the server cannot be reached. */
async function fetchAuth() {
  try {
    const res = await fetch("/api/auth", { cache: "no-store", signal: AbortSignal.timeout(ACK_TIMEOUT_MS) });
    if (res.status === 404) return { mode: "open", guest: false }; // a server without identities
    if (!res.ok) return null;
    const body = await res.json();
    if (!["open", "guest", "jwt"].includes(body?.mode)) return null;
    return { mode: body.mode, guest: !!body.guest };
  } catch {
    return null;
  }
}

/** POST /api/guest {name} -> {token, user}; throws an AppError with the server's code. */
async function signUpGuest(name) {
  let res;
  try {
    res = await fetch("/api/guest", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name }),
      cache: "no-store",
      signal: AbortSignal.timeout(ACK_TIMEOUT_MS),
    });
  } catch (e) {
    throw new AppError("unavailable", `cannot reach the server (${e?.message ?? e})`);
  }
  let body = null;
  try {
    body = await res.json();
  } catch {
    /* not JSON: handled below */
  }
  if (!res.ok) {
    throw new AppError(body?.error?.code ?? `http_${res.status}`, body?.error?.message ?? `sign-in failed (HTTP ${res.status})`);
  }
  if (typeof body?.token !== "string" || typeof body?.user?.id !== "string") {
    throw new AppError("internal", "malformed answer from the server");
  }
  return body;
}

function storeToken(token, kind) {
  localStorage.setItem(TOKEN_KEY, token);
  localStorage.setItem(TOKEN_KIND_KEY, kind);
}

function forgetCredentials() {
  localStorage.removeItem(TOKEN_KEY);
  localStorage.removeItem(TOKEN_KIND_KEY);
  localStorage.removeItem(NAME_KEY);
}

/** The claims of a JWT, unverified (only to know whom to expect until `session`). */
function tokenClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bin = atob(part.padEnd(Math.ceil(part.length / 4) * 4, "="));
    const claims = JSON.parse(new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0))));
    return claims && typeof claims === "object" ? claims : null;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------
// Login / logout

/** A pasted token is asked for (jwt mode always; guest mode after the toggle). */
const wantsToken = () => state.auth?.mode === "jwt" || (state.auth?.mode === "guest" && state.tokenFlow);

function configureLogin() {
  const mode = state.auth?.mode ?? "open";
  const token = wantsToken();
  ui.nameRow.classList.toggle("hidden", token);
  ui.tokenRow.classList.toggle("hidden", !token);
  ui.tokenToggle.classList.toggle("hidden", mode !== "guest");
  ui.tokenToggle.textContent = token ? "Pick a name instead" : "I have a token";
  ui.tokenToggle.setAttribute("aria-expanded", String(token));
  ui.nameSubmit.textContent = token ? "Sign in" : mode === "guest" ? "Join" : "Connect";
}

function showLogin(errorText = "") {
  ui.chatView.classList.add("hidden");
  ui.loginView.classList.remove("hidden");
  ui.me.classList.add("hidden");
  ui.meRole.classList.add("hidden");
  ui.adminOpen.classList.add("hidden");
  ui.logout.classList.add("hidden");
  hideExpiry();
  configureLogin();
  ui.loginError.textContent = errorText;
  ui.nameSubmit.disabled = false;
  (wantsToken() ? ui.tokenInput : ui.nameInput).focus();
}

function showChat() {
  ui.loginView.classList.add("hidden");
  ui.chatView.classList.remove("hidden");
  ui.me.textContent = state.me.name;
  ui.me.title = state.me.id;
  ui.me.classList.remove("hidden");
  ui.logout.classList.remove("hidden");
  const role = hasRole("admin") ? "admin" : hasRole("moderator") ? "moderator" : "";
  ui.meRole.textContent = role;
  ui.meRole.classList.toggle("hidden", !role);
  ui.adminOpen.classList.toggle("hidden", !hasRole("admin"));
}

function resetState() {
  for (const conv of state.rooms.values()) for (const t of conv.typers.values()) clearTimeout(t.timer);
  clearTimeout(state.typingIdleTimer);
  clearInterval(state.roomListTimer);
  clearTimeout(state.presenceRefreshTimer);
  clearTimeout(state.sessionFallbackTimer);
  state.rooms = new Map();
  state.dms = new Map();
  state.directory = new Map();
  state.everyone = new Map();
  state.names = new Map();
  state.view = null;
  state.typingRoom = null;
  state.connectedOnce = false;
  state.me = null;
  state.expiryDeadline = null;
  state.owned = new Map();
  closePopovers();
  hideModNotice();
  hideInviteToast();
  if (ui.adminDialog.open) ui.adminDialog.close();
  if (ui.confirm.open) ui.confirm.close("cancel");
  ui.list.replaceChildren();
  renderAll();
}

/** Drops the current socket (no events of it are handled any more). */
function dropSocket() {
  const socket = state.socket;
  state.socket = null;
  if (socket) {
    socket.removeAllListeners();
    socket.io.removeAllListeners?.();
    socket.disconnect();
  }
}

/** Sign out: disconnect, forget the stored identity, show the login form. */
function logout() {
  stopTyping();
  dropSocket();
  // Give the display name back at once (otherwise it stays held for the server's
  // hold period); best effort: signing out locally never waits for it.
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) {
    fetch("/api/signout", { method: "POST", headers: { authorization: `Bearer ${token}` } }).catch(() => {});
  }
  forgetCredentials();
  resetState();
  setConn("offline");
  showLogin();
}

/** Connects with `auth` ({name} in open mode, else {token}); `me` is whom to expect until `session`. */
function connectAs(auth, me = null) {
  dropSocket();
  resetState();
  state.me = me;
  ui.loginError.textContent = "";
  ui.nameSubmit.disabled = true;
  setConn("connecting");
  const socket = io({ auth });
  state.socket = socket;
  wireSocket(socket);
}

function connectWithToken(token, user = null) {
  const c = user ?? tokenClaims(token);
  const id = c?.id ?? c?.sub;
  connectAs({ token }, typeof id === "string" && id ? { id, name: typeof c.name === "string" ? c.name : id } : null);
}

// Handshake refusals after which the same credential cannot work.
const PERMANENT_REFUSALS = new Set(["unauthorized", "name_taken", "invalid_name", "forbidden", "bad_request"]);

function wireSocket(socket) {
  const mine = (fn) => (...args) => {
    if (state.socket === socket) fn(...args);
  };

  socket.on("connect", mine(() => {
    state.gen++;
    state.serverKickRetry = 0;
    setConn("online");
    // The server warns again on this connection if the token still expires soon (its
    // auth:expiring can come before `session`).
    hideExpiry();
    state.expiryDeadline = null;
    // The server sends `session` right after connecting; do not hang if it does not.
    clearTimeout(state.sessionFallbackTimer);
    state.sessionFallbackTimer = setTimeout(mine(() => {
      if (socket.connected && state.me) onSession(socket, { user: state.me, rooms: ["general"] });
    }), 4000);
  }));

  socket.on("session", mine((session) => {
    clearTimeout(state.sessionFallbackTimer);
    onSession(socket, session);
  }));

  socket.on("connect_error", mine((err) => {
    const msg = String(err?.message ?? err);
    if (socket.active) {
      setConn(state.connectedOnce ? "reconnecting" : "connecting", msg);
      if (!state.connectedOnce) ui.loginError.textContent = `Cannot reach the server (${msg}); retrying…`;
      return;
    }
    // Refused by the server's handshake: socket.io-client will not retry by itself.
    const code = msg.split(":")[0];
    const withToken = typeof socket.auth?.token === "string";
    if (PERMANENT_REFUSALS.has(code) || (!withToken && !state.connectedOnce)) {
      const kind = localStorage.getItem(TOKEN_KIND_KEY);
      dropSocket();
      // A token that is refused (bad, expired, or its name is someone else's now) is
      // of no use any more; a typed name is asked for again.
      if (PERMANENT_REFUSALS.has(code)) forgetCredentials();
      // A pasted token that was refused: ask for another one; else a (new) name.
      state.tokenFlow = withToken && kind === "pasted" && code === "unauthorized";
      resetState();
      setConn("offline", msg);
      showLogin(humanize(msg));
    } else {
      // Transient (e.g. `unavailable` while a server shuts down): keep the identity, retry.
      setConn("reconnecting", msg);
      toast(humanize(msg));
      scheduleManualReconnect(socket);
    }
  }));

  socket.on("disconnect", mine((reason) => {
    clearTimeout(state.sessionFallbackTimer);
    // The server ends our typing state on disconnect; clear local typing displays.
    state.typingRoom = null;
    for (const conv of state.rooms.values()) {
      for (const t of conv.typers.values()) clearTimeout(t.timer);
      conv.typers.clear();
    }
    renderTyping();
    if (reason === "io client disconnect") {
      setConn("offline", reason);
    } else if (reason === "io server disconnect") {
      // The server ends a connection whose token expired: signing in again is needed
      // (reconnecting with it would not help, or only for the server's leeway).
      if (tokenExpired()) {
        sessionExpired();
        return;
      }
      // socket.io-client does not reconnect by itself in this case.
      setConn("reconnecting", "disconnected by the server");
      scheduleManualReconnect(socket);
    } else {
      setConn("reconnecting", reason);
    }
  }));

  socket.io.on("reconnect_attempt", mine((n) => setConn("reconnecting", `attempt ${n}`)));
  socket.io.on("reconnect_failed", mine(() => setConn("offline", "gave up reconnecting")));

  socket.on("message:new", mine(onMessageNew));
  socket.on("dm:new", mine(onDmNew));
  socket.on("dm:read", mine(onDmRead));
  socket.on("typing", mine(onTyping));
  socket.on("room:presence", mine(onPresence));
  socket.on("auth:expiring", mine(onAuthExpiring));
  socket.on("message:deleted", mine(onMessageDeleted));
  socket.on("mod:action", mine((a) => onModAction(socket, a)));
  socket.on("room:invited", mine(onRoomInvited));
  socket.on("announcement", mine(onAnnouncement));
  socket.on("error", mine((e) => {
    const err = e?.error ?? {};
    toast(`${e?.event ?? "request"} failed: ${err.message ?? "error"} (${err.code ?? "?"})`);
  }));

  clearInterval(state.roomListTimer);
  state.roomListTimer = setInterval(mine(() => {
    refreshRoomList();
    refreshCurrentUsers();
  }), ROOM_LIST_INTERVAL_MS);
}

function scheduleManualReconnect(socket) {
  const delay = Math.min(30000, 1000 * 2 ** state.serverKickRetry++);
  setTimeout(() => {
    if (state.socket === socket && !socket.connected) {
      setConn("reconnecting");
      socket.connect();
    }
  }, delay);
}

// ---------------------------------------------------------------------------
// Token expiry (pasted tokens: the user pastes a new one; guest tokens last long)

/** The token's expiry has come (by the server's `auth:expiring` countdown, else `expiresAt`). */
function tokenExpired() {
  const at = state.expiryDeadline ?? state.me?.expiresAt;
  return typeof at === "number" && Date.now() >= at - 2000;
}

function sessionExpired() {
  const pasted = localStorage.getItem(TOKEN_KIND_KEY) === "pasted";
  dropSocket();
  forgetCredentials();
  state.tokenFlow = pasted;
  resetState();
  setConn("offline", "token expired");
  showLogin(pasted ? "Your session has expired: paste a new token." : "Your session has expired: sign in again.");
}

function onAuthExpiring(p) {
  const inMs = Number(p?.inMs);
  if (!Number.isFinite(inMs)) return;
  // A countdown by this browser's clock (the server's may differ).
  state.expiryDeadline = Date.now() + inMs;
  if (localStorage.getItem(TOKEN_KIND_KEY) !== "pasted") return;
  const minutes = Math.max(1, Math.ceil(inMs / 60000));
  const text = `your session expires in ${minutes} ${minutes === 1 ? "minute" : "minutes"} — paste a new token`;
  ui.expiryText.textContent = text;
  ui.expiryError.textContent = "";
  ui.expiry.classList.remove("hidden");
  toast(text, "warn");
}

function hideExpiry() {
  ui.expiry.classList.add("hidden");
  ui.expiryInput.value = "";
  ui.expiryError.textContent = "";
}

ui.expiry.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const token = ui.expiryInput.value.trim();
  if (!token) return;
  const socket = state.socket;
  try {
    const ack = await request("auth:refresh", { token });
    if (state.socket !== socket) return;
    storeToken(token, "pasted");
    socket.auth = { token }; // used by every reconnection from now on
    if (state.me) state.me.expiresAt = ack.expiresAt ?? undefined;
    state.expiryDeadline = null;
    hideExpiry();
    toast("Session extended with the new token", "info");
  } catch (e) {
    ui.expiryError.textContent = e.code ? `${e.code}: ${e.message}` : String(e.message ?? e);
  }
});

/** Runs after every (re)connection, when the server's `session` arrives. */
async function onSession(socket, session) {
  const gen = state.gen;
  const first = !state.connectedOnce;
  state.connectedOnce = true;
  const u = session?.user;
  if (u && typeof u.name === "string" && u.name) {
    const id = typeof u.id === "string" && u.id ? u.id : u.name;
    state.me = { id, name: u.name, roles: Array.isArray(u.roles) ? u.roles : [], expiresAt: u.expiresAt };
  }
  if (!state.me) return; // (a session without a user: nothing to show as "me")
  learnName(state.me.id, state.me.name);
  if (first) loadOwned();
  if (typeof socket.auth?.name === "string") localStorage.setItem(NAME_KEY, state.me.name);
  seedUnread(session?.unread);
  showChat();
  renderAll();

  const names = [];
  const add = (n) => {
    if (typeof n === "string" && !names.includes(n)) names.push(n);
  };
  add("general");
  for (const n of session?.rooms ?? []) add(n);
  for (const [n, conv] of state.rooms) if (conv.joined) add(n);
  if (first) for (const n of loadSavedRooms()) add(n);

  for (const n of names) {
    if (state.gen !== gen || state.socket !== socket) return; // reconnected meanwhile
    for (let attempt = 1; ; attempt++) {
      try {
        await joinRoom(n, { show: false });
        break;
      } catch (e) {
        if (state.gen !== gen || e.code === "disconnected" || e.code === "offline") return;
        if (attempt < 4 && (e.code === "rate_limited" || e.code === "unavailable" || e.code === "timeout")) {
          await sleep(1000 * attempt);
          continue;
        }
        // Gave up: do not pretend to be in a room the server did not let us (re)join.
        const conv = state.rooms.get(n);
        if (conv) dropRoom(conv);
        toast(`Could not join #${n}: ${describe(e)}`);
        break;
      }
    }
    if (!state.view && state.rooms.get(n)?.joined) showConversation(state.rooms.get(n));
  }
  if (state.gen !== gen) return;

  // Refresh what the current view shows, then DM conversations, then resend.
  if (state.view?.kind === "room") refreshUsers(state.view);
  for (const conv of state.dms.values()) {
    // (also those only known from `unread`, by id: their messages tell the peer's name)
    const nameless = state.auth?.mode !== "open" && !state.names.has(conv.name);
    if (conv.loaded || (nameless && state.view !== conv)) loadLatestDm(conv).catch(() => {});
  }
  if (state.view?.kind === "dm" && !state.view.loaded) loadLatestDm(state.view).catch((e) => toast(describe(e)));
  for (const conv of state.dms.values()) markRead(conv); // reads not sent before the disconnect
  for (const conv of [...state.rooms.values(), ...state.dms.values()]) {
    for (const p of conv.pending.values()) if (p.status === "sending") trySend(p);
  }
  refreshRoomList();
  refreshEveryone();
  renderAll();
}

// ---------------------------------------------------------------------------
// Rooms

function loadSavedRooms() {
  try {
    const v = JSON.parse(localStorage.getItem(roomsKey(state.me.id)) ?? "[]");
    return Array.isArray(v) ? v.filter((x) => typeof x === "string") : [];
  } catch {
    return [];
  }
}

function saveRooms() {
  if (!state.me) return;
  const joined = [...state.rooms.values()].filter((c) => c.joined).map((c) => c.name);
  localStorage.setItem(roomsKey(state.me.id), JSON.stringify(joined));
}

const TRANSIENT = new Set(["offline", "disconnected", "timeout", "rate_limited", "unavailable"]);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** room:join; resumes with `since` when we already hold messages of that room. */
async function joinRoom(name, { show = true } = {}) {
  let conv = state.rooms.get(name);
  const isNew = !conv;
  if (isNew) {
    // Create first so that message:new arriving before the ack is kept.
    conv = new Conversation("room", name);
    state.rooms.set(name, conv);
  }
  const since = conv.lastId;
  const payload = { room: name };
  if (since) payload.since = since;
  let ack;
  try {
    ack = await request("room:join", payload);
  } catch (e) {
    if (!TRANSIENT.has(e.code)) {
      // Permanent failure: forget the room.
      dropRoom(conv);
    } else if (isNew && !conv.joined) {
      state.rooms.delete(name);
    }
    renderRooms();
    throw e;
  }
  if (state.rooms.get(name) !== conv) return conv; // left meanwhile
  const wasAtBottom = isAtBottom();
  if (since && ack.truncated) clearTimeline(conv);
  for (const m of ack.messages ?? []) addMessage(conv, m, { count: false });
  if (!since || ack.truncated || !conv.loaded) conv.hasMore = !!ack.hasMore;
  conv.loaded = true;
  conv.joined = true;
  const members = new Map();
  const names = Array.isArray(ack.members) ? ack.members : [];
  const ids = Array.isArray(ack.memberIds) && ack.memberIds.length === names.length ? ack.memberIds : names;
  ids.forEach((id, i) => {
    learnName(id, names[i]);
    members.set(id, conv.members.get(id) ?? 1);
  });
  conv.members = members;
  conv.memberTotal = ack.memberCount ?? members.size;
  saveRooms();
  renderRooms();
  if (state.view === conv) {
    renderUsers();
    updateHistoryStatus();
    if (wasAtBottom) scrollToBottom();
  }
  if (show) showConversation(conv);
  return conv;
}

async function leaveRoom(conv) {
  stopTyping();
  try {
    await request("room:leave", { room: conv.name });
  } catch (e) {
    if (e.code !== "not_member") {
      toast(`Could not leave #${conv.name}: ${describe(e)}`);
      return;
    }
  }
  dropRoom(conv);
  refreshRoomList();
}

function dropRoom(conv) {
  for (const t of conv.typers.values()) clearTimeout(t.timer);
  conv.joined = false;
  if (state.rooms.get(conv.name) === conv) state.rooms.delete(conv.name);
  saveRooms();
  if (state.view === conv) {
    state.view = null;
    const next = state.rooms.get("general")?.joined ? state.rooms.get("general") : [...state.rooms.values()].find((c) => c.joined);
    if (next) showConversation(next);
    else renderView();
  }
  renderRooms();
}

async function refreshRoomList() {
  if (!state.socket?.connected) return;
  try {
    const ack = await request("room:list", {});
    state.directory = new Map((ack.rooms ?? []).map((r) => [r.room, r.members]));
    renderRooms();
  } catch {
    /* periodic; the next refresh will try again */
  }
}

async function refreshUsers(conv, { quiet = false } = {}) {
  if (quiet && !state.socket?.connected) return;
  try {
    const ack = await request("users:list", { room: conv.name });
    if (state.rooms.get(conv.name) !== conv) return; // left meanwhile
    conv.members = usersMap(ack.users);
    conv.memberTotal = ack.total ?? conv.members.size;
    if (state.view === conv) {
      renderUsers();
      renderPaneHeader();
    }
  } catch (e) {
    if (!quiet && e.code !== "offline" && e.code !== "disconnected") toast(`Could not load users: ${describe(e)}`);
  }
}

/** Reloads the user list the current view shows (member counts can drift, e.g. after a gateway loss). */
function refreshCurrentUsers() {
  const conv = state.view;
  if (conv?.kind === "room" && conv.joined) refreshUsers(conv, { quiet: true });
  else if (conv?.kind === "dm") refreshEveryone();
}

/** `users:list` entries -> Map(user id -> connections), learning their names. */
function usersMap(users) {
  const map = new Map();
  for (const u of Array.isArray(users) ? users : []) {
    if (typeof u?.name !== "string") continue;
    const id = typeof u.id === "string" && u.id ? u.id : u.name;
    learnName(id, u.name);
    map.set(id, u.connections);
  }
  return map;
}

async function refreshEveryone() {
  if (!state.socket?.connected) return;
  try {
    const ack = await request("users:list", {});
    state.everyone = usersMap(ack.users);
    state.everyoneTotal = ack.total ?? state.everyone.size;
    renderDms(); // names learned from the list title DM conversations
    if (state.view?.kind === "dm") {
      renderUsers();
      renderPaneHeader();
      updateHistoryStatus();
    }
  } catch {
    /* best effort */
  }
}

function schedulePresenceRefresh() {
  if (state.presenceRefreshTimer) return;
  state.presenceRefreshTimer = setTimeout(() => {
    state.presenceRefreshTimer = null;
    refreshRoomList();
    refreshEveryone();
    if (state.view?.kind === "room" && state.view.joined) refreshUsers(state.view, { quiet: true });
  }, 1000);
}

// ---------------------------------------------------------------------------
// Timeline

function clearTimeline(conv) {
  if (state.view === conv) for (const e of conv.entries) e.el.remove();
  conv.entries = [];
  conv.ids.clear();
  conv.clientIds.clear();
  conv.lastId = null;
  conv.lastPeerId = null;
}

function insertEntry(conv, entry) {
  let lo = 0;
  let hi = conv.entries.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cmpKey(conv.entries[mid].key, entry.key) <= 0) lo = mid + 1;
    else hi = mid;
  }
  conv.entries.splice(lo, 0, entry);
  if (state.view === conv) {
    const next = conv.entries[lo + 1]?.el ?? conv.pending.values().next().value?.el ?? null;
    ui.list.insertBefore(entry.el, next);
  }
}

/** Adds a server message (room or DM) if new. Returns true when it was added. */
function addMessage(conv, msg, { count = true } = {}) {
  if (!msg || typeof msg.id !== "string") return false;
  if (conv.ids.has(msg.id)) {
    if (msg.deleted === true) markDeleted(conv, msg.id); // a tombstone of a message held
    return false;
  }
  conv.ids.add(msg.id);
  if (!conv.lastId || compareIds(msg.id, conv.lastId) > 0) conv.lastId = msg.id;
  const from = senderId(msg);
  learnName(from, msg.from);
  const mine = isMe(from);
  if (msg.clientId && mine) {
    const p = conv.pending.get(msg.clientId);
    if (p) removePending(conv, p);
    else if (conv.clientIds.has(msg.clientId)) return false; // a retried send stored twice
    conv.clientIds.add(msg.clientId);
  }
  const fromPeer = conv.kind === "dm" && from === conv.name && !mine;
  if (fromPeer && (!conv.lastPeerId || compareIds(msg.id, conv.lastPeerId) > 0)) conv.lastPeerId = msg.id;
  const entry = { key: [...parseId(msg.id), 0], id: msg.id, fromId: from, msg, el: renderMessage(msg, conv) };
  insertEntry(conv, entry);
  if (count && !mine && !msg.deleted) {
    if (fromPeer) conv.needsRead = true;
    if (!isReading(conv)) {
      if (fromPeer && conv.expect > 0 && Date.now() < conv.expectUntil) conv.expect--; // already counted
      else conv.unread++;
    }
  }
  updateTitle();
  return true;
}

function addNotice(conv, text) {
  const [ms, seq] = conv.lastId ? parseId(conv.lastId) : [0, 0];
  const li = h("li", "notice", text);
  insertEntry(conv, { key: [ms, seq, ++conv.noticeSeq], el: li });
  return li;
}

function renderMessage(msg, conv) {
  const li = h("li", "message");
  const from = senderId(msg);
  if (isMe(from)) li.classList.add("mine");
  li.dataset.id = msg.id;
  const deleted = msg.deleted === true;
  if (deleted) {
    li.classList.add("deleted");
    li.dataset.deleted = "true";
  }
  if (msg.clientId) li.dataset.clientId = msg.clientId;
  const meta = h("div", "meta");
  const fromEl = h("bdi", "from", msg.from);
  if (typeof from === "string") fromEl.title = from;
  meta.append(fromEl);
  const time = h("time", null, formatTime(msg.ts));
  const d = new Date(msg.ts);
  if (!Number.isNaN(d.getTime())) {
    time.dateTime = d.toISOString();
    time.title = d.toLocaleString();
  }
  meta.append(time);
  if (!deleted && conv?.kind === "room" && (isMe(from) || moderates(conv.name))) {
    const del = h("button", "msg-action delete-message", "Delete");
    del.type = "button";
    del.dataset.testid = "delete-message";
    del.title = isMe(from) ? "Delete your message" : `Delete this message by ${msg.from}`;
    del.setAttribute("aria-label", del.title);
    del.addEventListener("click", () => deleteMessage(conv, msg));
    meta.append(del);
  }
  li.append(meta, deleted ? h("div", "text tombstone", "message deleted") : h("div", "text", msg.text));
  return li;
}

// ---------------------------------------------------------------------------
// Sending

function sendCurrent() {
  const conv = state.view;
  if (!conv) return;
  const text = ui.composer.value.replace(/\s+$/u, "");
  if (!text.trim()) return;
  if ([...text].length > MAX_TEXT) {
    toast(`Message too long (max ${MAX_TEXT} characters)`);
    return;
  }
  ui.composer.value = "";
  stopTyping();
  const p = { clientId: crypto.randomUUID(), text, conv, status: "sending", inFlight: false, el: null };
  p.el = renderPending(p);
  conv.pending.set(p.clientId, p);
  if (state.view === conv) {
    ui.list.append(p.el);
    scrollToBottom();
  }
  trySend(p);
}

function renderPending(p) {
  const li = h("li", "message pending mine");
  li.dataset.clientId = p.clientId;
  const meta = h("div", "meta");
  meta.append(h("bdi", "from", state.me?.name ?? ""), h("span", "status", "sending…"));
  li.append(meta, h("div", "text", p.text));
  return li;
}

function setPendingStatus(p, status, errorText = "") {
  p.status = status;
  const statusEl = p.el.querySelector(".status");
  statusEl.replaceChildren();
  p.el.classList.toggle("failed", status === "failed");
  if (status === "failed") {
    statusEl.append(document.createTextNode(`not sent: ${errorText} `));
    const retry = h("button", "link-button", "Retry");
    retry.type = "button";
    retry.addEventListener("click", () => {
      setPendingStatus(p, "sending");
      trySend(p);
    });
    const discard = h("button", "link-button", "Discard");
    discard.type = "button";
    discard.addEventListener("click", () => removePending(p.conv, p));
    statusEl.append(retry, document.createTextNode(" · "), discard);
  } else {
    statusEl.textContent = "sending…";
  }
}

function removePending(conv, p) {
  conv.pending.delete(p.clientId);
  p.el.remove();
}

// `overloaded`: the server did not store the message (it is behind); resend it later
// with the same clientId.
const RETRYABLE = new Set(["rate_limited", "unavailable", "overloaded", "timeout"]);

async function trySend(p) {
  const conv = p.conv;
  if (p.inFlight || !conv.pending.has(p.clientId) || !state.socket?.connected) return; // retried on reconnect
  p.inFlight = true;
  const [event, payload] =
    conv.kind === "room"
      ? ["message:send", { room: conv.name, text: p.text, clientId: p.clientId }]
      : ["dm:send", { to: conv.name, text: p.text, clientId: p.clientId }];
  try {
    const ack = await request(event, payload);
    addMessage(conv, ack.message, { count: false });
    // The ack's message normally resolves the pending entry (same clientId).
    if (conv.pending.has(p.clientId)) removePending(conv, p);
    if (state.view === conv && isAtBottom(200)) scrollToBottom();
  } catch (e) {
    if (!conv.pending.has(p.clientId)) return;
    if (e.code === "offline" || e.code === "disconnected") {
      // Stays "sending…"; onSession resends it with the same clientId.
    } else if (RETRYABLE.has(e.code)) {
      setTimeout(() => {
        p.inFlight = false;
        trySend(p);
      }, e.code === "rate_limited" ? 1500 : 3000);
      return;
    } else if (e.code === "forbidden" && conv.kind === "room") {
      // Muted, or a read-only (announcement) room: say why, and give the text back to edit.
      removePending(conv, p);
      if (state.view === conv && !ui.composer.value.trim()) ui.composer.value = p.text;
      toast(`Message not sent: ${humanize(e.message)}`);
    } else {
      setPendingStatus(p, "failed", e.message);
      toast(`Message not sent: ${describe(e)}`);
    }
  }
  // (the retry branch returns before this line: its timer owns inFlight until it fires)
  p.inFlight = false;
}

// ---------------------------------------------------------------------------
// Incoming events

function onMessageNew(msg) {
  const conv = state.rooms.get(msg?.room);
  if (!conv) return;
  const atBottom = state.view === conv && isAtBottom();
  const from = senderId(msg);
  // A message from someone ends their "typing…".
  const t = conv.typers.get(from);
  if (t) {
    clearTimeout(t.timer);
    conv.typers.delete(from);
    if (state.view === conv) renderTyping();
  }
  if (addMessage(conv, msg)) {
    if (state.view === conv && (atBottom || isMe(from))) scrollToBottom();
    if (!isReading(conv)) renderRooms();
  }
}

/** The other side of a DM (by user id): the recipient of my own, else the sender. */
function dmPeer(msg) {
  const from = senderId(msg);
  return isMe(from) ? msg.to : from;
}

function getDm(peer) {
  let conv = state.dms.get(peer);
  if (!conv) {
    conv = new Conversation("dm", peer);
    state.dms.set(peer, conv);
  }
  return conv;
}

function onDmNew(msg) {
  if (!msg || typeof msg.from !== "string" || typeof dmPeer(msg) !== "string") return;
  const conv = getDm(dmPeer(msg));
  const atBottom = state.view === conv && isAtBottom();
  if (addMessage(conv, msg)) {
    if (state.view === conv && (atBottom || isMe(senderId(msg)))) scrollToBottom();
    markRead(conv);
  }
  renderDms();
  if (state.view === conv) renderPaneHeader();
}

function onTyping({ room, user, userId, typing } = {}) {
  const conv = state.rooms.get(room);
  if (!conv || typeof user !== "string") return;
  const id = typeof userId === "string" && userId ? userId : user;
  if (isMe(id)) return;
  learnName(id, user);
  const old = conv.typers.get(id);
  if (old) clearTimeout(old.timer);
  if (typing) {
    conv.typers.set(id, {
      name: user,
      timer: setTimeout(() => {
        conv.typers.delete(id);
        if (state.view === conv) renderTyping();
      }, TYPING_DISPLAY_MS),
    });
  } else {
    conv.typers.delete(id);
  }
  if (state.view === conv) renderTyping();
}

/** Pairs a presence push's names with its ids ([id, name]; ids = names from a server without ids). */
function presencePairs(names, ids) {
  if (!Array.isArray(names)) return [];
  const useIds = Array.isArray(ids) && ids.length === names.length;
  return names.map((name, i) => [useIds ? ids[i] : name, name]).filter(([id, name]) => typeof id === "string" && typeof name === "string");
}

function onPresence({ room, joined = [], left = [], joinedIds, leftIds, joinedMore = 0, leftMore = 0 } = {}) {
  const conv = state.rooms.get(room);
  if (!conv) return;
  // Big batches list only the first names; the rest only count.
  conv.memberTotal = Math.max(conv.members.size, conv.memberTotal + (joinedMore | 0) - (leftMore | 0));
  if (joinedMore > 0 || leftMore > 0) {
    const parts = [];
    if (joinedMore > 0) parts.push(`${joinedMore} more joined`);
    if (leftMore > 0) parts.push(`${leftMore} more left`);
    addNotice(conv, `${parts.join(", ")} #${room}`);
  }
  for (const [id, name] of presencePairs(joined, joinedIds)) {
    learnName(id, name);
    if (!conv.members.has(id)) conv.memberTotal++;
    conv.members.set(id, conv.members.get(id) ?? 1);
    if (!isMe(id)) addNotice(conv, `${name} joined #${room}`);
  }
  for (const [id, name] of presencePairs(left, leftIds)) {
    // A listed leaver was a member even if its join was only counted.
    conv.members.delete(id);
    conv.memberTotal = Math.max(conv.members.size, conv.memberTotal - 1);
    const t = conv.typers.get(id);
    if (t) {
      clearTimeout(t.timer);
      conv.typers.delete(id);
    }
    if (!isMe(id)) addNotice(conv, `${name} left #${room}`);
  }
  if (state.directory.has(room)) {
    state.directory.set(room, Math.max(conv.memberTotal, conv.members.size));
    renderRooms();
  }
  if (state.view === conv) {
    if (isAtBottom(120)) scrollToBottom();
    renderUsers();
    renderTyping();
    renderPaneHeader();
  }
  schedulePresenceRefresh();
}

// ---------------------------------------------------------------------------
// DMs

/** Opens the conversation with user id `peer` (`name`: how the click that started it named them). */
function openDm(peer, name) {
  learnName(peer, name);
  showConversation(getDm(peer));
}

/** The user sees this conversation right now: it is the current view of a visible page. */
function isReading(conv) {
  return state.view === conv && document.visibilityState === "visible";
}

/** `session.unread` is the server's count of unread DMs per sender: it replaces ours. */
function seedUnread(unread) {
  if (!unread || typeof unread !== "object") return; // (session fallback: keep local counts)
  for (const conv of state.dms.values()) {
    conv.expect = 0;
    if (!Object.hasOwn(unread, conv.name)) {
      conv.unread = 0;
      conv.needsRead = false;
    }
  }
  for (const [peer, n] of Object.entries(unread)) {
    if (typeof n !== "number" || !(n > 0) || isMe(peer)) continue;
    const conv = getDm(peer);
    conv.unread = isReading(conv) ? 0 : n;
    conv.needsRead = true;
  }
  updateTitle();
}

/**
 * Notes what the user has seen of `conv` (everything held, if they are reading it) and
 * tells the server with dm:read {upTo: the greatest id seen from the peer}: at most one
 * dm:read in flight per conversation, none when nothing new was seen.
 */
function markRead(conv) {
  if (conv.kind !== "dm" || isMe(conv.name) || state.dms.get(conv.name) !== conv) return;
  if (isReading(conv) && conv.lastPeerId && (!conv.seenUpTo || compareIds(conv.lastPeerId, conv.seenUpTo) > 0)) {
    conv.seenUpTo = conv.lastPeerId;
  }
  if (conv.readInFlight || !conv.needsRead || !conv.seenUpTo) return;
  if (conv.readUpTo && compareIds(conv.seenUpTo, conv.readUpTo) <= 0) return;
  if (!state.socket?.connected) return; // onSession tries again
  const upTo = conv.seenUpTo;
  const socket = state.socket;
  conv.readInFlight = true;
  conv.needsRead = false;
  request("dm:read", { with: conv.name, upTo }).then(
    (ack) => {
      conv.readInFlight = false;
      if (state.socket !== socket) return;
      applyRead(conv, upTo, ack.unread);
      markRead(conv); // more may have been seen meanwhile
    },
    (e) => {
      conv.readInFlight = false;
      if (state.socket !== socket) return;
      conv.needsRead = true;
      // offline/disconnected: onSession marks the open conversation read again.
      if (RETRYABLE.has(e.code)) {
        setTimeout(() => markRead(conv), READ_RETRY_MS);
      } else if (e.code !== "offline" && e.code !== "disconnected") {
        conv.needsRead = false; // not worth retrying in a loop
        console.warn(`dm:read ${conv.name} failed: ${describe(e)}`);
      }
    },
  );
}

/** The server's read state for a conversation (from a dm:read ack or push). */
function applyRead(conv, upTo, unread) {
  if (typeof upTo === "string" && (!conv.readUpTo || compareIds(upTo, conv.readUpTo) > 0)) conv.readUpTo = upTo;
  const n = typeof unread === "number" && unread > 0 ? unread : 0;
  conv.needsRead = n > 0;
  if (isReading(conv)) {
    conv.unread = 0;
    conv.expect = 0;
  } else {
    // Of the DMs from the peer newer than upTo, those the user has seen here are about
    // to be marked read (not counted); those not held yet are on their way as dm:new
    // (counted now, not again when they arrive).
    let held = 0;
    let seen = 0;
    for (let i = conv.entries.length - 1; i >= 0; i--) {
      const e = conv.entries[i];
      if (!e.id) continue;
      if (compareIds(e.id, upTo) <= 0) break;
      if (e.fromId !== conv.name) continue;
      held++;
      if (conv.seenUpTo && compareIds(e.id, conv.seenUpTo) <= 0) seen++;
    }
    conv.unread = Math.max(0, n - seen);
    conv.expect = Math.max(0, n - held);
    conv.expectUntil = Date.now() + EXPECT_MS;
  }
  markRead(conv);
  updateTitle();
  renderDms();
}

function onDmRead(p) {
  if (!p || typeof p.with !== "string" || typeof p.upTo !== "string") return;
  const conv = p.unread > 0 ? getDm(p.with) : state.dms.get(p.with);
  if (conv) applyRead(conv, p.upTo, p.unread);
}

async function loadLatestDm(conv) {
  const ack = await request("dm:history", { with: conv.name, limit: HISTORY_PAGE });
  const msgs = ack.messages ?? [];
  // If the latest page does not reach what we hold, there is a gap: start over.
  if (conv.lastId && msgs.length && ack.hasMore && compareIds(msgs[0].id, conv.lastId) > 0) clearTimeline(conv);
  const wasAtBottom = state.view === conv && isAtBottom();
  const first = !conv.loaded;
  for (const m of msgs) addMessage(conv, m, { count: false });
  if (first || !conv.entries.length || conv.entries[0]?.id === msgs[0]?.id) conv.hasMore = !!ack.hasMore;
  conv.loaded = true;
  renderDms(); // the peer's name may be known now
  if (state.view === conv) {
    if (first || wasAtBottom) scrollToBottom();
    renderPaneHeader();
    updateHistoryStatus();
    maybeFill(conv);
  }
  markRead(conv);
}

// ---------------------------------------------------------------------------
// History paging

async function loadOlder(conv) {
  if (!conv || conv.loadingOlder || !conv.hasMore || !conv.loaded || !state.socket?.connected) return;
  const before = conv.oldestId();
  if (!before) return;
  conv.loadingOlder = true;
  updateHistoryStatus();
  try {
    const ack =
      conv.kind === "room"
        ? await request("message:history", { room: conv.name, before, limit: HISTORY_PAGE })
        : await request("dm:history", { with: conv.name, before, limit: HISTORY_PAGE });
    const isView = state.view === conv;
    const prevHeight = ui.messages.scrollHeight;
    const prevTop = ui.messages.scrollTop;
    for (const m of ack.messages ?? []) addMessage(conv, m, { count: false });
    conv.hasMore = !!ack.hasMore;
    if (isView) ui.messages.scrollTop = prevTop + (ui.messages.scrollHeight - prevHeight);
  } catch (e) {
    if (e.code !== "offline" && e.code !== "disconnected") toast(`Could not load older messages: ${describe(e)}`);
  } finally {
    conv.loadingOlder = false;
    updateHistoryStatus();
  }
  if (state.view === conv) maybeFill(conv);
}

/** Keep loading older pages while the timeline does not fill the pane. */
function maybeFill(conv) {
  if (state.view !== conv || !conv.hasMore || conv.loadingOlder) return;
  if (ui.messages.scrollHeight <= ui.messages.clientHeight + NEAR_TOP_PX) loadOlder(conv);
}

ui.messages.addEventListener("scroll", () => {
  const conv = state.view;
  if (conv && ui.messages.scrollTop < NEAR_TOP_PX) loadOlder(conv);
});

function isAtBottom(slack = NEAR_BOTTOM_PX) {
  const m = ui.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight < slack;
}

function scrollToBottom() {
  ui.messages.scrollTop = ui.messages.scrollHeight;
}

// ---------------------------------------------------------------------------
// Typing (outgoing)

function emitTyping(room, typing) {
  const socket = state.socket;
  if (!socket?.connected) return;
  socket
    .timeout(ACK_TIMEOUT_MS)
    .emitWithAck("typing", { room, typing })
    .catch(() => {}); // best effort; failures (e.g. not_member) are not worth a toast
}

function onComposerInput() {
  const conv = state.view;
  if (!conv || conv.kind !== "room" || !conv.joined) return;
  if (!ui.composer.value.trim()) {
    stopTyping();
    return;
  }
  const now = Date.now();
  if (state.typingRoom !== conv.name || now - state.typingSentAt >= TYPING_REFRESH_MS) {
    if (state.typingRoom && state.typingRoom !== conv.name) emitTyping(state.typingRoom, false);
    state.typingRoom = conv.name;
    state.typingSentAt = now;
    emitTyping(conv.name, true);
  }
  clearTimeout(state.typingIdleTimer);
  state.typingIdleTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
}

function stopTyping() {
  clearTimeout(state.typingIdleTimer);
  state.typingIdleTimer = null;
  if (state.typingRoom) {
    emitTyping(state.typingRoom, false);
    state.typingRoom = null;
    state.typingSentAt = 0;
  }
}

// ---------------------------------------------------------------------------
// Rendering

function showConversation(conv) {
  if (!conv) return;
  if (state.view !== conv) {
    stopTyping();
    const prev = state.view;
    if (prev) prev.savedScroll = isAtBottom() ? null : ui.messages.scrollTop;
    // A DM conversation opened but never used does not stay in the list.
    if (prev?.kind === "dm" && !prev.entries.length && !prev.pending.size && !prev.unread && state.dms.get(prev.name) === prev) {
      state.dms.delete(prev.name);
    }
    state.view = conv;
    ui.list.replaceChildren(...conv.entries.map((e) => e.el), ...[...conv.pending.values()].map((p) => p.el));
    if (conv.savedScroll == null) scrollToBottom();
    else ui.messages.scrollTop = conv.savedScroll;
  }
  if (document.visibilityState === "visible") {
    conv.unread = 0;
    conv.expect = 0;
  }
  updateTitle();
  renderView();
  if (conv.kind === "room") refreshUsers(conv);
  else {
    refreshEveryone();
    if (!conv.loaded) loadLatestDm(conv).catch((e) => toast(`Could not load conversation: ${describe(e)}`));
    markRead(conv);
  }
  maybeFill(conv);
  ui.composer.focus();
}

function renderAll() {
  renderRooms();
  renderDms();
  renderView();
}

function renderView() {
  const conv = state.view;
  ui.emptyState.classList.toggle("hidden", !!conv);
  ui.emptyState.textContent = conv ? "" : "Join a room to start chatting.";
  ui.composer.disabled = !conv;
  ui.send.disabled = !conv;
  if (!conv) ui.list.replaceChildren();
  ui.composer.placeholder = !conv ? "" : conv.kind === "room" ? `Message #${conv.name}` : `Message @${convTitle(conv)}`;
  renderPaneHeader();
  renderUsers();
  renderTyping();
  renderRooms();
  renderDms();
  updateHistoryStatus();
}

function renderPaneHeader() {
  const conv = state.view;
  ui.leaveRoom.classList.toggle("hidden", !conv || conv.kind !== "room");
  const canInvite = conv?.kind === "room" && conv.joined && !!state.owned.get(conv.name)?.private;
  ui.inviteOpen.classList.toggle("hidden", !canInvite);
  if (!canInvite && !ui.invitePanel.classList.contains("hidden")) closeInvitePanel();
  const badges = [];
  if (conv?.kind === "room") {
    const own = state.owned.get(conv.name);
    if (own?.private) badges.push(h("span", "pane-badge", "private"));
    if (own?.announce) badges.push(h("span", "pane-badge", "announcement"));
    if (own) badges.push(h("span", "pane-badge", "owner"));
    else if (isModerator()) badges.push(h("span", "pane-badge", "moderator"));
  }
  ui.paneBadges.replaceChildren(...badges);
  if (!conv) {
    ui.paneTitle.textContent = "";
    ui.paneSubtitle.textContent = "";
    return;
  }
  if (conv.kind === "room") {
    ui.paneTitle.textContent = `#${conv.name}`;
    ui.paneTitle.title = "";
    const n = Math.max(conv.memberTotal, conv.members.size);
    ui.paneSubtitle.textContent = `${n} ${n === 1 ? "member" : "members"} online`;
  } else {
    ui.paneTitle.textContent = `@${convTitle(conv)}`;
    ui.paneTitle.title = conv.name;
    const online = state.everyone.has(conv.name) || isMe(conv.name);
    ui.paneSubtitle.textContent =
      isMe(conv.name)
        ? "notes to self"
        : online
          ? "private conversation · online"
          : "private conversation · offline (messages wait in their inbox)";
  }
}

function updateHistoryStatus() {
  const conv = state.view;
  let text = "";
  if (conv && conv.loaded) {
    if (conv.loadingOlder) text = "Loading older messages…";
    else if (conv.hasMore) text = "Scroll up for older messages";
    else text = conv.kind === "room" ? `This is the beginning of #${conv.name}.` : `This is the beginning of your conversation with ${convTitle(conv)}.`;
  } else if (conv) {
    text = "Loading…";
  }
  ui.historyStatus.textContent = text;
}

function badge(n) {
  const b = h("span", "badge", n > 99 ? "99+" : String(n));
  b.setAttribute("aria-label", `${n} unread`);
  return b;
}

function renderRooms() {
  const joined = [...state.rooms.values()]
    .filter((c) => c.joined)
    .sort((a, b) => (a.name === "general" ? -1 : b.name === "general" ? 1 : a.name.localeCompare(b.name)));
  const others = [...state.directory.entries()]
    .filter(([name]) => !state.rooms.get(name)?.joined)
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  const items = [];
  for (const conv of joined) {
    const li = h("li", "room joined");
    li.dataset.room = conv.name;
    if (state.view === conv) li.classList.add("active");
    const btn = h("button", "side-item");
    btn.type = "button";
    btn.append(h("span", "side-name", `#${conv.name}`));
    const own = state.owned.get(conv.name);
    if (own?.private) btn.append(h("span", "room-flag", "private"));
    if (own?.announce) btn.append(h("span", "room-flag", "announce"));
    const count = state.directory.get(conv.name);
    if (count !== undefined) btn.append(h("span", "count", count));
    if (conv.unread > 0) btn.append(badge(conv.unread));
    btn.addEventListener("click", () => showConversation(conv));
    li.append(btn);
    items.push(li);
  }
  for (const [name, members] of others) {
    const li = h("li", "room");
    li.dataset.room = name;
    const btn = h("button", "side-item");
    btn.type = "button";
    btn.title = `Join #${name}`;
    btn.append(h("span", "side-name", `#${name}`), h("span", "count", members));
    btn.addEventListener("click", () => joinRoom(name).catch((e) => toast(`Could not join #${name}: ${describe(e)}`)));
    li.append(btn);
    items.push(li);
  }
  ui.rooms.replaceChildren(...items);
}

function renderDms() {
  const byTitle = (a, b) => convTitle(a).localeCompare(convTitle(b)) || a.name.localeCompare(b.name);
  const convs = [...state.dms.values()].sort(byTitle);
  const items = convs.map((conv) => {
    const li = h("li", "dm");
    li.dataset.user = conv.name; // the peer's user id
    li.dataset.name = convTitle(conv);
    if (state.view === conv) li.classList.add("active");
    const btn = h("button", "side-item");
    btn.type = "button";
    btn.title = conv.name;
    btn.append(h("bdi", "side-name", `@${convTitle(conv)}`));
    if (conv.unread > 0) btn.append(badge(conv.unread));
    btn.addEventListener("click", () => showConversation(conv));
    li.append(btn);
    return li;
  });
  ui.dms.replaceChildren(...items);
  ui.dmsEmpty.classList.toggle("hidden", items.length > 0);
}

function renderUsers() {
  const conv = state.view;
  let users;
  let total;
  if (conv?.kind === "room") {
    users = conv.members;
    total = Math.max(conv.memberTotal, users.size);
    ui.usersTitle.textContent = `In #${conv.name} (${total})`;
  } else if (conv?.kind === "dm") {
    users = state.everyone;
    total = Math.max(state.everyoneTotal, users.size);
    ui.usersTitle.textContent = `Online (${total})`;
  } else {
    users = new Map();
    ui.usersTitle.textContent = "Online";
  }
  const ids = [...users.keys()].sort((a, b) => displayName(a).localeCompare(displayName(b)) || a.localeCompare(b));
  const items = ids.map((id) => {
    const name = displayName(id);
    const li = h("li", "user");
    li.dataset.user = id;
    li.dataset.name = name;
    if (isMe(id)) li.classList.add("self");
    const btn = h("button", "side-item");
    btn.type = "button";
    btn.title = isMe(id) ? "Notes to self" : `Private message ${name} (${id})`;
    btn.append(h("span", "dot"), h("bdi", "side-name", name));
    if (isMe(id)) btn.append(h("span", "you", "you"));
    const c = users.get(id);
    if (c > 1) btn.append(h("span", "count", `${c} tabs`));
    btn.addEventListener("click", () => openDm(id, name));
    li.append(btn);
    if (conv?.kind === "room" && !isMe(id) && moderates(conv.name)) {
      const menu = h("button", "mod-menu-button", "⋯");
      menu.type = "button";
      menu.dataset.testid = "mod-menu";
      menu.title = `Moderate ${name}`;
      menu.setAttribute("aria-label", `Moderate ${name}`);
      menu.setAttribute("aria-haspopup", "menu");
      menu.addEventListener("click", (ev) => {
        ev.stopPropagation();
        openModMenu(menu, conv.name, id);
      });
      li.append(menu);
    }
    return li;
  });
  ui.users.replaceChildren(...items);
}

function renderTyping() {
  const conv = state.view;
  const names = conv?.kind === "room" ? [...conv.typers.values()].map((t) => t.name).sort((a, b) => a.localeCompare(b)) : [];
  let text = "";
  if (names.length === 1) text = `${names[0]} is typing…`;
  else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
  else if (names.length === 3) text = `${names[0]}, ${names[1]} and ${names[2]} are typing…`;
  else if (names.length > 3) text = "Several people are typing…";
  ui.typing.textContent = text;
  ui.typing.classList.toggle("active", !!text);
}

function updateTitle() {
  let unread = 0;
  for (const c of state.rooms.values()) unread += c.unread;
  for (const c of state.dms.values()) unread += c.unread;
  document.title = unread ? `(${unread}) confab` : "confab";
}

// ---------------------------------------------------------------------------
// Moderation, private rooms, invitations, announcements, the audit log

const hasRole = (r) => Array.isArray(state.me?.roles) && state.me.roles.includes(r);
/** Admins and moderators moderate every room. */
const isModerator = () => hasRole("admin") || hasRole("moderator");
/** Whether this user moderates `room`: a moderator, or the room's owner (a room they created). */
const moderates = (room) => isModerator() || state.owned.has(room);

function loadOwned() {
  state.owned = new Map();
  if (!state.me) return;
  try {
    const v = JSON.parse(localStorage.getItem(ownedKey(state.me.id)) ?? "{}");
    if (!v || typeof v !== "object" || Array.isArray(v)) return;
    for (const [room, f] of Object.entries(v)) {
      if (ROOM_RE.test(room)) state.owned.set(room, { private: !!f?.private, announce: !!f?.announce });
    }
  } catch {
    /* unreadable: no rooms of one's own known */
  }
}

function saveOwned() {
  if (!state.me) return;
  localStorage.setItem(ownedKey(state.me.id), JSON.stringify(Object.fromEntries(state.owned)));
}

function updateRoomSubmit() {
  ui.roomSubmit.textContent = ui.roomPrivate.checked || ui.roomAnnounce.checked ? "Create" : "Join";
}
ui.roomPrivate.addEventListener("change", updateRoomSubmit);
ui.roomAnnounce.addEventListener("change", updateRoomSubmit);

// --- confirmation (an in-page dialog: window.confirm is not used) ---

let confirmResolve = null;

/** Asks `question`; resolves to true when the user confirms with `okLabel`. */
function confirmAction(question, okLabel = "OK") {
  settleConfirm(false); // (one question at a time)
  ui.confirmText.textContent = question;
  ui.confirmOk.textContent = okLabel;
  return new Promise((resolve) => {
    confirmResolve = resolve;
    if (!ui.confirm.open) ui.confirm.showModal();
    ui.confirmCancel.focus();
  });
}

function settleConfirm(value) {
  const resolve = confirmResolve;
  confirmResolve = null;
  if (ui.confirm.open) ui.confirm.close();
  resolve?.(value);
}
ui.confirmOk.addEventListener("click", () => settleConfirm(true));
ui.confirmCancel.addEventListener("click", () => settleConfirm(false));
ui.confirm.addEventListener("close", () => settleConfirm(false)); // Escape

// --- deleting messages ---

async function deleteMessage(conv, msg) {
  const own = isMe(senderId(msg));
  if (!(await confirmAction(own ? "Delete your message?" : `Delete this message by ${msg.from}?`, "Delete"))) return;
  try {
    await request("message:delete", { room: conv.name, id: msg.id });
    markDeleted(conv, msg.id);
  } catch (e) {
    toast(`Could not delete the message: ${describe(e)}`);
  }
}

/** Shows message `id` of `conv` as a tombstone (its text gone). */
function markDeleted(conv, id) {
  let entry = null;
  for (let i = conv.entries.length - 1; i >= 0; i--) {
    if (conv.entries[i].id === id) {
      entry = conv.entries[i];
      break;
    }
  }
  if (!entry || !entry.msg || entry.msg.deleted === true) return;
  entry.msg = { ...entry.msg, text: "", deleted: true };
  const el = renderMessage(entry.msg, conv);
  const hadFocus = entry.el.contains(document.activeElement);
  entry.el.replaceWith(el); // (nothing happens when it is not shown)
  entry.el = el;
  if (hadFocus) ui.composer.focus();
}

function onMessageDeleted({ room, id } = {}) {
  const conv = state.rooms.get(room);
  if (conv && typeof id === "string") markDeleted(conv, id);
}

// --- popovers: the moderator menu and the invite panel ---

function placePopover(pop, anchor, where) {
  const r = anchor.getBoundingClientRect();
  const w = pop.offsetWidth;
  const ht = pop.offsetHeight;
  let left = where === "below" ? r.right - w : r.right + 6;
  let top = where === "below" ? r.bottom + 6 : r.top - 4;
  left = Math.max(8, Math.min(left, window.innerWidth - w - 8));
  top = Math.max(8, Math.min(top, window.innerHeight - ht - 8));
  pop.style.left = `${left}px`;
  pop.style.top = `${top}px`;
}

function closePopovers() {
  ui.modPop.classList.add("hidden");
  state.modTarget = null;
  closeInvitePanel();
}

function openModMenu(anchor, room, id) {
  closePopovers();
  const name = displayName(id);
  state.modTarget = { room, id, name };
  ui.modPopTitle.textContent = `${name} in #${room}`;
  ui.modPopTitle.title = id;
  ui.modRemove.classList.toggle("hidden", !state.owned.get(room)?.private);
  ui.modBanServer.classList.toggle("hidden", !isModerator());
  ui.modPop.classList.remove("hidden");
  placePopover(ui.modPop, anchor, "right");
  ui.modMute.focus();
}

const MOD_ACTIONS = {
  mute: {
    ask: (t) => [`Mute ${t.name} in #${t.room} for 10 minutes?`, "Mute"],
    run: (t) => request("mod:mute", { room: t.room, user: t.id, durationS: MUTE_S }),
    done: (t, ack) => `${t.name} is muted in #${t.room} until ${formatUntil(ack.until)}`,
  },
  kick: {
    ask: (t) => [`Kick ${t.name} from #${t.room}? They may join again.`, "Kick"],
    run: (t) => request("mod:kick", { room: t.room, user: t.id }),
    done: (t) => `${t.name} was kicked from #${t.room}`,
  },
  remove: {
    ask: (t) => [`Remove ${t.name} from the private room #${t.room}? They cannot come back unless invited again.`, "Remove"],
    run: (t) => request("room:remove", { room: t.room, user: t.id }),
    done: (t) => `${t.name} was removed from #${t.room}`,
  },
  banRoom: {
    ask: (t) => [`Ban ${t.name} from #${t.room} until the ban is lifted?`, "Ban"],
    run: (t) => request("mod:ban", { user: t.id, room: t.room }),
    done: (t) => `${t.name} is banned from #${t.room}`,
  },
  banServer: {
    ask: (t) => [`Ban ${t.name} from this server until the ban is lifted? All their connections end now.`, "Ban from server"],
    run: (t) => request("mod:ban", { user: t.id }),
    done: (t) => `${t.name} is banned from this server`,
  },
};

async function runModAction(kind) {
  const t = state.modTarget;
  closePopovers();
  if (!t) return;
  const action = MOD_ACTIONS[kind];
  const [question, ok] = action.ask(t);
  if (!(await confirmAction(question, ok))) return;
  try {
    const ack = await action.run(t);
    toast(action.done(t, ack), "info");
    const conv = state.rooms.get(t.room);
    if (conv && kind !== "mute") refreshUsers(conv, { quiet: true });
  } catch (e) {
    toast(`${ok} failed: ${describe(e)}`);
  }
}

ui.modMute.addEventListener("click", () => runModAction("mute"));
ui.modKick.addEventListener("click", () => runModAction("kick"));
ui.modRemove.addEventListener("click", () => runModAction("remove"));
ui.modBanRoom.addEventListener("click", () => runModAction("banRoom"));
ui.modBanServer.addEventListener("click", () => runModAction("banServer"));

function closeInvitePanel() {
  ui.invitePanel.classList.add("hidden");
  ui.inviteOpen.setAttribute("aria-expanded", "false");
  delete ui.invitePanel.dataset.room;
}

async function openInvitePanel() {
  const conv = state.view;
  if (conv?.kind !== "room") return;
  closePopovers();
  ui.invitePanel.dataset.room = conv.name;
  ui.inviteTitle.textContent = `Invite to #${conv.name}`;
  ui.invitePanel.classList.remove("hidden");
  ui.inviteOpen.setAttribute("aria-expanded", "true");
  renderInviteList(conv);
  await refreshEveryone();
  if (ui.invitePanel.dataset.room === conv.name) renderInviteList(conv);
}

/** Online users who are not in the room yet, each with an Invite button. */
function renderInviteList(conv) {
  const ids = [...state.everyone.keys()]
    .filter((id) => !isMe(id) && !conv.members.has(id))
    .sort((a, b) => displayName(a).localeCompare(displayName(b)) || a.localeCompare(b));
  const items = ids.map((id) => {
    const name = displayName(id);
    const li = h("li", "invite-item");
    li.dataset.user = id;
    li.dataset.name = name;
    const label = h("bdi", "invite-name", name);
    label.title = id;
    const btn = h("button", "invite-button", "Invite");
    btn.type = "button";
    btn.dataset.testid = "invite-user";
    btn.setAttribute("aria-label", `Invite ${name} to #${conv.name}`);
    btn.addEventListener("click", () => inviteUser(conv.name, id, btn));
    li.append(label, btn);
    return li;
  });
  ui.inviteList.replaceChildren(...items);
  ui.inviteEmpty.textContent = state.everyone.size > 1 ? "Everyone online is in the room already." : "Nobody else is online.";
  ui.inviteEmpty.classList.toggle("hidden", items.length > 0);
  placePopover(ui.invitePanel, ui.inviteOpen, "below");
}

async function inviteUser(room, id, btn) {
  btn.disabled = true;
  try {
    await request("room:invite", { room, user: id });
    btn.textContent = "Invited";
    toast(`Invited ${displayName(id)} to #${room}`, "info");
  } catch (e) {
    btn.disabled = false;
    toast(`Could not invite ${displayName(id)}: ${describe(e)}`);
  }
}

ui.inviteOpen.addEventListener("click", (ev) => {
  ev.stopPropagation();
  if (ui.invitePanel.classList.contains("hidden")) openInvitePanel();
  else closeInvitePanel();
});
ui.inviteClose.addEventListener("click", closeInvitePanel);

document.addEventListener("click", (ev) => {
  if (ui.modPop.contains(ev.target) || ui.invitePanel.contains(ev.target)) return;
  if (!ui.modPop.classList.contains("hidden") || !ui.invitePanel.classList.contains("hidden")) closePopovers();
});
document.addEventListener("keydown", (ev) => {
  if (ev.key === "Escape" && !ui.confirm.open) closePopovers();
});

// --- what the server tells this user ---

function showModNotice(text) {
  ui.modNoticeText.textContent = text;
  ui.modNotice.classList.remove("hidden");
}

function hideModNotice() {
  ui.modNotice.classList.add("hidden");
  ui.modNoticeText.textContent = "";
}
ui.modNoticeClose.addEventListener("click", hideModNotice);

/** `mod:action {action, room?, until?}`: a moderator acted on this user. */
function onModAction(socket, a) {
  const action = a?.action;
  const room = typeof a?.room === "string" ? a.room : null;
  const until = typeof a?.until === "number" ? a.until : null;
  const untilText = until ? ` until ${formatUntil(until)}` : "";
  if (!room) {
    // Server-wide ban: the server disconnects every socket and refuses handshakes.
    if (action === "ban") serverBanned(`You were banned from this server${untilText}.`);
    return;
  }
  let text;
  if (action === "mute") text = `You were muted in #${room}${untilText}.`;
  else if (action === "kick") text = `You were kicked from #${room}; you may join it again.`;
  else if (action === "ban") text = `You were banned from #${room}${untilText}.`;
  else if (action === "remove") text = `You were removed from #${room}.`;
  else return;
  if (action !== "mute") {
    // The server has taken this socket out of the room already.
    const conv = state.rooms.get(room);
    if (conv) {
      if (state.typingRoom === room) {
        clearTimeout(state.typingIdleTimer);
        state.typingRoom = null;
      }
      dropRoom(conv);
    }
    if (ui.invitePanel.dataset.room === room || state.modTarget?.room === room) closePopovers();
    refreshRoomList();
  }
  showModNotice(text);
}

/** Banned from the server: the connection ends (no reconnecting); the login form says why. */
function serverBanned(text) {
  const pasted = localStorage.getItem(TOKEN_KIND_KEY) === "pasted";
  dropSocket();
  forgetCredentials();
  state.tokenFlow = pasted;
  resetState();
  setConn("offline", "banned");
  showLogin(text);
}

function hideInviteToast() {
  clearTimeout(state.inviteTimer);
  ui.inviteToast.classList.add("hidden");
  delete ui.inviteToast.dataset.room;
}

/** `room:invited {room, by, byId}`: a toast with a Join action. */
function onRoomInvited({ room, by, byId } = {}) {
  if (typeof room !== "string" || !ROOM_RE.test(room)) return;
  learnName(byId, by);
  const who = typeof by === "string" && by ? by : displayName(byId);
  ui.inviteToastText.textContent = `${who} invited you to #${room}`;
  ui.inviteToast.dataset.room = room;
  ui.inviteToast.classList.remove("hidden");
  clearTimeout(state.inviteTimer);
  state.inviteTimer = setTimeout(hideInviteToast, INVITE_TOAST_MS);
  refreshRoomList(); // the room is listed to this user now
}

ui.inviteToastJoin.addEventListener("click", async () => {
  const room = ui.inviteToast.dataset.room;
  hideInviteToast();
  if (!room) return;
  const conv = state.rooms.get(room);
  if (conv?.joined) {
    showConversation(conv);
    return;
  }
  try {
    await joinRoom(room);
    refreshRoomList();
  } catch (e) {
    toast(`Could not join #${room}: ${describe(e)}`);
  }
});
ui.inviteToastClose.addEventListener("click", hideInviteToast);

/** `announcement {from, fromId, text, ts}`: shown in the current conversation. */
function onAnnouncement({ from, fromId, text } = {}) {
  if (typeof text !== "string" || !text) return;
  learnName(fromId, from);
  const who = typeof from === "string" && from ? from : displayName(fromId);
  const line = `Announcement from ${who}: ${text}`;
  const conv = state.view;
  if (!conv) {
    toast(line, "info");
    return;
  }
  const atBottom = isAtBottom(120);
  const li = addNotice(conv, line);
  li.classList.add("announcement");
  li.dataset.testid = "announcement";
  if (atBottom) scrollToBottom();
}

// --- admin panel: announcements and the audit log ---

ui.adminOpen.addEventListener("click", () => {
  if (!ui.adminDialog.open) ui.adminDialog.showModal();
  loadAudit(true);
});
ui.adminClose.addEventListener("click", () => ui.adminDialog.close());

ui.announceForm.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const text = ui.announceInput.value.trim();
  if (!text) return;
  try {
    await request("announce", { text });
    ui.announceInput.value = "";
    toast("Announcement sent", "info");
    loadAudit(true);
  } catch (e) {
    toast(`Announcement not sent: ${describe(e)}`);
  }
});

function auditCell(text, title) {
  const td = h("td", null, text ?? "");
  if (title) td.title = title;
  return td;
}

async function loadAudit(reset) {
  const payload = { limit: AUDIT_PAGE };
  if (!reset && state.auditOldest) payload.before = state.auditOldest;
  ui.auditStatus.textContent = "Loading…";
  try {
    const ack = await request("audit:list", payload);
    const entries = Array.isArray(ack.entries) ? ack.entries : [];
    const rows = entries.map((e) => {
      const tr = h("tr");
      if (typeof e.id === "string") tr.dataset.id = e.id;
      tr.dataset.action = String(e.action ?? "");
      const target = typeof e.target === "string" ? e.target : "";
      tr.append(
        auditCell(formatTime(e.ts), new Date(e.ts).toLocaleString()),
        auditCell(displayName(e.actor), e.actor),
        auditCell(e.action),
        auditCell(target && e.action !== "delete" ? displayName(target) : target, target),
        auditCell(e.room ? `#${e.room}` : e.action === "ban" ? "(server)" : ""),
        auditCell(typeof e.until === "number" ? formatUntil(e.until) : ""),
      );
      if (e.action === "ban" && target) {
        const td = h("td");
        const btn = h("button", "link-button", "Unban");
        btn.type = "button";
        btn.dataset.testid = "audit-unban";
        btn.addEventListener("click", () => unban(target, e.room ?? null, btn));
        td.append(btn);
        tr.append(td);
      }
      return tr;
    });
    if (reset) ui.auditRows.replaceChildren(...rows);
    else ui.auditRows.append(...rows);
    const last = entries[entries.length - 1];
    if (last && typeof last.id === "string") state.auditOldest = last.id;
    else if (reset) state.auditOldest = null;
    ui.auditMore.classList.toggle("hidden", entries.length < AUDIT_PAGE);
    ui.auditStatus.textContent = ui.auditRows.childElementCount ? "" : "Nothing logged yet.";
  } catch (e) {
    ui.auditStatus.textContent = `Could not load the audit log: ${describe(e)}`;
  }
}
ui.auditMore.addEventListener("click", () => loadAudit(false));

async function unban(user, room, btn) {
  const where = room ? `#${room}` : "this server";
  if (!(await confirmAction(`Lift the ban of ${displayName(user)} from ${where}?`, "Unban"))) return;
  try {
    const ack = await request("mod:unban", room ? { user, room } : { user });
    btn.disabled = true;
    btn.textContent = ack.lifted ? "Lifted" : "Not banned";
    loadAudit(true);
  } catch (e) {
    toast(`Unban failed: ${describe(e)}`);
  }
}

// ---------------------------------------------------------------------------
// DOM events

ui.nameForm.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  if (ui.nameSubmit.disabled) return;
  if (!state.auth) {
    ui.nameSubmit.disabled = true;
    state.auth = await fetchAuth();
    ui.nameSubmit.disabled = false;
    if (!state.auth) {
      ui.loginError.textContent = "Cannot reach the server; try again.";
      return;
    }
    configureLogin();
  }
  if (wantsToken()) {
    const token = ui.tokenInput.value.trim();
    if (!token) {
      ui.loginError.textContent = "Please paste your token.";
      return;
    }
    ui.tokenInput.value = "";
    storeToken(token, "pasted");
    connectWithToken(token);
    return;
  }
  const name = ui.nameInput.value.trim().normalize("NFC");
  if (!name) {
    ui.loginError.textContent = "Please enter a name.";
    return;
  }
  if (state.auth.mode === "open") {
    connectAs({ name }, { id: name, name });
    return;
  }
  // guest: a new identity holding this name
  ui.nameSubmit.disabled = true;
  ui.loginError.textContent = "";
  try {
    const grant = await signUpGuest(name);
    storeToken(grant.token, "guest");
    connectWithToken(grant.token, grant.user);
  } catch (e) {
    ui.nameSubmit.disabled = false;
    ui.loginError.textContent = `${e.code}: ${e.message}`;
    ui.nameInput.focus();
  }
});

ui.tokenToggle.addEventListener("click", () => {
  state.tokenFlow = !state.tokenFlow;
  ui.loginError.textContent = "";
  configureLogin();
  (wantsToken() ? ui.tokenInput : ui.nameInput).focus();
});

ui.logout.addEventListener("click", () => {
  const name = state.me?.name;
  logout();
  // In open mode the name is the identity: offer it again. (A guest name stays held by
  // the identity just forgotten, so it is not offered.)
  if (name && state.auth?.mode === "open") ui.nameInput.value = name;
});

ui.roomForm.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const name = ui.roomInput.value.trim().replace(/^#/, "").toLowerCase();
  if (!name) return;
  if (!ROOM_RE.test(name)) {
    toast("Room names are 1–64 characters: a–z, 0–9, '-' or '_', starting with a letter or digit");
    return;
  }
  const priv = ui.roomPrivate.checked;
  const announce = ui.roomAnnounce.checked;
  const existing = state.rooms.get(name);
  if (existing?.joined && !priv && !announce) {
    ui.roomInput.value = "";
    showConversation(existing);
    return;
  }
  if (priv || announce) {
    // A new room of one's own: create it (refused if it exists or is in use), then join.
    try {
      const ack = await request("room:create", { room: name, private: priv, announce });
      state.owned.set(ack.room ?? name, { private: !!ack.private, announce: !!ack.announce });
      saveOwned();
    } catch (e) {
      toast(`Could not create #${name}: ${describe(e)}`);
      return;
    }
    ui.roomPrivate.checked = false;
    ui.roomAnnounce.checked = false;
    updateRoomSubmit();
  }
  try {
    await joinRoom(name);
    ui.roomInput.value = "";
    refreshRoomList();
  } catch (e) {
    toast(`Could not join #${name}: ${describe(e)}`);
  }
});

ui.dmToForm.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const name = ui.dmToInput.value.trim().replace(/^@/, "").normalize("NFC");
  if (!name) return;
  if (!NAME_RE.test(name)) {
    toast("User names are 1–32 letters, digits, '_', '.' or '-'");
    return;
  }
  if (state.auth?.mode === "open" || !state.me) {
    // open mode: the name is the user id
    ui.dmToInput.value = "";
    openDm(name);
    return;
  }
  // guest/jwt: find the user id of an online user with that name
  let id = null;
  try {
    state.everyone = usersMap((await request("users:list", {})).users);
  } catch {
    /* offline or refused: look in the last list we have */
  }
  const lower = name.toLowerCase();
  for (const uid of state.everyone.keys()) {
    if (displayName(uid).normalize("NFC").toLowerCase() === lower) {
      id = uid;
      if (displayName(uid).normalize("NFC") === name) break; // an exact match wins
    }
  }
  if (!id) {
    toast(`no online user named ${name}`);
    return;
  }
  ui.dmToInput.value = "";
  openDm(id);
});

// Coming back to the page reads what arrived in the open conversation meanwhile.
document.addEventListener("visibilitychange", () => {
  const conv = state.view;
  if (!conv || document.visibilityState !== "visible") return;
  if (conv.unread) {
    conv.unread = 0;
    conv.expect = 0;
    updateTitle();
    renderRooms();
    renderDms();
  }
  if (conv.kind === "dm") markRead(conv);
});

ui.leaveRoom.addEventListener("click", () => {
  if (state.view?.kind === "room") leaveRoom(state.view);
});

ui.composerForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  sendCurrent();
  ui.composer.focus();
});

ui.composer.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    sendCurrent();
  }
});
ui.composer.addEventListener("input", onComposerInput);
ui.composer.addEventListener("blur", stopTyping);

// Re-render relative timestamps (today vs. another day) after midnight, cheaply.
setInterval(() => {
  for (const li of ui.list.querySelectorAll(".message time[datetime]")) {
    li.textContent = formatTime(Date.parse(li.dateTime));
  }
}, 5 * 60 * 1000);

// ---------------------------------------------------------------------------
// Start

/** Learns the server's auth mode (retrying while it cannot be reached), then signs in
 * with what this browser has stored, or shows the login form. */
async function start() {
  setConn("offline");
  const token = localStorage.getItem(TOKEN_KEY);
  const savedName = localStorage.getItem(NAME_KEY);
  // Signing in by itself: no login form flashing by meanwhile.
  if (token || savedName) ui.loginView.classList.add("hidden");
  for (let attempt = 0; !state.auth; attempt++) {
    state.auth = await fetchAuth();
    if (state.auth) break;
    setConn("connecting", "cannot reach the server");
    if (attempt === 0) showLogin("Cannot reach the server; retrying…");
    await sleep(Math.min(30000, 1000 * 2 ** attempt));
  }
  if (state.socket) return; // the user signed in by hand meanwhile
  if (state.auth.mode === "open") {
    if (savedName) {
      ui.nameInput.value = savedName;
      connectAs({ name: savedName }, { id: savedName, name: savedName });
      return;
    }
  } else if (token) {
    state.tokenFlow = localStorage.getItem(TOKEN_KIND_KEY) === "pasted";
    connectWithToken(token);
    return;
  }
  setConn("offline");
  showLogin();
}

start();
