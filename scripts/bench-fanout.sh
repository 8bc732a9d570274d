#!/usr/bin/env bash
# Fan-out and idle-connection benchmark of confab with the native load generator
# (crates/confab-bench). Loopback only; every run is bounded.
#
#   scripts/bench-fanout.sh                  # or: make bench
#   RATES="50 100" DURATION=5 CLIENTS=500 IDLE_CONNECTIONS=2000 scripts/bench-fanout.sh
#
# For each rate a fresh release server is started on a free loopback port
# (`--bind 127.0.0.1:0`, the port is read from its listening line) with a high
# per-socket rate limit (the senders send up to RATE/SENDERS msg/s each), the
# benchmark runs, and that server is stopped by its PID. The trap stops the
# current server on any exit. Results: one JSON file per run in $OUT_DIR, and a
# summary table at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS="${CLIENTS:-1000}"
SENDERS="${SENDERS:-10}"
RATES="${RATES:-50 100 200 400 800}"
DURATION="${DURATION:-10}"
GRACE="${GRACE:-5}"
THREADS="${THREADS:-2}"
IDLE_CONNECTIONS="${IDLE_CONNECTIONS:-5000}"
IDLE_HOLD="${IDLE_HOLD:-10}"
# Also measure idle connections that join no room (only `general`), for comparison.
IDLE_NO_JOIN="${IDLE_NO_JOIN:-1}"
OUT_DIR="${OUT_DIR:-artifacts/bench}"
SERVER_ARGS=(--rate-limit 1000 --rate-burst 1000)

ulimit -n "$(ulimit -Hn)"
mkdir -p "$OUT_DIR"
STATE="$(mktemp -d /tmp/confab-bench.XXXXXX)"

# shellcheck source=lib/bench-server.sh
source scripts/lib/bench-server.sh

echo "== confab fan-out benchmark, $(date -u +%FT%TZ)"
echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB; open files $(ulimit -n)"
lscpu | head -20
echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (+local changes)')"
echo
echo "== building (release)"
cargo build --release -p confab -p confab-bench

summary=()
for rate in $RATES; do
  echo
  echo "== fanout: $CLIENTS clients, $SENDERS senders, $rate msg/s for $DURATION s"
  start_server "$STATE/fanout-$rate"
  echo "server: pid $server_pid at $server_url (${SERVER_ARGS[*]}); load average $(cut -d' ' -f1-3 /proc/loadavg)"
  out="$OUT_DIR/fanout-$rate.json"
  timeout --signal=INT 600 target/release/confab-bench fanout \
    --url "$server_url" --server-pid "$server_pid" --threads "$THREADS" \
    --clients "$CLIENTS" --senders "$SENDERS" --rate "$rate" \
    --duration "$DURATION" --grace "$GRACE" --json >"$out"
  stop_server
  summary+=("$(jq -r '[.rate, .deliveries_per_s, .deliveries_expected, .deliveries_received, .lost, .duplicates,
      .latency.p50_ms, .latency.p99_ms, .latency.max_ms, .connect_join_s,
      .bench_cpu_pct_send_phase, .server.cpu_pct_send_phase, .clients_closed_during_run]
      | map(if type == "number" then (. * 100 | round / 100) else . end) | @tsv' "$out")")
done

echo
echo "== idle: $IDLE_CONNECTIONS connections joined to a room, held $IDLE_HOLD s"
start_server "$STATE/idle"
echo "server: pid $server_pid at $server_url; load average $(cut -d' ' -f1-3 /proc/loadavg)"
idle_out="$OUT_DIR/idle-$IDLE_CONNECTIONS.json"
timeout --signal=INT 600 target/release/confab-bench idle \
  --url "$server_url" --server-pid "$server_pid" --threads "$THREADS" \
  --connections "$IDLE_CONNECTIONS" --hold "$IDLE_HOLD" --json >"$idle_out"
stop_server
idle_outs=("$idle_out")
if [[ "$IDLE_NO_JOIN" == 1 ]]; then
  echo
  echo "== idle: $IDLE_CONNECTIONS connections without room:join (general only), held $IDLE_HOLD s"
  start_server "$STATE/idle-nojoin"
  echo "server: pid $server_pid at $server_url; load average $(cut -d' ' -f1-3 /proc/loadavg)"
  idle_out="$OUT_DIR/idle-$IDLE_CONNECTIONS-nojoin.json"
  timeout --signal=INT 600 target/release/confab-bench idle --no-join \
    --url "$server_url" --server-pid "$server_pid" --threads "$THREADS" \
    --connections "$IDLE_CONNECTIONS" --hold "$IDLE_HOLD" --json >"$idle_out"
  stop_server
  idle_outs+=("$idle_out")
fi

echo
echo "== summary ($CLIENTS clients, $SENDERS senders, $DURATION s per rate; latency from the scheduled send)"
{
  printf 'rate\tdeliv/s\texpected\treceived\tlost\tdupes\tp50_ms\tp99_ms\tmax_ms\tconnect+join_s\tbench_cpu%%\tserver_cpu%%\tclosed\n'
  printf '%s\n' "${summary[@]}"
} | column -t -s $'\t'
jq -r '"idle (\(if .joined_room then "joined a room" else "no room:join" end)): \(.open) connections: server RSS \(.server_rss_kib_before) -> \(.server_rss_kib_after_hold) KiB, \(.server_rss_per_connection_kib * 10 | round / 10) KiB per connection (bench \(.bench_rss_per_connection_kib * 10 | round / 10) KiB per connection); connect \(.connect_s * 100 | round / 100) s"' "${idle_outs[@]}"
echo "JSON results in $OUT_DIR/; server logs in $STATE/"
