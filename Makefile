# LMS: make targets. `make run` shows the main job, `make test` runs the whole test suite.
# Every recipe runs in one bash shell (.ONESHELL), so a trap can always clean up.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.ONESHELL:
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
LMS := $(VENV)/bin/lms
PYTEST := $(PY) -m pytest
RUFF := $(VENV)/bin/ruff
# The emulator launcher the tests and benchmarks use too (scripts/emulator.sh runs the same).
EMULATOR := $(PY) -m lms.devtools.emulator
RUN_DIR := $(CURDIR)/.run
DOCKER_COMPOSE ?= docker compose
LINT_PATHS := lms tests e2e bench scripts clients/python

# `make run`: how long `lms sim` publishes, and batches small enough to watch them land.
DURATION ?= 60
RUN_BATCHSIZE ?= 200
RUN_FLUSHINTERVAL ?= 2
# ... and its own database, recreated each run: every new emulator numbers its message ids from
# 1 again, and LMS stores each message id once.
RUN_DATABASE ?= lms_run
# ... `lms api` (and its web UI) on this port, serving after the check until Ctrl-C when
# KEEP_SERVING=1: the default on a terminal; elsewhere (CI, scripts) run, check and exit.
RUN_API_PORT ?= 3000
KEEP_SERVING ?= $(shell [ -t 0 ] && echo 1 || echo 0)

