# Two commands on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | md5sum | cut -c1-12)

# The test run's own database and Redis db number / key prefix (cleaned up by the tests).
TEST_DB_URL ?= postgres://postgres@127.0.0.1:5432/cartimage
TEST_REDIS_URL ?= redis://127.0.0.1:6379/11
BENCH_DB_URL ?= postgres://postgres@127.0.0.1:5432/cartimage_bench
BENCH_REDIS_URL ?= redis://127.0.0.1:6379/12
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-nightly lint bench chaos venv services chromium wrk nginx redis-sentinel dist clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-* && touch $@

# The storefront on embedded defaults (SQLite + the embedded image store): no servers needed.
# A Celery worker with an embedded beat (-B) runs the sweeps beside it on the embedded
# (filesystem) broker, logging to var/celery.log; it is stopped when runserver exits.
CELERY_LOG ?= $${CART_VAR_DIR:-var}/celery.log
CELERY ?= $(VENV)/bin/celery
# Stopping the worker: a warm shutdown (TERM: the running task finishes) for at most 10 s,
# then a cold one (QUIT: Celery stops the task and its beat) for 5 s, then KILL. Ctrl-C
# ends `make run` in bounded time even with a worker stuck in a task or a write.
define STOP_WORKER
for signal in TERM QUIT KILL; do \
  kill -$$signal $$celery 2>/dev/null || break; \
  case $$signal in TERM) tries=100;; QUIT) tries=50;; KILL) tries=0;; esac; \
  for _ in $$(seq $$tries); do kill -0 $$celery 2>/dev/null || break 2; sleep 0.1; done; \
done; wait $$celery
endef
# HOST:PORT must be free before anything starts (bound the way runserver binds it, so a
# socket in TIME_WAIT is no obstacle); when it is taken, name the next free port.
define PORT_CHECK
import errno, socket, sys
host, port = sys.argv[1].strip("[]"), sys.argv[2]
if not port.isdigit() or not 0 < int(port) < 65536:
    sys.exit(f"PORT={port} is not a port number (1-65535): run 'make run PORT=8001'")
def bind_error(p):
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, p, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        sys.exit(f"HOST={host} is not an address of this machine: {exc.strerror}")
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as exc:
            return exc
    return None
error = bind_error(int(port))
if error is not None and error.errno == errno.EADDRINUSE:
    free = (p for p in range(int(port) + 1, 65536) if bind_error(p) is None)
    sys.exit(f"port {port} on {host} is in use: run 'make run PORT={next(free, 8001)}'")
if error is not None:
    sys.exit(f"can not listen on {host}:{port}: {error.strerror}")
endef
export PORT_CHECK
# Development mode (DEBUG on, the published development key allowed); production sets
# DJANGO_SECRET_KEY and leaves DJANGO_DEBUG unset (see README, Production).
# Ctrl-C stops the server and the worker, and `make run` ends with status 0. On a terminal
# runserver runs as a job of its own (set -m) holding the terminal, so Ctrl-C reaches it
# alone: make itself, signalled, would report "Interrupt" and end with 130 whatever the
# recipe did. Without a terminal, a SIGINT to the recipe still stops both and exits 0.
run: export DJANGO_DEBUG ?= 1
run: venv
	@$(PY) -c "$$PORT_CHECK" "$(HOST)" "$(PORT)"
	$(PY) manage.py migrate --noinput -v0
	$(PY) manage.py seed_demo
	@mkdir -p "$${CART_VAR_DIR:-var}"; \
	$(CELERY) -A config worker -B --pool=solo --without-gossip --without-mingle \
	  --without-heartbeat --loglevel=INFO --logfile="$(CELERY_LOG)" & celery=$$!; \
	trap '$(STOP_WORKER)' EXIT; trap 'exit 0' INT TERM; \
	echo "celery worker + beat running (pid $$celery, log $(CELERY_LOG))"; \
	if [ -t 0 ]; then set -m; fi; \
	$(PY) manage.py runserver $(HOST):$(PORT); status=$$?; set +m; \
	if [ $$status = 130 ]; then exit 0; else exit $$status; fi

services:
	@scripts/ensure_services.sh

# Tools from Debian's packages, installed when missing (CI runs as root on Debian); the
# target stops at once, naming the tool, when it can not be had.
APT_INSTALL = apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq
chromium:
	@command -v chromium >/dev/null || ($(APT_INSTALL) chromium) || \
	  { echo "FATAL: chromium (Debian package chromium) is needed by the browser tests" >&2; exit 1; }
	@command -v chromium >/dev/null || { echo "FATAL: chromium is not installed" >&2; exit 1; }

# The sample reverse-proxy configuration (deploy/nginx.conf) is tested behind a real nginx.
nginx:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || ($(APT_INSTALL) nginx-light) || \
	  { echo "FATAL: nginx (Debian package nginx-light) is needed by tests/deploy" >&2; exit 1; }
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || \
	  { echo "FATAL: nginx is not installed" >&2; exit 1; }

# Redis Sentinel and redis-cli are started and driven by tests/topologies on loopback.
redis-sentinel:
	@command -v redis-sentinel >/dev/null || ($(APT_INSTALL) redis-sentinel) || \
	  { echo "FATAL: redis-sentinel (Debian package redis-sentinel) is needed by tests/topologies" >&2; exit 1; }
	@command -v redis-sentinel >/dev/null || { echo "FATAL: redis-sentinel is not installed" >&2; exit 1; }
	@command -v redis-cli >/dev/null || ($(APT_INSTALL) redis-tools) || \
	  { echo "FATAL: redis-cli (Debian package redis-tools) is needed by tests/topologies" >&2; exit 1; }
	@command -v redis-cli >/dev/null || { echo "FATAL: redis-cli is not installed" >&2; exit 1; }

