#!/usr/bin/env bash
# Connection churn (issue 13): CLIENTS clients that each, over and over, connect, join
# a fresh room, send one 200-byte message, leave and disconnect, from one IP, against
# one gateway with the DEFAULT limits (quotas and caps on) backed by its own
# redis-server. scripts/churn.mjs first warms the gateway up with one client (5 s), then
# reports rooms created, messages accepted/refused,
# Redis used_memory over time and the gateway's RSS (start, peak, end, 15 s after).
# Both processes are started here and stopped by PID on exit; the temp dir goes too.
#   scripts/bench-churn.sh
#   CHURN_SECONDS=60 CLIENTS=20 scripts/bench-churn.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# (Not SECONDS: that is bash's own "seconds since the shell started".)
RUN_SECONDS="${CHURN_SECONDS:-180}"
CLIENTS="${CLIENTS:-50}"
BIN="${CARGO_TARGET_DIR:-target}/release"
[[ -x "$BIN/confab" ]] || { echo "build first: cargo build --release -p confab" >&2; exit 1; }
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || { echo "redis-server/redis-cli not found" >&2; exit 1; }

ulimit -n "$(ulimit -Hn)"
STATE="$(mktemp -d /tmp/confab-bench-churn.XXXXXX)"
pids=()
# shellcheck source=lib/procs.sh
source scripts/lib/procs.sh
cleanup() { stop_all; rm -rf "$STATE"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "machine: $(nproc) cores, $(uname -r); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' (dirty)')"

rport="$(free_port)"
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$STATE" >"$STATE/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$rport" ping >/dev/null || { echo "redis-server did not start:" >&2; cat "$STATE/redis.log" >&2; exit 1; }

# DEFAULT quotas and caps: nothing but bind, redis and auth
"$BIN/confab" serve --bind 127.0.0.1:0 --redis "redis://127.0.0.1:$rport/" --auth open \
  >"$STATE/confab.out" 2>"$STATE/confab.err" &
pids+=($!)
server_pid=$!
wait_listening confab "$STATE/confab" "$server_pid"
echo "gateway pid $server_pid at $url; redis-server pid ${pids[0]} on port $rport"

node scripts/churn.mjs --url "$url" --server-pid "$server_pid" --redis-port "$rport" \
  --seconds "$RUN_SECONDS" --clients "$CLIENTS"
