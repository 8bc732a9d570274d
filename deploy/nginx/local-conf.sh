#!/usr/bin/env bash
# A runnable copy of the repository's nginx.conf for local use, in DIR:
# DIR/tls/ gets a throw-away self-signed certificate (deploy/dev-cert.sh) and
# DIR/nginx.conf is nginx.conf with the certificate paths pointing there and the
# include made absolute (so the copy runs from any directory). Nothing else is
# changed. Prints the path of the copy.
#   conf="$(deploy/nginx/local-conf.sh DIR)"; nginx -p PREFIX -c "$conf"
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
dir="$(mkdir -p "${1:?usage: deploy/nginx/local-conf.sh DIR}" && cd "$1" && pwd)"
"$root/deploy/dev-cert.sh" "$dir/tls"
sed -e "s#ssl_certificate /etc/nginx/tls/fullchain.pem;#ssl_certificate $dir/tls/fullchain.pem;#" \
    -e "s#ssl_certificate_key /etc/nginx/tls/privkey.pem;#ssl_certificate_key $dir/tls/privkey.pem;#" \
    -e "s#include deploy/nginx/#include $root/deploy/nginx/#" \
    "$root/nginx.conf" >"$dir/nginx.conf"
if grep -q '/etc/nginx/tls/\|include deploy/' "$dir/nginx.conf"; then
  echo "local-conf: nginx.conf no longer has the expected certificate/include lines" >&2
  exit 1
fi
echo "$dir/nginx.conf"
