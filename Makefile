# ParkingSpot: everything bootstraps itself on a fresh machine.
#   make demo   the pool keeper through a simulated day against a local EC2 API
#   make test   every test tier (lint, sanity, unit, integration, roles, boot), after installing
#               the Debian packages they need (tools/system-packages)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON_BIN ?= $(shell tools/find-python)
VENV := .venv
PY := $(abspath $(VENV))/bin/python
BUILD := .build
COLLECTIONS := $(abspath $(BUILD))/collections
COLLECTION := $(COLLECTIONS)/ansible_collections/parkingspot/ec2
ANSIBLE_WHEEL := ansible==14.5.0
DEP_COLLECTIONS := amazon.aws community.aws community.docker
PIP_BOOTSTRAP_VERSION := 25_2
TAR_EXCLUDES := --exclude=./.venv --exclude=./.build --exclude=./.git --exclude=./tests/output \
    --exclude='__pycache__' --exclude=./.pytest_cache --exclude=./.ruff_cache --exclude=./demo-output
PYTEST_ARGS := -q -p no:cacheprovider --import-mode=importlib
UNIT_WORKERS ?= 2

export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export ANSIBLE_CONFIG := $(abspath ansible.cfg)
export PATH := $(abspath $(VENV))/bin:$(PATH)
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help system-packages setup collection lint sanity units integration integration-dev integration-eda test-awx test-boot test-roles test-artifact test demo clean bench unit-fast

help:
	@echo "make demo    keep a CI runner pool through a simulated day on a local EC2 API"
	@echo "make test    run every test tier"

$(VENV)/.stamp: requirements.txt requirements-dev.txt
	$(PYTHON_BIN) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# Dependency collections come from the ansible wheel on PyPI (no-op once present);
# ansible-test gets a pip bootstrap script that needs no network.
setup: $(VENV)/.stamp
	$(PY) tools/bootstrap_collections.py $(COLLECTIONS) $(ANSIBLE_WHEEL) $(DEP_COLLECTIONS)
	mkdir -p $(HOME)/.ansible/test/cache
	cp tools/get_pip_offline.py $(HOME)/.ansible/test/cache/get_pip_$(PIP_BOOTSTRAP_VERSION).py

