#!/usr/bin/env bash
# A local confab cluster from real processes, the topology of docker-compose.yml:
# redis-server (AOF on), three gateways on 127.0.0.1:3001-3003 and nginx on
# 127.0.0.1:8080 running the repository's nginx.conf unchanged.
# Runs in the foreground; Ctrl-C (or SIGTERM) stops exactly what it started.
#   deploy/local-cluster.sh            # or: make cluster
#   REDIS_PORT=6390 deploy/local-cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."
REDIS_PORT="${REDIS_PORT:-6380}"
BIN="${CONFAB_BIN:-target/release/confab}"
NGINX="${NGINX_BIN:-/usr/sbin/nginx}"
STATE="$(mktemp -d /tmp/confab-cluster.XXXXXX)"
mkdir -p "$STATE/redis" "$STATE/nginx/logs" "$STATE/nginx/tmp"
pids=()

stop() {
  trap - EXIT INT TERM
  echo "local-cluster: stopping ${pids[*]:-nothing}"
  for ((i=${#pids[@]}-1; i>=0; i--)); do
    kill -TERM "${pids[$i]}" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  echo "local-cluster: logs in $STATE"
}
trap stop EXIT INT TERM

wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "local-cluster: nothing listens on port $1" >&2
  return 1
}

for p in "$REDIS_PORT" 3001 3002 3003 8080; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "local-cluster: port $p is already in use" >&2
    exit 1
  fi
done

[ -x "$BIN" ] || { echo "local-cluster: building $BIN"; cargo build --release -p confab; }
scripts/deps.sh run

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$STATE/redis" \
  --appendonly yes --appendfsync everysec --save '' >"$STATE/redis.log" 2>&1 &
pids+=($!)
wait_port "$REDIS_PORT"

for n in 1 2 3; do
  RUST_LOG="${RUST_LOG:-info}" "$BIN" serve --bind "127.0.0.1:300$n" \
    --redis "redis://127.0.0.1:$REDIS_PORT/" --gateway-id "gw$n" >"$STATE/gw$n.log" 2>&1 &
  pids+=($!)
done
for n in 1 2 3; do wait_port "300$n"; done

"$NGINX" -p "$STATE/nginx" -c "$PWD/nginx.conf" -g 'daemon off;' >"$STATE/nginx.log" 2>&1 &
pids+=($!)
wait_port 8080

cat <<MSG
local-cluster: up
  chat UI (through nginx):  http://127.0.0.1:8080/
  gateways:                 http://127.0.0.1:3001/ :3002/ :3003/  (each has /metrics, /readyz)
  redis:                    redis://127.0.0.1:$REDIS_PORT/ (AOF in $STATE/redis)
Ctrl-C stops everything.
MSG
# Exit (and clean up) as soon as any process dies, or on Ctrl-C.
wait -n "${pids[@]}" || true
echo "local-cluster: a process exited; see the logs in $STATE" >&2
