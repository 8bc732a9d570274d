// Short chaos run for `make test`: 100 clients for 50 s through nginx while a gateway
// is killed and restarted, another drained and restarted, Redis restarted, and then
// all three gateways restarted one after another (rolling restart).
// The long form (tests/chaos/chaos.mjs, 300 clients, 5 minutes) is `make chaos`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { runChaos, printResult } from "./chaos.mjs";

test("chaos: every acked message reaches every member exactly once, in order, and is in history", { timeout: 240000 }, async () => {
  const r = await runChaos({ clients: 100, seconds: 50, rooms: 5, rate: 40 });
  printResult(r);
  assert.ok(r.acked > 500, `enough traffic: ${r.acked} acked`);
  assert.equal(r.lost, 0, `lost: ${r.lostExamples.join("; ")}`);
  assert.equal(r.missingInHistory, 0);
  assert.equal(r.orderErrors, 0);
  assert.equal(r.duplicates, 0, `the server sent no message twice: ${r.dupExamples.join("; ")}`);
  assert.ok(r.reconnects > 0, "the faults did disconnect clients");
});
