# Shared by the benchmark scripts: wait until a server started in the background
# prints its listening line, and stop exactly the processes a script started.
#   source scripts/lib/procs.sh
#   wait_listening NAME LOG PID   # waits ≤ 10 s for "NAME: listening on URL" in
#                                 # LOG.out; sets $url; fails (showing LOG.err) if
#                                 # PID exits first or time runs out
wait_listening() {
  local name="$1" log="$2" pid="$3"
  url=""
  for _ in $(seq 1 100); do
    url="$(sed -n "s/^$name: listening on //p" "$log.out")"
    [[ -n "$url" ]] && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "$name did not start (see $log.err):" >&2
  cat "$log.err" >&2
  return 1
}

# stop_all: stop every PID in the caller's `pids` array, newest first (SIGTERM, up
# to 10 s each, then SIGKILL), and empty it. Only those processes, by PID.
stop_all() {
  local i pid
  for ((i=${#pids[@]}-1; i>=0; i--)); do kill -TERM "${pids[$i]}" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  pids=()
}
