// One flooder on three gateways behind nginx, with the default quotas (issue 13): the
// short form of scripts/bench-flooder.mjs (see docs/performance.md for the figures).
// Asserts counts only, never timings: the flooder user (6 sockets, 2 per gateway,
// sending as fast as its acks come back) gets at most its quota's burst + rate x T
// accepted cluster-wide, the rest is refused `rate_limited` with retryAfterMs, every
// accepted flood message reaches an honest member, and the honest users (each from
// its own loopback address) get no refusal and miss no delivery.
import { test } from "node:test";
import assert from "node:assert/strict";
import { runBench } from "../../scripts/bench-flooder.mjs";

test("one flooder on three gateways is held to its message quota cluster-wide; honest users are never refused", { timeout: 120000 }, async () => {
  const r = await runBench({ users: 6, seconds: 8, warmup: 1, phases: ["flood"], flooderSockets: 6, drainSeconds: 5, quiet: true });
  assert.deepEqual(r.defaults_mismatch, [], "the bench passes the binary's default limits");
  assert.deepEqual(Object.values(r.placement).map((g) => g.flooder_sockets), [2, 2, 2], JSON.stringify(r.placement));
  assert.deepEqual(Object.values(r.placement).map((g) => g.honest), [2, 2, 2], JSON.stringify(r.placement));
  const [p] = r.phases;
  const F = p.flooder;
  const msg = JSON.stringify({ flooder: F, honest: p.honest, cluster: p.cluster });
  // 10/s, burst 30, across the cluster. T is measured by the flooder from its first send
  // to its last ack, which brackets the server's window; +1 for rounding.
  assert.ok(F.accepted <= 30 + 10 * F.flood_seconds + 1, msg);
  assert.ok(F.accepted >= 30, msg); // the burst is always there at the start
  assert.ok(F.refused_quota > 0, msg);
  assert.ok(F.retry_after_ms_summary.min >= 1 && F.retry_after_ms_summary.max <= 1000, msg);
  assert.deepEqual(F.refused_other, {}, msg);
  assert.equal(F.ack_timeouts, 0, msg);
  assert.equal(F.connected_at_end, 6, msg);
  assert.equal(F.delivered_at_observer, F.accepted, msg);
  assert.ok(p.honest.sent > 0, msg);
  assert.equal(p.honest.refused_total, 0, msg);
  assert.equal(p.honest.ack_timeouts, 0, msg);
  assert.equal(p.honest.acked, p.honest.sent, msg);
  assert.equal(p.honest.deliveries_missing, 0, msg);
  assert.deepEqual(r.honest_disconnects, [], msg);
});