# The web UI (ui/, docs/ui.md): `npm ci && npm run build` writes it into lms/ui/static, which
# `lms api` serves; redone when its sources or lockfile change.
UI_BUILT := lms/ui/static/index.html
UI_SOURCES := ui/package.json ui/package-lock.json ui/index.html ui/vite.config.ts \
	ui/tsconfig.json $(wildcard ui/src/*)

.PHONY: help install lock test e2e run sim lint format up down faults bench bench-query \
	emulator-start emulator-stop check-compose clean

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

install: $(VENV)/.installed $(UI_BUILT)  ## create .venv (if missing), install lms (dev tools) and lms-client (constraints.txt), build the web UI

$(UI_BUILT): $(UI_SOURCES)
	@command -v npm >/dev/null || { echo "the web UI is built with Node.js 20+ and npm (Debian: apt-get install -y nodejs npm)" >&2; exit 1; }
	cd ui
	npm ci --no-audit --no-fund
	npm run build

# Every package at the version of constraints.txt (scripts/lock.py; `make lock` rewrites it).
# The client library (clients/python, its own distribution) is installed beside the server,
# with its Pub/Sub extra, for its tests and benchmark.
$(VENV)/.installed: pyproject.toml constraints.txt clients/python/pyproject.toml
	@[ -x $(PY) ] || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt -e '.[dev]' -e 'clients/python[pubsub]'
	touch $@

lock: install  ## rewrite constraints.txt from .venv: the versions of everything '.[dev]' needs
	@$(PY) scripts/lock.py

# `make test` runs the suite on this many pytest-xdist workers (each starts its own emulator
# when it first needs one). The tests mostly wait on the emulator, MariaDB and subprocesses,
# so more workers than the 2 cores pay off. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 4
# Scheduling one test at a time lets the long tests, which tests/plugins/schedule.py puts
# first, start on whichever worker is free instead of queueing behind each other.
TEST_XDIST := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist load --maxschedchunk 1)

test: install  ## run the whole test suite (starts its own Pub/Sub emulator; needs MariaDB)
	@$(PYTEST) $(TEST_XDIST) $(PYTEST_ARGS)

faults: install  ## run only the long fault-injection tests (pytest -m slow), then their table
	@export FAULTS_REPORT=$(RUN_DIR)/faults.json
	$(PYTEST) -m slow
	$(PY) scripts/faults_table.py "$$FAULTS_REPORT"

e2e: install  ## end-to-end: lms mon + lms api, lms sim direct and over HTTP, E2E_DURATION s (60)
	@export EMULATOR_RUN_DIR=$(RUN_DIR)/e2e
	trap '$(EMULATOR) stop' EXIT
	host="$$($(EMULATOR) start)"
	export PUBSUB_EMULATOR_HOST="$$host"
	$(PY) e2e/run_e2e.py

run: install  ## the main job: emulator + schema, lms mon fed by lms sim for DURATION s, lms api and its web UI
	@export EMULATOR_RUN_DIR=$(RUN_DIR)/run
	mon=""
	api=""
	stop() {  # $$1: the pid; SIGTERM, then its exit status
		[[ -n "$$1" ]] || return 0
		kill -TERM "$$1" 2>/dev/null || true
		local rc=0; wait "$$1" || rc=$$?
		return $$rc
	}
	cleanup() {
		stop "$$api" || true
		stop "$$mon" || true
		$(EMULATOR) stop
	}
	trap cleanup EXIT
	host="$$($(EMULATOR) start)"
	export PUBSUB_EMULATOR_HOST="$$host"
	export LOG_FORMAT="$${LOG_FORMAT:-console}" MYSQL_DATABASE=$(RUN_DATABASE)
	$(PY) scripts/run_check.py reset
	echo "== lms migrate"
	$(LMS) migrate
	echo "== lms mon (BATCHSIZE=$(RUN_BATCHSIZE) FLUSHINTERVAL=$(RUN_FLUSHINTERVAL)), log in $$EMULATOR_RUN_DIR/mon.log"
	# lms mon and lms api in sessions of their own (setsid), and the tee of lms mon's output
	# deaf to it: Ctrl-C reaches only this shell, which stops them in order with SIGTERM (a
	# second signal would make lms mon exit at once, a dead tee cut its output).
	env -u DURATION BATCHSIZE=$(RUN_BATCHSIZE) FLUSHINTERVAL=$(RUN_FLUSHINTERVAL) \
		setsid $(LMS) mon > >(trap '' INT; exec tee "$$EMULATOR_RUN_DIR/mon.log") 2>&1 &
	mon=$$!
	for _ in $$(seq 900); do
		grep -q "monitor started" "$$EMULATOR_RUN_DIR/mon.log" 2>/dev/null && break
		kill -0 "$$mon" 2>/dev/null || { echo "lms mon exited at start-up" >&2; exit 1; }
		sleep 0.1
	done
	grep -q "monitor started" "$$EMULATOR_RUN_DIR/mon.log" || { echo "lms mon did not start" >&2; exit 1; }
	ui="http://127.0.0.1:$(RUN_API_PORT)/"
	echo "== lms api on port $(RUN_API_PORT), log in $$EMULATOR_RUN_DIR/api.log"
	env -u DURATION API_PORT=$(RUN_API_PORT) setsid $(LMS) api > "$$EMULATOR_RUN_DIR/api.log" 2>&1 &
	api=$$!
	for _ in $$(seq 300); do
		$(PY) -c "import urllib.request; urllib.request.urlopen('$${ui}healthz', timeout=1)" 2>/dev/null && break
		kill -0 "$$api" 2>/dev/null || { cat "$$EMULATOR_RUN_DIR/api.log" >&2; echo "lms api exited at start-up (port $(RUN_API_PORT) taken? make run RUN_API_PORT=3001)" >&2; exit 1; }
		sleep 0.2
	done
	echo "== the web UI: $$ui (watch the logs arrive: Live tail)"
	echo "== lms sim for $(DURATION)s"
	DURATION=$(DURATION) $(LMS) sim --report "$$EMULATOR_RUN_DIR/sim-report.json"
	echo "== waiting for lms mon to store everything"
	$(PY) scripts/run_check.py verify "$$EMULATOR_RUN_DIR/sim-report.json" --timeout 60
	if [[ "$(KEEP_SERVING)" == 1 ]]; then
		echo "== all stored; serving the web UI at $$ui until Ctrl-C (KEEP_SERVING=0: exit here)"
		trap 'echo; echo "== Ctrl-C"' INT
		wait "$$api" || true
		trap - INT
	fi
	echo "== stopping lms api and lms mon (SIGTERM)"
	stop "$$api" || true
	api=""
	rc=0; stop "$$mon" || rc=$$?
	mon=""
	[[ $$rc -eq 0 ]] || { echo "lms mon exited $$rc" >&2; exit 1; }
	echo "== done: lms mon exited 0"

sim:  install  ## run lms sim against PUBSUB_EMULATOR_HOST (or the emulator of `make emulator-start`)
	@if [[ -z "$${PUBSUB_EMULATOR_HOST:-}" ]] && host="$$(EMULATOR_RUN_DIR=$(RUN_DIR) $(EMULATOR) host 2>/dev/null)"; then
		export PUBSUB_EMULATOR_HOST="$$host"
	fi
	$(LMS) sim

emulator-start: install  ## start a Pub/Sub emulator in the background (state in .run/)
	@EMULATOR_RUN_DIR=$(RUN_DIR) $(EMULATOR) start

emulator-stop: install  ## stop the emulator of emulator-start
	@EMULATOR_RUN_DIR=$(RUN_DIR) $(EMULATOR) stop

lint: install  ## ruff check, ruff format --check, mypy --strict over lms/ and lms_client/, constraints.txt up to date
	@$(RUFF) check $(LINT_PATHS)
	$(RUFF) format --check $(LINT_PATHS)
	$(VENV)/bin/mypy
	$(PY) scripts/lock.py --check

format: install  ## apply ruff's fixes and formatting
	@$(RUFF) check --fix $(LINT_PATHS)
	$(RUFF) format $(LINT_PATHS)

bench: install  ## throughput (bench/run.py), ingestion, client, then the query benchmark
	@$(PY) bench/run.py
	$(MAKE) --no-print-directory bench-ingest
	$(MAKE) --no-print-directory bench-client
	$(MAKE) --no-print-directory bench-query

bench-client: install  ## client library: cost of logger.info via LMSHandler, records/s delivered, middleware req/s
	@$(PY) bench/client_handler.py
	$(PY) bench/client_middleware.py

# The query benchmark loads this many logs (bulk INSERTs, ~7 min for 5M on 2 CPUs), times
# them with the server's buffer pool, then again with BENCH_QUERY_POOL_MB (0: skip that).
BENCH_QUERY_ROWS ?= 5000000
BENCH_QUERY_POOL_MB ?= 4096

bench-query: install  ## query benchmark (bench/query.py): BENCH_QUERY_ROWS logs, p50/p95 per filter
	@$(PY) bench/query.py --rows $(BENCH_QUERY_ROWS) --pool-mb $(BENCH_QUERY_POOL_MB)

.PHONY: bench-pipeline bench-ingest bench-rss bench-tune bench-write bench-client bench-patterns

# The ingestion benchmark needs wrk (Debian's package: `sudo apt-get install -y wrk`); it says
# so and fails when it is missing. Its knobs are BENCH_INGEST_* variables (bench/ingest.py).
bench-ingest: install  ## HTTP ingestion (bench/ingest.py): POST /v1/logs under wrk vs lms pub, ~2.5 min
	@$(PY) bench/ingest.py

bench-pipeline: install  ## only the pipeline benchmark (bench/run.py): a, b, c, profile, latency, pub
	@$(PY) bench/run.py

bench-rss: install  ## peak RSS of lms mon draining a 1,000,000-message backlog (long)
	@$(PY) bench/run.py --parts rss

# BATCHSIZE:MAX_OUTSTANDING[:PULLERS] combinations that `make bench-tune` tries.
BENCH_TUNE ?= 1000:2000,2000:4000,5000:10000,5000:10000:1,5000:10000:2

bench-tune: install  ## lms mon once per BENCH_TUNE combination (to choose bench/emulator.env)
	@$(PY) bench/run.py --tune $(BENCH_TUNE)

bench-write: install  ## rows/s of Storage.write_batch at schema versions 3 and 4 (bench/write_cost.py)
	@$(PY) bench/write_cost.py --runs 3

bench-patterns: install  ## write_batch rows/s with and without top patterns (bench/patterns.py)
	@$(PY) bench/patterns.py --rows 20000 --runs 4 --owned

check-compose: install  ## validate docker-compose.yml statically (no Docker engine needed)
	@$(PY) -c 'import yaml' 2>/dev/null || $(PIP) install --quiet -c constraints.txt pyyaml
	$(PY) scripts/check_compose.py
	for compose in "$(DOCKER_COMPOSE)" docker-compose; do
		if $$compose version >/dev/null 2>&1; then
			# The secrets compose requires, made up for the check (the real .env is not read).
			env_file="$$(mktemp)"
			trap 'rm -f "$$env_file"' EXIT
			python3 scripts/compose_env.py "$$env_file" >/dev/null
			$$compose --env-file "$$env_file" config -q && echo "$$compose config: OK"
			break
		fi
	done

up:  ## docker compose: MySQL 8, the emulator, lms mon, lms api and lms sim (secrets in .env)
	@python3 scripts/compose_env.py
	$(DOCKER_COMPOSE) up -d --build

down:  ## stop and remove the docker compose services
	@$(DOCKER_COMPOSE) down

clean:  ## remove .run/ and caches (keeps .venv)
	@EMULATOR_RUN_DIR=$(RUN_DIR) $(EMULATOR) stop || true
	rm -rf $(RUN_DIR) .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -not -path './$(VENV)/*' -prune -exec rm -rf {} +
