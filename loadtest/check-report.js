#!/usr/bin/env node
// Checks an artillery JSON report (`artillery run -o report.json`) of a confab
// scenario and prints a one-line summary:
//   loadtest smoke: N vusers, M acks ok, K messages received, p99 latency X ms
// Exits 1 (reasons on stderr) if any virtual user failed, any error was counted,
// any ack was not ok (or missing), no message was received, a server `error` push
// or an unexpected disconnect happened.
//   node check-report.js [--label NAME] [--details] REPORT.json
'use strict';

const fs = require('node:fs');

function parseArgs(argv) {
  const opts = { label: null, details: false, file: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--label') opts.label = argv[++i];
    else if (a === '--details') opts.details = true;
    else if (!opts.file) opts.file = a;
    else throw new Error(`unexpected argument ${a}`);
  }
  if (!opts.file) throw new Error('usage: check-report.js [--label NAME] [--details] REPORT.json');
  return opts;
}

function fmt(v) {
  return typeof v === 'number' ? String(Math.round(v * 10) / 10) : 'n/a';
}

function check(report) {
  const agg = report.aggregate || {};
  const c = agg.counters || {};
  const s = agg.summaries || {};
  const n = (k) => c[k] || 0;
  const failures = [];

  const created = n('vusers.created');
  const completed = n('vusers.completed');
  const emitted = n('socketio.emit');
  const acksOk = n('confab.acks_ok');
  const received = n('confab.messages_received');

  if (created === 0) failures.push('no virtual user was created');
  if (n('vusers.failed') > 0) failures.push(`${n('vusers.failed')} virtual users failed`);
  if (completed !== created) failures.push(`${completed} of ${created} virtual users completed`);
  for (const [k, v] of Object.entries(c)) {
    if (v > 0 && (k.startsWith('errors.') || k.startsWith('confab.ack_error.')
      || k.startsWith('confab.server_error.') || k.startsWith('confab.disconnect.')
      || k === 'confab.connect_error' || k === 'confab.acks_failed')) {
      failures.push(`${k} = ${v}`);
    }
  }
  // Every emit in these scenarios asks for an ack: each must have come back ok.
  if (acksOk !== emitted) failures.push(`${acksOk} acks ok for ${emitted} emits`);
  if (received === 0) failures.push('no message:new was received');

  const lat = s['confab.delivery_latency_ms'] || {};
  return {
    failures,
    created,
    acksOk,
    received,
    lat,
    line: `${created} vusers, ${acksOk} acks ok, ${received} messages received, ` +
      `p99 latency ${fmt(lat.p99)} ms`,
  };
}

function details(report) {
  const agg = report.aggregate || {};
  const s = agg.summaries || {};
  const c = agg.counters || {};
  const out = [];
  const row = (name) => {
    const h = s[name];
    if (h) {
      out.push(`  ${name}: n=${h.count} p50=${fmt(h.p50)} p95=${fmt(h.p95)} ` +
        `p99=${fmt(h.p99)} max=${fmt(h.max)}`);
    }
  };
  row('confab.delivery_latency_ms');
  row('confab.server_to_client_ms');
  row('confab.dm_latency_ms');
  row('socketio.response_time');
  for (const name of Object.keys(s).filter((k) => k.startsWith('confab.ack_ms.')).sort()) row(name);
  const counters = Object.keys(c).filter((k) => k.startsWith('confab.') || k.startsWith('vusers.')
    || k.startsWith('errors.') || k === 'socketio.emit').sort();
  out.push('  ' + counters.map((k) => `${k}=${c[k]}`).join(' '));
  return out.join('\n');
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  const report = JSON.parse(fs.readFileSync(opts.file, 'utf8'));
  const r = check(report);
  const label = opts.label ? `loadtest ${opts.label}` : 'loadtest';
  if (opts.details) console.log(details(report));
  if (r.failures.length > 0) {
    console.error(`${label}: FAILED: ${r.line}`);
    for (const f of r.failures) console.error(`  - ${f}`);
    process.exit(1);
  }
  console.log(`${label}: ${r.line}`);
}

if (require.main === module) {
  try {
    main();
  } catch (err) {
    console.error(`check-report: ${err.message}`);
    process.exit(2);
  }
}

module.exports = { check };
