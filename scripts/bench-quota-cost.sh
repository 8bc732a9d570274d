#!/usr/bin/env bash
# What the cluster-wide quotas cost honest traffic: the same fan-out (confab-bench
# fanout, 1,000 clients in one room, 10 senders) against one gateway, embedded and
# with Redis, with the quotas off and on. "On" means active but never refusing
# (100000/100000): every message still takes its quota buckets (a GCRA script on
# Redis, or the memory backend's lock), so the difference is their cost. Fresh
# processes per run, stopped by PID; the JSON reports go to $OUT_DIR.
#   scripts/bench-quota-cost.sh
#   RATE=400 DURATION=20 scripts/bench-quota-cost.sh
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS="${CLIENTS:-1000}"
SENDERS="${SENDERS:-10}"
RATE="${RATE:-200}"
DURATION="${DURATION:-10}"
THREADS="${THREADS:-2}"
OUT_DIR="${OUT_DIR:-artifacts/bench-quota-cost}"
BIN="${CARGO_TARGET_DIR:-target}/release"
[[ -x "$BIN/confab" && -x "$BIN/confab-bench" ]] || { echo "build first: cargo build --release -p confab -p confab-bench" >&2; exit 1; }

ulimit -n "$(ulimit -Hn)"
mkdir -p "$OUT_DIR"
STATE="$(mktemp -d /tmp/confab-bench-quota.XXXXXX)"
pids=()
# shellcheck source=lib/procs.sh
source scripts/lib/procs.sh
trap stop_all EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

COMMON=(--auth open --rate-limit 1000 --rate-burst 1000 --max-connections-per-ip 0 --protocol-errors-burst 100000)
quota_args() {
  local v="$1"
  echo --quota-messages-per-user "$v" --quota-messages-per-ip "$v" --quota-joins-per-user "$v" \
    --quota-connects-per-user "$v" --quota-connects-per-ip "$v"
}

echo "machine: $(nproc) cores, $(uname -r); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
summary=()
for backend in embedded redis; do
  for quotas in off 100000/100000; do
    tag="$backend-$( [[ $quotas == off ]] && echo off || echo on )"
    extra=()
    if [[ $backend == redis ]]; then
      rport="$(free_port)"
      redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$STATE" >"$STATE/redis-$tag.log" 2>&1 &
      pids+=($!)
      for _ in $(seq 1 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
      extra=(--redis "redis://127.0.0.1:$rport/")
    fi
    # shellcheck disable=SC2046
    "$BIN/confab" serve --bind 127.0.0.1:0 "${COMMON[@]}" $(quota_args "$quotas") "${extra[@]}" \
      >"$STATE/$tag.out" 2>"$STATE/$tag.err" &
    pids+=($!)
    server_pid=$!
    wait_listening confab "$STATE/$tag" "$server_pid"
    out="$OUT_DIR/$tag.json"
    timeout --signal=INT 600 "$BIN/confab-bench" fanout --url "$url" --server-pid "$server_pid" \
      --threads "$THREADS" --clients "$CLIENTS" --senders "$SENDERS" --rate "$RATE" \
      --duration "$DURATION" --json >"$out"
    stop_all
    summary+=("$tag $(jq -r '[.deliveries_per_s, .lost, .duplicates, .latency.p50_ms, .latency.p99_ms, .server.cpu_pct_send_phase]
      | map(if type == "number" then (. * 100 | round / 100) else . end) | @tsv' "$out")")
  done
done
echo
{
  printf 'run\tdeliv/s\tlost\tdupes\tp50_ms\tp99_ms\tserver_cpu%%\n'
  printf '%s\n' "${summary[@]}" | tr ' ' '\t'
} | column -t -s $'\t'
rm -rf "$STATE"
