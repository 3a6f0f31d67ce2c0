# The two set-up commands of the README. Both create .venv if missing, install lsmap with the
# pinned versions of constraints.txt, and are idempotent: a second run reuses the environment.
PYTHON ?= python3
VENV   ?= .venv
CORES  ?= 2
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.lsmap-installed

.PHONY: demo test lint bench clean-results help

help:
	@echo "make demo   - install into $(VENV) and run the offline demo (snakemake map_demo report_demo)"
	@echo "make test   - install into $(VENV) and run the test suite"
	@echo "make lint   - snakemake --lint on the workflow"
	@echo "make bench  - run the benchmarks in benchmarks/ (prints their figures)"

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "lsmap needs Python >= 3.11, found " + sys.version.split()[0])'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[test,slurm]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/snakemake --profile profiles/local --cores $(CORES) map_demo report_demo
	@echo "demo done: results/demo/report.html (IoU against the demo's ground truth: results/demo/demo_scene/truth_iou.json)"

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/snakemake --lint

bench: $(STAMP)
	@for script in benchmarks/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean-results:
	rm -rf results logs .snakemake
