# Two commands a new user needs: `make demo` and `make test`. Each creates .venv once and reinstalls
# only when pyproject.toml changes (the stamp file below).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: demo test bench bench-quick lint typecheck fmt clean system-deps messages

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

# The suite runs in TEST_JOBS processes, one test file to a process (`--dist loadfile`: a file's
# servers and fixtures stay in one process). Most tests wait on brokers, databases and subprocesses, so
# 4 processes on 2 cores take the suite from ~34 min to ~13; TEST_JOBS=0 runs it in this process.
# The fault tests (tests/reliability, marker `faults`: kills, outages, restarts, each timing a
# recovery) run afterwards, alone on the machine (GATES_TEST_PHASE, tests/conftest.py); exit code 5 is
# pytest's "nothing selected" (ARGS naming other tests only).
TEST_JOBS ?= 4

test: $(STAMP)
	GATES_TEST_PHASE=parallel $(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadfile $(ARGS)
	GATES_TEST_PHASE=faults $(BIN)/python -m pytest $(ARGS) || test $$? -eq 5

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

# The one catalogue (protocol/locale, see protocol/i18n.py): extract every marked text into the .pot,
# merge it into each language's .po (new texts come in untranslated: translate them, the catalogue
# tests fail until then), and compile the .mo files that are committed with them.
LOCALEDIR := protocol/locale
LOCALES := zh_Hans en
BABEL_EXTRACT := extract -F babel.cfg -k lazy_gettext -k _l -k lazy_ngettext:1,2 -k lazy_pgettext:1c,2 -k _p:1c,2 --add-comments=TRANSLATORS: --sort-by-file --project=scenic-gates --version=0.1.0 --copyright-holder="scenic-gates contributors"

messages: $(STAMP)
	@mkdir -p $(LOCALEDIR)
	$(BIN)/pybabel $(BABEL_EXTRACT) -o $(LOCALEDIR)/messages.pot .
	@for l in $(LOCALES); do test -f $(LOCALEDIR)/$$l/LC_MESSAGES/messages.po || \
	  $(BIN)/pybabel init -i $(LOCALEDIR)/messages.pot -d $(LOCALEDIR) -D messages -l $$l; done
	$(BIN)/pybabel update -i $(LOCALEDIR)/messages.pot -d $(LOCALEDIR) -D messages --no-fuzzy-matching --ignore-obsolete
	$(BIN)/pybabel compile -d $(LOCALEDIR) -D messages --statistics

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache
