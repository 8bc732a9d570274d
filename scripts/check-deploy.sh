#!/usr/bin/env bash
# Offline validation of the deployment files (no Docker engine on these machines):
# docker-compose.yml against the compose schema (Debian's docker-compose), nginx.conf
# with `nginx -t` (certificate paths pointed at a throw-away self-signed certificate),
# deploy/prometheus.yml with promtool when it is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

CONFAB_REDIS_PASSWORD=check-deploy CONFAB_GRAFANA_PASSWORD=check-deploy docker-compose -f docker-compose.yml config -q
# Without a Redis password the stack must refuse to start rather than run an open Redis.
if env -u CONFAB_REDIS_PASSWORD CONFAB_GRAFANA_PASSWORD=check-deploy docker-compose -f docker-compose.yml config -q 2>/dev/null; then
  echo "check-deploy: docker-compose.yml starts without CONFAB_REDIS_PASSWORD" >&2
  exit 1
fi
echo "check-deploy: docker-compose.yml ok"

mkdir -p "$tmp/nginx/logs" "$tmp/nginx/tmp"
conf="$(deploy/nginx/local-conf.sh "$tmp/conf")"
"${NGINX_BIN:-/usr/sbin/nginx}" -t -q -p "$tmp/nginx" -c "$conf"
echo "check-deploy: nginx.conf ok"

if command -v promtool >/dev/null 2>&1; then
  # check config also checks the rule files it names (rule_files).
  promtool check config deploy/prometheus.yml >/dev/null
  promtool check rules deploy/prometheus/*.rules.yml >/dev/null
  # Each alert fires on synthetic series (the expressions, not only the syntax).
  promtool test rules deploy/prometheus/*.rules.test.yml >/dev/null
  echo "check-deploy: deploy/prometheus.yml and deploy/prometheus/ rules ok"
fi
# Grafana dashboards and provisioning: valid JSON/YAML, each panel with a query.
python3 scripts/check-grafana.py
echo "check-deploy: deploy/grafana ok"
# The systemd unit: required keys, and systemd-analyze verify when installed.
scripts/check-systemd.sh
