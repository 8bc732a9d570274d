#!/usr/bin/env bash
# Offline check of deploy/systemd/confab@.service (run by scripts/check-deploy.sh):
# 1. the keys the deployment relies on are there (restart policy, open-file limit,
#    hardening, reload, stop signal and a stop timeout above the drain deadline, env
#    files, no secret on the command line);
# 2. `systemd-analyze verify` of an instance (confab@gw1) finds nothing to say, when
#    systemd-analyze is installed (Debian: the systemd package; no running systemd is
#    needed). ExecStart's binary is pointed at this build's binary (or /bin/true):
#    verify checks that it exists. Any warning (an unknown key, a bad value) fails.
set -euo pipefail
cd "$(dirname "$0")/.."
unit=deploy/systemd/confab@.service
fail() { echo "check-systemd: $unit: $*" >&2; exit 1; }
[ -f "$unit" ] || fail "missing"

has() { grep -qxF -- "$1" "$unit" || fail "lacks the line '$1'"; }
for line in 'Restart=on-failure' 'LimitNOFILE=1048576' 'DynamicUser=yes' 'ProtectSystem=strict' \
  'ProtectHome=yes' 'PrivateTmp=yes' 'NoNewPrivileges=yes' 'CapabilityBoundingSet=' \
  'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' 'SystemCallFilter=@system-service' \
  'MemoryDenyWriteExecute=yes' 'ExecReload=/bin/kill -HUP $MAINPID' 'KillSignal=SIGTERM' \
  'EnvironmentFile=/etc/confab/confab.env' 'EnvironmentFile=/etc/confab/%i.env' \
  'Environment=CONFAB_GATEWAY_ID=%i' 'WantedBy=multi-user.target'; do
  has "$line"
done
grep -qE '^RestartSec=[0-9]+s?$' "$unit" || fail "lacks RestartSec="
grep -qE '^StartLimitIntervalSec=[0-9]+' "$unit" && grep -qE '^StartLimitBurst=[0-9]+' "$unit" || fail "lacks StartLimitIntervalSec=/StartLimitBurst="
# The stop timeout must leave the drain (CONFAB_SHUTDOWN_DEADLINE_MS, default 10 s) room.
stop_s="$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s\?$/\1/p' "$unit")"
[ -n "$stop_s" ] && [ "$stop_s" -gt 10 ] || fail "TimeoutStopSec must be above the 10 s shutdown deadline (is '${stop_s:-unset}')"
# Only `confab serve` on the command line: settings and secrets come from env files.
exec_start="$(sed -n 's/^ExecStart=//p' "$unit")"
[ "$exec_start" = "/usr/local/bin/confab serve" ] || fail "ExecStart must be '/usr/local/bin/confab serve' (settings in env files), is '$exec_start'"

if command -v systemd-analyze >/dev/null 2>&1; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  bin=/bin/true
  for b in "${CONFAB_BIN:-}" "${CARGO_TARGET_DIR:-target}/release/confab" "${CARGO_TARGET_DIR:-target}/debug/confab"; do
    [ -n "$b" ] && [ -x "$b" ] && bin="$(cd "$(dirname "$b")" && pwd)/$(basename "$b")" && break
  done
  sed "s#^ExecStart=/usr/local/bin/confab #ExecStart=$bin #" "$unit" >"$tmp/confab@.service"
  ln -s 'confab@.service' "$tmp/confab@gw1.service"
  out="$(cd "$tmp" && systemd-analyze verify --man=no ./confab@gw1.service 2>&1)" || fail "systemd-analyze verify failed: $out"
  [ -z "$out" ] || fail "systemd-analyze verify: $out"
  echo "check-deploy: $unit ok (required keys; systemd-analyze verify)"
else
  echo "check-deploy: $unit ok (required keys only: systemd-analyze is not installed)"
fi
