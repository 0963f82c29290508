# `make demo` and `make test` do all the set-up on a fresh Debian machine (CI's included).
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch; the package itself only asks for torch>=2.2, so users elsewhere keep their build.
TORCH ?= torch==2.13.0
DATA_FILE := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: setup demo demo-check test lint data clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

setup: $(VENV)/.installed

# ruff (lint, import order) and pyright (types, basic mode), at the versions pyproject's `lint` extra pins.
$(VENV)/.lint: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[lint]"
	touch $@

lint: $(VENV)/.lint
	$(VENV)/bin/ruff check src
	$(VENV)/bin/pyright

# Fashion-MNIST from Debian's package when we are root on Debian; otherwise `fitnets demo` downloads it.
data:
	@if [ -f "$(DATA_FILE)" ] || [ -n "$$FITNETS_DATA" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get install -y dataset-fashion-mnist || { apt-get update && apt-get install -y dataset-fashion-mnist; }; \
	else \
		echo "Fashion-MNIST is not in /usr/share/datasets: run 'sudo apt-get install -y dataset-fashion-mnist'," \
		     "set FITNETS_DATA, or let 'fitnets demo' download it"; \
	fi

demo: setup data
	$(VENV)/bin/fitnets demo

test: setup data
	$(PY) -m pytest -q

# The demo against the README's table (its accuracies, with the README's 2 threads): minutes, so not in `make test`.
demo-check: setup data
	FITNETS_DEMO_CHECK=1 $(PY) -m pytest -q tests/test_demo_table.py

clean:
	rm -rf $(VENV) runs .pytest_cache
