# Common commands. `make dev` runs the local stack; `make test` runs every test.
SHELL := /bin/bash
# The app's Python, which is also the Lambda runtime `chalice package` writes into the template.
PYTHON_VERSION := 3.13
PYTHON ?= $(shell scripts/find-python $(PYTHON_VERSION))
VENV := .venv
PY := $(VENV)/bin/python
# checkov in a venv of its own: it pins a boto3 the app's cannot share (requirements-checkov.txt).
CHECKOV_VENV := .venv-checkov
STAGE ?= dev
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: help install install-local dev test lint typecheck client-types unit integration e2e node-test package-check package smoke clean package-test

help:
	@echo "make dev        run the whole stack locally (REST, WebSocket, SNS, DynamoDB, Firebase Auth)"
	@echo "make test       install everything and run lint, types and all tests"
	@echo "make package    chalice package --merge-template for STAGE=$(STAGE) into out/$(STAGE), then cfn-lint and checkov"
	@echo "make smoke      after a deploy: sign in a test user, open a WebSocket, run a job, hear its frame (STAGE=$(STAGE))"
	@echo "make bench      run the benchmarks"

# ------------------------------------------------------------------ setup
# The realtime core is its own distribution (realtime/); the app installs its wheel like any adopter.
CORE_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' realtime/pyproject.toml)
WHEEL := realtime/dist/chalice_realtime-$(CORE_VERSION)-py3-none-any.whl
CORE_SOURCES := realtime/pyproject.toml realtime/README.md $(shell find realtime/src -type f -not -name '*.pyc' 2>/dev/null)

