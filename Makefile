# The two commands a new user runs: `make train` (set up, then the default experiment) and `make test`.
# Both create and reuse the virtual environment .venv (delete it, or `make clean-venv`, to rebuild).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: setup train test lint ui clean-venv espeak

setup: $(STAMP)

# torch first (the CUDA build runs on CPUs too), then the package with its test extras.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch>=2.4" torchvision
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps "hydra-optuna-sweeper==1.3.0"  # declares optuna<3; runs on 4.9 (README)
	touch $(STAMP)

# espeak-ng (Debian) synthesises the offline speech data; installed here when we are root, else explained.
espeak:
	@command -v espeak-ng >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq espeak-ng >/dev/null; \
	  else echo "espeak-ng is missing (needed for the audio data): sudo apt-get install espeak-ng"; fi; }

train: setup
	$(PY) src/train.py $(ARGS)

test: setup espeak lint
	$(PY) -m pytest -q $(ARGS)

lint: setup
	$(VENV)/bin/ruff check src tests analysis bench sweeps

ui: setup
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --port 5000

clean-venv:
	rm -rf $(VENV)
