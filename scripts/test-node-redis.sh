#!/usr/bin/env bash
# Runs the socket.io-client suite (tests/node/) against gateways in cluster mode:
# starts its own redis-server on a free loopback port, passes `--redis` to every
# server the suite starts, and stops that redis-server by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" >"$dir/redis.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
CONFAB_TEST_ARGS="--redis redis://127.0.0.1:$port/" node --test --test-concurrency=1 tests/node/
