#!/usr/bin/env bash
# A local confab cluster from real processes, the topology of docker-compose.yml:
# redis-server (AOF on, a password generated for this run), three gateways on
# 127.0.0.1:3001-3003 (internal listeners with /metrics and /readyz on
# 127.0.0.1:9101-9103) and nginx running the repository's nginx.conf on
# https://127.0.0.1:8443/ (a throw-away self-signed certificate: the browser warns)
# and http://127.0.0.1:8080/.
# Runs in the foreground; Ctrl-C (or SIGTERM) stops exactly what it started.
#   deploy/local-cluster.sh            # or: make cluster
#   REDIS_PORT=6390 deploy/local-cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."
REDIS_PORT="${REDIS_PORT:-6380}"
BIN="${CONFAB_BIN:-${CARGO_TARGET_DIR:-target}/release/confab}"
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
trap stop EXIT
trap 'stop; exit 0' INT TERM

wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "local-cluster: nothing listens on port $1" >&2
  return 1
}

for p in "$REDIS_PORT" 3001 3002 3003 9101 9102 9103 8080 8443; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "local-cluster: port $p is already in use" >&2
    exit 1
  fi
done

[ -x "$BIN" ] || { echo "local-cluster: building $BIN"; cargo build --release -p confab; }
scripts/deps.sh run

# A fresh password per run, kept in a file only this user can read. It reaches
# redis-server on stdin (config file "-") and the gateways in their environment,
# never a command line that `ps` shows.
umask 077
REDIS_PASSWORD="$(openssl rand -hex 24)"
printf '%s\n' "$REDIS_PASSWORD" >"$STATE/redis.password"
umask 022
printf 'requirepass %s\n' "$REDIS_PASSWORD" |
  redis-server - --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$STATE/redis" \
    --maxmemory 1gb --maxmemory-policy noeviction \
    --appendonly yes --appendfsync everysec --save '' >"$STATE/redis.log" 2>&1 &
pids+=($!)
wait_port "$REDIS_PORT"

for n in 1 2 3; do
  CONFAB_REDIS_URL="redis://:$REDIS_PASSWORD@127.0.0.1:$REDIS_PORT/" \
    RUST_LOG="${RUST_LOG:-info}" "$BIN" serve --bind "127.0.0.1:300$n" \
    --internal-bind "127.0.0.1:910$n" --gateway-id "gw$n" >"$STATE/gw$n.log" 2>&1 &
  pids+=($!)
done
for n in 1 2 3; do wait_port "300$n"; wait_port "910$n"; done

# nginx.conf with a self-signed certificate in $STATE/nginx-conf/tls/ (only the
# certificate paths and the include path differ from the repository's file).
conf="$(deploy/nginx/local-conf.sh "$STATE/nginx-conf")"
"$NGINX" -p "$STATE/nginx" -c "$conf" -g 'daemon off;' >"$STATE/nginx.log" 2>&1 &
pids+=($!)
wait_port 8080
wait_port 8443

cat <<MSG
local-cluster: up
  chat UI (through nginx):  https://127.0.0.1:8443/  (self-signed certificate)
                            http://127.0.0.1:8080/   (plain, local testing only)
  gateways:                 http://127.0.0.1:3001/ :3002/ :3003/
  metrics and readiness:    http://127.0.0.1:9101/metrics /readyz (:9102, :9103)
  redis:                    redis://:***@127.0.0.1:$REDIS_PORT/ (password in $STATE/redis.password, AOF in $STATE/redis)
Ctrl-C stops everything.
MSG
# Exit (and clean up) as soon as any process dies, or on Ctrl-C.
wait -n "${pids[@]}" || true
echo "local-cluster: a process exited; see the logs in $STATE" >&2
