// room:presence coalescing (--presence-interval-ms 500).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Harness, FAST, call, sleep, uname, uroom, assertOk, join, T } from "./lib.mjs";

const INTERVAL = 500;
const h = new Harness([...FAST, "--presence-interval-ms", String(INTERVAL)]);
before(async () => {
  await h.start();
});
after(async () => {
  await h.stop();
});

/** Record room:presence pushes for one room, with arrival times. */
function record(socket, room) {
  const items = [];
  socket.on("room:presence", (p) => {
    if (p && p.room === room) items.push({ at: Date.now(), p });
  });
  return items;
}

/**
 * An uncapped presence push: exactly {room, joined, left, joinedIds, leftIds}, the ids in
 * the same order as the names (open mode: the id is the name, so they are equal).
 */
function assertShape(p) {
  assert.deepEqual(Object.keys(p).sort(), ["joined", "joinedIds", "left", "leftIds", "room"], `presence keys: ${JSON.stringify(p)}`);
  assertIds(p);
}

/** joinedIds / leftIds are present and match joined / left one for one (id = name here). */
function assertIds(p) {
  assert.ok(Array.isArray(p.joined) && Array.isArray(p.left), JSON.stringify(p));
  assert.deepEqual(p.joinedIds, p.joined, `joinedIds must list the ids of joined, in order: ${JSON.stringify(p)}`);
  assert.deepEqual(p.leftIds, p.left, `leftIds must list the ids of left, in order: ${JSON.stringify(p)}`);
}

/** Poll (bounded) until pred() holds. */
async function until(pred, timeoutMs) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (pred()) return true;
    await sleep(25);
  }
  return pred();
}

function assertSpacing(items) {
  for (let i = 1; i < items.length; i++) {
    const gap = items[i].at - items[i - 1].at;
    assert.ok(gap >= INTERVAL * 0.6, `two pushes for the same room ${gap} ms apart (interval ${INTERVAL})`);
  }
}

test("presence: 20 joins coalesce into few pushes; 20 disconnects likewise", { timeout: 30000 }, async () => {
  const room = uroom("pr");
  const obsName = uname("po");
  const obs = await h.connect(obsName);
  await join(obs, room);
  await sleep(INTERVAL + 300); // let the observer's own join flush
  const pushes = record(obs, room);

  const names = Array.from({ length: 20 }, () => uname("pj"));
  const socks = await Promise.all(names.map((n) => h.connect(n)));
  const t0 = Date.now();
  const acks = await Promise.all(socks.map((s) => call(s, "room:join", { room })));
  for (const a of acks) assertOk(a);
  const union = () => new Set(pushes.flatMap((x) => x.p.joined));
  await until(() => union().size >= 20, 2000);
  await sleep(Math.max(0, 2000 - (Date.now() - t0))); // observe the full 2 s window
  const within = pushes.filter((x) => x.at - t0 <= 2000);
  assert.ok(within.length >= 1, "at least one presence push");
  assert.ok(within.length <= 4, `expected ≤ 4 coalesced pushes in 2 s, got ${within.length}`);
  for (const x of pushes) assertShape(x.p);
  const joinedAll = pushes.flatMap((x) => x.p.joined);
  assert.deepEqual([...joinedAll].sort(), [...names].sort(), "joined lists union to exactly the 20 names, each once");
  assert.deepEqual(pushes.flatMap((x) => x.p.left), [], "nobody left");
  assertSpacing(pushes);

  // ... and the final member list is right
  const j = assertOk(await call(obs, "room:join", { room }));
  assert.deepEqual(j.members, [obsName, ...names].sort());
  assert.deepEqual(j.memberIds, [obsName, ...names].sort(), "memberIds in the order of members");
  assert.equal(j.memberCount, 21);

  // now they all disconnect
  const leftPushes = record(obs, room);
  const t1 = Date.now();
  await Promise.all(socks.map((s) => h.close(s)));
  const leftUnion = () => leftPushes.flatMap((x) => x.p.left);
  await until(() => new Set(leftUnion()).size >= 20, 3000);
  await sleep(Math.max(0, 2000 - (Date.now() - t1)));
  for (const x of leftPushes) assertShape(x.p);
  assert.deepEqual([...leftUnion()].sort(), [...names].sort(), "left lists union to exactly the 20 names, each once");
  assert.deepEqual(leftPushes.flatMap((x) => x.p.joined), []);
  assert.ok(leftPushes.filter((x) => x.at - t1 <= 2000).length <= 4, `too many pushes: ${leftPushes.length}`);
  assertSpacing(leftPushes);
});

test("presence: a second tab joining/leaving does not change presence; re-joining is silent", T, async () => {
  const room = uroom("pt");
  const obs = await h.connect(uname("pq"));
  const un = uname("pu");
  const u1 = await h.connect(un);
  const u2 = await h.connect(un);
  await join(obs, room);
  await sleep(INTERVAL + 300);
  const pushes = record(obs, room);

  await join(u1, room);
  assert.ok(await until(() => pushes.length >= 1, 2000), "presence push for the first tab");
  assert.deepEqual(pushes[0].p, { room, joined: [un], left: [], joinedIds: [un], leftIds: [] });
  await sleep(INTERVAL + 200);

  await join(u2, room); // second connection of the same user
  await join(u1, room); // joining again
  await sleep(INTERVAL * 2 + 200);
  assert.equal(pushes.length, 1, `no presence change expected, got ${JSON.stringify(pushes.slice(1).map((x) => x.p))}`);

  assert.deepEqual(await call(u2, "room:leave", { room }), { ok: true, room }); // u1 still in
  await sleep(INTERVAL * 2 + 200);
  assert.equal(pushes.length, 1, `leaving tab while another remains must not push: ${JSON.stringify(pushes.map((x) => x.p))}`);

  assert.deepEqual(await call(u1, "room:leave", { room }), { ok: true, room }); // last connection
  assert.ok(await until(() => pushes.length >= 2, 2000), "presence push for the last tab leaving");
  assert.deepEqual(pushes[1].p, { room, joined: [], left: [un], joinedIds: [], leftIds: [un] });
  // every socket in the room gets it: the pushes went to obs; u1/u2 are gone, fine
});

