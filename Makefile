# One command to see it work, one to test it.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install docs clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip uv
	$(BIN)/uv pip install -q --python $(BIN)/python --compile-bytecode -r requirements.txt
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	# bytecode written once: with PYTHONDONTWRITEBYTECODE set (as on our machines) every
	# process would otherwise recompile pandas, SQLAlchemy, plotly... (~6 s per command)
	$(BIN)/python -m compileall -q billing_jobs dags bench >/dev/null
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/billing-jobs demo

test: $(STAMP)
	# the layers first (pyproject.toml [tool.importlinter]): imports point down only
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q tests

docs: $(STAMP)
	# the entity table of docs/contracts.md, rendered from billing_jobs/core/entities.py
	$(BIN)/python -m billing_jobs.core.entities docs/contracts.md

clean:
	rm -rf $(VENV) reports billing.db
