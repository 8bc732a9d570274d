// Artillery processor shared by every confab scenario (smoke.yml, chat-mix.yml,
// fanout.yml). Artillery's socketio engine only counts emits and ack round trips;
// this adds what a chat load test needs (metric names are listed in README.md):
//
//   - makes every virtual user's socket safe: the engine leaves one-time `error` and
//     `connect_error` listeners from its connect step that would call its connect
//     callback a second time (and crash the worker) if the server pushed an `error`
//     event or the socket failed to reconnect;
//   - checks every ack: `{ok: true}` counts as confab.acks_ok, anything else as
//     confab.acks_failed plus confab.ack_error.<code> (`timeout` when no ack came
//     within socket.io-client's ackTimeout, `malformed` for a non-object ack);
//     the scenario's own `acknowledge: match` then fails the virtual user;
//   - listens to `message:new` / `dm:new`, counts them and records the delivery
//     latency of messages sent by the load generator: senders put their send time
//     in the text (`lt:<epoch ms>:...`) and receivers share the clock;
//   - counts server `error` pushes and unexpected disconnects.
//
// Flow steps call `setup` first (right after the engine has connected), then
// `stampText` before each `message:send` / `dm:send`.
'use strict';

const { performance } = require('node:perf_hooks');

const DEFAULT_ROOMS = ['lobby', 'dev', 'random', 'ops', 'music'];
const MAX_LOGGED_FAILURES = 5;
let loggedFailures = 0;
let sequence = 0;

// Wall-clock milliseconds with sub-millisecond resolution. timeOrigin is the
// epoch time at which this thread started, so values from different artillery
// worker threads (and other processes on this machine) are comparable.
function nowMs() {
  return performance.timeOrigin + performance.now();
}

function metricName(s) {
  return String(s).replace(/[^A-Za-z0-9_.-]+/g, '_');
}

function logFailure(what) {
  if (loggedFailures < MAX_LOGGED_FAILURES) {
    loggedFailures += 1;
    console.error(`confab loadtest: ${what}`);
  }
}

// The `lt:<ms>:` stamp written by stampText, or null for other texts.
function sentAt(text) {
  if (typeof text !== 'string' || !text.startsWith('lt:')) return null;
  const end = text.indexOf(':', 3);
  const ms = Number(text.slice(3, end === -1 ? undefined : end));
  return Number.isFinite(ms) ? ms : null;
}

function recordDelivery(events, kind, msg) {
  const now = nowMs();
  events.emit('counter', `confab.${kind}_received`, 1);
  if (!msg || typeof msg !== 'object') return;
  const sent = sentAt(msg.text);
  if (sent !== null) {
    events.emit('histogram', `confab.${kind === 'messages' ? 'delivery' : 'dm'}_latency_ms`,
      Math.max(0, now - sent));
  }
  if (kind === 'messages' && typeof msg.ts === 'number') {
    // server store time -> client receive time (server ts has 1 ms resolution)
    events.emit('histogram', 'confab.server_to_client_ms', Math.max(0, now - msg.ts));
  }
}

// Inspects the arguments of an ack callback. With socket.io-client's `ackTimeout`
// (set in the scenarios) they are (err) on timeout or (null, ack); without it, (ack).
function checkAck(events, event, args, startedAt) {
  let err = null;
  let ack = args[0];
  if (args.length >= 2 && args[0] === null) {
    ack = args[1];
  } else if (args[0] instanceof Error) {
    err = args[0];
  }
  if (err) {
    const code = /disconnect/i.test(err.message) ? 'disconnected' : 'timeout';
    events.emit('counter', 'confab.acks_failed', 1);
    events.emit('counter', `confab.ack_error.${code}`, 1);
    logFailure(`${event}: no ack (${err.message})`);
    return;
  }
  if (ack && typeof ack === 'object' && ack.ok === true) {
    events.emit('counter', 'confab.acks_ok', 1);
    events.emit('histogram', `confab.ack_ms.${metricName(event)}`, performance.now() - startedAt);
    return;
  }
  const code =
    ack && typeof ack === 'object' && ack.error && typeof ack.error.code === 'string'
      ? metricName(ack.error.code)
      : 'malformed';
  events.emit('counter', 'confab.acks_failed', 1);
  events.emit('counter', `confab.ack_error.${code}`, 1);
  logFailure(`${event}: ack ${JSON.stringify(ack)}`);
}

