# Shared by the benchmark scripts: wait until a server started in the background
# prints its listening line.
#   source scripts/lib/listening.sh
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