wrk:
	@command -v wrk >/dev/null || ($(APT_INSTALL) wrk) || \
	  { echo "FATAL: wrk (Debian package wrk) is needed by make bench" >&2; exit 1; }
	@command -v wrk >/dev/null || { echo "FATAL: wrk is not installed" >&2; exit 1; }

# The installable app alone: dist/cartsvc-<version>-py3-none-any.whl.
dist: venv
	rm -rf dist build
	$(PY) -m build --wheel --no-isolation --outdir dist .

# mypy's django plugin imports config.settings: run it in development mode (DJANGO_DEBUG=1, the
# published development key allowed) so lint needs no environment of its own.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	env DJANGO_DEBUG=1 $(VENV)/bin/mypy

# The whole suite on real PostgreSQL + Redis (the wheel built and installed into a fresh
# virtualenv for the integration project included), then the service contract on the
# embedded default. Hypothesis runs derandomized (profile ci): the same examples every run.
HYPOTHESIS_PROFILE ?= ci
# Tests and benchmarks run as production does (DEBUG off, a secret key of their own), over
# plain HTTP on loopback.
test bench: export DJANGO_HTTPS = 0
test bench: export DJANGO_SECRET_KEY = $(shell python3 -c 'import secrets; print(secrets.token_urlsafe(50))')
test: venv services chromium nginx redis-sentinel lint
	DATABASE_URL=$(TEST_DB_URL) REDIS_URL=$(TEST_REDIS_URL) CART_KEY_PREFIX=t$$$$ \
	  CART_SUBSCRIPTION_NUDGE=0 \
	  HYPOTHESIS_PROFILE=$(HYPOTHESIS_PROFILE) $(VENV)/bin/pytest -p no:cacheprovider
	env -u DATABASE_URL -u REDIS_URL CART_VAR_DIR=$$(mktemp -d) CART_SUBSCRIPTION_NUDGE=0 \
	  HYPOTHESIS_PROFILE=$(HYPOTHESIS_PROFILE) $(VENV)/bin/pytest -p no:cacheprovider -m contract

# The same with fresh random draws and ten times the examples (a failure prints its seed).
test-nightly:
	$(MAKE) test HYPOTHESIS_PROFILE=nightly

bench: venv services wrk
	DATABASE_URL=$(BENCH_DB_URL) REDIS_URL=$(BENCH_REDIS_URL) CART_KEY_PREFIX=bench \
	  $(PY) bench/run.py
	DATABASE_URL=$(BENCH_DB_URL) REDIS_URL=$(BENCH_REDIS_URL) CART_KEY_PREFIX=bench \
	  $(PY) bench/profile_http.py | tee bench/profile.md
	DATABASE_URL=$(BENCH_DB_URL) REDIS_URL=$(BENCH_REDIS_URL) CART_KEY_PREFIX=bench \
	  $(PY) bench/cpu_split.py | tee bench/cpu_split.md
	$(PY) bench/failover_cost.py | tee bench/failover.md
	DATABASE_URL=$(BENCH_DB_URL) REDIS_URL=$(BENCH_REDIS_URL) CART_KEY_PREFIX=bench \
	  CART_SUBSCRIPTION_NUDGE=0 $(PY) bench/subscriptions_bench.py | tee bench/subscriptions.md
	DATABASE_URL=$(BENCH_DB_URL) REDIS_URL=$(BENCH_REDIS_URL) CART_KEY_PREFIX=bench \
	  CART_SUBSCRIPTION_NUDGE=0 $(PY) bench/trigger_cost.py | tee bench/trigger.md
	DATABASE_URL=$(BENCH_DB_URL) REDIS_URL=$(BENCH_REDIS_URL) CART_KEY_PREFIX=bench \
	  CART_SUBSCRIPTION_NUDGE=0 $(PY) bench/binding_cost.py | tee bench/binding.md
	DATABASE_URL=$(BENCH_DB_URL) REDIS_URL=$(BENCH_REDIS_URL) CART_KEY_PREFIX=bench \
	  CART_SUBSCRIPTION_NUDGE=0 $(PY) bench/commit_bench.py | tee bench/commits.md

# Proof under fire (issue 8): a bounded load on several gunicorn workers while a seeded fault
# schedule runs, then the history checked (bench/chaos/run.py); it starts its own database
# and redis-server(s) and removes them after, once per topology (one primary; primary +
# replica + 3 sentinels; a 3 + 3 Cluster), each with its own faults. Options:
# CHAOS_TOPOLOGIES="sentinel" CHAOS_ARGS="--seed 7 --duration 60 --clients 16 --carts 40
# --workers 4". A short run is in `make test`.
CHAOS_TOPOLOGIES ?= standalone sentinel cluster
CHAOS_ARGS ?=
chaos: venv services redis-sentinel
	@for topology in $(CHAOS_TOPOLOGIES); do \
	  $(PY) bench/chaos/run.py --topology $$topology $(CHAOS_ARGS) || exit 1; \
	done

clean:
	rm -rf $(VENV) var db.sqlite3* .pytest_cache .ruff_cache .mypy_cache .hypothesis dist build *.egg-info
