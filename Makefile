# Two entry points: `make demo` (the main job) and `make test`. Both set up what they need
# (.venv, packages, the Fashion-MNIST dataset) and are safe to re-run.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.edgeskip-installed
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: demo test lint bench dataset venv clean aarch64-runtime armhf-runtime sshd

venv: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch is installed first and pinned: an unpinned torch pulls a multi-GB CUDA build.
$(STAMP): $(PY) pyproject.toml runtime/pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e './runtime[iree]'
	$(PY) -m pip install --quiet -e '.[dev]'
	@# The torch-mlir front end (edgeskip export --frontend torch-mlir). It needs no torch of its own, so
	@# --no-deps keeps the pinned one; where no wheel exists for this platform, only that front end is missing.
	$(PY) -m pip install --quiet --no-deps torch-mlir==20261001 || \
		echo "torch-mlir: no wheel for this platform; --frontend torch-mlir is unavailable"
	touch $(STAMP)

dataset:
	@if [ -f $(FMNIST) ]; then \
		echo "Fashion-MNIST: found in /usr/share/datasets/fashion-mnist"; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "Fashion-MNIST: installing Debian's dataset-fashion-mnist"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist; }; \
	else \
		echo "Fashion-MNIST is missing. Install it with: sudo apt-get install dataset-fashion-mnist"; \
		echo "(or put the four idx .gz files in a folder and pass --data-dir)"; \
	fi

# Debian tools the tests use, root only: openssh-server and -client (a throwaway sshd on loopback for the
# deploy tests) and shellcheck (checks the board-side shell programs). Without root it says what to install.
DEBIAN_TOOLS := /usr/sbin/sshd:openssh-server ssh:openssh-client shellcheck:shellcheck
sshd:
	@missing=; for t in $(DEBIAN_TOOLS); do command -v $${t%%:*} >/dev/null 2>&1 || missing="$$missing $${t#*:}"; done; \
	if [ -z "$$missing" ]; then \
		echo "Debian tools: found sshd, ssh and shellcheck"; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "Debian tools: installing$$missing"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; }; \
	else \
		echo "Missing:$$missing; the tests that need them will be skipped. Install them with:"; \
		echo "  sudo apt-get install$$missing"; \
	fi

# qemu-user + arm64 sysroot (Debian, root only) and the aarch64 iree-run-module (PyPI wheel), for the
# test that runs an rpi4 bundle under emulation. Idempotent; without root it says what to install.
aarch64-runtime: $(STAMP)
	@sh tests/tools/install_aarch64_runtime.sh $(PY)
	@sh tests/tools/install_aarch64_python.sh $(PY)

# The XU4's runtime from ../shared/vendor with Debian's cross compiler (root installs it): a stock armhf
# iree-run-module, and the board Python (Debian's armhf python3.11 and numpy, IREE's Python bindings,
# ml_dtypes), for the tests that run an odroid-xu4 bundle and its server under qemu-arm. Cached in .cache/.
armhf-runtime: $(STAMP)
	@sh tests/tools/build_armhf_runtime.sh $(PY)

demo: $(STAMP) dataset
	$(VENV)/bin/edgeskip demo

lint: $(STAMP)
	$(PY) -m ruff check .

test: $(STAMP) dataset aarch64-runtime armhf-runtime sshd lint
	$(PY) -m pytest

bench: $(STAMP) dataset
	$(PY) benchmarks/train_bench.py --out runs/bench/train_bench.json

clean:
	rm -rf runs/demo .pytest_cache .ruff_cache
