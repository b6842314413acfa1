# evonas: two commands set everything up on a fresh machine.
#   make run    set up (if needed), then run the default search (cells, NSGA-II, Fashion-MNIST)
#   make test   set up (if needed), then run the test suite (make test-fast: the quick part)
#
# PyTorch: where `nvidia-smi` finds a GPU we ask for any torch >= 2.4 (pip picks a CUDA
# build, and an existing CUDA torch in the venv is kept); elsewhere the CPU build
# torch==2.13.0. Override with TORCH_SPEC, and add TORCH_INDEX to pick a wheel index, e.g.
#   make setup TORCH_SPEC='torch==2.13.0' TORCH_INDEX=https://download.pytorch.org/whl/cpu

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HAS_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)
TORCH_SPEC ?= $(if $(HAS_GPU),torch>=2.4,torch==2.13.0)
TORCH_INDEX ?=
STAMP := $(VENV)/.evonas-setup
DEV_STAMP := $(VENV)/.evonas-setup-dev
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
ARGS ?=
PIP := $(BIN)/pip install --disable-pip-version-check -q

.PHONY: setup setup-dev run test test-fast lint bench gpu-check data clean-venv

# `make run` needs the runtime dependencies only; tests also need pytest, ray, onnx, ...
setup: $(STAMP)
setup-dev: $(DEV_STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c "import torch, sys; v = tuple(int(x) for x in torch.__version__.split('+')[0].split('.')[:2]); sys.exit(v < (2, 4))" 2>/dev/null \
		&& echo "torch already installed: keeping it" \
		|| $(PIP) "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PIP) -e .
	@$(MAKE) --no-print-directory data
	@touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(PIP) -e '.[dev]'
	@touch $(DEV_STAMP)

# Fashion-MNIST from Debian's package where apt exists; elsewhere evonas looks in --data-dir,
# $$EVONAS_DATA, then downloads with checksums.
data:
	@if [ ! -f $(FMNIST) ] && command -v apt-get >/dev/null 2>&1; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist \
		|| echo "could not install dataset-fashion-mnist; evonas will look elsewhere (see README)"; \
	fi

run: setup
	$(BIN)/evonas run $(ARGS)

test: setup-dev
	$(BIN)/python -m pytest -q $(ARGS)

# The inner loop: every module imported and checked, nothing that trains a network at length or
# starts a process (tests marked slow, browser or cuda); under a minute on 2 cores.
test-fast: setup-dev
	$(BIN)/python -m pytest -q -m "not slow and not browser and not cuda" $(ARGS)

lint: setup-dev
	$(BIN)/ruff check evo_nas tests

bench: setup
	$(BIN)/evonas bench $(ARGS)

# One command for a short visit to a GPU machine without internet (docs/performance.md): the
# CUDA tests, the probe, the bench and a short search, in at most 8 files under OUT. No setup:
# such a machine brings its own torch; tools/gpu_prepare.sh makes the wheels and data to carry
# along. A machine without make runs `bash tools/gpu_check.sh` itself. `make gpu-check
# DEVICE=cpu` is its dry run (tests/test_gpu_check.py, about a minute).
GPU_PY ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
gpu-check:
	DEVICE=$(or $(DEVICE),cuda) PY=$(GPU_PY) bash tools/gpu_check.sh

clean-venv:
	rm -rf $(VENV)
