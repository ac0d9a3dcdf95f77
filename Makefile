# milur-bridge: `make run` starts the demo, `make test` runs lint and the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench fuzz clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/milur-bridge run $(MAPPING)

lint: $(STAMP)
	$(BIN)/ruff check bridge tests bench fuzz
	$(BIN)/mypy

test: $(STAMP) lint
	bash tests/setup_system.sh
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench.run_all $(BENCH_ARGS)

.PHONY: soak
soak: $(STAMP)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

# bounded fuzzing of the hostile-input surfaces (atheris if installed, else Hypothesis): FUZZ_SECONDS
# per target; crashes land in var/fuzz/crashes/ (keep them in tests/security/fuzz_regressions/)
FUZZ_SECONDS ?= 60
fuzz: $(STAMP)
	-$(BIN)/pip install --quiet 'atheris>=2.3' || echo "atheris not installable here: fuzzing with Hypothesis"
	$(BIN)/python -m fuzz.run --seconds $(FUZZ_SECONDS) $(FUZZ_TARGETS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
