# Manifold developer entry points. The logic lives in scripts/ so it can be run
# (and read) without make.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

# Extra arguments for the test runner, e.g. make test ARGS="-p manifold-db"
ARGS ?=

.PHONY: help tools build run test fmt lint clean-dev

help:
	@echo "make run        start the all-in-one server (private PostgreSQL, simulated sites); Ctrl-C stops all"
	@echo "                MANIFOLD_SITES=kube make run: the same on three real Kubernetes clusters"
	@echo "make test       install test clients into .tools/, run all tests against a private PostgreSQL"
	@echo "make tools      install pinned kubectl, grpcurl, terraform, helm SDK into .tools/, build the real-cluster binary (kube-site) and the Helm CLI"
	@echo "make build      build all binaries"
	@echo "make fmt lint   check formatting / clippy with warnings as errors"
	@echo "make clean-dev  stop the run PostgreSQL, delete its data and .manifold/"

tools:
	scripts/install-tools.sh
	scripts/install-kube-site.sh
	scripts/install-helm.sh

build:
	cargo build --workspace --bins

run:
	scripts/run.sh

# test.sh installs the tools itself, building kube-site beside the Rust build.
test:
	scripts/test.sh $(ARGS)

fmt:
	cargo fmt --all -- --check

lint:
	cargo clippy --workspace --all-targets -- -D warnings

clean-dev:
	scripts/postgres.sh destroy .manifold/postgres
	rm -rf .manifold
