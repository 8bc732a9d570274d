#!/usr/bin/env bash
# Load-test smoke: starts its own confab on a free 127.0.0.1 port, runs smoke.yml
# (~10 users over 5 s) against it, checks the JSON report and prints one line:
#   loadtest smoke: N vusers, M acks ok, K messages received, p99 latency X ms
# Exits non-zero if the server does not start, any user fails, any ack is not ok,
# or no message is received. Installs artillery into loadtest/node_modules first
# if it is missing. Bounded: ~15 s once installed, killed after 2 min at most.
#   loadtest/run-smoke.sh                       # uses target/debug/confab
#   CONFAB_BIN=target/release/confab loadtest/run-smoke.sh
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
ROOT="$(cd "$LOADTEST_DIR/.." && pwd)"
# shellcheck source=../scripts/lib/open-limits.sh
source "$ROOT/scripts/lib/open-limits.sh"
BIN="${CONFAB_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/confab}"
case "$BIN" in /*) ;; *) BIN="$PWD/$BIN" ;; esac
[ -x "$BIN" ] || { echo "loadtest smoke: no confab binary at $BIN (cargo build -p confab, or set CONFAB_BIN)" >&2; exit 1; }

loadtest_deps

work="$(mktemp -d /tmp/confab-loadtest.XXXXXX)"
server_pid=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ "$rc" -ne 0 ]; then
    echo "loadtest smoke: logs in $work" >&2
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Our own server, on any free loopback port (it prints the address it got). Run
# from the repository root so its default UI directory resolves.
# CONFAB_* settings of the calling environment are dropped: the smoke runs the
# server with its defaults (rate limit, ...), in `open` auth mode: the
# scenarios connect by name.
unset_confab=()
for v in $(compgen -e | grep '^CONFAB_' || true); do unset_confab+=(-u "$v"); done
(cd "$ROOT" && exec env "${unset_confab[@]}" "$BIN" serve --bind 127.0.0.1:0 "${OPEN_LIMITS[@]}") >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
addr=""
for _ in $(seq 1 150); do
  addr="$(sed -n 's#^confab: listening on http://\([0-9.:]*\)$#\1#p' "$work/server.out" | head -1)"
  [ -n "$addr" ] && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$addr" ]; then
  echo "loadtest smoke: the server did not start:" >&2
  tail -n 20 "$work/server.out" "$work/server.err" >&2 || true
  exit 1
fi
target="http://$addr"
loadtest_check_target "$target"

rc=0
loadtest_env
timeout -k 5 120 "$ARTILLERY" run --target "$target" -o "$work/report.json" "$LOADTEST_DIR/smoke.yml" \
  >"$work/artillery.log" 2>&1 || rc=$?
if [ ! -s "$work/report.json" ]; then
  echo "loadtest smoke: artillery wrote no report (exit $rc):" >&2
  tail -n 30 "$work/artillery.log" >&2
  exit 1
fi
mkdir -p "$LOADTEST_DIR/out"
cp "$work/report.json" "$LOADTEST_DIR/out/smoke-report.json"
if ! node "$LOADTEST_DIR/check-report.js" --label smoke "$work/report.json"; then
  grep -E '^(confab loadtest:|fail:|ok:)' "$work/artillery.log" >&2 || true
  exit 1
fi
if [ "$rc" -ne 0 ]; then
  echo "loadtest smoke: artillery exited $rc:" >&2
  grep -E '^(fail:|ok:)' "$work/artillery.log" >&2 || tail -n 20 "$work/artillery.log" >&2
  exit 1
fi
if ! kill -0 "$server_pid" 2>/dev/null; then
  echo "loadtest smoke: the server exited during the run" >&2
  exit 1
fi