test("presence: join then leave within one interval appears in neither (or as a consistent pair)", T, async () => {
  const room = uroom("pz");
  const obs = await h.connect(uname("pw"));
  await join(obs, room);
  await sleep(INTERVAL + 300);
  const pushes = record(obs, room);
  const zn = uname("pz");
  const z = await h.connect(zn);
  // a stable member joining in the same window, so a push is expected for sure
  const sn = uname("ps");
  const st = await h.connect(sn);
  await Promise.all([call(z, "room:join", { room }), call(st, "room:join", { room })]);
  assert.deepEqual(await call(z, "room:leave", { room }), { ok: true, room });
  assert.ok(await until(() => pushes.some((x) => x.p.joined.includes(sn)), 2000), "push with the stable joiner");
  await sleep(INTERVAL * 2 + 200);
  for (const x of pushes) assertShape(x.p);
  const joinedZ = pushes.filter((x) => x.p.joined.includes(zn)).length;
  const leftZ = pushes.filter((x) => x.p.left.includes(zn)).length;
  // Per the protocol: in neither. If the leave fell into the next interval, the join must
  // have been pushed and the leave pushed later (a consistent pair).
  assert.ok(
    (joinedZ === 0 && leftZ === 0) || (joinedZ === 1 && leftZ === 1),
    `inconsistent presence for ${zn}: ${JSON.stringify(pushes.map((x) => x.p))}`,
  );
  if (joinedZ === 1) {
    const ij = pushes.findIndex((x) => x.p.joined.includes(zn));
    const il = pushes.findIndex((x) => x.p.left.includes(zn));
    assert.ok(ij < il, "join pushed before leave");
  }
  assert.deepEqual(pushes.flatMap((x) => x.p.joined).filter((n) => n === sn), [sn]);
});

test("presence is per room: an observer of room X is not told about room Y", T, async () => {
  const x = uroom("px");
  const y = uroom("py");
  const obs = await h.connect(uname("pv"));
  await join(obs, x);
  const others = [];
  obs.on("room:presence", (p) => {
    if (p.room !== x && p.room !== "general") others.push(p);
  });
  const u = await h.connect(uname("pn"));
  await join(u, y);
  await sleep(INTERVAL * 2 + 200);
  assert.deepEqual(others, []);
});

test("presence: a crowd joining lists at most --presence-names-max names per push and counts the rest; the join ack lists at most --join-members-max", { timeout: 30000 }, async () => {
  const capped = new Harness([...FAST, "--presence-interval-ms", String(INTERVAL), "--presence-names-max", "3", "--join-members-max", "2"]);
  await capped.start();
  try {
    const room = uroom("pc");
    const obs = await capped.connect(uname("pco"));
    await join(obs, room);
    await sleep(INTERVAL + 300);
    const pushes = record(obs, room);
    const names = Array.from({ length: 8 }, () => uname("pcj"));
    const socks = await Promise.all(names.map((n) => capped.connect(n)));
    const acks = await Promise.all(socks.map((s) => call(s, "room:join", { room })));
    for (const a of acks) {
      assertOk(a);
      assert.ok(a.members.length <= 2, `join ack lists ${a.members.length} names`);
      assert.deepEqual(a.memberIds, a.members, "memberIds: the ids of members, in the same order");
      assert.ok(a.memberCount >= a.members.length);
    }
    // Every join is accounted for: listed or counted.
    const accounted = () => pushes.reduce((n, x) => n + x.p.joined.length + (x.p.joinedMore ?? 0), 0);
    await until(() => accounted() >= 8, 3000);
    assert.equal(accounted(), 8, JSON.stringify(pushes.map((x) => x.p)));
    for (const { p } of pushes) {
      const extra = Object.keys(p).filter((k) => !["room", "joined", "left", "joinedIds", "leftIds"].includes(k));
      assert.ok(extra.every((k) => k === "joinedMore" || k === "leftMore"), `presence keys: ${JSON.stringify(p)}`);
      assertIds(p);
      assert.ok(p.joined.length <= 3 && p.left.length <= 3, JSON.stringify(p));
      assert.ok(p.joinedMore === undefined || (Number.isInteger(p.joinedMore) && p.joinedMore > 0), JSON.stringify(p));
      for (const n of p.joined) assert.ok(names.includes(n), `unexpected name ${n}`);
    }
    assert.ok(pushes.some((x) => (x.p.joinedMore ?? 0) > 0), "8 joins in at most a few pushes must count some");
    // The server counts everyone (observer + 8).
    const last = await call(obs, "users:list", { room });
    assertOk(last);
    assert.equal(last.total, 9);
    for (const s of socks) s.disconnect();
    // Leaves are capped the same way.
    const leftCount = () => pushes.reduce((n, x) => n + x.p.left.length + (x.p.leftMore ?? 0), 0);
    await until(() => leftCount() >= 8, 3000);
    assert.equal(leftCount(), 8);
    for (const { p } of pushes) assertIds(p);
    obs.disconnect();
  } finally {
    await capped.stop();
  }
});
