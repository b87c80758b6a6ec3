# Two commands for a fresh machine: `make run` and `make test`. Both create .venv when it is missing
# and install the project from this repo's own files.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test bench install clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,text]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/genmo-live run --ws 127.0.0.1:8765 --viewer 127.0.0.1:8080 $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# The quality benchmark against the mediapipe-ik baseline: bench/results/ and the README's results.
bench: $(STAMP)
	$(VENV)/bin/genmo-live bench quality --out bench/results --readme README.md $(ARGS)

clean-venv:
	rm -rf $(VENV)
