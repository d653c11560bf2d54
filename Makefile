# cellship: the two commands of the README.
#   make demo   set up, then run the example notebook end to end on the embedded local backend
#   make test   set up, then run the whole test suite
# Everything installs into .venv from the package registries; nothing is assumed on the machine
# but python3 (>= 3.10, with venv) and make.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# tensorflow-cpu avoids the CUDA wheels of `tensorflow`; tf-keras must match its version and is
# installed with --no-deps (it depends on the full `tensorflow`). See shared notes/tensorflow.md.
TF_VERSION ?= 2.21.0
STAMP := $(VENV)/.cellship-installed
# `pip install -e .` builds the JupyterLab extension (extension/, via hatch-jupyter-builder:
# jlpm + jupyter-builder, ~1.5 min from clean) and installs it into the venv. A rebuild is
# skipped while backend/cellship/labextension exists, so edits to the extension's sources
# rebuild it through this rule.
LABEXT := $(VENV)/share/jupyter/labextensions/cellship/package.json
LAB_SOURCES := $(wildcard extension/src/*.ts extension/style/* extension/schema/*.json) \
	extension/package.json extension/tsconfig.json

.PHONY: setup system-deps cluster-deps demo lint test test-parallel test-unit clean

setup: $(STAMP) $(LABEXT)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q "tensorflow-cpu==$(TF_VERSION)" -e ".[tensorflow,test]"
	$(PIP) install -q --no-deps "tf-keras==$(TF_VERSION)" "tensorflow-serving-api==$(TF_VERSION)"
	$(PY) -c "import cellship, cellship_magics, tf_keras, papermill; print('cellship', cellship.__version__, 'installed in $(VENV)')"
	touch $@

$(LABEXT): $(LAB_SOURCES) | $(STAMP)
	rm -rf backend/cellship/labextension
	$(PIP) install -q --no-deps -e .
	touch $@

# Commands the image tests (registry, skopeo, podman), benchmarks (buildah) and the browser
# tests of the JupyterLab panel (Debian's chromium, driven by Playwright) use, as
# command:debian-package. Installed with apt-get only when a command is missing: fast when present.
SYSTEM_DEPS := docker-registry:docker-registry skopeo:skopeo podman:podman runc:runc \
	buildah:buildah busybox:busybox-static htpasswd:apache2-utils debootstrap:debootstrap \
	openssl:openssl chromium:chromium

system-deps:
	@missing=""; for pair in $(SYSTEM_DEPS); do \
		PATH="$$PATH:/usr/sbin:/sbin" command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		if ! command -v apt-get >/dev/null 2>&1; then \
			echo "system-deps: no apt-get; install$$missing yourself (the image tests skip without them)"; exit 0; fi; \
		sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		echo "system-deps: installing$$missing"; \
		$$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends $$missing; \
	fi

# The cluster tier (tests/k8s) boots a real Kubernetes built from Debian's source package and
# runs pods from an image cellship's own builder makes. Both are built once per machine and
# cached under ~/.cache/cellship (first time: ~8 min for Kubernetes, a few minutes for the
# image); done here, not inside a test, so no test timeout covers a build.
cluster-deps: setup
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		bash tests/cluster/build-kubernetes.sh && $(PY) -m tests.cluster.image; \
	else echo "cluster-deps: the cluster tier needs root and apt-get; tests/k8s will skip"; fi

demo: setup
	mkdir -p build/demo
	$(PY) -m papermill notebooks/01-distributed-training.ipynb build/demo/01-distributed-training.ipynb \
		--cwd build/demo --log-output --no-progress-bar
	$(PY) -m papermill notebooks/02-serve.ipynb build/demo/02-serve.ipynb \
		--cwd build/demo --log-output --no-progress-bar
	@echo "executed notebooks: build/demo/01-distributed-training.ipynb, build/demo/02-serve.ipynb"

# Style (ruff), types (mypy) and the house plan's import contracts (import-linter), all
# configured in pyproject.toml, and ESLint over the extension's TypeScript
# (extension/eslint.config.js); any finding fails the build.
lint: setup
	$(VENV)/bin/ruff check backend kernel_magics tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache
	cd extension && { test -d node_modules || $(abspath $(VENV))/bin/jlpm install; } && $(abspath $(VENV))/bin/jlpm lint

# One pytest for the whole suite (what CI runs). `make test-parallel` runs the cluster tier
# (tests/k8s) beside the rest in a second pytest, its output kept in build/test-k8s.log and
# printed once both are done: measured on 2 cores it is not faster (the pods train on the
# same cores) and the browser tests' waits flake under the doubled load, so it is not the
# default; with more cores it saves the cluster tier's waits.
test: setup lint system-deps cluster-deps
	@echo "test: setup done at $$(date -u +%T) UTC; the suite starts"
	$(PY) -m pytest -ra

test-parallel: setup lint system-deps cluster-deps
	@echo "test: setup done at $$(date -u +%T) UTC; the suite starts (tests/k8s beside the rest)"
	@mkdir -p build; \
	$(PY) -m pytest -ra tests/k8s > build/test-k8s.log 2>&1 & k8s=$$!; \
	trap 'kill $$k8s 2>/dev/null' INT TERM; \
	rest=0; $(PY) -m pytest -ra --ignore=tests/k8s || rest=$$?; \
	echo "test: the other tiers ended at $$(date -u +%T) UTC (exit $$rest); waiting for tests/k8s"; \
	cluster=0; wait $$k8s || cluster=$$?; \
	echo "================ tests/k8s (ended $$(date -u +%T) UTC, exit $$cluster) ================"; \
	cat build/test-k8s.log; \
	[ $$rest = 0 ] && [ $$cluster = 0 ]

test-unit: setup
	$(PY) -m pytest -ra -m "not tf" tests/unit

clean:
	rm -rf build $(VENV) backend/cellship/labextension extension/lib extension/node_modules \
		extension/tsconfig.tsbuildinfo
