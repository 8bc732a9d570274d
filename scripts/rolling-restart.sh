#!/usr/bin/env bash
# Rolling restart of the gateways of a running local cluster (deploy/local-cluster.sh,
# `make cluster`), one at a time: SIGTERM the gateway (it drains: /readyz turns 503,
# new handshakes are refused, every client transport is closed and the clients
# reconnect through nginx to the other gateways), wait until it has exited, the
# cluster's supervisor has started it again (a new PID in STATE/gwN.pid) and its
# /readyz on the internal listener answers 200, then the next. With the new binary
# in place (CONFAB_BIN of the cluster), this is an upgrade; with the previous one, a
# rollback. Nothing is killed with SIGKILL: a gateway that does not exit within
# --timeout seconds fails the script and is left as it is.
#
# The same procedure in production (systemd, deploy/systemd/confab@.service):
# `systemctl restart confab@gw1`, wait for `curl -f http://127.0.0.1:9101/readyz`,
# then gw2, gw3 (docs/operations.md).
#
#   scripts/rolling-restart.sh                  # the one running local cluster
#   scripts/rolling-restart.sh --state /tmp/confab-cluster.XXXXXX [--timeout 60] [--pause 1]
# Exit status 0 when every gateway came back ready; 1 otherwise.
set -euo pipefail
state="${CLUSTER_STATE:-}"
timeout_s=60
pause_s=1
while [ $# -gt 0 ]; do
  case "$1" in
    --state) state="$2"; shift 2 ;;
    --timeout) timeout_s="$2"; shift 2 ;;
    --pause) pause_s="$2"; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "rolling-restart: unknown argument $1" >&2; exit 2 ;;
  esac
done
log() { echo "rolling-restart: $*"; }
die() { echo "rolling-restart: $*" >&2; exit 1; }

# Find the state directory of the one running local cluster if none was given.
if [ -z "$state" ]; then
  found=()
  for d in /tmp/confab-cluster.*; do
    [ -f "$d/local-cluster.pid" ] && kill -0 "$(cat "$d/local-cluster.pid")" 2>/dev/null && found+=("$d")
  done
  [ ${#found[@]} -eq 1 ] || die "found ${#found[@]} running local clusters (${found[*]:-none}); pass --state DIR"
  state="${found[0]}"
fi
[ -f "$state/cluster.env" ] || die "no cluster.env in $state (not a deploy/local-cluster.sh state directory?)"
sup="$(cat "$state/local-cluster.pid" 2>/dev/null || true)"
[ -n "$sup" ] && kill -0 "$sup" 2>/dev/null || die "the cluster of $state is not running (no live local-cluster.pid)"

# cluster.env is KEY=value lines written by local-cluster.sh: read, not sourced.
declare -A env
while IFS='=' read -r k v; do env[$k]="${v//\"/}"; done <"$state/cluster.env"
read -r -a gateways <<<"${env[GATEWAYS]:-}"
[ ${#gateways[@]} -gt 0 ] || die "no gateways listed in $state/cluster.env"

now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
ready() { curl -fsS -m 2 -o /dev/null "http://$1/readyz" 2>/dev/null; }
pid_of() { cat "$state/$1.pid" 2>/dev/null || true; }

# Only start from a healthy cluster: never take down a gateway while another is not ready.
for gw in "${gateways[@]}"; do
  internal="${env[${gw}_INTERNAL]:-}"
  [ -n "$(pid_of "$gw")" ] || die "$gw is not running (no $state/$gw.pid: given up by the supervisor?)"
  ready "$internal" || die "$gw is not ready ($internal/readyz); not starting a rolling restart"
done

start_all="$(now)"
for gw in "${gateways[@]}"; do
  internal="${env[${gw}_INTERNAL]}"
  old="$(pid_of "$gw")"
  t0="$(now)"
  log "$gw (pid $old): SIGTERM (drain)"
  kill -TERM "$old" 2>/dev/null || die "cannot signal $gw (pid $old)"
  deadline=$((SECONDS + timeout_s))
  while kill -0 "$old" 2>/dev/null; do
    ((SECONDS < deadline)) || die "$gw (pid $old) did not exit within ${timeout_s} s of SIGTERM"
    sleep 0.1
  done
  drained="$(since "$t0")"
  new=""
  while :; do
    ((SECONDS < deadline)) || die "$gw did not come back ready within ${timeout_s} s (pid file: '$(pid_of "$gw")'; see $state/$gw.log)"
    kill -0 "$sup" 2>/dev/null || die "the cluster's supervisor (pid $sup) is gone"
    new="$(pid_of "$gw")"
    if [ -n "$new" ] && [ "$new" != "$old" ] && kill -0 "$new" 2>/dev/null && ready "$internal"; then break; fi
    sleep 0.1
  done
  log "$gw back and ready (pid $new) $(since "$t0") s after SIGTERM (exited after $drained s)"
  [ "$gw" = "${gateways[-1]}" ] || sleep "$pause_s"
done
log "done: ${#gateways[@]} gateways restarted one at a time in $(since "$start_all") s"
