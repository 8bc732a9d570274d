#!/usr/bin/env bash
# Installs what confab's run and test commands need on a fresh Debian machine of
# this kind: npm packages (socket.io-client for the UI, test tools) and, for the
# test suite, the Debian packages it drives (chromium for the browser test, nginx
# for the cluster tests). Idempotent: does nothing that is already done.
#   scripts/deps.sh run    # npm packages only
#   scripts/deps.sh test   # npm packages + apt packages
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-run}"

if [ ! -d node_modules/socket.io-client ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "deps: npm ci"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
fi

if [ "$mode" = "test" ]; then
  if ! python3 -c 'import socketio, websocket' >/dev/null 2>&1; then
    echo "deps: pip install -r tests/python/requirements.txt"
    python3 -m pip install -q --disable-pip-version-check -r tests/python/requirements.txt
  fi
  missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium chromium-driver)
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
  command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
      echo "deps: missing ${missing[*]}; install them (as root: apt-get install -y ${missing[*]})" >&2
      exit 1
    fi
    echo "deps: apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi
