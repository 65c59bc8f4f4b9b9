# Two commands a new user needs: `make demo` and `make test`. Each creates .venv once and reinstalls
# only when pyproject.toml changes (the stamp file below).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: demo test bench bench-quick lint typecheck fmt clean system-deps

$(STAMP): pyproject.toml
	@bash .ci/system-deps --if-root
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[gate,central,face,demo,dev]'
	@# face-recognition declares the source distribution "dlib"; dlib-bin (installed above) provides it.
	$(BIN)/python -m pip install -q --no-deps 'face-recognition==1.3.0'
	@touch $@

system-deps:
	bash .ci/system-deps

demo: $(STAMP)
	$(BIN)/park-demo $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

bench: $(STAMP)
	$(BIN)/python -m tests.bench $(ARGS)

bench-quick: $(STAMP)
	$(BIN)/python -m tests.bench --quick $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

# mypy over the packages named by `files` in pyproject.toml's [tool.mypy] (strict where it says so).
typecheck: $(STAMP)
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache
