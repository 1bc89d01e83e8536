# livetrain: `make demo` sets up and runs the main job; `make test` sets up and runs the tests.
# Setup is repeatable: a second run checks each step and changes nothing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK := 1

SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup browser visdom03 demo test test-gpu check stress server clean

# The Visdom 0.3 tests (tests/test_visdom_versions.py) serve the page with visdom 0.3, which needs
# Python >= 3.12, from a venv of its own (the server needs no torch). The Python is found through
# pyenv or on PATH; where there is none, those tests skip and say why.
PY312  ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) \
	$(shell command -v python3.12 python3.13 2> /dev/null))
VENV03 := .venv-visdom03

demo: setup
	$(PY) launch.py demo

# The browser tests need Chromium: installed here, and a missing one fails them rather than skips.
test: setup browser visdom03
	LIVETRAIN_REQUIRE_BROWSER=1 LIVETRAIN_REQUIRE_VISDOM03=$(if $(PY312),1,) $(PY) -m pytest

# The GPU tests (tests/test_cuda.py), on a machine with CUDA: they fail rather than skip without
# one. The results, with the GPU, torch and the commit, go to artifacts/gpu/results.txt (for the
# README). GPU_PY=python3 runs them with a Python that already holds torch and the rest (a lent
# machine that can install nothing), instead of the project's venv.
GPU_PY ?= $(PY)
test-gpu: $(if $(filter $(PY),$(GPU_PY)),setup)
	@mkdir -p artifacts/gpu
	@bash -o pipefail -c '{ echo "# make test-gpu, $$(date -u +%FT%TZ), commit $$(git rev-parse --short HEAD 2>/dev/null || echo ?)"; \
		nvidia-smi -L 2>/dev/null || echo "nvidia-smi: not found"; \
		$(GPU_PY) -c "import torch; print(\"torch\", torch.__version__, \"CUDA\", torch.version.cuda, \"GPUs\", torch.cuda.device_count())"; \
		LIVETRAIN_REQUIRE_GPU=1 $(GPU_PY) -m pytest -v -rs -p no:cacheprovider tests/test_cuda.py tests/test_distributed.py; \
	} 2>&1 | tee artifacts/gpu/results.txt'

# The quick loop: every test not marked slow (about 1.5 min), no browser needed.
check: setup
	$(PY) -m pytest -q -m "not slow"

# The whole suite STRESS times in a row, with one busy process beside it (as a second program on
# a laptop would be); stops at the first failure. Each pass prints pytest's closing line.
STRESS ?= 3
stress: setup browser visdom03
	@python3 -c 'while True: pass' & busy=$$!; trap "kill $$busy" EXIT; \
	for i in $$(seq $(STRESS)); do \
		echo "== stress: pass $$i of $(STRESS), one busy process beside it"; \
		LIVETRAIN_REQUIRE_BROWSER=1 LIVETRAIN_REQUIRE_VISDOM03=$(if $(PY312),1,) \
			$(PY) -m pytest -q -p no:cacheprovider || exit 1; \
	done; echo "== stress: $(STRESS) of $(STRESS) passes passed"

server: setup
	$(PY) launch.py server

setup: $(VENV)/.installed
	@$(PY) -m dashboard.assets --cache-dir .cache/npm
	@$(PY) -m trainers.data

# Debian's headless Chromium, for the browser tests (and for looking at the page from a script),
# with a CJK font, so that screenshots of runs labelled in Chinese show their letters.
browser:
	@{ command -v chromium > /dev/null || command -v chromium-browser > /dev/null; } \
		&& [ -e /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ] || { \
		echo "Installing Debian's chromium and a CJK font for the browser tests (apt-get; a minute or two)"; \
		mkdir -p .cache; \
		{ $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q \
			--no-install-recommends chromium fonts-wqy-zenhei; } > .cache/apt.log 2>&1 \
		|| { tail -5 .cache/apt.log; echo "Error: could not install chromium (log in .cache/apt.log)" >&2; exit 1; }; }

# visdom 0.3 and its page files, in $(VENV03), for the Visdom 0.3 tests (nothing without a PY312).
visdom03: $(if $(PY312),$(VENV03)/.installed)
	@$(if $(PY312),$(VENV03)/bin/python -m dashboard.assets --cache-dir .cache/npm,\
		echo "No Python >= 3.12 found (set PY312=...): the Visdom 0.3 tests will skip")

$(VENV03)/.installed: setup.cfg constraints.txt
	@test -x $(VENV03)/bin/python || $(PY312) -m venv $(VENV03)
	@echo "Installing visdom 0.3 into $(VENV03), for the Visdom 0.3 tests' server"
	@$(VENV03)/bin/python -m pip install -q 'visdom>=0.3,<0.4' 'tornado>=6.3,<6.6' requests \
		> $(VENV03)/install.log 2>&1 \
		|| { grep -v "^WARNING: Location" $(VENV03)/install.log | tail -20; \
		     echo "Error: pip install failed (full log in $(VENV03)/install.log)" >&2; exit 1; }
	@touch $@

# Reinstall only when the declared requirements or pins change.
$(VENV)/.installed: setup.cfg constraints.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing livetrain and its pinned requirements into $(VENV) (first time: a few minutes)"
	@$(PY) -m pip install -q -e '.[test,ray]' > $(VENV)/install.log 2>&1 \
		|| { grep -v "^WARNING: Location" $(VENV)/install.log | tail -20; \
		     echo "Error: pip install failed (full log in $(VENV)/install.log)" >&2; exit 1; }
	@touch $@

clean:
	rm -rf $(VENV) $(VENV03) .cache *.egg-info
