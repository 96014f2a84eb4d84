# The two commands of README: `make run` (the main job) and `make test` (the test suite).
# Each creates .venv and installs what is needed first.
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.gdscope-installed

.PHONY: run test lint clean

$(STAMP): pyproject.toml scripts/bootstrap.sh
	bash scripts/bootstrap.sh $(VENV)
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/gdscope run --workers 2

test: $(STAMP)
	bash scripts/install_browser.sh
	$(BIN)/python -m pytest -q
	$(BIN)/python -m pytest -q -m ray
	$(BIN)/ruff check
	$(BIN)/ruff format --check
	$(BIN)/pyright
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
