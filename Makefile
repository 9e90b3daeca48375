# kube-vast — the commands the README uses.
#   make test     set up what is missing (virtualenv, control-plane binaries) and run every test
#   make demo     set up what is missing and run the whole flow on the simulator and a local control plane
#   make dev      just the virtualenv with the package and its test extra
#   make image    the kube-vast image without a registry or a daemon: dist/kube-vast-<version>.tar (root)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: dev test unit lint typecheck control-plane demo chaos bench bench-ranking bench-extender bench-mutate bench-controller bench-market bench-scheduling chart clean

dev: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

control-plane:
	tools/build-control-plane.sh

lint: $(STAMP)
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy vastmarket vastsim serving extender webhooks controller kube_vast devcluster demo

unit: $(STAMP)
	$(BIN)/pytest -m 'not cluster'

test: $(STAMP) control-plane lint typecheck
	tools/build-image.sh --if-possible
	tools/build-node.sh --if-possible
	$(BIN)/pytest

# The kube-vast image without a registry or a daemon (mmdebstrap base cached in ~/.cache/kube-vast,
# buildah): dist/kube-vast-<version>.tar, a docker archive for docker/podman load or ctr images import.
.PHONY: image
image: $(STAMP)
	tools/build-image.sh

# What the test bed's real node runs (devcluster/node.py): kubelet, kube-proxy, the pause image.
.PHONY: node
node:
	tools/build-node.sh

# The demo needs no helm: build only the control plane (seconds when cached). DEMO_FLAGS=--keep
# leaves the demo cluster up for kubectl until Ctrl-C.
demo: $(STAMP)
	tools/build-control-plane.sh $(if $(findstring --chart,$(DEMO_FLAGS)),,--no-helm)
	$(if $(findstring --chart,$(DEMO_FLAGS)),tools/build-image.sh && tools/build-node.sh)
	$(BIN)/python -m demo $(DEMO_FLAGS)

# The structural fuzzer over HTTP (docs/reliability.md): FUZZ_BODIES mutated real bodies to the real
# `kube-vast webhook` (TLS) and `kube-vast extender` gunicorn processes; fails on any answer other
# than a well-formed 200 or 400, a dropped connection or a service down. `make test` fuzzes in-process.
.PHONY: fuzz
FUZZ_BODIES ?= 100000
FUZZ_SEED ?= 1
fuzz: $(STAMP)
	$(BIN)/python -m tests.fuzzing.over_http --bodies $(FUZZ_BODIES) --seed $(FUZZ_SEED)

# Crash testing tied to progress (docs/reliability.md): the controller SIGKILLed CHAOS_ROUNDS times
# at the steps that spend money, under lost answers, the simulator's ledger sampled all along;
# prints the kills per kill point and the invariants. `make test` runs 12 rounds of it.
CHAOS_ROUNDS ?= 60
chaos: $(STAMP) control-plane
	$(BIN)/python -m devcluster.chaos --rounds $(CHAOS_ROUNDS)

# The soak (docs/reliability.md): 20 pods over a churning market for SOAK_MINUTES minutes (prices
# moving, offers vanishing, hosts offline, 429 storms, a partition, the controller SIGKILLed about
# every minute), the money invariants sampled throughout; one summary line. `make test` runs 2 minutes.
.PHONY: soak
SOAK_MINUTES ?= 10
soak: $(STAMP) control-plane
	$(BIN)/python -m devcluster.soak --minutes $(SOAK_MINUTES)

bench: bench-ranking bench-extender bench-mutate bench-controller bench-market bench-scheduling

bench-ranking: $(STAMP)
	$(BIN)/python bench/ranking.py

bench-extender: $(STAMP)
	$(BIN)/python bench/extender.py

bench-mutate: $(STAMP)
	$(BIN)/python bench/mutate.py

# 1 and 20 pods bound → endpoints, then 100 pods at once under Vast's published rate limits
# (bench/launch_scale.py, about 12 minutes).
bench-controller: $(STAMP) control-plane
	$(BIN)/python bench/controller.py
	$(BIN)/python bench/launch_scale.py

# kube-scheduler throughput with and without the extender: 5,000 nodes, 1,000 pods per run.
bench-scheduling: $(STAMP) control-plane
	$(BIN)/python bench/scheduling.py

# Offer rows per day of demand-driven market watching (the standard demand profile) against the
# broad search, and placements equal to a whole-market search (docs/benchmarks.md).
bench-market: $(STAMP)
	$(BIN)/python bench/market.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .hypothesis build *.egg-info

# The chart: lint and render it with the pinned helm, then its tests (every variant linted,
# rendered, validated by the test kube-apiserver, RBAC checked). Also part of `make test`.
HELM_CACHE := $(or $(KUBE_VAST_CACHE),$(HOME)/.cache/kube-vast)
HELM       ?= $(shell . tools/versions.env && echo $(HELM_CACHE)/helm-$$HELM_VERSION/bin/helm)
KUBE_VER   := $(shell . tools/versions.env && echo $$KUBERNETES_VERSION)

chart: $(STAMP) control-plane
	$(HELM) lint --strict charts/kube-vast --kube-version $(KUBE_VER) --set vast.existingSecret.name=vast-api
	$(HELM) lint --strict charts/kube-vast --kube-version $(KUBE_VER) --set simulator.enabled=true
	$(HELM) template kube-vast charts/kube-vast -n kube-vast --kube-version $(KUBE_VER) --set vast.existingSecret.name=vast-api >/dev/null
	$(BIN)/pytest -q tests/chart
