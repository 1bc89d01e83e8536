# livetrain: `make demo` sets up and runs the main job; `make test` sets up and runs the tests.
# Setup is repeatable: a second run checks each step and changes nothing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup demo test server clean

demo: setup
	$(PY) launch.py demo

test: setup
	$(PY) -m pytest

server: setup
	$(PY) launch.py server

setup: $(VENV)/.installed
	@$(PY) -m dashboard.assets --cache-dir .cache/npm
	@$(PY) -m trainers.data

# Reinstall only when the declared requirements or pins change.
$(VENV)/.installed: setup.cfg constraints.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing livetrain and its pinned requirements into $(VENV) (first time: a few minutes)"
	@$(PY) -m pip install -q -e '.[test]' > $(VENV)/install.log 2>&1 \
		|| { grep -v "^WARNING: Location" $(VENV)/install.log | tail -20; \
		     echo "Error: pip install failed (full log in $(VENV)/install.log)" >&2; exit 1; }
	@touch $@

clean:
	rm -rf $(VENV) .cache *.egg-info
