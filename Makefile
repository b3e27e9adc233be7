# The two commands: `make up` runs the node, `make test` runs the whole suite.
# Both install what they need first (idempotent; quick when nothing changed).

SHELL := /bin/bash
PYTHON_BOOT ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: up test test-js install services lint format compile check-artifacts gas bench clean assets browser nginx

up: install assets
	$(PY) scripts/up.py

# The suite runs against this machine's Postgres and Redis (override for another setup).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/connext
TEST_REDIS_URL ?= redis://127.0.0.1:6379/1
# Connections close after each request/task so the test database can be dropped at the end.
TEST_ENV := DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) DATABASE_CONN_MAX_AGE=0

test: install services assets browser nginx test-js
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) manage.py makemigrations --check --dry-run
	node contracts/compile.js --check
	$(TEST_ENV) $(PY) -m pytest

install: $(STAMP) node_modules/.installed

# The card's JavaScript protocol core against the shared vectors (Node's test runner; no browser).
test-js: node_modules/.installed
	node --test card/js/test/

# The same script the Dockerfile runs (`runtime` there): CI exercises the image's install steps.
$(STAMP): requirements.txt requirements-dev.txt connext/pyproject.toml scripts/install.sh
	VENV=$(VENV) PYTHON_BOOT=$(PYTHON_BOOT) scripts/install.sh dev
	touch $@

node_modules/.installed: package.json package-lock.json scripts/install.sh
	scripts/install.sh js
	touch $@

# Postgres and Redis on this machine, started if they are down (tests run against both).
services:
	@scripts/services.sh

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

clean:
	rm -rf $(VENV) node_modules var

# Micro-benchmark of the protocol core (hash, sign, recover, validate; the routed-payment floor).
.PHONY: bench-protocol
bench-protocol: install
	$(PY) bench/protocol_bench.py

# Contracts: compile the Solidity into connext/chain/artifacts (committed), check those artifacts
# against the sources, and print the gas table (docs/gas.md).
compile: node_modules/.installed
	npm run --silent compile

check-artifacts: node_modules/.installed
	node contracts/compile.js --check

gas: install
	$(PY) bench/gas.py --out docs/gas.md

# Routed transfers through the whole stack on this machine (Postgres and Redis must be local);
# prints throughput, latency percentiles, node CPU per transfer and the cryptographic floor, and
# writes JSON to bench/results/. BENCH_ARGS="--clients 10 --seconds 20 --rate 100" and so on.
.PHONY: bench
bench: install services
	$(PY) bench/routing_bench.py $(BENCH_ARGS)

# The clients' own CPU per routed transfer through the whole stack (as `make bench` runs it), split by what
# the client does: store writes and reads, JSON, signing and recovering, checking updates, the rest; and
# store commits (synced) per transfer. JSON to bench/results/client-*.json. BENCH_ARGS="--seconds 20".
.PHONY: bench-client
bench-client: install services
	$(PY) bench/client_bench.py $(BENCH_ARGS)

# Normal clients' payment latency alone and beside one account flooding every edge of the node (the
# goal: p99 at most 2x); JSON to bench/results/abuse-*.json. BENCH_ARGS="--rate 10 --seconds 20".
.PHONY: bench-abuse
bench-abuse: install services
	$(PY) bench/abuse_bench.py $(BENCH_ARGS)

# The node's update engine alone, in process (no sockets: Django's test client, tasks in process, the
# in-memory layer; Postgres as it runs here): µs, SQL statements and commits per routed transfer, beside
# the crypto floor; JSON to bench/results/engine-*.json. BENCH_ARGS="--payments 1000".
.PHONY: bench-engine
bench-engine: install services
	$(PY) bench/engine_bench.py $(BENCH_ARGS)

# The engine's writer session alone: µs per write (wall, its CPU, Postgres' CPU) with one write a commit
# and with many writes a batch (group commit); JSON to bench/results/writer-*.json.
.PHONY: bench-writer
bench-writer: install services
	$(PY) bench/writer_bench.py $(BENCH_ARGS)

# What daphne, Channels, the Redis channel layer and Postgres cost per routed transfer with none of our
# code behind them: the ceiling the chosen stack sets (JSON to bench/results/stack-floor-*.json).
.PHONY: bench-stack
bench-stack: install services
	$(PY) bench/stack_floor.py

# Every dashboard page with 10,000 channels and 100,000 payments (made once in BENCH_DATABASE_URL, which
# must exist; goal ≤ 300 ms a page); JSON to bench/results/dashboard-*.json. BENCH_ARGS="--runs 20".
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/connext_dashboard_bench
.PHONY: bench-dashboard
bench-dashboard: install services
	DATABASE_URL=$(BENCH_DATABASE_URL) DATABASE_CONN_MAX_AGE=0 $(PY) bench/dashboard_bench.py $(BENCH_ARGS)

# The browser bundles (npm libraries only, no CDN) for the node to serve itself: the dashboard's charts,
# the card (prints the gzipped size it loads to open; goal: at most 150 KB) and the demo dapp. The
# commands are in scripts/assets.sh, which the Dockerfile's build stage runs too.
DASHBOARD_BUILD := dashboard/static/dashboard/build
CARD_BUILD := card/static/card/build
assets: $(DASHBOARD_BUILD)/charts.js $(CARD_BUILD)/card.js $(CARD_BUILD)/dapp.js

$(DASHBOARD_BUILD)/charts.js: dashboard/assets/charts.js scripts/assets.sh node_modules/.installed
	scripts/assets.sh dashboard

CARD_SOURCES := $(shell find card/assets card/js -name '*.js' -o -name '*.css' 2>/dev/null | grep -v /test/)
$(CARD_BUILD)/card.js: $(CARD_SOURCES) scripts/assets.sh node_modules/.installed
	scripts/assets.sh card

$(CARD_BUILD)/dapp.js: $(CARD_SOURCES) scripts/assets.sh node_modules/.installed
	scripts/assets.sh dapp

# The dashboard's browser test drives Debian's chromium (Playwright never downloads a browser).
browser:
	@test -x /usr/bin/chromium || { echo "installing Debian's chromium for the browser test"; \
		SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium; }

# Many idle websockets on one node process (default 10,000, each logged in as the client does): the
# process's RSS and PSS at 0, 1k, 5k and 10k sockets (goal ≤ 1 GB) and push latency to a sample of them;
# JSON to bench/results/sockets-*.json. BENCH_ARGS="--sockets 5000 --checkpoints 0,1000".
.PHONY: bench-sockets
bench-sockets: install services
	$(PY) bench/idle_sockets.py $(BENCH_ARGS)

# The proxy's tests (tests/deploy) and `make chaos` run Debian's nginx in front of the node processes;
# the template is checked against envsubst, which renders it in the official nginx image.
nginx:
	@test -x /usr/sbin/nginx -a -x /usr/bin/envsubst || { echo "installing Debian's nginx and envsubst for the proxy tests"; \
		SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends nginx gettext-base; }

# Payments through nginx while node processes, the Celery worker, Redis, Postgres and the chain RPC are
# killed and restarted at random (a private stack of its own; not part of `make test`): completed,
# failed, stuck, lost, duplicated, conservation, recovery times; JSON to bench/results/chaos-*.json.
# CHAOS_ARGS="--seconds 60 --clients 6 --faults 10".
.PHONY: chaos
chaos: install nginx
	$(PY) bench/chaos.py $(CHAOS_ARGS)
