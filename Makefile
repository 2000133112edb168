# Millstream: two entry points, `make demo` and `make test`. Both set up everything they need,
# idempotently: a virtualenv at .venv, the project and its extras, and the Debian packages
# (Prometheus, Java for PyFlink) when missing.

SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
DURATION ?= 120
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test setup system-deps lint bench k8s-validate docs clean

$(PY):
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11+) on PATH; set PYTHON=..." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e '.[dev,flink,gateways,local]'
	$(PY) -m infra.flink_jars --quiet
	touch $(STAMP)

setup: system-deps $(STAMP)

system-deps:
	@missing=""; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v amtool >/dev/null || missing="$$missing prometheus-alertmanager"; \
	command -v java >/dev/null || missing="$$missing openjdk-17-jre-headless"; \
	command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  { $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; } \
	  || { echo "could not install$$missing with apt-get; install them by hand and re-run" >&2; exit 1; }; \
	fi

demo: setup
	$(VENV)/bin/millstream demo --duration $(DURATION)

test: setup
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m mypy ingest schemas sinks streams infra

bench: setup
	$(PY) -m benchmarks

k8s-validate: $(STAMP)
	$(PY) -m infra.k8s_validate

docs: $(STAMP)
	$(PY) -m infra.docs

# Deletes the local stack's data: the embedded ClickHouse, Faust state, and the default gateway spool
# (.millstream/spool: readings not yet delivered to Kafka are lost with it).
clean:
	rm -rf .millstream build *.egg-info
