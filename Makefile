# The README's two commands are `make demo` and `make test`; both set up first.
# Everything the project needs on a fresh Debian machine with Python 3.11 is
# installed here: the virtualenv, torch/torchaudio (versions that resolve from
# this workplace's local wheels), the package with its dev, hf and docs extras, and, when
# running as root, the Debian packages flite, espeak-ng, festival with three voices, alsa-utils (its
# voice prompts are part of the real-speech development set), fortunes and chromium (the report's
# and the docs site's browser tests). data_prep/real_dev_set.py also reads tuxpaint-stamps-default
# and klettres-data, which only it needs: install them by hand to build that set.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH  := torch==2.14.1 torchaudio==2.11.0
DEBS   := flite espeak-ng festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts alsa-utils fortunes fortunes-min chromium
OUT    ?= out/demo

.PHONY: setup system-packages demo lint test bench docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory system-packages
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[dev,hf,docs]'
	touch $(STAMP)

# Debian packages: only as root and only the missing ones.
system-packages:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	  echo "apt-get install:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else echo "not root: skipping apt-get install of$$missing (flite-based tests will be skipped)"; fi

demo: setup
	$(BIN)/asr-introspect demo --out $(OUT)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# two workers, one per core; a file's tests stay on one worker (module fixtures are built once)
test: lint
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

bench: setup
	$(BIN)/python benchmarks/run_all.py

# the documentation site into site/ (warnings are errors; the tutorials execute on the shipped model)
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) out site .pytest_cache
