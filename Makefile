# The two commands of the README: `make demo` (the main job) and `make test`.
# Both create .venv with the project installed from pyproject.toml on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo httpx-demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/fastflyer demo

httpx-demo: install
	$(PY) examples/httpx_demo.py

lint: install
	$(PY) -m ruff check src tests bench examples
	$(PY) -m mypy

test: lint
	$(PY) -m pytest

bench: install
	$(PY) bench/bench_httpx.py
	$(PY) bench/bench_web.py
	$(PY) bench/bench_asgi_cpu.py
	$(PY) bench/bench_launch.py
	$(PY) bench/bench_data.py
	$(PY) bench/bench_lock.py
	$(PY) bench/bench_kafka.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
