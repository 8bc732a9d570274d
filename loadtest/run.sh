#!/usr/bin/env bash
# Runs one scenario against a confab you started yourself, writes the JSON report
# to loadtest/out/ and checks it (exit 1 on any failed user, error ack or error).
#   loadtest/run.sh chat-mix.yml                                   # http://127.0.0.1:3000 (make run)
#   loadtest/run.sh fanout.yml --target http://127.0.0.1:8080      # make cluster (nginx)
#   loadtest/run.sh chat-mix.yml --overrides '{"config":{"phases":[{"duration":30,"arrivalRate":2}]}}'
# Other arguments go to `artillery run` as they are. Only loopback targets are allowed.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"

[ $# -ge 1 ] || { sed -n '2,8p' "$0" >&2; exit 2; }
scenario="$1"; shift
[ -f "$scenario" ] || scenario="$LOADTEST_DIR/$scenario"
[ -f "$scenario" ] || { echo "loadtest: no scenario $1" >&2; exit 2; }

# The target: --target/-t if given, else the scenario's config.target.
target="$(sed -n 's/^  target: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' "$scenario" | head -1)"
args=("$@")
given=0
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    -t|--target) target="${args[$((i + 1))]:-}"; given=1 ;;
    --target=*) target="${args[$i]#--target=}"; given=1 ;;
  esac
done
[ "$given" = 1 ] || args=(--target "$target" "${args[@]}")
loadtest_check_target "$target"

loadtest_deps
name="$(basename "$scenario" .yml)"
mkdir -p "$LOADTEST_DIR/out"
report="$LOADTEST_DIR/out/$name-$(date +%Y%m%d-%H%M%S).json"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

rc=0
loadtest_env
"$ARTILLERY" run -o "$report" "${args[@]}" "$scenario" || rc=$?
echo
node "$LOADTEST_DIR/check-report.js" --label "$name" --details "$report" || rc=1
echo "loadtest: report $report"
exit "$rc"
