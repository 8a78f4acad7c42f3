# cementguard: the two commands a bench engineer needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYSTEM_PACKAGES := mosquitto mosquitto-clients socat
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: test demo install lint typecheck pytest hil venv system-deps bench clean

venv: $(STAMP)

# Re-install whenever the project metadata changes, so a pulled dependency change is never missed.
$(STAMP): pyproject.toml
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# Mosquitto and socat come from the system package manager, only when missing.
system-deps:
	@missing=""; \
	command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	command -v mosquitto_pub >/dev/null 2>&1 || missing="$$missing mosquitto-clients"; \
	command -v socat >/dev/null 2>&1 || missing="$$missing socat"; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: venv
	$(VENV)/bin/mypy

pytest: venv system-deps
	$(VENV)/bin/pytest

# The HIL corpus (hil/scenarios/*.toml): every hazard through host client and simulator; JUnit XML and
# an HTML report with a plot per scenario under build/hil (docs/hil.md). Exits non-zero if one fails.
hil: venv system-deps
	$(VENV)/bin/cementguard hil run --junit build/hil/junit.xml --report-dir build/hil/report

test: venv system-deps lint typecheck pytest hil

demo: venv
	@echo "the cementguard command is $(CURDIR)/$(VENV)/bin/cementguard$$(c=$$(command -v cementguard) \
		&& echo "; on your PATH: $$c" || echo "; not on your PATH: 'make install' puts it there")"
	$(VENV)/bin/cementguard demo

# The `cementguard` command on this user's PATH: pipx if installed, else uv, else a private venv in
# ~/.local/share/cementguard with the command linked into ~/.local/bin (scripts/install.sh; README).
# INSTALL_ARGS, e.g. "--method venv --prefix /opt/cg", are passed to the script.
install:
	PYTHON=$(PYTHON) scripts/install.sh $(INSTALL_ARGS)

bench: venv
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
