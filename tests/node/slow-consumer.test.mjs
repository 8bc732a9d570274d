// Slow consumers: a client that stops reading fills its outgoing buffer; the server
// must disconnect it (a reason it can see), count it, and keep delivering every
// message to everyone else. The stalled client is a raw websocket whose TCP socket
// stops being read (`pause()`), exactly what a frozen tab or a dead phone does.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { Harness, call, uname, uroom, assertOk, join, sleep, T } from "./lib.mjs";

const h = new Harness([
  "--socket-buffer-bytes", "65536", "--rate-limit", "10000", "--rate-burst", "10000",
  "--ping-interval-ms", "60000", "--ping-timeout-ms", "60000",
]);
before(async () => {
  await h.start();
});
after(async () => {
  await h.stop();
});

/** A raw Engine.IO/Socket.IO websocket client that joins `room`, then can stop reading. */
function stalledClient(url, name, room) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket");
    const frames = [];
    const timer = setTimeout(() => reject(new Error("stalled client did not join")), 5000);
    ws.on("message", (data) => {
      const f = data.toString();
      frames.push(f);
      if (f.startsWith("0{")) ws.send(`40${JSON.stringify({ name })}`);
      else if (f.startsWith("40{")) ws.send(`421${JSON.stringify(["room:join", { room }])}`);
      else if (f.startsWith("431[")) {
        clearTimeout(timer);
        resolve({ ws, frames });
      } else if (f === "2") ws.send("3");
    });
    ws.on("error", reject);
  });
}

test("a client that stops reading is disconnected and counted; everyone else gets every message", { timeout: 120000 }, async () => {
  const room = uroom("slow");
  const stalled = await stalledClient(h.url, uname("stalled"), room);
  const readers = [];
  for (let i = 0; i < 10; i++) {
    const s = await h.connect(uname("reader"));
    await join(s, room);
    const got = [];
    s.on("message:new", (m) => m.room === room && got.push(m.id));
    readers.push(got);
  }
  const sender = await h.connect(uname("sender"));
  await join(sender, room);
  // Stop reading: the server's writes pile up in the kernel, then in its buffer.
  stalled.ws._socket.pause();
  const text = "x".repeat(3900);
  const sent = [];
  let slow = 0;
  for (let i = 0; i < 4000 && slow === 0; i++) {
    sent.push(assertOk(await call(sender, "message:send", { room, text })).message.id);
    if (i % 100 === 99) {
      const metrics = await (await fetch(h.url + "/metrics")).text();
      slow = Number(metrics.match(/^confab_slow_consumers_total(?:\{[^}]*\})? (\d+)/m)?.[1] ?? 0);
    }
  }
  assert.ok(slow >= 1, `the stalled client was detected after ${sent.length} messages`);
  // The stalled user is gone from the room at once (presence clean-up ran).
  const until = Date.now() + 5000;
  let users;
  while (Date.now() < until) {
    users = assertOk(await call(sender, "users:list", { room })).users.map((u) => u.name);
    if (!users.some((n) => n.startsWith("stalled"))) break;
    await sleep(100);
  }
  assert.ok(!users.some((n) => n.startsWith("stalled")), JSON.stringify(users));
  // Everyone else received every message, once, in order.
  await sleep(500);
  for (const got of readers) assert.deepEqual(got, sent);
  // When the stalled client reads again it drains what was queued and then learns
  // it was disconnected: a Socket.IO disconnect packet or the connection closing.
  const closed = new Promise((resolve) => stalled.ws.once("close", () => resolve("close")));
  const disconnectPacket = new Promise((resolve) => {
    const check = () => (stalled.frames.some((f) => f.startsWith("41")) ? resolve("41") : setTimeout(check, 50));
    check();
  });
  stalled.ws._socket.resume();
  const how = await Promise.race([closed, disconnectPacket, sleep(20000).then(() => "nothing")]);
  assert.notEqual(how, "nothing", "the stalled client learns it was disconnected");
  stalled.ws.terminate();
});
