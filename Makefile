# Two commands do all the set-up on a fresh machine (see README.md):
#   make demo   the gateway's demo on embedded defaults, no external service
#   make test   every test, installing what the tests need
VENV    := .venv
PYTHON  := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test test-quick lint bench system-deps venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@command -v python3 >/dev/null || { echo "python3 (>= 3.11) is needed"; exit 1; }
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	@echo "Installing the gateway and what its tests need into $(VENV): about a minute the first time."
	$(PYTHON) -m pip install --progress-bar on -e '.[test,bench]'
	touch $(STAMP)
	@echo "$(VENV) is ready."

demo: venv
	$(VENV)/bin/gateway demo

system-deps:
	scripts/install-test-deps.sh

# CI's hypothesis profile: many more examples per property test (tests/conftest.py). Two
# workers (pytest-xdist): the tests mostly wait on real servers, so two at a time on a 2-core
# machine take 13.5 minutes instead of 21; each worker's gateways get a web port of their own.
# Tests marked `alone` (a long no-loss run through six reloads) then run by themselves.
test: venv system-deps lint
	HYPOTHESIS_PROFILE=ci $(PYTHON) -m pytest -n 2 -m "not alone" $(PYTEST_ARGS)
	HYPOTHESIS_PROFILE=ci $(PYTHON) -m pytest -m alone $(PYTEST_ARGS) || [ $$? -eq 5 ]  # 5: none selected

# The fast loop while developing: no slow fault-injection tests, no lint.
test-quick: venv
	HYPOTHESIS_PROFILE=quick $(PYTHON) -m pytest -m "not slow" -x $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check gateway connectors tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

bench: venv system-deps
	$(PYTHON) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
