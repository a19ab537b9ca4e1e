# Unified Message Platform — the two commands a new user needs are `make run` and `make test`.
# Everything they need is installed by these targets (Python packages into .venv/, Kafka jars
# from Maven Central into ~/.cache, PostgreSQL and Redis from Debian's packages when root).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium

.PHONY: run test test-postgres-tagged test-sqlite-tagged test-sqlite test-postgres test-slow test-browser browser services services-kafka stop venv clean bench

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,browser]'
	@touch $(STAMP)

## Start the local broker, PostgreSQL and Redis in the background (idempotent).
services: venv
	services/up.sh

services-kafka: venv
	services/up.sh kafka

## Stop what `make services` started.
stop:
	services/down.sh

## The dashboard with live demo data on http://127.0.0.1:8000/ (SQLite, local Kafka, one process);
## RUN_ARGS=--amqp (or AMQP_URL set) also starts RabbitMQ and embeds the bridge.
run: services-kafka
	@if [ -n "$$AMQP_URL" ] || echo " $(RUN_ARGS) " | grep -q -- ' --amqp '; then services/up.sh rabbitmq; fi
	$(PY) manage.py migrate --noinput -v 0
	$(PY) manage.py demo_user
	$(PY) manage.py run_dashboard $(RUN_ARGS)

## The whole suite: on PostgreSQL (production's database) and on SQLite (the embedded default),
## both against the real Kafka broker and side by side (each line prefixed with its database: the
## suite mostly waits on brokers and servers, so two runs share two cores well); then, once, the
## browser journeys (they run the dashboard as a subprocess on its own SQLite file) and the slow
## fault and scale-out tests.
test: services-kafka browser
	services/up.sh postgres redis
	$(MAKE) --no-print-directory -j2 test-postgres-tagged test-sqlite-tagged
	$(MAKE) --no-print-directory test-browser test-slow

test-postgres-tagged test-sqlite-tagged: test-%-tagged:
	@set -o pipefail; $(MAKE) --no-print-directory test-$* 2>&1 | sed -u 's/^/[$*] /'

test-postgres: venv
	@echo "== test suite on PostgreSQL =="
	DATABASE_URL=$$(services/postgres.sh url) $(PY) -m pytest -m "not slow and not browser" $(PYTEST_ARGS)

test-sqlite: venv
	@echo "== test suite on SQLite =="
	env -u DATABASE_URL $(PY) -m pytest -m "not slow and not browser" $(PYTEST_ARGS)

## Browser journeys (tests/e2e/): Playwright driving Debian's Chromium; screenshots in test-artifacts/.
test-browser: venv browser
	@echo "== browser journeys (Chromium) =="
	env -u DATABASE_URL $(PY) -m pytest -m browser $(PYTEST_ARGS)

## Real consume_demands/daphne processes killed, restarted and scaled out; their own PostgreSQL
## and Kafka for the outages (the shared ones are never stopped). A few minutes.
test-slow: venv
	@echo "== slow fault and scale-out tests =="
	env -u DATABASE_URL $(PY) -m pytest -m slow $(PYTEST_ARGS)

## Chromium and the Noto CJK fonts from Debian's packages for the browser tests (Playwright never downloads a browser here).
browser:
	@test -x $(CHROMIUM) || UMSG_SVC=chromium bash -c '. services/lib.sh && apt_install chromium'
	@test -x $(CHROMIUM) || { echo "browser tests need $(CHROMIUM): apt-get install -y chromium (as root)" >&2; exit 1; }
	@# Chinese glyphs in the journeys' screenshots (without a CJK font they are boxes).
	@dpkg -s fonts-noto-cjk >/dev/null 2>&1 || UMSG_SVC=fonts-noto-cjk bash -c '. services/lib.sh && apt_install fonts-noto-cjk' || echo "fonts-noto-cjk missing: screenshots show boxes for Chinese" >&2

## Benchmarks (issue 6): ingest throughput on PostgreSQL and SQLite with py-spy profiles, live
## latency, fan-out to 1,000 websockets, the list page at 1,000,000 rows; figures in bench/results/ (bench/README.md says more).
## BENCH_ARGS='--messages 50000 --repeat 1' for a quicker ingest run, LIVE_ARGS='--seconds 20'.
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	services/up.sh kafka postgres
	$(PY) -m bench.ingest --db postgres,sqlite --profile $(BENCH_ARGS)
	services/up.sh redis
	$(PY) -m bench.live_latency $(LIVE_ARGS)
	$(PY) -m bench.fanout $(FANOUT_ARGS)
	$(PY) -m bench.list_page $(LIST_ARGS)

clean:
	rm -rf $(VENV) db.sqlite3 db.sqlite3-* .pytest_cache test-artifacts