# $(call copy-to,ROOT): a fresh copy of the working tree at ROOT/ansible_collections/parkingspot/ec2,
# with the dependency collections linked beside it (for quick loops and benchmarks, which must not
# disturb a running make test).
define copy-to
	rm -rf $(1) && mkdir -p $(1)/ansible_collections/parkingspot/ec2
	for dep in $(COLLECTIONS)/ansible_collections/*; do \
	    [ "$$(basename $$dep)" = parkingspot ] || ln -s $$dep $(1)/ansible_collections/; done
	tar -c $(TAR_EXCLUDES) . | tar -x -C $(1)/ansible_collections/parkingspot/ec2
endef

# A fresh copy of the working tree where ansible-test and the tests expect it:
# .../ansible_collections/parkingspot/ec2 (ansible-test needs its own git tree).
collection: setup
	rm -rf $(COLLECTION)
	mkdir -p $(COLLECTION)
	tar -c $(TAR_EXCLUDES) . | tar -x -C $(COLLECTION)
	cd $(COLLECTION) && git init -q && git add -A

lint: collection
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	# ANSIBLE_HOME of our own: a parkingspot.ec2 left in ~/.ansible/collections (an older install)
	# must not stand in for the tree being linted.
	cd $(COLLECTION) && ANSIBLE_HOME=$(abspath $(BUILD))/ansible-home \
	    ansible-lint --offline --profile production --nocolor playbooks roles tests/integration extensions

sanity: collection
	cd $(COLLECTION) && ansible-test sanity --venv --python 3.12 --color no

units: collection
	cd $(COLLECTION) && PYTHONPATH=$(COLLECTIONS) $(PY) -m pytest $(PYTEST_ARGS) -n $(UNIT_WORKERS) tests/unit

integration: collection
	$(PY) tools/with_moto.py -- $(PY) tools/run_integration.py $(COLLECTION)/tests/integration/targets $(T)
	$(if $(T),,$(MAKE) --no-print-directory integration-eda)

# One target (or python/FILE) from a dev copy: make integration-dev T=spot_pool
integration-dev: setup
	$(call copy-to,$(DEV_COLLECTIONS))
	cd $(DEV_COLLECTIONS)/ansible_collections/parkingspot/ec2 && ANSIBLE_COLLECTIONS_PATH=$(DEV_COLLECTIONS) \
	    $(PY) tools/with_moto.py -- $(PY) tools/run_integration.py tests/integration/targets $(T)

# EventBridge/SQS setup playbook, and the rulebook end to end (ansible-rulebook, Java 17).
integration-eda: collection
	cd $(COLLECTION) && PYTHON=$(PY) sh tests/integration/eda/run.sh
	cd $(COLLECTION) && PYTHON=$(PY) EDA_PYTHON=$(PYTHON_BIN) EDA_VENV=$(abspath $(BUILD))/eda-venv \
	    sh tests/integration/eda/rulebook.sh

# The playbooks as AWX runs them: ansible-runner jobs from private data dirs built from the
# snippets of docs/awx.md (group_vars, workflow artifacts, a failing pool, check mode, credentials).
test-awx: collection
	cd $(COLLECTION) && $(PY) tools/with_moto.py -- $(PY) -m pytest $(PYTEST_ARGS) tests/awx

# The built artifact: no development files, installs into an empty directory, runs from there,
# ansible-doc renders every module, galaxy-importer (offline) reports no error.
test-artifact: collection
	cd $(COLLECTION) && $(PY) tests/artifact/run.py $(COLLECTIONS)

# The init shim booted for real: qemu (no KVM) with Debian's kernel, virtio and NVMe disks.
test-boot:
	sh tests/boot/run.sh

# The roles on a booted systemd container (systemd-nspawn, root): molecule scenarios, then a
# configuration-management repository reusing both roles, dry-run (fresh and configured) and for real.
test-roles: collection
	cd $(COLLECTION) && PYTHON=$(PY) sh tests/roles/run-molecule.sh
	cd $(COLLECTION) && PYTHON=$(PY) sh tests/roles/run-cm-repo.sh

# The Debian packages the tiers need (tools/system-packages.txt): installed when missing (sudo when
# not root), or a failure within seconds that names them and the command that installs them.
system-packages:
	sh tools/system-packages

# Every tier, each one's output also kept in $(TEST_LOGS)/<tier>.log and its wall time in
# <tier>.seconds; the last line names every skipped test by reason (pytest's -rs summaries and
# ansible-test's skip warnings). The collection copy is built once first; then the container and
# VM tiers (lane B: mostly waiting on booting systems) run beside the others (lane A, whose output
# is shown as it comes). A failed lane-B tier has the end of its log shown. Lane B's unit tier
# (unit-floor) takes one core, so that the two lanes share the machine's two.
TEST_LANE_A := lint sanity units integration test-awx test-artifact
TEST_LANE_B := test-roles test-boot unit-floor
TEST_TIERS := $(TEST_LANE_A) $(TEST_LANE_B)
TEST_LOGS := $(abspath $(BUILD))/test-logs
TIER = PYTEST_ADDOPTS="-rfEs $${PYTEST_ADDOPTS:-}" $(MAKE) --no-print-directory -o collection -o setup -o $(VENV)/.stamp
test: system-packages
	@rm -rf $(TEST_LOGS) && mkdir -p $(TEST_LOGS) && touch $(TEST_LOGS)/failed
	@echo "make test: building the collection copy"
	@$(MAKE) --no-print-directory collection > $(TEST_LOGS)/setup.log 2>&1 \
	    || { tail -n 60 $(TEST_LOGS)/setup.log; echo "make test: FAILED in setup"; exit 1; }
	@( for tier in $(TEST_LANE_B); do \
	    started=$$(date +%s); \
	    UNIT_WORKERS=1 $(TIER) $$tier > $(TEST_LOGS)/$$tier.log 2>&1 || echo $$tier >> $(TEST_LOGS)/failed; \
	    echo $$(( $$(date +%s) - started )) > $(TEST_LOGS)/$$tier.seconds; \
	    echo "make test: tier $$tier (lane B) ended after $$(cat $(TEST_LOGS)/$$tier.seconds)s"; \
	  done ) & lane_b=$$!; \
	for tier in $(TEST_LANE_A); do \
	    echo "make test: tier $$tier"; started=$$(date +%s); \
	    $(TIER) $$tier 2>&1 | tee $(TEST_LOGS)/$$tier.log || echo $$tier >> $(TEST_LOGS)/failed; \
	    echo $$(( $$(date +%s) - started )) > $(TEST_LOGS)/$$tier.seconds; \
	    [ ! -s $(TEST_LOGS)/failed ] || break; \
	done; \
	wait $$lane_b; \
	for tier in $(TEST_LANE_B); do \
	    ! grep -qx $$tier $(TEST_LOGS)/failed || { echo "make test: end of the $$tier log"; tail -n 80 $(TEST_LOGS)/$$tier.log; }; \
	done; \
	failed=$$(tr '\n' ' ' < $(TEST_LOGS)/failed); \
	$(PYTHON_BIN) tools/test_summary.py $(TEST_LOGS) $(TEST_TIERS) $${failed:+--failed "$${failed% }"}

demo: collection
	$(PY) tools/demo.py

clean:
	rm -rf $(BUILD) $(VENV) tests/output

# Quick loop while developing: make unit-fast T=tests/unit/plugins/modules
DEV_COLLECTIONS := $(abspath $(BUILD))/dev-collections
unit-fast: setup
	$(call copy-to,$(DEV_COLLECTIONS))
	cd $(DEV_COLLECTIONS)/ansible_collections/parkingspot/ec2 && ANSIBLE_COLLECTIONS_PATH=$(DEV_COLLECTIONS) \
	    PYTHONPATH=$(DEV_COLLECTIONS) $(PY) -m pytest $(PYTEST_ARGS) -x $(or $(T),tests/unit)

# Benchmarks: make bench B=pool_api_calls ARGS="--sizes 10,100,1000"
# End to end with ansible-playbook: make bench B=ci_webhook_launch ARGS="--rate 50 --seconds 60 --pools 2"
# Benchmarks run from their own copy, so tests can rebuild the main one meanwhile.
BENCH_COLLECTIONS := $(abspath $(BUILD))/bench-collections
bench: setup
	$(call copy-to,$(BENCH_COLLECTIONS))
	cd $(BENCH_COLLECTIONS)/ansible_collections/parkingspot/ec2 && ANSIBLE_COLLECTIONS_PATH=$(BENCH_COLLECTIONS) \
	    PYTHONPATH=$(BENCH_COLLECTIONS) $(PY) bench/$(B).py $(ARGS)

# The unit tier against the dependency floor, in a venv of its own: galaxy.yml asks for amazon.aws
# >= 11.3.0 (error messages name what failed only from that release on), which the ansible 14.0.0
# wheel ships, and requirements.txt for boto3 / botocore (the first release whose fleet overrides take
# KeyName, IamInstanceProfile and MetadataOptions). Run by make test (lane B).
# make unit-floor [T=tests/unit/plugins/module_utils]
.PHONY: unit-floor
FLOOR_ANSIBLE_WHEEL := ansible==14.0.0
FLOOR_DEPS := $(abspath $(BUILD))/floor-deps
FLOOR_COLLECTIONS := $(abspath $(BUILD))/floor-collections
FLOOR_VENV := $(abspath $(BUILD))/floor-venv
# boto3==... botocore==... from requirements.txt's ">=" lines; the test tools as pinned.
FLOOR_PINS = $$(sed -n 's/^\(boto3\|botocore\)>=/\1==/p' requirements.txt) \
    $$(grep -E '^(ansible-core|moto|pytest|pytest-xdist|hypothesis)(\[[a-z]+\])?==' requirements-dev.txt)
$(FLOOR_VENV)/.stamp: requirements.txt requirements-dev.txt
	rm -rf $(FLOOR_VENV) && $(PYTHON_BIN) -m venv $(FLOOR_VENV)
	$(FLOOR_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(FLOOR_VENV)/bin/python -m pip install --quiet $(FLOOR_PINS)
	touch $@
unit-floor: setup $(FLOOR_VENV)/.stamp
	$(PY) tools/bootstrap_collections.py $(FLOOR_DEPS) $(FLOOR_ANSIBLE_WHEEL) amazon.aws
	rm -rf $(FLOOR_COLLECTIONS) && mkdir -p $(FLOOR_COLLECTIONS)/ansible_collections/parkingspot/ec2 \
	    $(FLOOR_COLLECTIONS)/ansible_collections/amazon
	ln -s $(FLOOR_DEPS)/ansible_collections/amazon/aws $(FLOOR_COLLECTIONS)/ansible_collections/amazon/aws
	ln -s $(COLLECTIONS)/ansible_collections/community $(FLOOR_COLLECTIONS)/ansible_collections/community
	tar -c $(TAR_EXCLUDES) . | tar -x -C $(FLOOR_COLLECTIONS)/ansible_collections/parkingspot/ec2
	cd $(FLOOR_COLLECTIONS)/ansible_collections/parkingspot/ec2 && ANSIBLE_COLLECTIONS_PATH=$(FLOOR_COLLECTIONS) \
	    PARKINGSPOT_DEPENDENCY_FLOOR=1 PYTHONPATH=$(FLOOR_COLLECTIONS) $(FLOOR_VENV)/bin/python -m pytest \
	    $(PYTEST_ARGS) -n $(UNIT_WORKERS) $(or $(T),tests/unit/test_dependency_floor.py tests/unit/plugins tests/unit/extensions)
