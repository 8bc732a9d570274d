#!/usr/bin/env bash
# Cluster fan-out benchmark: the same confab-bench fan-out (1,000 clients in one
# room) against three topologies, all release builds on loopback:
#   single   one gateway, embedded backend
#   redis1   one gateway + Redis
#   redis2   two gateways + Redis (clients split round-robin over both)
#   ceiling  `confab-bench ceiling-server`: a minimal websocket broadcaster (each
#            frame serialised once, no Socket.IO machinery, no history/presence),
#            the practical limit of the box for this scenario, in the same series
# For each topology and rate, fresh processes are started and stopped by PID; the
# JSON reports go to $OUT_DIR and a summary table (deliveries/s, p50/p99, lost,
# duplicates, Redis CPU per message) is printed at the end.
#   scripts/bench-cluster.sh
#   RATES="100 200" TOPOLOGIES="single redis2" scripts/bench-cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS="${CLIENTS:-1000}"
SENDERS="${SENDERS:-10}"
RATES="${RATES:-100 200 400}"
DURATION="${DURATION:-10}"
THREADS="${THREADS:-2}"
TOPOLOGIES="${TOPOLOGIES:-single redis1 redis2}"
OUT_DIR="${OUT_DIR:-artifacts/bench-cluster}"
GW_ARGS=(--rate-limit 1000 --rate-burst 1000 ${GW_EXTRA:-})
BIN="${CARGO_TARGET_DIR:-target}/release"

ulimit -n "$(ulimit -Hn)"
mkdir -p "$OUT_DIR"
STATE="$(mktemp -d /tmp/confab-bench-cluster.XXXXXX)"
pids=()

# shellcheck source=lib/procs.sh
source scripts/lib/procs.sh
# shellcheck source=lib/open-limits.sh
source scripts/lib/open-limits.sh
trap stop_all EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

start_gateway() { # LOG [extra args...]; sets $url, appends pid
  local log="$1"; shift
  local name=confab
  if [[ "${1:-}" == ceiling ]]; then
    shift; name=ceiling
    "$BIN/confab-bench" ceiling-server --bind 127.0.0.1:0 "$@" >"$log.out" 2>"$log.err" &
  else
    "$BIN/confab" serve --bind 127.0.0.1:0 "${OPEN_LIMITS[@]}" "${GW_ARGS[@]}" "$@" >"$log.out" 2>"$log.err" &
  fi
  pids+=($!)
  wait_listening "$name" "$log" "${pids[-1]}"
}

cargo build --release -p confab -p confab-bench >&2

for topo in $TOPOLOGIES; do
  for rate in $RATES; do
    stop_all
    urls=(); gw_pids=(); redis_pid=""
    if [[ "$topo" != single && "$topo" != ceiling ]]; then
      rport="$(free_port)"
      redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$STATE" >"$STATE/redis.log" 2>&1 &
      redis_pid=$!; pids+=("$redis_pid")
      for _ in $(seq 1 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
      n=1; [[ "$topo" == redis2 ]] && n=2
      for i in $(seq 1 "$n"); do
        start_gateway "$STATE/gw$i" --redis "redis://127.0.0.1:$rport/" --gateway-id "bench$i"
        urls+=(--url "$url"); gw_pids+=(--server-pid "${pids[-1]}")
      done
    elif [[ "$topo" == ceiling ]]; then
      start_gateway "$STATE/ceiling" ceiling ${CEILING_EXTRA:-}
      urls+=(--url "$url"); gw_pids+=(--server-pid "${pids[-1]}")
    else
      start_gateway "$STATE/gw"
      urls+=(--url "$url"); gw_pids+=(--server-pid "${pids[-1]}")
    fi
    r0=0; [[ -n "$redis_pid" ]] && r0="$(cpu_ticks "$redis_pid")"
    out="$OUT_DIR/$topo-$rate.json"
    "$BIN/confab-bench" fanout "${urls[@]}" "${gw_pids[@]}" --threads "$THREADS" \
      --clients "$CLIENTS" --senders "$SENDERS" --rate "$rate" --duration "$DURATION" ${BENCH_EXTRA:-} --json >"$out" 2>"$STATE/bench.err"
    r1=0; [[ -n "$redis_pid" ]] && r1="$(cpu_ticks "$redis_pid")"
    python3 - "$out" "$r0" "$r1" "$(getconf CLK_TCK)" <<'PY'
import json, sys
path, r0, r1, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
d = json.load(open(path))
d["redis_cpu_s"] = (r1 - r0) / hz
json.dump(d, open(path, "w"))
PY
    echo "bench-cluster: $topo @ $rate msg/s done" >&2
  done
done
stop_all

python3 - "$OUT_DIR" $TOPOLOGIES -- $RATES <<'PY'
import json, sys, os
out = sys.argv[1]
i = sys.argv.index("--")
topos, rates = sys.argv[2:i], sys.argv[i + 1:]
print(f"{'topology':8} {'msg/s':>6} {'deliv/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'lost':>5} {'dup':>4} {'gw CPU %':>8} {'bench CPU %':>11} {'redis µs/msg':>12}")
for t in topos:
    for r in rates:
        d = json.load(open(os.path.join(out, f"{t}-{r}.json")))
        lat = d["latency"]
        redis_us = 1e6 * d.get("redis_cpu_s", 0) / max(d["sent"], 1)
        print(f"{t:8} {r:>6} {d['deliveries_per_s']:>9.0f} {lat['p50_ms']:>7.1f} {lat['p99_ms']:>7.1f} {lat['max_ms']:>7.1f} "
              f"{d['lost']:>5} {d['duplicates']:>4} {d['server']['cpu_pct_send_phase']:>8.0f} {d['bench_cpu_pct_send_phase']:>11.0f} {redis_us:>12.1f}")
PY