function pickRooms(context) {
  const set =
    typeof context.vars.roomSet === 'string' && context.vars.roomSet.trim() !== ''
      ? context.vars.roomSet.split(',').map((r) => r.trim()).filter(Boolean)
      : DEFAULT_ROOMS;
  const first = set[Math.floor(Math.random() * set.length)];
  // Half of the users join a second, different room; the others "join" their first
  // room again (allowed: same ack, no second presence change), so 1-2 rooms each.
  const others = set.filter((r) => r !== first);
  const second =
    others.length > 0 && Math.random() < 0.5
      ? others[Math.floor(Math.random() * others.length)]
      : first;
  context.vars.room1 = first;
  context.vars.room2 = second;
}

// First step of every scenario: the engine has connected the socket by now.
function setup(context, events, done) {
  const socket = context.sockets && context.sockets[''];
  if (!socket) {
    return done(new Error('confab setup: no socket (is the scenario engine socketio?)'));
  }

  // The engine's one-time connect listeners: harmful once connected.
  socket.removeAllListeners('error');
  socket.removeAllListeners('connect_error');
  socket.on('error', (payload) => {
    const code =
      payload && payload.error && typeof payload.error.code === 'string'
        ? metricName(payload.error.code)
        : 'unknown';
    events.emit('counter', `confab.server_error.${code}`, 1);
    logFailure(`server error push ${JSON.stringify(payload)}`);
  });
  socket.on('connect_error', (err) => {
    events.emit('counter', 'confab.connect_error', 1);
    logFailure(`connect_error after connect: ${err && err.message}`);
  });
  socket.on('disconnect', (reason) => {
    if (reason !== 'io client disconnect') {
      events.emit('counter', `confab.disconnect.${metricName(reason)}`, 1);
      logFailure(`unexpected disconnect: ${reason}`);
    }
  });

  socket.on('message:new', (msg) => recordDelivery(events, 'messages', msg));
  socket.on('dm:new', (msg) => recordDelivery(events, 'dms', msg));
  socket.on('typing', () => events.emit('counter', 'confab.typing_received', 1));
  socket.on('room:presence', () => events.emit('counter', 'confab.presence_received', 1));

  // Check the ack of every emit that asks for one.
  const emit = socket.emit;
  socket.emit = function checkedEmit(event, ...args) {
    const last = args[args.length - 1];
    if (typeof last === 'function') {
      const startedAt = performance.now();
      args[args.length - 1] = function ackWithCheck(...ackArgs) {
        checkAck(events, event, ackArgs, startedAt);
        return last.apply(this, ackArgs);
      };
    }
    return emit.call(this, event, ...args);
  };

  // Present from the start so `ensure` conditions on them always evaluate.
  events.emit('counter', 'confab.acks_failed', 0);
  events.emit('counter', 'confab.acks_ok', 0);

  context.vars.me = socket.auth && socket.auth.name;
  if (typeof context.vars.me !== 'string') {
    return done(new Error('confab setup: the scenario must set socketio.auth.name'));
  }
  pickRooms(context);
  return done();
}

// Sets {{ text }} (carrying the send time) and {{ clientId }} for the next send.
function stampText(context, events, done) {
  sequence += 1;
  const stamp = nowMs().toFixed(3);
  context.vars.clientId = `${context.vars.me}.${sequence}`;
  context.vars.text = `lt:${stamp}:${context.vars.me}:${sequence} load test message`;
  return done();
}

module.exports = { setup, stampText, sentAt, checkAck, nowMs };
