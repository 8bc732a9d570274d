# Shared by the benchmark scripts: start one release confab server on a free
# loopback port and stop exactly that process (by PID), also on errors and Ctrl-C.
# The caller sets SERVER_ARGS (array) before calling start_server.
#   source scripts/lib/bench-server.sh
#   start_server "$STATE/run1"   # sets $server_pid and $server_url
#   stop_server

# shellcheck source=procs.sh
source "$(dirname "${BASH_SOURCE[0]}")/procs.sh"
# shellcheck source=open-limits.sh
source "$(dirname "${BASH_SOURCE[0]}")/open-limits.sh"

server_pid=""
stop_server() {
  if [[ -n "$server_pid" ]]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap 'stop_server' EXIT
trap 'exit 130' INT TERM

# start_server LOG: sets $server_pid and $server_url
start_server() {
  local log="$1"
  "${CARGO_TARGET_DIR:-target}/release/confab" serve --bind 127.0.0.1:0 "${OPEN_LIMITS[@]}" "${SERVER_ARGS[@]}" >"$log.out" 2>"$log.err" &
  server_pid=$!
  wait_listening confab "$log" "$server_pid" || exit 1
  server_url="$url"
}
