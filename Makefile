# The two commands a fresh machine needs: `make run` and `make test`.
# Both create .venv and install everything on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.vidgen-installed
RECIPE ?= workflows/configs/default.yaml
WORKDIR ?= vidgen-work

.PHONY: run test drills ui-check install clean

install: $(STAMP)

# torch is pinned *before* the project so pip takes the CPU build on this machine
# rather than resolving a multi-GB CUDA build; the project itself only asks torch>=2.3.
# The rest goes in with uv, which downloads and unpacks in parallel: the same versions as pip
# resolves, in ~11 s instead of ~75 s on 2 cores (uv reads no pip.conf, so where it cannot
# reach an index, e.g. behind a private mirror set only for pip, pip installs the project).
# pip byte-compiles one file at a time; compileall -j 0 does the same work on every core
# (install 152 s -> 115 s on 2 cores). It must happen here: with PYTHONDONTWRITEBYTECODE set
# (as on CI) nothing compiled at import time is kept, and every Ray worker would recompile.
# A few third-party files are not Python 3 (templates, old fixtures); pip skips them too.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --no-compile torch==2.13.0 uv
	$(VENV)/bin/uv pip install -q --python $(PY) -e '.[test]' \
	  || $(PY) -m pip install -q --disable-pip-version-check --no-compile -e '.[test]'
	@$(PY) -m compileall -qq -j 0 "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" || true
	@touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/vidgen run --config $(RECIPE) --workdir $(WORKDIR) $(ARGS)

# --durations: every run says which tests take the time (the suite's budget is 20 minutes on 2 cores).
test: $(STAMP)
	$(PY) -m pytest -q --durations=25 $(PYTEST_ARGS)

# Only the reliability drills, the slow ones included; their table lands at the end of bench/RESULTS.md.
drills: $(STAMP)
	VIDGEN_SLOW_DRILLS=1 $(PY) -m pytest -q -m reliability $(PYTEST_ARGS)

# Only the browser check: a lean tiny run, `mlflow server` on it, headless Chromium
# (apt-get install -y chromium chromium-driver). Screenshots: the path it prints.
ui-check: $(STAMP)
	$(PY) -m pytest -q -s -m ui tests/e2e/test_ui_browser.py $(PYTEST_ARGS)

clean:
	rm -rf $(WORKDIR)
