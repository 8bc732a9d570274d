// Short soak for `make test` (2 minutes): redis-server, three gateways and nginx, 60
// users chatting at ~15 msg/s over 12 rooms, leaving and joining rooms, sending and
// reading DMs, disconnecting and resuming (tests/soak/soak.mjs). The 30-minute form
// is `make soak`; its figures are in docs/performance.md ("Soak (issue 13)").
import { test } from "node:test";
import assert from "node:assert/strict";
import { runSoak, printResult, boundsFor } from "./soak.mjs";

test("soak (2 minutes): nothing lost or duplicated, everyone resumes, memory flat", { timeout: 300000 }, async (t) => {
  const r = await runSoak({ minutes: 2, users: 60, rate: 15, rooms: 12 });
  printResult(r);

  await t.test("enough traffic of every kind", () => {
    // 15 msg/s for 120 s is 1800; sends wait for their acks, so a little less.
    assert.ok(r.roomMessagesAcked + r.dmsAcked >= 1200, `acked ${r.roomMessagesAcked} room messages + ${r.dmsAcked} DMs`);
    assert.ok(r.dmsAcked >= 50, `DMs acked: ${r.dmsAcked}`);
    assert.ok(r.roomSwitches >= 20, `room switches: ${r.roomSwitches}`);
    assert.ok(r.reconnectsWithSendInFlight >= 10, `reconnects with a send in flight: ${r.reconnectsWithSendInFlight}`);
    assert.ok(r.expectedDeliveries >= 8000, `expected deliveries: ${r.expectedDeliveries}`);
  });

  await t.test("every acked message reaches every member exactly once, in order, and is stored", () => {
    assert.equal(r.lost, 0, `lost: ${r.lostExamples.join("; ")}`);
    assert.equal(r.duplicates, 0, `duplicates: ${r.dupExamples.join("; ")}`);
    assert.equal(r.orderErrors, 0);
    assert.equal(r.truncatedResumes, 0, "no resume within the retention window is truncated");
    assert.equal(r.missingInHistory, 0, `missing in the stream: ${r.historyExamples.join("; ")}`);
    assert.equal(r.duplicateStores, 0, `clientIds stored twice: ${r.dupStoreExamples.join("; ")}`);
    assert.equal(r.unacked, 0, `every send acked in the end: ${r.unackedExamples.join("; ")}`);
  });

  await t.test("every acked DM reaches its recipient, once per connection", () => {
    assert.equal(r.dmLost, 0, `DMs lost: ${r.dmExamples.join("; ")}`);
    assert.equal(r.dmDuplicates, 0);
  });

  await t.test("every user reconnected and resumed", () => {
    assert.equal(r.usersReconnected, r.users, `users that reconnected: ${r.usersReconnected}/${r.users}`);
    assert.ok(r.resumed >= r.reconnects, `resumed ${r.resumed} of ${r.reconnects} reconnects`);
    assert.equal(r.unresumed, 0);
    assert.equal(r.errorCount, 0, `client errors: ${r.errors.join("; ")}`);
  });

  await t.test("gateway RSS and Redis memory flat after the warm-up", () => {
    const b = boundsFor(r.minutes);
    const redis = r.resources.redis;
    assert.ok(redis.samplesAfterWarmup >= 15, `Redis samples after the warm-up: ${redis.samplesAfterWarmup}`);
    assert.ok(redis.growthPer10MinPct < b.redisPctPer10Min,
      `Redis used_memory slope ${redis.slopeKiBPerMin} KiB/min = ${redis.growthPer10MinPct}% of ${redis.levelKiB} KiB per 10 min (bound ${b.redisPctPer10Min}%)`);
    for (const g of r.resources.gateways) {
      assert.ok(g.samplesAfterWarmup >= 15, `${g.id} samples after the warm-up: ${g.samplesAfterWarmup}`);
      assert.ok(g.growthPer10MinPct < b.rssPctPer10Min,
        `${g.id} RSS slope ${g.slopeKiBPerMin} KiB/min = ${g.growthPer10MinPct}% of ${g.levelKiB} KiB per 10 min (bound ${b.rssPctPer10Min}%)`);
    }
  });
});
