# introscope — set-up, demo, tests, benchmarks. Every target creates .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

DNIKIT_VENV := .venv-dnikit
SYMPHONY_VENV := .venv-symphony

.PHONY: help demo test lint format bench clean venv dnikit-venv symphony-venv browser docs dnikit-suite

# Where pip finds torch's CPU build: on the build machines a wheel on disk (PIP_FIND_LINKS);
# elsewhere PyTorch's CPU index (plain PyPI would give the CUDA build, several GB).
TORCH_INDEX ?= $(if $(PIP_FIND_LINKS),,--index-url https://download.pytorch.org/whl/cpu)

help:
	@echo "make demo    create .venv (first time) and write out/report.html for the bundled digits CNN"
	@echo "make test    lint, the whole test suite, DNIKit's own suite and the docs (creates the venvs)"
	@echo "make bench   the benchmarks against DNIKit 2.0 (benchmarks/README.md)"
	@echo "make docs    the documentation site into site/ (executes the example notebooks)"
	@echo "make lint | format | dnikit-suite | venv | dnikit-venv | symphony-venv | browser | clean"
	@echo "PYTHON=python3.11 picks the interpreter (3.10 or newer); TORCH_INDEX=... where torch comes from"

venv: $(STAMP)

# torch is pinned to the CPU build 2.13.0 so pip never pulls a multi-gigabyte CUDA build.
# The three venvs take about 4.6 GB (.venv 2.7, .venv-dnikit 0.9, .venv-symphony 1.0); pip's own
# "No space left on device" comes late and names no size, so say it first.
$(STAMP): pyproject.toml constraints-dev.txt
	@$(PYTHON) -c "import shutil; free = shutil.disk_usage('.').free / 1e9; \
	  free < 6 and print(f'warning: {free:.1f} GB free on this disk; the set-up (.venv, .venv-dnikit, ' \
	  f'.venv-symphony) needs about 5 GB. Free some space if pip fails with No space left on device')"
	@$(PYTHON) -c "import sys; sys.exit(0 if sys.version_info >= (3, 10) else \
	  f'introscope needs Python 3.10 or newer; {sys.executable} is {sys.version.split()[0]}: run make PYTHON=python3.11 (or another)')"
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_INDEX) "torch==2.13.0"
	$(PIP) install -q -c constraints-dev.txt -e ".[all,docs,dev]"
	touch $(STAMP)

# DNIKit 2.0 in its own venv: the reference for differential tests and benchmarks.
# Optional: when it cannot be installed the differential tests skip and say so.
dnikit-venv: $(DNIKIT_VENV)/.installed

$(DNIKIT_VENV)/.installed:
	@( $(PYTHON) -m venv $(DNIKIT_VENV) && $(DNIKIT_VENV)/bin/python -m pip install -q "dnikit==2.0.0" && touch $@ ) \
	  || echo "warning: could not install dnikit==2.0.0; differential tests will be skipped"
	@# OpenCV (dnikit[image]) for the image-processor comparisons; those tests skip without it.
	@$(DNIKIT_VENV)/bin/python -m pip install -q opencv-python-headless 2>/dev/null \
	  || echo "warning: no OpenCV in $(DNIKIT_VENV); image differential tests will be skipped"
	@# pandas + matplotlib (dnikit[notebook]) for comparing IUA.show / PFA.show tables.
	@$(DNIKIT_VENV)/bin/python -m pip install -q pandas matplotlib 2>/dev/null \
	  || echo "warning: no pandas in $(DNIKIT_VENV); show() differential tests will be skipped"
	@# umap-learn (dnikit[dimreduction]) for the UMAP batch-size comparison; that test skips without it.
	@$(DNIKIT_VENV)/bin/python -m pip install -q umap-learn 2>/dev/null \
	  || echo "warning: no umap-learn in $(DNIKIT_VENV); the UMAP differential test will be skipped"

# Apple's Symphony UI for the DatasetReport browser test, in its own venv: symphony-ui 1.0.1 needs
# jupyterlab 3 (never in .venv) and pandas<3 (its Arrow reader cannot read the large_string
# columns pandas 3 writes). Optional: when it cannot be built the Symphony test skips and says so.
symphony-venv: $(SYMPHONY_VENV)/.installed

$(SYMPHONY_VENV)/.installed:
	@( $(PYTHON) -m venv $(SYMPHONY_VENV) \
	  && $(SYMPHONY_VENV)/bin/python -m pip install -q "symphony-ui==1.0.1" "symphony-summary==1.0.2" \
	     "symphony-list==1.0.2" "pandas<3" pyarrow \
	  && $(SYMPHONY_VENV)/bin/python -m pip install -q -e . && touch $@ ) \
	  || echo "warning: could not build $(SYMPHONY_VENV) (symphony-ui==1.0.1); the Symphony test will be skipped"

# Headless Chromium renders the HTML views in tests (skipped when absent). Idempotent; a failed
# install only warns.
browser:
	@test -x /usr/bin/chromium || ( apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null ) \
	  || echo "warning: could not install chromium; browser rendering tests will be skipped"

demo: $(STAMP)
	$(PY) -m introscope demo

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks
	$(PY) -m mypy

format: $(STAMP)
	$(PY) -m ruff format src tests benchmarks
	$(PY) -m ruff check --fix src tests benchmarks

test: lint dnikit-venv symphony-venv browser
	$(PY) -m pytest -q
	$(PY) tests/dnikit_suite/run.py --skip-if-unavailable
	$(MAKE) --no-print-directory docs

# DNIKit 2.0's own test suite (from its sdist) through the dnikit -> introscope import alias,
# strict about its exception list (tests/dnikit_suite/exceptions.txt).
dnikit-suite: $(STAMP)
	$(PY) tests/dnikit_suite/run.py

# The documentation site, offline, into site/: the example notebooks are executed (tests/
# test_notebooks.py leaves executed copies, so make test runs each once), then a strict build
# (a broken link or reference, or a docstring griffe cannot read, fails it; not --quiet, which
# hides warnings from --strict: mkdocs/mkdocs#4126).
docs: $(STAMP)
	$(PY) docs/execute_notebooks.py
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict
	@echo "docs: site/index.html"

bench: $(STAMP) dnikit-venv
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) $(DNIKIT_VENV) $(SYMPHONY_VENV) build dist site docs/examples src/*.egg-info \
	  .pytest_cache .ruff_cache .mypy_cache out benchmarks/results .dnikit-sdist
