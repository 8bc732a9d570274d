#!/usr/bin/env bash
# A local confab cluster from real processes, the topology of docker-compose.yml:
# redis-server (AOF on, a password generated for this run), three gateways on
# 127.0.0.1:3001-3003 (internal listeners with /metrics and /readyz on
# 127.0.0.1:9101-9103) and nginx running the repository's nginx.conf on
# https://127.0.0.1:8443/ (a throw-away self-signed certificate: the browser warns)
# and http://127.0.0.1:8080/.
#
# It supervises the gateways like a process manager (systemd's Restart= in
# production, deploy/systemd/confab@.service): a gateway that exits, for whatever
# reason (a crash, kill -9, a drain by SIGTERM), is logged and started again on the
# same ports with the same id after RESTART_DELAY_S (1 s); a gateway that exits
# RESTART_MAX (5) times within RESTART_WINDOW_S (60 s) is given up (the rest keeps
# running). Redis and nginx are not restarted: if one of them exits, everything stops.
# Runs in the foreground; Ctrl-C (or SIGTERM) stops exactly what it started, by PID.
#
# The state directory (printed; logs, the Redis password and AOF) also holds the
# PIDs: gwN.pid (the gateway's current process, rewritten at each restart; removed
# when given up), redis.pid, nginx.pid, local-cluster.pid (this script), and
# cluster.env (the gateways with their ports, for scripts/rolling-restart.sh).
#   deploy/local-cluster.sh            # or: make cluster
#   REDIS_PORT=6390 deploy/local-cluster.sh
#   GATEWAY_PORTS="4001 4002" INTERNAL_PORTS="4101 4102" HTTP_PORT=4080 HTTPS_PORT=4443 \
#     CLUSTER_STATE=/tmp/my-cluster deploy/local-cluster.sh
# Gateway settings come from CONFAB_* variables in the environment (e.g.
# CONFAB_AUTH=open, CONFAB_SHUTDOWN_DEADLINE_MS=5000); RUST_LOG defaults to info.
set -euo pipefail
cd "$(dirname "$0")/.."
REDIS_PORT="${REDIS_PORT:-6380}"
read -r -a GW_PORTS <<<"${GATEWAY_PORTS:-3001 3002 3003}"
read -r -a INT_PORTS <<<"${INTERNAL_PORTS:-9101 9102 9103}"
HTTP_PORT="${HTTP_PORT:-8080}"
HTTPS_PORT="${HTTPS_PORT:-8443}"
RESTART_DELAY_S="${RESTART_DELAY_S:-1}"
RESTART_MAX="${RESTART_MAX:-5}"
RESTART_WINDOW_S="${RESTART_WINDOW_S:-60}"
BIN="${CONFAB_BIN:-${CARGO_TARGET_DIR:-target}/release/confab}"
NGINX="${NGINX_BIN:-/usr/sbin/nginx}"
if [ "${#GW_PORTS[@]}" -lt 1 ] || [ "${#GW_PORTS[@]}" -ne "${#INT_PORTS[@]}" ]; then
  echo "local-cluster: GATEWAY_PORTS and INTERNAL_PORTS must list as many ports (at least one)" >&2
  exit 2
fi
if [ -n "${CLUSTER_STATE:-}" ]; then
  STATE="$CLUSTER_STATE"
  mkdir -p "$STATE"
else
  STATE="$(mktemp -d /tmp/confab-cluster.XXXXXX)"
fi
mkdir -p "$STATE/redis" "$STATE/nginx/logs" "$STATE/nginx/tmp"
redis_pid=""
nginx_pid=""
gw_pid=() # index n-1 -> current PID of gateway gwN ("" once given up)