# A venv built with another Python (an older checkout's) is rebuilt, whatever its timestamps say.
ifneq ($(shell $(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null),$(PYTHON_VERSION))
.PHONY: $(VENV)/.created
endif
$(VENV)/.created:
	@test -n "$(PYTHON)" || { echo "Python $(PYTHON_VERSION) is needed (see scripts/find-python)" >&2; exit 1; }
	if [ -e $(PY) ] && [ "$$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])')" != "$(PYTHON_VERSION)" ]; then \
		echo "rebuilding $(VENV) for Python $(PYTHON_VERSION)"; rm -rf $(VENV); fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	touch $@

# The wheel, built in pip's isolated build environment (hatchling); rebuilt when a source changes.
$(WHEEL): $(CORE_SOURCES) | $(VENV)/.created
	rm -rf realtime/dist
	$(PY) -m pip wheel -q --no-deps -w realtime/dist ./realtime

# The same version rebuilt keeps its file name: reinstall it so the venv never runs a stale core.
define install_core
	$(PY) -m pip install -q --no-deps --force-reinstall $(WHEEL)
endef

# `make dev`: only what the local stack runs.
$(VENV)/.installed-local: requirements.txt requirements-local.txt $(WHEEL) $(VENV)/.created
	$(PY) -m pip install -q -r requirements-local.txt
	$(install_core)
	touch $@

# `make test`: the tests, linters, type checker and benchmarks on top.
$(VENV)/.installed: requirements.txt requirements-local.txt requirements-dev.txt $(WHEEL) $(VENV)/.created
	$(PY) -m pip install -q -r requirements-dev.txt
	$(install_core)
	touch $@ $(VENV)/.installed-local

# `make dev`: package.json's dependencies only (the Auth Emulator, the demo page's Firebase SDK).
node_modules/.installed-local: package.json package-lock.json
	npm ci --omit=dev --no-audit --no-fund --loglevel=error
	touch $@

# `make test`: the devDependencies too (TypeScript, React, axe-core).
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@ node_modules/.installed-local

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	@test -n "$(PYTHON)" || { echo "Python $(PYTHON_VERSION) is needed (see scripts/find-python)" >&2; exit 1; }
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q -r requirements-checkov.txt
	touch $@

install: $(VENV)/.installed node_modules/.installed $(CHECKOV_VENV)/.installed
install-local: $(VENV)/.installed-local node_modules/.installed-local

# ------------------------------------------------------------------ run
dev: install-local
	$(PY) -m devserver

# ------------------------------------------------------------------ checks
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	PYTHONPATH=realtime/src $(VENV)/bin/lint-imports --no-logo

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

# The app's in-process tests, one folder per feature (plus app-wide ones in tests/app); the core's own tests
# (realtime/tests) against the wheel installed in $(VENV).
APP_UNIT_TESTS := tests/app tests/jobs tests/chat tests/payments tests/limits tests/devserver tests/bench tests/ops
unit: install
	$(PY) -m pytest $(APP_UNIT_TESTS)
	$(PY) -m pytest -c realtime/pyproject.toml realtime/tests

integration: install
	$(PY) -m pytest tests/integration

e2e: install
	scripts/install-chromium
	$(PY) -m pytest tests/e2e

# The browser library's declarations against its typed usage example (wrong calls must fail).
client-types: node_modules/.installed
	node_modules/.bin/tsc -p client/types-test --noEmit --strict

node-test: node_modules/.installed
	node --test client/test/*.test.js

package-check: $(VENV)/.installed $(CHECKOV_VENV)/.installed
	$(PY) -m pytest tests/deploy

# ------------------------------------------------------------------ the core as a package
# Built as PyPI would get it (sdist, and the wheel from the sdist), checked by twine and scripts/check-core-dist,
# then its own tests (realtime/tests) run against the INSTALLED wheel in one venv per set of extras, from a
# folder where realtime/src cannot be imported. The set with every extra runs every test; `none` runs all that
# need no extra (the transport fallback included); the others only the tests of their extras.
CORE_DIST := .venvs/dist
CORE_EXTRA_SETS := none firebase oidc all
CORE_EXTRAS_none :=
CORE_EXTRAS_firebase := [firebase]
CORE_EXTRAS_oidc := [oidc]
CORE_EXTRAS_all := [firebase,oidc,fast,aiohttp,metrics]
CORE_SELECT_none :=
CORE_SELECT_firebase := --only-extra firebase
CORE_SELECT_oidc := --only-extra oidc
CORE_SELECT_all :=

# A venv per set with the tests' pinned requirements; rebuilt when they or the package's extras change.
.venvs/core-%/.deps: realtime/requirements-test.txt realtime/constraints-test.txt realtime/pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python $(PYTHON_VERSION) is needed (see scripts/find-python)" >&2; exit 1; }
	test -x .venvs/core-$*/bin/python || $(PYTHON) -m venv .venvs/core-$*
	.venvs/core-$*/bin/python -m pip install -q --upgrade pip
	.venvs/core-$*/bin/python -m pip install -q -r realtime/requirements-test.txt
	touch $@

# One set: the built wheel installed with the set's extras (then reinstalled, as a rebuilt 0.x keeps its name),
# its tests run from .venvs/run, where only the installed package is importable.
define core_tests
	@echo "--- extras $(1): chalice-realtime$(CORE_EXTRAS_$(1)), realtime/tests against the installed wheel"
	.venvs/core-$(1)/bin/python -m pip install -q -c realtime/constraints-test.txt "$$(ls $(CORE_DIST)/*.whl)$(CORE_EXTRAS_$(1))"
	.venvs/core-$(1)/bin/python -m pip install -q --no-deps --force-reinstall $(CORE_DIST)/*.whl
	cd .venvs/run && CHALICE_REALTIME_INSTALLED=1 $(CURDIR)/.venvs/core-$(1)/bin/python -m pytest -q \
		-c $(CURDIR)/realtime/pyproject.toml --rootdir $(CURDIR)/realtime $(CORE_SELECT_$(1)) $(CURDIR)/realtime/tests

endef

package-test: $(VENV)/.installed $(foreach set,$(CORE_EXTRA_SETS),.venvs/core-$(set)/.deps)
	rm -rf $(CORE_DIST) && mkdir -p $(CORE_DIST) .venvs/run
	$(PY) -m build --sdist --wheel --outdir $(CORE_DIST) realtime >/dev/null
	$(VENV)/bin/twine check --strict $(CORE_DIST)/*
	$(PY) scripts/check-core-dist $(CORE_DIST)
	$(foreach set,$(CORE_EXTRA_SETS),$(call core_tests,$(set)))

test: install
	scripts/install-chromium
	$(MAKE) lint typecheck client-types node-test package-test
	$(PY) -m pytest

package: $(VENV)/.installed $(CHECKOV_VENV)/.installed
	rm -rf out/$(STAGE)
	$(VENV)/bin/chalice package --stage $(STAGE) --merge-template infra/resources.json out/$(STAGE)
	$(VENV)/bin/cfn-lint out/$(STAGE)/sam.json
	$(PY) -m infra.checkov out/$(STAGE)/sam.json

# After each deploy: the stage's URLs from its stack's outputs (STACK, default chalice-realtime-$(STAGE));
# see docs/deploy.md for the test user's credentials. Exits non-zero naming the step that failed.
STACK ?= chalice-realtime-$(STAGE)
smoke: $(VENV)/.installed
	$(PY) -m ops.smoke --stage $(STAGE) --stack $(STACK)

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules out .pytest_cache .mypy_cache .ruff_cache realtime/dist

# ------------------------------------------------------------------ benchmarks (not part of `make test`)
.PHONY: bench
bench: install
	$(PY) -m bench.calls
	$(PY) -m bench.cost
	$(PY) -m bench.coldstart
	$(PY) -m bench.fanout
	$(PY) -m bench.throttle
	$(PY) -m bench.e2e
	$(PY) -m bench.tabs
	$(PY) -m bench.broadcast
	$(PY) -m bench.package_size
