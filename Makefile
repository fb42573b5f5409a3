# One venv, made on first use. On Linux, pip would pull a multi-GB CUDA build for a plain
# `torch`, so we install the CPU build first; override TORCH_SPEC (and TORCH_INDEX_URL,
# e.g. https://download.pytorch.org/whl/cpu) for other machines.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.toykit-installed
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX_URL ?=
PYTEST := $(PY) -m pytest
NBVAL_ARGS := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout 300

.PHONY: lab test unit notebooks sync book bench bench-lens lint clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet $(TORCH_SPEC) \
		$(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (toykit)" >/dev/null
	touch $(STAMP)

# Jupyter refuses to run as root unless told; containers often run as root.
lab: $(STAMP)
	$(VENV)/bin/jupyter lab chapters/ $(if $(filter 0,$(shell id -u)),--allow-root)

# Unit tests (including the book build), nbval of every solution notebook, the sync check.
test: $(STAMP)
	$(VENV)/bin/toykit chapters check
	$(VENV)/bin/ruff check .
	$(PYTEST) tests solutions $(NBVAL_ARGS); rc=$$?; \
		if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure"; fi; exit $$rc

unit: $(STAMP)
	$(PYTEST) tests

notebooks: $(STAMP)
	$(PYTEST) solutions $(NBVAL_ARGS)

# Speed and memory figures: benchmarks/results.{json,md} and book/benchmarks.md (about 20 min on 2 cores).
bench: $(STAMP)
	$(PY) -m benchmarks.run $(BENCH_ARGS)

# The transformer and SAE benchmarks again next to TransformerLens and SAELens, in a venv of
# their own (never toykit dependencies): benchmarks/with-lens/, and a section of the book page.
LENS_VENV := .venv-lens
bench-lens: $(STAMP)
	test -x $(LENS_VENV)/bin/python || $(PYTHON) -m venv $(LENS_VENV)
	$(LENS_VENV)/bin/python -c "import torch" 2>/dev/null || $(LENS_VENV)/bin/pip install --quiet $(TORCH_SPEC) \
		$(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(LENS_VENV)/bin/pip install --quiet -e . transformer-lens sae-lens
	$(LENS_VENV)/bin/python -m benchmarks.run --only transformer sae --out benchmarks/with-lens
	$(PY) -m benchmarks.run --render-book

sync: $(STAMP)
	$(VENV)/bin/toykit chapters build

book: $(STAMP)
	$(VENV)/bin/toykit book build

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean-venv:
	rm -rf $(VENV)
