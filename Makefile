# hashbench — every target creates the environment on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The console script, not `python -m`: that would put the working directory first on sys.path,
# where the folder datasets/ would shadow Hugging Face `datasets`.
HASHBENCH := $(VENV)/bin/hashbench
# torch/torchvision releases the environment is built with (admitted by pyproject's ranges).
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

METHOD ?= all
DATASET ?= digits
PROTOCOL ?=
BITS ?= 16,32,48
SEEDS ?= 0
EPOCHS ?=
DEVICE ?= auto
OUT ?= results/runs
RUNS ?= results/runs
REPORT ?= results/report
REPORT_ARGS ?=
REGRESS_ARGS ?=
CALIBRATE_SEEDS ?= 0,1,2,3,4
SWEEP ?= sweeps/digits-4cell.yaml
EXECUTOR ?= local
SWEEP_ARGS ?=

.PHONY: setup bench test lint mutation list report report-readme docs-results docs-check docs docs-serve regress regress-accept regress-calibrate sweep sweep-status clean-venv

$(STAMP): pyproject.toml
	@echo "hashbench: creating $(VENV) (first use; torch is large, this takes a few minutes)"
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q $(TORCH_SPEC)
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)  ## create the virtual environment and install hashbench

bench: $(STAMP)  ## train + evaluate METHOD (default: all) on DATASET (default: digits) and print the table
	$(HASHBENCH) run --method $(METHOD) --dataset $(DATASET) $(if $(PROTOCOL),--protocol $(PROTOCOL)) \
		--bits $(BITS) --seeds $(SEEDS) $(if $(EPOCHS),--epochs $(EPOCHS)) --device $(DEVICE) --out $(OUT)

test: $(STAMP)  ## the test suite (no GPU, no internet)
	$(VENV)/bin/pytest

lint: $(STAMP)  ## ruff check (rules in pyproject.toml: errors, stale noqa markers, lines over 140 characters)
	$(VENV)/bin/ruff check .

MUTATION_GROUPS ?= evaluate,metrics,search,min_cost_flow,metric_losses,drq_losses,method_losses
MUTATION_WORKERS ?= 1
mutation: $(STAMP)  ## mutation testing (mutmut) of MUTATION_GROUPS; scores in results/mutation/latest/ (not in CI: hours on 2 cores)
	$(VENV)/bin/pip install -q -e '.[test,mutation]'
	$(PY) scripts/dev/mutation.py --groups $(MUTATION_GROUPS) --workers $(MUTATION_WORKERS)

list: $(STAMP)
	$(HASHBENCH) list

report: $(STAMP)  ## tables and figures from every run under RUNS (REPORT_ARGS: --reference, --compare A B)
	$(HASHBENCH) report $(RUNS) --out $(REPORT) $(REPORT_ARGS)

# The README's CIFAR-10 report: every CIFAR-10 run committed, the sparse-code ones included.
README_RUNS := results/cifar10/runs $(sort $(wildcard results/sparse/runs/*_cifar10_*))

report-readme: $(STAMP)  ## regenerate the README's CIFAR-10 table and figures from the committed runs
	$(HASHBENCH) report $(README_RUNS) --out results/report/cifar10 --reference --compare drq hashnet

docs-results: $(STAMP)  ## regenerate the docs' results pages, CLI reference and the README's table from the committed runs
	$(PY) -m hashbench.docs_pages write

docs-check: $(STAMP)  ## fail (with a diff) when a generated docs page or the README's table differs from the committed runs
	$(PY) -m hashbench.docs_pages check

DOCS_STAMP := $(VENV)/.docs-installed
$(DOCS_STAMP): $(STAMP)
	$(VENV)/bin/pip install -q -e '.[docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)  ## build the documentation site strictly (a broken link or anchor fails) into site/
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

docs-serve: $(DOCS_STAMP)  ## serve the documentation site on localhost:8000
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

regress: $(STAMP)  ## run the regression suite and compare with results/baselines/regress.csv (fails when worse)
	$(HASHBENCH) regress run $(REGRESS_ARGS)

regress-accept: $(STAMP)  ## make the last regression run the baseline (records the git revision)
	$(HASHBENCH) regress accept $(REGRESS_ARGS)

regress-calibrate: $(STAMP)  ## run the suite over CALIBRATE_SEEDS and rewrite results/baselines/tolerances.csv
	$(HASHBENCH) regress calibrate --seeds $(CALIBRATE_SEEDS) $(REGRESS_ARGS)

sweep: $(STAMP)  ## run the unfinished cells of SWEEP (a sweep file) on EXECUTOR (local|slurm|ray; SWEEP_ARGS: --jobs 2 ...)
	$(HASHBENCH) sweep run $(SWEEP) --executor $(EXECUTOR) $(SWEEP_ARGS)

sweep-status: $(STAMP)  ## done / running / failed / pending cells of SWEEP, with the tail of each failure's log
	$(HASHBENCH) sweep status $(SWEEP)

clean-venv:
	rm -rf $(VENV)
