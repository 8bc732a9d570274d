// room:join {since}: truncation by --resume-max and by --history-retention.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Harness, FAST, call, uname, uroom, assertOk, join, send, T } from "./lib.mjs";

const capped = new Harness([...FAST, "--resume-max", "5"]);
const retained = new Harness([...FAST, "--history-retention", "5"]);
before(async () => {
  await Promise.all([capped.start(), retained.start()]);
});
after(async () => {
  await Promise.all([capped.stop(), retained.stop()]);
});

test("--resume-max 5: since with more than 5 newer messages → truncated, latest 5, hasMore", T, async () => {
  const room = uroom("cap");
  const a = await capped.connect(uname("ca"));
  await join(a, room);
  const sent = [];
  for (let i = 1; i <= 7; i++) sent.push(await send(a, room, `c${i}`));
  const b = await capped.connect(uname("cb"));

  const fromStart = assertOk(await call(b, "room:join", { room, since: "0-0" }));
  assert.equal(fromStart.truncated, true, JSON.stringify(fromStart));
  assert.deepEqual(fromStart.messages, sent.slice(2));
  assert.equal(fromStart.hasMore, true);

  const from1 = assertOk(await call(b, "room:join", { room, since: sent[0].id }));
  assert.equal(from1.truncated, true);
  assert.deepEqual(from1.messages, sent.slice(2));
  assert.equal(from1.hasMore, true);

  // exactly 5 newer: not truncated
  const from2 = assertOk(await call(b, "room:join", { room, since: sent[1].id }));
  assert.ok(!from2.truncated, `exactly resume-max newer messages must not be truncated: ${JSON.stringify(from2.truncated)}`);
  assert.deepEqual(from2.messages, sent.slice(2));

  // the hole is at the old end and can be paged with message:history
  const hole = await call(b, "message:history", { room, before: fromStart.messages[0].id });
  assert.deepEqual(hole, { ok: true, room, messages: sent.slice(0, 2), hasMore: false });
});

// Exact retention is the memory backend's; Redis trims approximately (XADD MAXLEN ~,
// whole stream nodes), which crates/confab-backend/tests/redis.rs covers.
const onRedis = /--redis/.test(process.env.CONFAB_TEST_ARGS ?? "");
test("--history-retention 5: since pointing before dropped messages → truncated, retained messages only", { ...T, skip: onRedis && "exact retention is a memory-backend property" }, async () => {
  const room = uroom("ret");
  const a = await retained.connect(uname("ra"));
  await join(a, room);
  const sent = [];
  for (let i = 1; i <= 8; i++) sent.push(await send(a, room, `r${i}`));
  const b = await retained.connect(uname("rb"));

  const hist = await call(b, "room:join", { room, limit: 50 });
  assert.deepEqual(hist.messages, sent.slice(3), "only the last 5 messages are kept");
  assert.equal(hist.hasMore, false);

  const gap = assertOk(await call(b, "room:join", { room, since: sent[0].id }));
  assert.equal(gap.truncated, true, `messages after since were dropped: ${JSON.stringify(gap)}`);
  assert.deepEqual(gap.messages, sent.slice(3));

  const noGap = assertOk(await call(b, "room:join", { room, since: sent[2].id }));
  assert.ok(!noGap.truncated, `nothing after since was dropped: ${JSON.stringify(noGap.truncated)}`);
  assert.deepEqual(noGap.messages, sent.slice(3));

  const page = await call(b, "message:history", { room, limit: 3 });
  assert.deepEqual(page, { ok: true, room, messages: sent.slice(5), hasMore: true });
  const page2 = await call(b, "message:history", { room, limit: 3, before: page.messages[0].id });
  assert.deepEqual(page2, { ok: true, room, messages: sent.slice(3, 5), hasMore: false });
});
