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

# A second venv for what toykit must never depend on: TransformerLens, SAELens and
# transformers (pinned to the versions the interop tier was written against), with toykit
# installed editable and torch kept at TORCH_SPEC (a constraint, checked afterwards). About
# 2 GB; four minutes to build with an empty pip cache.
LENS_VENV := .venv-lens
LENS_PY := $(LENS_VENV)/bin/python
LENS_STAMP := $(LENS_VENV)/.lens-installed
LENS_PACKAGES ?= transformer-lens==3.9.0 sae-lens==6.54.12 transformers==5.25.0

.PHONY: lab test quick typecheck unit notebooks interop sync book bench bench-lens lint clean-venv

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

# Unit tests (including the book build), nbval of every solution notebook, the sync check,
# then the interop tier against TransformerLens, SAELens and transformers in their own venv.
test: $(STAMP) $(LENS_STAMP)
	$(VENV)/bin/toykit chapters check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PYTEST) tests solutions $(NBVAL_ARGS); rc=$$?; \
		if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure"; fi; exit $$rc
	$(MAKE) --no-print-directory interop

unit: $(STAMP)
	$(PYTEST) tests

# The fast tier: library tests and doctests, without Jupyter kernels, notebooks, the book or
# the benchmark runner (tests marked `slow`).
quick: $(STAMP)
	@start=$$(date +%s); \
	$(PYTEST) tests -q -m "not slow"; rc=$$?; \
	echo "quick tier ran in $$(( $$(date +%s) - start )) s"; exit $$rc

notebooks: $(STAMP)
	$(PYTEST) solutions $(NBVAL_ARGS)

# Speed and memory figures: benchmarks/results.{json,md} and book/benchmarks.md (about 20 min on 2 cores).
bench: $(STAMP)
	$(PY) -m benchmarks.run $(BENCH_ARGS)

$(LENS_STAMP): pyproject.toml
	@start=$$(date +%s); \
	test -x $(LENS_PY) || $(PYTHON) -m venv $(LENS_VENV) || exit 1; \
	$(LENS_PY) -m pip install --quiet --upgrade pip || exit 1; \
	$(LENS_PY) -c "import torch" 2>/dev/null || $(LENS_PY) -m pip install --quiet $(TORCH_SPEC) \
		$(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) || exit 1; \
	echo "$(TORCH_SPEC)" > $(LENS_VENV)/constraints.txt; \
	$(LENS_PY) -m pip install --quiet -c $(LENS_VENV)/constraints.txt -e . $(LENS_PACKAGES) pytest || exit 1; \
	$(LENS_PY) -c "import torch, sys; want = '$(TORCH_SPEC)'.partition('==')[2]; \
		sys.exit(0 if not want or torch.__version__.split('+')[0] == want else \
		f'pip replaced torch: {torch.__version__}, wanted {want}')" || exit 1; \
	echo "interop venv $(LENS_VENV) built in $$(( $$(date +%s) - start )) s"
	touch $(LENS_STAMP)

# The interop tier (tests/interop/): every checkpoint and SAE architecture against the real libraries.
interop: $(LENS_STAMP)
	@start=$$(date +%s); \
	$(LENS_PY) -m pytest tests/interop -q; rc=$$?; \
	echo "interop tier ran in $$(( $$(date +%s) - start )) s"; \
	if [ $$rc -eq 5 ]; then echo "the interop tier collected no tests: that is a failure"; fi; exit $$rc

# The transformer and SAE benchmarks again next to TransformerLens and SAELens, in the interop
# venv (never toykit dependencies): benchmarks/with-lens/, and a section of the book page.
bench-lens: $(STAMP) $(LENS_STAMP)
	$(LENS_PY) -m benchmarks.run --only transformer sae --out benchmarks/with-lens
	$(PY) -m benchmarks.run --render-book

sync: $(STAMP)
	$(VENV)/bin/toykit chapters build

book: $(STAMP)
	$(VENV)/bin/toykit book build

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

typecheck: $(STAMP)
	$(VENV)/bin/mypy

clean-venv:
	rm -rf $(VENV) $(LENS_VENV)
