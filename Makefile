# The two commands a fresh machine needs: `make run` and `make test`.
# Both create .venv and install everything on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.vidgen-installed
RECIPE ?= workflows/configs/default.yaml
WORKDIR ?= vidgen-work

.PHONY: run test ui-check install clean

install: $(STAMP)

# torch is pinned *before* the project so pip takes the CPU build on this machine
# rather than resolving a multi-GB CUDA build; the project itself only asks torch>=2.3.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/vidgen run --config $(RECIPE) --workdir $(WORKDIR) $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Only the browser check: a lean tiny run, `mlflow server` on it, headless Chromium
# (apt-get install -y chromium chromium-driver). Screenshots: the path it prints.
ui-check: $(STAMP)
	$(PY) -m pytest -q -s -m ui tests/e2e/test_ui_browser.py $(PYTEST_ARGS)

clean:
	rm -rf $(WORKDIR)
