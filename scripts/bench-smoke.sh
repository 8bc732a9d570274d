#!/usr/bin/env bash
# Smoke form of the fan-out benchmark, part of `make test`: the native load
# generator (debug build) against the reference broadcaster (`confab-bench
# ceiling-server`) and against confab, 200 clients, 50 msg/s for 2 s, once with
# the lean receivers and once with confab-client receivers. Pass/fail on
# correctness only (every delivery arrives exactly once, no receive errors, no
# client closed), never on timing. Every process is started here and stopped by
# its PID, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${CARGO_TARGET_DIR:-target}/debug"
STATE="$(mktemp -d /tmp/confab-bench-smoke.XXXXXX)"
pids=()
# shellcheck source=lib/procs.sh
source scripts/lib/procs.sh
# shellcheck source=lib/open-limits.sh
source scripts/lib/open-limits.sh
trap 'stop_all; rm -rf "$STATE"' EXIT
trap 'exit 130' INT TERM

start() { # NAME LOG CMD...: sets $url
  local name="$1" log="$2"; shift 2
  "$@" >"$log.out" 2>"$log.err" &
  pids+=($!)
  wait_listening "$name" "$log" "${pids[-1]}" || exit 1
}

cargo build -p confab -p confab-bench >&2
start ceiling "$STATE/ceiling" "$BIN/confab-bench" ceiling-server --bind 127.0.0.1:0
ceiling_url="$url"; ceiling_pid="${pids[-1]}"
start confab "$STATE/confab" "$BIN/confab" serve --bind 127.0.0.1:0 "${OPEN_LIMITS[@]}" --rate-limit 1000 --rate-burst 1000
confab_url="$url"; confab_pid="${pids[-1]}"

fail=0
for target in "ceiling $ceiling_url $ceiling_pid" "confab $confab_url $confab_pid"; do
  read -r name u pid <<<"$target"
  for receivers in lean client; do
    out="$STATE/$name-$receivers.json"
    timeout 120 "$BIN/confab-bench" fanout --url "$u" --server-pid "$pid" --clients 200 --senders 4 \
      --rate 50 --duration 2 --grace 10 --settle-ms 300 --receivers "$receivers" \
      --room "smoke-$receivers" --json >"$out" 2>"$STATE/bench.err" || {
      echo "bench-smoke: $name/$receivers: generator failed:" >&2; cat "$STATE/bench.err" >&2; fail=1; continue; }
    python3 - "$name/$receivers" "$out" <<'PY' || fail=1
import json, sys
label, path = sys.argv[1], sys.argv[2]
d = json.load(open(path))
problems = []
if d["acked"] != d["messages_planned"]: problems.append(f"acked {d['acked']} of {d['messages_planned']}")
if d["deliveries_expected"] != d["acked"] * d["joined"]: problems.append("expected != acked x joined")
for k in ("lost", "duplicates", "foreign", "clients_closed_during_run", "receive_errors", "connect_failures"):
    if d.get(k): problems.append(f"{k} = {d[k]}")
if d["joined"] != 200: problems.append(f"joined {d['joined']}")
print(f"bench-smoke {label}: {d['deliveries_received']}/{d['deliveries_expected']} deliveries, "
      f"lost {d['lost']}, dup {d['duplicates']}, p50 {d['latency']['p50_ms']} ms"
      + ("" if not problems else " -- FAIL: " + "; ".join(problems)))
sys.exit(1 if problems else 0)
PY
  done
done
exit "$fail"
