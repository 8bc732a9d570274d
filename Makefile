# confab — common tasks. `make run` and `make test` are the two set-up commands;
# everything else is optional (see README.md).
SHELL := /bin/bash
CARGO ?= cargo
BIND ?= 127.0.0.1:3000

.PHONY: chaos test-chaos soak test-soak loadtest loadtest-smoke bench-smoke run build test test-rust test-node test-node-redis test-python test-cluster test-rolling test-browser lint fmt bench cluster check-deploy clean

## Run the server with the embedded backend and the web UI on http://$(BIND)/
run:
	scripts/deps.sh run
	$(CARGO) build --release -p confab
	@# Guest identities stay valid across restarts: the key lives in .confab/ (git-ignored).
	@mkdir -p .confab && (test -s .confab/guest.key || (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > .confab/guest.key))
	./target/release/confab serve --bind $(BIND) --auth guest --jwt-secret-file .confab/guest.key

build:
	$(CARGO) build --workspace --all-targets

## Every test: Rust unit/conformance/integration, socket.io-client suite, browser test
test: build
	scripts/deps.sh test
	$(MAKE) check-deploy test-rust test-node test-node-redis test-python test-cluster test-rolling test-chaos test-soak loadtest-smoke bench-smoke test-browser

test-rust:
	$(CARGO) test --workspace

test-node:
	node --test --test-concurrency=1 tests/node/

## The same socket.io-client suite against a gateway in cluster mode (own redis-server)
test-node-redis:
	scripts/test-node-redis.sh

## An outside client: python-socketio against a real server (tests/python/)
test-python:
	python3 tests/python/client_test.py

## Real cluster: redis-server, three gateways, nginx (tests/cluster/; rolling.test.mjs runs in test-rolling)
test-cluster:
	node --test --test-concurrency=1 $(filter-out tests/cluster/rolling.test.mjs,$(wildcard tests/cluster/*.test.mjs))

## Rolling restart under load (~20 s): deploy/local-cluster.sh on free ports, 100 users through nginx, scripts/rolling-restart.sh; 0 lost, 0 duplicates, all resumed
test-rolling:
	ulimit -n $$(ulimit -Hn) && node --test tests/cluster/rolling.test.mjs

test-browser:
	node --test --test-concurrency=1 tests/browser/

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## Three gateways + Redis + nginx on http://127.0.0.1:8080/ (Ctrl-C stops them)
cluster:
	$(CARGO) build --release -p confab
	deploy/local-cluster.sh

## Offline checks of the deploy files (compose schema, nginx syntax, Prometheus config, alert rules and their unit tests, Grafana dashboards)
check-deploy:
	scripts/check-deploy.sh

## Short chaos run (100 clients, 40 s, gateway kill + drain + Redis restart)
test-chaos:
	node --test tests/chaos/

## Long chaos run (300 clients, 5 minutes); its last result is in docs/performance.md
chaos: build
	ulimit -n $$(ulimit -Hn) && node tests/chaos/chaos.mjs --clients 300 --seconds 300

## Short soak (2 minutes: 60 users chatting, switching rooms, DMs, reconnects on 3 gateways + Redis + nginx; 0 lost, memory flat)
test-soak:
	node --test tests/soak/

## Long soak (30 minutes, the same users and checks, release build); its last result is in docs/performance.md
soak:
	$(CARGO) build --release -p confab
	ulimit -n $$(ulimit -Hn) && CONFAB_BIN=$${CONFAB_BIN:-$${CARGO_TARGET_DIR:-target}/release/confab} node tests/soak/soak.mjs --minutes 30

## Artillery smoke (own server, ~10 virtual users; fails on any error ack)
loadtest-smoke:
	loadtest/run-smoke.sh

## Artillery user mix against a running server in `--auth open` mode (the scenarios connect
## by name): e.g. `./target/release/confab serve --auth open`, or `CONFAB_AUTH=open make cluster`
## with TARGET=http://127.0.0.1:8080
TARGET ?= http://127.0.0.1:3000
loadtest:
	loadtest/run.sh chat-mix.yml --target $(TARGET)

## Smoke form of the fan-out benchmark (debug build, 200 clients, 2 s; correctness only)
bench-smoke:
	scripts/bench-smoke.sh

## Fan-out benchmark (release build, 1,000 clients); figures go to docs/performance.md
bench:
	scripts/bench-fanout.sh

clean:
	$(CARGO) clean
