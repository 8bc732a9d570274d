#!/usr/bin/env bash
# Does a slow client delay the other clients of the same gateway? Runs the native
# fan-out benchmark (crates/confab-bench) twice against a fresh release server:
# once with no stalled connection, once with STALLED connections that join the room
# and then stop reading their socket for the rest of the run. Compares what the
# CLIENTS normal clients got (deliveries/s, lost, duplicates, latency) and reports
# whether the server counted the slow consumer (confab_slow_consumers_total at
# /metrics) and disconnected the stalled connection. Loopback only; every loop and
# run is bounded.
#
#   scripts/bench-slow-consumer.sh
#   PAD=2000 DURATION=30 scripts/bench-slow-consumer.sh
#
# Why PAD=3900 and DURATION=20 by default: the stalled connection is only cut once
# its server-side queue (--socket-buffer-bytes) is full, and that buffer only
# starts filling once the kernel's TCP buffers between server and client are full:
# on loopback here about 4 MB (the server's send queue grows to net.ipv4.tcp_wmem
# max, 4 MiB, plus ~120 KB unread on the client side). At RATE msg/s of PAD-character
# messages that takes about 4 MB / (RATE x PAD) s, plus SOCKET_BUFFER_BYTES / (RATE x PAD) s
# for the server queue: with PAD=2000 at 100 msg/s about 21 s, so a 15 s run never cuts
# it (everything sent fits in the kernel buffers); with PAD=3900 (the server's
# --max-text is 4000 characters) about 12-13 s. Keep the cut well before 25 s after
# connecting: at that point the Engine.IO heartbeat pings, and a ping that does not
# cannot be written closes the transport (heartbeat timeout) on its own.
#
# Exit status: 0 when the stalled run shows the property (lost 0 and no duplicates
# for the normal clients, at least one slow consumer counted, every stalled
# connection disconnected), 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS="${CLIENTS:-500}"
SENDERS="${SENDERS:-5}"
RATE="${RATE:-100}"
DURATION="${DURATION:-20}"
PAD="${PAD:-3900}"
STALLED="${STALLED:-1}"
GRACE="${GRACE:-5}"
THREADS="${THREADS:-2}"
SOCKET_BUFFER_BYTES="${SOCKET_BUFFER_BYTES:-1048576}"
OUT_DIR="${OUT_DIR:-artifacts/bench}"
SERVER_ARGS=(--rate-limit 1000 --rate-burst 1000 --socket-buffer-bytes "$SOCKET_BUFFER_BYTES")

ulimit -n "$(ulimit -Hn)"
mkdir -p "$OUT_DIR"
STATE="$(mktemp -d /tmp/confab-slow-consumer.XXXXXX)"

# shellcheck source=lib/bench-server.sh
source scripts/lib/bench-server.sh

echo "== confab slow-consumer benchmark, $(date -u +%FT%TZ)"
echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB; open files $(ulimit -n); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "tcp buffers: rmem $(cat /proc/sys/net/ipv4/tcp_rmem | tr '\t' ' '), wmem $(cat /proc/sys/net/ipv4/tcp_wmem | tr '\t' ' ')"
echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (+local changes)')"
echo
echo "== building (release)"
cargo build --release -p confab -p confab-bench

outs=()
for stalled in 0 "$STALLED"; do
  echo
  echo "== fanout: $CLIENTS clients + $stalled stalled, $SENDERS senders, $RATE msg/s for $DURATION s, pad $PAD"
  start_server "$STATE/stalled-$stalled"
  echo "server: pid $server_pid at $server_url (${SERVER_ARGS[*]}); load average $(cut -d' ' -f1-3 /proc/loadavg)"
  out="$OUT_DIR/slow-consumer-stalled-$stalled.json"
  cmd=(target/release/confab-bench fanout
    --url "$server_url" --server-pid "$server_pid" --threads "$THREADS"
    --clients "$CLIENTS" --senders "$SENDERS" --rate "$RATE" --duration "$DURATION"
    --grace "$GRACE" --pad "$PAD" --stalled "$stalled"
    --metrics-url "$server_url/metrics" --json)
  echo "command: ${cmd[*]}"
  timeout --signal=INT 600 "${cmd[@]}" >"$out"
  stop_server
  outs+=("$out")
done

echo
echo "== summary ($CLIENTS normal clients, $SENDERS senders, $RATE msg/s for $DURATION s, pad $PAD, --socket-buffer-bytes $SOCKET_BUFFER_BYTES; latency from the scheduled send, normal clients only)"
{
  printf 'stalled\tdeliv/s\texpected\treceived\tlost\tdupes\tp50_ms\tp90_ms\tp99_ms\tmax_ms\tclosed\tslow_consumers\tcut_at_s\tstalled_disconnected\thow\n'
  jq -r '[.stalled, .deliveries_per_s, .deliveries_expected, .deliveries_received, .lost, .duplicates,
      .latency.p50_ms, .latency.p90_ms, .latency.p99_ms, .latency.max_ms, .clients_closed_during_run,
      (.metrics.slow_consumers // "?"), (.slow_consumer_seen_s // "-"), "\(.stalled_disconnected)/\(.stalled_joined)",
      ([.stalled_connections[].outcome] | unique | join(", ") | if . == "" then "-" else . end)]
    | map(if type == "number" then (. * 100 | round / 100) else . end) | @tsv' "${outs[@]}"
} | column -t -s $'\t'

base="${outs[0]}"
test_run="${outs[1]}"
jq -rn --slurpfile a "$base" --slurpfile b "$test_run" '
  ($a[0]) as $a | ($b[0]) as $b
  | "latency ratio (stalled / none): p50 \(($b.latency.p50_ms / $a.latency.p50_ms * 100 | round) / 100), p99 \(($b.latency.p99_ms / $a.latency.p99_ms * 100 | round) / 100); drained from the stalled connections after the run: \([$b.stalled_connections[].messages_drained] | add // 0) message:new"'
echo "cut_at_s: when the server's slow-consumer counter was first seen up, seconds after the first scheduled send (polled every 250 ms)"
echo "JSON results: ${outs[*]}; server logs in $STATE/"

if jq -e '.lost == 0 and .duplicates == 0 and .connect_failures == 0
    and .stalled_joined == .stalled and .stalled > 0
    and .stalled_disconnected == .stalled and (.metrics.slow_consumers // 0) >= 1' "$test_run" >/dev/null; then
  echo "verdict: OK: the stalled connection was counted as a slow consumer and disconnected; the $CLIENTS others lost nothing"
else
  echo "verdict: NOT SHOWN: see the table (a stalled connection that is never cut usually means its buffers did not fill: raise PAD or DURATION)"
  exit 1
fi
