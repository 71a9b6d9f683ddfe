# Sieve: `make demo` and `make test` work on a fresh clone (they create .venv when missing).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,torch]'
	touch $(STAMP)

demo: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH bash examples/demo.sh

test: $(STAMP)
	$(BIN)/python -m pytest

# results go to benchmarks/out/ (untracked); `make bench OUT=benchmarks/results` publishes them
bench: $(STAMP)
	SIEVE_BENCH_OUT=$(OUT) $(BIN)/python -m benchmarks.run_all

clean:
	rm -rf $(VENV) build *.egg-info demo-out
