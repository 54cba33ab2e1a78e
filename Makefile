# Two commands on a fresh machine: `make test` and `make demo`. Both create .venv on first use.
PYTHON ?= python3
# pytest-xdist processes for `make test` (0: one process), each pinned to its own share of the cores and
# given its own numba cache (tests/conftest.py); work-stealing evens out the long paper-model tests.
TEST_WORKERS ?= 2
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: test demo lint bench clean-venv

# requirements-onnx.txt (the ONNX exporter) goes in without its packages' own pins: see the file.
$(STAMP): pyproject.toml requirements-onnx.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-onnx.txt
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal

demo: $(STAMP)
	$(BIN)/python experiments/demo.py

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/train_step.py --compare-seed

clean-venv:
	rm -rf $(VENV)
