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

.PHONY: install test lint lab data clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install $(TORCH_SPEC)
	$(PIP) install -e '.[dev,ray]'
	$(PIP) install --no-deps mup==1.0.0
	touch $@

install: $(VENV)/.installed

test: $(VENV)/.installed
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

# Shipped results: one store per study in data/, from the specs in studies/ (about
# 15 minutes on 2 CPU cores; TOOLKIT_SMOKE=1 runs tiny grids). Re-running resumes.
STUDIES := width_transfer depth_transfer weight_decay_transfer horizon
data: $(VENV)/.installed
	for study in $(STUDIES); do \
		$(PY) -m toolkit sweep --spec studies/$$study.toml --out data/$$study --quiet || exit 1; \
	done

lab: $(VENV)/.installed
	$(VENV)/bin/jupyter lab notebooks/

clean:
	rm -rf $(VENV)
