#!/usr/bin/env bash
# Fan-out over HTTP long-polling with the stock socket.io-client (loadtest/polling.mjs)
# against a fresh release confab. Builds nothing: needs target/release/confab
# (cargo build --release -p confab) and the root node_modules (npm ci).
#
#   scripts/bench-polling.sh                                   # 1000 clients, 10 senders, 100 msg/s, 10 s
#   CLIENTS=100 RATE=20 DURATION=5 scripts/bench-polling.sh    # a quick run
#   PROCS=2 scripts/bench-polling.sh --sender-transport websocket   # extra args go to polling.mjs
#
# Starts `confab serve --bind 127.0.0.1:0 --rate-limit 1000 --rate-burst 1000` (the
# senders send RATE/SENDERS msg/s each), reads its port from the listening line, runs
# polling.mjs with --server-pid, stops exactly that server by its PID (also on
# errors and Ctrl-C), prints the summary and the path of the JSON result. Exit
# status: polling.mjs's (0 = nothing lost or duplicated, everyone connected, every
# message acked). Loopback only; the run is bounded by `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS="${CLIENTS:-1000}"
SENDERS="${SENDERS:-10}"
RATE="${RATE:-100}"
DURATION="${DURATION:-10}"
GRACE="${GRACE:-5}"
DRAIN="${DRAIN:-0}"       # extra wait (s) while late deliveries still arrive; 0: report right after GRACE
PROCS="${PROCS:-1}"
CONNECT_TIMEOUT="${CONNECT_TIMEOUT:-60}"
OUT_DIR="${OUT_DIR:-artifacts/bench}"
SERVER_ARGS=(--rate-limit 1000 --rate-burst 1000)

bin="${CARGO_TARGET_DIR:-target}/release/confab"
[[ -x "$bin" ]] || { echo "bench-polling: $bin missing (cargo build --release -p confab)" >&2; exit 2; }
[[ -d node_modules/socket.io-client ]] || { echo "bench-polling: node_modules/socket.io-client missing (npm ci)" >&2; exit 2; }

ulimit -n "$(ulimit -Hn)"
mkdir -p "$OUT_DIR"
STATE="$(mktemp -d /tmp/confab-bench-polling.XXXXXX)"

# shellcheck source=lib/bench-server.sh
source scripts/lib/bench-server.sh

echo "== confab long-polling fan-out, $(date -u +%FT%TZ)"
echo "machine: $(nproc) cores; open files $(ulimit -n); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (+local changes)')"
start_server "$STATE/server"
echo "server: pid $server_pid at $server_url (${SERVER_ARGS[*]})"

out="$OUT_DIR/polling-c$CLIENTS-r$RATE-d$DURATION-p$PROCS.json"
cmd=(node loadtest/polling.mjs --url "$server_url" --server-pid "$server_pid"
  --clients "$CLIENTS" --senders "$SENDERS" --rate "$RATE" --duration "$DURATION" --grace "$GRACE" --drain "$DRAIN"
  --procs "$PROCS" --connect-timeout "$CONNECT_TIMEOUT" --json "$@")
echo "command: ${cmd[*]}"
limit=$(awk -v c="$CONNECT_TIMEOUT" -v d="$DURATION" -v g="$GRACE" -v r="$DRAIN" 'BEGIN { printf "%d", c + 2 * d + g + r + 90 }')
status=0
timeout --signal=INT --kill-after=10 "$limit" "${cmd[@]}" >"$out" || status=$?
stop_server

if [[ -s "$out" ]]; then
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const d = r.deliveries, l = r.latencyMs, s = r.server || {};
    console.log(`${r.connect.clientsConnected}/${r.config.clients} clients (connect+join ${r.connect.connectJoinS} s), ` +
      `${r.messages.acked}/${r.messages.scheduled} acked; deliveries ${d.received}/${d.expected} (${d.perSecond}/s), ` +
      `lost ${d.lost}, duplicates ${d.duplicates}, out of order ${d.outOfOrder}; ` +
      `latency p50 ${l.p50} p90 ${l.p90} p99 ${l.p99} max ${l.max} ms; disconnects ${r.disconnects.total}`);
    for (const p of r.loadgen.procs) console.log(`loadgen ${p.role} pid ${p.pid}: ${p.cpuSendPhasePct}% CPU during sends, event-loop p99 ${p.eventLoopDelayP99Ms} ms`);
    console.log(`machine: ${r.machine.cores} cores, ${r.machine.busyPctSendPhase}% busy during sends`);
    if (r.loadgen.saturated) console.log("loadgen saturated (a process >= 90% CPU or event-loop p99 >= 100 ms): latency measures the clients too; more PROCS helps only with idle cores");
    console.log(`server: ${s.cpuSendGraceS} s CPU send+grace (${s.cpuSendGracePct}%), ${s.cpuTotalS} s total, RSS ${s.rssMb?.end} MB (peak ${s.peakRssMb})`);
    console.log(r.ok ? "result: OK" : "result: FAIL");' "$out" || true
else
  echo "bench-polling: no result (status $status)" >&2
fi
echo "json: $out"
exit "$status"
