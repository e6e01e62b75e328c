# tuneflow: developer and CI entry points.
#
#   make venv            .venv with a Python >= 3.12 (infra/find-python.sh), `-e .[test]` pinned by constraints.txt
#   make test            venv + services (PostgreSQL, moto S3) + pytest; services stopped afterwards
#   make demo            venv + sample data + `tuneflow run` on it
#   make services-up     start PostgreSQL :55432 and moto S3 :55000 (state in .tuneflow/services/)
#   make services-down   stop them
#   make bench           benchmarks/run_all.py
#   make clean           stop services, remove runtime state and caches (keeps .venv)
#   make distclean       clean + remove .venv
#
# Variables: PYTHON=/path/to/python3.12 (interpreter for a new venv), PYTEST_ARGS="-k foo -x",
# EXTRAS=test (pip extras installed into the venv, e.g. EXTRAS=test,bench).

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

comma       := ,
VENV        := .venv
VENV_PY     := $(VENV)/bin/python
EXTRAS      ?= test
# Redone only when the dependency inputs change (or the extras asked for do).
VENV_STAMP  := $(VENV)/.tuneflow-installed-$(subst $(comma),-,$(EXTRAS))
PYTEST_ARGS ?=

SAMPLE_CSV  := data/generated/churn.csv

.PHONY: help venv demo test services-up services-down services-status bench clean distclean

help:
	@sed -n 's/^#   make /  make /p' $(MAKEFILE_LIST)

venv: $(VENV_STAMP)

$(VENV_STAMP): pyproject.toml constraints.txt
	@if [[ -x "$(VENV_PY)" ]] && "$(VENV_PY)" -c 'import sys; raise SystemExit(sys.version_info[:2] < (3, 12))' 2>/dev/null; then \
	    echo "[venv] reusing $(VENV) ($$("$(VENV_PY)" -V))"; \
	else \
	    py=$$(bash infra/find-python.sh); \
	    echo "[venv] creating $(VENV) with $$py ($$("$$py" -V))"; \
	    rm -rf "$(VENV)"; \
	    "$$py" -m venv "$(VENV)"; \
	    "$(VENV_PY)" -m pip install --quiet --upgrade pip; \
	fi
	@echo "[venv] pip install -c constraints.txt -e .[$(EXTRAS)]"
	"$(VENV_PY)" -m pip install --progress-bar off -c constraints.txt -e ".[$(EXTRAS)]"
	@rm -f $(VENV)/.tuneflow-installed-*
	@touch "$@"

demo: venv
	@if [[ ! -f "$(SAMPLE_CSV)" ]]; then \
	    echo "[demo] generating $(SAMPLE_CSV)"; \
	    "$(VENV_PY)" data/make_sample.py --out "$(SAMPLE_CSV)"; \
	fi
	$(VENV)/bin/tuneflow run --data $(SAMPLE_CSV) --target churned --row-key customer_id \
	    --expectations data/expectations.yaml --n-trials 12 --parallelism 2

# Services are stopped afterwards (also on failure or Ctrl-C) unless they were already up before
# `make test` started (e.g. from `make services-up`): then they are left as they were.
# make itself exits 2 on any failed recipe, so pytest's own exit code is also written to
# $(PYTEST_RC_FILE) (.ci/run exits with it).
PYTEST_RC_FILE := .tuneflow/pytest-exit-code
test: venv
	@rm -f $(PYTEST_RC_FILE); \
	if bash infra/services.sh status >/dev/null 2>&1; then \
	    echo "[test] services already up: leaving them running afterwards"; \
	else \
	    trap 'echo "[test] stopping services"; bash infra/services.sh down' EXIT; \
	    bash infra/services.sh up; \
	fi; \
	eval "$$(bash infra/services.sh env)"; \
	echo "[test] $(VENV)/bin/pytest $(PYTEST_ARGS)"; \
	rc=0; "$(VENV)/bin/pytest" $(PYTEST_ARGS) || rc=$$?; \
	echo "[test] pytest exit code $$rc"; \
	mkdir -p .tuneflow && echo $$rc > $(PYTEST_RC_FILE); \
	exit $$rc

services-up: venv
	bash infra/services.sh up
	@echo "# for your shell:  eval \"\$$(infra/services.sh env)\""

services-down:
	bash infra/services.sh down

services-status:
	bash infra/services.sh status

bench: venv
	"$(VENV_PY)" benchmarks/run_all.py

clean:
	-bash infra/prefect-worker.sh down
	-bash infra/prefect-server.sh down
	-bash infra/services.sh purge
	rm -rf .tuneflow .pytest_cache build mlruns mlartifacts dask-worker-space
	rm -rf *.egg-info
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -print0 | xargs -0 rm -rf

distclean: clean
	rm -rf $(VENV)