stop() {
  trap - EXIT INT TERM
  local pids=()
  [ -n "$nginx_pid" ] && pids+=("$nginx_pid")
  for pid in "${gw_pid[@]}"; do [ -n "$pid" ] && pids+=("$pid"); done
  [ -n "$redis_pid" ] && pids+=("$redis_pid")
  echo "local-cluster: stopping ${pids[*]:-nothing}"
  # nginx first, then the gateways (they drain), Redis last.
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -f "$STATE"/*.pid
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

for p in "$REDIS_PORT" "${GW_PORTS[@]}" "${INT_PORTS[@]}" "$HTTP_PORT" "$HTTPS_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "local-cluster: port $p is already in use" >&2
    exit 1
  fi
done

[ -x "$BIN" ] || { echo "local-cluster: building $BIN"; cargo build --release -p confab; }
scripts/deps.sh run
echo $$ >"$STATE/local-cluster.pid"

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
redis_pid=$!
echo "$redis_pid" >"$STATE/redis.pid"
wait_port "$REDIS_PORT"

# Gateway gwN (N from 1) on its ports; the log is appended to across restarts.
start_gw() {
  local n=$1
  CONFAB_REDIS_URL="redis://:$REDIS_PASSWORD@127.0.0.1:$REDIS_PORT/" \
    RUST_LOG="${RUST_LOG:-info}" "$BIN" serve --bind "127.0.0.1:${GW_PORTS[$((n - 1))]}" \
    --internal-bind "127.0.0.1:${INT_PORTS[$((n - 1))]}" --gateway-id "gw$n" >>"$STATE/gw$n.log" 2>&1 &
  gw_pid[$((n - 1))]=$!
  echo "$!" >"$STATE/gw$n.pid"
}

{
  names=()
  for ((n = 1; n <= ${#GW_PORTS[@]}; n++)); do
    names+=("gw$n")
    echo "gw${n}_BIND=127.0.0.1:${GW_PORTS[$((n - 1))]}"
    echo "gw${n}_INTERNAL=127.0.0.1:${INT_PORTS[$((n - 1))]}"
  done
  echo "GATEWAYS=\"${names[*]}\""
  echo "HTTP_URL=http://127.0.0.1:$HTTP_PORT"
  echo "HTTPS_URL=https://127.0.0.1:$HTTPS_PORT"
  echo "REDIS_PORT=$REDIS_PORT"
} >"$STATE/cluster.env"

for ((n = 1; n <= ${#GW_PORTS[@]}; n++)); do start_gw "$n"; done
for ((n = 1; n <= ${#GW_PORTS[@]}; n++)); do wait_port "${GW_PORTS[$((n - 1))]}"; wait_port "${INT_PORTS[$((n - 1))]}"; done

# nginx.conf with a self-signed certificate in $STATE/nginx-conf/tls/ (only the
# certificate paths and the include path differ from the repository's file), and,
# when they are not the defaults, the listen ports and the upstream servers.
conf="$(deploy/nginx/local-conf.sh "$STATE/nginx-conf")"
upstreams=""
for p in "${GW_PORTS[@]}"; do upstreams+="127.0.0.1:$p "; done
awk -v http="$HTTP_PORT" -v https="$HTTPS_PORT" -v ups="$upstreams" '
  /^[ \t]*listen 127\.0\.0\.1:8080;/ { sub(/127\.0\.0\.1:8080/, "127.0.0.1:" http) }
  /^[ \t]*listen 127\.0\.0\.1:8443 ssl/ { sub(/127\.0\.0\.1:8443/, "127.0.0.1:" https) }
  /^[ \t]*server 127\.0\.0\.1:300[0-9]/ {
    if (done) next
    done = 1
    # Keep the parameters nginx.conf gives its servers (e.g. max_fails=0).
    match($0, /^[ \t]*server 127\.0\.0\.1:300[0-9]/)
    indent = substr($0, 1, index($0, "server") - 1)
    params = substr($0, RLENGTH + 1)
    n = split(ups, list, " ")
    for (i = 1; i <= n; i++) print indent "server " list[i] params
    next
  }
  { print }' "$conf" >"$conf.tmp"
mv "$conf.tmp" "$conf"
wants=("listen 127.0.0.1:$HTTP_PORT;" "listen 127.0.0.1:$HTTPS_PORT ssl")
for p in "${GW_PORTS[@]}"; do wants+=("server 127.0.0.1:$p "); done
for want in "${wants[@]}"; do
  if ! grep -qF -- "$want" "$conf"; then
    echo "local-cluster: nginx.conf no longer has the expected listen/upstream lines ($want)" >&2
    exit 1
  fi
done
"$NGINX" -p "$STATE/nginx" -c "$conf" -g 'daemon off;' >"$STATE/nginx.log" 2>&1 &
nginx_pid=$!
echo "$nginx_pid" >"$STATE/nginx.pid"
wait_port "$HTTP_PORT"
wait_port "$HTTPS_PORT"

gw_list="" int_list=""
for ((n = 1; n <= ${#GW_PORTS[@]}; n++)); do
  gw_list+="http://127.0.0.1:${GW_PORTS[$((n - 1))]}/ "
  int_list+="http://127.0.0.1:${INT_PORTS[$((n - 1))]}/readyz "
done
cat <<MSG
local-cluster: up
  chat UI (through nginx):  https://127.0.0.1:$HTTPS_PORT/  (self-signed certificate)
                            http://127.0.0.1:$HTTP_PORT/   (plain, local testing only)
  gateways gw1..gw${#GW_PORTS[@]}:         $gw_list
  readiness (and /metrics): $int_list
  redis:                    redis://:***@127.0.0.1:$REDIS_PORT/ (password in $STATE/redis.password, AOF in $STATE/redis)
  state:                    $STATE (logs, gwN.pid, cluster.env)
A gateway that exits is restarted (scripts/rolling-restart.sh restarts them one by one).
Ctrl-C stops everything.
MSG

# Supervise: restart a gateway that exits; stop everything if Redis or nginx exits.
restarts=() # index n-1 -> epoch seconds of its recent restarts
while :; do
  live=("$redis_pid" "$nginx_pid")
  for pid in "${gw_pid[@]}"; do [ -n "$pid" ] && live+=("$pid"); done
  done_pid=""
  wait -n -p done_pid "${live[@]}" && status=0 || status=$?
  [ -n "$done_pid" ] || continue # interrupted by a signal whose trap did not exit
  desc="status $status"
  ((status > 128)) && desc+=", $(kill -l $((status - 128)) 2>/dev/null || echo signal)"
  if [ "$done_pid" = "$redis_pid" ] || [ "$done_pid" = "$nginx_pid" ]; then
    what=nginx
    [ "$done_pid" = "$redis_pid" ] && what=redis-server && redis_pid=""
    [ "$what" = nginx ] && nginx_pid=""
    echo "local-cluster: $what exited ($desc); stopping the cluster (logs in $STATE)" >&2
    exit 1
  fi
  for ((n = 1; n <= ${#GW_PORTS[@]}; n++)); do
    [ "${gw_pid[$((n - 1))]}" = "$done_pid" ] || continue
    now=$(date +%s)
    recent=()
    for t in ${restarts[$((n - 1))]:-}; do ((now - t < RESTART_WINDOW_S)) && recent+=("$t"); done
    if ((${#recent[@]} >= RESTART_MAX)); then
      echo "local-cluster: gateway gw$n exited ($desc) after $RESTART_MAX restarts within ${RESTART_WINDOW_S} s; giving up on it (the rest keeps running; see $STATE/gw$n.log)" >&2
      gw_pid[$((n - 1))]=""
      rm -f "$STATE/gw$n.pid"
      break
    fi
    echo "local-cluster: gateway gw$n exited ($desc), restarting in ${RESTART_DELAY_S} s" >&2
    sleep "$RESTART_DELAY_S"
    start_gw "$n"
    recent+=("$now")
    restarts[$((n - 1))]="${recent[*]}"
    echo "local-cluster: gateway gw$n restarted (pid ${gw_pid[$((n - 1))]})" >&2
    break
  done
done
