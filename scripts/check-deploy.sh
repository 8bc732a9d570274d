#!/usr/bin/env bash
# Offline validation of the deployment files (no Docker engine on these machines):
# docker-compose.yml against the compose schema (Debian's docker-compose), nginx.conf
# with `nginx -t`, deploy/prometheus.yml with promtool when it is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
docker-compose -f docker-compose.yml config -q
echo "check-deploy: docker-compose.yml ok"
mkdir -p "$tmp/logs" "$tmp/tmp"
"${NGINX_BIN:-/usr/sbin/nginx}" -t -q -p "$tmp" -c "$PWD/nginx.conf"
echo "check-deploy: nginx.conf ok"
if command -v promtool >/dev/null 2>&1; then
  promtool check config deploy/prometheus.yml >/dev/null
  echo "check-deploy: deploy/prometheus.yml ok"
fi
