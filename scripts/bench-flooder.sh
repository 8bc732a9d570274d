#!/usr/bin/env bash
# One flooder on three gateways behind nginx (issue 13): scripts/bench-flooder.mjs
# starts its own redis-server, 3 gateways (release build, DEFAULT quotas and caps,
# --auth open) and nginx, runs 40 honest users (1 msg/s each, one room, each from its
# own loopback address) through a quiet phase, a phase with one flooder user (6
# sockets, 2 per gateway, sending as fast as its acks come back) and a quiet phase
# again, and prints the honest users' latency, the flooder's accepted rate against
# its quota and every refusal. Everything it starts is stopped by PID when it ends.
#   scripts/bench-flooder.sh
#   SECONDS_PER_PHASE=60 USERS=40 scripts/bench-flooder.sh --flooder-inflight 4
# (extra arguments go to bench-flooder.mjs; JSON report: $OUT_DIR/flooder-<time>.json)
set -euo pipefail
cd "$(dirname "$0")/.."

PHASE_SECONDS="${SECONDS_PER_PHASE:-30}"
USERS="${USERS:-40}"
OUT_DIR="${OUT_DIR:-artifacts/bench-flooder}"
export CONFAB_BIN="${CONFAB_BIN:-${CARGO_TARGET_DIR:-target}/release/confab}"
[[ -x "$CONFAB_BIN" ]] || { echo "build first: cargo build --release -p confab (or set CONFAB_BIN)" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server not found" >&2; exit 1; }
[[ -x "${NGINX_BIN:-/usr/sbin/nginx}" ]] || { echo "nginx not found (apt-get install nginx, or set NGINX_BIN)" >&2; exit 1; }
[[ -d node_modules/socket.io-client ]] || { echo "npm ci first" >&2; exit 1; }

ulimit -n "$(ulimit -Hn)"
mkdir -p "$OUT_DIR"
json="$OUT_DIR/flooder-$(date -u +%Y%m%dT%H%M%SZ).json"
echo "machine: $(nproc) cores, $(uname -r); load average $(cut -d' ' -f1-3 /proc/loadavg); $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "binary: $CONFAB_BIN; git: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' (dirty)')"
# node stops its own children (redis, gateways, nginx, the flooder) on exit and on
# SIGINT/SIGTERM; exec so a signal reaches it directly.
exec node scripts/bench-flooder.mjs --users "$USERS" --seconds "$PHASE_SECONDS" --json "$json" "$@"
