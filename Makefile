PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip -q --disable-pip-version-check

# Torch is installed on its own, before the project, so that the project's looser
# `torch>=2.2` requirement is already satisfied. The default pins a release for which a
# CPU build installs quickly where one is available (a plain `torch` may pull a multi-GB
# CUDA build). Override it, e.g.
#   make TORCH_SPEC='torch --index-url https://download.pytorch.org/whl/cpu'
TORCH_SPEC ?= torch==2.13.0

# The last step adds `mup`, the reference muP implementation that the tests cross-check
# against. --no-deps: its metadata asks for torchvision, which it never imports.

.PHONY: install browser-deps test lint lab data clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install $(TORCH_SPEC)
	$(PIP) install -e '.[dev,ray,lab]'
	$(PIP) install --no-deps mup==1.0.0
	touch $@

install: $(VENV)/.installed

# What the notebooks need, and only that: the package with the `lab` extra (JupyterLab),
# none of the dev or Ray extras that `make test` installs.
$(VENV)/.lab-installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install $(TORCH_SPEC)
	$(PIP) install -e '.[lab]'
	touch $@

# Debian's Chromium for the browser test (tests/test_browser.py drives JupyterLab in it with
# Playwright). Installed only where it is missing, with apt-get as root or with passwordless
# sudo; elsewhere (no apt-get, e.g. macOS, or no root) this prints a note and the browser test
# is skipped (under CI it fails instead).
browser-deps:
	@if [ -x /usr/bin/chromium ] || command -v chromium >/dev/null 2>&1; then \
		:; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
		echo "note: no apt-get here: install Chromium as /usr/bin/chromium to run the browser test (skipped until then)"; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian's chromium for the browser test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
		echo "installing Debian's chromium for the browser test"; \
		sudo -n apt-get update -qq && sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "note: the browser test needs Chromium: sudo apt-get install chromium (skipped until then)"; \
	fi

test: $(VENV)/.installed browser-deps
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

# Shipped results: one store per spec in studies/, each in $(DATA_DIR)/<name> (under 3 hours
# on 2 CPU cores, see data/README.md). A spec's `kind` picks its study; re-running resumes.
# TOOLKIT_SMOKE=1 runs tiny grids, refused in data/ (they would mix with the shipped runs):
#   TOOLKIT_SMOKE=1 make data DATA_DIR=/tmp/smoke
DATA_DIR ?= data

data: $(VENV)/.installed
	@set -e; specs="$$(ls studies/*.toml)"; total=$$(echo "$$specs" | wc -l); i=0; \
	for spec in $$specs; do \
		i=$$((i + 1)); store=$(DATA_DIR)/$$(basename $$spec .toml); \
		echo "[$$i/$$total] $$spec -> $$store"; \
		$(PY) -m toolkit sweep --spec $$spec --out $$store; \
	done

# JupyterLab on notebooks/; as root (a container) it needs --allow-root. LAB_ARGS go on
# its command line, e.g. make lab LAB_ARGS="--port 9999 --no-browser".
LAB_ARGS ?=

lab: $(VENV)/.lab-installed
	$(VENV)/bin/jupyter lab notebooks/ $$([ "$$(id -u)" = 0 ] && echo --allow-root) $(LAB_ARGS)

clean:
	rm -rf $(VENV)
