# Thin wrappers; every target sets up the virtual environment first if needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CDARTS := $(VENV)/bin/cdarts
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: setup test test-fast demo demo-fashion bench bench-authors bench-quality lint clean golden lock images

setup: $(STAMP)

# Exactly the versions and files of the lock (requirements-dev.lock, exported from uv.lock, with
# the sha256 of every file), then this project itself without resolving anything again.
$(STAMP): pyproject.toml requirements-dev.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes --no-deps -r requirements-dev.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# The whole cdarts-search pipeline on the embedded default (real digits, CPU, kfp.local): no
# cluster, no services, no network. The run directory is the last line printed.
demo: setup
	$(CDARTS) run --config configs/demo.yaml --runs-root .cdarts/runs

# The same pipeline on real Fashion-MNIST (about an hour on 2 cores). RANDOM_BASELINES=3 also
# retrains three random architectures with the same recipe and compares (each ~25 min more here).
FASHION_MNIST ?= /usr/share/datasets/fashion-mnist
RANDOM_BASELINES ?= 0
demo-fashion: setup
	@test -e $(FASHION_MNIST)/train-images-idx3-ubyte.gz -o -e $(FASHION_MNIST)/train-images-idx3-ubyte || \
		{ echo "make demo-fashion: no Fashion-MNIST in $(FASHION_MNIST); apt-get install -y dataset-fashion-mnist, or FASHION_MNIST=DIR" >&2; exit 1; }
	$(CDARTS) run --config configs/fashion-mnist.yaml --set data.location=$(FASHION_MNIST) --random-baselines $(RANDOM_BASELINES) --runs-root .cdarts/runs

# Benchmarks (not tests), about 15 minutes on 2 cores: JSON in bench/results/, a PNG plot and the
# README's table printed last. bench/gpu_check.sh is the GPU counterpart (CUDA machines only).
bench: setup
	$(PY) bench/search_step.py --compare --batch-size 16 32 64 --steps 3 --memory --json bench/results/search_step.json
	$(PY) bench/retrain_step.py --compare --batch-size 32 128 --steps 3 --memory --json bench/results/retrain_step.json
	$(PY) bench/pipeline_overhead.py --config tiny --json bench/results/pipeline_overhead.json
	$(PY) bench/report.py --results bench/results --plot bench/results/throughput.png

# The searched cell against random ones and the published cells on real Fashion-MNIST, about 2 hours
# on 2 cores (SIZE=gpu on a CUDA machine, SIZE=smoke for a check in seconds).
SIZE ?= cpu
# Side by side with the authors' code: CREAM_DIR is a checkout of github.com/microsoft/Cream
# (git clone https://github.com/microsoft/Cream); nothing of it is copied into this repository.
CREAM_DIR ?=
bench-authors: setup
	@test -n "$(CREAM_DIR)" -a -f "$(CREAM_DIR)/CDARTS/lib/models/cdarts_controller.py" || \
		{ echo "make bench-authors: set CREAM_DIR to a checkout of https://github.com/microsoft/Cream" >&2; exit 1; }
	$(PY) bench/vs_authors.py --cream-dir $(CREAM_DIR) --batch-size 32 64 --retrain-batch-size 32 --steps 3 --memory \
		--json bench/results/vs_authors.json
	$(PY) bench/report.py --results bench/results

bench-quality: setup
	$(PY) bench/search_quality.py --$(SIZE) --out bench/results/search-quality-$(SIZE)

lint: setup
	$(VENV)/bin/ruff check cdarts stages pipelines tests bench images k8s/schemas
	$(VENV)/bin/mypy cdarts

# The one lock: `uv lock` resolves uv.lock from pyproject.toml (network), then its hashed exports
# for the images and for `make setup` are written (a test fails when they disagree with it).
lock: setup
	$(PY) images/lock.py

# GPU and CPU images (needs a Docker engine; not run in CI). IMAGE_REPO=registry/org to push elsewhere.
IMAGE_REPO ?= ghcr.io/cdarts-pipelines
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
REVISION := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
images:
	docker build -f images/Dockerfile --target gpu -t $(IMAGE_REPO)/cdarts-gpu:$(VERSION) --build-arg VERSION=$(VERSION) \
		--build-arg REVISION=$(REVISION) --build-arg IMAGE_REF=$(IMAGE_REPO)/cdarts-gpu:$(VERSION) .
	docker build -f images/Dockerfile --target cpu -t $(IMAGE_REPO)/cdarts-cpu:$(VERSION) --build-arg VERSION=$(VERSION) \
		--build-arg REVISION=$(REVISION) --build-arg IMAGE_REF=$(IMAGE_REPO)/cdarts-cpu:$(VERSION) .

clean:
	rm -rf .cdarts bench/results .pytest_cache .mypy_cache .ruff_cache

# Regenerate the compiled-pipeline golden files after an intended change to stages/ or pipelines/.
golden: setup
	$(CDARTS) compile --allow-unpinned-images --pipeline search --out tests/golden/cdarts-search.yaml
	$(CDARTS) compile --allow-unpinned-images --pipeline retrain --out tests/golden/cdarts-retrain.yaml
