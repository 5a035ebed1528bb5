# The two entry points of the README: `make site` builds the demo lake's site, `make test` runs the tests.
# Each installs what it needs into .venv (and, for the browser tests, Debian's chromium) first.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# torch 2.13.0 lies on this project's build machines as a CPU wheel; elsewhere pip fetches it.
TORCH ?= torch==2.13.0

.PHONY: site test lint install browser

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install "$(TORCH)"
	$(PIP) install -e ".[dev]"
	touch $@

install: $(VENV)/.installed

site: install
	$(VENV)/bin/lakegen build

browser:
	@test -x /usr/bin/chromium || { test "$$(id -u)" = 0 && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	  echo "chromium not installed: browser tests will be skipped"

test: install browser
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check lakegen tests benchmarks
	$(VENV)/bin/ruff format --check lakegen tests benchmarks
	$(VENV)/bin/mypy
