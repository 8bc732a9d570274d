#!/usr/bin/env bash
# A throw-away self-signed TLS certificate for 127.0.0.1 and localhost, for local
# runs and tests only (browsers warn about it): writes DIR/fullchain.pem and
# DIR/privkey.pem, the names nginx.conf expects (docker-compose.yml mounts
# deploy/tls/ as /etc/nginx/tls/). Production uses a real certificate there.
#   deploy/dev-cert.sh DIR        # e.g. deploy/dev-cert.sh deploy/tls
set -euo pipefail
dir="${1:?usage: deploy/dev-cert.sh DIR}"
mkdir -p "$dir"
umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj "/CN=localhost" -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
  -keyout "$dir/privkey.pem" -out "$dir/fullchain.pem" 2>/dev/null
chmod 644 "$dir/fullchain.pem"
